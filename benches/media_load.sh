#!/usr/bin/env bash
# Bridged-call media load: N concurrent calls, SIPp caller playing PCMU speech (pcap)
# -> warmline ([route] mode = "bridge") -> SIPp `uas -rtp_echo`, so each caller packet
# crosses warmline twice (out to the echo, back to the caller). Steps N up and prints, per
# step, over a steady window with all N calls up: warmline CPU µs per relayed packet,
# warmline CPU %, RSS per call, packets warmline saw lost (RFC 3550, summed over legs),
# kernel UDP receive errors, and the load generator's own CPU.
#   benches/media_load.sh [N...]      (default: 100 400 800 1200)
# Env: WINDOW_S (steady window, default 10), RATE (calls/s while ramping, default 200),
#      PLAY = pcap (default: play_pcap_audio) | stream (SIPp rtp_stream). play_pcap_audio
#      opens a raw socket per playing call, and the kernel hands every loopback UDP packet
#      to every raw socket, charged to whoever sent it: with pcap play, warmline's sendto
#      pays for SIPp's raw sockets. `stream` shows warmline's cost without that tax.
# Loopback only; every step is bounded by -m and timeouts. Run as root (SIPp's pcap play).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/steal.sh
. "$root/benches/steal.sh"
# shellcheck source=benches/gateway.sh
. "$root/benches/gateway.sh"
steps=("$@"); [ ${#steps[@]} -eq 0 ] && steps=(100 400 800 1200)
window=${WINDOW_S:-10}
rate=${RATE:-200}
work=$(mktemp -d)
cleanup() { pkill -f "sipp.*-p 598[12]" 2>/dev/null || true; [ -n "${wl:-}" ] && kill "$wl" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)"; exit 2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline
steal_start
"$root/sipp-scenarios/make_media.sh" "$work/media" >/dev/null
mkdir -p "$work/caller"
scenario="$root/sipp-scenarios/uac_media.xml"
if [ "${PLAY:-pcap}" = stream ]; then
  cp "$work/media/speech_long_ulaw.wav" "$work/caller/audio.wav"
  sed 's|<exec play_pcap_audio="audio.pcap"/>|<exec rtp_stream="audio.wav,-1,0"/>|' "$scenario" >"$work/uac_stream.xml"
  scenario="$work/uac_stream.xml"
else
  cp "$work/media/speech_long_pcmu.pcap" "$work/caller/audio.pcap"
fi
{ wl_config 5980 5000 20000 39999 127.0.0.1:5989 warn; cat <<TOML; } >"$work/wl.toml"
[route]
mode = "bridge"
target = "sip:echo@127.0.0.1:5982"
TOML
"$root/target/release/warmline" run --config "$work/wl.toml" 2>"$work/wl.log" &
wl=$!
wl_wait_ready "$work/wl.log" "$wl" 5980

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
sipp_ticks() { local t=0; for p in $(pgrep -f "sipp.*-p 598[12]" || true); do t=$((t + $(ticks "$p"))); done; echo $t; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# Drops on warmline's own RTP sockets (the caller SIPp never reads its media port, so the
# system-wide UDP error counter would count its overflow, not ours).
udp_errs() { python3 -c "
import sys
print(sum(int(l.split()[-1]) for l in open('/proc/net/udp').readlines()[1:]
          if 20000 <= int(l.split()[1].split(':')[1], 16) <= 39999))"; }
stat() { curl -sf http://127.0.0.1:5989/v1/stats | python3 -c "import json,sys; print(json.load(sys.stdin)['media']['$1'])"; }
# Packets warmline expected but never got (RFC 3550 A.3), from the caller legs and from the
# echo legs: "caller,echo". A gap there happened before warmline's socket.
lost() { curl -sf http://127.0.0.1:5989/v1/calls | python3 -c "
import json,sys
calls = json.load(sys.stdin)
def lost(role):
    return sum(max(0, (c.get('media') or {}).get('lost', 0)) for c in calls if c['role'] == role)
print(lost('inbound'), lost('outbound'))"; }
hz=$(getconf CLK_TCK)

echo "audio played by the caller: ${PLAY:-pcap}"
printf '%6s %10s %8s %9s %10s %9s %9s %9s %9s\n' calls relayed/s "µs/pkt" "cpu" "KB/call" "lost c/e" "wl_drops" "sipp_cpu" "active"
for n in "${steps[@]}"; do
  ramp=$(( (n + rate - 1) / rate + 2 ))
  hold_ms=$(( (ramp + window + 3) * 1000 ))
  idle_rss=$(rss_kb "$wl")
  (cd "$work" && timeout $((ramp + window + 40)) sipp -sf "$root/sipp-scenarios/uas_echo.xml" -key codec 0 -rtp_echo \
     -i 127.0.0.1 -p 5982 -mp 6000 -m "$n" -nostdin -timeout $((ramp + window + 30))s >/dev/null 2>&1) &
  uas=$!
  sleep 0.5
  (cd "$work/caller" && timeout $((ramp + window + 40)) sipp 127.0.0.1:5980 -sf "$scenario" \
     -key codec 0 -i 127.0.0.1 -p 5981 -mp 7000 -m "$n" -l "$n" -r "$rate" -d "$hold_ms" -nostdin \
     -timeout $((ramp + window + 30))s >/dev/null 2>&1) &
  uac=$!
  sleep "$ramp"
  c0=$(ticks "$wl"); s0=$(sipp_ticks); o0=$(stat rtp_out); e0=$(udp_errs); read -r li0 le0 < <(lost)
  sleep "$window"
  c1=$(ticks "$wl"); s1=$(sipp_ticks); o1=$(stat rtp_out); e1=$(udp_errs); read -r li1 le1 < <(lost)
  active=$(curl -sf http://127.0.0.1:5989/v1/stats | python3 -c "import json,sys; print(json.load(sys.stdin)['active_calls'])")
  rss=$(rss_kb "$wl")
  wait "$uac" "$uas" || true
  awk -v n="$n" -v c=$((c1 - c0)) -v s=$((s1 - s0)) -v o=$((o1 - o0)) -v w="$window" -v hz="$hz" \
      -v rss=$(( (rss - idle_rss) )) -v li=$((li1 - li0)) -v le=$((le1 - le0)) -v e=$((e1 - e0)) -v a="$active" 'BEGIN {
    us = (o > 0) ? c / hz * 1e6 / o : 0
    printf "%6d %10.0f %8.2f %8.0f%% %10.1f %9s %9d %8.0f%% %9d\n", n, o / w, us, 100 * c / hz / w, rss / n, li "/" le, e, 100 * s / hz / w, a
  }'
  # Let every call end before the next step.
  for _ in $(seq 100); do [ "$(curl -sf http://127.0.0.1:5989/v1/stats | python3 -c "import json,sys; print(json.load(sys.stdin)['active_calls'])")" = 0 ] && break; sleep 0.2; done
done
echo "KB/call: warmline RSS growth per bridged call (caller leg + far leg, two SIP dialogs); cpu: % of one core; lost c/e: gaps in what the caller / the echo sent warmline."
steal_report
