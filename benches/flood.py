#!/usr/bin/env python3
"""The flood figures of benches/flood.sh: OPTIONS latency from a bystander before, during and
after a flood of INVITEs from another address, and warmline's RSS before and after.

  flood.py SIP_PORT PID INVITES RATE [UNACKED [JUNK [HTTP_PORT]]]

Then, with UNACKED > 0, a trusted peer (127.0.0.3, in allow_from) sends UNACKED INVITEs whose
offer warmline must refuse (488) and never ACKs them: each leaves a server transaction
waiting for its ACK, cleaned up 64 x T1 later, so tens of thousands of transactions end
together. OPTIONS latency and warmline's CPU time are printed over the 70 s after the flood
(rsipstack 0.7.14 swept every pending ACK route at each cleanup: quadratic).

Then, with JUNK > 0, JUNK mutated SIP datagrams (bytes flipped, inserted, cut, lines
repeated or dropped, from INVITEs, OPTIONS, BYEs and responses; seeded) from a trusted peer,
and warmline's RSS from before the first flood to 75 s after the junk (the target: back
within 25 %).

Loopback only; the flood is bounded by INVITES and the whole run by the time it takes."""
import os
import socket
import statistics
import sys
import threading
import time

port, pid, invites, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
unacked = int(sys.argv[5]) if len(sys.argv) > 5 else 0
junk = int(sys.argv[6]) if len(sys.argv) > 6 else 0
http_port = int(sys.argv[7]) if len(sys.argv) > 7 else 0


