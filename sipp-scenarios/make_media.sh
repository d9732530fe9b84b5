#!/usr/bin/env bash
# Make the test audio the real-peer tests and load scripts use, into DIR (default
# sipp-scenarios/media): espeak-ng speech and a tone, resampled without dither, and RTP
# pcaps of them for SIPp's play_pcap_audio. Needs espeak-ng, sox, python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/media}"
mkdir -p "$out"
say() { # say FILE TEXT [VOICE]
  espeak-ng -v "${3:-en-us}" -s 150 -w "$out/raw.wav" "$2"
  # espeak-ng's klatt voices reach full scale: leave headroom rather than clip.
  sox -D -v 0.8 "$out/raw.wav" -r 8000 -c 1 -b 16 "$out/$1"
  rm -f "$out/raw.wav"
}
say greeting.wav "Hello. You are speaking with warmline, an automated assistant. You can ask for a person at any time."
say speech.wav "I would like to speak to a human about my order, please. It is number four five six seven."
# A caller asking for a person, in the klatt voice pocketsphinx hears best.
say ask.wav "I want to speak to a human." en-us+klatt2
# A short answer for the assistant (pocketsphinx's answer grammar).
say yes.wav "Yes." en-us+klatt2
sox -D -n -r 8000 -c 1 -b 16 "$out/tone.wav" synth 3 sine 1000 vol 0.5
# A wideband desk phone's voice: 1 kHz (any phone carries it) and 5.5 kHz (only G.722 does).
sox -D -n -r 16000 -c 1 -b 16 "$out/wide_lo.wav" synth 8 sine 1000 vol 0.3
sox -D -n -r 16000 -c 1 -b 16 "$out/wide_hi.wav" synth 8 sine 5500 vol 0.3
sox -D -m "$out/wide_lo.wav" "$out/wide_hi.wav" "$out/wide_tone.wav"
# A caller who answers the assistant, then asks for a person.
sox -D -n -r 8000 -c 1 -b 16 "$out/pause.wav" trim 0 1.2
sox -D "$out/yes.wav" "$out/pause.wav" "$out/ask.wav" "$out/yes_ask.wav"
# The agent's side of a transfer test: a longer, lower tone.
sox -D -n -r 8000 -c 1 -b 16 "$out/agent_tone.wav" synth 25 sine 600 vol 0.5
python3 "$here/mkpcap.py" "$out/speech.wav" "$out/speech_pcmu.pcap" --codec pcmu --ssrc 0x5EED0001
python3 "$here/mkpcap.py" "$out/speech.wav" "$out/speech_pcma.pcap" --codec pcma --ssrc 0x5EED0002
sox -D "$out/speech.wav" "$out/speech_long.wav" repeat 5
# The same speech as a mu-law WAV for SIPp rtp_stream (plain UDP sockets, no raw socket).
sox -D "$out/speech_long.wav" -e u-law -t wav "$out/speech_long_ulaw.wav"
python3 "$here/mkpcap.py" "$out/speech_long.wav" "$out/speech_long_pcmu.pcap" --codec pcmu --ssrc 0x5EED0005
python3 "$here/mkpcap.py" "$out/ask.wav" "$out/ask_pcmu.pcap" --codec pcmu --ssrc 0x5EED0006
python3 "$here/mkpcap.py" "$out/yes.wav" "$out/yes_pcmu.pcap" --codec pcmu --ssrc 0x5EED0007
python3 "$here/mkpcap.py" "$out/yes_ask.wav" "$out/yes_ask_pcmu.pcap" --codec pcmu --ssrc 0x5EED0009
python3 "$here/mkpcap.py" "$out/agent_tone.wav" "$out/agent_pcmu.pcap" --codec pcmu --ssrc 0x5EED0008
# An agent who hears the briefing out, then presses 1 to take the call.
python3 "$here/mkpcap.py" "$out/agent_tone.wav" "$out/agent_accept_pcmu.pcap" --codec pcmu --dtmf 1 --lead-ms 18000 --ssrc 0x5EED000A --seq 30000
python3 "$here/mkpcap.py" "$out/agent_tone.wav" "$out/agent_decline_pcmu.pcap" --codec pcmu --dtmf 2 --lead-ms 18000 --ssrc 0x5EED000B --seq 30000
python3 "$here/mkpcap.py" "$out/tone.wav" "$out/tone_pcmu.pcap" --codec pcmu --ssrc 0x5EED0003
python3 "$here/mkpcap.py" "$out/tone.wav" "$out/dtmf_pcmu.pcap" --codec pcmu --dtmf "15#" --ssrc 0x5EED0004 --seq 20000
