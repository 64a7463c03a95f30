#!/usr/bin/env bash
# What the publication's PDF channel needs from the system (services/publication/channels/pdf.py): WeasyPrint
# lays pages out with Pango (libpango-1.0-0, libpangoft2-1.0-0) and embeds the CJK font the page names,
# Noto Sans CJK SC (fonts-noto-cjk, pinned in deploy/local/env.sh like deploy/local/browser.sh's). From
# Debian's packages, installed where missing (idempotent); `make up`, `make test` and `make bench` run it.
set -euo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=deploy/local/env.sh
source "${HERE}/env.sh"

# grep reads all its input (no -q): under pipefail, grep -q leaving early would fail the pipe by SIGPIPE.
libs_present() {
  local libs
  libs="$(ldconfig -p 2>/dev/null || true)"
  grep -F 'libpango-1.0.so.0' <<<"${libs}" >/dev/null && grep -F 'libpangoft2-1.0.so.0' <<<"${libs}" >/dev/null
}
font_present() { fc-list : family 2>/dev/null | grep -i 'Noto Sans CJK SC' >/dev/null; }

if libs_present && font_present; then
  echo "[pdf] Pango $(pkg-config --modversion pango 2>/dev/null || dpkg-query -W -f='${Version}' libpango-1.0-0 2>/dev/null) and Noto Sans CJK SC already installed"
  exit 0
fi

die() {
  echo "[pdf] ERROR: $*" >&2
  exit 1
}
packages=(libpango-1.0-0 libpangoft2-1.0-0 "fonts-noto-cjk=${HONGLING_CJK_FONT_DEB_VERSION}" fontconfig)
command -v apt-get >/dev/null 2>&1 || die "the PDF channel needs Pango and the Noto CJK font from Debian's packages (apt-get not found); install: ${packages[*]}"
sudo=()
if [[ ${EUID} -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
    die "Pango and fonts-noto-cjk are not installed and this user cannot install them; run once:
    sudo apt-get install -y --no-install-recommends ${packages[*]}"
  sudo=(sudo -n)
fi
log="$(mktemp)"
trap 'rm -f -- "${log}"' EXIT
apt() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
echo "[pdf 1/3] apt-get update …"
apt update -q >"${log}" 2>&1 || { cat "${log}" >&2; die "apt-get update failed"; }
echo "[pdf 2/3] apt-get install ${packages[*]} …"
apt install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "${packages[@]}" >"${log}" 2>&1 ||
  { cat "${log}" >&2; die "apt-get install ${packages[*]} failed"; }
echo "[pdf 3/3] check"
fc-cache -f >/dev/null 2>&1 || true
libs_present || die "Pango installed but ldconfig does not list libpango-1.0.so.0 and libpangoft2-1.0.so.0"
font_present || die "fonts-noto-cjk installed but fontconfig does not list Noto Sans CJK SC"
echo "    Pango and Noto Sans CJK SC installed"
