#!/usr/bin/env python3
"""The escalation-accuracy suite's labelled calls, and their audio.

  cases.py list [--subset ci]            one JSON object a line (id, category, expect, …)
  cases.py render OUTDIR [--subset ci] [--tail-s S]
                                         OUTDIR/<id>/audio.pcap for each call; the caller
                                         stays S seconds after its last turn (default 3)

Each call is what a caller says, turn by turn (text, espeak-ng voice, calm or agitated),
with pauses for the assistant, rendered by espeak-ng, taken to 8 kHz (sox, no dither) and
packed as G.711 RTP (mkpcap.py) for SIPp to play: callers arrive over the phone.
`expect` is the trigger kind the call must fire first, or "none". The `ci` subset is a
fixed selection of every category that CI runs on each change.
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MKPCAP = os.path.join(HERE, "..", "..", "sipp-scenarios", "mkpcap.py")

VOICES = [
    "en-us", "en", "en+m3", "en+f2", "en-us+klatt2", "en-gb-x-rp", "en+f4", "en-029",
    "en-us-nyc", "en-gb-scotland",
]
VIP = "+442079460123"
PLAIN = "+15550100"

# (category, expect, [turns]); a turn is text, or (text, "agitated"), or a directive:
# "<silence N>", "<noise N>", "<mumble>", "<dtmf D>".
CASES = [
    # Asking for a person, many wordings.
    ("explicit", "explicit_request", ["I want to speak to a human agent right now."]),
    ("explicit", "explicit_request", ["Can I speak to someone in person?"]),
    ("explicit", "explicit_request", ["I need to talk to somebody, not a machine."]),
    ("explicit", "explicit_request", ["Put me through to someone, please."]),
    ("explicit", "explicit_request", ["Is there a person I can talk to?"]),
    ("explicit", "explicit_request", ["Operator."]),
    ("explicit", "explicit_request", ["Supervisor, please."]),
    ("explicit", "explicit_request", ["Can I talk to a real person, please?"]),
    ("explicit", "explicit_request", ["Representative."]),
    ("explicit", "explicit_request", ["Transfer me to an agent."]),
    ("explicit", "explicit_request", ["I'd like to speak with a representative."]),
    ("explicit", "explicit_request", ["Get me a manager."]),
    ("explicit", "explicit_request", ["Hi, I'm calling about my bill.", "Can I talk to a person about it?"]),
    ("explicit", "explicit_request", ["I have a question about my order.", "Actually, just put me through to a human."]),
    ("explicit", "explicit_request", ["I don't want to talk to a machine. Give me a real person."]),
    ("explicit", "explicit_request", ["Connect me with customer service, please."]),
    ("explicit", "explicit_request", ["Agent, please."]),
    ("explicit", "explicit_request", ["Let me speak to your supervisor."]),
    ("explicit", "explicit_request", [("I want to speak to a human agent right now!", "agitated")]),
    ("explicit", "explicit_request", [("Get me a real person!", "agitated")]),
    ("explicit", "explicit_request", [("Put me through to a manager, now!", "agitated")]),
    ("explicit", "explicit_request", ["Can I please speak to a human being?"]),
    ("explicit", "explicit_request", ["I would like to talk to an operator."]),
    ("explicit", "explicit_request", ["Hello, is there anyone I can speak to?"]),
    # Mentions that are not requests: negated, third parties, compounds.
    ("negated", "none", ["No need for an agent, I'm fine."]),
    ("negated", "none", ["I don't need to talk to anyone, I just want my balance."]),
    ("negated", "none", ["I don't need a person, I'd like to check my order status."]),
    ("third_party", "none", ["My manager asked me to check the invoice date."]),
    ("third_party", "none", ["I booked a holiday through a travel agent."]),
    ("third_party", "none", ["The operator at the front desk gave me this number."]),
    ("third_party", "none", ["I spoke to an agent yesterday about my delivery."]),
    ("third_party", "none", ["My estate agent needs a copy of my last statement."]),
    ("third_party", "none", ["I need someone to fix my internet connection."]),
    ("third_party", "none", ["My supervisor wants a receipt for the order."]),
    # Routine calls the assistant handles.
    ("routine", "none", ["Hi, I would like to check the status of my order."]),
    ("routine", "none", ["I have moved house and need to change my address."]),
    ("routine", "none", ["What are your opening hours on Saturday?"]),
    ("routine", "none", ["I'd like to pay my bill, please.", "My account number is four five six seven."]),
    ("routine", "none", ["Can you tell me when my parcel will arrive?"]),
    ("routine", "none", ["I want to update my email address."]),
    ("routine", "none", ["I'm calling to check my balance.", "Yes, that's right."]),
    ("routine", "none", ["Could you resend my last invoice?"]),
    ("routine", "none", ["I'd like to order a replacement card."]),
    ("routine", "none", ["My password isn't working, can you reset it?"]),
    ("routine", "none", ["Hello, I'm calling about my appointment next week."]),
    ("routine", "none", ["I want to add a second user to my account."]),
    # Keywords in context (the cancellation rule).
    ("keyword", "keyword", ["I want to cancel my contract."]),
    ("keyword", "keyword", ["I'd like to cancel my subscription, please."]),
    ("keyword", "keyword", ["Please cancel my membership."]),
    ("keyword", "keyword", ["I've decided to cancel my contract with you."]),
    ("keyword_context", "none", ["I want to cancel my appointment and reschedule it for Friday."]),
    ("keyword_context", "none", ["I don't want to cancel anything, I just have a question."]),
    ("keyword_context", "none", ["Can I cancel my booking and rebook for next month?"]),
    ("keyword_context", "none", ["I need to reschedule my appointment."]),
    # Compliance topics with amounts (the billing dispute rule, over 500).
    ("topic", "topic", ["I want to dispute a charge of eight hundred dollars."]),
    ("topic", "topic", ["There is a wrong charge of nine hundred dollars on my card."]),
    ("topic", "topic", ["I was overcharged by two thousand dollars."]),
    ("topic", "topic", ["I'd like to dispute a payment of six hundred dollars."]),
    ("topic_small", "none", ["I want to dispute a charge of twenty dollars."]),
    ("topic_small", "none", ["I think I was overcharged by five dollars."]),
    # Frustration in the voice.
    ("frustrated", "prosody", [("This is useless, completely useless!", "agitated"),
                               ("I have been waiting for an hour, this is ridiculous!", "agitated")]),
    ("frustrated", "prosody", [("Where is my order? It was supposed to arrive last week!", "agitated"),
                               ("Nobody ever calls me back!", "agitated")]),
    ("frustrated", "prosody", [("I have called three times already!", "agitated"),
                               ("Why does this keep happening to me?", "agitated")]),
    ("frustrated", "prosody", ["I'm calling about my order.",
                               ("It still hasn't arrived and I am sick of waiting!", "agitated"),
                               ("This is the third time I've called!", "agitated")]),
    ("frustrated", "prosody", [("You charged me twice and nobody has fixed it!", "agitated"),
                               ("I'm so fed up with this!", "agitated")]),
    ("frustrated", "prosody", [("I was promised a refund a month ago!", "agitated"),
                               ("This is a waste of my time!", "agitated")]),
    ("calm_lively", "none", ["Oh hi! I'm just calling to say the delivery came early, thanks so much!"]),
    ("calm_lively", "none", ["Great news, my card arrived today.", "I just want to activate it."]),
    ("calm_lively", "none", ["Hello there, I'd love to know about your new plans."]),
    # Keys.
    ("dtmf", "dtmf", ["<dtmf 0>"]),
    ("dtmf", "dtmf", ["I have a problem with my account.", "<dtmf 0>"]),
    ("dtmf", "dtmf", ["<silence 1>", "<dtmf 0>"]),
    ("dtmf_other", "none", ["<dtmf 5>"]),
    # Silence, noise, mumbling.
    ("silence", "none", ["<silence 8>"]),
    ("silence", "none", ["<silence 12>"]),
    ("noise", "none", ["<noise 6>"]),
    ("noise", "none", ["<noise 3>", "<silence 2>", "<noise 3>"]),
    ("mumble", "none", ["<mumble>"]),
    ("mumble", "none", ["<mumble>", "<mumble>"]),
    # A VIP caller.
    ("vip", "caller", ["Hello, I'm calling about my account."]),
    ("vip", "caller", ["<silence 4>"]),
]

# The fixed subset CI runs: every category, explicit and routine the most.
CI = {0, 1, 2, 3, 4, 5, 8, 11, 13, 16, 18, 19, 24, 26, 27, 28, 29, 32, 34, 35, 36, 38, 46, 47,
      50, 54, 58, 60, 61, 62, 63, 66, 69, 72, 73, 75, 77, 79}


def cases(subset):
    out = []
    for i, (cat, expect, turns) in enumerate(CASES):
        if subset == "ci" and i not in CI:
            continue
        voice = VOICES[i % len(VOICES)]
        # Calm turns of the prosody cases keep the call's voice; every case is its own voice.
        out.append({
            "id": f"acc{i:03d}",
            "index": i,
            "category": cat,
            "expect": expect,
            "voice": voice,
            "caller": VIP if cat == "vip" else PLAIN,
            "turns": [t if isinstance(t, str) else {"text": t[0], "style": t[1]} for t in turns],
        })
    return out


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def duration(wav):
    out = subprocess.run(["soxi", "-D", wav], check=True, capture_output=True, text=True)
    return float(out.stdout)


def render(case, outdir, tail_s=3.0):
    d = os.path.join(outdir, case["id"])
    os.makedirs(d, exist_ok=True)
    parts = []
    # The caller waits for the short greeting, then talks; the assistant answers between turns.
    lead = os.path.join(d, "lead.wav")
    sh("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", lead, "trim", "0", "3.5")
    parts.append(lead)
    dtmf, dtmf_part = "", 0
    for k, t in enumerate(case["turns"]):
        w = os.path.join(d, f"t{k}.wav")
        text = t if isinstance(t, str) else t["text"]
        agitated = not isinstance(t, str) and t.get("style") == "agitated"
        if text.startswith("<silence"):
            secs = text.split()[1].rstrip(">")
            sh("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", w, "trim", "0", secs)
        elif text.startswith("<noise"):
            secs = text.split()[1].rstrip(">")
            sh("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", w, "synth", secs,
               "pinknoise", "vol", "0.08")
        elif text.startswith("<dtmf"):
            dtmf, dtmf_part = text.split()[1].rstrip(">"), len(parts)
            sh("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", w, "trim", "0", "3")
            parts.append(w)
            continue
        else:
            raw = os.path.join(d, f"t{k}.raw.wav")
            if text == "<mumble>":
                # Speech-like sound with no words: a sentence played backwards, quietly.
                args = ["espeak-ng", "-v", case["voice"], "-s", "140", "-w", raw,
                        "Hmm, well, I was just, uh, wondering about the thing."]
                subprocess.run(args, check=True)
                sh("sox", "-D", raw, "-r", "8000", "-c", "1", "-b", "16", w, "reverse", "vol", "0.5")
            else:
                args = ["espeak-ng", "-v", case["voice"], "-w", raw]
                args += ["-p", "80", "-a", "200", "-s", "220"] if agitated else ["-s", "160"]
                subprocess.run(args + ["--", text], check=True)
                sh("sox", "-D", "-v", "0.8", raw, "-r", "8000", "-c", "1", "-b", "16", w)
            os.remove(raw)
        parts.append(w)
        gap = os.path.join(d, f"g{k}.wav")
        sh("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", gap, "trim", "0", "3.5")
        parts.append(gap)
    tail = os.path.join(d, "tail.wav")
    sh("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", tail, "trim", "0", str(tail_s))
    parts.append(tail)
    whole = os.path.join(d, "call.wav")
    sh("sox", "-D", *parts, whole)
    secs = duration(whole)
    cmd = [sys.executable, MKPCAP, whole, os.path.join(d, "audio.pcap"), "--codec", "pcmu",
           "--ssrc", hex(0x5EEDA000 + case["index"])]
    if dtmf:
        # The key is pressed where its turn starts: after everything said before it.
        before = sum(duration(p) for p in parts[:dtmf_part])
        cmd += ["--dtmf", dtmf, "--lead-ms", str(int(before * 1000))]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    for f in os.listdir(d):
        if f.endswith(".wav") and f != "call.wav":
            os.remove(os.path.join(d, f))
    with open(os.path.join(d, "duration_ms"), "w") as f:
        f.write(str(int(secs * 1000) + 500))


def main():
    args = sys.argv[1:]
    subset = "ci" if "--subset" in args and args[args.index("--subset") + 1] == "ci" else "all"
    if not args or args[0] not in ("list", "render"):
        sys.exit(__doc__)
    cs = cases(subset)
    if args[0] == "list":
        for c in cs:
            print(json.dumps(c))
        return
    outdir = args[1]
    tail_s = float(args[args.index("--tail-s") + 1]) if "--tail-s" in args else 3.0
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=2) as ex:
        list(ex.map(lambda c: render(c, outdir, tail_s), cs))


if __name__ == "__main__":
    main()
