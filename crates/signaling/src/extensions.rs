//! SIP extensions by option tag (RFC 3261 §19.2): the ones warmline supports, and the tags a
//! request's `Require` names that it does not, which get `420 Bad Extension` with an
//! `Unsupported` header (§8.2.2.3) rather than a call that ignores what it was asked to do.

/// What `Supported` says and `Require` may name: session timers (RFC 4028) and reliable
/// provisional responses (RFC 3262).
pub const SUPPORTED: &[&str] = &["timer", "100rel"];

/// The `Require` option tags among `headers` (`(name, value)` pairs, any case) that warmline
/// does not support, in the order named; empty when it can take the request.
pub fn unsupported<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in required(headers) {
        if !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag))
            && !out.iter().any(|o| o.eq_ignore_ascii_case(tag))
        {
            out.push(tag.to_string());
        }
    }
    out
}

/// Whether the request's `Require` names `tag`.
pub fn requires<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>, tag: &str) -> bool {
    required(headers).any(|t| t.eq_ignore_ascii_case(tag))
}

fn required<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> impl Iterator<Item = &'a str> {
    headers
        .into_iter()
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("Require"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_what_we_do_not_support() {
        let h = [
            ("Require", "timer, 100rel"),
            ("require", "replaces,FOO"),
            ("Require", " foo "),
            ("Supported", "path"),
        ];
        assert_eq!(unsupported(h), ["replaces", "FOO"]);
        assert!(unsupported([("Require", "Timer")]).is_empty());
        assert!(unsupported([("Proxy-Require", "sec-agree")]).is_empty());
        assert!(requires(h, "100REL"));
        assert!(!requires([("Supported", "100rel")], "100rel"));
    }
}
