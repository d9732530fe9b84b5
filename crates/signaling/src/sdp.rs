//! SDP offer/answer for one audio stream: RFC 3264, with the hold rules of RFC 6337.
//!
//! Parsing is the webrtc-rs `sdp` crate's; the offer/answer rules are ours: which codec wins,
//! what each side may send, which m-lines are refused, and when `o=` gets a new version.
//!
//! Directions are always from one side's own point of view. `want` is what *we* want to do
//! with media (`SendRecv` normally, `SendOnly` while we hold the peer and play hold audio);
//! what we put in an SDP is that, narrowed by what the peer allows.

use crate::sdes::{SrtpKey, SrtpMode, SrtpParams, SrtpSuite, crypto_line, parse_crypto};
use sdp::description::media::MediaDescription;
use sdp::description::session::SessionDescription;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

/// The audio codecs warmline can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CodecName {
    #[serde(rename = "PCMU")]
    Pcmu,
    #[serde(rename = "PCMA")]
    Pcma,
    #[serde(rename = "opus")]
    Opus,
    /// Wideband (7 kHz audio sampled at 16 kHz), whose RTP clock is 8000 all the same: RFC
    /// 3551 §4.5.2 kept the rate an early implementation had written.
    #[serde(rename = "G722")]
    G722,
}

impl CodecName {
    /// The static payload type, or the one we use in our own offers.
    fn default_pt(self) -> u8 {
        match self {
            CodecName::Pcmu => 0,
            CodecName::Pcma => 8,
            CodecName::Opus => 111,
            CodecName::G722 => 9,
        }
    }

    fn encoding(self) -> &'static str {
        match self {
            CodecName::Pcmu => "PCMU",
            CodecName::Pcma => "PCMA",
            CodecName::Opus => "opus",
            CodecName::G722 => "G722",
        }
    }

    /// RTP clock rate (RFC 7587 fixes Opus at 48 kHz whatever it carries; G.722 counts
    /// 8000 a second while carrying 16000 samples).
    pub fn clock_rate(self) -> u32 {
        match self {
            CodecName::Pcmu | CodecName::Pcma | CodecName::G722 => 8000,
            CodecName::Opus => 48000,
        }
    }

    fn channels(self) -> u8 {
        match self {
            CodecName::Opus => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for CodecName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.encoding())
    }
}

/// A codec bound to the payload type the session uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Codec {
    pub name: CodecName,
    pub payload_type: u8,
}

/// RFC 4733 telephone-event, bound to its payload type and clock rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelephoneEvent {
    pub payload_type: u8,
    pub clock_rate: u32,
}

/// Media direction from one side's own point of view (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other end.
    pub fn reversed(self) -> Self {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// What both this and `other` allow.
    pub fn narrowed_by(self, other: Direction) -> Self {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    pub fn as_attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// Where our RTP lives and which codecs we will accept, in our order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub addr: IpAddr,
    pub port: u16,
    pub codecs: Vec<CodecName>,
    /// Whether we offer and accept SRTP.
    pub srtp: SrtpMode,
    /// Our SRTP master key and salt for this session (the driver makes it at random); used
    /// only when SRTP is negotiated.
    pub srtp_key: SrtpKey,
}

/// The outcome of one offer/answer exchange: what the media plane must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Negotiated {
    /// Where to send RTP; `None` when the peer gave no usable address (`c=0.0.0.0` hold).
    pub remote: Option<SocketAddr>,
    pub codec: Codec,
    pub telephone_event: Option<TelephoneEvent>,
    /// Our direction, as written in our SDP.
    pub direction: Direction,
    /// Packetisation time the peer asked for, in ms.
    pub ptime_ms: u32,
    /// SRTP, when the stream is encrypted. Never serialised: it holds keys.
    #[serde(skip)]
    pub srtp: Option<SrtpParams>,
}

/// Why an offer or answer could not be used. Each maps to a SIP `Warning` code (RFC 3261 §20.43).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no audio stream offered")]
    NoAudio,
    #[error("incompatible transport protocol {0}")]
    Transport(String),
    #[error("no common codec (offered {0})")]
    NoCommonCodec(String),
    #[error("peer rejected the audio stream")]
    Rejected,
    /// Media aimed where no phone listens: a multicast or broadcast address, or a
    /// privileged port. Answering it would let one INVITE point our audio at anyone.
    #[error("media address {0} is not a unicast address with a port above 1023")]
    Address(String),
    /// An encrypted stream whose `a=crypto` lines we cannot use (RFC 4568 §7.1.2), or an
    /// answer without one to our `RTP/SAVP` offer.
    #[error("no usable a=crypto: {0}")]
    Crypto(String),
}

