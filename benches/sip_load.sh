#!/usr/bin/env bash
# SIP call-setup load: SIPp `uac` basic calls (INVITE/200/ACK/BYE, no media) against warmline,
# stepping the rate up until a step is not clean twice running (benches/climb.sh): more than
# 0.1 % of calls failed, or the set-up p95 passed MAX_P95_MS (default 5, issue 14's bound).
# Prints, per step: calls, failures,
# call-setup p50/p95 (INVITE sent -> 200 received, SIPp resolution 1 ms), warmline CPU, kernel UDP drops. Then the
# same against SIPp's own `uas` (the generator's ceiling) and the ratio warmline / ceiling, and
# against the SIP stack alone (`examples/bare_uas.rs`: rsipstack answering INVITE and BYE with
# nothing else), the part of the ceiling that is the stack's own.
#   benches/sip_load.sh [RATES...]      (default: 500 1000 2000 2500 3000 4000 5000 6000 7000)
# Env: STEP_S (seconds per step, default 5), MAX_P95_MS (default 5), LOG_LEVEL (warmline's [log] level, default
# "info": issue 14 states its target with the log an operator runs, not a quieted one).
# Loopback only; every step bounded by -m and timeout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/steal.sh
. "$root/benches/steal.sh"
# shellcheck source=benches/gateway.sh
. "$root/benches/gateway.sh"
rates=("$@"); [ ${#rates[@]} -eq 0 ] && rates=(500 1000 2000 2500 3000 4000 5000 6000 7000)
step_s=${STEP_S:-5}
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)"; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline --example bare_uas
steal_start
{ wl_config 5960 10000 20000 39999 "" "${LOG_LEVEL:-info}"; cat <<TOML; } >"$work/wl.toml"
[speech]
# Call set-up is measured: these calls never talk, and thousands a second are far past what
# the recognizer could hear, which would refuse them (benches/speech_capacity.sh).
capacity = 10000
TOML

# shellcheck source=benches/climb.sh
. "$root/benches/climb.sh"

"$root/target/release/warmline" run --config "$work/wl.toml" 2>"$work/wl.log" &
wl=$!
wl_wait_ready "$work/wl.log" "$wl" 5960
read -r wl_best wl_p95 < <(climb 127.0.0.1:5960 warmline "$wl")
kill -KILL $wl; wait $wl 2>/dev/null || true

"$root/target/release/examples/bare_uas" 127.0.0.1:5980 2>"$work/bare.log" &
bare=$!
sleep 1
read -r bare_best bare_p95 < <(climb 127.0.0.1:5980 rsipstack "$bare")
kill -KILL $bare; wait $bare 2>/dev/null || true

(cd "$work" && sipp -sn uas -i 127.0.0.1 -p 5970 -nostdin -bg >/dev/null 2>&1) || true
sleep 1
read -r uas_best uas_p95 < <(climb 127.0.0.1:5970 sipp-uas)
pkill -f 'sipp -sn uas -i 127.0.0.1 -p 5970' || true

echo
echo "clean: at most 0.1 % of calls failed and set-up p95 within ${MAX_P95_MS:-5} ms"
echo "warmline: highest clean rate ${wl_best} cps (setup p95 ${wl_p95} ms)"
echo "sipp uas ceiling: ${uas_best} cps (setup p95 ${uas_p95} ms)"
echo "rsipstack alone (examples/bare_uas.rs): highest clean rate ${bare_best} cps (setup p95 ${bare_p95} ms)"
awk -v a="$wl_best" -v b="$uas_best" 'BEGIN {if (b > 0) printf "ratio warmline / ceiling: %.2f\n", a / b}'
awk -v a="$bare_best" -v b="$uas_best" 'BEGIN {if (b > 0) printf "ratio rsipstack alone / ceiling: %.2f\n", a / b}'
steal_report
