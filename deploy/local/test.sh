#!/usr/bin/env bash
# `make test` (and `make bench`): a private, fresh stack on its own ports, then lint + every test.
#
#   deploy/local/test.sh                    lint, unit, integration and e2e tests
#   deploy/local/test.sh test tests/e2e -k x  the same, with these arguments for pytest
#   deploy/local/test.sh bench [bench/x.py]  the benchmarks under bench/ (or just those named)
#
# The stack uses HONGLING_TEST_PORT_BASE (default 18000) and .local/test-state-<base>, so it runs
# beside a `make up` system (and beside another test run on another base) without touching it.
# Everything it started is stopped on exit, pass or fail. HONGLING_SKIP_LINT=1 skips lint (quick
# iterations on a few tests; `make test` always lints).
set -euo pipefail
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
export HONGLING_PORT_BASE="${HONGLING_TEST_PORT_BASE:-18000}"
export HONGLING_STATE_DIR="$here/../../.local/test-state-$HONGLING_PORT_BASE"
# shellcheck source=deploy/local/env.sh
source "$here/env.sh"
cd "$HONGLING_REPO_ROOT"
mode="${1:-test}"
shift || true
PY=.venv/bin/python
started=$(date +%s)

cleanup() {
  local rc=$?
  bash "$here/services.sh" stop >/dev/null 2>&1 || true
  bash "$here/stack.sh" stop >/dev/null 2>&1 || true
  echo "[test] stack stopped; total $(($(date +%s) - started)) s"
  exit "$rc"
}

if [[ "$mode" == test && -z "${HONGLING_SKIP_LINT:-}" ]]; then
  echo "[test 1/4] lint: ruff + mypy"
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  .venv/bin/mypy services gateway
fi

echo "[test 2/4] fresh test stack on port base $HONGLING_PORT_BASE ($HONGLING_STATE_DIR)"
bash "$here/services.sh" stop >/dev/null 2>&1 || true
bash "$here/stack.sh" purge >/dev/null 2>&1 || true
rm -rf "$HONGLING_STATE_DIR"
trap cleanup EXIT
# Fresh random secrets for this run's state dir, exported to everything started below.
bash "$here/secrets.sh" ensure
# shellcheck source=deploy/local/secrets.sh
source "$here/secrets.sh"
bash "$here/stack.sh" start
"$PY" -m services.common.topics

export HONGLING_REQUIRE_INFRA=1
# The suite's and the benchmarks' stacks file every report straight to dispatch when a tenant has no filing rule
# (核实立案's shipped default holds routine and major reports for a worker's decision): the tests of the whistle
# and the benchmarks need reports to reach dispatch; the tests of 核实立案 set their tenant's rules, and the
# shipped default is a unit test of the rule (tests/unit/test_intake_filing.py).
export HONGLING_FILING_DEFAULT="${HONGLING_FILING_DEFAULT:-direct}"
if [[ "$mode" == bench ]]; then
  # The benchmarks drive the gateway from one address far above a person's request rate.
  export HONGLING_RATE_IP_PER_SECOND="${HONGLING_RATE_IP_PER_SECOND:-100000}"
  export HONGLING_RATE_IP_BURST="${HONGLING_RATE_IP_BURST:-100000}"
  export HONGLING_RATE_PRINCIPAL_PER_SECOND="${HONGLING_RATE_PRINCIPAL_PER_SECOND:-100000}"
  export HONGLING_RATE_PRINCIPAL_BURST="${HONGLING_RATE_PRINCIPAL_BURST:-100000}"
  export HONGLING_RATE_FOLLOW_PER_MINUTE="${HONGLING_RATE_FOLLOW_PER_MINUTE:-100000}"  # follow-up code checks (评单)
  echo "[test 3/4] services for the benchmarks"
  bash "$here/services.sh" start
  echo "[test 4/4] benchmarks"
  benches=("$@")
  [[ ${#benches[@]} -gt 0 ]] || benches=(bench/*.py)
  # The idle cost first, on the stack at rest (the others leave data behind, and timers that fire for hours).
  if [[ $# -eq 0 ]]; then
    mapfile -t benches < <(echo bench/idle_cost.py && printf '%s\n' bench/*.py | grep -vx bench/idle_cost.py)
  fi
  for b in "${benches[@]}"; do
    echo "== $b"
    "$PY" "$b"
  done
  # One table of every figure the benchmarks recorded (bench/results.py), with its goal and the ratio.
  echo "== every figure of this run (${HONGLING_BENCH_RESULTS:-$HONGLING_STATE_DIR/bench-results.jsonl})"
  "$PY" bench/results.py table
else
  echo "[test 3/4] services are started by the test session itself (tests/conftest.py)"
  echo "[test 4/4] pytest: unit, integration, e2e"
  if [[ $# -gt 0 ]]; then
    "$PY" -m pytest -p no:cacheprovider "$@"
  else
    "$PY" -m pytest tests -p no:cacheprovider
  fi
fi
