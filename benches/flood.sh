#!/usr/bin/env bash
# A flood of INVITEs at a gateway with max_calls = 100, from one address that is not in
# allow_from: prints a bystander's OPTIONS latency (in-dialog, so that the stack answers it:
# 481) before, during, just after and 5 s after the flood, and warmline's RSS before and
# after (issue 13's figures). Then UNACKED INVITEs
# from a trusted peer that warmline refuses (488) and the peer never ACKs: the OPTIONS
# latency while their transactions end together (the timer sweep of issue 13).
# Last, JUNK mutated SIP datagrams from a trusted peer, and the RSS 75 s after them.
#   benches/flood.sh [INVITES] [RATE] [UNACKED] [JUNK]   (default 50000 at 5000/s, 50000, 150000)
# Loopback only; bounded by INVITES.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
invites=${1:-50000}
rate=${2:-5000}
unacked=${3:-50000}
junk=${4:-150000}
# The gateway is gone (its port free) when the script returns.
work=$(mktemp -d); wl=""; trap '[ -n "$wl" ] && kill -9 "$wl" 2>/dev/null && wait "$wl" 2>/dev/null; rm -rf "$work"' EXIT
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline
# shellcheck source=benches/gateway.sh
. "$root/benches/gateway.sh"
# Only 127.0.0.3 in allow_from: the flood's source (127.0.0.2) is a stranger, as an
# attacker would be; the unACKed INVITEs and the junk come from trusted peers, whose rate is
# not limited.
{ wl_config 5970 100 46000 46999 "127.0.0.1:5971" info '"127.0.0.3/32", "127.0.0.4/32"'; cat <<TOML; } >"$work/wl.toml"
[speech]
recognizer = "off"
[store]
path = "$work/wl.db"
TOML
"$root/target/release/warmline" run --config "$work/wl.toml" >"$work/wl.log" 2>&1 &
wl=$!
wl_wait_ready "$work/wl.log" "$wl" 5970
python3 "$root/benches/flood.py" 5970 "$wl" "$invites" "$rate" "$unacked" "$junk" 5971
