//! Triage of inbound SIP datagrams before the stack's parser sees them.
//!
//! rsipstack drops a datagram it cannot parse, or whose transaction key it cannot build,
//! without a word. A PBX that sent it then retransmits for 32 s and gives up. RFC 3261 §8.2 and
//! §16.3 want a `400 Bad Request` (or `505` for a wrong version) whenever a response can still be
//! routed, so this module checks the structure a transaction needs — request line, `Via` with a
//! branch, `From` with a tag, `To`, `Call-ID`, a `CSeq` that matches the method, a sane
//! `Content-Length` — and builds that response itself. It is one linear scan over the header
//! block, cheap enough for every packet (see `benches/signaling.rs`).

/// What to do with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triage {
    /// Structurally fine (or a keep-alive): hand it to the stack.
    Pass,
    /// Malformed request we can still answer: send these bytes back to the source.
    Reply { response: Vec<u8>, why: String },
    /// Malformed and unanswerable (a response, an ACK, no `Via`): drop and count.
    Drop { why: String },
}

/// Compact header forms (RFC 3261 §7.3.3) mapped to their long names.
fn canonical(name: &str) -> Option<&'static str> {
    const NAMES: [(&str, &str, &str); 7] = [
        ("via", "v", "Via"),
        ("contact", "m", "Contact"),
        ("from", "f", "From"),
        ("to", "t", "To"),
        ("call-id", "i", "Call-ID"),
        ("cseq", "", "CSeq"),
        ("content-length", "l", "Content-Length"),
    ];
    NAMES.iter().find_map(|(long, short, canon)| {
        (name.eq_ignore_ascii_case(long) || (!short.is_empty() && name.eq_ignore_ascii_case(short)))
            .then_some(*canon)
    })
}

#[derive(Default)]
struct Seen<'a> {
    vias: Vec<&'a str>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    call_id: Option<&'a str>,
    cseq: Option<&'a str>,
    content_length: Option<&'a str>,
    contact: Option<&'a str>,
}

/// Check one datagram. Never panics, whatever the bytes.
pub fn triage(datagram: &[u8]) -> Triage {
    if datagram.iter().all(u8::is_ascii_whitespace) {
        return Triage::Pass; // RFC 5626 keep-alive
    }
    let (head, body_len) = match find_blank_line(datagram) {
        Some((end, body_start)) => (&datagram[..end], datagram.len() - body_start),
        None => (datagram, 0),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return Triage::Drop {
            why: "header block is not UTF-8".into(),
        };
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().unwrap_or_default();
    if start.starts_with("SIP/") {
        // Responses are never answered; let the stack judge them.
        return Triage::Pass;
    }

    // Collect the headers we need, unfolding continuation lines into their header.
    let mut seen = Seen::default();
    let mut last: Option<&'static str> = None;
    let mut header_error: Option<String> = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            continue; // folded continuation; the first line is enough for our checks
        }
        // Control characters are not SIP (RFC 3261 §25.1: TEXT-UTF8 and quoted strings
        // exclude CTLs): refused here, they never reach the stack or a log line.
        if has_control(line) {
            header_error.get_or_insert_with(|| "Control character in a header".into());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            header_error.get_or_insert_with(|| {
                format!(
                    "header line without colon: {:?}",
                    line.chars().take(40).collect::<String>()
                )
            });
            last = None;
            continue;
        };
        let value = value.trim();
        last = canonical(name.trim());
        match last {
            Some("Via") => seen.vias.extend(value.split(',').map(str::trim)),
            Some("From") => seen.from = Some(value),
            Some("To") => seen.to = Some(value),
            Some("Call-ID") => seen.call_id = Some(value),
            Some("CSeq") => seen.cseq = Some(value),
            Some("Content-Length") => seen.content_length = Some(value),
            Some("Contact") => seen.contact = Some(value),
            _ => {}
        }
    }
    let _ = last;

    let mut parts = start.split(' ');
    let (method, uri, version) = (parts.next(), parts.next(), parts.next());
    let method = method.unwrap_or_default();
    let problem = match (uri, version, parts.next()) {
        _ if method.is_empty() || !method.bytes().all(is_token_char) => {
            Some((400, "Bad Request-Line".to_string()))
        }
        (Some(uri), Some(version), None) => {
            if !version.eq_ignore_ascii_case("SIP/2.0") {
                Some((505, "Version Not Supported".to_string()))
            } else if !(uri.starts_with("sip:")
                || uri.starts_with("sips:")
                || uri.starts_with("tel:"))
            {
                Some((416, "Unsupported URI Scheme".to_string()))
            } else {
                None
            }
        }
        _ => Some((400, "Bad Request-Line".to_string())),
    };
    let problem = problem.or_else(|| {
        header_error
            .map(|e| (400, e))
            .or_else(|| check_headers(method, &seen, body_len).map(|e| (400, e)))
    });
    let Some((status, why)) = problem else {
        return Triage::Pass;
    };

    if method.eq_ignore_ascii_case("ACK") {
        return Triage::Drop { why }; // an ACK is never answered (RFC 3261 §17.2.3)
    }
    if seen.vias.is_empty() {
        return Triage::Drop {
            why: format!("{why}; no Via to answer"),
        };
    }
    Triage::Reply {
        response: build_response(status, &why, &seen),
        why,
    }
}

