#!/usr/bin/env bash
# Installs the Debian packages the project needs (skipping those present),
# then configures and builds it in ./build.  Sourced by demo.sh and test.sh;
# runs on its own too.  BUILD_DIR and MESON_ARGS may be set by the caller.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(
  meson ninja-build pkg-config gcc libc6-dev
  liblmdb-dev lmdb-utils libmsgpack-dev libyaml-dev libcurl4-openssl-dev
  check zlib1g-dev libdeflate-dev libmicrohttpd-dev libjansson-dev
  python3-pytest python3-venv
  util-linux curl strace fiu-utils openssl python3-prometheus-client
  iproute2 scdoc man-db groff-base
  debhelper dpkg-dev fakeroot lintian libsystemd-dev systemd
  nats-server libnats-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_DIR=${BUILD_DIR:-build}
if [ -f "$BUILD_DIR/build.ninja" ]; then
  # shellcheck disable=SC2086
  meson setup --reconfigure "$BUILD_DIR" -Dwerror=true ${MESON_ARGS:-} >/dev/null
else
  # shellcheck disable=SC2086
  meson setup "$BUILD_DIR" -Dwerror=true ${MESON_ARGS:-} >/dev/null
fi
ninja -C "$BUILD_DIR"
