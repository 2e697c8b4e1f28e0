// Package templates holds what Keystone renders, embedded in the binary.
// Each kind of template has its own directory and variable.
package templates

import "embed"

// Comments holds the GitHub comment templates (text/template over GitHub
// markdown): one file per kind of comment Keystone writes.
//
//go:embed comments/*.md
var Comments embed.FS