impl NegotiationError {
    /// The RFC 3261 warn-code that best describes this failure.
    pub fn warn_code(&self) -> u16 {
        match self {
            NegotiationError::Malformed(_) => 399,
            NegotiationError::NoAudio | NegotiationError::Rejected => 304,
            NegotiationError::Transport(_) => 302,
            NegotiationError::NoCommonCodec(_) => 305,
            NegotiationError::Address(_) => 301,
            NegotiationError::Crypto(_) => 306,
        }
    }
}

/// Our side of one SDP session: the `o=` identity, its version, and our media endpoint.
///
/// RFC 3264 §8: the version goes up by one exactly when what we send differs from what we
/// sent before, so a re-sent identical SDP keeps its version.
#[derive(Debug, Clone)]
pub struct SdpSession {
    local: LocalMedia,
    session_id: u64,
    version: u64,
    last_sent: Option<String>,
}

impl SdpSession {
    /// `session_id` should be unique per session (the driver uses randomness).
    pub fn new(local: LocalMedia, session_id: u64) -> Self {
        Self {
            local,
            session_id,
            version: session_id,
            last_sent: None,
        }
    }

    pub fn local(&self) -> &LocalMedia {
        &self.local
    }

    /// Answer `offer`, accepting the first usable audio stream and refusing the rest.
    pub fn answer(
        &mut self,
        offer: &str,
        want: Direction,
    ) -> Result<(String, Negotiated), NegotiationError> {
        let sd = parse(offer)?;
        let mut chosen: Option<(usize, Negotiated)> = None;
        let mut first_error = NegotiationError::NoAudio;
        for (index, md) in sd.media_descriptions.iter().enumerate() {
            if chosen.is_some() || md.media_name.media != "audio" || md.media_name.port.value == 0 {
                continue;
            }
            match self.accept_offered(&sd, md, want, false) {
                Ok(n) => chosen = Some((index, n)),
                Err(e) => {
                    if first_error == NegotiationError::NoAudio {
                        first_error = e;
                    }
                }
            }
        }
        let (chosen_index, negotiated) = chosen.ok_or(first_error)?;

        let mut media = String::new();
        for (index, md) in sd.media_descriptions.iter().enumerate() {
            if index == chosen_index {
                self.write_audio(&mut media, &negotiated, negotiated.direction);
            } else {
                // RFC 3264 §6: a refused stream keeps its place, with port zero.
                let _ = write!(
                    media,
                    "m={} 0 {} {}\r\n",
                    md.media_name.media,
                    md.media_name.protos.join("/"),
                    md.media_name.formats.join(" ")
                );
            }
        }
        Ok((self.finish(&media), negotiated))
    }

