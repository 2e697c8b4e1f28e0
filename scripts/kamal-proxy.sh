#!/bin/sh
# kamal-proxy.sh: prints the path of a kamal-proxy v0.9.2 binary, the
# benchmark's anchor, built from the Go module proxy's copy of its source
# (checked against go.sum's database) into the git-ignored .dev/bench. No
# kamal-proxy code is kept in this repository.
set -eu
cd "$(dirname "$0")/.."
version=v0.9.2
bin=.dev/bench/kamal-proxy-$version
if [ ! -x "$bin" ]; then
	mkdir -p .dev/bench
	dir=$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go mod download -json "github.com/basecamp/kamal-proxy@$version" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$dir" ] || { echo "kamal-proxy.sh: could not download github.com/basecamp/kamal-proxy@$version" >&2; exit 1; }
	(cd "$dir" && go build -trimpath -o "$OLDPWD/$bin" ./cmd/kamal-proxy) >&2
fi
echo "$PWD/$bin"
