#!/usr/bin/env python3
"""Heap and RSS per answered call, the calls never ACKed (as a junk or stalled INVITE leaves
them): N INVITEs with a PCMU offer from a trusted peer, then jemalloc's allocated and
resident bytes (from /metrics) and RSS, before and 3 s after, divided by N.

  call_memory.py SIP_PORT HTTP_PORT PID N

Loopback only; N datagrams, 10 ms apart."""
import socket
import sys
import time
import urllib.request

port, http, pid, n = map(int, sys.argv[1:5])


def heap():
    text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5).read().decode()
    got = {}
    for line in text.splitlines():
        for name in ("warmline_process_heap_allocated_bytes", "warmline_process_heap_resident_bytes"):
            if line.startswith(name + " "):
                got[name] = float(line.split()[1])
    return got["warmline_process_heap_allocated_bytes"], got["warmline_process_heap_resident_bytes"]


def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
time.sleep(1)
h0, r0 = heap(), rss_kb()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.3", 0))
me = s.getsockname()[1]
for i in range(n):
    msg = (f"INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:{me};branch=z9hG4bK-m{i}\r\n"
           f"From: <sip:m@127.0.0.3>;tag=m{i}\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: mem-{i}\r\n"
           f"CSeq: 1 INVITE\r\nContact: <sip:m@127.0.0.3:{me}>\r\nMax-Forwards: 70\r\n"
           f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}").encode()
    s.sendto(msg, ("127.0.0.1", port))
    time.sleep(0.01)
time.sleep(3)
h1, r1 = heap(), rss_kb()
print(f"{n} unACKed calls: heap allocated {(h1[0] - h0[0]) / n / 1024:.1f} KB/call, "
      f"resident {(h1[1] - h0[1]) / n / 1024:.1f} KB/call, RSS {(r1 - r0) / n:.1f} KB/call")
