#!/usr/bin/env bash
# Speech capacity (issue 14 item 3): how many callers can talk at once before end of speech
# -> escalation trigger p95 passes 1.0 s, per whisper model and worker layout, next to what
# warmline's own start-up self-test says it can hear (its `[speech] capacity` when the
# file does not set one).
#
# For N = 1, 2, 3…: N SIPp callers at a time (ROUNDS × N calls, a new one as each ends)
# play espeak-ng speech asking for a person, as PCMU; warmline's "escalation trigger" log
# lines carry since_speech_end_ms (closing silence, queue wait and decoding included).
# Stops at the first N whose p95 passes 1.0 s. Meanwhile a probe caller (probe_call.py)
# measures call set-up p95 and the jitter of the RTP warmline sends, idle and at each N.
#   benches/speech_capacity.sh [MODEL...]   (default: the installed tiny.en-q8_0 and tiny.en)
# Env: WORKERS="1 2" (recognizer workers; the cores are shared out between them),
#      MAX_N=8, ROUNDS=3.
# Loopback only; bounded by MAX_N, ROUNDS and SIPp's timeouts. Needs root (SIPp's pcap play).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/steal.sh
. "$root/benches/steal.sh"
# shellcheck source=benches/gateway.sh
. "$root/benches/gateway.sh"
workers=${WORKERS:-"1 2"}; max_n=${MAX_N:-8}; rounds=${ROUNDS:-3}
command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)"; exit 2; }
work=$(mktemp -d); wl=""
stop_wl() { [ -n "$wl" ] && kill "$wl" 2>/dev/null && wait "$wl" 2>/dev/null; wl=""; }
trap 'stop_wl; rm -rf "$work"' EXIT
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline
bin="$root/target/release/warmline"
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  while read -r name path; do
    case "$name" in tiny.en|tiny.en-q8_0) [ -f "$path" ] && models+=("$path") ;; esac
  done < <("$bin" model list 2>&1 | tail -n +2)
fi
[ ${#models[@]} -gt 0 ] || { echo "no whisper model installed (warmline model fetch tiny.en)"; exit 2; }
"$root/sipp-scenarios/make_media.sh" "$work/media" >/dev/null
mkdir -p "$work/caller" && cp "$work/media/ask_pcmu.pcap" "$work/caller/audio.pcap"

# gateway MODEL WORKERS CAPACITY: started, its log in $work/wl.log.
gateway() {
  { wl_config 5995 500 45000 45999 "" info; cat <<TOML; } >"$work/wl.toml"
[speech]
whisper_model = "$1"
threads = $2
capacity = $3
[store]
path = "$work/wl.db"
# No agents: the trigger is measured, no transfer follows (SIPp's caller takes no re-INVITE).
[[routes]]
name = "default"
TOML
  rm -f "$work/wl.db"*
  "$bin" run --config "$work/wl.toml" 2>"$work/wl.log" &
  wl=$!
  wl_wait_ready "$work/wl.log" "$wl" 5995
}

steal_start
for model in "${models[@]}"; do
  for w in $workers; do
    # What warmline measures for itself at start-up (capacity = 0: the self-test).
    gateway "$model" "$w" 0
    self=$(grep -o 'speech capacity: callers heard at once.*' "$work/wl.log" | head -1 || true)
    line=$(grep 'speech capacity: callers heard at once' "$work/wl.log" | head -1)
    cap=$(sed -nE 's/.*capacity=([0-9]+).*/\1/p' <<<"$line")
    test_ms=$(sed -nE 's/.*self_test_ms=([0-9]+).*/\1/p' <<<"$line")
    stop_wl
    [ -n "$self" ] || { echo "no self-test line"; exit 1; }
    # The knee, with nothing refused while it is found.
    gateway "$model" "$w" 10000
    echo "$(basename "$model"), $w worker(s): self-test decodes the 2 s request in ${test_ms} ms -> capacity ${cap}"
    # What speech load must not hurt (item 4), idle first: a probe caller's set-up time and
    # the jitter of the RTP warmline sends it.
    python3 "$root/benches/probe_call.py" 5995 8 "$work/idle.json" | sed 's/^/  idle /'
    knee=0
    for n in $(seq 1 "$max_n"); do
      before=$(grep -c "escalation trigger" "$work/wl.log" || true)
      calls=$((n * rounds))
      python3 "$root/benches/probe_call.py" 5995 $((rounds * 4)) "$work/load.json" >/dev/null &
      probe=$!
      (cd "$work/caller" && timeout $((calls * 6 + 60)) sipp 127.0.0.1:5995 -sf "$root/sipp-scenarios/uac_media.xml" \
         -key codec 0 -i 127.0.0.1 -p 5996 -mp 7200 -m "$calls" -l "$n" -r "$n" -d 3000 -nostdin \
         -timeout $((calls * 6 + 30))s >/dev/null 2>&1) || true
      wait "$probe" || true
      # The last trigger may be logged a moment after SIPp's BYE.
      for _ in $(seq 20); do
        [ $(( $(grep -c "escalation trigger" "$work/wl.log" || true) - before )) -ge "$calls" ] && break; sleep 0.1
      done
      grep "escalation trigger" "$work/wl.log" | tail -n +$((before + 1)) |
        sed -E 's/.*since_speech_end_ms=([0-9]+).*/\1/' | grep -E '^[0-9]+$' | sort -n >"$work/lat.txt" || true
      read -r got p50 p95 < <(awk '{v[NR]=$1} END {
        if (NR == 0) { print 0, "-", "-"; exit }
        a = int(NR * 0.5 + 0.999); if (a < 1) a = 1; b = int(NR * 0.95 + 0.999); if (b > NR) b = NR
        print NR, v[a], v[b] }' "$work/lat.txt")
      printf '  %2d talking at once: %2d/%2d triggered, end of speech -> trigger p50 %5s ms, p95 %5s ms' \
        "$n" "$got" "$calls" "$p50" "$p95"
      python3 - "$work/idle.json" "$work/load.json" <<'PY'
import json, sys
idle, load = (json.load(open(f)) for f in sys.argv[1:3])
def ratio(k):
    a, b = idle.get(k), load.get(k)
    return "-" if not a or b is None else f"{b:.2f} ms ({b / a:.1f}x idle)"
print(f"; probe set-up p95 {ratio('setup_p95_ms')}, RTP jitter p95 {ratio('jitter_p95_ms')}")
PY
      if [ "$got" -lt "$calls" ] || [ "$p95" = "-" ] || [ "$p95" -gt 1000 ]; then break; fi
      knee=$n
    done
    echo "  => $(basename "$model"), $w worker(s): heard within 1.0 s (p95) up to $knee callers talking at once; self-test capacity $cap"
    stop_wl
  done
done
steal_report
