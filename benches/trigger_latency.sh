#!/usr/bin/env bash
# End of a caller's utterance → escalation trigger, measured in the gateway: N SIPp callers
# (CONCURRENT at a time) play espeak-ng speech asking for a person as PCMU; warmline's log
# line "escalation trigger" carries since_speech_end_ms (the closing silence, recognition latency, queue wait
# included, plus the policy). Prints p50/p95/max and how many calls triggered.
#   benches/trigger_latency.sh [N] [CONCURRENT]     (default 20 calls, 4 at a time)
# Env: WARMLINE_WHISPER_MODEL to use whisper instead of the pocketsphinx fallback.
# Loopback only; bounded by -m and timeouts. Needs root (SIPp's pcap play).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/steal.sh
. "$root/benches/steal.sh"
# shellcheck source=benches/gateway.sh
. "$root/benches/gateway.sh"
n=${1:-20}; conc=${2:-4}
work=$(mktemp -d)
cleanup() { [ -n "${wl:-}" ] && kill "$wl" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline
steal_start
"$root/sipp-scenarios/make_media.sh" "$work/media" >/dev/null
mkdir -p "$work/caller" && cp "$work/media/ask_pcmu.pcap" "$work/caller/audio.pcap"
model=""
[ -n "${WARMLINE_WHISPER_MODEL:-}" ] && model="whisper_model = \"$WARMLINE_WHISPER_MODEL\""
cat >"$work/wl.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:5990"]
max_calls = 500
[media]
rtp_port_range = [44000, 44999]
[http]
listen = ""
[log]
level = "info"
[speech]
$model
# Latency past the speech capacity is what this shows: nothing is refused
# (benches/speech_capacity.sh finds the capacity).
capacity = 500
# No agents: the trigger is measured, no transfer follows (SIPp's caller takes no re-INVITE).
[[routes]]
name = "default"
TOML
"$root/target/release/warmline" run --config "$work/wl.toml" 2>"$work/wl.log" &
wl=$!
wl_wait_ready "$work/wl.log" "$wl" 5990
(cd "$work/caller" && timeout $((n * 5 + 60)) sipp 127.0.0.1:5990 -sf "$root/sipp-scenarios/uac_media.xml" \
   -key codec 0 -i 127.0.0.1 -p 5991 -mp 7100 -m "$n" -l "$conc" -r "$conc" -d 4000 -nostdin \
   -timeout $((n * 5 + 30))s >/dev/null 2>&1) || true
sleep 1
grep "escalation trigger" "$work/wl.log" | sed -E 's/.*since_speech_end_ms=([0-9]+).*/\1/' | grep -E '^[0-9]+$' | sort -n >"$work/lat.txt" || true
recognizer=$(grep -o "speech recognizer: [a-z]*" "$work/wl.log" | head -1)
awk -v n="$n" -v rec="$recognizer" '{v[NR]=$1} END {
  if (NR == 0) { printf "no triggers in %d calls (%s)\n", n, rec; exit 1 }
  p50 = v[int(NR * 0.5) + (NR * 0.5 > int(NR * 0.5))]; if (p50 == "") p50 = v[NR]
  i95 = int(NR * 0.95 + 0.999); if (i95 < 1) i95 = 1; if (i95 > NR) i95 = NR
  printf "%s: %d/%d calls triggered; end of utterance -> trigger p50 %d ms, p95 %d ms, max %d ms\n", rec, NR, n, p50, v[i95], v[NR]
}' "$work/lat.txt"
steal_report
