#!/usr/bin/env python3
"""The warm-transfer figures from warmline's log and a loopback capture (transfer_load.sh).

Per transfer (the caller's Call-ID):
  trigger        warmline's "escalation trigger" log time
  bridge         warmline's "bridging the caller and the agent" log time
  re-INVITE      the first INVITE warmline sent in the caller's dialog with a=sendonly
  agent INVITE   the INVITE whose X-Warmline-Call-Id is the caller's Call-ID
  agent 200      that INVITE's 200 OK
  caller audio   RTP from the caller leg's port (warmline's answer SDP) to the caller
  agent audio    RTP from the agent leg's port (warmline's offer SDP to the agent) to the agent
"""
import datetime
import re
import subprocess
import sys
from collections import defaultdict


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))]


def log_times(path):
    trig, bridge = {}, {}
    ts_re = re.compile(r"^(\S+Z)")
    id_re = re.compile(r"call\{call_id=([^}]+)\}")
    for line in open(path, encoding="utf-8", errors="replace"):
        m, c = ts_re.match(line), id_re.search(line)
        if not m or not c:
            continue
        t = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        if "escalation trigger" in line:
            trig.setdefault(c.group(1), t)
        elif "bridging the caller and the agent" in line:
            bridge.setdefault(c.group(1), t)
    return trig, bridge


def ulaw_rms(payload_hex):
    b = bytes.fromhex(payload_hex.replace(":", ""))
    total = 0
    for x in b:
        x = ~x & 0xFF
        sign, exp, mant = x & 0x80, (x >> 4) & 7, x & 0x0F
        v = ((mant << 3) + 0x84) << exp
        v -= 0x84
        total += v * v
    return (total / max(1, len(b))) ** 0.5


def main():
    log, cap, n, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    trig, bridge = log_times(log)
    sip = subprocess.run(
        ["tshark", "-r", cap, "-Y", "sip", "-T", "fields", "-E", "separator=|",
         "-e", "frame.time_epoch", "-e", "sip.Method", "-e", "sip.Status-Code",
         "-e", "sip.Call-ID", "-e", "sip.CSeq.method", "-e", "udp.srcport", "-e", "udp.dstport",
         "-e", "sdp.media.port", "-e", "sdp.media_attr", "-e", "sip.msg_hdr"],
        capture_output=True, text=True, check=False).stdout
    reinvite, agent_invite, agent_200, caller_port, agent_port = {}, {}, {}, {}, {}
    agent_of = {}
    for line in sip.splitlines():
        f = line.split("|")
        if len(f) < 10:
            continue
        t, method, status, cid, cseq_m, src, dst, mport, attrs, hdrs = f[:10]
        t = float(t)
        if method == "INVITE" and src == "5990" and dst == "5991" and "sendonly" in attrs:
            reinvite.setdefault(cid, t)
        if method == "INVITE" and dst == "5994":
            m = re.search(r"X-Warmline-Call-Id:\s*([^\s\\,]+)", hdrs)
            if m:
                caller = m.group(1).strip()
                agent_invite.setdefault(caller, t)
                agent_of[cid] = caller
                if mport:
                    agent_port[caller] = int(mport.split(",")[0])
        if status == "200" and cseq_m == "INVITE" and src == "5994" and cid in agent_of:
            agent_200.setdefault(agent_of[cid], t)
        if status == "200" and cseq_m == "INVITE" and src == "5990" and dst == "5991" and mport:
            caller_port.setdefault(cid, int(mport.split(",")[0]))
    rtp = subprocess.run(
        ["tshark", "-r", cap, "-d", "udp.port==44000-45999,rtp", "-Y", "rtp && !rtcp",
         "-T", "fields", "-E", "separator=|", "-e", "frame.time_epoch", "-e", "udp.srcport",
         "-e", "udp.dstport", "-e", "rtp.marker", "-e", "rtp.payload"],
        capture_output=True, text=True, check=False).stdout
    by_port = defaultdict(list)
    for line in rtp.splitlines():
        f = line.split("|")
        if len(f) < 5:
            continue
        by_port[(int(f[1]), int(f[2]))].append((float(f[0]), f[3] in ("1", "True"), f[4]))

    d_reinv, d_agent, silence, d_brief, d_bridge = [], [], [], [], []
    missed = 0
    for cid, t0 in trig.items():
        ok = True
        if cid in reinvite:
            d_reinv.append((reinvite[cid] - t0) * 1000)
            ok &= d_reinv[-1] <= 20
        if cid in agent_invite:
            d_agent.append((agent_invite[cid] - t0) * 1000)
            ok &= d_agent[-1] <= 20
        port = caller_port.get(cid)
        pkts = by_port.get((port, 7100), []) if port else []
        tb = bridge.get(cid)
        if pkts and tb:
            worst, last, quiet = 0.0, t0, 0.0
            for t, _, payload in pkts:
                if t < t0 or t > tb:
                    continue
                worst = max(worst, t - last)
                last = t
                quiet = quiet + 0.02 if ulaw_rms(payload) < 100 else 0.0
                worst = max(worst, quiet)
            silence.append(worst * 1000)
            ok &= silence[-1] <= 500
            after = [t for t, marker, _ in pkts if t >= tb]
            if after:
                d_bridge.append((after[0] - tb) * 1000)
                ok &= d_bridge[-1] <= 60
        aport = agent_port.get(cid)
        if cid in agent_200 and aport:
            to_agent = [t for t, _, _ in by_port.get((aport, 7200), []) if t >= agent_200[cid]]
            if to_agent:
                d_brief.append((to_agent[0] - agent_200[cid]) * 1000)
        missed += 0 if ok else 1

    def line(name, v, target):
        if not v:
            print(f"{name}: no samples")
            return
        print(f"{name}: n={len(v)} p50 {pct(v, 50):.1f} ms, p95 {pct(v, 95):.1f} ms, "
              f"p99 {pct(v, 99):.1f} ms, max {max(v):.1f} ms ({target})")

    print(f"{len(trig)}/{n} calls triggered, {len(bridge)} bridged, {conc} at a time")
    line("trigger -> caller re-INVITE on the wire", d_reinv, "target p99 <= 20 ms")
    line("trigger -> agent INVITE on the wire", d_agent, "target p99 <= 20 ms")
    line("longest caller silence, trigger -> bridge", silence, "target <= 500 ms")
    line("agent 200 OK -> first briefing packet to the agent", d_brief, "")
    line("bridge decision -> first bridged packet to the caller", d_bridge, "target p99 <= 60 ms")
    print(f"transfers that missed a deadline: {missed}/{len(trig)}")


main()
