#!/bin/sh
# faults.sh: `make faults`, the whole-system fault suite (internal/faults,
# issue 15). It starts its own throwaway PostgreSQL (which the suite stops and
# starts again: KEYSTONE_FAULTS_PGDIR is its directory), runs the scenarios one
# at a time against the built binaries, real Docker and git, and writes the
# report table with the date and machine to docs/reliability.md.
#
# KEYSTONE_FAULTS_SOAK: how long the soak scenario runs (default 2m).
# KEYSTONE_FAULTS_RUN: a -run pattern to run some scenarios only (the table is
# then printed only: docs/reliability.md keeps the last whole run).
set -eu
cd "$(dirname "$0")/.."

pgdir=$(mktemp -d "${TMPDIR:-/tmp}/keystone-faults-pg.XXXXXX")
report=$(mktemp "${TMPDIR:-/tmp}/keystone-faults-report.XXXXXX")
trap 'scripts/pg.sh stop "$pgdir"; rm -rf "$pgdir" "$report"' EXIT
trap 'exit 130' INT TERM
DATABASE_URL=$(scripts/pg.sh start "$pgdir" test)
export DATABASE_URL CI=true KEYSTONE_FAULTS_PGDIR="$pgdir" KEYSTONE_FAULTS_REPORT="$report"

run=${KEYSTONE_FAULTS_RUN:-.}

started=$(date -u +%s)
status=0
go test -tags faults -count=1 -v -timeout 60m -run "$run" ./internal/faults/ || status=$?
took=$(($(date -u +%s) - started))

out=docs/reliability.md
if [ "$run" = . ] && [ -s "$report" ]; then
	{
		echo "# Reliability: the fault suite"
		echo
		echo "The latest run of \`make faults\` (internal/faults, issue 15): each scenario starts"
		echo "the built \`keystone serve\` and \`keystone proxy\` with real PostgreSQL, Docker and git"
		echo "and the fake GitHub, injects its faults, and counts what is observable from outside."
		echo "Lost, pending and orphaned must be 0; failed requests 0 except while the proxy"
		echo "itself is down."
		echo
		echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC') ($took s, exit status $status)"
		echo "- Machine: \`$(uname -a)\`, $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') CPUs"
		echo "- Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
		echo
		cat "$report"
	} >"$out"
	echo "wrote $out"
fi
exit "$status"
