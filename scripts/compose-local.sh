#!/usr/bin/env bash
# The docker-compose.yml shape without Docker, on this machine: PostgreSQL (the machine's own
# cluster), a migration, the background worker, and the API — one node in the foreground, or
# with HEARTH_NODES=N, N API nodes on ports 8081… behind HAProxy on 8080 (HTTP health-checked on
# /healthz, the DICOM port 11112 following the node elected to listen), as docker-compose.yml
# runs them. A streaming replica for reads is used when HEARTH_DATABASE_REPLICA_URL is set.
# Ctrl-C stops everything.
#   scripts/compose-local.sh                      # database "hearth" on 127.0.0.1:5432
#   HEARTH_WORKERS=4 scripts/compose-local.sh
#   HEARTH_NODES=2 scripts/compose-local.sh       # two API nodes behind HAProxy
set -euo pipefail
cd "$(dirname "$0")/.."
make -s install
bash scripts/ensure-postgres.sh
DB=${HEARTH_PG_DB:-hearth}
NODES=${HEARTH_NODES:-1}
psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='$DB'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -c "create database \"$DB\""
export HEARTH_DATABASE_URL=${HEARTH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/$DB}
export HEARTH_WORKERS=${HEARTH_WORKERS:-2}
export HEARTH_BLOB_STORE=${HEARTH_BLOB_STORE:-database}  # as docker-compose.yml
mkdir -p var
if [ -z "${HEARTH_SECRET_KEYS:-}" ] && [ "$NODES" -gt 1 ]; then
  # every node must share the keys that encrypt stored secrets (docs/deployment.md)
  [ -f var/cluster-secret-keys ] || .venv/bin/python -c \
    'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' > var/cluster-secret-keys
  chmod 600 var/cluster-secret-keys
  HEARTH_SECRET_KEYS=$(cat var/cluster-secret-keys)
  export HEARTH_SECRET_KEYS
fi
.venv/bin/hearth db upgrade
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
.venv/bin/hearth worker > var/worker.log 2>&1 &
pids+=($!)
if [ "$NODES" -le 1 ]; then
  .venv/bin/hearth serve
  exit
fi
command -v haproxy >/dev/null || { echo "HEARTH_NODES>1 needs haproxy (apt-get install haproxy)"; exit 1; }
export HEARTH_BASE_URL=${HEARTH_BASE_URL:-http://127.0.0.1:8080}
cfg=var/haproxy.cfg
{
  printf 'defaults\n  timeout connect 3s\n  timeout client 120s\n  timeout server 120s\n  retries 2\n  option redispatch\n'
  printf 'frontend fhir\n  mode http\n  bind 127.0.0.1:8080\n  default_backend api\n'
  printf 'backend api\n  mode http\n  balance leastconn\n  option httpchk GET /healthz\n'
  for n in $(seq 1 "$NODES"); do printf '  server n%s 127.0.0.1:%s check inter 1s fall 2 rise 1\n' "$n" $((8080 + n)); done
  printf 'frontend dicom\n  mode tcp\n  bind 127.0.0.1:11112\n  default_backend dicom\n'
  printf 'backend dicom\n  mode tcp\n'
  for n in $(seq 1 "$NODES"); do printf '  server n%s 127.0.0.1:%s check inter 1s fall 2 rise 1\n' "$n" $((11112 + n)); done
} > "$cfg"
for n in $(seq 1 "$NODES"); do
  # each node its own data directory and ports; all share the database and the keys
  HEARTH_DATA_DIR=var/node$n .venv/bin/hearth serve --port $((8080 + n)) --dicom-port $((11112 + n)) \
    > "var/node$n.log" 2>&1 &
  pids+=($!)
done
echo "  $NODES API nodes (logs var/node*.log) behind HAProxy: http://127.0.0.1:8080 (FHIR /fhir), DICOM 127.0.0.1:11112"
haproxy -f "$cfg" -db
