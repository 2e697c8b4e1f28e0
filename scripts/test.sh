#!/bin/sh
# test.sh: `make test`. go vet, every test with -race, then a short run of each
# fuzz target. With DATABASE_URL unset it starts a throwaway PostgreSQL and
# removes it afterwards.
set -eu
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
	pgdir=$(mktemp -d "${TMPDIR:-/tmp}/keystone-pg.XXXXXX")
	trap 'scripts/pg.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
	trap 'exit 130' INT TERM
	DATABASE_URL=$(scripts/pg.sh start "$pgdir" test)
	export DATABASE_URL
fi

go vet ./...
go test -race -count=1 -timeout 20m ./...

# Fuzz targets: package and name. Each runs briefly on top of its seed corpus.
# The budget is a count of executions, not a duration: Go 1.26's coordinator
# can report a bare "context deadline exceeded" failure when a duration runs out
# while a starved worker is mid-call (golang/go#75804, fixed in Go 1.27), which
# failed CI with no failing input. A count has no deadline to race.
fuzztime=${FUZZTIME:-20000x}
for target in \
	./internal/webhook:FuzzWebhook \
	./internal/audit:FuzzCanonicalJSON \
	./internal/secrets:FuzzRedact \
	./internal/web:FuzzParseANSI \
	./internal/deploy/keystoneyml:FuzzParse \
	./internal/conversation:FuzzParse \
	./internal/router:FuzzHost \
	; do
	pkg=${target%%:*}
	name=${target#*:}
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done