fn check_headers(method: &str, seen: &Seen<'_>, body_len: usize) -> Option<String> {
    let Some(top_via) = seen.vias.first() else {
        return Some("Missing Via".into());
    };
    if !top_via.to_ascii_lowercase().contains("branch=") {
        return Some("Via without branch".into());
    }
    let Some(from) = seen.from else {
        return Some("Missing From".into());
    };
    if !from.to_ascii_lowercase().contains("tag=") {
        return Some("From without tag".into());
    }
    if seen.to.is_none() {
        return Some("Missing To".into());
    }
    match seen.call_id {
        None => return Some("Missing Call-ID".into()),
        Some(id) if id.is_empty() || id.contains(char::is_whitespace) => {
            return Some("Bad Call-ID".into());
        }
        _ => {}
    }
    let Some(cseq) = seen.cseq else {
        return Some("Missing CSeq".into());
    };
    let mut it = cseq.split_whitespace();
    let seq_ok = it
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n < 1 << 31);
    let method_ok = it.next() == Some(method) && it.next().is_none();
    if !seq_ok || !method_ok {
        return Some("Bad CSeq".into());
    }
    // A dialog needs somewhere to send its in-dialog requests (RFC 3261 §8.1.1.8).
    if method.eq_ignore_ascii_case("INVITE") {
        match seen.contact {
            None => return Some("Missing Contact".into()),
            Some(c) if !contact_ok(c) => return Some("Bad Contact".into()),
            _ => {}
        }
    }
    if let Some(cl) = seen.content_length {
        match cl.parse::<usize>() {
            Ok(n) if n <= body_len => {}
            // RFC 3261 §18.3: a UDP message shorter than its Content-Length is answered 400.
            Ok(_) => return Some("Content-Length larger than body".into()),
            Err(_) => return Some("Bad Content-Length".into()),
        }
    }
    None
}

/// A Contact whose URI a dialog can use: `sip:`/`sips:`, and a port (if any) that is one.
fn contact_ok(value: &str) -> bool {
    let uri = match value.find('<') {
        Some(i) => value[i + 1..].split('>').next().unwrap_or_default(),
        None => value.split(';').next().unwrap_or_default(),
    }
    .trim();
    let Some(rest) = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
    else {
        return false;
    };
    let hostport = rest
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split([';', '?'])
        .next()
        .unwrap_or_default();
    let port = match hostport.rsplit_once(']') {
        // [v6]:port
        Some((_, tail)) => tail.strip_prefix(':'),
        None => hostport.split_once(':').map(|(_, p)| p),
    };
    !hostport.is_empty() && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// A control character other than tab (Unicode's Cc: C0, DEL and C1) in `line`. Scanned as
/// bytes, not decoded chars: every line of every datagram passes here. C1 characters are
/// U+0080..=U+009F, which UTF-8 writes as 0xC2 followed by 0x80..=0x9F; any other 0xC2 pair
/// or multi-byte sequence is printable.
fn has_control(line: &str) -> bool {
    let b = line.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        (c < 0x20 && c != b'\t')
            || c == 0x7f
            || (c == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })
}

