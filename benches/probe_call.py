#!/usr/bin/env python3
"""A probe caller for the speech-capacity bench (issue 14 item 4): while other callers load
the recognizer, it places one short call after another and measures what speech load must
not hurt: call set-up (INVITE -> 200 OK) and the timing of the RTP warmline sends (the
greeting), as RFC 3550 interarrival jitter.

  probe_call.py SIP_PORT SECONDS [OUT_JSON]

Each call: INVITE with a PCMU offer naming the probe's own RTP socket, ACK, 1.5 s of the
greeting received, BYE. Prints set-up p50/p95 and jitter p50/p95 over the calls (and writes
them to OUT_JSON). Loopback only; bounded by SECONDS."""

import json
import socket
import struct
import sys
import time
import uuid

port, seconds = int(sys.argv[1]), float(sys.argv[2])
out = sys.argv[3] if len(sys.argv) > 3 else None
LISTEN_S = 1.5

sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sip.bind(("127.0.0.1", 0))
rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rtp.bind(("127.0.0.1", 0))
me, media = sip.getsockname()[1], rtp.getsockname()[1]


def request(method, call_id, cseq, to_tag="", body=""):
    branch = "z9hG4bK-" + uuid.uuid4().hex[:12]
    to = f"<sip:bot@127.0.0.1:{port}>" + (f";tag={to_tag}" if to_tag else "")
    head = (f"{method} sip:bot@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch={branch}\r\n"
            f"From: <sip:probe@127.0.0.1:{me}>;tag=probe\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:probe@127.0.0.1:{me}>\r\nMax-Forwards: 70\r\n")
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def final(call_id, deadline):
    """The first final response for call_id: (status, To tag)."""
    while time.monotonic() < deadline:
        sip.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sip.recv(65535).decode(errors="replace")
        except socket.timeout:
            break
        if f"Call-ID: {call_id}" not in data or not data.startswith("SIP/2.0 "):
            continue
        status = int(data[8:11])
        if status >= 200:
            tag = ""
            for line in data.split("\r\n"):
                if line.lower().startswith("to:") and "tag=" in line:
                    tag = line.split("tag=")[1].split(";")[0].strip()
            return status, tag
    return None, ""


def jitter_of(packets):
    """RFC 3550 interarrival jitter (ms) of (arrival s, RTP timestamp) pairs at 8 kHz."""
    j, prev = 0.0, None
    for arrival, ts in packets:
        if prev is not None:
            d = (arrival - prev[0]) * 1000.0 - (ts - prev[1]) / 8.0
            j += (abs(d) - j) / 16.0
        prev = (arrival, ts)
    return j


setups, jitters, failed = [], [], 0
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    n += 1
    call_id = f"probe-{uuid.uuid4().hex[:10]}"
    sdp = (f"v=0\r\no=probe 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {media} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
    t0 = time.monotonic()
    sip.sendto(request("INVITE", call_id, 1, body=sdp), ("127.0.0.1", port))
    status, tag = final(call_id, t0 + 5)
    if status != 200:
        failed += 1
        time.sleep(0.5)
        continue
    setups.append((time.monotonic() - t0) * 1000.0)
    sip.sendto(request("ACK", call_id, 1, tag), ("127.0.0.1", port))
    packets, stop = [], time.monotonic() + LISTEN_S
    while time.monotonic() < stop:
        rtp.settimeout(max(stop - time.monotonic(), 0.01))
        try:
            data = rtp.recv(2048)
        except socket.timeout:
            break
        if len(data) >= 12:
            packets.append((time.monotonic(), struct.unpack("!I", data[4:8])[0]))
    if len(packets) > 10:
        jitters.append(jitter_of(packets))
    sip.sendto(request("BYE", call_id, 2, tag), ("127.0.0.1", port))
    final(call_id, time.monotonic() + 2)
    # Stray packets of this call must not count in the next one's.
    rtp.setblocking(False)
    try:
        while True:
            rtp.recv(2048)
    except OSError:
        pass
    rtp.setblocking(True)


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p + 0.999) - 1 if p < 1 else len(v) - 1)]


res = {"calls": n, "failed": failed,
       "setup_p50_ms": pct(setups, 0.5), "setup_p95_ms": pct(setups, 0.95),
       "jitter_p50_ms": pct(jitters, 0.5), "jitter_p95_ms": pct(jitters, 0.95)}
if out:
    with open(out, "w") as f:
        json.dump(res, f)
fmt = lambda x: "-" if x is None else f"{x:.2f}"
print(f"probe: {n} calls ({failed} failed), set-up p50 {fmt(res['setup_p50_ms'])} ms "
      f"p95 {fmt(res['setup_p95_ms'])} ms, RTP jitter p50 {fmt(res['jitter_p50_ms'])} ms "
      f"p95 {fmt(res['jitter_p95_ms'])} ms")
