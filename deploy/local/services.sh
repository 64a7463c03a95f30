#!/usr/bin/env bash
# Start, stop and probe the six Hongling services, the projector that keeps their SQL read models, the
# gateway and its gRPC front door (for district department systems) as background processes.
#
#   deploy/local/services.sh start [name ...]   # default: all, in dependency order
#   deploy/local/services.sh stop  [name ...]
#   deploy/local/services.sh status
#   deploy/local/services.sh start dispatch@2   # a second process of a service (ports: instance_ports below)
#
# Logs: $HONGLING_STATE_DIR/logs/<name>.log (JSON lines). Pid files: $HONGLING_STATE_DIR/run/<name>.pid.
set -euo pipefail
# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

PY="${HONGLING_PYTHON:-$HONGLING_REPO_ROOT/.venv/bin/python}"
ALL=(org intake dispatch evaluation publication alliance projector gateway frontdoor)
RUN_DIR="$HONGLING_STATE_DIR/run"
LOG_DIR="$HONGLING_STATE_DIR/logs"
mkdir -p "$RUN_DIR" "$LOG_DIR"

module_of() {
  case "${1%@*}" in
    gateway) echo gateway ;;
    frontdoor) echo gateway.frontdoor ;; # gRPC, probed by its grpc.health.v1 service like the services
    *) echo "services.${1%@*}" ;;
  esac
}
port_of() {
  local var
  if [[ "$1" == *@* ]]; then instance_ports "$1" | cut -d' ' -f1 && return 0; fi
  var="HONGLING_$(tr '[:lower:]' '[:upper:]' <<<"$1")_PORT"
  echo "${!var}"
}
pid_of() { [[ -f "$RUN_DIR/$1.pid" ]] && cat "$RUN_DIR/$1.pid" || true; }
alive() { local pid; pid="$(pid_of "$1")"; [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }

# More processes of a service: NAME@N (N = 2 … 9), e.g. `services.sh start dispatch@2`, `stop dispatch@2`. Such a
# process is the same program with the same settings, so it joins the same Kafka consumer groups (the group
# shares the topics' partitions between its members: services/common/topics.py PARTITIONS) and writes the same
# databases; only its gRPC and metrics ports differ, so it runs beside the first on this machine:
#   gRPC    HONGLING_PORT_BASE + 200 + 20·(N−2) + k      (dispatch@2: base + 203)
#   metrics HONGLING_PORT_BASE + 210 + 20·(N−2) + k      (dispatch@2: base + 213)
# with k = the service's own gRPC offset − 50 (org 1, intake 2, dispatch 3, evaluation 4, publication 5,
# projector 6, alliance 7). `services.sh ports NAME@N` prints "grpc metrics". Its log and pid file are
# logs/NAME@N.log and run/NAME@N.pid. The gateway keeps calling the first process of each service (its
# HONGLING_<SERVICE>_PORT); on more than one machine a load balancer or a headless Service spreads the calls
# (docs/runbook.md, "Scaling out"). `stop` and `status` without names include every NAME@N that has a pid file,
# so `make down` and the test stack's clean-up stop them too; `start` without names starts the first processes only.
SCALABLE=(org intake dispatch evaluation publication projector alliance)
instance_ports() {
  local service="${1%@*}" n="${1#*@}" k
  case "$service" in
    org) k=1 ;; intake) k=2 ;; dispatch) k=3 ;; evaluation) k=4 ;; publication) k=5 ;; projector) k=6 ;; alliance) k=7 ;;
    *) echo "error: $1: only ${SCALABLE[*]} run as more processes (NAME@2 … NAME@9)" >&2 && return 1 ;;
  esac
  if ! [[ "$n" =~ ^[2-9]$ ]]; then
    echo "error: $1: the process number is 2 … 9 (NAME@1 is the service's first process: NAME)" >&2
    return 1
  fi
  echo "$((HONGLING_PORT_BASE + 200 + 20 * (n - 2) + k)) $((HONGLING_PORT_BASE + 210 + 20 * (n - 2) + k))"
}
# The environment of NAME@N: its own two ports (the settings' HONGLING_<SERVICE>_PORT and _METRICS_PORT).
instance_env() {
  [[ "$1" == *@* ]] || return 0
  local ports upper
  ports="$(instance_ports "$1")" || return 1
  upper="$(tr '[:lower:]' '[:upper:]' <<<"${1%@*}")"
  echo "HONGLING_${upper}_PORT=${ports% *}" "HONGLING_${upper}_METRICS_PORT=${ports#* }"
}
# Names NAME@N with a pid file (started by this script, maybe since stopped).
instances_started() {
  local f
  for f in "$RUN_DIR"/*@*.pid; do
    [[ -e "$f" ]] || continue
    f="${f##*/}"
    echo "${f%.pid}"
  done
}

healthy() {
  local name="$1" port
  port="$(port_of "$name")"
  if [[ "$name" == gateway ]]; then
    "$PY" - "$port" <<'PYEOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PYEOF
  else
    "$PY" - "$port" <<'PYEOF'
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
try:
    with grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}") as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
        sys.exit(0 if r.status == health_pb2.HealthCheckResponse.SERVING else 1)
except Exception:
    sys.exit(1)
