#!/usr/bin/env bash
# Heap and RSS per answered call that is never ACKed (what a junk or stalled INVITE costs
# until 64 x T1 ends it): N INVITEs from a trusted peer at a release gateway with the
# default assistant route and the store on. jemalloc's thread caches are off for the
# measurement (_RJEM_MALLOC_CONF=tcache:false) so that they do not blur the figure.
#   benches/call_memory.sh [N]      (default 200)
# Loopback only; bounded by N.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-200}
work=$(mktemp -d); wl=""; trap '[ -n "$wl" ] && kill -9 "$wl" 2>/dev/null && wait "$wl" 2>/dev/null; rm -rf "$work"' EXIT
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin warmline
# shellcheck source=benches/gateway.sh
. "$root/benches/gateway.sh"
{ wl_config 5980 $((n + 100)) 47000 48999 "127.0.0.1:5981" info; cat <<TOML; } >"$work/wl.toml"
[speech]
recognizer = "off"
[store]
path = "$work/wl.db"
TOML
_RJEM_MALLOC_CONF=tcache:false "$root/target/release/warmline" run --config "$work/wl.toml" >"$work/wl.log" 2>&1 &
wl=$!
wl_wait_ready "$work/wl.log" "$wl" 5980
python3 "$root/benches/call_memory.py" 5980 5981 "$wl" "$n"