/// A datagram that filled the receive buffer, so was probably cut: a request is answered
/// 513 Message Too Large (RFC 3261 §21.5.14: use TCP for it), anything else dropped.
pub fn triage_truncated(datagram: &[u8]) -> Triage {
    let why = format!("message of {} bytes or more over UDP", datagram.len());
    match answerable(datagram) {
        Some(seen) => Triage::Reply {
            response: respond(513, "Message Too Large", &seen, &[]),
            why,
        },
        None => Triage::Drop { why },
    }
}

/// A new INVITE (no To tag) in `datagram`, answered with `status` without a transaction:
/// what a gateway at capacity or draining sends a flood, so that no state is kept for it
/// (RFC 3261 §8.2.6 lets a UAS answer statelessly; a retransmission gets the same answer).
/// `None` when the datagram is not an initial INVITE that can be answered.
pub fn refuse_new_invite(
    datagram: &[u8],
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
) -> Option<Vec<u8>> {
    // An in-dialog re-INVITE carries the To tag: it belongs to a call we have.
    answer_outside_dialog(datagram, b"INVITE ", status, reason, headers)
}

/// An OPTIONS outside a dialog (no To tag) in `datagram`, answered with `status` and
/// `headers` without a transaction. A trunk's keepalive, a dispatcher's probe, or a flood
/// of them: each would otherwise keep a server transaction for 64 x T1 (RFC 3261 §17.2.2,
/// Timer J) for an answer that says the same thing every time. `None` when the datagram
/// is not such an OPTIONS.
pub fn answer_options(
    datagram: &[u8],
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
) -> Option<Vec<u8>> {
    answer_outside_dialog(datagram, b"OPTIONS ", status, reason, headers)
}

/// The response to a `method` request (its start line's first word and a space) that
/// carries no To tag, or `None` for anything else.
fn answer_outside_dialog(
    datagram: &[u8],
    method: &[u8],
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
) -> Option<Vec<u8>> {
    if !datagram.starts_with(method) {
        return None;
    }
    let seen = answerable(datagram)?;
    if seen
        .to
        .is_some_and(|to| to.to_ascii_lowercase().contains("tag="))
    {
        return None;
    }
    Some(respond(status, reason, &seen, headers))
}

/// A BYE in `datagram` for a Call-ID that `known` does not know, answered 481 without a
/// transaction (RFC 3261 §15.1.2): stray or forged BYEs, a flood of which would each keep
/// a server transaction for 64 x T1. `None` when the datagram is not such a BYE.
pub fn answer_unknown_bye(datagram: &[u8], known: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    if !datagram.starts_with(b"BYE ") {
        return None;
    }
    let seen = answerable(datagram)?;
    if known(seen.call_id?) {
        return None;
    }
    Some(respond(481, "Call/Transaction Does Not Exist", &seen, &[]))
}

/// The first word of a request's start line.
fn method_of(datagram: &[u8]) -> &[u8] {
    let end = datagram
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(datagram.len());
    &datagram[..end]
}

