#!/usr/bin/env bash
# Local infrastructure for Hongling, without Docker: a single-node KRaft Kafka, a private PostgreSQL 15
# cluster, and FerretDB (the MongoDB wire protocol) storing its data in that PostgreSQL.
#
#   deploy/local/stack.sh start  [kafka] [postgres] [ferretdb]   start (idempotent) and wait until they serve
#   deploy/local/stack.sh stop   [kafka] [postgres] [ferretdb]   stop (up to $HONGLING_STOP_TIMEOUT s, then SIGKILL)
#   deploy/local/stack.sh status [kafka] [postgres] [ferretdb]   one line per component (always exits 0)
#   deploy/local/stack.sh wait   [kafka] [postgres] [ferretdb]   wait until already started components serve
#   deploy/local/stack.sh purge                                  stop all, delete their data (a fresh stack next)
#
# Components default to all three; starting FerretDB starts PostgreSQL first. Ports, directories and
# tools come from deploy/local/env.sh. Everything binds 127.0.0.1 only. Run as root, PostgreSQL (which
# refuses to run as root) runs as the unprivileged user `postgres` (or $HONGLING_POSTGRES_OS_USER).
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=deploy/local/env.sh
source "${HERE}/env.sh"

ALL_COMPONENTS=(kafka postgres ferretdb)

KAFKA_DIR="${HONGLING_STATE_DIR}/kafka"
KAFKA_DATA="${KAFKA_DIR}/data"
KAFKA_PROPS="${KAFKA_DIR}/server.properties"
KAFKA_CLUSTER_ID_FILE="${KAFKA_DIR}/cluster.id"
KAFKA_LOG="${HONGLING_LOG_DIR}/kafka.log"
KAFKA_OUT="${HONGLING_LOG_DIR}/kafka.stdout.log"
LOG4J2_CONFIG="${HERE}/log4j2.properties"

FERRETDB_DIR="${HONGLING_STATE_DIR}/ferretdb"
FERRETDB_LOG="${HONGLING_LOG_DIR}/ferretdb.log"

# The PostgreSQL cluster: its data directory is owned by the user the server runs as; the password of
# its one role (FerretDB's) is made once, beside it, readable by the invoking user only.
PG_DIR="${HONGLING_STATE_DIR}/postgres"
PG_DATA="${PG_DIR}/data"
PG_PASSWORD_FILE="${PG_DIR}/password"
PG_LOG="${HONGLING_LOG_DIR}/postgres.log"
PG_ROLE=hongling
PG_FERRETDB_DB=ferretdb
PG_READ_DB=hongling_read
PG_OS_USER=""
if [[ ${EUID} -eq 0 ]]; then
  PG_OS_USER="${HONGLING_POSTGRES_OS_USER:-postgres}"
fi

usage() {
  cat >&2 <<EOF
usage: ${0##*/} {start|stop|status|wait} [kafka] [postgres] [ferretdb]  |  ${0##*/} purge
  state: ${HONGLING_STATE_DIR}
  ports: kafka 127.0.0.1:${HONGLING_KAFKA_PORT} (controller ${HONGLING_KAFKA_CONTROLLER_PORT}), postgres 127.0.0.1:${HONGLING_POSTGRES_PORT}, ferretdb 127.0.0.1:${HONGLING_MONGO_PORT}
EOF
  exit 2
}

die() {
  echo "stack: ERROR: $*" >&2
  exit 1
}

# ---- helpers ----------------------------------------------------------------------------------

pid_file() { printf '%s/%s.pid' "${HONGLING_RUN_DIR}" "$1"; }

# canonical PATH: the physical absolute form of PATH (whose parent directory exists), so that
# "<repo>/deploy/local/../../.local/x" and "<repo>/.local/x" compare equal.
canonical() {
  local dir
  if dir="$(cd -- "$(dirname -- "$1")" 2>/dev/null && pwd -P)"; then
    printf '%s/%s' "${dir%/}" "$(basename -- "$1")"
  else
    printf '%s' "$1"
  fi
}

# The path in the component's command line that identifies its instance: the server.properties
# of Kafka, the --state-dir of FerretDB.
instance_path() {
  case "$1" in
    kafka) printf '%s' "${KAFKA_PROPS}" ;;
    postgres) readlink -m -- "${PG_DATA}" ;;
    ferretdb) printf '%s' "${FERRETDB_DIR}" ;;
  esac
}

