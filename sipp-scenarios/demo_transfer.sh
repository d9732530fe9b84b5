#!/usr/bin/env bash
# Watch a whole warm transfer on this machine, against a warmline already running on its
# embedded defaults (`cargo run --release -- run`, SIP on 127.0.0.1:5060, agent route
# sip:agent@127.0.0.1:5062):
#   1. baresip starts as the agent on 127.0.0.1:5062 (auto-answer; its "voice" is a tone;
#      what it hears is written to $OUT/agent-heard-*.wav by the sndfile module);
#   2. a SIPp caller asks "I want to speak to a human.", takes the hold and resume
#      re-INVITEs, plays a tone to the agent, and hangs up.
# Then read the call's audit trail and context packet from the HTTP API (printed below).
#   sipp-scenarios/demo_transfer.sh [OUT]        (root: SIPp's pcap play needs it)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out/media" "$out/caller" "$out/agent"
"$here/make_media.sh" "$out/media" >/dev/null
cp "$out/media/ask_pcmu.pcap" "$out/caller/audio.pcap"
cp "$out/media/tone_pcmu.pcap" "$out/caller/tone.pcap"
cp "$here/baresip/accounts" "$out/agent/accounts"
cat >"$out/agent/config" <<CFG
poll_method epoll
sip_listen 127.0.0.1:5062
audio_player aubridge,nil
audio_source aufile,$out/media/agent_tone.wav
audio_alert aubridge,nil
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module account.so
module menu.so
snd_path $out
CFG
baresip -f "$out/agent" >"$out/baresip.log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null' EXIT
sleep 1
echo "calling warmline on 127.0.0.1:5060 (the whole flow takes about 20 s)…"
call_id="warmline-demo-$$@127.0.0.1"
(cd "$out/caller" && sipp 127.0.0.1:5060 -sf "$here/uac_transfer.xml" -key codec 0 -m 1 -d 4000 \
   -cid_str "warmline-demo-$$@%s" -i 127.0.0.1 -p 5070 -mp 7300 -nostdin -timeout 60s >/dev/null 2>&1) \
  && echo "caller: asked for a person, was held, was bridged, hung up" \
  || echo "caller scenario failed: see warmline's log"
echo "agent (baresip) heard: $(ls "$out"/*-dec.wav 2>/dev/null | head -1)"
echo "audit trail (http://127.0.0.1:8080/api/calls/$call_id/audit):"
curl -fsS "http://127.0.0.1:8080/api/calls/$call_id/audit" \
  | python3 -c 'import json,sys; [print(" ", e["event"], "-", e["detail"]) for e in json.load(sys.stdin)["events"]]' \
  || echo "  (not found: is warmline running with its HTTP API on 127.0.0.1:8080?)"
echo "context packet: http://127.0.0.1:8080/api/calls/$call_id/context"
