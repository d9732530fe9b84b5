//! Configuration: the TOML contract operators and tests rely on, its embedded defaults, and
//! validation whose every error names the file, the line and the key.
//!
//! One module per section. A section is deserialised straight into the type the drivers
//! use (serde defaults, enums and unit conversions on the fields), then `validate` checks
//! what serde cannot and resolves relative paths; a new key is one field and its default.
//! `[assistant]`, `[[rules]]` and `[[routes]]` are read in their written shape and turned
//! into the core's types (`AssistantConfig`, `Rule`, `RoutePlan`) once, here.

mod assistant;
mod crm;
mod http;
mod log;
mod media;
mod outbound;
mod registrations;
mod route;
mod routes;
mod shutdown;
mod sip;
mod speech;
mod store;

pub use assistant::{AssistantSettings, BrainKind, BrainSettings, BriefingSettings};
pub use crm::CrmConfig;
pub use http::HttpConfig;
pub use log::LogConfig;
pub use media::MediaConfig;
pub use outbound::OutboundConfig;
pub use registrations::RegistrationConfig;
pub use route::RouteMode;
pub use shutdown::ShutdownConfig;
pub use sip::{Listen, SipConfig, SipTransport};
pub use speech::{OverCapacity, RecognizerChoice, SpeechConfig};
pub use store::StoreConfig;

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warmline_call::RoutePlan;

/// A configuration problem, located.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not tied to a line (e.g. unreadable file).
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The validated configuration the drivers run on.
#[derive(Debug, Clone)]
pub struct Config {
    pub sip: SipConfig,
    pub media: MediaConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub outbound: OutboundConfig,
    pub shutdown: ShutdownConfig,
    pub route: RouteMode,
    pub speech: SpeechConfig,
    /// `[[rules]]`: the escalation policy (empty = the built-in defaults).
    pub rules: Vec<warmline_policy::Rule>,
    pub assistant: AssistantSettings,
    /// `[[routes]]`: agent groups, with their business hours.
    pub routes: Vec<RoutePlan>,
    pub crm: CrmConfig,
    pub store: StoreConfig,
    /// `[[registrations]]`: trunks we register a Contact with.
    pub registrations: Vec<RegistrationConfig>,
}

/// The file as written: every table optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    sip: SipConfig,
    media: MediaConfig,
    http: HttpConfig,
    log: LogConfig,
    outbound: OutboundConfig,
    shutdown: ShutdownConfig,
    route: RouteMode,
    speech: SpeechConfig,
    /// Checked key by key against each rule's kind, then deserialised (see `rules`).
    rules: Vec<toml::Table>,
    assistant: assistant::RawAssistant,
    /// `None`: the embedded `default` route (one agent on this machine).
    routes: Option<Vec<routes::Entry>>,
    crm: CrmConfig,
    store: StoreConfig,
    registrations: Vec<registrations::RawRegistration>,
}

/// Where the text came from, to locate problems and resolve relative paths.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    /// A problem with `table.key`, at its line.
    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            line: locate(self.text, key),
            key: key.to_string(),
            message,
        }
    }

    /// A problem with `key` in the `index`-th `[[array]]` entry.
    fn entry_err(&self, array: &str, index: usize, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            line: locate_entry(self.text, array, index, key),
            key: format!(
                "{array}[{index}]{}{key}",
                if key.is_empty() { "" } else { "." }
            ),
            message,
        }
    }

    /// Relative paths in a config file are relative to the file, so a config works from
    /// any working directory.
    fn resolve(&self, file: &Path) -> PathBuf {
        if file.is_absolute() {
            return file.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) if self.path.exists() => dir.join(file),
            _ => file.to_path_buf(),
        }
    }

    fn http_url(&self, key: &str, url: &str) -> Result<(), ConfigError> {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(())
        } else {
            Err(self.err(key, format!("`{url}` is not an http(s) URL")))
        }
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })
}

// ---- units on the wire: the key names the unit, the field holds a Duration ----

fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// Seconds, 0 meaning never.
fn secs_or_never<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = u64::deserialize(d)?;
    Ok((s > 0).then(|| Duration::from_secs(s)))
}

