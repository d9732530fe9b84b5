//! Configuration: the TOML contract operators and tests rely on, its embedded defaults, and
//! validation whose every error names the file, the line and the key.

use ipnet::IpNet;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warmline_signaling::CodecName;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipTransport {
    Udp,
    Tcp,
}

impl fmt::Display for SipTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SipTransport::Udp => "udp",
            SipTransport::Tcp => "tcp",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: SipTransport,
    pub addr: SocketAddr,
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
    pub route: RouteConfig,
    pub speech: SpeechConfig,
    /// `[[rules]]`: the escalation policy (empty = the built-in defaults).
    pub rules: Vec<warmline_policy::Rule>,
    pub assistant: AssistantSettings,
    /// `[[routes]]`: agent groups, with their business hours.
    pub routes: Vec<Route>,
    pub crm: CrmConfig,
    pub store: StoreConfig,
}

/// `[assistant]`: the built-in dialogue and the optional external brain.
#[derive(Debug, Clone)]
pub struct AssistantSettings {
    /// `false`: callers hear the greeting and the policy listens, but nobody answers.
    pub enabled: bool,
    pub dialogue: warmline_call::assistant::AssistantConfig,
    pub brain: Option<BrainSettings>,
    /// An OpenAI-compatible endpoint that writes the agent's briefing; the template one is
    /// used when it is unset, slow or failing.
    pub briefing: Option<BriefingSettings>,
}

#[derive(Debug, Clone)]
pub struct BriefingSettings {
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

/// Where each caller turn is sent first.
#[derive(Debug, Clone)]
pub struct BrainSettings {
    pub url: String,
    pub timeout: Duration,
    pub kind: BrainKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrainKind {
    /// warmline's own JSON contract (`BrainRequest` → `BrainReply`).
    Webhook,
    /// An OpenAI-compatible `/v1/chat/completions` endpoint.
    OpenAi {
        model: String,
        api_key: Option<String>,
    },
}

/// An agent group.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub hours: Option<warmline_policy::hours::Hours>,
    pub tz: jiff::tz::TimeZone,
    /// The zone's name as configured (for logs), `system` when unset.
    pub timezone: String,
    pub targets: Vec<String>,
    pub strategy: warmline_call::HuntStrategy,
    pub ring_timeout: Duration,
    pub confirm: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecognizerChoice {
    /// whisper when a valid model is configured, else the fallback.
    Auto,
    Whisper,
    Fallback,
    /// No speech pipeline.
    Off,
}

#[derive(Debug, Clone)]
pub struct SpeechConfig {
    pub recognizer: RecognizerChoice,
    pub whisper_model: Option<PathBuf>,
    /// The model `run` provisions into the data directory when `whisper_model` is unset
    /// (`None`: never fetch, use the fallback).
    pub fetch_model: Option<String>,
    /// Recognition workers (each with its share of the cores, see `speech::SpeechPlane`).
    pub threads: usize,
    /// Utterances that may wait for a worker before new ones are dropped (and counted).
    pub queue: usize,
    pub language: String,
    pub end_silence_ms: u64,
    pub max_utterance_ms: u64,
    pub baseline_utterances: usize,
    pub tts_voice: String,
    /// Spoken (TTS, rendered once at start-up) when `[media] greeting` is not set.
    pub greeting_text: String,
}

/// What warmline does with an answered inbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMode {
    /// warmline's own assistant answers (on the media plane alone: the greeting).
    Assistant,
    /// No AI: B2BUA the caller straight to `target`.
    Bridge { target: String },
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub mode: RouteMode,
}

#[derive(Debug, Clone)]
pub struct SipConfig {
    pub listen: Vec<Listen>,
    pub public_addr: Option<IpAddr>,
    pub max_calls: usize,
    pub allow_from: Vec<IpNet>,
    pub answer_after: Duration,
    pub retry_after_s: u32,
    pub user_agent: String,
}

#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub rtp_port_range: (u16, u16),
    pub codecs: Vec<CodecName>,
    /// No RTP for this long (while the peer should send) ends the call; `None` = never.
    pub rtp_timeout: Option<Duration>,
    pub jitter_min: Duration,
    pub jitter_max: Duration,
    /// Played to every caller the assistant answers.
    pub greeting: Option<PathBuf>,
    /// Looped while a party is on hold; a built-in comfort tone when unset.
    pub hold_music: Option<PathBuf>,
    /// The caller's speech cuts the greeting (it carries the AI disclosure: off).
    pub greeting_barge_in: bool,
    /// Write each leg's inbound audio to `record_dir/<call>-<leg>.wav`.
    pub record: bool,
    pub record_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: Option<SocketAddr>,
    /// How agents' phones and the CRM reach this API (Call-Info and packet links).
    pub public_url: String,
    /// Required as `Authorization: Bearer …` (or `?token=` for the agent page) on every
    /// route but `/healthz` and `/readyz`; mandatory when `listen` is not loopback.
    pub token: Option<String>,
}

