#!/bin/sh
# pg.sh start DIR [test] | stop DIR
#
# Runs a throwaway PostgreSQL from the machine's initdb/pg_ctl with its data and
# Unix socket under DIR (no TCP port, so runs never collide). As root it runs
# the server as the `postgres` user, which PostgreSQL requires; as anyone else
# it runs as that user. `start` prints the DATABASE_URL to use; the data is kept
# across runs. With `test`, durability is traded for speed (fsync off).
set -eu

usage() { echo "usage: $0 start DIR [test] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
data="$dir/data"

as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

for bin in initdb pg_ctl postgres; do
	command -v "$bin" >/dev/null 2>&1 || { echo "$0: $bin not found on PATH (install PostgreSQL server binaries)" >&2; exit 1; }
done

case "$cmd" in
start)
	[ "$(id -u)" = 0 ] && chown postgres "$dir"
	if [ ! -f "$data/PG_VERSION" ]; then
		as_owner initdb -D "$data" -U keystone -A trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; exit 1; }
		{
			echo "listen_addresses = ''"
			echo "unix_socket_directories = '$dir'"
			echo "max_connections = 200"
			if [ "${3:-}" = test ]; then
				echo "fsync = off"
				echo "full_page_writes = off"
			fi
		} >>"$data/postgresql.conf"
	fi
	if ! as_owner pg_ctl -D "$data" status >/dev/null 2>&1; then
		as_owner pg_ctl -D "$data" -l "$dir/postgres.log" -w -t 60 start >/dev/null ||
			{ tail -n 20 "$dir/postgres.log" >&2; exit 1; }
	fi
	echo "postgres://keystone@/postgres?host=$dir&sslmode=disable"
	;;
stop)
	if [ -f "$data/PG_VERSION" ] && as_owner pg_ctl -D "$data" status >/dev/null 2>&1; then
		as_owner pg_ctl -D "$data" -m fast -w stop >/dev/null
	fi
	;;
*) usage ;;
esac