# process_instance_path PID COMPONENT: that path as found in the command line of PID.
process_instance_path() {
  local arg prev=""
  if [[ -r "/proc/$1/cmdline" ]]; then
    while IFS= read -r -d '' arg; do
      case "$2:${prev}:${arg}" in
        kafka:*:*/server.properties) printf '%s' "${arg}" && return 0 ;;
        postgres:-D:*) printf '%s' "${arg}" && return 0 ;;
        ferretdb:*:--state-dir=*) printf '%s' "${arg#--state-dir=}" && return 0 ;;
      esac
      prev="${arg}"
    done <"/proc/$1/cmdline"
  else # no /proc (macOS): arguments are space-joined, so match the expected path literally
    arg="$(ps -o args= -p "$1" 2>/dev/null || true)"
    [[ "${arg}" != *"$(instance_path "$2")"* ]] || printf '%s' "$(instance_path "$2")"
  fi
}

# Print the pid of the component's process if it is alive and really ours; else print nothing.
running_pid() {
  local file pid path
  file="$(pid_file "$1")"
  [[ -s "${file}" ]] || return 0
  pid="$(<"${file}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 0
  kill -0 "${pid}" 2>/dev/null || return 0
  path="$(process_instance_path "${pid}" "$1")"
  [[ -n "${path}" && "$(canonical "${path}")" == "$(canonical "$(instance_path "$1")")" ]] || return 0
  printf '%s' "${pid}"
}

# Does something accept TCP connections on 127.0.0.1:PORT?
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Who listens on the port (best effort, for error messages).
port_owner() {
  command -v ss >/dev/null 2>&1 || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | head -n 1 |
    sed -n -E 's/.*users:\(\("([^"]*)",pid=([0-9]+).*/(\1, pid \2)/p' || true
}

# Ports of a component, as "VARIABLE_NAME" words.
port_vars() {
  case "$1" in
    kafka) echo HONGLING_KAFKA_PORT HONGLING_KAFKA_CONTROLLER_PORT ;;
    postgres) echo HONGLING_POSTGRES_PORT ;;
    ferretdb) echo HONGLING_MONGO_PORT ;;
  esac
}

main_port() {
  case "$1" in
    kafka) printf '%s' "${HONGLING_KAFKA_PORT}" ;;
    postgres) printf '%s' "${HONGLING_POSTGRES_PORT}" ;;
    ferretdb) printf '%s' "${HONGLING_MONGO_PORT}" ;;
  esac
}

log_file() {
  case "$1" in
    kafka) printf '%s' "${KAFKA_LOG}" ;;
    postgres) printf '%s' "${PG_LOG}" ;;
    ferretdb) printf '%s' "${FERRETDB_LOG}" ;;
  esac
}

