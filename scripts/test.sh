#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what it needs, then runs
# formatting, lints, unit, virtual-clock and real-peer (SIPp) tests. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v curl >/dev/null || need+=(curl)
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
# Real-peer media tests: speech and pcaps are made at test time, captures read with tshark.
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v python3 >/dev/null || need+=(python3)
command -v tshark >/dev/null || need+=(tshark)
# Speech: whisper.cpp builds with cmake (bindgen needs libclang); the zero-download
# recognizer is libpocketsphinx with Debian's en-us model.
command -v cmake >/dev/null || need+=(cmake)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so >/dev/null 2>&1 || need+=(libclang-dev)
pkg-config --exists pocketsphinx 2>/dev/null || need+=(libpocketsphinx-dev libsphinxbase-dev)
[ -d /usr/share/pocketsphinx/model/en-us/en-us ] || need+=(pocketsphinx-en-us)
# The agent's softphone in the warm-transfer tests.
command -v baresip >/dev/null || need+=(baresip)
# The agent's screen-pop page is checked in headless Chromium.
command -v chromium >/dev/null || need+=(chromium)
# Scale-out: Kamailio's dispatcher in front of two instances.
command -v kamailio >/dev/null || need+=(kamailio)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 2
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Portable whisper.cpp build (no -march=native), as in deploy/Dockerfile.
export GGML_NATIVE=OFF
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Benches compile here; their figures come from `cargo bench` and benches/sip_load.sh.
cargo test --workspace --all-targets --locked
