//! SDES key exchange for SRTP (RFC 4568): the `a=crypto` attribute, the two suites we speak
//! (AES_CM_128_HMAC_SHA1_80 and _32, RFC 4568 §6.2), and the policy (`[media] srtp`) that
//! decides which offers we take and what we offer.
//!
//! Keys are made by the driver (randomness is I/O) and only carried here. They never appear
//! in `Debug` output, logs or anything serialised.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::{Deserialize, Serialize};

/// Whether a leg's media is encrypted: `[media] srtp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    /// Plain RTP only: an `RTP/SAVP` offer is refused (488, Warning 302) and `a=crypto` in an
    /// `RTP/AVP` offer is ignored.
    Off,
    /// Encrypt when the peer can: `RTP/SAVP` offers and `RTP/AVP` offers carrying `a=crypto`
    /// (best-effort SRTP, as softphones' "optional" setting sends) get SRTP, plain offers
    /// plain RTP. Our offers are `RTP/AVP` with `a=crypto`.
    #[default]
    Optional,
    /// Encrypted or nothing: a plain offer or answer is refused; our offers are `RTP/SAVP`.
    Required,
}

/// An SRTP crypto suite (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SrtpSuite {
    #[serde(rename = "AES_CM_128_HMAC_SHA1_80")]
    AesCm128HmacSha1_80,
    #[serde(rename = "AES_CM_128_HMAC_SHA1_32")]
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    /// In our preference order: the 80-bit tag first, as RFC 4568 §6.2 recommends.
    pub const ALL: [SrtpSuite; 2] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn from_name(s: &str) -> Option<SrtpSuite> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The tag our offers give this suite.
    pub(crate) fn offer_tag(self) -> u32 {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 1,
            SrtpSuite::AesCm128HmacSha1_32 => 2,
        }
    }
}

impl std::fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An SRTP master key (16 bytes) followed by its master salt (14): the `inline:` key of
/// both our suites.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SrtpKey(pub [u8; 30]);

impl SrtpKey {
    pub fn master_key(&self) -> &[u8] {
        &self.0[..16]
    }

    pub fn master_salt(&self) -> &[u8] {
        &self.0[16..]
    }
}

impl std::fmt::Debug for SrtpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpKey(redacted)")
    }
}

/// What one negotiated SRTP stream needs: the suite, the key we send with, the key the peer
/// sends with, and whether the m-line said `RTP/SAVP` (else best-effort over `RTP/AVP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpParams {
    pub suite: SrtpSuite,
    /// The `a=crypto` tag the answer echoed.
    pub tag: u32,
    pub local: SrtpKey,
    pub remote: SrtpKey,
    pub savp: bool,
}

/// One `a=crypto` value we can use: tag, suite and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: SrtpSuite,
    pub key: SrtpKey,
}

/// Why an `a=crypto` value is unusable; the text is what the log and the 488 say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("a=crypto:{0}: not <tag> <suite> <key-params>")]
    Syntax(String),
    #[error("a=crypto tag {0} is not a number below 10^9")]
    Tag(String),
    #[error("crypto suite {0} is not one we speak (AES_CM_128_HMAC_SHA1_80, _32)")]
    Suite(String),
    #[error("a=crypto key {0}: not inline:<base64 of 30 bytes>")]
    Key(String),
    #[error("a=crypto with an MKI, several keys or session parameters ({0}) is not supported")]
    Unsupported(String),
}

/// Parse one `a=crypto` value (`1 AES_CM_128_HMAC_SHA1_80 inline:<key>[|lifetime]`).
pub fn parse_crypto(value: &str) -> Result<Crypto, CryptoError> {
    let mut parts = value.split_ascii_whitespace();
    let (Some(tag), Some(suite), Some(params)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CryptoError::Syntax(value.to_string()));
    };
    if let Some(extra) = parts.next() {
        return Err(CryptoError::Unsupported(extra.to_string()));
    }
    let tag = tag
        .parse::<u32>()
        .ok()
        .filter(|t| *t < 1_000_000_000)
        .ok_or_else(|| CryptoError::Tag(tag.to_string()))?;
    let suite = SrtpSuite::from_name(suite).ok_or_else(|| CryptoError::Suite(suite.to_string()))?;
    // One key only: several `;`-separated key-params need MKIs to tell them apart.
    if params.contains(';') {
        return Err(CryptoError::Unsupported(params.to_string()));
    }
    let inline = params
        .strip_prefix("inline:")
        .ok_or_else(|| CryptoError::Key(params.to_string()))?;
    let mut fields = inline.split('|');
    let b64 = fields.next().unwrap_or_default();
    for f in fields {
        // A lifetime (`2^31` or a number) is fine: we never send that many packets on one
        // key. An MKI (`1:4`) is not something we do.
        if f.contains(':') {
            return Err(CryptoError::Unsupported(f.to_string()));
        }
    }
    let bytes = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .map_err(|_| CryptoError::Key(b64.to_string()))?;
    let key: [u8; 30] = bytes
        .try_into()
        .map_err(|_| CryptoError::Key(b64.to_string()))?;
    Ok(Crypto {
        tag,
        suite,
        key: SrtpKey(key),
    })
}

/// The `a=crypto` line for `crypto`.
pub fn crypto_line(tag: u32, suite: SrtpSuite, key: &SrtpKey) -> String {
    format!(
        "a=crypto:{tag} {} inline:{}\r\n",
        suite.name(),
        STANDARD.encode(key.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn rfc_4568_example_parses() {
        let c = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20")).unwrap();
        assert_eq!(c.tag, 1);
        assert_eq!(c.suite, SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(
            crypto_line(1, c.suite, &c.key),
            format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n")
        );
        let c = parse_crypto(&format!("7 AES_CM_128_HMAC_SHA1_32 inline:{KEY}")).unwrap();
        assert_eq!((c.tag, c.suite), (7, SrtpSuite::AesCm128HmacSha1_32));
    }

    #[test]
    fn what_we_cannot_use_says_why() {
        let cases = [
            ("1 AES_CM_128_HMAC_SHA1_80", "not <tag>"),
            ("x AES_CM_128_HMAC_SHA1_80 inline:AAAA", "tag x"),
            (
                &format!("1 F8_128_HMAC_SHA1_80 inline:{KEY}"),
                "F8_128_HMAC_SHA1_80 is not",
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "key AAAA"),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!not-base64!!",
                "key !!not",
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 key:abc", "key key:abc"),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"),
                "MKI",
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP"),
                "session parameters",
            ),
        ];
        for (value, want) in cases {
            let e = parse_crypto(value).unwrap_err().to_string();
            assert!(e.contains(want), "{value}: {e}");
        }
    }

    #[test]
    fn keys_stay_out_of_debug_output() {
        let c = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")).unwrap();
        let shown = format!("{c:?}");
        assert!(
            shown.contains("redacted") && !shown.contains('['),
            "{shown}"
        );
    }
}
