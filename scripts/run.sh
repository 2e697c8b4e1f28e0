#!/bin/sh
# run.sh: `make run`. Starts `keystone serve`; with DATABASE_URL unset it first
# starts (or reuses) a local PostgreSQL under .dev/pg and stops it on exit.
set -eu
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
	DATABASE_URL=$(scripts/pg.sh start .dev/pg)
	export DATABASE_URL
	trap 'scripts/pg.sh stop .dev/pg; echo "local PostgreSQL stopped" >&2' EXIT
	trap 'exit 130' INT TERM
	echo "local PostgreSQL under .dev/pg: DATABASE_URL=$DATABASE_URL" >&2
fi
: "${KEYSTONE_DATA_DIR:=.dev/data}"
export KEYSTONE_DATA_DIR
# `make run PUBLIC_URL=https://…`: the address GitHub and your browser reach
# Keystone at (a tunnel's, on a laptop; see README.md).
if [ -n "${PUBLIC_URL:-}" ]; then
	KEYSTONE_PUBLIC_URL=$PUBLIC_URL
	export KEYSTONE_PUBLIC_URL
fi

# Not exec: the traps above must run when Keystone exits.
status=0
bin/keystone serve || status=$?
exit "$status"
