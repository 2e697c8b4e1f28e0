#!/bin/sh
# bench.sh: `make bench`. Starts a PostgreSQL with production durability
# (fsync and synchronous_commit on) unless DATABASE_URL is given, then runs
# each benchmark and prints its table. Figures are kept in docs/benchmarks.md.
# BENCH=intake,pages,deploy,outbox,audit,router picks some (default: all).
set -eu
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
	pgdir=$(mktemp -d "${TMPDIR:-/tmp}/keystone-bench-pg.XXXXXX")
	trap 'scripts/pg.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
	trap 'exit 130' INT TERM
	DATABASE_URL=$(scripts/pg.sh start "$pgdir")
	export DATABASE_URL
fi
want=",${BENCH:-intake,pages,deploy,outbox,audit,router},"
enabled() { case "$want" in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

if enabled intake; then
	echo "== webhook intake (issue 2) =="
	go run ./internal/bench/webhookbench -keystone bin/keystone
fi
if enabled pages; then
	echo "== status page: / and an app page, 100 apps x 1000 deployments (issue 5) =="
	go test -run '^$' -bench 'BenchmarkPages|BenchmarkRenderOverview' -benchtime 3000x ./internal/web/
fi
if enabled deploy; then
	echo "== deploy engine against the raw commands (issue 3) =="
	go test -run '^$' -bench BenchmarkDeploy -benchtime 7x -timeout 30m ./internal/deploy/e2e/
fi
if enabled outbox; then
	echo "== GitHub outbox (issue 4) =="
	go test -run '^$' -bench . -benchtime 2000x ./internal/outbox/
fi
if enabled audit; then
	echo "== audit chain and secrets (issue 6) =="
	go test -run '^$' -bench 'AppendAudit|Verify' ./internal/store
	go test -run '^$' -bench . ./internal/secrets ./internal/audit
fi
if enabled router; then
	echo "== keystone proxy beside kamal-proxy v0.9.2 (issue 11) =="
	# KAMAL_PROXY may name a prebuilt binary; else it is built from the module proxy.
	kamal=${KAMAL_PROXY:-$(scripts/kamal-proxy.sh || true)}
	[ -n "$kamal" ] || echo "kamal-proxy unavailable: keystone only"
	go run ./internal/bench/routerbench -keystone bin/keystone -kamal "$kamal"
fi
