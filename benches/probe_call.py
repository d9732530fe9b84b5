#!/usr/bin/env python3
"""A probe caller for the speech-capacity bench (issue 14 item 4): while other callers load
the recognizer, it places one short call after another and measures what speech load must
not hurt: call set-up (INVITE -> 200 OK) and the timing of the RTP warmline sends (the
greeting), as RFC 3550 interarrival jitter.

  probe_call.py SIP_PORT SECONDS [OUT_JSON]

Each round: a call that listens (INVITE with a PCMU offer naming the probe's own RTP socket,
ACK, 1.5 s of the greeting received, BYE), then QUICK calls that only set up and hang up, so
that a level's set-up p95 rests on some fifty calls, not the six a round of listening
allows. Prints set-up p50/p95 and jitter p50/p95 (and writes them to OUT_JSON).

Times are the kernel's (SO_TIMESTAMPING, software): when the INVITE left the probe's socket
and when each response or RTP packet reached it, not when this script got round to them. On
a box the recognizer keeps busy the probe is itself a process waiting for a core, and its
own delays are not warmline's (read in user space, they made RTP jitter look 2.7x idle where
the kernel's stamps say 1.0-1.6x). Loopback only; bounded by SECONDS."""

import json
import socket
import struct
import sys
import time
import uuid

port, seconds = int(sys.argv[1]), float(sys.argv[2])
out = sys.argv[3] if len(sys.argv) > 3 else None
LISTEN_S = 1.5
QUICK = 9
# linux/net_tstamp.h and asm-generic/socket.h (Python names neither before 3.12).
SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
TX_SOFTWARE, RX_SOFTWARE, SOFTWARE, OPT_TSONLY = 1 << 1, 1 << 3, 1 << 4, 1 << 11
STAMPS = TX_SOFTWARE | RX_SOFTWARE | SOFTWARE | OPT_TSONLY
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)

sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sip.bind(("127.0.0.1", 0))
rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rtp.bind(("127.0.0.1", 0))
sip.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, STAMPS)
rtp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, RX_SOFTWARE | SOFTWARE)
me, media = sip.getsockname()[1], rtp.getsockname()[1]


def now():
    """The clock the kernel stamps with (CLOCK_REALTIME), in seconds."""
    return time.clock_gettime(time.CLOCK_REALTIME)


def stamp(anc):
    """The software time in an SCM_TIMESTAMPING message (the first of its three), or None."""
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(raw) >= 16:
            sec, nsec = struct.unpack("qq", raw[:16])
            if sec or nsec:
                return sec + nsec / 1e9
    return None


def recv_stamped(sock, size):
    """(datagram, kernel arrival time in s); now() if the kernel did not stamp it."""
    data, anc, _, _ = sock.recvmsg(size, socket.CMSG_SPACE(48))
    return data, stamp(anc) or now()


def errqueue(sock):
    """The next message on the socket's error queue (its ancillary data), or None. In
    blocking mode for the call: with a timeout set, Python would wait it out first."""
    timeout = sock.gettimeout()
    sock.settimeout(None)
    try:
        return sock.recvmsg(1, socket.CMSG_SPACE(48) + 256, MSG_ERRQUEUE | socket.MSG_DONTWAIT)[1]
    except BlockingIOError:
        return None
    finally:
        sock.settimeout(timeout)


def send_stamped(sock, data, addr):
    """Send; the kernel's time of sending (from the socket's error queue, where a loopback
    send's stamp is by the time sendto returns), or the time just before as a fallback.
    Every send on the socket queues a stamp: the earlier ones (ACKs, BYEs) go first."""
    while errqueue(sock) is not None:
        pass
    before = now()
    sock.sendto(data, addr)
    for _ in range(100):
        anc = errqueue(sock)
        if anc is None:
            time.sleep(0.0001)
            continue
        t = stamp(anc)
        if t is not None:
            return t
    return before


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


def arrivals(sock, size, deadline):
    """(datagram, kernel arrival time) for each datagram on sock until deadline (monotonic)."""
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            yield recv_stamped(sock, size)
        except socket.timeout:
            return


def final(call_id, deadline):
    """The first final response for call_id: (status, To tag, arrival)."""
    for raw, arrival in arrivals(sip, 65535, deadline):
        data = raw.decode(errors="replace")
        if f"Call-ID: {call_id}" not in data or not data.startswith("SIP/2.0 "):
            continue
        status = int(data[8:11])
        if status >= 200:
            tag = ""
            for line in data.split("\r\n"):
                if line.lower().startswith("to:") and "tag=" in line:
                    tag = line.split("tag=")[1].split(";")[0].strip()
            return status, tag, arrival
    return None, "", None


def jitter_of(packets):
    """RFC 3550 interarrival jitter (ms) of (arrival s, RTP timestamp) pairs at 8 kHz."""
    j, prev = 0.0, None
    for arrival, ts in packets:
        if prev is not None:
            d = (arrival - prev[0]) * 1000.0 - (ts - prev[1]) / 8.0
            j += (abs(d) - j) / 16.0
        prev = (arrival, ts)
    return j


def call(listen):
    """One call: its set-up time (ms, None if it failed) and, if it listens, its jitter."""
    call_id = f"probe-{uuid.uuid4().hex[:10]}"
    sdp = (f"v=0\r\no=probe 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {media} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
    invite = request("INVITE", call_id, 1, body=sdp)
    t0 = send_stamped(sip, invite, ("127.0.0.1", port))
    status, tag, arrival = final(call_id, time.monotonic() + 5)
    if status != 200:
        return None, None
    setup = (arrival - t0) * 1000.0
    sip.sendto(request("ACK", call_id, 1, tag), ("127.0.0.1", port))
    jitter = None
    if listen:
        packets = [(at, struct.unpack("!I", data[4:8])[0])
                   for data, at in arrivals(rtp, 2048, time.monotonic() + LISTEN_S)
                   if len(data) >= 12]
        if len(packets) > 10:
            jitter = jitter_of(packets)
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
    return setup, jitter


setups, jitters, failed = [], [], 0
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    for k in range(1 + QUICK):
        n += 1
        setup, jitter = call(listen=k == 0)
        if setup is None:
            failed += 1
            time.sleep(0.5)
            continue
        setups.append(setup)
        if jitter is not None:
            jitters.append(jitter)


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p + 0.999) - 1 if p < 1 else len(v) - 1)]


res = {"calls": n, "failed": failed, "listened": len(jitters),
       "setup_p50_ms": pct(setups, 0.5), "setup_p95_ms": pct(setups, 0.95),
       "jitter_p50_ms": pct(jitters, 0.5), "jitter_p95_ms": pct(jitters, 0.95)}
if out:
    with open(out, "w") as f:
        json.dump(res, f)
fmt = lambda x: "-" if x is None else f"{x:.2f}"
print(f"probe: {n} calls ({failed} failed, {len(jitters)} listened to), set-up p50 {fmt(res['setup_p50_ms'])} ms "
      f"p95 {fmt(res['setup_p95_ms'])} ms, RTP jitter p50 {fmt(res['jitter_p50_ms'])} ms "
      f"p95 {fmt(res['jitter_p95_ms'])} ms")
