#!/usr/bin/env bash
# Prints where the running local system can be reached (called by `make up`, after env.sh is sourced).
set -euo pipefail
cat <<TXT

红领益家 Hongling is running.

  Gateway (HTTP API)      http://127.0.0.1:${HONGLING_GATEWAY_PORT}/api/v1/tenants
  Gateway health          http://127.0.0.1:${HONGLING_GATEWAY_PORT}/readyz
  Gateway metrics         http://127.0.0.1:${HONGLING_GATEWAY_PORT}/metrics
  Service gRPC            org :${HONGLING_ORG_PORT}  intake :${HONGLING_INTAKE_PORT}  dispatch :${HONGLING_DISPATCH_PORT}  evaluation :${HONGLING_EVALUATION_PORT}  publication :${HONGLING_PUBLICATION_PORT}
  Service metrics         http://127.0.0.1:${HONGLING_ORG_METRICS_PORT}/metrics … :${HONGLING_PUBLICATION_METRICS_PORT}/metrics (one port per service)
  Kafka bootstrap         ${HONGLING_KAFKA_BOOTSTRAP}
  MongoDB (FerretDB)      ${HONGLING_MONGO_URI}
  Logs                    ${HONGLING_STATE_DIR}/logs/  (make logs)

  Try:  curl -s -XPOST http://127.0.0.1:${HONGLING_GATEWAY_PORT}/api/v1/tenants/taiqian/issues \\
          -H 'content-type: application/json' \\
          -d '{"title":"楼道灯不亮","description":"3号楼2单元楼道灯坏了","channel":"online","location":{"address":"嘉德社区3号楼"}}'
  Stop: make down
TXT
