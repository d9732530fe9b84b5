//! G.711 µ-law (PCMU) and A-law (PCMA), ITU-T G.711, by bit manipulation rather than
//! tables: a handful of integer ops per sample, no 64 KiB lookup polluting the cache.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// Linear 16-bit PCM to µ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(CLIP) + BIAS;
    // Segment = position of the highest set bit above bit 7.
    let exponent = (31 - (pcm as u32).leading_zeros()).saturating_sub(7).min(7);
    let mantissa = (pcm >> (exponent + 3)) & 0x0f;
    !(sign | ((exponent as i32) << 4) | mantissa) as u8
}

/// µ-law to linear 16-bit PCM.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Linear 16-bit PCM to A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let pcm = i32::from(sample) >> 3;
    let (sign, mag) = if pcm >= 0 {
        (0xD5u8, pcm)
    } else {
        (0x55u8, -pcm - 1)
    };
    let mag = mag.min(0x0fff);
    let code = if mag < 32 {
        (mag >> 1) as u8
    } else {
        let exponent = 31 - (mag as u32).leading_zeros() - 4; // 1..=7
        let mantissa = (mag >> exponent) & 0x0f;
        ((exponent << 4) as u8) | mantissa as u8
    };
    code ^ sign
}

/// A-law to linear 16-bit PCM.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let exponent = i32::from((a >> 4) & 0x07);
    let mantissa = i32::from(a & 0x0f);
    let mag = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if a & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

pub fn ulaw_encode_frame(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| ulaw_encode(s)));
}

pub fn ulaw_decode_frame(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| ulaw_decode(c)));
}

pub fn alaw_encode_frame(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| alaw_encode(s)));
}

pub fn alaw_decode_frame(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| alaw_decode(c)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trips_every_code() {
        for code in 0..=255u8 {
            let pcm = ulaw_decode(code);
            let again = ulaw_encode(pcm);
            // 0x7f and 0xff are both zero; everything else is exact.
            assert_eq!(ulaw_decode(again), pcm, "code {code:#x}");
        }
    }

    #[test]
    fn alaw_round_trips_every_code() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "code {code:#x}");
        }
    }

    #[test]
    fn known_values() {
        // ITU-T G.711 reference points.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(-1), 0x7f);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_decode(0x2a), -32256);
    }

    #[test]
    fn quantisation_error_is_bounded_across_the_range() {
        for s in (-32000i32..32000).step_by(7) {
            let s = s as i16;
            let eu = (i32::from(ulaw_decode(ulaw_encode(s))) - i32::from(s)).abs();
            let ea = (i32::from(alaw_decode(alaw_encode(s))) - i32::from(s)).abs();
            // Half a step of the coarsest segment, relative to the magnitude.
            let bound = (i32::from(s).abs() / 16).max(16);
            assert!(eu <= bound, "ulaw {s}: err {eu}");
            assert!(ea <= bound, "alaw {s}: err {ea}");
        }
    }
}
