#!/usr/bin/env bash
# Soak (issue 14 item 2): bridged calls at half capacity for MINUTES, the calls churning
# (each lasts HOLD_S, a new one starts as one ends), warmline's RSS sampled every minute;
# prints the samples and the least-squares slope after a warm-up, in KB per hour and as a
# share of the mean. A leak shows as a slope; a flat RSS is what a gateway up for months
# needs.
#   benches/soak.sh [MINUTES] [CALLS]     (default 60 minutes, 600 calls: half of 1,200)
# Env: HOLD_S (call length, default 60), WARMUP_MIN (samples left out of the slope, default 5),
#      RTP_LO/RTP_HI (warmline's RTP ports, default 20000-39999; move them to run the soak
#      beside the test suite, whose gateways take slots from 20000 up).
# SIPp caller (rtp_stream speech) -> warmline ([route] mode = "bridge") -> SIPp -rtp_echo,
# as benches/media_load.sh. Loopback only; bounded by MINUTES (SIPp's -m and timeouts).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/steal.sh
. "$root/benches/steal.sh"
# shellcheck source=benches/gateway.sh
. "$root/benches/gateway.sh"
minutes=${1:-60}; calls=${2:-600}
hold_s=${HOLD_S:-60}; warmup=${WARMUP_MIN:-5}
work=$(mktemp -d)
cleanup() { pkill -f "sipp.*-p 597[67]" 2>/dev/null || true; [ -n "${wl:-}" ] && kill "$wl" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)"; exit 2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline
"$root/sipp-scenarios/make_media.sh" "$work/media" >/dev/null
mkdir -p "$work/caller"
cp "$work/media/speech_long_ulaw.wav" "$work/caller/audio.wav"
sed 's|<exec play_pcap_audio="audio.pcap"/>|<exec rtp_stream="audio.wav,-1,0"/>|' \
  "$root/sipp-scenarios/uac_media.xml" >"$work/uac_stream.xml"
{ wl_config 5975 5000 "${RTP_LO:-20000}" "${RTP_HI:-39999}" 127.0.0.1:5978 warn; cat <<TOML; } >"$work/wl.toml"
[route]
mode = "bridge"
target = "sip:echo@127.0.0.1:5977"
[store]
path = "$work/wl.db"
TOML
"$root/target/release/warmline" run --config "$work/wl.toml" 2>"$work/wl.log" &
wl=$!
wl_wait_ready "$work/wl.log" "$wl" 5975
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
active() { curl -sf http://127.0.0.1:5978/v1/stats | python3 -c "import json,sys; print(json.load(sys.stdin)['active_calls'])"; }

steal_start
secs=$((minutes * 60))
# Enough calls to keep CALLS up for the whole run, at the rate that replaces them.
total=$(( calls * (secs / hold_s + 2) ))
rate=$(( (calls + hold_s - 1) / hold_s ))
(cd "$work" && timeout $((secs + 120)) sipp -sf "$root/sipp-scenarios/uas_echo.xml" -key codec 0 -rtp_echo \
   -i 127.0.0.1 -p 5977 -mp 8000 -m "$total" -nostdin -timeout $((secs + 90))s >/dev/null 2>&1) &
sleep 0.5
(cd "$work/caller" && timeout $((secs + 120)) sipp 127.0.0.1:5975 -sf "$work/uac_stream.xml" \
   -key codec 0 -i 127.0.0.1 -p 5976 -mp 9000 -m "$total" -l "$calls" -r "$rate" -d $((hold_s * 1000)) \
   -nostdin -timeout $((secs + 90))s >/dev/null 2>&1) &
echo "soak: $calls bridged calls of ${hold_s} s (new ones at $rate/s), $minutes min; RSS each minute:"
: >"$work/rss.txt"
for m in $(seq 1 "$minutes"); do
  sleep 60
  r=$(rss_kb "$wl"); a=$(active)
  echo "$m $r" >>"$work/rss.txt"
  printf '  min %3d  RSS %7.1f MB  calls %5d\n' "$m" "$(awk -v r="$r" 'BEGIN {print r / 1024}')" "$a"
done
pkill -f "sipp.*-p 597[67]" 2>/dev/null || true
python3 - "$work/rss.txt" "$warmup" <<'PY'
import sys
pts = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
warm = int(sys.argv[2])
use = [p for p in pts if p[0] > warm] or pts
n = len(use)
if n < 2:
    print("too few samples for a slope"); sys.exit(0)
mx = sum(x for x, _ in use) / n; my = sum(y for _, y in use) / n
sxx = sum((x - mx) ** 2 for x, _ in use)
slope = sum((x - mx) * (y - my) for x, y in use) / sxx  # KB per minute
print(f"RSS slope after minute {warm}: {slope * 60:+.0f} KB/hour ({slope * 60 / my * 100:+.2f} % of the mean "
      f"{my / 1024:.1f} MB per hour), min {min(y for _, y in use) / 1024:.1f} MB, max {max(y for _, y in use) / 1024:.1f} MB")
PY
steal_report
