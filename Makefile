# Hongling (红领益家) — one Makefile for set-up, running and testing. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_VENV := $(VENV)/.installed
LOCK := requirements.lock
STAMP_PROTOS := build/gen/.built
PROTO_FILES := $(shell find protos -name '*.proto' 2>/dev/null)
# The state dir's random secrets are made once (deploy/local/secrets.sh) and loaded by env.sh.
ENV := bash deploy/local/secrets.sh ensure && source deploy/local/env.sh

PORTAL := gateway/portal
STAMP_NPM := $(PORTAL)/node_modules/.installed
STAMP_PORTAL := $(PORTAL)/dist/index.html
PORTAL_SOURCES := $(shell find $(PORTAL)/src $(PORTAL)/public -type f 2>/dev/null) $(PORTAL)/index.html $(PORTAL)/vite.config.js $(PORTAL)/sw.js
ASYNCAPI_VALIDATOR := tools/asyncapi-validate
STAMP_ASYNCAPI := $(ASYNCAPI_VALIDATOR)/node_modules/.installed

.PHONY: help venv lock protos provision browser pdf portal asyncapi-validator infra topics up down logs status test lint unit bench clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The environment is built from the lock alone: every package (dev tools included) at the pinned version,
# every file checked against its sha256, nothing resolved at install time. A changed lock rebuilds it from
# scratch, so it holds exactly what the lock says; `make lock` is the one deliberate way to upgrade.
$(STAMP_VENV): $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "$(LOCK) is resolved for Python 3.11; run with PYTHON=python3.11 (found " + sys.version.split()[0] + ")")'
	@echo "[setup] Python environment in $(VENV) from $(LOCK) (pinned, sha256-checked)"
	@rm -rf $(VENV)
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	@$(PY) -m pip check -q >/dev/null || { $(PY) -m pip check; exit 1; }
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

lock: ## add pyproject.toml's new dependencies to requirements.lock; UPGRADE=1 moves every pin to the newest
	@test -x $(VENV)/bin/pip-compile || $(MAKE) venv
	@$(VENV)/bin/pip-compile -q $(if $(UPGRADE),--upgrade) --generate-hashes --allow-unsafe --extra dev --strip-extras \
	  --no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml
	@echo "[lock] $(LOCK) written: review its diff, then make test"

venv: $(STAMP_VENV) ## create the virtualenv and install dependencies

$(STAMP_PROTOS): $(STAMP_VENV) $(PROTO_FILES) deploy/gen_protos.py
	@$(PY) deploy/gen_protos.py 2> >(grep -v '^Writing mypy' >&2)
	@touch $@

protos: $(STAMP_PROTOS) ## build the protobuf/gRPC Python code into build/gen (git-ignored)

# The portal: npm installs exactly package-lock.json (`npm ci`, integrity-checked), then vite builds it into
# gateway/portal/dist, which the gateway serves at /portal/. Rebuilt when its lock or sources change.
$(STAMP_NPM): $(PORTAL)/package-lock.json $(PORTAL)/package.json
	@command -v npm >/dev/null || { echo "npm not found: the portal is built with Node.js 20.19+ and npm" >&2; exit 1; }
	@echo "[portal] npm ci (package-lock.json, integrity-checked)"
	@cd $(PORTAL) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP_PORTAL): $(STAMP_NPM) $(PORTAL_SOURCES)
	@echo "[portal] vite build into $(PORTAL)/dist"
	@cd $(PORTAL) && npx --no-install vite build --logLevel warn
	@node -e 'const fs=require("fs"),z=require("zlib"),d="$(PORTAL)/dist/assets";let n=0,g=0;for(const f of fs.readdirSync(d)){if(f.endsWith(".js")){const b=fs.readFileSync(d+"/"+f);n+=b.length;g+=z.gzipSync(b).length}}console.log(`[portal] built: JavaScript $${(n/1024).toFixed(0)} KB, $${(g/1024).toFixed(0)} KB gzip, in all chunks`)'

portal: $(STAMP_PORTAL) ## build the portal (npm ci from its lock, vite build) into gateway/portal/dist