# Fail if a port of the component is taken by a process that is not this checkout's.
check_ports_free() {
  local var port owner
  for var in $(port_vars "$1"); do
    port="${!var}"
    if port_open "${port}"; then
      owner="$(port_owner "${port}")"
      die "$1: port ${port} on 127.0.0.1 (${var}) is already in use by another process${owner:+ ${owner}}.
  Stop that process, or move every Hongling port of this checkout, e.g.:
    HONGLING_PORT_BASE=$((HONGLING_PORT_BASE + 1000)) ${0##*/} start     (now HONGLING_PORT_BASE=${HONGLING_PORT_BASE})"
    fi
  done
}

# hex_to_ascii HEX: decode a hex string.
hex_to_ascii() {
  local hex="$1" out="" i
  for ((i = 0; i < ${#hex}; i += 2)); do
    out+="$(printf '%b' "\\x${hex:i:2}")"
  done
  printf '%s' "${out}"
}

# read_hex N: read exactly N bytes from fd 3 (5 s at most) and print them as hex.
read_hex() {
  timeout 5 dd bs=1 count="$1" <&3 2>/dev/null | od -An -tx1 -v | tr -d ' \n'
}

# kafka_probe PORT: send a Kafka Metadata request (v4, no topics) over bash /dev/tcp and check the
# answer names at least one broker. Prints "broker <id> at <host>:<port>, cluster <id>".
# The broker answers only once its request handlers are enabled, i.e. after it has caught up
# with the metadata log and been unfenced: an open port alone is not enough (the socket is bound
# early in start-up).
kafka_probe() (
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || exit 1
  # size 23 | api_key 3 | api_version 4 | correlation_id 0x484c | client_id "hongling"
  #         | topics [] | allow_auto_topic_creation false
  printf '\x00\x00\x00\x17\x00\x03\x00\x04\x00\x00\x48\x4c\x00\x08hongling\x00\x00\x00\x00\x00' >&3
  local size body pos n i host_len rack_len id_len node="" host="" port="" cluster=""
  size="$(read_hex 4)"
  [[ ${#size} -eq 8 ]] || exit 1
  size=$((16#${size}))
  ((size > 12 && size < 1048576)) || exit 1
  body="$(read_hex "${size}")"
  [[ ${#body} -eq $((size * 2)) && "${body:0:8}" == "0000484c" ]] || exit 1
  pos=16 # correlation_id, throttle_time_ms
  n=$((16#${body:pos:8}))
  pos=$((pos + 8))
  ((n >= 1 && n < 1000)) || exit 1
  for ((i = 0; i < n; i++)); do
    [[ -n "${node}" ]] || node=$((16#${body:pos:8}))
    host_len=$((16#${body:pos+8:4}))
    [[ -n "${host}" ]] || host="$(hex_to_ascii "${body:pos+12:host_len*2}")"
    pos=$((pos + 12 + host_len * 2))
    [[ -n "${port}" ]] || port=$((16#${body:pos:8}))
    rack_len=$((16#${body:pos+8:4}))
    pos=$((pos + 12))
    ((rack_len == 0xffff)) || pos=$((pos + rack_len * 2))
  done
  id_len=$((16#${body:pos:4}))
  ((id_len == 0xffff)) || cluster="$(hex_to_ascii "${body:pos+4:id_len*2}")"
  printf 'broker %s at %s:%s, cluster %s' "${node}" "${host}" "${port}" "${cluster:-?}"
)

# mongo_probe PORT: send a MongoDB OP_MSG {hello: 1, $db: "admin"} and check the reply has ok: 1.
mongo_probe() (
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || exit 1
  # header: length 52, requestID 0x4c48, responseTo 0, opCode 2013 (OP_MSG) | flagBits 0
  # | section kind 0 | BSON {hello: int32 1, $db: "admin"} (31 bytes)
  {
    printf '\x34\x00\x00\x00\x48\x4c\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00\x00\x00\x00\x00\x00'
    printf '\x1f\x00\x00\x00\x10hello\x00\x01\x00\x00\x00\x02\x24db\x00\x06\x00\x00\x00admin\x00\x00'
  } >&3
  local size body
  size="$(read_hex 4)"
  [[ ${#size} -eq 8 ]] || exit 1
  size=$((16#${size:6:2}${size:4:2}${size:2:2}${size:0:2})) # little-endian
  ((size > 16 && size < 1048576)) || exit 1
  body="$(read_hex $((size - 4)))"
  # responseTo == our requestID, opCode OP_MSG, and the element "ok": double 1.0
  [[ "${body:8:8}" == "484c0000" && "${body:16:8}" == "dd070000" ]] || exit 1
  [[ "${body}" == *016f6b00000000000000f03f* ]] || exit 1
  printf 'hello ok'
)

# probe COMPONENT: print a one-line description and succeed if the component serves requests.
probe() {
  case "$1" in
    kafka)
      local answer
      answer="$(kafka_probe "${HONGLING_KAFKA_PORT}")" || return 1
      # It must be this checkout's broker, not one that happens to sit on the port.
      if [[ -s "${KAFKA_CLUSTER_ID_FILE}" && "${answer}" != *"cluster $(<"${KAFKA_CLUSTER_ID_FILE}")" ]]; then
        return 1
      fi
      printf 'metadata: %s' "${answer}"
      ;;
    postgres)
      # It must be this checkout's cluster: our role's password is accepted.
      [[ -s "${PG_PASSWORD_FILE}" ]] || return 1
      pg_sql postgres "SELECT 'PostgreSQL ' || current_setting('server_version')" 2>/dev/null || return 1
      ;;
    ferretdb) mongo_probe "${HONGLING_MONGO_PORT}" ;;
  esac
}

print_log_tail() {
  local file="$1" lines="${2:-30}"
  if [[ -s "${file}" ]]; then
    echo "---- last ${lines} lines of ${file} ----" >&2
    tail -n "${lines}" "${file}" >&2
    echo "----" >&2
  fi
}

# wait_ready COMPONENT TIMEOUT: wait until probe succeeds, printing a dot per second.
# Fails at once if the process dies, and after TIMEOUT seconds with the tail of the log.
wait_ready() {
  local comp="$1" timeout="$2" start=${SECONDS} pid info waited launched sep=""
  launched="launched_at_${comp}"
  while true; do
    if info="$(probe "${comp}")"; then
      # Time since launch when this run started the process, else since waiting began.
      echo "${sep}ready in $((SECONDS - ${!launched:-${start}}))s (${info})"
      return 0
    fi
    pid="$(running_pid "${comp}")"
    if [[ -z "${pid}" ]]; then
      echo "${sep}FAILED" >&2
      echo "stack: ERROR: ${comp} exited during start-up" >&2
      print_log_tail "$(log_file "${comp}")"
      [[ "${comp}" != kafka ]] || print_log_tail "${KAFKA_OUT}" 15
      rm -f -- "$(pid_file "${comp}")"
      exit 1
    fi
    waited=$((SECONDS - start))
    if ((waited >= timeout)); then
      echo "${sep}TIMEOUT" >&2
      echo "stack: ERROR: ${comp} did not serve on 127.0.0.1:$(main_port "${comp}") within ${timeout}s" \
        "(still running as pid ${pid}; '${0##*/} stop ${comp}' stops it)" >&2
      print_log_tail "$(log_file "${comp}")"
      [[ "${comp}" != kafka ]] || print_log_tail "${KAFKA_OUT}" 15
      exit 1
    fi
    if ((waited > 0 && waited % 10 == 0)); then
      printf '%ss' "${waited}"
    else
      printf '.'
    fi
    sep=" "
    sleep 1
  done
}

# launch COMPONENT OUTPUT_FILE COMMAND...: start COMMAND detached (own session, no terminal,
# stdin from /dev/null, survives the calling shell); the process writes its own pid file
# before it execs, so the pid is right even when setsid has to fork.
launch() {
  local comp="$1" out="$2" file i
  shift 2
  file="$(pid_file "${comp}")"
  rm -f -- "${file}"
  printf '==== %s: stack.sh start %s ====\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${comp}" >>"$(log_file "${comp}")"
  local -a detach=(nohup)
  if command -v setsid >/dev/null 2>&1; then
    detach+=(setsid)
  fi
  # The inner shell closes every inherited descriptor above 2 (a caller's pipe held open by a
  # long-lived server would make e.g. `$(make up)` or a CI runner wait forever), writes its pid,
  # and becomes the server. (No redirection on that loop: bash would keep the saved stderr in a
  # descriptor the loop closes, and the server's own messages would be lost.)
  # shellcheck disable=SC2016 # $$ and $0 belong to the inner shell
  "${detach[@]}" bash -c '
    for fd in /dev/fd/*; do
      fd="${fd##*/}"
      if [[ "${fd}" =~ ^[0-9]+$ ]] && ((fd > 2)); then exec {fd}>&-; fi
    done
    echo "$$" >"$0.tmp" && mv -f -- "$0.tmp" "$0" && exec "$@"' "${file}" "$@" \
    </dev/null >>"${out}" 2>&1 &
  printf -v "launched_at_${comp}" '%s' "${SECONDS}"
  for ((i = 0; i < 50; i++)); do
    [[ -s "${file}" ]] && return 0
    sleep 0.1
  done
  die "${comp}: the process did not start (no pid file ${file}); see ${out}"
}

ensure_provisioned() {
  # Always: a warm run is instant, and it rebuilds FerretDB once when the cached build lacks a patch.
  "${HERE}/provision.sh"
}

ensure_state_dirs() {
  mkdir -p "${HONGLING_LOG_DIR}" "${HONGLING_RUN_DIR}"
  # Keep the default state dir (<repo>/.local/state) out of git without touching .gitignore.
  local local_dir="${HONGLING_REPO_ROOT}/.local"
  if [[ "${HONGLING_STATE_DIR}" == "${local_dir}/"* && ! -e "${local_dir}/.gitignore" ]]; then
    printf '# local runtime state and caches (deploy/local/stack.sh)\n*\n' >"${local_dir}/.gitignore"
  fi
}

# kafka_tool CLASS ARGS...: run a Kafka command-line class (it logs to kafka.log).
kafka_tool() {
  "${HONGLING_JAVA}" -Dkafka.logs.dir="${HONGLING_LOG_DIR}" -Dlog4j2.configurationFile="${LOG4J2_CONFIG}" \
    -cp "${HONGLING_KAFKA_LIBS}/*" "$@"
}

# ---- Kafka ------------------------------------------------------------------------------------

write_kafka_properties() {
  mkdir -p "${KAFKA_DATA}"
  cat >"${KAFKA_PROPS}.tmp" <<EOF
# Generated by deploy/local/stack.sh on every start; edit the script, not this file.
# Single-node KRaft: this process is both broker and controller, bound to 127.0.0.1 only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${HONGLING_KAFKA_CONTROLLER_PORT}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:${HONGLING_KAFKA_PORT},CONTROLLER://127.0.0.1:${HONGLING_KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${HONGLING_KAFKA_PORT},CONTROLLER://127.0.0.1:${HONGLING_KAFKA_CONTROLLER_PORT}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=${KAFKA_DATA}
metadata.log.dir=${KAFKA_DATA}

num.partitions=3
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

num.network.threads=2
num.io.threads=4
log.retention.hours=168
EOF
  # Idle cost (issue 20): the single controller appends a no-op record to the metadata log every 500 ms by
  # default (metadata.max.idle.interval.ms, KIP-835: how a broker notices a stale controller), which the
  # broker then replays; a few seconds is plenty on one node and costs a tenth of the wake-ups at rest.
  cat >>"${KAFKA_PROPS}.tmp" <<EOF
metadata.max.idle.interval.ms=5000
EOF
  mv -f -- "${KAFKA_PROPS}.tmp" "${KAFKA_PROPS}"
}

# Format the storage once: only when the data dir has no meta.properties yet.
format_kafka_storage() {
  [[ -f "${KAFKA_DATA}/meta.properties" ]] && return 0
  local out
  if [[ ! -s "${KAFKA_CLUSTER_ID_FILE}" ]]; then
    out="$(kafka_tool kafka.tools.StorageTool random-uuid 2>&1)" ||
      die "kafka: 'StorageTool random-uuid' failed: ${out}"
    [[ "${out}" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: unexpected cluster id from StorageTool: ${out}"
    printf '%s\n' "${out}" >"${KAFKA_CLUSTER_ID_FILE}"
  fi
  local cluster_id
  cluster_id="$(<"${KAFKA_CLUSTER_ID_FILE}")"
  out="$(kafka_tool kafka.tools.StorageTool format -t "${cluster_id}" -c "${KAFKA_PROPS}" 2>&1)" ||
    die "kafka: storage format failed:
${out}"
  echo "kafka: formatted ${KAFKA_DATA} (cluster id ${cluster_id})"
}

start_kafka() {
  write_kafka_properties
  format_kafka_storage
  : >"${KAFKA_OUT}"
  local -a heap
  read -r -a heap <<<"${HONGLING_KAFKA_HEAP_OPTS}"
  # -XX:PerfDataSamplingInterval: the JVM samples its jstat counters every 50 ms by default (20 wake-ups a second
  # of its periodic-task thread, about 0.1 % of a core at rest, issue 20); once a second is plenty for jstat.
  launch kafka "${KAFKA_OUT}" "${HONGLING_JAVA}" "${heap[@]}" -XX:PerfDataSamplingInterval=1000 \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Djava.net.preferIPv4Stack=true \
    -Dkafka.logs.dir="${HONGLING_LOG_DIR}" -Dlog4j2.configurationFile="${LOG4J2_CONFIG}" \
    -cp "${HONGLING_KAFKA_LIBS}/*" kafka.Kafka "${KAFKA_PROPS}"
}

# ---- PostgreSQL --------------------------------------------------------------------------------

# The command prefix that runs a command as the user the cluster belongs to (setpriv execs: no extra process).
pg_user_prefix() {
  PG_AS=()
  if [[ -n "${PG_OS_USER}" ]]; then
    PG_AS=(setpriv --reuid="${PG_OS_USER}" --regid="$(id -g "${PG_OS_USER}")" --init-groups --)
  fi
}

# as_pg COMMAND...: run COMMAND as the user the cluster belongs to.
as_pg() {
  pg_user_prefix
  "${PG_AS[@]}" "$@"
}

# pg_url DATABASE: the connection URL of our role (password included: never print it).
pg_url() {
  printf 'postgres://%s:%s@127.0.0.1:%s/%s' "${PG_ROLE}" "$(<"${PG_PASSWORD_FILE}")" "${HONGLING_POSTGRES_PORT}" "$1"
}

# pg_sql DATABASE SQL: run one statement over TCP as our role, print the bare result.
pg_sql() {
  PGPASSWORD="$(<"${PG_PASSWORD_FILE}")" PGCONNECT_TIMEOUT=3 "${HONGLING_POSTGRES_BIN_DIR}/psql" -X -q -t -A \
    -h 127.0.0.1 -p "${HONGLING_POSTGRES_PORT}" -U "${PG_ROLE}" -d "$1" -v ON_ERROR_STOP=1 -c "$2"
}

# The data directory must be reachable by the cluster's user. A state dir below a directory that user
# cannot enter (e.g. a checkout under /root) keeps its cluster in /var/tmp, linked from the state dir.
pg_data_dir() {
  mkdir -p "${PG_DIR}"
  chmod 755 "${PG_DIR}"
  [[ -n "${PG_OS_USER}" ]] || return 0
  id "${PG_OS_USER}" >/dev/null 2>&1 ||
    die "postgres: the user '${PG_OS_USER}' that runs PostgreSQL does not exist (Debian's postgresql-common makes it; or set HONGLING_POSTGRES_OS_USER)"
  [[ -e "${PG_DATA}" ]] && return 0
  if ! as_pg test -x "${PG_DIR}"; then
    local key elsewhere
    key="$(printf '%s' "$(canonical "${PG_DIR}")" | sha256sum | cut -c1-16)"
    elsewhere="/var/tmp/hongling-postgres/${key}"
    if [[ -e "${elsewhere}" ]]; then
      # Left by an earlier state dir at this same path, since deleted with its password: unusable.
      local pid=""
      [[ -f "${elsewhere}/postmaster.pid" ]] && pid="$(head -n1 -- "${elsewhere}/postmaster.pid")"
      if [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null; then
        die "postgres: pid ${pid} still serves ${elsewhere}, the cluster of a deleted state dir at ${HONGLING_STATE_DIR}; stop it (kill -INT ${pid}) and start again"
      fi
      rm -rf -- "${elsewhere}"
      echo "postgres: deleted ${elsewhere}, the cluster of an earlier state dir at this path (its password went with it)"
    fi
    mkdir -p /var/tmp/hongling-postgres
    chmod 755 /var/tmp/hongling-postgres
    mkdir -m 700 "${elsewhere}"
    ln -sfn "${elsewhere}" "${PG_DATA}"
    echo "postgres: ${PG_OS_USER} cannot enter ${PG_DIR}; its data lives in ${elsewhere} (linked from ${PG_DATA})"
  fi
}

# Create the cluster once: UTF-8, our role with a random password, password (SCRAM) auth only.
init_postgres() {
  pg_data_dir
  [[ -f "${PG_DATA}/PG_VERSION" ]] && return 0
  [[ -x "${HONGLING_POSTGRES_BIN_DIR}/initdb" ]] || die "postgres: ${HONGLING_POSTGRES_BIN_DIR}/initdb not found (run deploy/local/provision.sh)"
  if [[ ! -s "${PG_PASSWORD_FILE}" ]]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"${PG_PASSWORD_FILE}")
  fi
  mkdir -p "${PG_DATA}"
  local data pwfile out
  data="$(readlink -m -- "${PG_DATA}")"
  chmod 700 "${data}"
  pwfile="$(mktemp)"
  cat "${PG_PASSWORD_FILE}" >"${pwfile}"
  if [[ -n "${PG_OS_USER}" ]]; then
    chown -R "${PG_OS_USER}:" "${data}" "${pwfile}"
  fi
  if ! out="$(as_pg "${HONGLING_POSTGRES_BIN_DIR}/initdb" -D "${data}" -U "${PG_ROLE}" --pwfile="${pwfile}" \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 2>&1)"; then
    rm -f -- "${pwfile}"
    die "postgres: initdb failed:
${out}"
  fi
  rm -f -- "${pwfile}"
  echo "postgres: initialised ${PG_DATA} (PostgreSQL ${HONGLING_POSTGRES_MAJOR}, role ${PG_ROLE}, UTF-8)"
}

start_postgres() {
  init_postgres
  # Settings on the command line: loopback TCP only (no socket file), logs to our log file.
  pg_user_prefix
  # -D names the physical directory (the user may not be able to pass through the state dir's link).
  launch postgres "${PG_LOG}" "${PG_AS[@]}" "${HONGLING_POSTGRES_BIN_DIR}/postgres" -D "$(readlink -m -- "${PG_DATA}")" \
    -c listen_addresses=127.0.0.1 -c port="${HONGLING_POSTGRES_PORT}" -c unix_socket_directories= \
    -c max_connections=200 -c shared_buffers=128MB -c logging_collector=off \
    -c log_line_prefix='%m [%p] %q%u@%d ' -c log_min_messages=warning -c log_timezone=UTC -c timezone=UTC
}

# ensure_database NAME: create the database if it is missing. FerretDB keeps every MongoDB database of
# ours as a schema of one PostgreSQL database; the SQL read models live in another (services/common/readside.py).
ensure_database() {
  local found
  found="$(pg_sql postgres "SELECT 1 FROM pg_database WHERE datname = '$1'")" ||
    die "postgres: cannot query 127.0.0.1:${HONGLING_POSTGRES_PORT} (see ${PG_LOG})"
  [[ "${found}" == 1 ]] && return 0
  pg_sql postgres "CREATE DATABASE $1" >/dev/null ||
    die "postgres: CREATE DATABASE $1 failed (see ${PG_LOG})"
  echo "postgres: created database $1"
}

# ---- FerretDB ---------------------------------------------------------------------------------

start_ferretdb() {
  mkdir -p "${FERRETDB_DIR}"
  # The URL (with the role's password) goes through the environment, not the command line that `ps` shows.
  # The console log format colours its output only on a terminal; text is plain key=value.
  FERRETDB_POSTGRESQL_URL="$(pg_url "${PG_FERRETDB_DB}")" \
    launch ferretdb "${FERRETDB_LOG}" "${HONGLING_FERRETDB_BIN}" \
    --handler=postgresql \
    --state-dir="${FERRETDB_DIR}" \
    --listen-addr="127.0.0.1:${HONGLING_MONGO_PORT}" \
    --debug-addr="${HONGLING_FERRETDB_DEBUG_ADDR:--}" \
    --telemetry=disable \
    --log-level=info \
    --log-format=text
}

# ---- commands ---------------------------------------------------------------------------------

cmd_start() {
  ensure_provisioned
  ensure_state_dirs
  local comp pid
  local -a waiting=() launching=()
  for comp in "$@"; do
    pid="$(running_pid "${comp}")"
    if [[ -n "${pid}" ]]; then
      if port_open "$(main_port "${comp}")"; then
        echo "${comp}: already running (pid ${pid}, 127.0.0.1:$(main_port "${comp}"))"
      else
        echo "${comp}: already started (pid ${pid}) but not serving yet"
        waiting+=("${comp}")
      fi
    else
      launching+=("${comp}")
    fi
  done
  # Check every port before launching anything, so a clash leaves nothing half-started.
  for comp in "${launching[@]}"; do
    rm -f -- "$(pid_file "${comp}")"
    check_ports_free "${comp}"
  done
  # PostgreSQL first: FerretDB needs it serving, with its database, before it starts.
  for comp in postgres kafka ferretdb; do
    [[ " ${launching[*]} " == *" ${comp} "* ]] || continue
    if [[ "${comp}" == ferretdb ]]; then
      if [[ " ${waiting[*]} " == *" postgres "* ]]; then
        cmd_wait postgres
        waiting=("${waiting[@]/postgres/}")
      fi
      ensure_database "${PG_FERRETDB_DB}"
    fi
    "start_${comp}"
    echo "${comp}: started (pid $(<"$(pid_file "${comp}")"), 127.0.0.1:$(main_port "${comp}"), log $(log_file "${comp}"))"
    waiting+=("${comp}")
  done
  # Quick ones first, so each "ready in" is about that component.
  local -a ordered=()
  for comp in postgres ferretdb kafka; do
    [[ " ${waiting[*]} " != *" ${comp} "* ]] || ordered+=("${comp}")
  done
  if ((${#ordered[@]} > 0)); then
    cmd_wait "${ordered[@]}"
  fi
  # The read models' database (its tables: python -m services.common.readside migrate, run by make and services.sh).
  if [[ -n "$(running_pid postgres)" ]]; then
    ensure_database "${PG_READ_DB}"
  fi
}

cmd_wait() {
  local comp pid timeout launched
  for comp in "$@"; do
    pid="$(running_pid "${comp}")"
    launched="launched_at_${comp}"
    # (A process launched by this run that already died is reported by wait_ready, with its log.)
    if [[ -z "${pid}" && -z "${!launched:-}" ]]; then
      die "${comp} is not running; start it with: ${0##*/} start ${comp}"
    fi
    case "${comp}" in
      kafka) timeout="${HONGLING_KAFKA_START_TIMEOUT}" ;;
      postgres) timeout="${HONGLING_POSTGRES_START_TIMEOUT}" ;;
      ferretdb) timeout="${HONGLING_FERRETDB_START_TIMEOUT}" ;;
    esac
    printf '%s: waiting for 127.0.0.1:%s ' "${comp}" "$(main_port "${comp}")"
    wait_ready "${comp}" "${timeout}"
  done
}

cmd_stop() {
  local comp pid i n
  local -a stopping=() pids=()
  # Signal all first, so the components shut down in parallel. PostgreSQL gets SIGINT (its fast
  # shutdown: clients disconnected, data checkpointed); SIGTERM would wait for every client to leave.
  for comp in "$@"; do
    pid="$(running_pid "${comp}")"
    if [[ -z "${pid}" ]]; then
      rm -f -- "$(pid_file "${comp}")"
      echo "${comp}: not running"
      continue
    fi
    if [[ "${comp}" == postgres ]]; then
      kill -INT "${pid}" 2>/dev/null || true
    else
      kill -TERM "${pid}" 2>/dev/null || true
    fi
    stopping+=("${comp}")
    pids+=("${pid}")
  done
  local start=${SECONDS} deadline=$((SECONDS + HONGLING_STOP_TIMEOUT))
  for i in "${!stopping[@]}"; do
    comp="${stopping[i]}"
    pid="${pids[i]}"
    printf '%s: stopping pid %s ' "${comp}" "${pid}"
    while kill -0 "${pid}" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.2
    done
    if kill -0 "${pid}" 2>/dev/null; then
      kill -KILL "${pid}" 2>/dev/null || true
      for ((n = 0; n < 25; n++)); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.2
      done
      echo "killed (SIGKILL after ${HONGLING_STOP_TIMEOUT}s)"
    else
      echo "stopped ($((SECONDS - start))s)"
    fi
    rm -f -- "$(pid_file "${comp}")"
  done
}

# Stop everything and delete the state of every component (a cluster kept in /var/tmp included).
cmd_purge() {
  cmd_stop "${ALL_COMPONENTS[@]}"
  if [[ -L "${PG_DATA}" ]]; then
    rm -rf -- "$(readlink -- "${PG_DATA}")"
  fi
  rm -rf -- "${KAFKA_DIR}" "${PG_DIR}" "${FERRETDB_DIR}"
  echo "stack: data of ${ALL_COMPONENTS[*]} deleted from ${HONGLING_STATE_DIR}"
}

cmd_status() {
  local comp pid port var ports info owner
  for comp in "$@"; do
    pid="$(running_pid "${comp}")"
    port="$(main_port "${comp}")"
    ports=""
    for var in $(port_vars "${comp}"); do
      ports+="${ports:+,}${!var}"
    done
    if [[ -n "${pid}" ]]; then
      if info="$(probe "${comp}")"; then
        printf '%-9s running   pid %-7s 127.0.0.1:%-12s %s\n' "${comp}" "${pid}" "${ports}" "${info}"
      else
        printf '%-9s running   pid %-7s 127.0.0.1:%-12s not serving (starting, or hung)\n' "${comp}" "${pid}" "${ports}"
      fi
    else
      owner=""
      if port_open "${port}"; then
        owner="port ${port} in use by another process $(port_owner "${port}")"
      fi
      printf '%-9s stopped   %-11s 127.0.0.1:%-12s %s\n' "${comp}" "" "${ports}" "${owner}"
    fi
  done
  return 0
}

# ---- main -------------------------------------------------------------------------------------

[[ $# -ge 1 ]] || usage
command="$1"
shift
components=("$@")
if ((${#components[@]} == 0)); then
  components=("${ALL_COMPONENTS[@]}")
fi
for comp in "${components[@]}"; do
  case "${comp}" in
    kafka | postgres | ferretdb) ;;
    *) echo "stack: unknown component '${comp}' (known: ${ALL_COMPONENTS[*]})" >&2 && usage ;;
  esac
done

# FerretDB stores everything in PostgreSQL: starting it starts PostgreSQL; stopping PostgreSQL stops it.
if [[ "${command}" == start && " ${components[*]} " == *" ferretdb "* && " ${components[*]} " != *" postgres "* ]]; then
  components=(postgres "${components[@]}")
fi
if [[ "${command}" == stop && " ${components[*]} " == *" postgres "* && " ${components[*]} " != *" ferretdb "* ]]; then
  components+=(ferretdb)
fi

case "${command}" in
  start) cmd_start "${components[@]}" ;;
  purge) cmd_purge ;;
  stop) cmd_stop "${components[@]}" ;;
  status) cmd_status "${components[@]}" ;;
  wait) cmd_wait "${components[@]}" ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
