#!/usr/bin/env bash
# Back up and restore the local stack's databases (docs/runbook.md, "Backup and restore").
#
#   deploy/local/backup.sh dump    DIR   pg_dump of the write side and of the read side into DIR (created)
#   deploy/local/backup.sh restore DIR   load DIR into this state dir's PostgreSQL, replacing both databases
#
# The write side is FerretDB's: it keeps every MongoDB database of ours (hl_<service>_<tenant>) as a schema of
# one PostgreSQL database, `ferretdb`; a pg_dump of that database is the write side's backup (with a MongoDB
# replica set in production: mongodump --oplog / mongorestore --oplogReplay, see the runbook). The read side is
# the database `hongling_read` (a schema per tenant): dumped too, because restoring it is quick and matches the
# write side dumped with it, where rebuilding it (python -m services.projector --rebuild) needs the services'
# state topics on Kafka, which a new stack does not have. Each dump is one consistent snapshot of its database
# (pg_dump's transaction); for no event to be in flight between the two, take it with the gateway and front
# door stopped and the consumers caught up (the runbook's procedure).
#
# `restore` wants the services stopped (it refuses otherwise); it stops FerretDB, drops and recreates both
# databases from the dump and starts FerretDB again. The data stays sealed with the data key and signed with
# the audit key it was written with: the restored stack must run with the same HONGLING_DATA_KEY and
# HONGLING_AUDIT_SIGNING_KEY (locally: copy the state dir's secrets.env), never stored in DIR by this script.
# Ports and the state dir come from deploy/local/env.sh (HONGLING_PORT_BASE, HONGLING_STATE_DIR).
set -euo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=deploy/local/env.sh
source "${HERE}/env.sh"

DATABASES=(ferretdb hongling_read)
PG_ROLE=hongling

usage() {
  echo "usage: ${0##*/} {dump|restore} DIR   (state ${HONGLING_STATE_DIR}, PostgreSQL 127.0.0.1:${HONGLING_POSTGRES_PORT})" >&2
  exit 2
}
die() {
  echo "backup: ERROR: $*" >&2
  exit 1
}

[[ $# -eq 2 ]] || usage
cmd="$1"
dir="$2"
[[ -s "${HONGLING_READ_DB_PASSWORD_FILE}" ]] ||
  die "no PostgreSQL password at ${HONGLING_READ_DB_PASSWORD_FILE}: is ${HONGLING_STATE_DIR} a started stack? (deploy/local/stack.sh start)"
export PGPASSWORD PGHOST=127.0.0.1 PGPORT="${HONGLING_POSTGRES_PORT}" PGUSER="${PG_ROLE}" PGCONNECT_TIMEOUT=5
PGPASSWORD="$(<"${HONGLING_READ_DB_PASSWORD_FILE}")"
BIN="${HONGLING_POSTGRES_BIN_DIR}"
psql_do() { "${BIN}/psql" -X -q -t -A -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
psql_do postgres "SELECT 1" >/dev/null 2>&1 ||
  die "PostgreSQL does not answer on 127.0.0.1:${HONGLING_POSTGRES_PORT} (deploy/local/stack.sh start postgres)"

case "${cmd}" in
  dump)
    mkdir -p "${dir}"
    started=${SECONDS}
    for db in "${DATABASES[@]}"; do
      # Custom format: compressed, restored in parallel or selectively by pg_restore. No owners or grants: the
      # target cluster's role owns what it restores.
      "${BIN}/pg_dump" --format=custom --no-owner --no-privileges --file="${dir}/${db}.pgdump.tmp" "${db}"
      mv -f -- "${dir}/${db}.pgdump.tmp" "${dir}/${db}.pgdump"
      echo "[backup] ${db}: $(du -h -- "${dir}/${db}.pgdump" | cut -f1) -> ${dir}/${db}.pgdump"
    done
    {
      echo "# Hongling backup, deploy/local/backup.sh dump"
      echo "taken_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
      echo "postgres=$(psql_do postgres "SHOW server_version")"
      echo "ferretdb=${HONGLING_FERRETDB_VERSION}"
      echo "source_state_dir=${HONGLING_STATE_DIR}"
      for db in "${DATABASES[@]}"; do echo "sha256_${db}=$(sha256sum -- "${dir}/${db}.pgdump" | cut -d' ' -f1)"; done
    } >"${dir}/manifest.txt"
    echo "[backup] done in $((SECONDS - started)) s: ${dir} (restore with the same HONGLING_DATA_KEY and HONGLING_AUDIT_SIGNING_KEY)"
    ;;
  restore)
    [[ -f "${dir}/manifest.txt" ]] || die "${dir}/manifest.txt not found: not a backup made by '${0##*/} dump'"
    for db in "${DATABASES[@]}"; do
      [[ -f "${dir}/${db}.pgdump" ]] || die "${dir}/${db}.pgdump not found"
      want="$(sed -n "s/^sha256_${db}=//p" "${dir}/manifest.txt")"
      [[ "$(sha256sum -- "${dir}/${db}.pgdump" | cut -d' ' -f1)" == "${want}" ]] ||
        die "${dir}/${db}.pgdump does not match its sha256 in manifest.txt (damaged or changed)"
    done
    running="$(bash "${HERE}/services.sh" status | awk '$2 == "running" {print $1}' | tr '\n' ' ')"
    [[ -z "${running// /}" ]] ||
      die "services still run against this stack (${running% }): stop them first (deploy/local/services.sh stop)"
    started=${SECONDS}
    # FerretDB keeps what it knows of the databases in memory: stopped while its storage is replaced.
    bash "${HERE}/stack.sh" stop ferretdb >/dev/null
    for db in "${DATABASES[@]}"; do
      psql_do postgres "DROP DATABASE IF EXISTS ${db} WITH (FORCE)"
      psql_do postgres "CREATE DATABASE ${db}"
      "${BIN}/pg_restore" --exit-on-error --no-owner --no-privileges --role="${PG_ROLE}" --dbname="${db}" \
        "${dir}/${db}.pgdump"
      echo "[restore] ${db}: restored from ${dir}/${db}.pgdump"
    done
    bash "${HERE}/stack.sh" start ferretdb >/dev/null
    echo "[restore] done in $((SECONDS - started)) s into ${HONGLING_STATE_DIR} (FerretDB on 127.0.0.1:${HONGLING_MONGO_PORT})"
    ;;
  *) usage ;;
esac
