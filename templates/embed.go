// Package templates holds what Keystone renders, embedded in the binary:
// the status page's HTML templates (html/) and the files its pages load
// (static/). Other kinds of templates get their own directory and variable.
package templates

import "embed"

// HTML holds the status page's templates: layout.html and one file per page.
//
//go:embed html/*.html
var HTML embed.FS

// Static holds the stylesheet, the live-log script and the icon, served
// under /static/.
//
//go:embed static
var Static embed.FS
