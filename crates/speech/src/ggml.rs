//! Whisper model files (ggml format): a structural check before whisper.cpp sees the file,
//! because whisper.cpp aborts the whole process on some malformed files (an assert on the
//! hyper-parameters, a vocabulary without the " " token), and a writer for tiny models with
//! random weights that tests and benches use instead of downloading one.
//!
//! Layout: magic `0x67676d6c`, 11 × i32 hparams, mel filters (n_mel, n_fft, f32 data), vocab
//! (count, then length-prefixed tokens), then tensors (`n_dims, name_len, type, dims, name,
//! data`) with OpenAI layer names.

use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const MAGIC: u32 = 0x6767_6d6c;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a whisper ggml model: {0}")]
    Invalid(String),
}

/// The hyper-parameters of a model that passed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

fn bad(msg: impl Into<String>) -> ModelError {
    ModelError::Invalid(msg.into())
}

fn read_i32(r: &mut impl Read) -> Result<i32, ModelError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(|_| bad("file ends early"))?;
    Ok(i32::from_le_bytes(b))
}

/// (bytes per block, elements per block) of the ggml types whisper models use.
fn type_size(t: i32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (4, 1),   // F32
        1 => (2, 1),   // F16
        2 => (18, 32), // Q4_0
        3 => (20, 32), // Q4_1
        6 => (22, 32), // Q5_0
        7 => (24, 32), // Q5_1
        8 => (34, 32), // Q8_0
        _ => return None,
    })
}

/// warmline's data directory, where `warmline model fetch` puts models:
/// `$WARMLINE_DATA_DIR`, systemd's `$STATE_DIRECTORY` (the first of them),
/// `$XDG_DATA_HOME/warmline`, or `~/.local/share/warmline`. `None` with none of these set.
pub fn data_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("WARMLINE_DATA_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = var("STATE_DIRECTORY") {
        return d.to_string_lossy().split(':').next().map(PathBuf::from);
    }
    if let Some(d) = var("XDG_DATA_HOME") {
        return Some(PathBuf::from(d).join("warmline"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".local/share/warmline"))
}

