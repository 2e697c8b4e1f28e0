// Package keystone holds what lives at the repository's root and the binary
// needs: the GitHub App manifest.
package keystone

import _ "embed"

// AppManifest is app.yml, the GitHub App's manifest; the first-run setup
// (SPEC §15) sends it to GitHub with its URLs made from KEYSTONE_PUBLIC_URL.
//
//go:embed app.yml
var AppManifest []byte
