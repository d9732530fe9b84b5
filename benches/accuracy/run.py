#!/usr/bin/env python3
"""The escalation-accuracy suite: every labelled call (cases.py) played through the real
warmline binary by a SIPp caller over SIP with G.711 RTP on loopback, scored from each
call's audit trail (GET /api/calls/{id}/audit).

  run.py --bin target/release/warmline [--subset ci] [--parallel 3]
         [--model PATH | --fallback] [--check] [--work DIR]

Prints right-trigger % (should-escalate calls whose first trigger is the expected kind),
false-escalation % (should-not calls with any trigger), both per category, the confusions
with what warmline heard, and end of speech -> trigger p50/p95 (the decisive turn's
closing silence, recognition and policy, from the trigger's audit row). With --check it
exits 1 below --min-right (default 0.90) or above --max-false (default 0.05). Needs root (SIPp's pcap play),
sipp, espeak-ng, sox. Loopback only; every SIPp run is bounded by -m 1 and a timeout.
"""

import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SCENARIO = os.path.join(ROOT, "sipp-scenarios", "uac_accuracy.xml")

RULES = """
[[rules]]
name = "asked_for_person"
kind = "explicit_request"
priority = 100
disposition = "transfer.requested"

[[rules]]
name = "pressed_zero"
kind = "dtmf"
digit = "0"
priority = 90
disposition = "transfer.dtmf"

[[rules]]
name = "vip"
kind = "caller"
numbers = ["+44207946*"]
priority = 80
disposition = "transfer.vip"
route = "priority"

[[rules]]
name = "billing_dispute"
kind = "topic"
topic = "billing dispute"
phrases = ["dispute", "wrong charge", "overcharged"]
amount_over = 500
priority = 60
disposition = "transfer.compliance.billing"
route = "billing"

[[rules]]
name = "frustrated"
kind = "prosody"
priority = 50
disposition = "transfer.frustration"

[[rules]]
name = "assistant_failing"
kind = "repeated_failure"
failures = 3
priority = 40
disposition = "transfer.repeated_failure"

[[rules]]
name = "cancellation"
kind = "keyword"
phrases = ["cancel my contract", "cancel my subscription", "cancel my membership", "cancel"]
exclude = ["appointment", "reschedule", "booking", "rebook"]
priority = 30
disposition = "transfer.retention"
route = "retention"

# No agents: the suite scores the decision; the transfer itself is tested elsewhere.
[[routes]]
name = "default"
[[routes]]
name = "priority"
[[routes]]
name = "billing"
[[routes]]
name = "retention"
"""