/// The whisper models installed in the data directory, smallest first.
pub fn installed_models() -> Vec<std::path::PathBuf> {
    let Some(dir) = data_dir() else {
        return Vec::new();
    };
    ["ggml-tiny.en-q8_0.bin", "ggml-tiny.en.bin", "ggml-base.bin"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .collect()
}

/// Walk the whole file and refuse anything whisper.cpp would choke on.
pub fn validate(path: &Path) -> Result<Hparams, ModelError> {
    let io = |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        return Err(bad(
            "a directory, not a ggml file (a CTranslate2 export? `warmline model fetch` builds a ggml model)",
        ));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    validate_from(BufReader::new(file), len, &path.display().to_string())
}

/// [`validate`] over any seekable bytes of length `len` (`name` for errors): the file's
/// check, also what the fuzz target drives in memory.
pub fn validate_from<R: Read + Seek>(
    mut r: R,
    len: u64,
    name: &str,
) -> Result<Hparams, ModelError> {
    let io = |source| ModelError::Io {
        path: name.to_string(),
        source,
    };
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(|_| bad("empty file"))?;
    if &b == b"GGUF" {
        return Err(bad(
            "a GGUF file (a language model?), not a whisper ggml model: bad magic",
        ));
    }
    if u32::from_le_bytes(b) != MAGIC {
        return Err(bad("bad magic (expected ggml 0x67676d6c)"));
    }
    let mut h = [0i32; 11];
    for v in &mut h {
        *v = read_i32(&mut r)?;
    }
    let hp = Hparams {
        n_vocab: h[0],
        n_audio_ctx: h[1],
        n_audio_state: h[2],
        n_audio_head: h[3],
        n_audio_layer: h[4],
        n_text_ctx: h[5],
        n_text_state: h[6],
        n_text_head: h[7],
        n_text_layer: h[8],
        n_mels: h[9],
        ftype: h[10] % 1000,
    };
    let positive = h[..10].iter().all(|&x| x > 0 && x < 1_000_000);
    if !positive {
        return Err(bad(format!("implausible hyper-parameters {h:?}")));
    }
    if hp.n_text_state != hp.n_audio_state {
        return Err(bad("n_text_state differs from n_audio_state"));
    }
    if hp.n_audio_state % hp.n_audio_head != 0 || hp.n_text_state % hp.n_text_head != 0 {
        return Err(bad("state size not divisible by the head count"));
    }
    if hp.n_vocab < 51864 {
        return Err(bad(format!(
            "n_vocab {} is smaller than whisper's 51864",
            hp.n_vocab
        )));
    }
    // ggml's `ggml_ftype`: F32, F16, Q4_0, Q4_1, Q4_1 with F16 output, Q8_0, Q5_0, Q5_1.
    if !matches!(hp.ftype, 0..=4 | 7..=9) {
        return Err(bad(format!("unknown ftype {}", hp.ftype)));
    }
    let n_mel = read_i32(&mut r)?;
    let n_fft = read_i32(&mut r)?;
    if n_mel != hp.n_mels || !(1..=4096).contains(&n_fft) {
        return Err(bad("mel filter table does not match n_mels"));
    }
    r.seek(SeekFrom::Current(i64::from(n_mel) * i64::from(n_fft) * 4))
        .map_err(|_| bad("file ends in the mel filters"))?;
    let n_words = read_i32(&mut r)?;
    if n_words <= 0 || n_words > hp.n_vocab {
        return Err(bad(format!("vocabulary of {n_words} tokens")));
    }
    let mut has_space = false;
    let mut word = Vec::new();
    for _ in 0..n_words {
        let l = read_i32(&mut r)?;
        if !(0..=1024).contains(&l) {
            return Err(bad("vocabulary token longer than 1 KiB"));
        }
        word.resize(l as usize, 0);
        r.read_exact(&mut word)
            .map_err(|_| bad("file ends in the vocabulary"))?;
        has_space |= word == b" ";
    }
    if !has_space {
        return Err(bad(
            "vocabulary has no \" \" token (whisper.cpp would abort)",
        ));
    }
    // 7 encoder and 4 decoder tensors outside the blocks; 15 per encoder block, 24 per
    // decoder block (self- and cross-attention).
    let expected = 11 + 15 * hp.n_audio_layer as usize + 24 * hp.n_text_layer as usize;
    let mut seen = std::collections::HashSet::new();
    loop {
        let pos = r.stream_position().map_err(io)?;
        if pos == len {
            break;
        }
        let t = TensorHeader::read(&mut r, pos)?;
        let size = t.data_bytes()?;
        let (name, ttype) = (t.name, t.ttype);
        let here = r.stream_position().map_err(io)?;
        if here + size > len {
            return Err(bad(format!(
                "tensor `{name}` runs past the end of the file"
            )));
        }
        r.seek(SeekFrom::Current(size as i64)).map_err(io)?;
        // The conv kernels of this whisper.cpp build require F16 and abort otherwise.
        if name.contains(".conv") && name.ends_with(".weight") && ttype != 1 {
            return Err(bad(format!(
                "tensor `{name}` must be F16 (whisper.cpp would abort)"
            )));
        }
        seen.insert(name);
    }
    if seen.len() != expected {
        return Err(bad(format!(
            "{} tensors, the hyper-parameters need {expected}",
            seen.len()
        )));
    }
    Ok(hp)
}

/// One tensor's header: `n_dims, name_len, type, dims…, name`; its data follows.
struct TensorHeader {
    ttype: i32,
    dims: Vec<i32>,
    name: String,
}

impl TensorHeader {
    /// The header at byte `pos`, refusing what whisper.cpp would choke on.
    fn read(r: &mut impl Read, pos: u64) -> Result<Self, ModelError> {
        let n_dims = read_i32(r)?;
        let name_len = read_i32(r)?;
        let ttype = read_i32(r)?;
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(bad(format!("bad tensor header at byte {pos}")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = read_i32(r)?;
            if d <= 0 {
                return Err(bad(format!("bad tensor dimension at byte {pos}")));
            }
            dims.push(d);
        }
        let mut name = vec![0u8; name_len as usize];
        r.read_exact(&mut name)
            .map_err(|_| bad("file ends in a tensor name"))?;
        let name = String::from_utf8_lossy(&name).into_owned();
        if !(name.starts_with("encoder.") || name.starts_with("decoder.")) {
            return Err(bad(format!("unknown tensor `{name}`")));
        }
        Ok(Self { ttype, dims, name })
    }

    fn elements(&self) -> u64 {
        self.dims
            .iter()
            .fold(1u64, |n, &d| n.saturating_mul(d as u64))
    }

    /// Bytes of data after the header.
    fn data_bytes(&self) -> Result<u64, ModelError> {
        let (bytes, per) = type_size(self.ttype).ok_or_else(|| {
            bad(format!(
                "tensor `{}` has unknown type {}",
                self.name, self.ttype
            ))
        })?;
        Ok(self.elements() / per * bytes)
    }

    fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut h = Vec::with_capacity(12 + 4 * self.dims.len() + self.name.len());
        h.extend((self.dims.len() as i32).to_le_bytes());
        h.extend((self.name.len() as i32).to_le_bytes());
        h.extend(self.ttype.to_le_bytes());
        for d in &self.dims {
            h.extend(d.to_le_bytes());
        }
        h.extend(self.name.as_bytes());
        w.write_all(&h)
    }
}

/// The `ftype` of a model whose matrices are Q8_0 (ggml's `GGML_FTYPE_MOSTLY_Q8_0`), with
/// the quantization version whisper.cpp 1.8 reads (`GGML_QNT_VERSION` 2, times 1000).
const FTYPE_Q8_0: i32 = 2 * 1000 + 7;
const TYPE_Q8_0: i32 = 8;
/// Q8_0: 32 weights share one f16 scale.
const Q8_BLOCK: usize = 32;
/// Tensors whisper.cpp's `quantize` leaves as they are (besides every tensor that is not a
/// matrix): the conv biases and the position tables.
const KEEP_UNQUANTIZED: &[&str] = &[
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
];

/// Write `src` (an F16 or F32 model) with its matrices in Q8_0, as whisper.cpp's
/// `quantize … q8_0` does: every 2-D tensor but the position tables, each row in blocks
/// of 32 with one f16 scale (`max |x| / 127`), rounded half away from zero. Written by
/// hand because the format is this small and no crate writes ggml's legacy (non-GGUF)
/// whisper files. The matrices are half the size, and the CPU multiplies them with
/// 8-bit integer dot products instead of converting f16: `benches/stt_latency.rs`
/// prints what that buys. The output appears whole or not at all (written beside, then
/// renamed).
pub fn quantize_q8_0(src: &Path, dst: &Path) -> Result<(), ModelError> {
    let hp = validate(src)?;
    if hp.ftype != 0 && hp.ftype != 1 {
        return Err(bad(format!(
            "already quantized (ftype {}): quantize an F16 model",
            hp.ftype
        )));
    }
    let part = dst.with_extension("part");
    let io_at = |path: &Path| {
        let path = path.display().to_string();
        move |source| ModelError::Io {
            path: path.clone(),
            source,
        }
    };
    let result = (|| {
        let mut r = BufReader::new(std::fs::File::open(src).map_err(io_at(src))?);
        let out = std::fs::File::create(&part).map_err(io_at(&part))?;
        let mut w = BufWriter::new(out);
        let werr = io_at(&part);
        // Magic and the first ten hyper-parameters as they are, then the new ftype.
        copy_n(&mut r, &mut w, 4 + 40, &werr)?;
        read_i32(&mut r)?;
        let mut head: Vec<u8> = FTYPE_Q8_0.to_le_bytes().to_vec();
        let n_mel = read_i32(&mut r)?;
        let n_fft = read_i32(&mut r)?;
        head.extend(n_mel.to_le_bytes());
        head.extend(n_fft.to_le_bytes());
        w.write_all(&head).map_err(&werr)?;
        copy_n(&mut r, &mut w, n_mel as u64 * n_fft as u64 * 4, &werr)?;
        let n_words = read_i32(&mut r)?;
        let mut vocab = n_words.to_le_bytes().to_vec();
        for _ in 0..n_words {
            let l = read_i32(&mut r)?;
            vocab.extend(l.to_le_bytes());
            let mut word = vec![0u8; l as usize];
            r.read_exact(&mut word)
                .map_err(|_| bad("file ends early"))?;
            vocab.extend(word);
        }
        w.write_all(&vocab).map_err(&werr)?;
        let mut row: Vec<f32> = Vec::new();
        let mut raw: Vec<u8> = Vec::new();
        let mut packed: Vec<u8> = Vec::new();
        // validate() walked the same file: it ends at a tensor boundary.
        let len = std::fs::metadata(src).map_err(io_at(src))?.len();
        let mut pos = r.stream_position().map_err(io_at(src))?;
        while pos < len {
            let mut t = TensorHeader::read(&mut r, pos)?;
            let size = t.data_bytes()?;
            let quantize = t.dims.len() == 2
                && (t.ttype == 0 || t.ttype == 1)
                && t.dims[0] as usize % Q8_BLOCK == 0
                && !KEEP_UNQUANTIZED.contains(&t.name.as_str());
            let width = if t.ttype == 1 { 2 } else { 4 };
            if quantize {
                t.ttype = TYPE_Q8_0;
            }
            t.write(&mut w).map_err(&werr)?;
            if !quantize {
                copy_n(&mut r, &mut w, size, &werr)?;
            } else {
                let cols = t.dims[0] as usize;
                raw.resize(cols * width, 0);
                for _ in 0..t.elements() / cols as u64 {
                    r.read_exact(&mut raw).map_err(|_| bad("file ends early"))?;
                    row.clear();
                    row.extend(raw.chunks_exact(width).map(|c| match c {
                        [a, b] => half::f16::from_le_bytes([*a, *b]).to_f32(),
                        _ => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    }));
                    packed.clear();
                    q8_0_row(&row, &mut packed);
                    w.write_all(&packed).map_err(&werr)?;
                }
            }
            pos = r.stream_position().map_err(io_at(src))?;
        }
        let file = w.into_inner().map_err(|e| werr(e.into_error()))?;
        file.sync_all().map_err(&werr)?;
        drop(file);
        validate(&part)?;
        std::fs::rename(&part, dst).map_err(io_at(dst))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

fn copy_n(
    r: &mut impl Read,
    w: &mut impl Write,
    n: u64,
    err: &impl Fn(std::io::Error) -> ModelError,
) -> Result<(), ModelError> {
    if std::io::copy(&mut r.take(n), w).map_err(err)? != n {
        return Err(bad("file ends early"));
    }
    Ok(())
}

/// One row in Q8_0 blocks, as ggml's `quantize_row_q8_0_ref`.
pub fn q8_0_row(x: &[f32], out: &mut Vec<u8>) {
    for block in x.chunks(Q8_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(half::f16::from_f32(d).to_le_bytes());
        for &v in block {
            // `as i8` saturates; x·id is within ±127 by construction.
            out.push((v * id).round() as i8 as u8);
        }
    }
}

/// Dimensions of a generated model.
#[derive(Debug, Clone, Copy)]
pub struct TinySpec {
    pub n_state: i32,
    pub n_head: i32,
    pub n_layer: i32,
    pub n_text_ctx: i32,
    pub seed: u64,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            n_state: 64,
            n_head: 2,
            n_layer: 1,
            n_text_ctx: 64,
            seed: 7,
        }
    }
}

/// Write a model in the real format (F16 weights as the converters write them, English-only
/// vocabulary size) with small random weights: it loads and runs like any whisper model,
/// fast, and transcribes nothing useful. For tests and benches of loading, the worker pool
/// and timing, never of accuracy.
pub fn write_tiny_model(path: &Path, spec: TinySpec) -> std::io::Result<()> {
    let mut m = ModelWriter {
        w: BufWriter::new(std::fs::File::create(path)?),
        rng: spec.seed | 1,
        s: spec.n_state,
    };
    let s = spec.n_state;
    let (n_vocab, n_audio_ctx, n_mels) = (51864, 1500, 80);
    m.w.write_all(&MAGIC.to_le_bytes())?;
    for v in [
        n_vocab,
        n_audio_ctx,
        s,
        spec.n_head,
        spec.n_layer,
        spec.n_text_ctx,
        s,
        spec.n_head,
        spec.n_layer,
        n_mels,
        1,
    ] {
        m.i32(v)?;
    }
    // Mel filters: 80 × 201 (n_fft / 2 + 1).
    m.i32(n_mels)?;
    m.i32(201)?;
    for _ in 0..n_mels * 201 {
        let v = m.random().abs();
        m.w.write_all(&v.to_le_bytes())?;
    }
    // Vocabulary: the 256 bytes (so " " is token 32), then some word pieces.
    let words: Vec<Vec<u8>> = (0u32..1000)
        .map(|i| {
            if i < 256 {
                vec![i as u8]
            } else {
                format!(" w{i}").into_bytes()
            }
        })
        .collect();
    m.i32(words.len() as i32)?;
    for word in &words {
        m.i32(word.len() as i32)?;
        m.w.write_all(word)?;
    }
    use Fill::*;
    m.tensor("encoder.positional_embedding", &[s, n_audio_ctx], Random)?;
    m.tensor("encoder.conv1.weight", &[3, n_mels, s], Random)?;
    m.tensor("encoder.conv1.bias", &[1, s], Zeros)?;
    m.tensor("encoder.conv2.weight", &[3, s, s], Random)?;
    m.tensor("encoder.conv2.bias", &[1, s], Zeros)?;
    m.tensor("encoder.ln_post.weight", &[s], Ones)?;
    m.tensor("encoder.ln_post.bias", &[s], Zeros)?;
    for i in 0..spec.n_layer {
        m.block(&format!("encoder.blocks.{i}"), false)?;
    }
    m.tensor(
        "decoder.positional_embedding",
        &[s, spec.n_text_ctx],
        Random,
    )?;
    m.tensor("decoder.token_embedding.weight", &[s, n_vocab], Random)?;
    m.tensor("decoder.ln.weight", &[s], Ones)?;
    m.tensor("decoder.ln.bias", &[s], Zeros)?;
    for i in 0..spec.n_layer {
        m.block(&format!("decoder.blocks.{i}"), true)?;
    }
    m.w.flush()
}

struct ModelWriter {
    w: BufWriter<std::fs::File>,
    rng: u64,
    s: i32,
}

impl ModelWriter {
    fn i32(&mut self, v: i32) -> std::io::Result<()> {
        self.w.write_all(&v.to_le_bytes())
    }

    /// Uniform in ±0.02, deterministic.
    fn random(&mut self) -> f32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        ((self.rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04
    }

    fn tensor(&mut self, name: &str, dims: &[i32], fill: Fill) -> std::io::Result<()> {
        // Matrices (and conv kernels) are F16, vectors and embeddings of positions F32,
        // as whisper.cpp creates them for ftype 1.
        let half = dims.len() >= 2 && name.ends_with(".weight") && !name.contains("ln");
        self.i32(dims.len() as i32)?;
        self.i32(name.len() as i32)?;
        self.i32(i32::from(half))?;
        for d in dims {
            self.i32(*d)?;
        }
        self.w.write_all(name.as_bytes())?;
        let n: i32 = dims.iter().product();
        for _ in 0..n {
            let v = match fill {
                Fill::Random => self.random(),
                Fill::Ones => 1.0,
                Fill::Zeros => 0.0,
            };
            if half {
                self.w.write_all(&f16_bits(v).to_le_bytes())?;
            } else {
                self.w.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    }

    /// One transformer block; decoder blocks also have cross-attention.
    fn block(&mut self, prefix: &str, cross: bool) -> std::io::Result<()> {
        use Fill::*;
        let s = self.s;
        self.tensor(&format!("{prefix}.mlp_ln.weight"), &[s], Ones)?;
        self.tensor(&format!("{prefix}.mlp_ln.bias"), &[s], Zeros)?;
        self.tensor(&format!("{prefix}.mlp.0.weight"), &[s, 4 * s], Random)?;
        self.tensor(&format!("{prefix}.mlp.0.bias"), &[4 * s], Zeros)?;
        self.tensor(&format!("{prefix}.mlp.2.weight"), &[4 * s, s], Random)?;
        self.tensor(&format!("{prefix}.mlp.2.bias"), &[s], Zeros)?;
        let kinds: &[&str] = if cross {
            &["attn", "cross_attn"]
        } else {
            &["attn"]
        };
        for attn in kinds {
            self.tensor(&format!("{prefix}.{attn}_ln.weight"), &[s], Ones)?;
            self.tensor(&format!("{prefix}.{attn}_ln.bias"), &[s], Zeros)?;
            self.tensor(&format!("{prefix}.{attn}.query.weight"), &[s, s], Random)?;
            self.tensor(&format!("{prefix}.{attn}.query.bias"), &[s], Zeros)?;
            self.tensor(&format!("{prefix}.{attn}.key.weight"), &[s, s], Random)?;
            self.tensor(&format!("{prefix}.{attn}.value.weight"), &[s, s], Random)?;
            self.tensor(&format!("{prefix}.{attn}.value.bias"), &[s], Zeros)?;
            self.tensor(&format!("{prefix}.{attn}.out.weight"), &[s, s], Random)?;
            self.tensor(&format!("{prefix}.{attn}.out.bias"), &[s], Zeros)?;
        }
        Ok(())
    }
}

/// IEEE 754 half from single, round-to-nearest on the mantissa; enough for weights in
/// [-1, 1] (no NaN or infinity handling needed).
fn f16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = b & 0x7f_ffff;
    if exp <= 0 {
        if exp < -10 {
            return sign;
        }
        let m = (mant | 0x80_0000) >> (1 - exp);
        return sign | ((m + 0x1000) >> 13) as u16;
    }
    if exp >= 31 {
        return sign | 0x7c00;
    }
    sign | ((exp as u16) << 10) | (((mant + 0x1000) >> 13) as u16).min(0x3ff)
}

#[derive(Debug, Clone, Copy)]
enum Fill {
    Random,
    Ones,
    Zeros,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_blocks_hold_a_scale_and_rounded_weights() {
        // One block: the largest magnitude maps to ±127, halves round away from zero.
        let mut x = vec![0.0f32; 32];
        x[0] = 1.27;
        x[1] = -1.27;
        x[2] = 0.005; // 0.5 steps: rounds away from zero, to 1
        x[3] = -0.015; // -1.5 steps: to -2
        let mut out = Vec::new();
        q8_0_row(&x, &mut out);
        assert_eq!(out.len(), 34);
        let d = half::f16::from_le_bytes([out[0], out[1]]).to_f32();
        assert!((d - 0.01).abs() < 1e-5, "scale {d}");
        let q: Vec<i8> = out[2..].iter().map(|&b| b as i8).collect();
        assert_eq!(&q[..5], &[127, -127, 1, -2, 0]);
        // An all-zero block has scale 0 and zero weights, not NaN.
        out.clear();
        q8_0_row(&[0.0; 32], &mut out);
        assert!(out.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_quantized_model_is_whole_valid_and_half_the_size_or_absent() {
        let dir = std::env::temp_dir().join(format!("wl-q8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f16 = dir.join("tiny.bin");
        write_tiny_model(&f16, TinySpec::default()).unwrap();
        let q8 = dir.join("tiny-q8_0.bin");
        quantize_q8_0(&f16, &q8).unwrap();
        let hp = validate(&q8).unwrap();
        assert_eq!(hp.ftype, 7, "GGML_FTYPE_MOSTLY_Q8_0");
        let (a, b) = (
            std::fs::metadata(&f16).unwrap().len(),
            std::fs::metadata(&q8).unwrap().len(),
        );
        // The token embedding (51864 x 64) dominates: 2 bytes a weight become 34/32.
        assert!(b < a * 6 / 10, "{a} -> {b} bytes");
        // Deterministic: the same source writes the same bytes (the fetch pins a sha256).
        let again = dir.join("again.bin");
        quantize_q8_0(&f16, &again).unwrap();
        assert_eq!(std::fs::read(&q8).unwrap(), std::fs::read(&again).unwrap());
        // Quantizing twice is refused; a damaged source leaves nothing behind.
        let err = quantize_q8_0(&q8, &dir.join("twice.bin")).unwrap_err();
        assert!(err.to_string().contains("already quantized"), "{err}");
        let bytes = std::fs::read(&f16).unwrap();
        let cut = dir.join("cut.bin");
        std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
        let out = dir.join("from-cut.bin");
        assert!(quantize_q8_0(&cut, &out).is_err());
        assert!(!out.exists() && !out.with_extension("part").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn generated_model_passes_and_damaged_ones_fail() {
        let dir = std::env::temp_dir().join(format!("wl-ggml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("tiny.bin");
        write_tiny_model(&good, TinySpec::default()).unwrap();
        let hp = validate(&good).unwrap();
        assert_eq!(hp.n_audio_state, 64);
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(-0.5), 0xb800);
        assert_eq!(f16_bits(0.0), 0);
        let bytes = std::fs::read(&good).unwrap();

        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", bytes[..bytes.len() / 2].to_vec()),
            ("bad magic", [b"xxxx".as_slice(), &bytes[4..]].concat()),
            ("empty", Vec::new()),
            ("text", b"this is not a model at all".to_vec()),
        ];
        for (what, data) in cases {
            let p = dir.join(format!("{}.bin", what.replace(' ', "_")));
            std::fs::write(&p, data).unwrap();
            assert!(validate(&p).is_err(), "{what} must be refused");
        }
        // A vocabulary without " " makes whisper.cpp abort; the check must catch it.
        let mut nospace = bytes.clone();
        let vocab_at = 4 + 44 + 8 + 80 * 201 * 4 + 4;
        // Token 32 is the 33rd entry: 32 one-byte entries of 5 bytes each before it.
        let tok32 = vocab_at + 32 * 5 + 4;
        assert_eq!(nospace[tok32], b' ');
        nospace[tok32] = b'_';
        let p = dir.join("nospace.bin");
        std::fs::write(&p, nospace).unwrap();
        assert!(validate(&p).unwrap_err().to_string().contains("\" \""));
        assert!(validate(&dir.join("missing.bin")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
