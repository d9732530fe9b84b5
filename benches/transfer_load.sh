#!/usr/bin/env bash
# Warm transfers under load, timed on the wire. N SIPp callers (CONCURRENT at a time) ask for
# a person in espeak-ng speech and take warmline's hold and resume re-INVITEs; a SIPp agent
# (uas_agent.xml) answers every transfer. tshark records SIP and RTP on loopback; warmline
# logs the trigger and the bridge decision. benches/transfer_report.py prints, over every
# transfer: trigger -> caller re-INVITE on the wire, trigger -> agent INVITE on the wire,
# the longest silence the caller heard from the trigger to the bridge, agent 200 OK -> first
# audio to the agent (the briefing), bridge decision -> first bridged packet to the caller,
# how many transfers missed a deadline, and warmline's memory per transfer in flight
# (peak RSS over idle RSS, divided by CONCURRENT).
#   benches/transfer_load.sh [N] [CONCURRENT]      (default 100 transfers, 10 at a time)
# Loopback only; bounded by -m and timeouts. Needs root (SIPp's pcap play, tshark).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/steal.sh
. "$root/benches/steal.sh"
# shellcheck source=benches/gateway.sh
. "$root/benches/gateway.sh"
n=${1:-100}; conc=${2:-10}
work=$(mktemp -d)
cleanup() {
  [ -n "${wl:-}" ] && kill "$wl" 2>/dev/null
  [ -n "${agent:-}" ] && kill "$agent" 2>/dev/null
  [ -n "${cap:-}" ] && kill -INT "$cap" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline
"$root/sipp-scenarios/make_media.sh" "$work/media" >/dev/null
mkdir -p "$work/caller" "$work/agent"
cp "$work/media/ask_pcmu.pcap" "$work/caller/audio.pcap"
cp "$work/media/tone_pcmu.pcap" "$work/caller/tone.pcap"
cp "$work/media/agent_pcmu.pcap" "$work/agent/agent.pcap"
# Each caller its own name and number, so each briefing is new text: the agent's briefing
# is rendered per transfer, as in production, not served from the TTS cache.
sed 's|From: sipp <sip:sipp@|From: "Caller [call_number]" <sip:+1555000[call_number]@|' \
  "$root/sipp-scenarios/uac_transfer.xml" >"$work/caller/uac_transfer.xml"
{ wl_config 5990 1000 44000 45999 "" info; cat <<TOML; } >"$work/wl.toml"
[store]
path = "$work/warmline.db"
[speech]
greeting_text = "Hello, this is an automated assistant."
# Transfers are measured, not hearing: every caller is listened to.
capacity = 1000
[[routes]]
name = "default"
ring_timeout_s = 10
targets = ["sip:agent@127.0.0.1:5994"]
TOML
tshark -i lo -q -f "udp port 5990 or udp port 5991 or udp port 5994 or udp portrange 44000-45999 or udp port 7100" \
  -w "$work/cap.pcap" 2>"$work/tshark.log" &
cap=$!
for _ in $(seq 100); do grep -q "Capturing on" "$work/tshark.log" && break; sleep 0.1; done
"$root/target/release/warmline" run --config "$work/wl.toml" 2>"$work/wl.log" &
wl=$!
wl_wait_ready "$work/wl.log" "$wl" 5990
steal_start
rss() { awk '/VmRSS/ {print $2}' "/proc/$wl/status" 2>/dev/null || echo 0; }
idle_kb=$(rss)
(peak=0; while kill -0 "$wl" 2>/dev/null; do r=$(rss); [ "${r:-0}" -gt "$peak" ] && peak=$r && echo "$peak" >"$work/peak_kb"; sleep 0.5; done) &
(cd "$work/agent" && exec timeout $((n * 20 + 120)) sipp -sf "$root/sipp-scenarios/uas_agent.xml" \
   -key codec 0 -i 127.0.0.1 -p 5994 -mp 7200 -m "$n" -nostdin >/dev/null 2>&1) &
agent=$!
sleep 0.5
(cd "$work/caller" && timeout $((n * 20 + 120)) sipp 127.0.0.1:5990 -sf "$work/caller/uac_transfer.xml" \
   -key codec 0 -i 127.0.0.1 -p 5991 -mp 7100 -m "$n" -l "$conc" -r 2 -d 1500 -nostdin \
   -timeout $((n * 20 + 60))s >/dev/null 2>&1) || echo "note: some SIPp callers failed (see the report's counts)"
sleep 1
kill -INT "$cap" 2>/dev/null; wait "$cap" 2>/dev/null || true; cap=""
python3 "$root/benches/transfer_report.py" "$work/wl.log" "$work/cap.pcap" "$n" "$conc"
peak_kb=$(cat "$work/peak_kb" 2>/dev/null || echo "$idle_kb")
echo "warmline RSS: idle $((idle_kb / 1024)) MiB, peak $((peak_kb / 1024)) MiB, $(( (peak_kb - idle_kb) / conc )) KiB per transfer in flight ($conc at a time)"
steal_report
