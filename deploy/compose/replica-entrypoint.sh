#!/usr/bin/env bash
# Entrypoint of db-replica (postgres:15 image): on first start, clone the primary with
# pg_basebackup into an empty data directory and configure streaming (-R writes standby.signal
# and primary_conninfo); then hand over to the image's own entrypoint, which starts Postgres as
# a hot standby. Later starts find the data directory and only resume streaming.
set -euo pipefail

: "${PGDATA:?}" "${PRIMARY_HOST:?}" "${REPLICATION_USER:?}" "${REPLICATION_PASSWORD:?}"
: "${REPLICATION_SLOT:?}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    # -c fast: without it pg_basebackup waits for the primary's next scheduled checkpoint,
    # which took 1.5 min on an idle primary.
    if ! PGPASSWORD="$REPLICATION_PASSWORD" gosu postgres pg_basebackup \
        --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" --username="$REPLICATION_USER" \
        --pgdata="$PGDATA" --write-recovery-conf --wal-method=stream \
        --slot="$REPLICATION_SLOT" --checkpoint=fast --no-password; then
        # A half-copied directory has PG_VERSION and would be started as if complete next time.
        find "$PGDATA" -mindepth 1 -delete
        exit 1
    fi
fi

exec docker-entrypoint.sh "$@"
