#!/usr/bin/env bash
# Make sure PostgreSQL answers on 127.0.0.1:5432. If it does not, start the Debian cluster that
# `pg_lsclusters` names (pg_ctlcluster). If that fails, stop loudly: the suite never skips
# its PostgreSQL half.
set -euo pipefail
HOST=${HEARTH_TEST_PG_HOST:-127.0.0.1}
PORT=${HEARTH_TEST_PG_PORT:-5432}

ready() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; }

if ready; then exit 0; fi
echo "PostgreSQL is not answering on $HOST:$PORT; trying to start it" >&2
if ! command -v pg_lsclusters >/dev/null; then
  echo "FATAL: PostgreSQL is not running and pg_lsclusters is not installed (apt-get install postgresql)" >&2
  exit 1
fi
read -r ver cluster _ < <(pg_lsclusters --no-header | awk -v p="$PORT" '$3 == p {print $1, $2}' | head -1) || true
if [ -z "${ver:-}" ]; then
  echo "FATAL: no PostgreSQL cluster on port $PORT in pg_lsclusters" >&2
  exit 1
fi
pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start || pg_ctlcluster "$ver" "$cluster" start
for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
echo "FATAL: PostgreSQL cluster $ver/$cluster did not come up on $HOST:$PORT" >&2
exit 1
