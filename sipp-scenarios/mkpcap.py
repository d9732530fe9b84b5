#!/usr/bin/env python3
"""Pack audio into an RTP pcap that SIPp's play_pcap_audio can send.

  mkpcap.py IN.wav OUT.pcap [--codec pcmu|pcma] [--dtmf DIGITS [--lead-ms N]] [--ssrc N] [--seq N]

IN.wav must be 8 kHz mono 16-bit (make it with `sox -D in.wav -r 8000 -c 1 -b 16 out.wav`).
With --dtmf, each digit is sent as an RFC 4733 event (payload type 101, 100 ms, three end
packets) followed by 200 ms of the audio. With --lead-ms, N ms of the audio come first and
the rest of it after the digits (an agent who listens, then presses a key). Every clip gets its own SSRC and sequence space:
SIPp sends the file's bytes unchanged, and a receiver would drop a second clip that reused
the first one's numbers. Python standard library only.
"""
import argparse
import struct
import wave


def ulaw(s):
    BIAS, CLIP = 0x84, 32635
    sign = 0x80 if s < 0 else 0
    s = min(abs(s), CLIP) + BIAS
    exp = max(s.bit_length() - 8, 0)
    exp = min(exp, 7)
    mant = (s >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mant) & 0xFF


def alaw(s):
    s >>= 3
    if s >= 0:
        mask, mag = 0xD5, s
    else:
        mask, mag = 0x55, -s - 1
    mag = min(mag, 0x0FFF)
    if mag < 32:
        code = mag >> 1
    else:
        exp = mag.bit_length() - 5
        code = (exp << 4) | ((mag >> exp) & 0x0F)
    return code ^ mask


def frames(path):
    with wave.open(path, "rb") as w:
        if w.getframerate() != 8000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise SystemExit(f"{path}: need 8 kHz mono 16-bit WAV")
        raw = w.readframes(w.getnframes())
    pcm = list(struct.unpack(f"<{len(raw) // 2}h", raw))
    pcm += [0] * (-len(pcm) % 160)
    return [pcm[i:i + 160] for i in range(0, len(pcm), 160)]


def udp_frame(payload):
    # Ethernet + IPv4 + UDP around one RTP packet; SIPp rewrites addresses and ports.
    udp = struct.pack("!HHHH", 6000, 7000, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wav")
    ap.add_argument("pcap")
    ap.add_argument("--codec", choices=["pcmu", "pcma"], default="pcmu")
    ap.add_argument("--dtmf", default="")
    ap.add_argument("--lead-ms", type=int, default=0)
    ap.add_argument("--ssrc", type=lambda x: int(x, 0), default=0x5EED0001)
    ap.add_argument("--seq", type=int, default=1000)
    a = ap.parse_args()
    pt, enc = (0, ulaw) if a.codec == "pcmu" else (8, alaw)
    audio = frames(a.wav)
    packets = []  # (time_us, rtp bytes)
    seq, ts, t = a.seq, 160_000, 0

    def rtp(ptype, marker, stamp, payload):
        nonlocal seq
        hdr = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | ptype, seq & 0xFFFF,
                          stamp & 0xFFFFFFFF, a.ssrc)
        seq += 1
        return hdr + payload

    def play(chunk, first):
        nonlocal ts, t
        for i, f in enumerate(chunk):
            packets.append((t, rtp(pt, first and i == 0, ts, bytes(enc(s) for s in f))))
            ts += 160
            t += 20_000

    if a.dtmf:
        codes = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}
        cursor = a.lead_ms // 20
        if cursor:
            play(audio[:cursor], True)
        for k, digit in enumerate(a.dtmf):
            start = ts
            for n in range(8):
                end = n >= 5
                dur = 160 * min(n + 1, 5)
                payload = struct.pack("!BBH", codes[digit], (0x80 if end else 0) | 10, dur)
                packets.append((t, rtp(101, n == 0, start, payload)))
                if n < 5:
                    t += 20_000
            ts = start + 800
            t += 20_000
            gap = audio[cursor:cursor + 10] or [[0] * 160] * 10
            cursor += 10
            play(gap, True)
        if a.lead_ms:
            play(audio[cursor:], False)
    else:
        play(audio, True)

    with open(a.pcap, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for us, pkt in packets:
            frame = udp_frame(pkt)
            out.write(struct.pack("<IIII", 1_700_000_000 + us // 1_000_000, us % 1_000_000,
                                  len(frame), len(frame)))
            out.write(frame)
    print(f"{a.pcap}: {len(packets)} packets, {t / 1e6:.2f} s")


if __name__ == "__main__":
    main()
