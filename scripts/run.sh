#!/bin/sh
# run.sh: `make run`. Starts `keystone proxy` (the router, SPEC §13) and
# `keystone serve` beside it; with DATABASE_URL unset it first starts (or
# reuses) a local PostgreSQL under .dev/pg. Ctrl-C (or either process ending)
# stops both, then the local PostgreSQL.
set -eu
cd "$(dirname "$0")/.."

proxy_pid=
pg_started=
cleanup() {
	if [ -n "$proxy_pid" ]; then
		# A background job of a non-interactive shell ignores SIGINT: stop it
		# with SIGTERM and wait, so its listeners and socket are gone.
		kill -TERM "$proxy_pid" 2>/dev/null || true
		wait "$proxy_pid" 2>/dev/null || true
		echo "keystone proxy stopped" >&2
	fi
	if [ -n "$pg_started" ]; then
		scripts/pg.sh stop .dev/pg
		echo "local PostgreSQL stopped" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${DATABASE_URL:-}" ]; then
	DATABASE_URL=$(scripts/pg.sh start .dev/pg)
	export DATABASE_URL
	pg_started=1
	echo "local PostgreSQL under .dev/pg: DATABASE_URL=$DATABASE_URL" >&2
fi
: "${KEYSTONE_DATA_DIR:=.dev/data}"
export KEYSTONE_DATA_DIR
mkdir -p "$KEYSTONE_DATA_DIR"
# `make run PUBLIC_URL=https://…`: the address GitHub and your browser reach
# Keystone at (a tunnel's, on a laptop; see README.md).
if [ -n "${PUBLIC_URL:-}" ]; then
	KEYSTONE_PUBLIC_URL=$PUBLIC_URL
	export KEYSTONE_PUBLIC_URL
fi

# The router first: `keystone serve` drives it once its admin socket exists
# (it also runs without it, serving apps on their host ports).
bin/keystone proxy &
proxy_pid=$!
sock=${KEYSTONE_PROXY_ADMIN:-unix://$KEYSTONE_DATA_DIR/proxy.sock}
sock=${sock#unix://}
i=0
while [ ! -S "$sock" ] && [ $i -lt 50 ] && kill -0 "$proxy_pid" 2>/dev/null; do
	sleep 0.1
	i=$((i + 1))
done

# Not exec: the traps above must run when Keystone exits.
status=0
bin/keystone serve || status=$?
exit "$status"