    /// An initial offer: every local codec, in preference order, plus telephone-event.
    pub fn initial_offer(&mut self, want: Direction) -> String {
        let mut media = String::new();
        let mut pts: Vec<String> = self
            .local
            .codecs
            .iter()
            .map(|c| c.default_pt().to_string())
            .collect();
        let te = self.local_telephone_events();
        pts.extend(te.iter().map(|t| t.payload_type.to_string()));
        let proto = if self.local.srtp == SrtpMode::Required {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        let _ = write!(
            media,
            "m=audio {} {proto} {}\r\n",
            self.local.port,
            pts.join(" ")
        );
        for c in &self.local.codecs {
            write_rtpmap(&mut media, c.default_pt(), *c);
        }
        if self.local.srtp != SrtpMode::Off {
            for suite in SrtpSuite::ALL {
                media.push_str(&crypto_line(suite.offer_tag(), suite, &self.local.srtp_key));
            }
        }
        for t in &te {
            let _ = write!(
                media,
                "a=rtpmap:{} telephone-event/{}\r\na=fmtp:{} 0-16\r\n",
                t.payload_type, t.clock_rate, t.payload_type
            );
        }
        let _ = write!(media, "a=ptime:20\r\na={}\r\n", want.as_attr());
        self.finish(&media)
    }

    /// A re-offer inside an established session: the codec already in use and nothing else,
    /// so a direction change never renegotiates the codec (RFC 6337 §5.3).
    pub fn reoffer(&mut self, current: &Negotiated, want: Direction) -> String {
        let mut media = String::new();
        self.write_audio(&mut media, current, want);
        self.finish(&media)
    }

    /// Read the answer to an offer we made.
    pub fn accept_answer(
        &self,
        answer: &str,
        want: Direction,
    ) -> Result<Negotiated, NegotiationError> {
        let sd = parse(answer)?;
        let md = sd
            .media_descriptions
            .first()
            .ok_or(NegotiationError::NoAudio)?;
        if md.media_name.media != "audio" {
            return Err(NegotiationError::NoAudio);
        }
        if md.media_name.port.value == 0 {
            return Err(NegotiationError::Rejected);
        }
        let mut n = self.accept_offered(&sd, md, want, true)?;
        // In an answer the peer's direction already accounts for ours; ours is its mirror.
        n.direction = stream_direction(&sd, md).reversed().narrowed_by(want);
        Ok(n)
    }

    /// Pick codec, telephone-event, remote address and direction from one offered m-line.
    ///
    /// `ours`: `md` answers an offer we made (its `a=crypto` must echo one of ours).
    fn accept_offered(
        &self,
        sd: &SessionDescription,
        md: &MediaDescription,
        want: Direction,
        ours: bool,
    ) -> Result<Negotiated, NegotiationError> {
        let proto = md.media_name.protos.join("/");
        let savp = match proto.as_str() {
            "RTP/AVP" | "RTP/AVPF" => false,
            "RTP/SAVP" | "RTP/SAVPF" => true,
            _ => return Err(NegotiationError::Transport(proto)),
        };
        let srtp = self.negotiate_srtp(md, &proto, savp, ours)?;
        let mut codec: Option<Codec> = None;
        let mut events: Vec<TelephoneEvent> = Vec::new();
        for fmt in &md.media_name.formats {
            let Ok(pt) = fmt.parse::<u8>() else { continue };
            let name = match rtpmap(md, pt) {
                Some((enc, rate)) if enc.eq_ignore_ascii_case("telephone-event") => {
                    events.push(TelephoneEvent {
                        payload_type: pt,
                        clock_rate: rate,
                    });
                    continue;
                }
                Some((enc, rate)) => self
                    .local
                    .codecs
                    .iter()
                    .copied()
                    .find(|c| c.encoding().eq_ignore_ascii_case(enc) && c.clock_rate() == rate),
                // Static payload types need no rtpmap (RFC 3551 table 4).
                None => match pt {
                    0 => Some(CodecName::Pcmu),
                    8 => Some(CodecName::Pcma),
                    9 => Some(CodecName::G722),
                    _ => None,
                }
                .filter(|n| self.local.codecs.contains(n)),
            };
            // The offerer's order is its preference (RFC 3264 §5.1): first usable wins.
            if let (None, Some(name)) = (codec, name) {
                codec = Some(Codec {
                    name,
                    payload_type: pt,
                });
            }
        }
        let Some(codec) = codec else {
            return Err(NegotiationError::NoCommonCodec(
                md.media_name.formats.join(" "),
            ));
        };
        let name = codec.name;
        let telephone_event = events
            .iter()
            .copied()
            .find(|t| t.clock_rate == name.clock_rate())
            .or_else(|| events.iter().copied().find(|t| t.clock_rate == 8000));

        let addr = md
            .connection_information
            .as_ref()
            .or(sd.connection_information.as_ref())
            .and_then(|c| c.address.as_ref())
            .and_then(|a| a.address.split('/').next()?.parse::<IpAddr>().ok());
        let offered = stream_direction(sd, md);
        // c=0.0.0.0 is RFC 2543 hold: "do not send to me", i.e. the peer is send-only.
        let (remote, offered) = match addr {
            Some(ip) if !ip.is_unspecified() => {
                let to = SocketAddr::new(ip, port_of(md));
                if !unicast(ip) || to.port() < 1024 {
                    return Err(NegotiationError::Address(to.to_string()));
                }
                (Some(to), offered)
            }
            _ => (None, offered.narrowed_by(Direction::SendOnly)),
        };
        Ok(Negotiated {
            remote,
            codec,
            telephone_event,
            direction: offered.reversed().narrowed_by(want),
            ptime_ms: md
                .attribute("ptime")
                .flatten()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(20),
            srtp,
        })
    }

    /// SDES (RFC 4568) for one m-line under `[media] srtp`: the first `a=crypto` we can use
    /// (in an answer to us, one echoing a tag we offered), or plain RTP where that is allowed.
    fn negotiate_srtp(
        &self,
        md: &MediaDescription,
        proto: &str,
        savp: bool,
        ours: bool,
    ) -> Result<Option<SrtpParams>, NegotiationError> {
        let mode = self.local.srtp;
        if mode == SrtpMode::Off {
            return if savp {
                Err(NegotiationError::Transport(proto.to_string()))
            } else {
                Ok(None)
            };
        }
        let mut why: Option<String> = None;
        let mut chosen = None;
        for value in md
            .attributes
            .iter()
            .filter(|a| a.key == "crypto")
            .filter_map(|a| a.value.as_deref())
        {
            match parse_crypto(value) {
                Ok(c) if ours && c.tag != c.suite.offer_tag() => {
                    why.get_or_insert(format!(
                        "the answer's a=crypto tag {} with {} is not one we offered",
                        c.tag, c.suite
                    ));
                }
                Ok(c) => {
                    chosen = Some(c);
                    break;
                }
                Err(e) => {
                    why.get_or_insert(e.to_string());
                }
            }
        }
        match chosen {
            Some(c) => Ok(Some(SrtpParams {
                suite: c.suite,
                tag: c.tag,
                local: self.local.srtp_key,
                remote: c.key,
                savp,
            })),
            None if savp => {
                Err(NegotiationError::Crypto(why.unwrap_or_else(|| {
                    format!("{proto} without an a=crypto line")
                })))
            }
            None if mode == SrtpMode::Required => match why {
                Some(why) => Err(NegotiationError::Crypto(why)),
                None => Err(NegotiationError::Transport(format!(
                    "{proto} (plain RTP, and [media] srtp is required)"
                ))),
            },
            // Best-effort SRTP we cannot use is plain RTP, as RFC 4568 §7.1.1's
            // answerer that ignores the attribute would do.
            None => Ok(None),
        }
    }

    fn write_audio(&self, media: &mut String, n: &Negotiated, direction: Direction) {
        let mut pts = n.codec.payload_type.to_string();
        if let Some(t) = n.telephone_event {
            let _ = write!(pts, " {}", t.payload_type);
        }
        let proto = match n.srtp {
            Some(p) if p.savp => "RTP/SAVP",
            _ => "RTP/AVP",
        };
        let _ = write!(media, "m=audio {} {proto} {}\r\n", self.local.port, pts);
        write_rtpmap(media, n.codec.payload_type, n.codec.name);
        if let Some(p) = n.srtp {
            media.push_str(&crypto_line(p.tag, p.suite, &p.local));
        }
        if let Some(t) = n.telephone_event {
            let _ = write!(
                media,
                "a=rtpmap:{} telephone-event/{}\r\na=fmtp:{} 0-16\r\n",
                t.payload_type, t.clock_rate, t.payload_type
            );
        }
        let _ = write!(
            media,
            "a=ptime:{}\r\na={}\r\n",
            n.ptime_ms,
            direction.as_attr()
        );
    }

    fn local_telephone_events(&self) -> Vec<TelephoneEvent> {
        let mut out = vec![TelephoneEvent {
            payload_type: 101,
            clock_rate: 8000,
        }];
        if self.local.codecs.contains(&CodecName::Opus) {
            out.push(TelephoneEvent {
                payload_type: 102,
                clock_rate: 48000,
            });
        }
        out
    }

    /// Wrap media sections in the session header, bumping the version only on change.
    fn finish(&mut self, media: &str) -> String {
        let ip = self.local.addr;
        let fam = if ip.is_ipv6() { "IP6" } else { "IP4" };
        let tail = format!("s=warmline\r\nc=IN {fam} {ip}\r\nt=0 0\r\n{media}");
        if self.last_sent.as_deref() != Some(tail.as_str()) {
            if self.last_sent.is_some() {
                self.version += 1;
            }
            self.last_sent = Some(tail.clone());
        }
        format!(
            "v=0\r\no=warmline {} {} IN {fam} {ip}\r\n{tail}",
            self.session_id, self.version
        )
    }
}

fn write_rtpmap(media: &mut String, pt: u8, c: CodecName) {
    if c.channels() > 1 {
        let _ = write!(
            media,
            "a=rtpmap:{pt} {}/{}/{}\r\n",
            c.encoding(),
            c.clock_rate(),
            c.channels()
        );
    } else {
        let _ = write!(
            media,
            "a=rtpmap:{pt} {}/{}\r\n",
            c.encoding(),
            c.clock_rate()
        );
    }
    if c == CodecName::Opus {
        let _ = write!(media, "a=fmtp:{pt} minptime=10;useinbandfec=1\r\n");
    }
}

fn parse(text: &str) -> Result<SessionDescription, NegotiationError> {
    // The sdp crate wants CRLF or LF lines and a trailing newline; SIP bodies sometimes lack it.
    let mut owned;
    let text = if text.ends_with('\n') {
        text
    } else {
        owned = text.to_string();
        owned.push_str("\r\n");
        &owned
    };
    SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .map_err(|e| NegotiationError::Malformed(e.to_string()))
}

/// An address one phone listens on: not multicast, not the IPv4 broadcast address.
/// (A subnet's directed broadcast is not knowable here; routers drop it by default.)
fn unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_multicast(),
    }
}

