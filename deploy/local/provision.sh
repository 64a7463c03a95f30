#!/usr/bin/env bash
# Provision the pinned local infrastructure tools (idempotent, cached):
#   $HONGLING_CACHE_DIR/kafka-<version>/libs/*.jar       Kafka broker + tools jars, via Maven
#   $HONGLING_POSTGRES_BIN_DIR (/usr/lib/postgresql/15)  PostgreSQL 15 from Debian's packages, installed
#                                                     (postgresql-15=$HONGLING_POSTGRES_DEB_VERSION) when missing
#   $HONGLING_CACHE_DIR/ferretdb-<version>/bin/ferretdb  FerretDB, built from its Go module with
#                                                     deploy/local/patches/ferretdb-<version>-*.patch
# A component counts as provisioned only when its .complete marker exists; the marker is written
# after everything else succeeded, in a temporary directory that is then renamed into place.
# FerretDB's marker also records the patch set ("patches <sha256>"): a build from another patch set
# (e.g. one cached before a patch was added) is rebuilt once.
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=deploy/local/env.sh
source "${HERE}/env.sh"

KAFKA_MARKER="${HONGLING_KAFKA_HOME}/.complete"
FERRETDB_MARKER="${HONGLING_FERRETDB_HOME}/.complete"
KAFKA_LABEL="Kafka ${HONGLING_KAFKA_VERSION}"
FERRETDB_LABEL="FerretDB ${HONGLING_FERRETDB_VERSION}"

# The FerretDB source patches, applied in name order, and their identity: the sha256 of their
# names and sha256 sums ("none" without patches).
FERRETDB_PATCHES=()
for f in "${HERE}/patches/ferretdb-${HONGLING_FERRETDB_VERSION}-"*.patch; do
  [[ -f "${f}" ]] && FERRETDB_PATCHES+=("${f}")
