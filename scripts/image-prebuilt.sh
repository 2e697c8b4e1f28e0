#!/bin/sh
# image-prebuilt.sh TAG
#
# Builds Keystone on this machine (static, CGO_ENABLED=0) and packages it with
# the Dockerfile's `prebuilt` target, FROM scratch: no base image is pulled.
# The image runs as uid 10001 and has the machine's CA bundle but no git, so
# it cannot fetch app sources; `docker build .` makes the full image.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 TAG" >&2; exit 2; }
tag=$1
cd "$(dirname "$0")/.."

dist=$(mktemp -d "${TMPDIR:-/tmp}/keystone-dist.XXXXXX")
trap 'rm -rf "$dist"' EXIT
version=$(git describe --tags --always --dirty 2>/dev/null || echo devel)
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$dist/keystone" ./cmd/bot
for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
	if [ -f "$ca" ]; then
		cp "$ca" "$dist/ca-certificates.crt"
		break
	fi
done
[ -f "$dist/ca-certificates.crt" ] || { echo "$0: no CA certificate bundle found on this machine" >&2; exit 1; }
mkdir "$dist/data"
docker build --target prebuilt -f Dockerfile -t "$tag" "$dist"
