#!/bin/sh
# backup.sh [FILE]
#
# Dumps Keystone's database (DATABASE_URL) with pg_dump in the custom format
# (compressed, restorable table by table with pg_restore) to FILE, by default
# keystone-YYYYMMDD-HHMMSS.dump in the current directory, and prints FILE.
# Safe while Keystone runs: pg_dump reads one consistent snapshot. The dump
# holds secrets encrypted and the audit trail with its hash chain; keep it as
# carefully as the database (the encryption keys are NOT in it: back them up
# separately, see docs/runbook.md).
set -eu
[ $# -le 1 ] || { echo "usage: $0 [FILE]" >&2; exit 2; }
: "${DATABASE_URL:?DATABASE_URL is not set}"
command -v pg_dump >/dev/null 2>&1 || { echo "$0: pg_dump not found (install the PostgreSQL client)" >&2; exit 1; }
file=${1:-keystone-$(date -u +%Y%m%d-%H%M%S).dump}

umask 077
pg_dump --format=custom --compress=6 --file="$file.partial" --dbname="$DATABASE_URL"
mv "$file.partial" "$file"
echo "$file"