done
sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$@"; else shasum -a 256 "$@"; fi
}
FERRETDB_PATCH_ID=none
if ((${#FERRETDB_PATCHES[@]} > 0)); then
  FERRETDB_PATCH_ID=$(cd "${HERE}/patches" && sha256 "${FERRETDB_PATCHES[@]##*/}" | sha256 - | cut -c1-64)
fi

# ferretdb_current: the cached FerretDB build is complete and made with the current patch set.
ferretdb_current() {
  [[ -f "${FERRETDB_MARKER}" ]] && grep -qx "patches ${FERRETDB_PATCH_ID}" "${FERRETDB_MARKER}"
}

POSTGRES_LABEL="PostgreSQL ${HONGLING_POSTGRES_MAJOR}"
# postgres_present: Debian's PostgreSQL server of the pinned major version is installed.
postgres_present() {
  [[ -x "${HONGLING_POSTGRES_BIN_DIR}/postgres" && -x "${HONGLING_POSTGRES_BIN_DIR}/initdb" && -x "${HONGLING_POSTGRES_BIN_DIR}/psql" ]]
}

if [[ -f "${KAFKA_MARKER}" ]] && ferretdb_current && postgres_present; then
  echo "[provision] ${KAFKA_LABEL}, ${POSTGRES_LABEL} and ${FERRETDB_LABEL} already provisioned"
  exit 0
fi

die() {
  echo "[provision] ERROR: $*" >&2
  exit 1
}

# Print a failed command's captured output, then fail.
die_with_log() {
  local what="$1" log="$2"
  {
    echo "[provision] ERROR: ${what} failed; its output was:"
    sed -e $'s/\x1b\\[[0-9;]*m//g' -e 's/^/    /' "${log}"
  } >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH ($2)"
}

started=${SECONDS}
mkdir -p "${HONGLING_CACHE_DIR}"

# Two checkouts provisioning at the same time share the cache: serialise them.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${HONGLING_CACHE_DIR}/.provision.lock"
  if ! flock -n 9; then
    echo "[provision] another provision is running on ${HONGLING_CACHE_DIR}; waiting for it ..."
    flock 9
    if [[ -f "${KAFKA_MARKER}" ]] && ferretdb_current && postgres_present; then
      echo "[provision] ${KAFKA_LABEL}, ${POSTGRES_LABEL} and ${FERRETDB_LABEL} were provisioned by the other run"
      exit 0
    fi
  fi
fi

WORK="$(mktemp -d "${HONGLING_CACHE_DIR}/.provision.XXXXXX")"
trap 'rm -rf -- "${WORK}"' EXIT

step=0
total=3

# install_dir STAGED FINAL: replace FINAL (an incomplete leftover, if any) by STAGED.
install_dir() {
  local staged="$1" final="$2"
  if [[ -e "${final}" ]]; then
    mv -- "${final}" "${WORK}/old.$$.$RANDOM"
  fi
  mv -- "${staged}" "${final}"
}

provision_kafka() {
  step=$((step + 1))
  if [[ -f "${KAFKA_MARKER}" ]]; then
    echo "[provision ${step}/${total}] ${KAFKA_LABEL} jars: already in ${HONGLING_KAFKA_HOME}"
    return
  fi
  echo "[provision ${step}/${total}] ${KAFKA_LABEL} jars via Maven …"
  need "${HONGLING_JAVA}" "Java 17+ is needed to run Kafka; set JAVA_HOME or HONGLING_JAVA"
  need mvn "Maven resolves the Kafka jars from Maven Central"
  local t0=${SECONDS} staged="${WORK}/kafka" log="${WORK}/maven.log"
  mkdir -p "${staged}/libs"
  if ! mvn -q -B -Dstyle.color=never -f "${HERE}/pom.xml" \
    -Dkafka.version="${HONGLING_KAFKA_VERSION}" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="${staged}/libs" \
    >"${log}" 2>&1; then
    die_with_log "mvn dependency:copy-dependencies (${HERE}/pom.xml)" "${log}"
  fi
  local main_jar="${staged}/libs/kafka_2.13-${HONGLING_KAFKA_VERSION}.jar"
  [[ -f "${main_jar}" ]] || die "Maven succeeded but ${main_jar##*/} is missing from its output"
  local jars
  jars=$(find "${staged}/libs" -maxdepth 1 -name '*.jar' | wc -l | tr -d ' ')
  # Smoke test: the broker's main class and the storage tool load from the jar set.
  if ! "${HONGLING_JAVA}" -cp "${staged}/libs/*" kafka.tools.StorageTool random-uuid \
    >"${log}" 2>&1; then
    die_with_log "smoke test (kafka.tools.StorageTool random-uuid)" "${log}"
  fi
  printf 'kafka %s\njars %s\nprovisioned %s\n' "${HONGLING_KAFKA_VERSION}" "${jars}" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"${staged}/.complete"
  install_dir "${staged}" "${HONGLING_KAFKA_HOME}"
  echo "    ${jars} jars in ${HONGLING_KAFKA_LIBS} ($((SECONDS - t0))s)"
}

# FerretDB v1 cannot simply be `go install`ed: the module's build/version/version.txt is generated
# by its release tooling and absent from the published module, and a binary built without it
# panics at start ("Invalid build/version/version.txt file content"). So: download the module
# source with the go command, copy it, write version.txt, apply deploy/local/patches, and
# `go build` cmd/ferretdb.
provision_ferretdb() {
  step=$((step + 1))
  if ferretdb_current; then
    echo "[provision ${step}/${total}] ${FERRETDB_LABEL}: already in ${HONGLING_FERRETDB_HOME}"
    return
  fi
  local how="go mod download + go build"
  ((${#FERRETDB_PATCHES[@]} == 0)) || how="go mod download + ${#FERRETDB_PATCHES[@]} patch(es) + go build"
  if [[ -f "${FERRETDB_MARKER}" ]]; then
    echo "[provision ${step}/${total}] ${FERRETDB_LABEL}: the cached build has another patch set; rebuilding via ${how} …"
  else
    echo "[provision ${step}/${total}] ${FERRETDB_LABEL} via ${how} …"
  fi
  local go_bin="go"
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    go_bin=/usr/local/go/bin/go
  fi
  need "${go_bin}" "Go 1.24+ builds FerretDB from its module"
  local t0=${SECONDS} staged="${WORK}/ferretdb" log="${WORK}/go.log"
  local module="github.com/FerretDB/FerretDB@${HONGLING_FERRETDB_VERSION}" json src
  mkdir -p "${staged}/bin" "${WORK}/gomod"
  # Run outside any Go module so the repository's own go.mod (if one appears) plays no part.
  if ! json=$(cd "${WORK}/gomod" && GOWORK=off "${go_bin}" mod download -json "${module}" 2>"${log}"); then
    printf '%s\n' "${json}" >>"${log}"
    die_with_log "go mod download ${module}" "${log}"
  fi
  src=$(printf '%s\n' "${json}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n 1)
  [[ -n "${src}" && -d "${src}" ]] || {
    printf '%s\n' "${json}" >>"${log}"
    die_with_log "go mod download ${module} (no source directory in its answer)" "${log}"
  }
  cp -R "${src}" "${WORK}/src"
  chmod -R u+w "${WORK}/src"
  printf '%s\n' "${HONGLING_FERRETDB_VERSION}" >"${WORK}/src/build/version/version.txt"
  apply_ferretdb_patches "${WORK}/src" "${log}"
  if ! (cd "${WORK}/src" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" \
    "${go_bin}" build -trimpath -o "${staged}/bin/ferretdb" ./cmd/ferretdb) >"${log}" 2>&1; then
    die_with_log "go build ./cmd/ferretdb (${module})" "${log}"
  fi
  local version
  if ! version=$("${staged}/bin/ferretdb" --version 2>&1); then
    printf '%s\n' "${version}" >"${log}"
    die_with_log "smoke test (ferretdb --version)" "${log}"
  fi
  grep -q "version: ${HONGLING_FERRETDB_VERSION}\$" <<<"${version}" ||
    die "built ferretdb reports an unexpected version: ${version%%$'\n'*}"
  printf 'ferretdb %s\npatches %s\n' "${HONGLING_FERRETDB_VERSION}" "${FERRETDB_PATCH_ID}" >"${staged}/.complete"
  if ((${#FERRETDB_PATCHES[@]} > 0)); then
    printf 'patch %s\n' "${FERRETDB_PATCHES[@]##*/}" >>"${staged}/.complete"
  fi
  printf 'provisioned %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"${staged}/.complete"
  install_dir "${staged}" "${HONGLING_FERRETDB_HOME}"
  echo "    ${HONGLING_FERRETDB_BIN} ($((SECONDS - t0))s)"
}

# apply_ferretdb_patches SRC LOG: apply FERRETDB_PATCHES to the source tree SRC (a fresh copy of the
# module). A patch that is already applied (its reverse applies cleanly) is skipped.
apply_ferretdb_patches() {
  local src="$1" log="$2" p name tool=patch
  ((${#FERRETDB_PATCHES[@]} > 0)) || return 0
  if ! command -v patch >/dev/null 2>&1; then
    need git "'patch' or 'git' applies deploy/local/patches to the FerretDB source"
    tool=git
  fi
  for p in "${FERRETDB_PATCHES[@]}"; do
    name="deploy/local/patches/${p##*/}"
    if [[ "${tool}" == patch ]]; then
      if (cd "${src}" && patch -p1 -R -s -f --dry-run <"${p}") >/dev/null 2>&1; then
        echo "    ${name}: already applied"
        continue
      fi
      if ! (cd "${src}" && patch -p1 -N -f --no-backup-if-mismatch -r - <"${p}") >"${log}" 2>&1; then
        die_with_log "applying ${name} to ${HONGLING_FERRETDB_VERSION} (does the patch match this FerretDB version?)" "${log}"
      fi
    else
      if (cd "${src}" && git apply -p1 -R --check "${p}") >/dev/null 2>&1; then
        echo "    ${name}: already applied"
        continue
      fi
      if ! (cd "${src}" && git apply -p1 "${p}") >"${log}" 2>&1; then
        die_with_log "applying ${name} to ${HONGLING_FERRETDB_VERSION} (does the patch match this FerretDB version?)" "${log}"
      fi
    fi
    echo "    patched: ${name}"
  done
}

# PostgreSQL 15 from Debian's packages. Installed only where it is missing, at the pinned package
# version; the package's own cluster is not created (and no system service started): the project runs a
# private cluster under the state dir (stack.sh). An installed 15.x is used as it is (a patch release
# keeps the data format); its version is printed.
provision_postgres() {
  step=$((step + 1))
  local pkg="postgresql-${HONGLING_POSTGRES_MAJOR}" installed
  if postgres_present; then
    installed="$(dpkg-query -W -f='${Version}' "${pkg}" 2>/dev/null || true)"
    echo "[provision ${step}/${total}] ${POSTGRES_LABEL}: already in ${HONGLING_POSTGRES_BIN_DIR} (${pkg} ${installed:-not from a Debian package})"
    if [[ -n "${installed}" && "${installed}" != "${HONGLING_POSTGRES_DEB_VERSION}" ]]; then
      echo "    note: the tested version is ${HONGLING_POSTGRES_DEB_VERSION} (HONGLING_POSTGRES_DEB_VERSION in deploy/local/env.sh)"
    fi
    return
  fi
  echo "[provision ${step}/${total}] ${POSTGRES_LABEL} via apt-get install ${pkg}=${HONGLING_POSTGRES_DEB_VERSION} …"
  need apt-get "PostgreSQL ${HONGLING_POSTGRES_MAJOR} comes from Debian's packages"
  local -a sudo=()
  if [[ ${EUID} -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
      die "PostgreSQL ${HONGLING_POSTGRES_MAJOR} is not installed and this user cannot install it; run once:
    sudo apt-get install -y ${pkg}=${HONGLING_POSTGRES_DEB_VERSION}"
    sudo=(sudo -n)
  fi
  local t0=${SECONDS} log="${WORK}/apt.log"
  # Debian's package would create and start a cluster of its own: it is not wanted here.
  "${sudo[@]}" mkdir -p /etc/postgresql-common
  if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
    printf 'create_main_cluster = false\n' | "${sudo[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >"${log}" 2>&1; then
    die_with_log "apt-get update" "${log}"
  fi
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confold "${pkg}=${HONGLING_POSTGRES_DEB_VERSION}" >"${log}" 2>&1; then
    {
      echo "    (the pinned version may no longer be served; what Debian serves now:)"
      apt-cache policy "${pkg}" 2>&1 | sed 's/^/    /'
      echo "    To move the pin, change HONGLING_POSTGRES_DEB_VERSION in deploy/local/env.sh and run make test."
    } >>"${log}"
    die_with_log "apt-get install ${pkg}=${HONGLING_POSTGRES_DEB_VERSION}" "${log}"
  fi
  postgres_present || die "${pkg} installed, but ${HONGLING_POSTGRES_BIN_DIR}/postgres is missing"
  echo "    $("${HONGLING_POSTGRES_BIN_DIR}/postgres" --version) ($((SECONDS - t0))s)"
}

provision_kafka
provision_postgres
provision_ferretdb
echo "[provision] done in $((SECONDS - started))s (cache: ${HONGLING_CACHE_DIR})"