/// A request that is stray: answered without a transaction, as the stack would answer it
/// after keeping one for 64 x T1 (RFC 3261 §17.2.2, Timer J), or `None`.
///
/// - An in-dialog request (a To tag) other than ACK, CANCEL and BYE (see
///   [`answer_unknown_bye`]) whose Call-ID `known` does not know: 481 (§12.2.2).
/// - A request outside a dialog whose method is not INVITE, OPTIONS, BYE, ACK or CANCEL
///   (the only ones a gateway takes outside a dialog): 405 with `allow` (§8.2.1).
///
/// INVITE, OPTIONS, BYE and CANCEL are left to their own rules: a CANCEL's INVITE may be
/// setting up a call not registered yet.
pub fn answer_stray_request(
    datagram: &[u8],
    known: impl Fn(&str) -> bool,
    allow: &str,
) -> Option<Vec<u8>> {
    let method = method_of(datagram);
    if matches!(method, b"ACK" | b"CANCEL" | b"BYE" | b"OPTIONS" | b"") {
        return None;
    }
    let seen = answerable(datagram)?;
    let in_dialog = seen
        .to
        .is_some_and(|to| to.to_ascii_lowercase().contains("tag="));
    if in_dialog {
        if known(seen.call_id?) {
            return None;
        }
        return Some(respond(481, "Call/Transaction Does Not Exist", &seen, &[]));
    }
    if method == b"INVITE" {
        return None;
    }
    Some(respond(
        405,
        "Method Not Allowed",
        &seen,
        &[("Allow", allow.to_string())],
    ))
}

/// The headers a response to the request in `datagram` is built from, or `None` for a
/// response, an ACK (never answered), or a request without a Via.
fn answerable(datagram: &[u8]) -> Option<Seen<'_>> {
    let head = find_blank_line(datagram).map_or(datagram, |(end, _)| &datagram[..end]);
    // A cut datagram may end inside a character: what comes before it is read.
    let head = std::str::from_utf8(head)
        .or_else(|e| std::str::from_utf8(&head[..e.valid_up_to()]))
        .ok()?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().unwrap_or_default();
    if start.starts_with("SIP/") || start.split(' ').next().unwrap_or_default() == "ACK" {
        return None;
    }
    let mut seen = Seen::default();
    for line in lines {
        if has_control(line) {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match canonical(name.trim()) {
            Some("Via") => seen.vias.extend(value.split(',').map(str::trim)),
            Some("From") => seen.from = Some(value),
            Some("To") => seen.to = Some(value),
            Some("Call-ID") => seen.call_id = Some(value),
            Some("CSeq") => seen.cseq = Some(value),
            _ => {}
        }
    }
    (!seen.vias.is_empty()).then_some(seen)
}

/// [`build_response`] with `headers` added before the blank line.
fn respond(status: u16, reason: &str, seen: &Seen<'_>, headers: &[(&str, String)]) -> Vec<u8> {
    let mut r = build_response(status, reason, seen);
    if !headers.is_empty() {
        let end = r.len() - 2;
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        r.splice(end..end, extra.into_bytes());
    }
    r
}

