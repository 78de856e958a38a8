#!/bin/bash
# First start of the primary (docker-compose.yml): a role for the streaming replica and the
# pg_hba line that lets it connect for replication from the compose network.
set -e
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
  -c "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicate'"
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
