#!/usr/bin/env bash
# The browser the portal's tests drive: Debian's Chromium and the Noto CJK font (without it every Chinese
# character renders as a box), from Debian's packages, installed where missing (idempotent). Playwright is
# pointed at $HONGLING_CHROMIUM; it never downloads a browser of its own.
#
# Versions: HONGLING_CHROMIUM_DEB_VERSION and HONGLING_CJK_FONT_DEB_VERSION (deploy/local/env.sh) are what the
# tests were run with. Debian's security archive serves only the newest Chromium build of a release, so when the
# pinned one is gone the served one is installed and the difference printed: move the pin deliberately.
set -euo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=deploy/local/env.sh
source "${HERE}/env.sh"

font_present() { fc-list 2>/dev/null | grep -i 'Noto Sans CJK' >/dev/null; }  # not grep -q: under pipefail its early exit fails fc-list by SIGPIPE

if [[ -x "${HONGLING_CHROMIUM}" ]] && font_present; then
  echo "[browser] $("${HONGLING_CHROMIUM}" --version 2>/dev/null | head -n 1) and Noto Sans CJK already installed"
  exit 0
fi

die() {
  echo "[browser] ERROR: $*" >&2
  exit 1
}
command -v apt-get >/dev/null 2>&1 || die "Chromium for the portal's tests comes from Debian's packages (apt-get not found); install chromium and fonts-noto-cjk, or set HONGLING_CHROMIUM"
sudo=()
if [[ ${EUID} -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
    die "chromium and fonts-noto-cjk are not installed and this user cannot install them; run once:
    sudo apt-get install -y --no-install-recommends chromium=${HONGLING_CHROMIUM_DEB_VERSION} fonts-noto-cjk=${HONGLING_CJK_FONT_DEB_VERSION}"
  sudo=(sudo -n)
fi
log="$(mktemp)"
trap 'rm -f -- "${log}"' EXIT
t0=${SECONDS}
apt() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

echo "[browser 1/3] apt-get update …"
apt update -q >"${log}" 2>&1 || { cat "${log}" >&2; die "apt-get update failed"; }

chromium_pkg="chromium=${HONGLING_CHROMIUM_DEB_VERSION}"
served="$(apt-cache policy chromium | sed -n 's/^ *Candidate: //p')"
if ! apt-cache madison chromium | grep -qF "| ${HONGLING_CHROMIUM_DEB_VERSION} |"; then
  echo "    note: Debian no longer serves chromium ${HONGLING_CHROMIUM_DEB_VERSION} (the tested pin); installing ${served}."
  echo "    Move HONGLING_CHROMIUM_DEB_VERSION in deploy/local/env.sh once the tests pass with it."
  chromium_pkg="chromium=${served}"
fi
echo "[browser 2/3] apt-get install ${chromium_pkg} fonts-noto-cjk=${HONGLING_CJK_FONT_DEB_VERSION} (about 150 MB) …"
# apt's own progress goes to the log; a dot every 10 s shows it is alive.
apt install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold \
  "${chromium_pkg}" "fonts-noto-cjk=${HONGLING_CJK_FONT_DEB_VERSION}" fontconfig >"${log}" 2>&1 &
pid=$!
while kill -0 "${pid}" 2>/dev/null; do
  sleep 10
  kill -0 "${pid}" 2>/dev/null && printf '    … %s s\n' "$((SECONDS - t0))"
done
wait "${pid}" || { cat "${log}" >&2; die "apt-get install ${chromium_pkg} fonts-noto-cjk failed"; }
echo "[browser 3/3] check"
[[ -x "${HONGLING_CHROMIUM}" ]] || die "chromium installed but ${HONGLING_CHROMIUM} is missing"
fc-cache -f >/dev/null 2>&1 || true
font_present || die "fonts-noto-cjk installed but fontconfig does not list Noto Sans CJK"
echo "    $("${HONGLING_CHROMIUM}" --version 2>/dev/null | head -n 1), Noto Sans CJK ($((SECONDS - t0)) s)"
