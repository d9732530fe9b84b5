#!/usr/bin/env bash
# Every parser's fuzz target, run long: EXECS inputs each (default 1,000,000), release
# build, seeded (a crash reproduces). Prints each target's executions and crashes (a crash
# fails its target, which is then printed as such) and the peak memory of each run.
#   benches/fuzz.sh [EXECS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
execs=${1:-1000000}
export WARMLINE_FUZZ_EXECS=$execs
status=0
run() { # PACKAGE TEST-TARGET-ARGS... 
  local out
  out=$(mktemp)
  if /usr/bin/time -f "peak RSS %M KB" cargo test --release --quiet --manifest-path "$root/Cargo.toml" "$@" -- --nocapture --test-threads 1 >"$out" 2>&1; then
    grep -E "^fuzz |peak RSS" "$out" | sed 's/^/  /'
  else
    echo "  CRASH in $*:"; grep -E "panicked|^fuzz " "$out" | sed 's/^/    /' | head -20
    status=1
  fi
  rm -f "$out"
}
echo "fuzzing every parser, $execs executions each (seeded; WARMLINE_FUZZ_EXECS)"
run -p warmline-signaling --test fuzz
run -p warmline-media --test fuzz
run -p warmline-speech --test fuzz
run -p warmline --bin warmline mutated_
exit $status
