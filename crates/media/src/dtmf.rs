//! RFC 4733 telephone-events: reading digits out of a leg's RTP, and the packet train that
//! sends one.

/// The character for an RFC 4733 event code (0–15); other events are not DTMF.
pub fn event_digit(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        _ => return None,
    })
}

pub fn digit_event(digit: char) -> Option<u8> {
    Some(match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => digit as u8 - b'A' + 12,
        'a'..='d' => digit as u8 - b'a' + 12,
        _ => return None,
    })
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl EventPayload {
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < 4 {
            return None;
        }
        Some(Self {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// Turns the retransmitted packets of each event into one digit. An event is identified by
/// its RTP timestamp (RFC 4733 §2.5.1.3), so a lost first packet or three end packets still
/// give exactly one digit.
#[derive(Debug, Default)]
pub struct DtmfDetector {
    last_ts: Option<u32>,
}

impl DtmfDetector {
    /// A digit when this packet starts a new event.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = EventPayload::parse(payload)?;
        if self.last_ts == Some(timestamp) {
            return None;
        }
        self.last_ts = Some(timestamp);
        event_digit(ev.event)
    }
}

/// The packet train for one digit, one packet per 20 ms tick, all on the event's start
/// timestamp: a marked first packet, growing durations, then the end packet three times.
#[derive(Debug, Clone)]
pub struct DtmfTrain {
    event: u8,
    samples_per_tick: u16,
    ticks_on: u16,
    tick: u16,
}

impl DtmfTrain {
    /// `rate` is the telephone-event clock; `on_ms` how long the tone lasts.
    pub fn new(digit: char, rate: u32, on_ms: u32) -> Option<Self> {
        Some(Self {
            event: digit_event(digit)?,
            samples_per_tick: (rate / 50) as u16,
            ticks_on: (on_ms / 20).max(1) as u16,
            tick: 0,
        })
    }

    /// `(payload, marker)` for the next tick, `None` once the train is done.
    pub fn next_packet(&mut self) -> Option<([u8; 4], bool)> {
        let total = self.ticks_on + 3;
        if self.tick >= total {
            return None;
        }
        let end = self.tick >= self.ticks_on;
        let ticks = (self.tick + 1).min(self.ticks_on);
        let p = EventPayload {
            event: self.event,
            end,
            volume: 10,
            duration: ticks.saturating_mul(self.samples_per_tick),
        };
        let marker = self.tick == 0;
        self.tick += 1;
        Some((p.to_bytes(), marker))
    }

    /// Length of the event in timestamp units, for the audio that follows it.
    pub fn duration_samples(&self) -> u32 {
        u32::from(self.ticks_on) * u32::from(self.samples_per_tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_gives_one_digit_to_a_detector() {
        let mut train = DtmfTrain::new('#', 8000, 100).unwrap();
        let mut det = DtmfDetector::default();
        let mut digits = Vec::new();
        let mut n = 0;
        let mut markers = 0;
        while let Some((p, m)) = train.next_packet() {
            n += 1;
            markers += usize::from(m);
            digits.extend(det.on_packet(1234, &p));
        }
        assert_eq!(n, 8);
        assert_eq!(markers, 1);
        assert_eq!(digits, vec!['#']);
        let last = EventPayload::parse(&train_last('#')).unwrap();
        assert!(last.end);
        assert_eq!(last.duration, 800);
    }

    fn train_last(d: char) -> [u8; 4] {
        let mut t = DtmfTrain::new(d, 8000, 100).unwrap();
        let mut last = [0; 4];
        while let Some((p, _)) = t.next_packet() {
            last = p;
        }
        last
    }

    #[test]
    fn same_digit_twice_is_two_events() {
        let mut det = DtmfDetector::default();
        let p = EventPayload {
            event: 5,
            end: false,
            volume: 10,
            duration: 160,
        }
        .to_bytes();
        assert_eq!(det.on_packet(100, &p), Some('5'));
        assert_eq!(det.on_packet(100, &p), None);
        assert_eq!(det.on_packet(900, &p), Some('5'));
        assert_eq!(det.on_packet(900, &[1, 2]), None);
    }

    #[test]
    fn digit_mapping_round_trips() {
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(event_digit(digit_event(d).unwrap()), Some(d));
        }
        assert_eq!(event_digit(16), None);
    }
}
