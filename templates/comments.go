package templates

import "embed"

// Comments holds the GitHub comment templates (text/template over GitHub
// markdown): one file per kind of comment Keystone writes.
//
//go:embed comments/*.md
var Comments embed.FS
