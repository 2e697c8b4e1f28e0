#!/bin/sh
# postgres-app-role.sh: run once by the postgres image on an empty data volume
# (docker-compose.yml mounts it into /docker-entrypoint-initdb.d). It creates
# keystone_app, the role `keystone serve` and the CLI connect as. Keystone
# grants it its rights itself at every start-up, as the owning role of
# KEYSTONE_MIGRATE_DATABASE_URL, with the audit trail append-only
# (docs/runbook.md, "Audit role").
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v pw="$KEYSTONE_DB_PASSWORD" <<'SQL'
CREATE ROLE keystone_app LOGIN PASSWORD :'pw';
SQL
