#!/usr/bin/env bash
# The docker-compose.yml shape without Docker: PostgreSQL (the machine's own cluster), a
# migration, the background worker and the API with N processes in the foreground; Ctrl-C stops
# both.
#   scripts/compose-local.sh            # database "hearth" on 127.0.0.1:5432
#   HEARTH_WORKERS=4 scripts/compose-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."
make -s install
bash scripts/ensure-postgres.sh
DB=${HEARTH_PG_DB:-hearth}
psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='$DB'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -c "create database \"$DB\""
export HEARTH_DATABASE_URL=${HEARTH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/$DB}
export HEARTH_WORKERS=${HEARTH_WORKERS:-2}
export HEARTH_BLOB_STORE=${HEARTH_BLOB_STORE:-database}  # as docker-compose.yml
.venv/bin/hearth db upgrade
.venv/bin/hearth worker &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT
.venv/bin/hearth serve