impl Config {
    /// The embedded defaults: what `warmline run` uses when no config file exists.
    pub fn embedded_default() -> Self {
        Self::from_raw(Raw::default(), Path::new("<embedded defaults>"), "")
            .unwrap_or_else(|e| unreachable!("embedded defaults are valid: {e}"))
    }

    /// The file parsed, without looking at this machine (the shipped configs are checked
    /// this way in tests; `run` and `check-config` use [`Config::load_for_host`]).
    #[cfg(test)]
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read(path)?;
        Self::parse(&text, path)
    }

    /// [`Config::load`], and what the file names must exist on this machine (the store's
    /// directory): what `run` and `check-config` use.
    pub fn load_for_host(path: &Path) -> Result<Self, ConfigError> {
        let text = read(path)?;
        let cfg = Self::parse(&text, path)?;
        cfg.check_host(path, &text)?;
        Ok(cfg)
    }

    /// The embedded defaults, checked on this machine.
    pub fn embedded_for_host() -> Result<Self, ConfigError> {
        let cfg = Self::embedded_default();
        cfg.check_host(Path::new("<embedded defaults>"), "")?;
        Ok(cfg)
    }

    fn check_host(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        self.store.check_host(&Ctx { path, text })
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: e.span().map_or(0, |s| line_of(text, s.start)),
            key: String::new(),
            message: e.message().to_string(),
        })?;
        let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|s| line_of(text, s.start))
                .filter(|l| *l > 0)
                .unwrap_or_else(|| locate(text, &key));
            ConfigError {
                file: path.to_path_buf(),
                line,
                key: if key == "." { String::new() } else { key },
                message: inner.message().to_string(),
            }
        })?;
        Self::from_raw(raw, path, text)
    }

    fn from_raw(raw: Raw, path: &Path, text: &str) -> Result<Self, ConfigError> {
        let cx = Ctx { path, text };
        let Raw {
            mut sip,
            mut media,
            mut http,
            log,
            outbound,
            shutdown,
            route,
            mut speech,
            rules,
            assistant,
            routes,
            mut crm,
            mut store,
            registrations,
        } = raw;
        sip.validate(&cx)?;
        media.validate(&cx)?;
        let (lo, hi) = media.rtp_port_range;
        let pairs = crate::rtp_ports::pairs_in((lo, hi));
        if (pairs as usize) < sip.max_calls {
            return Err(cx.err(
                "media.rtp_port_range",
                format!(
                    "[{lo}, {hi}] holds {pairs} RTP port pairs, fewer than [sip] max_calls = {} \
                     (each call needs one pair, a transferred call two)",
                    sip.max_calls
                ),
            ));
        }
        route.validate(&cx)?;
        speech.validate(&cx)?;
        let rules = parse_rules(&rules, &cx)?;
        crm.validate(&cx)?;
        http.validate(&cx)?;
        let assistant = assistant::settings(assistant, &cx)?;
        let configured = routes.is_some();
        let routes = routes::plans(routes.unwrap_or_else(routes::embedded), &|i, key, m| {
            cx.entry_err("routes", i, key, m)
        })?;
        if configured {
            let named = |n: &str| routes.iter().any(|r| r.name == n);
            let effective = if rules.is_empty() {
                warmline_policy::default_rules()
            } else {
                rules.clone()
            };
            if let Some(r) = effective.iter().find(|r| !named(&r.route)) {
                return Err(cx.err(
                    "routes",
                    format!(
                        "rule `{}` sends calls to route `{}`, which no [[routes]] entry names",
                        r.name, r.route
                    ),
                ));
            }
        }
        log.validate(&cx)?;
        outbound.validate(&cx)?;
        store.validate(&cx);
        let registrations = registrations::parse(registrations, &cx)?;
        Ok(Config {
            sip,
            media,
            http,
            log,
            outbound,
            shutdown,
            route,
            speech,
            rules,
            assistant,
            routes,
            crm,
            store,
            registrations,
        })
    }

    /// The address peers should use to reach us: `public_addr`, else the first listen IP.
    pub fn advertised_ip(&self) -> IpAddr {
        self.sip
            .public_addr
            .unwrap_or_else(|| self.sip.listen[0].addr.ip())
    }
}