fn port_of(md: &MediaDescription) -> u16 {
    u16::try_from(md.media_name.port.value).unwrap_or(0)
}

/// `encoding/rate` from `a=rtpmap:<pt>`.
fn rtpmap(md: &MediaDescription, pt: u8) -> Option<(&str, u32)> {
    md.attributes.iter().find_map(|a| {
        if a.key != "rtpmap" {
            return None;
        }
        let value = a.value.as_deref()?;
        let (p, rest) = value.split_once(' ')?;
        if p.trim().parse::<u8>().ok()? != pt {
            return None;
        }
        let mut parts = rest.trim().split('/');
        let enc = parts.next()?;
        let rate = parts.next()?.parse().ok()?;
        Some((enc, rate))
    })
}

/// The direction attribute of a stream: media level wins over session level; default sendrecv.
fn stream_direction(sd: &SessionDescription, md: &MediaDescription) -> Direction {
    let find = |attrs: &[sdp::description::common::Attribute]| {
        attrs.iter().find_map(|a| match a.key.as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        })
    };
    find(&md.attributes)
        .or_else(|| find(&sd.attributes))
        .unwrap_or(Direction::SendRecv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(codecs: &[CodecName]) -> SdpSession {
        SdpSession::new(
            LocalMedia {
                addr: "192.0.2.10".parse().unwrap(),
                port: 20000,
                codecs: codecs.to_vec(),
                srtp: SrtpMode::Off,
                srtp_key: SrtpKey([7; 30]),
            },
            42,
        )
    }

    fn all() -> SdpSession {
        local(&[
            CodecName::Pcmu,
            CodecName::Pcma,
            CodecName::G722,
            CodecName::Opus,
        ])
    }

    const PBX_OFFER: &str = "v=0\r\no=pbx 1 1 IN IP4 198.51.100.5\r\ns=-\r\nc=IN IP4 198.51.100.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

    #[test]
    fn answer_keeps_offerer_preference_and_telephone_event() {
        let mut s = all();
        let (sdp, n) = s.answer(PBX_OFFER, Direction::SendRecv).unwrap();
        assert_eq!(
            n.codec,
            Codec {
                name: CodecName::Pcma,
                payload_type: 8
            }
        );
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 101,
                clock_rate: 8000
            })
        );
        assert_eq!(n.remote, Some("198.51.100.5:4000".parse().unwrap()));
        assert_eq!(n.direction, Direction::SendRecv);
        assert!(sdp.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{sdp}");
        assert!(sdp.contains("c=IN IP4 192.0.2.10\r\n"));
        assert!(sdp.contains("a=sendrecv\r\n"));
    }

    #[test]
    fn local_codec_list_filters_the_offer() {
        let mut s = local(&[CodecName::Pcmu]);
        let (_, n) = s.answer(PBX_OFFER, Direction::SendRecv).unwrap();
        assert_eq!(n.codec.name, CodecName::Pcmu);
    }

    #[test]
    fn static_payload_types_need_no_rtpmap() {
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
        let (_, n) = all().answer(offer, Direction::SendRecv).unwrap();
        assert_eq!(
            n.codec,
            Codec {
                name: CodecName::Pcmu,
                payload_type: 0
            }
        );
        assert_eq!(n.telephone_event, None);
    }

    /// A desk phone's wideband offer: static 9 with or without its rtpmap, whose clock reads
    /// 8000 (RFC 3551's quirk) although the audio is 16 kHz; our answer says the same.
    #[test]
    fn g722_is_static_nine_at_an_8000_clock() {
        for m in [
            "m=audio 6000 RTP/AVP 9 0\r\n",
            "m=audio 6000 RTP/AVP 9 0\r\na=rtpmap:9 G722/8000\r\n",
        ] {
            let offer = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{m}"
            );
            let (sdp, n) = all().answer(&offer, Direction::SendRecv).unwrap();
            assert_eq!(
                n.codec,
                Codec {
                    name: CodecName::G722,
                    payload_type: 9
                }
            );
            assert!(sdp.contains("m=audio 20000 RTP/AVP 9\r\n"), "{sdp}");
            assert!(sdp.contains("a=rtpmap:9 G722/8000\r\n"), "{sdp}");
        }
        // A gateway configured without it falls back to the next offered codec.
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 9 0\r\n";
        let (_, n) = local(&[CodecName::Pcmu])
            .answer(offer, Direction::SendRecv)
            .unwrap();
        assert_eq!(n.codec.name, CodecName::Pcmu);
    }

    #[test]
    fn dynamic_opus_keeps_the_offerers_payload_type() {
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 96 97 0\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:97 telephone-event/48000\r\n";
        let (sdp, n) = all().answer(offer, Direction::SendRecv).unwrap();
        assert_eq!(
            n.codec,
            Codec {
                name: CodecName::Opus,
                payload_type: 96
            }
        );
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 97,
                clock_rate: 48000
            })
        );
        assert!(sdp.contains("a=rtpmap:96 opus/48000/2\r\n"), "{sdp}");
    }

    #[test]
    fn nothing_in_common_is_incompatible_media_format() {
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        let err = all().answer(offer, Direction::SendRecv).unwrap_err();
        assert_eq!(err, NegotiationError::NoCommonCodec("18".into()));
        assert_eq!(err.warn_code(), 305);
    }

    #[test]
    fn srtp_only_offer_is_a_transport_mismatch() {
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/SAVP 0\r\n";
        let err = all().answer(offer, Direction::SendRecv).unwrap_err();
        assert_eq!(err.warn_code(), 302);
    }

    fn with_srtp(mode: SrtpMode) -> SdpSession {
        let mut s = all();
        s.local.srtp = mode;
        s
    }

    const THEIR_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn crypto_offer(proto: &str, crypto: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 {proto} 0\r\n{crypto}"
        )
    }

    #[test]
    fn an_savp_offer_gets_srtp_with_our_key_under_its_tag() {
        for mode in [SrtpMode::Optional, SrtpMode::Required] {
            let offer = crypto_offer(
                "RTP/SAVP",
                &format!(
                    "a=crypto:5 F8_128_HMAC_SHA1_80 inline:{THEIR_KEY}\r\na=crypto:9 AES_CM_128_HMAC_SHA1_32 inline:{THEIR_KEY}|2^31\r\n"
                ),
            );
            let (sdp, n) = with_srtp(mode).answer(&offer, Direction::SendRecv).unwrap();
            let p = n.srtp.expect("SRTP negotiated");
            assert_eq!(
                (p.suite, p.tag, p.savp),
                (SrtpSuite::AesCm128HmacSha1_32, 9, true)
            );
            assert_eq!(p.local, SrtpKey([7; 30]));
            assert_eq!(p.remote.0[..4], [0x59, 0x53, 0x5f, 0x5f]);
            assert!(sdp.contains("m=audio 20000 RTP/SAVP 0\r\n"), "{sdp}");
            let ours = format!(
                "a=crypto:9 AES_CM_128_HMAC_SHA1_32 inline:{}\r\n",
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH"
            );
            assert!(sdp.contains(&ours), "{sdp}");
            assert_eq!(sdp.matches("a=crypto").count(), 1);
        }
    }

    #[test]
    fn best_effort_crypto_on_rtp_avp_is_taken_when_srtp_is_allowed() {
        let offer = crypto_offer(
            "RTP/AVP",
            &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_KEY}\r\n"),
        );
        let (sdp, n) = with_srtp(SrtpMode::Optional)
            .answer(&offer, Direction::SendRecv)
            .unwrap();
        assert_eq!(
            n.srtp.map(|p| (p.suite, p.savp)),
            Some((SrtpSuite::AesCm128HmacSha1_80, false))
        );
        assert!(
            sdp.contains("m=audio 20000 RTP/AVP 0\r\n") && sdp.contains("a=crypto:1 "),
            "{sdp}"
        );
        // Off: the attribute is ignored, the answer is plain.
        let (sdp, n) = with_srtp(SrtpMode::Off)
            .answer(&offer, Direction::SendRecv)
            .unwrap();
        assert_eq!(n.srtp, None);
        assert!(!sdp.contains("a=crypto"), "{sdp}");
        // Unusable best-effort crypto under optional: plain RTP, not a refusal.
        let bad = crypto_offer(
            "RTP/AVP",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n",
        );
        let (_, n) = with_srtp(SrtpMode::Optional)
            .answer(&bad, Direction::SendRecv)
            .unwrap();
        assert_eq!(n.srtp, None);
    }

    #[test]
    fn unusable_or_missing_crypto_is_refused_with_the_reason() {
        let cases = [
            (
                SrtpMode::Optional,
                crypto_offer(
                    "RTP/SAVP",
                    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n",
                ),
                306,
                "key AAAA",
            ),
            (
                SrtpMode::Optional,
                crypto_offer("RTP/SAVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80\r\n"),
                306,
                "not <tag>",
            ),
            (
                SrtpMode::Optional,
                crypto_offer("RTP/SAVP", ""),
                306,
                "without an a=crypto",
            ),
            (
                SrtpMode::Required,
                crypto_offer("RTP/AVP", ""),
                302,
                "srtp is required",
            ),
            (
                SrtpMode::Off,
                crypto_offer(
                    "RTP/SAVP",
                    &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_KEY}\r\n"),
                ),
                302,
                "RTP/SAVP",
            ),
        ];
        for (mode, offer, code, why) in cases {
            let e = with_srtp(mode)
                .answer(&offer, Direction::SendRecv)
                .unwrap_err();
            assert_eq!(e.warn_code(), code, "{mode:?} {offer}");
            assert!(e.to_string().contains(why), "{mode:?}: {e}");
        }
    }

    #[test]
    fn our_srtp_offers_and_the_answers_to_them() {
        let answer = |proto: &str, crypto: &str| {
            format!(
                "v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 {proto} 0\r\n{crypto}"
            )
        };
        // Required: RTP/SAVP with both suites; a plain answer is refused.
        let mut s = with_srtp(SrtpMode::Required);
        let offer = s.initial_offer(Direction::SendRecv);
        assert!(
            offer.contains("m=audio 20000 RTP/SAVP 0 8 9 111 101 102\r\n"),
            "{offer}"
        );
        assert!(
            offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{offer}"
        );
        assert!(
            offer.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:"),
            "{offer}"
        );
        let e = s
            .accept_answer(&answer("RTP/AVP", ""), Direction::SendRecv)
            .unwrap_err();
        assert_eq!(e.warn_code(), 302);
        let e = s
            .accept_answer(&answer("RTP/SAVP", ""), Direction::SendRecv)
            .unwrap_err();
        assert_eq!(e.warn_code(), 306);
        // A tag we never offered is not ours.
        let wrong = answer(
            "RTP/SAVP",
            &format!("a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_KEY}\r\n"),
        );
        let e = s.accept_answer(&wrong, Direction::SendRecv).unwrap_err();
        assert!(e.to_string().contains("tag 7"), "{e}");
        let good = answer(
            "RTP/SAVP",
            &format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{THEIR_KEY}\r\n"),
        );
        let n = s.accept_answer(&good, Direction::SendRecv).unwrap();
        assert_eq!(
            n.srtp.map(|p| (p.suite, p.tag, p.savp)),
            Some((SrtpSuite::AesCm128HmacSha1_32, 2, true))
        );
        // A re-offer keeps the stream as it is: same profile, suite, tag and key.
        let re = s.reoffer(&n, Direction::SendOnly);
        assert!(
            re.contains("RTP/SAVP 0\r\n")
                && re.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:BwcH"),
            "{re}"
        );

        // Optional: RTP/AVP carrying crypto; a plain answer is plain RTP.
        let mut s = with_srtp(SrtpMode::Optional);
        let offer = s.initial_offer(Direction::SendRecv);
        assert!(
            offer.contains("m=audio 20000 RTP/AVP ") && offer.contains("a=crypto:1 "),
            "{offer}"
        );
        let n = s
            .accept_answer(&answer("RTP/AVP", ""), Direction::SendRecv)
            .unwrap();
        assert_eq!(n.srtp, None);
        assert!(!s.reoffer(&n, Direction::SendOnly).contains("a=crypto"));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            all().answer("hello", Direction::SendRecv),
            Err(NegotiationError::Malformed(_))
        ));
    }

    #[test]
    fn extra_streams_are_refused_in_place() {
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 7000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio 6000 RTP/AVP 0\r\nm=audio 6002 RTP/AVP 0\r\n";
        let (sdp, _) = all().answer(offer, Direction::SendRecv).unwrap();
        let m: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            [
                "m=video 0 RTP/AVP 96",
                "m=audio 20000 RTP/AVP 0",
                "m=audio 0 RTP/AVP 0"
            ]
        );
    }

    fn with_dir(dir: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na={dir}\r\n"
        )
    }

    #[test]
    fn hold_directions_follow_rfc_6337() {
        // (peer offers, we want) -> we answer
        let cases = [
            ("sendrecv", Direction::SendRecv, Direction::SendRecv),
            ("sendonly", Direction::SendRecv, Direction::RecvOnly),
            ("inactive", Direction::SendRecv, Direction::Inactive),
            ("recvonly", Direction::SendRecv, Direction::SendOnly),
            // we hold the peer (send hold audio, ignore theirs)
            ("sendrecv", Direction::SendOnly, Direction::SendOnly),
            ("sendonly", Direction::SendOnly, Direction::Inactive),
        ];
        for (offered, want, expect) in cases {
            let (sdp, n) = all().answer(&with_dir(offered), want).unwrap();
            assert_eq!(n.direction, expect, "offer {offered}, want {want:?}");
            assert!(sdp.contains(&format!("a={}\r\n", expect.as_attr())));
        }
    }

    #[test]
    fn media_aimed_at_no_one_phone_is_refused() {
        for (c, port) in [
            ("255.255.255.255", 6000),
            ("224.0.0.1", 6000),
            ("IP6 ff02::1", 6000),
            ("127.0.0.1", 1),
            ("127.0.0.1", 1023),
        ] {
            let c = if c.starts_with("IP6") {
                c.to_string()
            } else {
                format!("IP4 {c}")
            };
            let offer = format!(
                "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN {c}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
            );
            let e = all().answer(&offer, Direction::SendRecv).unwrap_err();
            assert!(matches!(e, NegotiationError::Address(_)), "{c}:{port}: {e}");
            assert_eq!(e.warn_code(), 301);
        }
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 1024 RTP/AVP 0\r\n";
        assert!(all().answer(offer, Direction::SendRecv).is_ok());
    }

    #[test]
    fn old_style_hold_address_means_send_only_peer() {
        let offer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
        let (_, n) = all().answer(offer, Direction::SendRecv).unwrap();
        assert_eq!(n.remote, None);
        assert_eq!(n.direction, Direction::RecvOnly);
    }

    #[test]
    fn version_moves_only_when_the_sdp_changes() {
        let mut s = all();
        let (a1, n) = s.answer(PBX_OFFER, Direction::SendRecv).unwrap();
        let (a2, _) = s.answer(PBX_OFFER, Direction::SendRecv).unwrap();
        assert_eq!(a1, a2);
        let hold = s.reoffer(&n, Direction::SendOnly);
        assert!(hold.contains("o=warmline 42 43 "), "{hold}");
        assert!(hold.contains("m=audio 20000 RTP/AVP 8 101\r\n"));
        assert!(hold.contains("a=sendonly\r\n"));
        let again = s.reoffer(&n, Direction::SendOnly);
        assert!(again.contains("o=warmline 42 43 "));
        let resume = s.reoffer(&n, Direction::SendRecv);
        assert!(resume.contains("o=warmline 42 44 "));
    }

    #[test]
    fn our_offer_and_their_answer() {
        let mut s = all();
        let offer = s.initial_offer(Direction::SendRecv);
        assert!(
            offer.contains("m=audio 20000 RTP/AVP 0 8 9 111 101 102\r\n"),
            "{offer}"
        );
        let answer = "v=0\r\no=uas 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let n = s.accept_answer(answer, Direction::SendRecv).unwrap();
        assert_eq!(n.codec.name, CodecName::Pcma);
        assert_eq!(n.remote, Some("127.0.0.1:7000".parse().unwrap()));
        let held = "v=0\r\no=uas 5 6 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\na=recvonly\r\n";
        assert_eq!(
            s.accept_answer(held, Direction::SendOnly)
                .unwrap()
                .direction,
            Direction::SendOnly
        );
        let refused = "v=0\r\no=uas 5 6 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 8\r\n";
        assert_eq!(
            s.accept_answer(refused, Direction::SendRecv),
            Err(NegotiationError::Rejected)
        );
    }
}
