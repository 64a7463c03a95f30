# shellcheck shell=bash
# Hongling local environment: ports, directories and tool locations.
#
# Sourced by deploy/local/*.sh and by the Makefile (bash -c 'source deploy/local/env.sh; ...').
# Every variable can be overridden from the environment. HONGLING_PORT_BASE moves every port at
# once, so a second checkout can run beside the first by changing only that one variable.
#
# This file only defines and exports variables: it does not change shell options of the caller
# and is safe to source under `set -euo pipefail`.

# Repository root, from this file's own location (never from the current directory).
HONGLING_REPO_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
export HONGLING_REPO_ROOT

# Values that an earlier sourcing filled in as defaults (and that nobody changed since) are
# forgotten first and derived again, so `HONGLING_PORT_BASE=19000 deploy/local/stack.sh start`
# works even from a shell or Makefile that already sourced this file with the old base.
while IFS= read -r _hl_line; do
  [[ -n "${_hl_line}" ]] || continue
  _hl_name="${_hl_line%%=*}"
  if [[ "${!_hl_name-}" == "${_hl_line#*=}" ]]; then
    unset "${_hl_name}"
  fi
done <<<"${_HONGLING_DEFAULTS:-}"
_HONGLING_DEFAULTS=""

# _hl_default NAME VALUE: keep NAME if it is set and non-empty, else set it to VALUE; export it.
_hl_default() {
  if [[ -z "${!1:-}" ]]; then
    printf -v "$1" '%s' "$2"
    _HONGLING_DEFAULTS+="$1=$2"$'\n'
  fi
  export "${1?}"
}

# ---- pinned tool versions ---------------------------------------------------------------------
_hl_default HONGLING_KAFKA_VERSION "4.1.1"
_hl_default HONGLING_FERRETDB_VERSION "v1.24.2"
# PostgreSQL from Debian's packages: the major version is the data format; the package version is what
# `make test` was run with, and what provision.sh installs where PostgreSQL 15 is missing.
_hl_default HONGLING_POSTGRES_MAJOR "15"
_hl_default HONGLING_POSTGRES_DEB_VERSION "15.18-0+deb12u1"
# The portal's browser tests: Debian's Chromium (driven by Playwright, never a browser download of its own)
# and a CJK font, installed by deploy/local/browser.sh where missing. Debian's security archive keeps only
# the newest Chromium, so a pin it no longer serves is reported and the served version installed.
_hl_default HONGLING_CHROMIUM_DEB_VERSION "156.0.8078.114-1~deb12u1"
_hl_default HONGLING_CJK_FONT_DEB_VERSION "1:20220127+repack1-1"
_hl_default HONGLING_CHROMIUM "/usr/bin/chromium"

# ---- ports (all on 127.0.0.1) -----------------------------------------------------------------
# Below Linux's ephemeral range (32768-60999, net.ipv4.ip_local_port_range): a port in it can be held as
# the local end of some outgoing connection (a client of Kafka or FerretDB) at the moment a service binds
# it, and the service then fails to start. The tests run at 18000 (deploy/local/test.sh).
_hl_default HONGLING_PORT_BASE "17000"
_hl_default HONGLING_MONGO_PORT "$((HONGLING_PORT_BASE + 17))"
_hl_default HONGLING_POSTGRES_PORT "$((HONGLING_PORT_BASE + 32))"
_hl_default HONGLING_KAFKA_PORT "$((HONGLING_PORT_BASE + 92))"
_hl_default HONGLING_KAFKA_CONTROLLER_PORT "$((HONGLING_PORT_BASE + 93))"
_hl_default HONGLING_GATEWAY_PORT "$((HONGLING_PORT_BASE + 80))"
_hl_default HONGLING_FRONTDOOR_PORT "$((HONGLING_PORT_BASE + 50))"
_hl_default HONGLING_ORG_PORT "$((HONGLING_PORT_BASE + 51))"
_hl_default HONGLING_INTAKE_PORT "$((HONGLING_PORT_BASE + 52))"
_hl_default HONGLING_DISPATCH_PORT "$((HONGLING_PORT_BASE + 53))"
_hl_default HONGLING_EVALUATION_PORT "$((HONGLING_PORT_BASE + 54))"
_hl_default HONGLING_PUBLICATION_PORT "$((HONGLING_PORT_BASE + 55))"
_hl_default HONGLING_PROJECTOR_PORT "$((HONGLING_PORT_BASE + 56))"
_hl_default HONGLING_ALLIANCE_PORT "$((HONGLING_PORT_BASE + 57))"
_hl_default HONGLING_ORG_METRICS_PORT "$((HONGLING_PORT_BASE + 151))"
_hl_default HONGLING_INTAKE_METRICS_PORT "$((HONGLING_PORT_BASE + 152))"
_hl_default HONGLING_DISPATCH_METRICS_PORT "$((HONGLING_PORT_BASE + 153))"
_hl_default HONGLING_EVALUATION_METRICS_PORT "$((HONGLING_PORT_BASE + 154))"
_hl_default HONGLING_PUBLICATION_METRICS_PORT "$((HONGLING_PORT_BASE + 155))"
_hl_default HONGLING_PROJECTOR_METRICS_PORT "$((HONGLING_PORT_BASE + 156))"
_hl_default HONGLING_ALLIANCE_METRICS_PORT "$((HONGLING_PORT_BASE + 157))"
_hl_default HONGLING_GATEWAY_METRICS_PORT "$((HONGLING_PORT_BASE + 160))"
_hl_default HONGLING_PROMETHEUS_PORT "$((HONGLING_PORT_BASE + 90))"