PYEOF
  fi
}

start_one() {
  local name="$1" port
  port="$(port_of "$name")"
  if alive "$name"; then
    echo "  $name already running (pid $(pid_of "$name"), port $port)"
    return 0
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "error: port $port for $name is taken by another process; set HONGLING_PORT_BASE to move all ports" >&2
    return 1
  fi
  # The projector yields the CPU to the services (nice 10): its read models may fall a moment behind on a
  # busy machine, the whistle's path never waits for them. With the kernel's autogroups (Linux's default
  # for processes outside a cpu cgroup) each session competes as one group at its autogroup's nice, and a
  # process's own nice counts only inside its session: setsid gives every service a session, so the
  # projector's session is niced too (/proc/self/autogroup, written before exec; nothing where absent).
  local nice=0
  [[ "${name%@*}" != projector ]] || nice=10
  local -a inst_env
  read -r -a inst_env <<<"$(instance_env "$name")"
  (cd "$HONGLING_REPO_ROOT" && exec env "${inst_env[@]}" setsid nohup bash -c \
    'if [[ $1 != 0 && -w /proc/self/autogroup ]]; then echo "$1" >/proc/self/autogroup || true; fi; exec nice -n "$1" "${@:2}"' \
    nice "$nice" "$PY" -m "$(module_of "$name")" >>"$LOG_DIR/$name.log" 2>&1 </dev/null) &
  echo $! >"$RUN_DIR/$name.pid"
}

wait_healthy() {
  local name="$1" waited=0
  until healthy "$name"; do
    if ! alive "$name"; then
      echo "error: $name exited during start-up; last lines of $LOG_DIR/$name.log:" >&2
      tail -n 20 "$LOG_DIR/$name.log" >&2
      return 1
    fi
    if ((waited >= 60)); then
      echo "error: $name not healthy after 60 s; see $LOG_DIR/$name.log" >&2
      return 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
}

stop_one() {
  local name="$1" pid i
  pid="$(pid_of "$name")"
  if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$RUN_DIR/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "  $name did not stop in 20 s; killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/$name.pid"
  echo "  stopped $name"
}

cmd="${1:-status}"
shift || true
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${ALL[@]}")
# Without names, stop and status take in the services' further processes (NAME@N, see above): stopped first.
if [[ $# -eq 0 && ( "$cmd" == stop || "$cmd" == status ) ]]; then
  while IFS= read -r n; do names+=("$n"); done < <(instances_started)
fi
for n in "${names[@]}"; do
  if [[ "$n" == *@* ]]; then instance_ports "$n" >/dev/null || exit 2; fi
done
if [[ "$cmd" == ports ]]; then
  for n in "${names[@]}"; do
    if [[ "$n" == *@* ]]; then instance_ports "$n"; else
      var="HONGLING_$(tr '[:lower:]' '[:upper:]' <<<"$n")_METRICS_PORT"
      echo "$(port_of "$n") ${!var:-}"
    fi
  done
  exit 0
fi

# Secrets: made once per state dir (deploy/local/secrets.sh), loaded; data from before they existed re-sealed.
prepare_secrets() {
  bash "$HONGLING_REPO_ROOT/deploy/local/secrets.sh" ensure
  # shellcheck source=deploy/local/secrets.sh
  source "$HONGLING_REPO_ROOT/deploy/local/secrets.sh"
  [[ -e "$HONGLING_STATE_DIR/rekey-pending" ]] || return 0
  local n running=()
  for n in "${ALL[@]}"; do
    if alive "$n"; then running+=("$n"); fi
  done
  if [[ ${#running[@]} -gt 0 ]]; then
    echo "error: ${running[*]} still run with the former built-in keys (started before this state dir had secrets);" >&2
    echo "       stop them, then start again: bash deploy/local/services.sh stop && make up" >&2
    return 1
  fi
  echo "[services] re-sealing data written with the former built-in keys (python -m services.common.rekey)"
  (cd "$HONGLING_REPO_ROOT" && "$PY" -m services.common.rekey)
  rm -f "$HONGLING_STATE_DIR/rekey-pending"
}

case "$cmd" in
  start)
    prepare_secrets
    # The read models' schemas (Alembic, idempotent): before anything reads or projects into them.
    (cd "$HONGLING_REPO_ROOT" && "$PY" -m services.common.readside migrate)
    total=${#names[@]}
    i=0
    for n in "${names[@]}"; do start_one "$n"; done
    for n in "${names[@]}"; do
      i=$((i + 1))
      wait_healthy "$n"
      echo "[services $i/$total] $n healthy on 127.0.0.1:$(port_of "$n")"
    done
    ;;
  stop)
    for ((j = ${#names[@]} - 1; j >= 0; j--)); do stop_one "${names[j]}"; done
    ;;
  status)
    for n in "${names[@]}"; do
      if alive "$n"; then state=running; else state=stopped; fi
      printf '  %-12s %-8s port %-6s pid %s\n' "$n" "$state" "$(port_of "$n")" "$(pid_of "$n")"
    done
    ;;
  *)
    echo "usage: $0 {start|stop|status|ports} [${ALL[*]}] [NAME@N]" >&2
    exit 2
    ;;
esac