def rss_kb(field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_parts():
    """RSS as anonymous memory (heap, stacks) and file pages (the executable's code first run)."""
    return rss_kb("RssAnon"), rss_kb("RssFile")


def heap():
    """jemalloc's allocated and resident bytes, from /metrics, in MB (None without HTTP)."""
    if not http_port:
        return None
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
    got = {}
    for line in text.splitlines():
        for name in ("warmline_process_heap_allocated_bytes", "warmline_process_heap_resident_bytes"):
            if line.startswith(name + " "):
                got[name] = float(line.split()[1]) / 2**20
    return got.get("warmline_process_heap_allocated_bytes"), got.get("warmline_process_heap_resident_bytes")


def heap_text(h):
    return "" if h is None else f" (heap: {h[0]:.1f} MB allocated, {h[1]:.1f} MB resident)"


def cpu_s():
    """warmline's user + system CPU time so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def options(sock, n):
    """An in-dialog OPTIONS (To tag) for a dialog that does not exist: it goes through the
    stack's transaction layer to its 481, where an OPTIONS outside a dialog would be
    answered at the socket and say nothing of a stalled SIP core."""
    me = sock.getsockname()[1]
    return (
        f"OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-o{n}\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:bot@127.0.0.1>;tag=gone\r\nCall-ID: probe-{n}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def probe(seconds, label):
    """OPTIONS every 50 ms for `seconds`: the latency of each answer, in ms (1 s = lost)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(1.0)
    lat, n, end = [], 0, time.time() + seconds
    while time.time() < end:
        n += 1
        t = time.time()
        s.sendto(options(s, n), ("127.0.0.1", port))
        try:
            while True:
                data, _ = s.recvfrom(4096)
                if f"probe-{n}".encode() in data:
                    break
            lat.append((time.time() - t) * 1000)
        except socket.timeout:
            lat.append(1000.0)
        time.sleep(0.05)
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    lost = sum(1 for x in lat if x >= 1000)
    print(f"OPTIONS {label:<13} p50 {p(0.5):7.2f} ms  p99 {p(0.99):7.2f} ms  max {lat[-1]:7.1f} ms  ({len(lat)} probes, {lost} unanswered)")


# An offer with only G.729, which warmline does not speak: 488, statefully.
G729 = ("v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n")


def flood(source="127.0.0.2", count=None, body=""):
    count = invites if count is None else count
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    me = s.getsockname()[1]
    start = time.time()
    for i in range(count):
        msg = (
            f"INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {source}:{me};branch=z9hG4bK-f{i}\r\n"
            f"From: <sip:flood@{source}>;tag=f{i}\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: flood-{source}-{i}\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:flood@{source}:{me}>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
        try:
            s.sendto(msg, ("127.0.0.1", port))
        except OSError:
            pass
        ahead = start + (i + 1) / rate - time.time()
        if ahead > 0:
            time.sleep(ahead)
    return time.time() - start


rss0 = rss_kb()
parts0 = rss_parts()
heap0 = heap()
probe(3, "before")
result = {}
t = threading.Thread(target=lambda: result.update(took=flood()))
t.start()
probe(invites / rate, "during")
t.join()
print(f"flood: {invites} INVITEs from 127.0.0.2 in {result['took']:.1f} s")
probe(3, "just after")
time.sleep(5)
probe(3, "5 s after")
rss1 = rss_kb()
# The first max_calls INVITEs of the flood were admitted as calls; never ACKed, they end
# at 64 x T1 (32 s) after their 200.
time.sleep(35)
rss2 = rss_kb()
pct = lambda r: (r - rss0) / max(rss0, 1) * 100
print(f"RSS before {rss0 / 1024:.1f} MB, just after {rss1 / 1024:.1f} MB ({pct(rss1):+.0f} %), "
      f"40 s after {rss2 / 1024:.1f} MB ({pct(rss2):+.0f} %)")

if unacked:
    took = flood("127.0.0.3", unacked, G729)
    print(f"unACKed: {unacked} refused INVITEs from 127.0.0.3 (trusted) in {took:.1f} s; "
          "their transactions end within 64 x T1 of their 488")
    cpu0 = cpu_s()
    probe(70, "as they end")
    print(f"warmline CPU while they end: {cpu_s() - cpu0:.2f} s over 70 s")
    probe(3, "after")
    print(f"RSS after the unACKed INVITEs {rss_kb() / 1024:.1f} MB")


def mutated(rng, i, me):
    """One seeded mutation of a SIP message warmline could be sent."""
    src = "127.0.0.4"
    base = [
        (f"INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{me};branch=z9hG4bK-j{i}\r\n"
         f"From: <sip:junk@{src}>;tag=j{i}\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: junk-{i}\r\n"
         f"CSeq: 1 INVITE\r\nContact: <sip:junk@{src}:{me}>\r\nMax-Forwards: 70\r\n"
         f"Content-Type: application/sdp\r\nContent-Length: {len(G729)}\r\n\r\n{G729}"),
        (f"OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{me};branch=z9hG4bK-j{i}\r\n"
         f"From: <sip:junk@{src}>;tag=j{i}\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: junk-{i}\r\n"
         "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"),
        (f"BYE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{me};branch=z9hG4bK-j{i}\r\n"
         f"From: <sip:junk@{src}>;tag=j{i}\r\nTo: <sip:bot@127.0.0.1>;tag=x{i}\r\nCall-ID: junk-{i}\r\n"
         "CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"),
        (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-j{i}\r\n"
         f"From: <sip:bot@127.0.0.1>;tag=j{i}\r\nTo: <sip:junk@{src}>;tag=y{i}\r\nCall-ID: junk-{i}\r\n"
         "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
    ]
    data = bytearray(rng.choice(base).encode())
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and len(data) > 1:
            del data[rng.randrange(len(data)):][: rng.randint(1, 64)]
        else:
            lines = bytes(data).split(b"\r\n")
            j = rng.randrange(len(lines))
            if op == 3:
                lines.insert(j, lines[j])
            else:
                del lines[j]
            data = bytearray(b"\r\n".join(lines))
    return bytes(data[:8000])


if junk:
    import random
    rng = random.Random(13)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.4", 0))
    me = s.getsockname()[1]
    start = time.time()
    for i in range(junk):
        try:
            s.sendto(mutated(rng, i, me), ("127.0.0.1", port))
        except OSError:
            pass
        ahead = start + (i + 1) / rate - time.time()
        if ahead > 0:
            time.sleep(ahead)
    print(f"junk: {junk} mutated datagrams from 127.0.0.4 (trusted) in {time.time() - start:.1f} s")
    probe(3, "after junk")
    time.sleep(72)
    rss3 = rss_kb()
    parts3 = rss_parts()
    print(f"RSS before everything {rss0 / 1024:.1f} MB{heap_text(heap0)}, 75 s after the junk "
          f"{rss3 / 1024:.1f} MB ({(rss3 - rss0) / max(rss0, 1) * 100:+.0f} %){heap_text(heap())}")
    print(f"  of which anonymous {parts0[0] / 1024:.1f} -> {parts3[0] / 1024:.1f} MB, file pages "
          f"(code run for the first time) {parts0[1] / 1024:.1f} -> {parts3[1] / 1024:.1f} MB")