# ---- connection strings for the services ------------------------------------------------------
_hl_default HONGLING_MONGO_URI "mongodb://127.0.0.1:${HONGLING_MONGO_PORT}/"
_hl_default HONGLING_KAFKA_BOOTSTRAP "127.0.0.1:${HONGLING_KAFKA_PORT}"

# ---- directories ------------------------------------------------------------------------------
# Per-checkout runtime state: data dirs, logs, pid files.
_hl_default HONGLING_STATE_DIR "${HONGLING_REPO_ROOT}/.local/state"
# Provisioned tools, keyed by version and shared by every checkout of this user.
_hl_default HONGLING_CACHE_DIR "${XDG_CACHE_HOME:-${HOME:-${HONGLING_REPO_ROOT}/.local}/.cache}/hongling"
# Relative overrides are taken relative to the current directory, once, here.
[[ "${HONGLING_STATE_DIR}" == /* ]] || HONGLING_STATE_DIR="${PWD%/}/${HONGLING_STATE_DIR}"
[[ "${HONGLING_CACHE_DIR}" == /* ]] || HONGLING_CACHE_DIR="${PWD%/}/${HONGLING_CACHE_DIR}"
# API tokens the gateway accepts (hashes only; `python -m gateway.tokens create` adds one).
_hl_default HONGLING_API_TOKENS_FILE "${HONGLING_STATE_DIR}/api-tokens.toml"
# The read side's password: the local PostgreSQL role's, made by deploy/local/stack.sh (mode 600).
_hl_default HONGLING_READ_DB_PASSWORD_FILE "${HONGLING_STATE_DIR}/postgres/password"
HONGLING_LOG_DIR="${HONGLING_STATE_DIR}/logs"
HONGLING_RUN_DIR="${HONGLING_STATE_DIR}/run"
HONGLING_KAFKA_HOME="${HONGLING_CACHE_DIR}/kafka-${HONGLING_KAFKA_VERSION}"
HONGLING_KAFKA_LIBS="${HONGLING_KAFKA_HOME}/libs"
HONGLING_FERRETDB_HOME="${HONGLING_CACHE_DIR}/ferretdb-${HONGLING_FERRETDB_VERSION}"
HONGLING_FERRETDB_BIN="${HONGLING_FERRETDB_HOME}/bin/ferretdb"
# Debian's layout: server binaries of each major version side by side.
_hl_default HONGLING_POSTGRES_BIN_DIR "/usr/lib/postgresql/${HONGLING_POSTGRES_MAJOR}/bin"
export HONGLING_LOG_DIR HONGLING_RUN_DIR \
  HONGLING_KAFKA_HOME HONGLING_KAFKA_LIBS HONGLING_FERRETDB_HOME HONGLING_FERRETDB_BIN

# ---- runtime knobs ----------------------------------------------------------------------------
_hl_default HONGLING_JAVA "${JAVA_HOME:+${JAVA_HOME}/bin/}java"
_hl_default HONGLING_KAFKA_HEAP_OPTS "-Xms256m -Xmx512m"
_hl_default HONGLING_KAFKA_START_TIMEOUT "90"
_hl_default HONGLING_FERRETDB_START_TIMEOUT "30"
_hl_default HONGLING_POSTGRES_START_TIMEOUT "60"
_hl_default HONGLING_STOP_TIMEOUT "20"

# Prometheus, promtool and amtool from Debian's packages (prometheus, prometheus-alertmanager), unpacked into the
# tool cache by deploy/local/prometheus.sh (never installed system-wide: no daemon starts on 9090).
_hl_default HONGLING_PROMETHEUS_DEB_VERSION "2.42.0+ds-5+deb12u1"
_hl_default HONGLING_ALERTMANAGER_DEB_VERSION "0.25.0-1+b4"
_hl_default HONGLING_PROMETHEUS_HOME "${HONGLING_CACHE_DIR}/prometheus-${HONGLING_PROMETHEUS_DEB_VERSION}"
_hl_default HONGLING_PROMETHEUS "${HONGLING_PROMETHEUS_HOME}/bin/prometheus"
_hl_default HONGLING_PROMTOOL "${HONGLING_PROMETHEUS_HOME}/bin/promtool"
_hl_default HONGLING_AMTOOL "${HONGLING_PROMETHEUS_HOME}/bin/amtool"

export _HONGLING_DEFAULTS
unset -f _hl_default
unset _hl_line _hl_name

# ---- secrets (deploy/local/secrets.sh) --------------------------------------------------------
# Random per state dir, made once by `bash deploy/local/secrets.sh ensure` into $HONGLING_STATE_DIR/secrets.env
# (make and the scripts under deploy/local run it); loaded here if it exists. A value set in the
# environment wins. No process starts without these (services/common/settings.py).
# shellcheck source=deploy/local/secrets.sh
source "${HONGLING_REPO_ROOT}/deploy/local/secrets.sh"
