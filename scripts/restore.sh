#!/bin/sh
# restore.sh [--clean] FILE
#
# Restores a dump made by backup.sh into the database of DATABASE_URL, in one
# transaction: on any error nothing is restored. The database must exist and
# be empty (createdb, or a new PostgreSQL) unless --clean is given, which drops
# Keystone's objects first. Stop every Keystone process before restoring, run
# `keystone audit verify` after. Object owners are kept: restore as a
# superuser or as the owner role of docs/runbook.md ("Audit role"), with the
# roles created first.
set -eu
clean=
if [ "${1:-}" = --clean ]; then
	clean=--clean
	shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--clean] FILE" >&2; exit 2; }
file=$1
: "${DATABASE_URL:?DATABASE_URL is not set}"
for bin in pg_restore psql; do
	command -v "$bin" >/dev/null 2>&1 || { echo "$0: $bin not found (install the PostgreSQL client)" >&2; exit 1; }
done
[ -r "$file" ] || { echo "$0: cannot read $file" >&2; exit 1; }

if [ -z "$clean" ]; then
	tables=$(psql --no-psqlrc --quiet --tuples-only --no-align --dbname="$DATABASE_URL" \
		--command="SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
	if [ "$tables" != 0 ]; then
		echo "$0: the database already has $tables tables: restore into an empty database, or pass --clean to replace them" >&2
		exit 1
	fi
fi
pg_restore --exit-on-error --single-transaction $clean ${clean:+--if-exists} --dbname="$DATABASE_URL" "$file"
echo "restored $file"
