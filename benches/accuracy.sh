#!/usr/bin/env bash
# The escalation-accuracy suite, all 81 labelled calls (benches/accuracy/cases.py) through
# the release binary: right-trigger %, false-escalation %, per category, the confusions
# with what was heard, end of speech -> trigger p50/p95. Three calls at a time.
#   benches/accuracy.sh [tiny.en-q8_0|tiny.en|base|fallback] [--subset ci] [--parallel N]
# Env: LOG_LEVEL (warmline's [log] level, default "info"; e.g. "info,warmline::speech=debug" logs each
# phrase check). Needs root (SIPp's pcap play), sipp, espeak-ng, sox, python3. Loopback only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/steal.sh
. "$root/benches/steal.sh"
which=${1:-tiny.en-q8_0}; shift || true
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline
bin="$root/target/release/warmline"
steal_start
if [ "$which" = fallback ]; then
  python3 "$root/benches/accuracy/run.py" --bin "$bin" --fallback "$@"
else
  model=$("$bin" model fetch "$which")
  python3 "$root/benches/accuracy/run.py" --bin "$bin" --model "$model" "$@"
fi
steal_report