/// `[crm]`: where context packets go.
#[derive(Debug, Clone)]
pub struct CrmConfig {
    pub webhook_url: Option<String>,
    /// Signs each POST: `X-Warmline-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub secret: Option<String>,
    pub timeout: Duration,
}

/// `[store]`: the SQLite file of the audit trail, packets and the CRM outbox.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Keep turn texts in the audit trail (otherwise only their timing and confidence).
    pub keep_transcripts: bool,
    /// Audit rows, packets and delivered deliveries older than this are deleted (checked
    /// hourly); `None` keeps everything.
    pub retain: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct OutboundConfig {
    pub from_user: String,
    pub ring_timeout: Duration,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ShutdownConfig {
    pub drain: Duration,
}

// ---- the raw TOML shape: every key optional, unknown keys refused ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    sip: RawSip,
    media: RawMedia,
    http: RawHttp,
    log: RawLog,
    outbound: RawOutbound,
    shutdown: RawShutdown,
    route: RawRoute,
    speech: RawSpeech,
    /// Checked key by key against each rule's kind, then deserialised (see `rules`).
    rules: Vec<toml::Table>,
    assistant: RawAssistant,
    /// `None`: the embedded `default` route (one agent on this machine).
    routes: Option<Vec<RawRoutes>>,
    crm: RawCrm,
    store: RawStore,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoutes {
    name: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    hours: Option<warmline_policy::hours::Hours>,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default = "sequential")]
    strategy: String,
    #[serde(default = "ring_timeout_s")]
    ring_timeout_s: u64,
    #[serde(default)]
    confirm: bool,
}

fn sequential() -> String {
    "sequential".into()
}
fn ring_timeout_s() -> u64 {
    20
}

/// The route a fresh install has: one agent softphone on this machine (the README's
/// baresip), so the first call can be transferred without writing config.
fn embedded_routes() -> Vec<RawRoutes> {
    vec![RawRoutes {
        name: "default".into(),
        timezone: None,
        hours: None,
        targets: vec!["sip:agent@127.0.0.1:5062".into()],
        strategy: sequential(),
        ring_timeout_s: ring_timeout_s(),
        confirm: false,
    }]
}

/// `[assistant]`. The dialogue keys are spelled out (not flattened) so unknown keys are
/// refused with their line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAssistant {
    enabled: bool,
    webhook_url: Option<String>,
    webhook_timeout_ms: u64,
    openai_url: Option<String>,
    openai_model: String,
    /// The name of an environment variable holding the API key (keys stay out of files).
    openai_api_key_env: Option<String>,
    /// An OpenAI-compatible chat endpoint that writes the agent's briefing.
    briefing_url: Option<String>,
    briefing_model: Option<String>,
    ask_reason: Option<String>,
    reprompt: Option<String>,
    anything_else: Option<String>,
    closing: Option<String>,
    out_of_hours: Option<String>,
    fields: Option<Vec<warmline_call::assistant::FieldSpec>>,
    faq: Vec<warmline_call::assistant::Faq>,
}

