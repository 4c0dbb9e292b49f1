#!/usr/bin/env bash
# setup.sh installs everything segad-edge needs to build, test and run its demo on
# Debian 12. It is idempotent: a machine that already has everything is not touched.
#
# Sources used (and nothing else): Debian packages, the Go module proxy, the npm registry.
#   - apt: OpenCV (GoCV), XGBoost C library (training), Mosquitto, PostgreSQL,
#          pymodbus and mbpoll (independent peers the tests start),
#          numpy/scipy/xgboost/onnx for the golden-fixture scripts,
#          headless Chromium and curl for the console's browser and cost tests.
#   - npm: the ONNX Runtime shared library, taken out of onnxruntime-node's package
#          with `npm pack` (which runs no install scripts) and checked by sha256.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ort_version=1.24.1
ort_dir="$root/.deps/onnxruntime"
ort_lib="$ort_dir/libonnxruntime.so.1"

# Debian packages the build, the tests and the golden scripts need.
apt_packages=(
  build-essential pkg-config
  libopencv-dev
  libxgboost-dev
  mosquitto mosquitto-clients
  postgresql
  python3-pymodbus python3-serial-asyncio mbpoll
  python3-numpy python3-scipy python3-xgboost python3-onnx
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav
  systemd
  openssl
  npm
  chromium fonts-dejavu-core curl
)

log() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then echo sudo; else
      log "installing Debian packages needs root (or sudo): ${missing[*]}"; exit 1
    fi
  fi
}

missing=()
for p in "${apt_packages[@]}"; do
  # npm may come with a Node.js install outside Debian's packages; that one is fine.
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  # systemd-analyze is only used to verify rendered units; the package is optional.
  if [ "$p" = systemd ] && command -v systemd-analyze >/dev/null 2>&1; then continue; fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=$(need_root)
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -q
  $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  log "Debian packages: all present"
fi

# ONNX Runtime from the npm registry, checked by sha256 (REFERENCE.md section 3).
case "$(uname -m)" in
  x86_64) ort_arch=x64; ort_sha=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4 ;;
  aarch64) ort_arch=arm64; ort_sha= ;;
  *) log "no ONNX Runtime build in onnxruntime-node for $(uname -m)"; exit 1 ;;
esac
if [ -f "$ort_lib" ] && { [ -z "$ort_sha" ] || echo "$ort_sha  $ort_lib" | sha256sum -c --status; }; then
  log "ONNX Runtime $ort_version: present at ${ort_lib#"$root"/}"
else
  log "fetching ONNX Runtime $ort_version (npm pack onnxruntime-node@$ort_version)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ort_version" >/dev/null)
  tar -xzf "$tmp"/onnxruntime-node-"$ort_version".tgz -C "$tmp" \
    "package/bin/napi-v6/linux/$ort_arch/libonnxruntime.so.1"
  src="$tmp/package/bin/napi-v6/linux/$ort_arch/libonnxruntime.so.1"
  if [ -n "$ort_sha" ] && ! echo "$ort_sha  $src" | sha256sum -c --status; then
    log "ONNX Runtime library checksum mismatch: expected $ort_sha"; exit 1
  fi
  mkdir -p "$ort_dir"
  install -m 0644 "$src" "$ort_lib.tmp" && mv "$ort_lib.tmp" "$ort_lib"
  log "ONNX Runtime $ort_version installed at ${ort_lib#"$root"/}"
fi

# Go modules (from the Go module proxy), so the first build does not stall on them.
if ! command -v go >/dev/null 2>&1; then
  log "Go 1.24 or newer is needed to build segad (not found on PATH; Debian 12's golang package is too old)"
  exit 1
fi
(cd "$root" && go mod download)
log "ready"
