#!/usr/bin/env bash
# Installs every Debian 12 package bifurcate needs to build, test and benchmark.
# Idempotent: does nothing (and needs no network) when all are present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libgtest-dev libgmock-dev googletest
  libbenchmark-dev
  libicu-dev
  nlohmann-json3-dev
  python3-jinja2
  clang libclang-rt-14-dev libfuzzer-14-dev  # the fuzz flavour (libFuzzer + sanitizers)
  libcpp-httplib-dev
  nodejs npm
  haproxy curl python3   # the cluster test (tests/cluster) and scripts/cluster.sh
  qemu-user   # tests/isa: the program on an emulated AVX2-only CPU
)

missing=()
for p in "${PACKAGES[@]}"; do
  # A Node.js installed from elsewhere (NodeSource's nodejs bundles npm and
  # conflicts with Debian's npm package) serves the server tests as well.
  if [ "$p" = nodejs ] || [ "$p" = npm ]; then
    command -v "${p/nodejs/node}" >/dev/null 2>&1 && continue
  fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
