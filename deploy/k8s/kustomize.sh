#!/usr/bin/env bash
# kustomize, built from its Go module at a pinned version into the tool cache once (like FerretDB in
# deploy/local/provision.sh), and the two overlays rendered with it.
#   kustomize.sh ensure              install it where missing (make provision runs this)
#   kustomize.sh path                ensure, then print the binary's path
#   kustomize.sh build OVERLAY       ensure, then render deploy/k8s/overlays/OVERLAY to stdout
#   kustomize.sh render OUT_DIR      ensure, then render every overlay into OUT_DIR/<overlay>.yaml (make k8s)
# v5.8.2 is the newest release whose module builds with Go 1.26 (it needs kustomize/api v0.21.2; v5.8.3 and
# api v0.21.3 need Go 1.27). A module's sums are checked against the Go checksum database as for any module.
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=deploy/local/env.sh
source "${HERE}/../local/env.sh"

KUSTOMIZE_VERSION="${HONGLING_KUSTOMIZE_VERSION:-v5.8.2}"
KUSTOMIZE_HOME="${HONGLING_CACHE_DIR}/kustomize-${KUSTOMIZE_VERSION}"
KUSTOMIZE_BIN="${KUSTOMIZE_HOME}/bin/kustomize"
MARKER="${KUSTOMIZE_HOME}/.complete"

die() {
  echo "[kustomize] ERROR: $*" >&2
  exit 1
}

ensure() {
  [[ -f "${MARKER}" && -x "${KUSTOMIZE_BIN}" ]] && return 0
  local go_bin="go"
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    go_bin=/usr/local/go/bin/go
  fi
  command -v "${go_bin}" >/dev/null 2>&1 || die "'go' not found on PATH (Go 1.26 builds kustomize from its module)"
  mkdir -p "${HONGLING_CACHE_DIR}"
  # Two checkouts installing at once share the cache: serialise them.
  exec 8>"${HONGLING_CACHE_DIR}/.kustomize.lock"
  if command -v flock >/dev/null 2>&1; then flock 8; fi
  if [[ -f "${MARKER}" && -x "${KUSTOMIZE_BIN}" ]]; then
    exec 8>&-
    return 0
  fi
  echo "[provision] kustomize ${KUSTOMIZE_VERSION} via go install (sigs.k8s.io/kustomize/kustomize/v5) …" >&2
  local t0=${SECONDS} work log
  work="$(mktemp -d "${HONGLING_CACHE_DIR}/.kustomize.XXXXXX")"
  log="${work}/go.log"
  mkdir -p "${work}/home/bin" "${work}/gomod"
  # Outside any Go module (GOWORK=off, an empty directory), so no go.mod of this repository takes part.
  if ! (cd "${work}/gomod" && GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="${work}/home/bin" \
    "${go_bin}" install -trimpath "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}") >"${log}" 2>&1; then
    sed 's/^/    /' "${log}" >&2
    rm -rf -- "${work}"
    die "go install sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION} failed (output above)"
  fi
  local version
  version="$("${work}/home/bin/kustomize" version 2>&1)" || die "the built kustomize does not run: ${version}"
  [[ "${version}" == "${KUSTOMIZE_VERSION}" ]] || die "the built kustomize reports ${version}, not ${KUSTOMIZE_VERSION}"
  printf 'kustomize %s\nprovisioned %s\n' "${KUSTOMIZE_VERSION}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"${work}/home/.complete"
  rm -rf -- "${KUSTOMIZE_HOME}"
  mv -- "${work}/home" "${KUSTOMIZE_HOME}"
  rm -rf -- "${work}"
  exec 8>&-
  echo "    ${KUSTOMIZE_BIN} ($((SECONDS - t0))s)" >&2
}

overlays() {
  local d
  for d in "${HERE}"/overlays/*/; do
    [[ -f "${d}kustomization.yaml" ]] && basename "${d}"
  done
}

case "${1:-}" in
  ensure)
    ensure
    echo "[provision] kustomize ${KUSTOMIZE_VERSION}: ${KUSTOMIZE_BIN}"
    ;;
  path)
    ensure
    printf '%s\n' "${KUSTOMIZE_BIN}"
    ;;
  build)
    [[ -n "${2:-}" && -f "${HERE}/overlays/${2}/kustomization.yaml" ]] ||
      die "usage: kustomize.sh build OVERLAY (one of: $(overlays | tr '\n' ' '))"
    ensure
    "${KUSTOMIZE_BIN}" build "${HERE}/overlays/${2}"
    ;;
  render)
    [[ -n "${2:-}" ]] || die "usage: kustomize.sh render OUT_DIR"
    ensure
    mkdir -p "$2"
    for overlay in $(overlays); do
      "${KUSTOMIZE_BIN}" build "${HERE}/overlays/${overlay}" >"$2/${overlay}.yaml"
      echo "[k8s] $2/${overlay}.yaml: $(grep -c '^kind: ' "$2/${overlay}.yaml") objects"
    done
    ;;
  *)
    die "usage: kustomize.sh ensure | path | build OVERLAY | render OUT_DIR"
    ;;
esac