/// `[[rules]]`, each checked against the keys its kind takes (serde cannot refuse unknown
/// keys through the flattened `kind`), then deserialised. Errors name the rule's line.
fn parse_rules(
    tables: &[toml::Table],
    cx: &Ctx,
) -> Result<Vec<warmline_policy::Rule>, ConfigError> {
    let mut rules = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let err = |key: &str, message: String| cx.entry_err("rules", i, key, message);
        let kind = match t.get("kind") {
            Some(toml::Value::String(k)) => k.as_str(),
            Some(_) => return Err(err("kind", "must be a string".into())),
            None => return Err(err("", "a rule needs a `kind`".into())),
        };
        let Some(allowed) = warmline_policy::kind_keys(kind) else {
            return Err(err(
                "kind",
                format!(
                    "`{kind}` is not one of {}",
                    warmline_policy::KINDS.join(", ")
                ),
            ));
        };
        if let Some(k) = t.keys().find(|k| {
            !warmline_policy::RULE_KEYS.contains(&k.as_str()) && !allowed.contains(&k.as_str())
        }) {
            let mut takes: Vec<&str> = warmline_policy::RULE_KEYS.to_vec();
            takes.extend_from_slice(allowed);
            return Err(err(
                k,
                format!(
                    "unknown key for a `{kind}` rule (it takes {})",
                    takes.join(", ")
                ),
            ));
        }
        let rule: warmline_policy::Rule = toml::Value::Table(t.clone())
            .try_into()
            .map_err(|e: toml::de::Error| err("", e.message().to_string()))?;
        if rules
            .iter()
            .any(|r: &warmline_policy::Rule| r.name == rule.name)
        {
            return Err(err("name", format!("two rules are named `{}`", rule.name)));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of `key` in the `index`-th `[[array]]` entry, or of the entry's header.
fn locate_entry(text: &str, array: &str, index: usize, key: &str) -> usize {
    let header = format!("[[{array}]]");
    let mut seen = 0;
    let mut header_line = 0;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            if header_line > 0 {
                break;
            }
            if l == header {
                if seen == index {
                    header_line = i + 1;
                }
                seen += 1;
            }
            continue;
        }
        if header_line > 0
            && !key.is_empty()
            && l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return i + 1;
        }
    }
    header_line
}

