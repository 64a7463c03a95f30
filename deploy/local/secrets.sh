#!/usr/bin/env bash
# The local set-up's secrets: random, generated once per state dir, kept in $HONGLING_STATE_DIR/secrets.env
# (mode 600, created under umask 077; the state dir is git-ignored). No process has a built-in secret
# (services/common/settings.py refuses to start without one, or with a published value).
#
#   bash deploy/local/secrets.sh [ensure]   create the file if it is missing (idempotent: an existing
#                                           file is kept; a secret it lacks is added); print its path
#   source deploy/local/secrets.sh          export what the file holds (env.sh does this); a variable
#                                           already set in the environment wins over the file
#
# A state dir in which services ran before this file existed holds data sealed with the former built-in
# keys: `ensure` then leaves a marker (rekey-pending) and deploy/local/services.sh start runs
# `python -m services.common.rekey` once, with the services stopped, before it starts them.

# ---- ensure (executed) ------------------------------------------------------------------------------
if [[ ${#BASH_SOURCE[@]} -eq 1 && "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=deploy/local/env.sh
  source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh" # the state dir (env.sh sources this file to load)
  cmd="${1:-ensure}"
  if [[ "$cmd" != ensure ]]; then
    echo "usage: $0 [ensure]   (or source it to load the secrets)" >&2
    exit 2
  fi
  # Every secret the processes need (services/common/settings.py SECRET_SETTINGS).
  names=(HONGLING_PRINCIPAL_SECRET HONGLING_DATA_KEY HONGLING_AUDIT_SIGNING_KEY HONGLING_SESSION_SECRET)
  state="${HONGLING_STATE_DIR}"
  file="$state/secrets.env"
  random_secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; } # 256 bits, 64 hex digits
  umask 077
  mkdir -p "$state"
  if [[ ! -e "$file" ]]; then
    # Services that ran in this state dir before wrote with the former built-in keys.
    legacy=""
    for svc in org intake dispatch evaluation publication gateway frontdoor; do
      if [[ -e "$state/logs/$svc.log" ]]; then legacy=1; fi
    done
    tmp="$(mktemp "$state/.secrets.env.XXXXXX")"
    {
      echo "# Hongling local secrets for this state dir, generated $(date -u +%Y-%m-%dT%H:%M:%SZ) by deploy/local/secrets.sh."
      echo "# Loaded by deploy/local/env.sh; a variable set in the environment wins. Keep this file private."
      for n in "${names[@]}"; do echo "$n=$(random_secret)"; done
    } >"$tmp"
    # ln: atomic and never replaces a file that a concurrent run made meanwhile.
    if ln "$tmp" "$file" 2>/dev/null; then
      echo "[secrets] generated random secrets into $file (mode 600)" >&2
      if [[ -n "$legacy" ]]; then
        : >"$state/rekey-pending"
        echo "[secrets] this state dir holds data written with the former built-in keys: it is re-sealed with the new ones before the services start" >&2
      fi
    fi
    rm -f "$tmp"
  fi
  for n in "${names[@]}"; do # a file from an older set-up may lack a secret added since
    if ! grep -q "^$n=" "$file"; then echo "$n=$(random_secret)" >>"$file"; fi
  done
  chmod 600 "$file"
  exit 0
fi

# ---- loading (sourced) ------------------------------------------------------------------------------
# Only defines and exports variables, and is safe to source under `set -euo pipefail`. Values this loader
# exported earlier from another file (another state dir's, or a file made since) are forgotten first, so
# `HONGLING_STATE_DIR=… source env.sh` in a shell that already sourced it picks up that dir's secrets.
_hl_secrets_file="${HONGLING_STATE_DIR:?HONGLING_STATE_DIR is not set: source deploy/local/env.sh}/secrets.env"
_hl_secrets_sum=""
if [[ -r "${_hl_secrets_file}" ]]; then
  _hl_secrets_sum="$(cksum <"${_hl_secrets_file}") ${_hl_secrets_file}"
fi
if [[ -n "${_HONGLING_SECRETS_FROM:-}" && "${_HONGLING_SECRETS_FROM}" != "${_hl_secrets_sum}" ]]; then
  for _hl_name in ${_HONGLING_SECRETS_LOADED:-}; do
    unset "${_hl_name}"
  done
  _HONGLING_SECRETS_LOADED=""
fi
if [[ -n "${_hl_secrets_sum}" ]]; then
  while IFS= read -r _hl_line || [[ -n "${_hl_line}" ]]; do
    _hl_name="${_hl_line%%=*}"
    if [[ "${_hl_name}" =~ ^HONGLING_[A-Z0-9_]+$ && "${_hl_line}" == *=* && -z "${!_hl_name:-}" ]]; then
      printf -v "${_hl_name}" '%s' "${_hl_line#*=}"
      export "${_hl_name?}"
      _HONGLING_SECRETS_LOADED="${_HONGLING_SECRETS_LOADED:-} ${_hl_name}"
    fi
  done <"${_hl_secrets_file}"
fi
_HONGLING_SECRETS_FROM="${_hl_secrets_sum}"
_HONGLING_SECRETS_LOADED="${_HONGLING_SECRETS_LOADED:-}"
export _HONGLING_SECRETS_FROM _HONGLING_SECRETS_LOADED
unset _hl_secrets_file _hl_secrets_sum _hl_line _hl_name

