#!/usr/bin/env bash
# SIP-over-TLS call setup beside plain SIP: SIPp `uac` calls (INVITE/200/ACK/BYE, no media)
# through Kamailio (deploy/kamailio/kamailio.cfg) to warmline, stepping the rate up until a
# step is not clean (as benches/sip_load.sh). Twice: Kamailio relaying to warmline over UDP,
# then over mutual TLS (-A WITH_TLS; warmline with [sip.tls] client_ca), one long-lived TLS
# connection as a trunk keeps. Prints each step (set-up p50/p95, warmline's CPU), each climb's
# highest clean rate, warmline's CPU per call at a rate both ran clean, and TLS handshakes a
# second (new connections, each a full handshake, with openssl s_client's -reconnect).
#   benches/tls_load.sh [RATES...]      (default: 500 1000 1500 2000 2500 3000)
# Env: STEP_S (seconds per step, default 5), MAX_P95_MS (default 5), LOG_LEVEL (default "info").
# Loopback only; every step bounded by -m and timeout. Certificates are made here (openssl).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/steal.sh
. "$root/benches/steal.sh"
# shellcheck source=benches/gateway.sh
. "$root/benches/gateway.sh"
rates=("$@"); [ ${#rates[@]} -eq 0 ] && rates=(500 1000 1500 2000 2500 3000)
step_s=${STEP_S:-5}
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
for tool in sipp kamailio openssl; do
  command -v $tool >/dev/null || { echo "$tool not found (scripts/test.sh installs it)"; exit 2; }
done
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so ] || ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1 ||
  { echo "kamailio's tls module not found (apt-get install kamailio-tls-modules)"; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline
# shellcheck source=benches/climb.sh
. "$root/benches/climb.sh"
SCENARIO=uac_load_proxied.xml

# A CA and two leaves it signs for loopback: warmline's and Kamailio's.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
for who in warmline kamailio; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
    -keyout "$work/$who.key" -out "$work/$who.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$work/$who.ext"
  openssl x509 -req -in "$work/$who.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -extfile "$work/$who.ext" -out "$work/$who.crt" 2>/dev/null
done

steal_start
# Kamailio's workers each open their own TLS connection; the handshake count below opens many.
# (The heredoc's body starts on the next line, so the pipe's reader must be on this one.)
tls_listen='listen = ["udp:127.0.0.1:5960", "tls:127.0.0.1:5962"]\ntcp_max_per_ip = 1024'
{ wl_config 5960 10000 20000 39999 "127.0.0.1:5969" "${LOG_LEVEL:-info}"; cat <<TOML; } | sed "s|^listen = \[.*udp.*|$tls_listen|" >"$work/wl.toml"
[sip.tls]
certificate = "$work/warmline.crt"
key = "$work/warmline.key"
ca = "$work/ca.pem"
client_ca = "$work/ca.pem"
[speech]
capacity = 10000
TOML
profile() {
  printf 'method = TLSv1.2+\nverify_certificate = %s\nrequire_certificate = %s\nca_list = %s\ncertificate = %s\nprivate_key = %s\n' \
    "$1" "$1" "$work/ca.pem" "$work/kamailio.crt" "$work/kamailio.key"
}
{ echo "[client:default]"; profile yes; echo "[server:default]"; profile no; } >"$work/tls.cfg"

"$root/target/release/warmline" run --config "$work/wl.toml" 2>"$work/wl.log" &
wl=$!
wl_wait_ready "$work/wl.log" "$wl" 5962

kamailio_to() { # DISPATCH_URI -> starts kamailio on udp:5990 (and tls:5991) in the background
  echo "1 $1" >"$work/dispatcher.list"
  mkdir -p "$work/kam"
  kamailio -f "$root/deploy/kamailio/kamailio.cfg" -DD -E -m 256 -M 32 \
    -A "LISTEN=udp:127.0.0.1:5990" -A "DISPATCHER_LIST=\"$work/dispatcher.list\"" \
    -A WITH_TLS -A "LISTEN_TLS=tls:127.0.0.1:5991" -A "TLS_CONFIG=\"$work/tls.cfg\"" \
    -Y "$work/kam" >"$work/kam.out" 2>"$work/kam.log" &
  kam=$!
  sleep 2
}
kamailio_stop() { kill -TERM $kam 2>/dev/null || true; wait $kam 2>/dev/null || true; sleep 1; }

declare -A cpu_at
climb_via() { # LABEL URI -> echoes "best p95"
  kamailio_to "$2"
  local r
  r=$(climb 127.0.0.1:5990 "$1" "$wl")
  kamailio_stop
  echo "$r"
}
read -r udp_best udp_p95 < <(climb_via via-udp "sip:127.0.0.1:5960")
read -r tls_best tls_p95 < <(climb_via via-tls "sip:127.0.0.1:5962;transport=tls")

# warmline's CPU per call over TLS and over UDP, at one rate both ran clean.
both=$(( udp_best < tls_best ? udp_best : tls_best ))
per_call() { # LABEL URI
  kamailio_to "$2"
  local c0 c1 n=$(( both * step_s ))
  c0=$(cpu_ticks "$wl")
  step 127.0.0.1:5990 "$1" "$both" "$wl" >&2 || true
  c1=$(cpu_ticks "$wl")
  kamailio_stop
  awk -v t=$((c1 - c0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", 1e6 * t / hz / n}'
}
if [ "$both" -gt 0 ]; then
  udp_us=$(per_call via-udp "sip:127.0.0.1:5960")
  tls_us=$(per_call via-tls "sip:127.0.0.1:5962;transport=tls")
fi

# Full handshakes a second against warmline's TLS listener (openssl's -reconnect opens five
# more connections after the first; timed over repeated runs for 5 s), each presenting
# Kamailio's certificate, as warmline requires.
hs=0; t0=$(date +%s.%N)
while awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {exit !(b - a < 5)}'; do
  timeout 5 openssl s_client -connect 127.0.0.1:5962 -reconnect -CAfile "$work/ca.pem" \
    -cert "$work/kamailio.crt" -key "$work/kamailio.key" </dev/null >/dev/null 2>&1 || true
  hs=$((hs + 6))
done
t1=$(date +%s.%N)
failed_hs=$(curl -s "http://127.0.0.1:5969/metrics" 2>/dev/null |
  awk '/^warmline_sip_tls_handshake_failures_total / {print $2}')
kill -KILL $wl; wait $wl 2>/dev/null || true

echo
echo "clean: at most 0.1 % of calls failed and set-up p95 within ${MAX_P95_MS:-5} ms (SIPp -> Kamailio -> warmline)"
echo "via Kamailio, UDP to warmline: highest clean rate ${udp_best} cps (setup p95 ${udp_p95} ms)"
echo "via Kamailio, TLS to warmline: highest clean rate ${tls_best} cps (setup p95 ${tls_p95} ms)"
awk -v a="$tls_best" -v b="$udp_best" 'BEGIN {if (b > 0) printf "ratio TLS / UDP: %.2f\n", a / b}'
[ "$both" -gt 0 ] && echo "warmline CPU per call at ${both} cps: UDP ${udp_us} us, TLS ${tls_us} us"
awk -v n="$hs" -v a="$t0" -v b="$t1" -v f="${failed_hs:-?}" \
  'BEGIN {printf "TLS handshakes (new connection, client certificate): %.0f per second (%s failed)\n", n / (b - a), f}'
steal_report
