//! A deterministic byte mutator for the workspace's fuzz tests (SIP, SDP, RTP, RTCP): bit
//! flips, insertions, deletions, known-troublesome tokens, truncation and duplicated spans,
//! the moves a coverage fuzzer makes, seeded so a failure reproduces, and without a nightly
//! toolchain (cargo-fuzz) or a dependency. Not part of the gateway's behaviour.

/// xorshift64*.
#[derive(Debug, Clone)]
pub struct Mutator(u64);

/// Tokens that have broken parsers before: line ends, delimiters, control bytes, numbers
/// past their type, protocol words.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b":",
    b";tag=",
    b"<",
    b">",
    b"\0",
    b"\x1b[2J",
    b"\xff\xfe",
    b"4294967296",
    b"-1",
    b"SIP/2.0",
    b"Content-Length: 99999\r\n",
    b"m=audio 0 RTP/AVP 0\r\n",
    b"c=IN IP4 224.0.0.1\r\n",
    b"a=rtpmap:101 telephone-event/0\r\n",
];

/// How many inputs a fuzz target runs: `default` in the test suite, or
/// `WARMLINE_FUZZ_EXECS` (what `benches/fuzz.sh` sets for its long runs).
pub fn executions(default: usize) -> usize {
    std::env::var("WARMLINE_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The line `benches/fuzz.sh` reads: a target's executions; reaching it means no crash.
pub fn report(target: &str, executions: usize) {
    // A test's output is where the bench script reads it; this is test support.
    #[allow(clippy::print_stdout)]
    {
        println!("fuzz {target}: {executions} executions, 0 crashes");
    }
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `seed` with one to six mutations.
    pub fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut b = seed.to_vec();
        for _ in 0..=self.below(6) {
            let at = self.below(b.len() + 1);
            match self.below(7) {
                0 if !b.is_empty() => {
                    let i = self.below(b.len());
                    b[i] ^= 1 << self.below(8);
                }
                1 => b.insert(at, self.next_u64() as u8),
                2 if at < b.len() => {
                    let n = self.below(16).min(b.len() - at);
                    b.drain(at..at + n);
                }
                3 => {
                    let t = TOKENS[self.below(TOKENS.len())];
                    b.splice(at..at, t.iter().copied());
                }
                4 => b.truncate(at),
                5 if at < b.len() => {
                    let n = self.below(64).min(b.len() - at);
                    let span = b[at..at + n].to_vec();
                    b.splice(at..at, span);
                }
                _ => {
                    let n = self.below(32);
                    let run: Vec<u8> = (0..n).map(|_| self.next_u64() as u8).collect();
                    b.splice(at..at, run);
                }
            }
        }
        b
    }
}
