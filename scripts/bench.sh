#!/bin/sh
# bench.sh: `make bench`. Starts a PostgreSQL with production durability
# (fsync and synchronous_commit on) unless DATABASE_URL is given, then runs
# each benchmark and prints its table.
set -eu
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
	pgdir=$(mktemp -d "${TMPDIR:-/tmp}/keystone-bench-pg.XXXXXX")
	trap 'scripts/pg.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
	trap 'exit 130' INT TERM
	DATABASE_URL=$(scripts/pg.sh start "$pgdir")
	export DATABASE_URL
fi

echo "== webhook intake =="
go run ./internal/bench/webhookbench -keystone bin/keystone
