#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what it needs, then runs
# formatting, lints, unit, virtual-clock and real-peer (SIPp) tests. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
install_deps test
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Portable whisper.cpp build (no -march=native), as in deploy/Dockerfile.
export GGML_NATIVE=OFF
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The real whisper model the speech and accuracy tests use: provisioned once into
# warmline's data directory (a no-op when it is there), or this fails saying why.
cargo build --locked --bin warmline
target/debug/warmline model fetch >/dev/null
# Benches compile here; their figures come from `cargo bench` and benches/sip_load.sh.
cargo test --workspace --all-targets --locked