def http_get(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


# Port blocks for the gateway's RTP range and SIPp's media ports, below the kernel's
# ephemeral range (32768+) and the test harness's gateways (20000-31999). The range must be
# named in warmline's config, so it cannot come from a socket the kernel gives; instead a
# run holds an exclusive lock on its block for as long as it lasts, and two runs at once (a
# suite and a developer's bench) take different blocks rather than each refusing the
# other's calls.
PORT_BLOCKS = [(10000 + 1000 * k, 10999 + 1000 * k) for k in range(6)]


def hold_port_block():
    """An exclusive lock on a free block, held until this process exits."""
    for lo, hi in PORT_BLOCKS:
        f = open(os.path.join(tempfile.gettempdir(), f"warmline-ports-{lo}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        return f, (lo, hi)
    sys.exit(f"every port block {PORT_BLOCKS[0][0]}-{PORT_BLOCKS[-1][1]} is held by another run")


def start_gateway(args, work, rtp):
    """warmline on ports the kernel gives it (port 0), read back from its log: nothing is
    picked here and hoped to be free by the time warmline binds it."""
    speech = (
        'recognizer = "fallback"\n' if args.fallback else f'whisper_model = "{args.model}"\n'
    )
    if args.workers:
        speech += f"threads = {args.workers}\n"
    # The suite measures what is heard, not admission: every case is listened to, whatever
    # the start-up self-test makes of a busy machine.
    speech += "capacity = 64\n"
    cfg = os.path.join(work, "warmline.toml")
    with open(cfg, "w") as f:
        f.write(f"""[sip]
listen = ["udp:127.0.0.1:0"]
max_calls = 300
[media]
rtp_port_range = [{rtp[0]}, {rtp[1]}]
[http]
listen = "127.0.0.1:0"
[log]
level = "{os.environ.get('LOG_LEVEL', 'info')}"
[store]
path = "{work}/warmline.db"
keep_transcripts = true
[speech]
{speech}greeting_text = "Hi, I'm an automated assistant. How can I help?"
{RULES}""")
    log_path = os.path.join(work, "warmline.log")
    log = open(log_path, "w")
    p = subprocess.Popen([args.bin, "run", "--config", cfg], stdout=subprocess.DEVNULL,
                         stderr=log)
    ports = {}
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        for line in open(log_path):
            for key, what in (("sip", "SIP listening transport=udp"), ("http", "HTTP API listening")):
                if what in line and "addr=127.0.0.1:" in line:
                    ports[key] = int(line.rsplit("addr=127.0.0.1:", 1)[1].split()[0])
        if "sip" in ports and "http" in ports:
            try:
                if http_get(ports["http"], "/healthz", 1)[0] == 200:
                    return p, ports["sip"], ports["http"]
            except OSError:
                pass
        time.sleep(0.1)
    p.kill()
    p.wait()
    sys.exit("warmline would not start; see " + log_path)


def run_call(case, sip, media_dir, slot, media_base):
    d = os.path.join(media_dir, case["id"])
    dur = int(open(os.path.join(d, "duration_ms")).read())
    cmd = ["sipp", f"127.0.0.1:{sip}", "-sf", SCENARIO, "-key", "codec", "0",
           "-key", "caller", case["caller"], "-i", "127.0.0.1",
           "-mp", str(media_base + 8 * slot), "-m", "1", "-d", str(dur), "-nostdin",
           "-cid_str", case["id"] + "-%u@%s", "-timeout", f"{dur // 1000 + 30}s",
           "-timeout_error"]
    # SIPp's own complaints (a port it could not bind, a refusal) are kept beside the
    # call's audio, for the report of a call that was never answered.
    with open(os.path.join(d, "sipp.err"), "w") as err:
        r = subprocess.run(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=err,
                           timeout=dur / 1000 + 60)
    return r.returncode


def audit(http, call_id, deadline_s=20):
    """The call's audit trail once its `end` event is stored."""
    deadline = time.time() + deadline_s
    last = None
    while time.time() < deadline:
        try:
            status, body = http_get(http, f"/api/calls/{call_id}/audit")
            if status == 200:
                last = json.loads(body)
                events = last.get("events", [])
                if any(e.get("event") == "end" for e in events):
                    return events
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    return (last or {}).get("events", [])


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--subset", default="all")
    ap.add_argument("--parallel", type=int, default=3)
    ap.add_argument("--model")
    ap.add_argument("--fallback", action="store_true")
    ap.add_argument("--workers", type=int, default=0,
                    help="[speech] threads: recognition workers (default: the gateway's)")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--min-right", type=float, default=0.90)
    ap.add_argument("--max-false", type=float, default=0.05)
    ap.add_argument("--work")
    ap.add_argument("--tail-s", type=float, default=3.0,
                    help="how long each caller stays after its last turn: CI gives a loaded "
                         "box time to finish hearing it")
    args = ap.parse_args()
    if not args.fallback and not (args.model and os.path.exists(args.model)):
        sys.exit(f"no whisper model at {args.model!r}: run `warmline model fetch`")
    work = args.work or tempfile.mkdtemp(prefix="wl-accuracy-")
    os.makedirs(work, exist_ok=True)
    media = os.path.join(work, "media")
    listing = subprocess.run([sys.executable, os.path.join(HERE, "cases.py"), "list",
                              "--subset", args.subset], check=True, capture_output=True,
                             text=True).stdout
    cases = [json.loads(l) for l in listing.splitlines() if l.strip()]
    t0 = time.time()
    subprocess.run([sys.executable, os.path.join(HERE, "cases.py"), "render", media,
                    "--subset", args.subset, "--tail-s", str(args.tail_s)], check=True)
    sys.stderr.write(f"rendered {len(cases)} calls in {time.time() - t0:.0f} s\n")
    _held, (lo, hi) = hold_port_block()
    # The gateway's RTP in the block's first 800 ports, SIPp's media ports above them.
    if args.parallel * 8 > hi - lo - 800:
        sys.exit(f"--parallel {args.parallel}: more SIPp media ports than a block holds")
    gw, sip, http = start_gateway(args, work, (lo, lo + 799))
    speech = []
    try:
        slots = list(range(args.parallel))
        lock = threading.Lock()

        def one(case):
            with lock:
                slot = slots.pop()
            try:
                return run_call(case, sip, media, slot, lo + 800)
            finally:
                with lock:
                    slots.append(slot)

        t0 = time.time()
        with ThreadPoolExecutor(max_workers=args.parallel) as ex:
            codes = list(ex.map(one, cases))
        played = time.time() - t0
        results = []
        for case, code in zip(cases, codes):
            events = audit(http, f"{case['id']}-1@127.0.0.1")
            triggers = [e for e in events if e.get("event") == "trigger"]
            turns = [e.get("detail", "") for e in events if e.get("event") == "turn"]
            heard = [m.group(1) for t in turns if (m := re.match(r'"(.*)", \d+-\d+ ms', t))]
            first = triggers[0]["detail"] if triggers else ""
            m = re.match(r"rule (\S+) \((\w+)\)", first)
            kind = m.group(2) if m else "none"
            lat = re.search(r"(\d+) ms after the end of speech", first)
            results.append({**case, "sipp": code, "got": kind, "trigger": first,
                            "heard": heard, "answered": bool(events),
                            "latency_ms": int(lat.group(1)) if lat else None})
        try:
            metrics = http_get(http, "/metrics")[1]
            speech = [l for l in metrics.splitlines()
                      if l.startswith(("warmline_stt_dropped_total",
                                       "warmline_stt_speculation_stopped_total"))]
        except OSError:
            pass
    finally:
        gw.terminate()
        try:
            gw.wait(timeout=40)
        except subprocess.TimeoutExpired:
            gw.kill()
    report(results, args, played)
    if speech:
        print("  recognizer: " + ", ".join(speech))
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    sys.stderr.write(f"results: {work}/results.json, log: {work}/warmline.log\n")
    if args.check:
        should = [r for r in results if r["expect"] != "none"]
        shouldnt = [r for r in results if r["expect"] == "none"]
        right = sum(r["got"] == r["expect"] for r in should) / max(1, len(should))
        false = sum(r["got"] != "none" for r in shouldnt) / max(1, len(shouldnt))
        unanswered = [r["id"] for r in results if not r["answered"]]
        if unanswered:
            first = next(r for r in results if not r["answered"])
            why = open(os.path.join(media, first["id"], "sipp.err"), errors="replace").read()
            with open(os.path.join(work, "warmline.log"), errors="replace") as f:
                said = [l for l in f if " WARN " in l or " ERROR " in l][-10:]
            sys.exit(f"FAIL: calls with no audit trail (not answered?): {unanswered}\n"
                     f"SIPp exit code of {first['id']}: {first['sipp']}; its stderr:\n"
                     f"{why[-2000:]}\nwarmline's last warnings:\n{''.join(said)}")
        if right < args.min_right or false > args.max_false:
            sys.exit(f"FAIL: right trigger {right:.1%} (need >= {args.min_right:.0%}), "
                     f"false escalation {false:.1%} (need <= {args.max_false:.0%})")


def report(results, args, played):
    should = [r for r in results if r["expect"] != "none"]
    shouldnt = [r for r in results if r["expect"] == "none"]
    right = [r for r in should if r["got"] == r["expect"]]
    false = [r for r in shouldnt if r["got"] != "none"]
    rec = "pocketsphinx fallback" if args.fallback else os.path.basename(args.model)
    print(f"escalation accuracy: {len(results)} calls ({args.subset}), {rec}, "
          f"{args.parallel} in parallel, played in {played:.0f} s")
    print(f"  right trigger     {len(right)}/{len(should)} = "
          f"{100 * len(right) / max(1, len(should)):.1f} % of should-escalate calls")
    print(f"  false escalation  {len(false)}/{len(shouldnt)} = "
          f"{100 * len(false) / max(1, len(shouldnt)):.1f} % of should-not calls")
    cats = {}
    for r in results:
        c = cats.setdefault(r["category"], [0, 0, r["expect"]])
        c[0] += r["got"] == r["expect"]
        c[1] += 1
    print("  per category (right / calls):")
    for name, (ok, n, expect) in cats.items():
        print(f"    {name:16} {ok:3}/{n:<3} expect {expect}")
    lat = [r["latency_ms"] for r in right if r["latency_ms"] is not None]
    print(f"  end of speech -> trigger (decisive turn, {len(lat)} calls): "
          f"p50 {pct(lat, 0.5):.0f} ms, p95 {pct(lat, 0.95):.0f} ms, max {max(lat, default=0)} ms")
    kinds = {}
    for r in right:
        if r["latency_ms"] is not None:
            kinds.setdefault(r["expect"], []).append(r["latency_ms"])
    for kind, xs in sorted(kinds.items()):
        print(f"    {kind:16} {len(xs):3} calls: p50 {pct(xs, 0.5):.0f} ms, "
              f"max {max(xs)} ms")
    wrong = [r for r in results if r["got"] != r["expect"]]
    if wrong:
        print("  confusions:")
        for r in wrong:
            said = " | ".join(t if isinstance(t, str) else t["text"] for t in r["turns"])
            print(f"    {r['id']} {r['category']} ({r['voice']}): expected {r['expect']}, "
                  f"got {r['got']}")
            print(f"      said:  {said}")
            print(f"      heard: {' | '.join(r['heard']) or '(nothing)'}")
            if r["trigger"]:
                print(f"      trigger: {r['trigger'][:200]}")


if __name__ == "__main__":
    main()