impl Default for RawAssistant {
    fn default() -> Self {
        Self {
            enabled: true,
            webhook_url: None,
            webhook_timeout_ms: 1500,
            openai_url: None,
            openai_model: "gpt-4o-mini".into(),
            openai_api_key_env: None,
            briefing_url: None,
            briefing_model: None,
            ask_reason: None,
            reprompt: None,
            anything_else: None,
            closing: None,
            out_of_hours: None,
            fields: None,
            faq: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSpeech {
    recognizer: String,
    whisper_model: Option<PathBuf>,
    fetch_model: String,
    threads: usize,
    queue: usize,
    language: String,
    end_silence_ms: u64,
    max_utterance_ms: u64,
    baseline_utterances: usize,
    tts_voice: String,
    greeting_text: String,
}

impl Default for RawSpeech {
    fn default() -> Self {
        Self {
            recognizer: "auto".into(),
            whisper_model: None,
            fetch_model: crate::model::DEFAULT_MODEL.into(),
            threads: 0,
            queue: 0,
            language: "en".into(),
            end_silence_ms: 600,
            max_utterance_ms: 15_000,
            baseline_utterances: 2,
            tts_voice: "en-us".into(),
            greeting_text: "Hello, you are speaking with an automated assistant. \
                            You can ask for a person at any time. How can I help?"
                .into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRoute {
    mode: String,
    target: Option<String>,
}

impl Default for RawRoute {
    fn default() -> Self {
        Self {
            mode: "assistant".into(),
            target: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSip {
    listen: Vec<String>,
    public_addr: Option<String>,
    max_calls: usize,
    allow_from: Vec<String>,
    answer_after_ms: u64,
    retry_after_s: u32,
    user_agent: String,
}

impl Default for RawSip {
    fn default() -> Self {
        Self {
            listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()],
            public_addr: None,
            max_calls: 1000,
            allow_from: Vec::new(),
            answer_after_ms: 0,
            retry_after_s: 5,
            user_agent: concat!("warmline/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMedia {
    rtp_port_range: [u32; 2],
    codecs: Vec<CodecName>,
    rtp_timeout_s: u64,
    jitter_min_ms: u64,
    jitter_max_ms: u64,
    greeting: Option<PathBuf>,
    hold_music: Option<PathBuf>,
    greeting_barge_in: bool,
    record: bool,
    record_dir: PathBuf,
}

impl Default for RawMedia {
    fn default() -> Self {
        Self {
            rtp_port_range: [20000, 29999],
            codecs: vec![CodecName::Pcmu, CodecName::Pcma, CodecName::Opus],
            rtp_timeout_s: 30,
            jitter_min_ms: 20,
            jitter_max_ms: 200,
            greeting: None,
            hold_music: None,
            greeting_barge_in: false,
            record: false,
            record_dir: "recordings".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    /// An empty string turns the HTTP API off.
    listen: String,
    public_url: Option<String>,
    token: Option<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            token: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCrm {
    webhook_url: Option<String>,
    secret: Option<String>,
    timeout_ms: u64,
}

impl Default for RawCrm {
    fn default() -> Self {
        Self {
            webhook_url: None,
            secret: None,
            timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    path: PathBuf,
    keep_transcripts: bool,
    retain_days: u64,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: "warmline.db".into(),
            keep_transcripts: false,
            retain_days: 90,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOutbound {
    from_user: String,
    ring_timeout_s: u64,
    auth_username: Option<String>,
    auth_password: Option<String>,
}

impl Default for RawOutbound {
    fn default() -> Self {
        Self {
            from_user: "warmline".into(),
            ring_timeout_s: 30,
            auth_username: None,
            auth_password: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawShutdown {
    drain_s: u64,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self { drain_s: 30 }
    }
}

impl Config {
    /// The embedded defaults: what `warmline run` uses when no config file exists.
    pub fn embedded_default() -> Self {
        Self::from_raw(Raw::default(), Path::new("<embedded defaults>"), "")
            .unwrap_or_else(|e| unreachable!("embedded defaults are valid: {e}"))
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
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
        let err = |key: &str, message: String| ConfigError {
            file: path.to_path_buf(),
            line: locate(text, key),
            key: key.to_string(),
            message,
        };

        if raw.sip.listen.is_empty() {
            return Err(err(
                "sip.listen",
                "at least one listen address is needed".into(),
            ));
        }
        let mut listen = Vec::new();
        for (i, l) in raw.sip.listen.iter().enumerate() {
            let parsed =
                parse_listen(l).map_err(|m| err("sip.listen", format!("entry {i}: {m}")))?;
            listen.push(parsed);
        }
        let public_addr = match raw.sip.public_addr.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<IpAddr>()
                    .map_err(|_| err("sip.public_addr", format!("`{s}` is not an IP address")))?,
            ),
        };
        if public_addr.is_none() && listen[0].addr.ip().is_unspecified() {
            return Err(err(
                "sip.public_addr",
                "listening on a wildcard address needs public_addr for SDP c= and Contact".into(),
            ));
        }
        let mut allow_from = Vec::new();
        for s in &raw.sip.allow_from {
            let net = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| err("sip.allow_from", format!("`{s}` is not a CIDR or an IP")))?;
            allow_from.push(net);
        }
        if raw.sip.max_calls == 0 {
            return Err(err("sip.max_calls", "must be at least 1".into()));
        }

        let [lo, hi] = raw.media.rtp_port_range;
        if lo < 1024 || hi > 65535 || lo >= hi || hi - lo < 1 {
            return Err(err(
                "media.rtp_port_range",
                format!("[{lo}, {hi}] must be two ports, 1024..=65535, low < high"),
            ));
        }
        if raw.media.codecs.is_empty() {
            return Err(err("media.codecs", "at least one codec is needed".into()));
        }

        if raw.media.jitter_min_ms < 20
            || raw.media.jitter_max_ms > 1000
            || raw.media.jitter_min_ms > raw.media.jitter_max_ms
        {
            return Err(err(
                "media.jitter_min_ms",
                "jitter_min_ms must be at least 20 and at most jitter_max_ms (itself at most 1000)"
                    .into(),
            ));
        }
        for (key, file) in [
            ("media.greeting", &raw.media.greeting),
            ("media.hold_music", &raw.media.hold_music),
        ] {
            if let Some(f) = file {
                let full = resolve(path, f);
                std::fs::File::open(&full)
                    .map_err(|e| err(key, format!("cannot open {}: {e}", full.display())))
                    .and_then(|file| {
                        warmline_media::wav::read_clip(std::io::BufReader::new(file))
                            .map(|_| ())
                            .map_err(|e| err(key, format!("{}: {e}", full.display())))
                    })?;
            }
        }
        let mode = match (raw.route.mode.as_str(), raw.route.target) {
            ("assistant", _) => RouteMode::Assistant,
            ("bridge", Some(target)) => {
                if !target.starts_with("sip:") || target.len() < 5 {
                    return Err(err("route.target", format!("`{target}` is not a sip: URI")));
                }
                RouteMode::Bridge { target }
            }
            ("bridge", None) => {
                return Err(err(
                    "route.target",
                    "mode = \"bridge\" needs a target sip: URI".into(),
                ));
            }
            (other, _) => {
                return Err(err(
                    "route.mode",
                    format!("`{other}` is not \"assistant\" or \"bridge\""),
                ));
            }
        };

        let recognizer = match raw.speech.recognizer.as_str() {
            "auto" => RecognizerChoice::Auto,
            "whisper" => RecognizerChoice::Whisper,
            "fallback" => RecognizerChoice::Fallback,
            "off" => RecognizerChoice::Off,
            other => {
                return Err(err(
                    "speech.recognizer",
                    format!("`{other}` is not auto, whisper, fallback or off"),
                ));
            }
        };
        let whisper_model = raw.speech.whisper_model.map(|f| resolve(path, &f));
        if let Some(m) = &whisper_model {
            // Checked here, not when whisper.cpp loads it: whisper.cpp aborts the process on
            // some malformed files.
            warmline_speech::ggml::validate(m)
                .map_err(|e| err("speech.whisper_model", format!("{}: {e}", m.display())))?;
        } else if recognizer == RecognizerChoice::Whisper {
            return Err(err(
                "speech.whisper_model",
                "recognizer = \"whisper\" needs whisper_model".into(),
            ));
        }
        let fetch_model = match raw.speech.fetch_model.as_str() {
            "" | "none" => None,
            name => {
                crate::model::spec(name).map_err(|e| err("speech.fetch_model", e.to_string()))?;
                Some(name.to_string())
            }
        };
        if raw.speech.end_silence_ms < 100 || raw.speech.max_utterance_ms < 1000 {
            return Err(err(
                "speech.end_silence_ms",
                "end_silence_ms must be at least 100 and max_utterance_ms at least 1000".into(),
            ));
        }
        let rules = parse_rules(&raw.rules, path, text)?;
        for (key, url) in [
            ("crm.webhook_url", &raw.crm.webhook_url),
            ("http.public_url", &raw.http.public_url),
        ] {
            if let Some(u) = url
                .as_deref()
                .filter(|u| !(u.starts_with("http://") || u.starts_with("https://")))
            {
                return Err(err(key, format!("`{u}` is not an http(s) URL")));
            }
        }
        let assistant = assistant_settings(raw.assistant, &err)?;
        let configured = raw.routes.is_some();
        let routes = routes(raw.routes.unwrap_or_else(embedded_routes), &err)?;
        if configured {
            let named = |n: &str| routes.iter().any(|r| r.name == n);
            let effective = if rules.is_empty() {
                warmline_policy::default_rules()
            } else {
                rules.clone()
            };
            if let Some(r) = effective.iter().find(|r| !named(&r.route)) {
                return Err(err(
                    "routes",
                    format!(
                        "rule `{}` sends calls to route `{}`, which no [[routes]] entry names",
                        r.name, r.route
                    ),
                ));
            }
        }
        // One worker per two cores, each decoding on two threads: a turn is heard 1.6 times
        // sooner than on one thread, and under three callers talking at once on two cores
        // `benches/accuracy.sh` printed end of speech -> trigger p95 794 ms with one
        // two-thread worker against 1,195 ms with two one-thread workers (the same words
        // heard): a turn that waits for the worker still finishes sooner than one that
        // shares the cores from the start.
        let threads = if raw.speech.threads == 0 {
            (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1)
        } else {
            raw.speech.threads
        };

        let http_listen = match raw.http.listen.as_str() {
            "" => None,
            s => Some(s.parse::<SocketAddr>().map_err(|_| {
                err(
                    "http.listen",
                    format!("`{s}` is not an address like 127.0.0.1:8080"),
                )
            })?),
        };
        if http_listen.is_some_and(|a| !a.ip().is_loopback())
            && raw.http.token.as_deref().is_none_or(str::is_empty)
        {
            return Err(err(
                "http.listen",
                "the API is reachable from other machines: set [http] token too".into(),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
            return Err(err(
                "log.level",
                format!(
                    "`{}` is not a level or filter (error, warn, info, debug, trace)",
                    raw.log.level
                ),
            ));
        }
        if raw.outbound.auth_username.is_some() != raw.outbound.auth_password.is_some() {
            return Err(err(
                "outbound.auth_username",
                "auth_username and auth_password go together".into(),
            ));
        }

        Ok(Config {
            sip: SipConfig {
                listen,
                public_addr,
                max_calls: raw.sip.max_calls,
                allow_from,
                answer_after: Duration::from_millis(raw.sip.answer_after_ms),
                retry_after_s: raw.sip.retry_after_s,
                user_agent: raw.sip.user_agent,
            },
            media: MediaConfig {
                // both bounds checked above to fit in u16
                rtp_port_range: (lo as u16, hi as u16),
                codecs: raw.media.codecs,
                rtp_timeout: (raw.media.rtp_timeout_s > 0)
                    .then(|| Duration::from_secs(raw.media.rtp_timeout_s)),
                jitter_min: Duration::from_millis(raw.media.jitter_min_ms),
                jitter_max: Duration::from_millis(raw.media.jitter_max_ms),
                greeting: raw.media.greeting.map(|f| resolve(path, &f)),
                hold_music: raw.media.hold_music.map(|f| resolve(path, &f)),
                greeting_barge_in: raw.media.greeting_barge_in,
                record: raw.media.record,
                record_dir: resolve(path, &raw.media.record_dir),
            },
            route: RouteConfig { mode },
            speech: SpeechConfig {
                recognizer,
                whisper_model,
                fetch_model,
                threads,
                // Turns are dropped (and counted) only past this: with one worker on a
                // small box, a burst of callers ending their turns together must wait,
                // not be lost.
                queue: if raw.speech.queue == 0 {
                    (threads * 4).max(8)
                } else {
                    raw.speech.queue
                },
                language: raw.speech.language,
                end_silence_ms: raw.speech.end_silence_ms,
                max_utterance_ms: raw.speech.max_utterance_ms,
                baseline_utterances: raw.speech.baseline_utterances.max(1),
                tts_voice: raw.speech.tts_voice,
                greeting_text: raw.speech.greeting_text,
            },
            rules,
            assistant,
            routes,
            http: HttpConfig {
                token: raw.http.token.filter(|t| !t.is_empty()),
                public_url: match raw.http.public_url {
                    Some(u) => u.trim_end_matches('/').to_string(),
                    None => format!(
                        "http://{}",
                        http_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)))
                    ),
                },
                listen: http_listen,
            },
            crm: CrmConfig {
                webhook_url: raw.crm.webhook_url,
                secret: raw.crm.secret,
                timeout: Duration::from_millis(raw.crm.timeout_ms.max(100)),
            },
            store: StoreConfig {
                path: resolve(path, &raw.store.path),
                keep_transcripts: raw.store.keep_transcripts,
                retain: (raw.store.retain_days > 0)
                    .then(|| Duration::from_secs(raw.store.retain_days * 86_400)),
            },
            log: LogConfig {
                level: raw.log.level,
            },
            outbound: OutboundConfig {
                from_user: raw.outbound.from_user,
                ring_timeout: Duration::from_secs(raw.outbound.ring_timeout_s),
                auth_username: raw.outbound.auth_username,
                auth_password: raw.outbound.auth_password,
            },
            shutdown: ShutdownConfig {
                drain: Duration::from_secs(raw.shutdown.drain_s),
            },
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
    path: &Path,
    text: &str,
) -> Result<Vec<warmline_policy::Rule>, ConfigError> {
    let mut rules = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let err = |key: &str, message: String| ConfigError {
            file: path.to_path_buf(),
            line: locate_entry(text, "rules", i, key),
            key: format!("rules[{i}]{}{key}", if key.is_empty() { "" } else { "." }),
            message,
        };
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

fn assistant_settings(
    raw: RawAssistant,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<AssistantSettings, ConfigError> {
    let mut d = warmline_call::assistant::AssistantConfig::default();
    for (slot, value) in [
        (&mut d.ask_reason, raw.ask_reason),
        (&mut d.reprompt, raw.reprompt),
        (&mut d.anything_else, raw.anything_else),
        (&mut d.closing, raw.closing),
        (&mut d.out_of_hours, raw.out_of_hours),
    ] {
        if let Some(v) = value {
            *slot = v;
        }
    }
    if let Some(f) = raw.fields {
        d.fields = f;
    }
    d.faq = raw.faq;
    // Compile the patterns now: a bad one is a config error, not a failed call.
    warmline_call::assistant::Assistant::new(d.clone())
        .map_err(|e| err("assistant.fields", e.to_string()))?;
    let http = |key: &str, url: &str| -> Result<(), ConfigError> {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(())
        } else {
            Err(err(key, format!("`{url}` is not an http(s) URL")))
        }
    };
    let timeout = Duration::from_millis(raw.webhook_timeout_ms);
    if !(100..=30_000).contains(&raw.webhook_timeout_ms) {
        return Err(err(
            "assistant.webhook_timeout_ms",
            "must be 100 to 30000 (a caller is waiting)".into(),
        ));
    }
    let api_key = match &raw.openai_api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            err(
                "assistant.openai_api_key_env",
                format!("environment variable `{var}` is not set"),
            )
        })?),
        None => None,
    };
    let briefing = match raw.briefing_url {
        Some(url) => {
            http("assistant.briefing_url", &url)?;
            Some(BriefingSettings {
                url,
                model: raw
                    .briefing_model
                    .unwrap_or_else(|| raw.openai_model.clone()),
                api_key: api_key.clone(),
                timeout,
            })
        }
        None => None,
    };
    let brain = match (raw.webhook_url, raw.openai_url) {
        (Some(_), Some(_)) => {
            return Err(err(
                "assistant.openai_url",
                "set webhook_url or openai_url, not both".into(),
            ));
        }
        (Some(url), None) => {
            http("assistant.webhook_url", &url)?;
            Some(BrainSettings {
                url,
                timeout,
                kind: BrainKind::Webhook,
            })
        }
        (None, Some(url)) => {
            http("assistant.openai_url", &url)?;
            Some(BrainSettings {
                url,
                timeout,
                kind: BrainKind::OpenAi {
                    model: raw.openai_model,
                    api_key,
                },
            })
        }
        (None, None) => None,
    };
    Ok(AssistantSettings {
        enabled: raw.enabled,
        dialogue: d,
        brain,
        briefing,
    })
}

fn routes(
    raw: Vec<RawRoutes>,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Vec<Route>, ConfigError> {
    let mut out: Vec<Route> = Vec::new();
    for r in raw {
        if r.name.trim().is_empty() {
            return Err(err("routes", "a route needs a name".into()));
        }
        if out.iter().any(|o| o.name == r.name) {
            return Err(err("routes", format!("two routes are named `{}`", r.name)));
        }
        if let Some(h) = &r.hours {
            h.validate()
                .map_err(|e| err("routes", format!("route `{}`: hours: {e}", r.name)))?;
        }
        let strategy = match r.strategy.as_str() {
            "sequential" => warmline_call::HuntStrategy::Sequential,
            "round_robin" => warmline_call::HuntStrategy::RoundRobin,
            other => {
                return Err(err(
                    "routes",
                    format!(
                        "route `{}`: strategy `{other}` is not \"sequential\" or \"round_robin\"",
                        r.name
                    ),
                ));
            }
        };
        if let Some(t) = r
            .targets
            .iter()
            .find(|t| !t.starts_with("sip:") || t.len() < 5)
        {
            return Err(err(
                "routes",
                format!("route `{}`: target `{t}` is not a sip: URI", r.name),
            ));
        }
        if !(1..=300).contains(&r.ring_timeout_s) {
            return Err(err(
                "routes",
                format!("route `{}`: ring_timeout_s must be 1 to 300", r.name),
            ));
        }
        let (tz, timezone) = match &r.timezone {
            Some(name) => (
                jiff::tz::TimeZone::get(name).map_err(|e| {
                    err(
                        "routes",
                        format!("route `{}`: timezone `{name}`: {e}", r.name),
                    )
                })?,
                name.clone(),
            ),
            None => (jiff::tz::TimeZone::system(), "system".to_string()),
        };
        out.push(Route {
            name: r.name,
            hours: r.hours,
            tz,
            timezone,
            targets: r.targets,
            strategy,
            ring_timeout: Duration::from_secs(r.ring_timeout_s),
            confirm: r.confirm,
        });
    }
    Ok(out)
}

/// Relative paths in a config file are relative to the file, so a config works from any
/// working directory.
fn resolve(config: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        return file.to_path_buf();
    }
    match config.parent() {
        Some(dir) if config.exists() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    let (transport, addr) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` should look like udp:127.0.0.1:5060"))?;
    let transport = match transport.to_ascii_lowercase().as_str() {
        "udp" => SipTransport::Udp,
        "tcp" => SipTransport::Tcp,
        other => return Err(format!("transport `{other}` is not udp or tcp")),
    };
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|_| format!("`{addr}` is not an ip:port"))?;
    Ok(Listen { transport, addr })
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
/// Our config is flat (one level of tables), so a line scan is exact and keeps the
/// deserialised types free of span wrappers.
fn locate(text: &str, dotted: &str) -> usize {
    let (table, key) = match dotted.split_once('.') {
        Some((t, k)) => (t, k.split(['.', '[']).next().unwrap_or(k)),
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
        assert_eq!((e.line, e.key.as_str()), (2, "sip.listen"));
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
    fn readme_rules_example_parses() {
        let readme = include_str!("../README.md");
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
        assert_eq!(c.routes[0].timezone, "Europe/London");

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
        let e = parse("[[routes]]\nname = \"default\"\nhours = { days = [8], open = \"09:00\", close = \"17:00\" }\n")
            .unwrap_err();
        assert!(e.message.contains("day 8"), "{e}");
        // With routes configured, every rule's route must be one of them (the defaults
        // use `default`).
        let e = parse("[[routes]]\nname = \"billing\"\n").unwrap_err();
        assert!(e.message.contains("route `default`"), "{e}");
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
        let yaml = include_str!("../deploy/k8s/configmap.yaml");
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

    #[test]
    fn toml_syntax_error_has_a_line() {
        let e = parse("[sip]\nmax_calls = = 3\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }
}