/// The line of `table.key` in `text`, or of `[table]`, or 0 if neither appears.
///
/// Our config's tables are named in full (`[sip]`, `[sip.tls]`), so a line scan is exact
/// and keeps the deserialised types free of span wrappers. The table is the longest prefix
/// of `dotted` that the text has a header for.
fn locate(text: &str, dotted: &str) -> usize {
    let has_header = |t: &str| {
        text.lines()
            .any(|l| l.trim().strip_prefix('[').and_then(|r| r.strip_suffix(']')) == Some(t))
    };
    let split = dotted
        .match_indices('.')
        .map(|(i, _)| i)
        .rev()
        .find(|&i| has_header(&dotted[..i]))
        .or_else(|| dotted.find('.'));
    let (table, key) = match split {
        Some(i) => {
            let k = &dotted[i + 1..];
            (&dotted[..i], k.split(['.', '[']).next().unwrap_or(k))
        }
        None => ("", dotted),
    };
    let mut current = "";
    let mut table_line = 0;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim();
            if current == table {
                table_line = i + 1;
            }
            continue;
        }
        if current == table
            && l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return i + 1;
        }
    }
    table_line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn embedded_defaults_are_the_documented_contract() {
        let c = Config::embedded_default();
        assert_eq!(c.sip.listen.len(), 2);
        assert_eq!(c.sip.listen[0].addr, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(c.media.rtp_port_range, (20000, 29999));
        assert_eq!(c.http.listen, Some("127.0.0.1:8080".parse().unwrap()));
    }

    #[test]
    fn full_contract_parses() {
        let c = parse(
            r#"
[sip]
listen = ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]
public_addr = "203.0.113.9"
max_calls = 50
allow_from = ["127.0.0.0/8", "::1"]
[media]
rtp_port_range = [30000, 30100]
[http]
listen = "127.0.0.1:9090"
[log]
level = "debug"
"#,
        )
        .unwrap();
        assert_eq!(c.sip.max_calls, 50);
        assert_eq!(c.advertised_ip(), "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(c.sip.allow_from.len(), 2);
        assert_eq!(c.sip.listen[1].transport, SipTransport::Tcp);
    }

    /// PEM files for `[sip.tls]`: a certificate and its key, another key, and a CA.
    fn tls_files(dir: &Path) -> [std::path::PathBuf; 4] {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = ["cert.pem", "key.pem", "other.key", "ca.pem"].map(|f| dir.join(f));
        std::fs::write(&files[0], cert.pem()).unwrap();
        std::fs::write(&files[1], key.serialize_pem()).unwrap();
        std::fs::write(
            &files[2],
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        std::fs::write(&files[3], cert.pem()).unwrap();
        files
    }

    #[test]
    fn tls_listener_loads_its_certificate_and_bad_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let [cert, key, other, ca] = tls_files(dir.path());
        let listen = "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"tls:127.0.0.1:5061\"]\n";
        let c = parse(&format!(
            "{listen}[sip.tls]\ncertificate = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            cert.display(),
            key.display(),
            ca.display()
        ))
        .unwrap();
        assert_eq!(c.sip.listen[1].transport, SipTransport::Tls);
        let pem = &c.sip.tls.loaded;
        assert!(pem.certificate.is_some() && pem.key.is_some() && pem.client_ca.is_some());

        let e = parse(listen).unwrap_err();
        assert_eq!(e.key, "sip.tls.certificate", "{e}");
        let e = parse(&format!(
            "{listen}[sip.tls]\ncertificate = \"{}\"\n\nkey = \"{}\"\n",
            cert.display(),
            other.display()
        ))
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (6, "sip.tls.key"), "{e}");
        assert!(e.message.contains("does not go with"), "{e}");
        let e = parse(&format!(
            "{listen}[sip.tls]\ncertificate = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
            cert.display(),
            key.display(),
            key.display()
        ))
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (6, "sip.tls.ca"), "{e}");
        let e = parse(&format!(
            "{listen}[sip.tls]\ncertificate = \"{}/missing.pem\"\nkey = \"{}\"\n",
            dir.path().display(),
            key.display()
        ))
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (4, "sip.tls.certificate"), "{e}");
        assert!(e.message.contains("cannot read"), "{e}");
    }

    #[test]
    fn type_error_names_file_line_and_key() {
        let e =
            parse("[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nmax_calls = \"lots\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "sip.max_calls"), "{e}");
        assert!(
            e.to_string()
                .starts_with("test.toml:3: key `sip.max_calls`: "),
            "{e}"
        );
    }

    #[test]
    fn srtp_mode_parses_and_a_wrong_one_names_its_line() {
        use warmline_signaling::SrtpMode;
        assert_eq!(parse("").unwrap().media.srtp, SrtpMode::Optional);
        for (text, mode) in [("off", SrtpMode::Off), ("required", SrtpMode::Required)] {
            let c = parse(&format!("[media]\nsrtp = \"{text}\"\n")).unwrap();
            assert_eq!(c.media.srtp, mode);
        }
        let e = parse("[media]\ncodecs = [\"PCMU\"]\nsrtp = \"mandatory\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "media.srtp"), "{e}");
        assert!(e.message.contains("required"), "{e}");
    }

    #[test]
    fn unknown_key_is_refused_with_its_line() {
        let e = parse("[sip]\nmax_calls = 3\nmax_call = 4\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("max_call"), "{e}");
    }

    #[test]
    fn semantic_errors_are_located() {
        let e = parse("[media]\n\nrtp_port_range = [30000, 20000]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "media.rtp_port_range"));
        let e = parse("[sip]\nallow_from = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "sip.allow_from"));
        let e = parse("[sip]\nlisten = [\"sctp:1.2.3.4:5\"]\n").unwrap_err();
        // The entry is named: a list of five addresses says which one.
        assert_eq!((e.line, e.key.as_str()), (2, "sip.listen[0]"));
        let e = parse("[http]\nlisten = \"nope\"\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn bad_whisper_models_and_media_files_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"not a model").unwrap();
        let text = format!(
            "[speech]\nrecognizer = \"whisper\"\nwhisper_model = \"{}\"\n",
            junk.display()
        );
        let e = parse(&text).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "speech.whisper_model"));
        assert!(e.to_string().contains("not a whisper ggml model"), "{e}");
        let e = parse("[speech]\nwhisper_model = \"/nonexistent/model.bin\"\n").unwrap_err();
        assert_eq!(e.key, "speech.whisper_model");
        let e = parse("[speech]\nrecognizer = \"whisper\"\n").unwrap_err();
        assert_eq!(e.key, "speech.whisper_model");
        let e = parse("[speech]\nrecognizer = \"cloud\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "speech.recognizer"));
        assert!(e.message.contains("`auto`, `whisper`, `fallback`"), "{e}");
        let e = parse("[media]\ngreeting = \"/nonexistent/hello.wav\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "media.greeting"));
        let good = dir.path().join("tiny.bin");
        warmline_speech::ggml::write_tiny_model(&good, Default::default()).unwrap();
        let cfg = parse(&format!(
            "[speech]\nwhisper_model = \"{}\"\n",
            good.display()
        ))
        .unwrap();
        assert_eq!(cfg.speech.whisper_model.as_deref(), Some(good.as_path()));
    }

    #[test]
    fn registrations_parse_and_bad_entries_name_their_key_and_line() {
        let c = parse(
            "[[registrations]]\nregistrar = \"sip:trunk.example.net;transport=tcp\"\n\
             aor = \"sip:+15551230000@trunk.example.net\"\nauth_username = \"acct-77\"\n\
             password = \"pw\"\nexpires_s = 600\n",
        )
        .unwrap();
        let r = &c.registrations[0];
        assert_eq!(r.user(), "+15551230000");
        assert_eq!(r.auth_username.as_deref(), Some("acct-77"));
        assert_eq!(
            (r.expires, r.retry_base.as_secs(), r.retry_max.as_secs()),
            (600, 30, 1800)
        );
        let bad = |body: &str| {
            parse(&format!(
                "[[registrations]]\nregistrar = \"sip:a.example\"\naor = \"sip:1@a.example\"\n\
                 [[registrations]]\n{body}"
            ))
            .unwrap_err()
        };
        let e = bad("registrar = \"sip:b.example\"\naor = \"sip:b.example\"\n");
        assert_eq!((e.line, e.key.as_str()), (6, "registrations[1].aor"), "{e}");
        assert!(e.message.contains("no user part"), "{e}");
        let e = bad("registrar = \"mailto:x@b\"\naor = \"sip:2@b.example\"\n");
        assert_eq!(
            (e.line, e.key.as_str()),
            (5, "registrations[1].registrar"),
            "{e}"
        );
        let e = bad("registrar = \"sip:b\"\naor = \"sip:2@b\"\nexpires_s = 0\n");
        assert_eq!(
            (e.line, e.key.as_str()),
            (7, "registrations[1].expires_s"),
            "{e}"
        );
        let e =
            bad("registrar = \"sip:b\"\naor = \"sip:2@b\"\nretry_base_s = 60\nretry_max_s = 10\n");
        assert_eq!(
            (e.line, e.key.as_str()),
            (8, "registrations[1].retry_max_s"),
            "{e}"
        );
        let e = bad("registrar = \"sip:b\"\naor = \"sip:2@b\"\nauth_username = \"u\"\n");
        assert_eq!(e.key, "registrations[1].password", "{e}");
        let e = bad("registrar = \"sip:b\"\naor = \"sip:2@b\"\nexpire_s = 5\n");
        assert!(e.to_string().contains("expire_s"), "{e}");
    }

    #[test]
    fn readme_rules_example_parses() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\n[[rules]]").unwrap() + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let cfg = parse(&readme[start..end]).unwrap();
        let kinds: Vec<&str> = cfg.rules.iter().map(|r| r.kind.name()).collect();
        assert_eq!(kinds, ["keyword", "topic", "caller"]);
        assert_eq!(cfg.rules[0].route, "retention");
        let e = parse("[[rules]]\nname = \"x\"\nkind = \"telepathy\"\ndisposition = \"d\"\n")
            .unwrap_err();
        assert!(e.key.starts_with("rules"), "{e}");
    }

    #[test]
    fn rule_keys_are_checked_against_the_kind() {
        let e = parse(
            "[[rules]]\nname = \"a\"\nkind = \"dtmf\"\ndigit = \"0\"\ndisposition = \"d\"\n\n[[rules]]\nname = \"b\"\nkind = \"keyword\"\nphrase = [\"cancel\"]\ndisposition = \"d\"\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (10, "rules[1].phrase"), "{e}");
        assert!(e.message.contains("phrases, exclude, window"), "{e}");
        let e = parse("[[rules]]\nname = \"a\"\ndisposition = \"d\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (1, "rules[0]"), "{e}");
        let e = parse("[[rules]]\nname = \"a\"\nkind = \"dtmf\"\ndigit = 5\ndisposition = \"d\"\n")
            .unwrap_err();
        assert_eq!(e.line, 1, "{e}");
    }

    #[test]
    fn assistant_and_routes_parse_and_fail_clearly() {
        let c = parse(
            r#"
[assistant]
webhook_url = "http://127.0.0.1:9000/turn"
ask_reason = "What can I do for you?"
[[assistant.fields]]
name = "postcode"
prompt = "What is your postcode?"
pattern = '([a-z]{1,2}\d{1,2} ?\d[a-z]{2})'
[[assistant.faq]]
phrases = ["opening hours"]
answer = "Nine to five."
[[routes]]
name = "default"
timezone = "Europe/London"
hours = { days = [1, 2, 3, 4, 5], open = "09:00", close = "17:30" }
"#,
        )
        .unwrap();
        assert_eq!(c.assistant.dialogue.ask_reason, "What can I do for you?");
        assert_eq!(c.assistant.dialogue.fields[0].name, "postcode");
        assert_eq!(c.assistant.brain.as_ref().unwrap().kind, BrainKind::Webhook);
        assert_eq!(c.routes[0].tz.iana_name(), Some("Europe/London"));

        let e = parse("[assistant]\nwebhook_url = \"ftp://x\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "assistant.webhook_url"));
        let e = parse("[assistant]\nask_reasn = \"x\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse(
            "[assistant]\n[[assistant.fields]]\nname = \"n\"\nprompt = \"p\"\npattern = \"(\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "assistant.fields");
        assert!(e.message.contains("`n`"), "{e}");
        let e = parse("[[routes]]\nname = \"default\"\ntimezone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(e.message.contains("Mars/Olympus"), "{e}");
        assert_eq!((e.line, e.key.as_str()), (3, "routes[0].timezone"));
        let e = parse(
            "[[routes]]\nname = \"default\"\n[[routes]]\nname = \"b\"\nstrategy = \"random\"\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (5, "routes[1].strategy"), "{e}");
        assert!(e.message.contains("`round_robin`"), "{e}");
        let e =
            parse("[[routes]]\nname = \"default\"\n[[routes]]\nname = \"b\"\nring_timeout_s = 0\n")
                .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (5, "routes[1].ring_timeout_s"),
            "{e}"
        );
        let c = parse("[route]\nmode = \"bridge\"\ntarget = \"sip:pbx@192.0.2.7\"\n").unwrap();
        assert_eq!(
            c.route,
            RouteMode::Bridge {
                target: "sip:pbx@192.0.2.7".into()
            }
        );
        let e = parse("[route]\nmode = \"bridge\"\n").unwrap_err();
        assert!(e.message.contains("target"), "{e}");
        let e = parse("[route]\nmode = \"bridge\"\ntarget = \"pbx\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "route.target"), "{e}");
        let e = parse("[[routes]]\nname = \"default\"\nhours = { days = [8], open = \"09:00\", close = \"17:00\" }\n")
            .unwrap_err();
        assert!(e.message.contains("day 8"), "{e}");
        // With routes configured, every rule's route must be one of them (the defaults
        // use `default`).
        let e = parse("[[routes]]\nname = \"billing\"\n").unwrap_err();
        assert!(e.message.contains("route `default`"), "{e}");
    }

    #[test]
    fn a_store_that_cannot_be_made_is_a_config_error_on_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let f = dir.path().join("warmline.toml");
            std::fs::write(&f, text).unwrap();
            Config::load_for_host(&f)
        };
        let e = load("[store]\npath = \"/nonexistent/dir/warmline.db\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "store.path"), "{e}");
        assert!(e.message.contains("does not exist"), "{e}");
        // Relative to the config file: its own directory is fine, a directory is not.
        assert!(load("[store]\npath = \"w.db\"\n").is_ok());
        let e = load("[store]\npath = \".\"\n").unwrap_err();
        assert!(e.message.contains("is a directory"), "{e}");
        // Parsing alone does not look at the machine (the shipped config names /var/lib).
        assert!(parse("[store]\npath = \"/nonexistent/dir/warmline.db\"\n").is_ok());
    }

    #[test]
    fn an_rtp_range_too_small_for_max_calls_is_refused() {
        // [33000, 33007] holds four pairs, its last one included.
        assert!(parse("[sip]\nmax_calls = 4\n[media]\nrtp_port_range = [33000, 33007]\n").is_ok());
        let e =
            parse("[sip]\nmax_calls = 5\n[media]\nrtp_port_range = [33000, 33007]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (4, "media.rtp_port_range"), "{e}");
        assert!(e.message.contains("4 RTP port pairs"), "{e}");
    }

    #[test]
    fn wildcard_listen_needs_public_addr() {
        let e = parse("[sip]\nlisten = [\"udp:0.0.0.0:5060\"]\n").unwrap_err();
        assert_eq!(e.key, "sip.public_addr");
        assert!(
            parse("[sip]\nlisten = [\"udp:0.0.0.0:5060\"]\npublic_addr = \"192.0.2.1\"\n").is_ok()
        );
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/warmline.toml"));
        Config::load(path).unwrap();
    }

    #[test]
    fn kubernetes_config_map_is_valid_once_filled_in() {
        let yaml = include_str!("../../deploy/k8s/configmap.yaml");
        let start = yaml.find("warmline.toml: |\n").unwrap() + "warmline.toml: |\n".len();
        let toml: String = yaml[start..]
            .lines()
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("NODE_IP", "192.0.2.10")
            .replace("TOKEN", "secret");
        let c = parse(&toml).unwrap();
        assert_eq!(c.http.token.as_deref(), Some("secret"));
        assert_eq!(c.routes[0].targets.len(), 1);
    }

    /// The config parser under mutation: every damaged file is a located error or a valid
    /// config, never a panic (the README's and the shipped configs are the seeds).
    #[test]
    fn mutated_configs_are_errors_not_panics() {
        use warmline_signaling::mutate::{Mutator, executions, report};
        let seeds = [
            include_str!("../../deploy/warmline.toml"),
            "[sip]\nlisten = [\"udp:127.0.0.1:5070\"]\nmax_calls = 4\n[media]\nrtp_port_range = [30000, 30100]\ncodecs = [\"pcmu\"]\n[[routes]]\nname = \"default\"\ntargets = [\"sip:a@127.0.0.1\"]\nstrategy = \"round_robin\"\nhours = { days = [1, 2], open = \"09:00\", close = \"17:00\" }\n[[rules]]\nname = \"kw\"\nkind = \"keyword\"\nroute = \"default\"\nphrases = [\"refund\"]\n",
        ];
        let mut m = Mutator::new(0x5eed_0006);
        let n = executions(3000);
        let mut errors = 0;
        for i in 0..n {
            let text = m.mutate(seeds[i % seeds.len()].as_bytes());
            let text = String::from_utf8_lossy(&text);
            if let Err(e) = parse(&text) {
                errors += 1;
                assert!(e.line <= text.lines().count() + 1, "{e}");
            }
        }
        assert!(errors > n / 4, "{errors} of {n}");
        report("config file", n);
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let e = parse("[sip]\nmax_calls = = 3\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }
}
