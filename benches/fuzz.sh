#!/usr/bin/env bash
# Every parser's fuzz target, run long: EXECS inputs each (default 1,000,000), release
# build, seeded (a crash reproduces). Prints each target's executions and crashes (a crash
# fails its target, which is then printed as such) and the peak memory of the test process.
#   benches/fuzz.sh [EXECS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
execs=${1:-1000000}
status=0
# The test binary of PACKAGE/TARGET, built in release.
binary() {
  cargo test --release --quiet --no-run --message-format=json --manifest-path "$root/Cargo.toml" "$@" 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' | tail -1
}
run() { # FILTER CARGO-ARGS...
  local filter=$1 bin out
  shift
  bin=$(binary "$@")
  out=$(mktemp)
  if WARMLINE_FUZZ_EXECS=$execs /usr/bin/time -f "peak RSS %M KB" "$bin" --nocapture --test-threads 1 $filter >"$out" 2>&1; then
    grep -oE "fuzz [^:]+: [0-9]+ executions, [0-9]+ crashes|peak RSS [0-9]+ KB" "$out" | sed 's/^/  /'
  else
    echo "  CRASH in $*:"
    grep -E "panicked|fuzz " "$out" | sed 's/^/    /' | head -20
    status=1
  fi
  rm -f "$out"
}
echo "fuzzing every parser, $execs executions each (seeded; WARMLINE_FUZZ_EXECS)"
run "" -p warmline-signaling --test fuzz
run "" -p warmline-media --test fuzz
run "" -p warmline-speech --test fuzz
run mutated_ -p warmline --bin warmline
exit $status