# The AsyncAPI document's validator (tests/unit/test_asyncapi.py): @asyncapi/parser, installed exactly as
# tools/asyncapi-validate/package-lock.json says (`npm ci`, integrity-checked). Reinstalled when the lock changes.
# No install scripts: the only package with one is @scarf/scarf, the parser's install telemetry.
$(STAMP_ASYNCAPI): $(ASYNCAPI_VALIDATOR)/package-lock.json $(ASYNCAPI_VALIDATOR)/package.json
	@command -v npm >/dev/null || { echo "npm not found: the AsyncAPI validator needs Node.js 20.19+ and npm" >&2; exit 1; }
	@echo "[asyncapi] npm ci in $(ASYNCAPI_VALIDATOR) (package-lock.json, integrity-checked)"
	@cd $(ASYNCAPI_VALIDATOR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

asyncapi-validator: $(STAMP_ASYNCAPI) ## install @asyncapi/parser (npm ci from its lock) for the AsyncAPI document's test

browser: ## install Debian's Chromium and a CJK font for the portal's browser tests, where missing
	@bash deploy/local/browser.sh

pdf: ## install Pango and the CJK font the publication's PDF channel (WeasyPrint) needs, where missing
	@bash deploy/local/pdf.sh

.PHONY: prometheus
prometheus: ## unpack Debian's Prometheus, promtool and amtool (pinned) into the tool cache, once
	@bash deploy/local/prometheus.sh

provision: ## fetch Kafka (Maven) and FerretDB (go install) into the tool cache, once
	@bash deploy/local/provision.sh

infra: provision $(STAMP_VENV) ## start Kafka, PostgreSQL and FerretDB, create the topics, move data from the former SQLite backend once
	@bash deploy/local/stack.sh start
	@$(ENV); $(PY) -m services.common.topics
	@$(ENV); $(PY) deploy/local/migrate_sqlite.py

up: protos portal pdf infra ## run the whole system locally and print where to reach it
	@bash deploy/local/services.sh start
	@$(ENV); $(PY) -m services.org.seed demo
	@$(ENV); bash deploy/local/banner.sh

down: ## stop the services, the gateway, Kafka, FerretDB and PostgreSQL
	@bash deploy/local/services.sh stop
	@bash deploy/local/stack.sh stop

status: ## show what is running
	@bash deploy/local/services.sh status
	@bash deploy/local/stack.sh status

logs: ## follow every log of the local system
	@$(ENV); tail -n 20 -F "$$HONGLING_STATE_DIR"/logs/*.log

lint: protos ## ruff and mypy
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy services gateway

unit: protos pdf prometheus asyncapi-validator ## unit tests only (no infrastructure)
	@$(VENV)/bin/pytest -q tests/unit

test: protos portal asyncapi-validator browser pdf provision prometheus ## set up what is missing, start a private test stack, lint, run every test, stop it
	@bash deploy/local/test.sh

bench: protos portal browser pdf provision ## run the benchmarks under bench/ against a private stack
	@bash deploy/local/test.sh bench

clean: down ## stop everything and remove local state and build output (keeps the tool cache)
	@# every state dir's stack, a PostgreSQL cluster kept in /var/tmp included (deploy/local/stack.sh purge)
	@for d in .local/state* .local/test-state-*; do \
	  if [[ -d "$$d" ]]; then HONGLING_STATE_DIR="$$PWD/$$d" bash deploy/local/stack.sh purge >/dev/null || true; fi; \
	done
	rm -rf .local build $(PORTAL)/dist

# Kubernetes (deploy/k8s). kustomize is built from its Go module at a pinned version into the
# tool cache once (deploy/k8s/kustomize.sh), by `make provision` (so `make test`) and `make unit`.
.PHONY: provision-k8s k8s
provision: provision-k8s
unit: provision-k8s
provision-k8s:
	@bash deploy/k8s/kustomize.sh ensure

k8s: provision-k8s ## render the Kubernetes overlays (deploy/k8s: dev, prod) with kustomize into build/k8s/
	@bash deploy/k8s/kustomize.sh render build/k8s
