#!/usr/bin/env bash
# Prometheus, promtool and amtool for the monitoring tests (tests/integration/test_prometheus.py,
# tests/unit/test_monitoring_config.py): Debian's `prometheus` and `prometheus-alertmanager` packages at the
# versions pinned in deploy/local/env.sh, fetched with `apt-get download` (checked by apt against the archive's
# signed index) and unpacked into the tool cache ($HONGLING_PROMETHEUS_HOME/bin), once. Not installed
# system-wide on purpose: the package's postinst would start a Prometheus daemon on 9090 wherever systemd runs,
# and the tests start their own on HONGLING_PROMETHEUS_PORT. Idempotent; `make prometheus` and `make test` run it.
#
# Debian keeps the archive's current build of a release; when the pin is no longer served the served one is
# unpacked and the difference printed, as deploy/local/browser.sh does: move the pin deliberately.
set -euo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=deploy/local/env.sh
source "${HERE}/env.sh"

BIN="${HONGLING_PROMETHEUS_HOME}/bin"
if [[ -x "${BIN}/prometheus" && -x "${BIN}/promtool" && -x "${BIN}/amtool" ]]; then
  echo "[prometheus] $("${BIN}/prometheus" --version 2>&1 | head -n 1) in ${BIN}"
  exit 0
fi

die() {
  echo "[prometheus] ERROR: $*" >&2
  exit 1
}
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
  die "Prometheus comes from Debian's packages (apt-get/dpkg-deb not found); put prometheus, promtool and amtool ${HONGLING_PROMETHEUS_DEB_VERSION%%+*} in ${BIN}"
work="$(mktemp -d)"
trap 'rm -rf -- "${work}"' EXIT
log="${work}/apt.log"

# pick PACKAGE PIN: the pinned version if the archive serves it, else the served one (with a note).
pick() {
  local pkg="$1" pin="$2" served
  if apt-cache madison "${pkg}" 2>/dev/null | grep -F "| ${pin} |" >/dev/null; then
    echo "${pkg}=${pin}"
    return 0
  fi
  served="$(apt-cache policy "${pkg}" 2>/dev/null | sed -n 's/^ *Candidate: //p')"
  [[ -n "${served}" && "${served}" != "(none)" ]] || return 1
  echo "    note: Debian no longer serves ${pkg} ${pin} (the tested pin); unpacking ${served}." >&2
  echo "    Move its pin in deploy/local/env.sh once the tests pass with it." >&2
  echo "${pkg}=${served}"
}

echo "[prometheus 1/3] apt-get download prometheus=${HONGLING_PROMETHEUS_DEB_VERSION} prometheus-alertmanager=${HONGLING_ALERTMANAGER_DEB_VERSION} …"
pick_all() {
  local a b
  a="$(pick prometheus "${HONGLING_PROMETHEUS_DEB_VERSION}")" &&
    b="$(pick prometheus-alertmanager "${HONGLING_ALERTMANAGER_DEB_VERSION}")" && pkgs=("${a}" "${b}")
}
pkgs=()
if ! pick_all; then
  # A fresh machine may have no package lists yet: read them once (needs root, as browser.sh's install does).
  sudo=()
  if [[ ${EUID} -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
      die "apt has no package lists and this user cannot read them; run once: sudo apt-get update"
    sudo=(sudo -n)
  fi
  "${sudo[@]}" apt-get update -q >"${log}" 2>&1 || { cat "${log}" >&2; die "apt-get update failed"; }
  pick_all || die "Debian's archive serves no prometheus/prometheus-alertmanager package here (apt-cache policy prometheus)"
fi
# apt's _apt user must be able to write where it downloads.
chmod 0777 "${work}"
(cd "${work}" && apt-get download -q "${pkgs[@]}" >"${log}" 2>&1) || { cat "${log}" >&2; die "apt-get download ${pkgs[*]} failed"; }

echo "[prometheus 2/3] unpack into ${BIN}"
for deb in "${work}"/*.deb; do
  dpkg-deb -x "${deb}" "${work}/root"
done
tmp_bin="${HONGLING_PROMETHEUS_HOME}.tmp.$$/bin"
mkdir -p "${tmp_bin}"
install -m 0755 "${work}/root/usr/bin/prometheus" "${work}/root/usr/bin/promtool" "${work}/root/usr/bin/amtool" "${tmp_bin}/"
rm -rf -- "${HONGLING_PROMETHEUS_HOME}"
mv -- "${HONGLING_PROMETHEUS_HOME}.tmp.$$" "${HONGLING_PROMETHEUS_HOME}"

echo "[prometheus 3/3] check"
"${BIN}/promtool" --version >/dev/null 2>&1 || die "promtool in ${BIN} does not run"
"${BIN}/amtool" --version >/dev/null 2>&1 || die "amtool in ${BIN} does not run"
echo "    $("${BIN}/prometheus" --version 2>&1 | head -n 1)"
