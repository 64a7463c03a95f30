#!/usr/bin/env bash
# Prints where the running local system can be reached (called by `make up`, after env.sh is sourced).
# Also makes sure there is a working demo API token (demo-admin: subdistrict_admin on every tenant,
# 30 days) and prints it: the token file keeps only hashes, so the token itself is kept for this
# local demo in $HONGLING_STATE_DIR/demo-admin.token (mode 600; the state dir is git-ignored).
set -euo pipefail
PY="${HONGLING_PYTHON:-$HONGLING_REPO_ROOT/.venv/bin/python}"
tokens_file="${HONGLING_API_TOKENS_FILE:-$HONGLING_STATE_DIR/api-tokens.toml}"
demo_copy="$HONGLING_STATE_DIR/demo-admin.token"
tokens() { (cd "$HONGLING_REPO_ROOT" && "$PY" -m gateway.tokens --file "$tokens_file" "$@"); }

if ! [[ -s "$demo_copy" ]] || ! tokens verify <"$demo_copy" >/dev/null 2>&1; then
  # None yet, or expired, or revoked, or its copy is gone: retire any old one and make a new one.
  tokens revoke --sub demo-admin >/dev/null 2>&1 || true
  if ! made="$(umask 077 && tokens create --sub demo-admin --role subdistrict_admin --all-tenants --days 30 2>&1 >"$demo_copy")"; then
    echo "error: could not create the demo API token: $made" >&2
    exit 1
  fi
fi
demo_token="$(<"$demo_copy")"
# A gateway started before HONGLING_API_TOKENS_FILE was set (an older `make up`) knows no tokens.
if ! "$PY" - "$HONGLING_GATEWAY_PORT" "$demo_token" <<'PYEOF'; then
import sys, urllib.request
req = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/api/v1/tenants/taiqian/org/communities?page_size=1",
    headers={"Authorization": f"Bearer {sys.argv[2]}"},
)
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PYEOF
  echo "warning: the running gateway does not accept the demo token; it was probably started without" >&2
  echo "         HONGLING_API_TOKENS_FILE=$tokens_file — restart it: bash deploy/local/services.sh stop gateway && make up" >&2
fi

# The demo's people for the portal, one per role (random passwords, kept in the state dir).
if ! accounts="$(cd "$HONGLING_REPO_ROOT" && "$PY" deploy/local/demo_accounts.py)"; then
  echo "error: could not make the portal's demo accounts" >&2
  exit 1
fi
people="$(printf '%s\n' "$accounts" | awk -F'\t' '{printf "                          %-14s %-18s %s\n", $1, $2, $3}')"

cat <<TXT

红领益家 Hongling is running.

  Portal (门户)           http://127.0.0.1:${HONGLING_GATEWAY_PORT}/portal/   log in as (user, password, role):
${people}
                          passwords kept in ${HONGLING_STATE_DIR}/demo-accounts.txt

  Gateway (HTTP API)      http://127.0.0.1:${HONGLING_GATEWAY_PORT}/api/v1/tenants
  API docs                http://127.0.0.1:${HONGLING_GATEWAY_PORT}/api/docs  (OpenAPI: /api/v1/openapi.json, events: /api/v1/asyncapi.json)
  Open311 GeoReport v2    http://127.0.0.1:${HONGLING_GATEWAY_PORT}/open311/v2/services.json?jurisdiction_id=taiqian
  Gateway health          http://127.0.0.1:${HONGLING_GATEWAY_PORT}/readyz
  Gateway metrics         http://127.0.0.1:${HONGLING_GATEWAY_PORT}/metrics
  Department front door   127.0.0.1:${HONGLING_FRONTDOOR_PORT} (gRPC hongling.frontdoor.v1.DepartmentGateway, health + reflection; examples/department_client.py)
  Service gRPC            org :${HONGLING_ORG_PORT}  intake :${HONGLING_INTAKE_PORT}  dispatch :${HONGLING_DISPATCH_PORT}  evaluation :${HONGLING_EVALUATION_PORT}  publication :${HONGLING_PUBLICATION_PORT}  alliance :${HONGLING_ALLIANCE_PORT}
  Service metrics         http://127.0.0.1:${HONGLING_ORG_METRICS_PORT}/metrics … :${HONGLING_PUBLICATION_METRICS_PORT}/metrics, alliance :${HONGLING_ALLIANCE_METRICS_PORT} (one port per service)
  Read-model projector    health 127.0.0.1:${HONGLING_PROJECTOR_PORT} (gRPC)  metrics http://127.0.0.1:${HONGLING_PROJECTOR_METRICS_PORT}/metrics (hongling_projection_lag_seconds)
  Kafka bootstrap         ${HONGLING_KAFKA_BOOTSTRAP}
  MongoDB (FerretDB)      ${HONGLING_MONGO_URI}  (stored in PostgreSQL)
  PostgreSQL 15           127.0.0.1:${HONGLING_POSTGRES_PORT}  role hongling, password in ${HONGLING_STATE_DIR}/postgres/password
  SQL read models         database hongling_read, a schema per tenant (hl_<tenant>); rebuild: python -m services.projector --rebuild
  Logs                    ${HONGLING_STATE_DIR}/logs/  (make logs)

  API tokens              ${tokens_file}  (.venv/bin/python -m gateway.tokens create|list|revoke)
  Demo admin token        ${demo_token}
                          demo-admin: subdistrict_admin on every tenant, valid 30 days; kept in ${demo_copy}

  Try:  curl -s -XPOST http://127.0.0.1:${HONGLING_GATEWAY_PORT}/api/v1/tenants/taiqian/issues \\
          -H 'content-type: application/json' \\
          -d '{"title":"楼道灯不亮","description":"3号楼2单元楼道灯坏了","channel":"online","location":{"compound_id":"jiade-g01-c1","address":"嘉德花园3号楼"}}'
        curl -s http://127.0.0.1:${HONGLING_GATEWAY_PORT}/api/v1/tenants/taiqian/org/communities \\
          -H "Authorization: Bearer ${demo_token}"
  Stop: make down
TXT
