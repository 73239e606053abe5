#!/usr/bin/env bash
# Start the machine's PostgreSQL 15 and make sure the test role exists.
# Prints the DATABASE_URL to use. Idempotent.
set -euo pipefail
PGVER=${PGVER:-15}
if ! command -v pg_ctlcluster >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "postgresql-$PGVER" >/dev/null
fi
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$PGVER main$"; then
  pg_createcluster "$PGVER" main >/dev/null
fi
pg_ctlcluster "$PGVER" main start 2>/dev/null || true
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
pg_isready -q -h 127.0.0.1
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='kendis'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE kendis LOGIN CREATEDB PASSWORD 'kendis'\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='kendis'\"" | grep -q 1 \
  || su postgres -c "createdb -O kendis kendis"
echo "postgres://kendis:kendis@127.0.0.1:5432/kendis"