fn build_response(status: u16, why: &str, seen: &Seen<'_>) -> Vec<u8> {
    let reason: String = why
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .collect();
    let mut r = format!("SIP/2.0 {status} {reason}\r\n");
    for via in &seen.vias {
        r.push_str("Via: ");
        r.push_str(via);
        r.push_str("\r\n");
    }
    if let Some(from) = seen.from {
        r.push_str(&format!("From: {from}\r\n"));
    }
    if let Some(to) = seen.to {
        if to.to_ascii_lowercase().contains("tag=") {
            r.push_str(&format!("To: {to}\r\n"));
        } else {
            r.push_str(&format!("To: {to};tag=wl-triage\r\n"));
        }
    }
    if let Some(id) = seen.call_id {
        r.push_str(&format!("Call-ID: {id}\r\n"));
    }
    if let Some(cseq) = seen.cseq {
        r.push_str(&format!("CSeq: {cseq}\r\n"));
    }
    // A refusal says why; a success has nothing to warn of.
    if status >= 300 {
        r.push_str(&format!("Warning: 399 warmline \"{reason}\"\r\n"));
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r.into_bytes()
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// End of the header block and start of the body (`CRLF CRLF`, or bare `LF LF`).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte scan agrees with `char::is_control` on every character that matters: all
    /// of the first 0x800 code points (one and two bytes of UTF-8) and a sample beyond.
    #[test]
    fn the_byte_scan_finds_exactly_the_control_characters() {
        let beyond = ['\u{2028}', '\u{feff}', '\u{fffd}', '\u{1f600}'];
        for c in (0u32..0x800).filter_map(char::from_u32).chain(beyond) {
            let line = format!("X-H: a{c}b");
            assert_eq!(
                has_control(&line),
                c.is_control() && c != '\t',
                "U+{:04X}",
                c as u32
            );
        }
    }

    const GOOD: &str = "INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: abc@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nContent-Length: 4\r\n\r\nv=0\n";

    fn reply_of(msg: &str) -> (String, String) {
        match triage(msg.as_bytes()) {
            Triage::Reply { response, why } => (String::from_utf8(response).unwrap(), why),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn an_invite_without_a_usable_contact_is_a_400_not_a_500() {
        let no_contact = GOOD.replace("Contact: <sip:a@127.0.0.1:5070>\r\n", "");
        assert_eq!(reply_of(&no_contact).1, "Missing Contact");
        for bad in [
            "<sip:a@127.0.0.1:4294967296>",
            "<http://example.com>",
            "<sip:a@127.0.0.1:0>",
            "garbage",
        ] {
            let msg = GOOD.replace("<sip:a@127.0.0.1:5070>", bad);
            assert_eq!(reply_of(&msg).1, "Bad Contact", "{bad}");
        }
        for good in [
            "sip:a@127.0.0.1",
            "\"Ada\" <sip:a@[::1]:5070;transport=tcp>;expires=60",
            "<sips:a@example.com>",
        ] {
            let msg = GOOD.replace("<sip:a@127.0.0.1:5070>", good);
            assert_eq!(triage(msg.as_bytes()), Triage::Pass, "{good}");
        }
    }

    #[test]
    fn control_characters_in_headers_are_refused_before_any_log_sees_them() {
        let msg = GOOD.replace("Max-Forwards: 70", "Subject: \u{1b}[2Jhi\u{0}");
        let (resp, why) = reply_of(&msg);
        assert_eq!(why, "Control character in a header");
        assert!(
            !resp.chars().any(|c| c == '\u{1b}' || c == '\u{0}'),
            "{resp}"
        );
    }

    #[test]
    fn a_new_invite_is_refused_statelessly_and_nothing_else_is() {
        let r = refuse_new_invite(
            GOOD.as_bytes(),
            503,
            "Service Unavailable",
            &[("Retry-After", "5".into())],
        )
        .unwrap();
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("SIP/2.0 503 Service Unavailable\r\n"), "{r}");
        assert!(r.contains("Call-ID: abc@127.0.0.1\r\n"));
        assert!(r.ends_with("Retry-After: 5\r\n\r\n"), "{r}");
        let in_dialog = GOOD.replace("To: <sip:bot@127.0.0.1>", "To: <sip:bot@127.0.0.1>;tag=9");
        assert!(refuse_new_invite(in_dialog.as_bytes(), 503, "x", &[]).is_none());
        let bye = GOOD.replacen("INVITE", "BYE", 1);
        assert!(refuse_new_invite(bye.as_bytes(), 503, "x", &[]).is_none());
    }

    #[test]
    fn an_options_outside_a_dialog_is_answered_statelessly_and_nothing_else_is() {
        let options = GOOD
            .replacen("INVITE sip", "OPTIONS sip", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 7 OPTIONS");
        let r = answer_options(options.as_bytes(), 200, "OK", &[("Allow", "INVITE".into())]);
        let r = String::from_utf8(r.unwrap()).unwrap();
        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
        assert!(r.contains("CSeq: 7 OPTIONS\r\n"), "{r}");
        assert!(r.contains("To: <sip:bot@127.0.0.1>;tag="), "{r}");
        assert!(r.ends_with("Allow: INVITE\r\n\r\n"), "{r}");
        assert!(!r.contains("Warning"), "{r}");
        let busy = answer_options(options.as_bytes(), 503, "Service Unavailable", &[]).unwrap();
        assert!(String::from_utf8(busy).unwrap().contains("Warning: 399"));
        let in_dialog = options.replace("To: <sip:bot@127.0.0.1>", "To: <sip:bot@127.0.0.1>;tag=9");
        assert!(answer_options(in_dialog.as_bytes(), 200, "OK", &[]).is_none());
        assert!(answer_options(GOOD.as_bytes(), 200, "OK", &[]).is_none());
    }

    #[test]
    fn a_bye_for_an_unknown_call_is_answered_481_statelessly() {
        let bye = GOOD
            .replacen("INVITE sip", "BYE sip", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 2 BYE")
            .replace("To: <sip:bot@127.0.0.1>", "To: <sip:bot@127.0.0.1>;tag=x");
        let r = answer_unknown_bye(bye.as_bytes(), |id| id == "other@127.0.0.1").unwrap();
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("SIP/2.0 481 "), "{r}");
        assert!(
            r.contains("CSeq: 2 BYE\r\n") && r.contains(";tag=x\r\n"),
            "{r}"
        );
        assert!(answer_unknown_bye(bye.as_bytes(), |id| id == "abc@127.0.0.1").is_none());
        assert!(answer_unknown_bye(GOOD.as_bytes(), |_| false).is_none());
        let no_call_id = bye.replace("Call-ID: abc@127.0.0.1\r\n", "");
        assert!(answer_unknown_bye(no_call_id.as_bytes(), |_| false).is_none());
    }

    #[test]
    fn stray_requests_are_answered_statelessly_and_dialogs_ours_are_not() {
        let allow = "INVITE, ACK, BYE";
        let in_dialog = |method: &str| {
            GOOD.replacen("INVITE sip", &format!("{method} sip"), 1)
                .replace("CSeq: 1 INVITE", &format!("CSeq: 2 {method}"))
                .replace("To: <sip:bot@127.0.0.1>", "To: <sip:bot@127.0.0.1>;tag=x")
        };
        // In a dialog nobody has: 481, re-INVITEs included.
        for method in ["INFO", "UPDATE", "NOTIFY", "INVITE", "REFER"] {
            let r = answer_stray_request(in_dialog(method).as_bytes(), |_| false, allow)
                .unwrap_or_else(|| panic!("{method}"));
            let r = String::from_utf8(r).unwrap();
            assert!(r.starts_with("SIP/2.0 481 "), "{method}: {r}");
            assert!(r.contains(&format!("CSeq: 2 {method}\r\n")), "{r}");
            // A live call's in-dialog requests go to the stack.
            assert!(
                answer_stray_request(
                    in_dialog(method).as_bytes(),
                    |id| id == "abc@127.0.0.1",
                    allow
                )
                .is_none()
            );
        }
        // Outside a dialog, a method we do not take: 405 with Allow.
        let register = GOOD
            .replacen("INVITE sip", "REGISTER sip", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 1 REGISTER");
        let r = answer_stray_request(register.as_bytes(), |_| false, allow).unwrap();
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("SIP/2.0 405 "), "{r}");
        assert!(r.contains("Allow: INVITE, ACK, BYE\r\n"), "{r}");
        // Left to their own rules: a new INVITE, OPTIONS, BYE, CANCEL, ACK, responses.
        assert!(answer_stray_request(GOOD.as_bytes(), |_| false, allow).is_none());
        for method in ["OPTIONS", "BYE", "CANCEL", "ACK"] {
            assert!(
                answer_stray_request(in_dialog(method).as_bytes(), |_| false, allow).is_none(),
                "{method}"
            );
        }
        let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\r\n";
        assert!(answer_stray_request(response.as_bytes(), |_| false, allow).is_none());
    }

    #[test]
    fn a_datagram_that_filled_the_buffer_gets_513() {
        let big = format!("{GOOD}{}", "a".repeat(9000));
        match triage_truncated(&big.as_bytes()[..8192]) {
            Triage::Reply { response, .. } => {
                let r = String::from_utf8(response).unwrap();
                assert!(r.starts_with("SIP/2.0 513 Message Too Large\r\n"), "{r}");
                assert!(r.contains("Call-ID: abc@127.0.0.1\r\n"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            triage_truncated(b"SIP/2.0 200 OK\r\n"),
            Triage::Drop { .. }
        ));
    }

    #[test]
    fn well_formed_request_passes() {
        assert_eq!(triage(GOOD.as_bytes()), Triage::Pass);
        assert_eq!(triage(b"\r\n\r\n"), Triage::Pass);
        assert_eq!(triage(b"SIP/2.0 200 OK\r\n\r\n"), Triage::Pass);
    }

    #[test]
    fn compact_forms_are_understood() {
        let msg = "OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-2\r\nf: <sip:a@x>;tag=9\r\nt: <sip:b@x>\r\ni: xyz\r\nCSeq: 7 OPTIONS\r\nl: 0\r\n\r\n";
        assert_eq!(triage(msg.as_bytes()), Triage::Pass);
    }

    #[test]
    fn bad_cseq_gets_400_with_dialog_headers_echoed() {
        let (resp, why) = reply_of(&GOOD.replace("CSeq: 1 INVITE", "CSeq: one INVITE"));
        assert_eq!(why, "Bad CSeq");
        assert!(resp.starts_with("SIP/2.0 400 Bad CSeq\r\n"), "{resp}");
        assert!(resp.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"));
        assert!(resp.contains("Call-ID: abc@127.0.0.1\r\n"));
        assert!(resp.contains("To: <sip:bot@127.0.0.1>;tag=wl-triage\r\n"));
        assert!(resp.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn cseq_method_must_match() {
        let (_, why) = reply_of(&GOOD.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"));
        assert_eq!(why, "Bad CSeq");
    }

    #[test]
    fn missing_headers_are_named() {
        for (cut, why) in [
            ("Call-ID: abc@127.0.0.1\r\n", "Missing Call-ID"),
            ("From: <sip:a@127.0.0.1>;tag=1\r\n", "Missing From"),
            ("To: <sip:bot@127.0.0.1>\r\n", "Missing To"),
            ("CSeq: 1 INVITE\r\n", "Missing CSeq"),
        ] {
            assert_eq!(reply_of(&GOOD.replace(cut, "")).1, why);
        }
    }

    #[test]
    fn wrong_version_is_505() {
        let (resp, _) = reply_of(&GOOD.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"));
        assert!(resp.starts_with("SIP/2.0 505 "));
    }

    #[test]
    fn short_body_is_400() {
        let (_, why) = reply_of(&GOOD.replace("Content-Length: 4", "Content-Length: 400"));
        assert_eq!(why, "Content-Length larger than body");
    }

    #[test]
    fn unanswerable_messages_are_dropped() {
        assert!(matches!(triage(b"\xff\xfe garbage"), Triage::Drop { .. }));
        let no_via = GOOD.replace("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n", "");
        assert!(matches!(triage(no_via.as_bytes()), Triage::Drop { .. }));
        let bad_ack = GOOD
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "x ACK");
        assert!(matches!(triage(bad_ack.as_bytes()), Triage::Drop { .. }));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..400 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x & 0xff) as u8
                })
                .collect();
            let _ = triage(&buf);
            let mut prefixed = GOOD.as_bytes()[..len.min(GOOD.len())].to_vec();
            prefixed.extend_from_slice(&buf);
            let _ = triage(&prefixed);
        }
    }
}
