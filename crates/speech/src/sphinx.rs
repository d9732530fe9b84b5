//! The zero-download recognizer: Debian's `pocketsphinx-en-us` model through a small FFI to
//! libpocketsphinx 0.8 (`libpocketsphinx-dev`). No crate binds this version, so the dozen
//! calls we need are declared here; every `unsafe` block is one C call on pointers this
//! module owns.
//!
//! The decoder's live cepstral-mean normalisation carries over from one utterance to the
//! next, so a decoder does best on one kind of channel; workers see telephone audio only.
//!
//! Two searches run over each utterance: keyword spotting for phrases said inside free
//! speech (escalation phrases, slot words), and a JSGF grammar for short answers (yes/no,
//! digits). Keyword spotting is what works on telephone audio; the full language model does
//! not (see ARCHITECTURE.md).

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::Write;
use std::path::{Path, PathBuf};

#[repr(C)]
struct PsDecoder {
    _p: [u8; 0],
}
#[repr(C)]
struct CmdLn {
    _p: [u8; 0],
}
#[repr(C)]
struct PsSeg {
    _p: [u8; 0],
}

#[link(name = "pocketsphinx")]
#[link(name = "sphinxbase")]
unsafe extern "C" {
    fn ps_args() -> *const c_void;
    fn cmd_ln_parse_r(
        inout: *mut CmdLn,
        defn: *const c_void,
        argc: i32,
        argv: *const *const c_char,
        strict: i32,
    ) -> *mut CmdLn;
    fn cmd_ln_free_r(cmdln: *mut CmdLn) -> c_int;
    fn ps_init(config: *mut CmdLn) -> *mut PsDecoder;
    fn ps_free(ps: *mut PsDecoder) -> c_int;
    fn ps_set_kws(ps: *mut PsDecoder, name: *const c_char, keyfile: *const c_char) -> c_int;
    fn ps_set_jsgf_string(ps: *mut PsDecoder, name: *const c_char, jsgf: *const c_char) -> c_int;
    fn ps_set_search(ps: *mut PsDecoder, name: *const c_char) -> c_int;
    fn ps_start_utt(ps: *mut PsDecoder) -> c_int;
    fn ps_process_raw(
        ps: *mut PsDecoder,
        data: *const i16,
        n_samples: usize,
        no_search: c_int,
        full_utt: c_int,
    ) -> c_int;
    fn ps_end_utt(ps: *mut PsDecoder) -> c_int;
    fn ps_get_hyp(ps: *mut PsDecoder, out_best_score: *mut i32) -> *const c_char;
    fn ps_get_prob(ps: *mut PsDecoder) -> i32;
    fn ps_seg_iter(ps: *mut PsDecoder) -> *mut PsSeg;
    fn ps_seg_next(seg: *mut PsSeg) -> *mut PsSeg;
    fn ps_seg_word(seg: *mut PsSeg) -> *const c_char;
    fn ps_seg_frames(seg: *mut PsSeg, sf: *mut c_int, ef: *mut c_int);
    fn ps_seg_prob(seg: *mut PsSeg, ascr: *mut i32, lscr: *mut i32, lback: *mut i32) -> i32;
}

/// Where Debian's `pocketsphinx-en-us` puts its model.
pub const DEBIAN_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";

#[derive(Debug, thiserror::Error)]
pub enum SphinxError {
    #[error("pocketsphinx model not found at {0} (apt-get install pocketsphinx-en-us)")]
    NoModel(PathBuf),
    #[error("pocketsphinx rejected its configuration")]
    Config,
    #[error("pocketsphinx could not load the {0} search")]
    Search(&'static str),
    #[error("pocketsphinx failed while decoding")]
    Decode,
    #[error("text for pocketsphinx contains a NUL byte")]
    Nul,
}

/// A phrase found in an utterance, with where it was (seconds from the utterance start) and
/// pocketsphinx's posterior as a probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Spotted {
    pub phrase: String,
    pub start: f32,
    pub end: f32,
    pub probability: f32,
}

/// One decoder (not thread-safe: pocketsphinx decoders are single-threaded). A worker owns
/// one, built on its own thread; the raw pointers keep it there (`!Send`).
#[derive(Debug)]
pub struct Sphinx {
    ps: *mut PsDecoder,
    config: *mut CmdLn,
    has_grammar: bool,
    has_sentence_search: bool,
}

/// What to listen for.
#[derive(Debug, Clone)]
pub struct SphinxSetup {
    pub model_dir: PathBuf,
    /// Phrases to spot in a short turn, each with its detection threshold (e.g. 1e-30;
    /// longer phrases take smaller thresholds).
    pub keyphrases: Vec<(String, f64)>,
    /// Phrases to spot in a longer turn ([`Sphinx::spot_in_sentence`]); may be empty.
    pub sentence_phrases: Vec<(String, f64)>,
    /// Words of the short-answer grammar (yes/no, digits, slot words); empty = no grammar.
    pub grammar_words: Vec<String>,
}

impl SphinxSetup {
    /// What warmline listens for on calls: the escalation keywords in free speech, and
    /// yes/no and digits as short answers, on Debian's model.
    pub fn escalation() -> Self {
        Self {
            model_dir: DEBIAN_MODEL_DIR.into(),
            keyphrases: owned(crate::ESCALATION_KEYWORDS),
            sentence_phrases: owned(crate::ESCALATION_PHRASES),
            grammar_words: [
                "yes", "no", "zero", "one", "two", "three", "four", "five", "six", "seven",
                "eight", "nine",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

fn owned(phrases: &[(&str, f64)]) -> Vec<(String, f64)> {
    phrases.iter().map(|(p, t)| (p.to_string(), *t)).collect()
}

fn cstr(s: &str) -> Result<CString, SphinxError> {
    CString::new(s).map_err(|_| SphinxError::Nul)
}

impl Sphinx {
    pub fn new(setup: &SphinxSetup) -> Result<Self, SphinxError> {
        let dir = &setup.model_dir;
        let hmm = dir.join("en-us");
        let dict = dir.join("cmudict-en-us.dict");
        if !hmm.is_dir() || !dict.is_file() {
            return Err(SphinxError::NoModel(dir.clone()));
        }
        let args: Vec<CString> = [
            "warmline",
            "-hmm",
            &hmm.to_string_lossy(),
            "-dict",
            &dict.to_string_lossy(),
            "-samprate",
            "16000",
            "-logfn",
            "/dev/null",
            "-kws_threshold",
            "1e-30",
        ]
        .iter()
        .map(|s| cstr(s))
        .collect::<Result<_, _>>()?;
        let argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
        // SAFETY: argv points at NUL-terminated strings that outlive the call;
        // ps_args() returns a static table.
        let config = unsafe {
            cmd_ln_parse_r(
                std::ptr::null_mut(),
                ps_args(),
                argv.len() as i32,
                argv.as_ptr(),
                1,
            )
        };
        if config.is_null() {
            return Err(SphinxError::Config);
        }
        // SAFETY: config is a valid cmd_ln_t we own; ps_init takes its own reference.
        let ps = unsafe { ps_init(config) };
        if ps.is_null() {
            // SAFETY: config came from cmd_ln_parse_r and is freed once.
            unsafe { cmd_ln_free_r(config) };
            return Err(SphinxError::Config);
        }
        let mut me = Sphinx {
            ps,
            config,
            has_grammar: false,
            has_sentence_search: false,
        };
        me.add_kws("kws", &setup.keyphrases)?;
        if !setup.sentence_phrases.is_empty() {
            me.add_kws("sentence", &setup.sentence_phrases)?;
            me.has_sentence_search = true;
        }
        if !setup.grammar_words.is_empty() {
            let words: Vec<String> = setup
                .grammar_words
                .iter()
                .map(|w| w.to_lowercase().replace(['|', ';', '<', '>', '(', ')'], ""))
                .collect();
            let jsgf = format!(
                "#JSGF V1.0;\ngrammar answers;\npublic <answer> = ( {} )+;\n",
                words.join(" | ")
            );
            let name = cstr("answers")?;
            let text = cstr(&jsgf)?;
            // SAFETY: as above.
            if unsafe { ps_set_jsgf_string(me.ps, name.as_ptr(), text.as_ptr()) } < 0 {
                return Err(SphinxError::Search("grammar"));
            }
            me.has_grammar = true;
        }
        Ok(me)
    }

    fn run(&mut self, search: &str, pcm: &[i16]) -> Result<(), SphinxError> {
        let name = cstr(search)?;
        // SAFETY: ps is live, name outlives the call, pcm is a valid slice of n samples.
        unsafe {
            if ps_set_search(self.ps, name.as_ptr()) < 0 || ps_start_utt(self.ps) < 0 {
                return Err(SphinxError::Decode);
            }
            // Fed in blocks like a live stream (as pocketsphinx_continuous does): with the
            // whole utterance at once (`full_utt`) keyword spotting misses words it finds
            // this way.
            for block in pcm.chunks(2048) {
                if ps_process_raw(self.ps, block.as_ptr(), block.len(), 0, 0) < 0 {
                    ps_end_utt(self.ps);
                    return Err(SphinxError::Decode);
                }
            }
            if ps_end_utt(self.ps) < 0 {
                return Err(SphinxError::Decode);
            }
        }
        Ok(())
    }

    /// A keyword search named `name` over `phrases` (each with its threshold). pocketsphinx
    /// reads the list when the search is set, so the file is gone when this returns: a
    /// decoder that never drops (a killed process) leaves nothing in the temp directory.
    fn add_kws(&mut self, name: &str, phrases: &[(String, f64)]) -> Result<(), SphinxError> {
        let list: String = phrases
            .iter()
            .map(|(p, t)| format!("{} /{t:e}/\n", p.to_lowercase()))
            .collect();
        let mut file = tempfile::Builder::new()
            .prefix("warmline-kws-")
            .tempfile()
            .map_err(|_| SphinxError::Search("keyword"))?;
        file.write_all(list.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|_| SphinxError::Search("keyword"))?;
        let c_name = cstr(name)?;
        let c_file = cstr(&file.path().to_string_lossy())?;
        // SAFETY: ps is live; both strings are NUL-terminated and outlive the call.
        if unsafe { ps_set_kws(self.ps, c_name.as_ptr(), c_file.as_ptr()) } < 0 {
            return Err(SphinxError::Search("keyword"));
        }
        Ok(())
    }

    /// Segments of the last run, frames at 100 per second.
    fn segments(&mut self) -> Vec<Spotted> {
        let mut out = Vec::new();
        // SAFETY: the iterator belongs to ps and is advanced until null, which frees it.
        unsafe {
            let mut seg = ps_seg_iter(self.ps);
            while !seg.is_null() {
                let word = ps_seg_word(seg);
                let (mut sf, mut ef) = (0, 0);
                ps_seg_frames(seg, &mut sf, &mut ef);
                let (mut a, mut l, mut b) = (0, 0, 0);
                let prob = ps_seg_prob(seg, &mut a, &mut l, &mut b);
                if !word.is_null() {
                    let w = CStr::from_ptr(word).to_string_lossy().into_owned();
                    if !w.starts_with('<') && !w.starts_with('[') {
                        out.push(Spotted {
                            // Keyphrases come back with a trailing space, and
                            // dictionary variants as "word(2)".
                            phrase: w
                                .trim_end_matches(|c: char| {
                                    c == ')' || c.is_ascii_digit() || c == '(' || c == ' '
                                })
                                .to_string(),
                            start: sf as f32 / 100.0,
                            end: (ef + 1) as f32 / 100.0,
                            probability: logmath_to_prob(prob),
                        });
                    }
                }
                seg = ps_seg_next(seg);
            }
        }
        out
    }

    /// Keyword spotting over one utterance of 16 kHz mono audio.
    pub fn spot(&mut self, pcm: &[i16]) -> Result<Vec<Spotted>, SphinxError> {
        self.run("kws", pcm)?;
        Ok(self.segments())
    }

    /// Spotting of [`SphinxSetup::sentence_phrases`] (none when there are none). A search
    /// of its own: in one search, a phrase and a word it ends with compete for the same
    /// frames, and the lone word won.
    pub fn spot_in_sentence(&mut self, pcm: &[i16]) -> Result<Vec<Spotted>, SphinxError> {
        if !self.has_sentence_search {
            return Ok(Vec::new());
        }
        self.run("sentence", pcm)?;
        Ok(self.segments())
    }

    /// The short-answer grammar over one utterance: the words and the utterance posterior.
    pub fn answer(&mut self, pcm: &[i16]) -> Result<Option<(String, f32)>, SphinxError> {
        if !self.has_grammar {
            return Ok(None);
        }
        self.run("answers", pcm)?;
        let mut score = 0;
        // SAFETY: ps is live; the hypothesis string belongs to ps and is copied at once.
        let hyp = unsafe {
            let h = ps_get_hyp(self.ps, &mut score);
            if h.is_null() {
                return Ok(None);
            }
            CStr::from_ptr(h).to_string_lossy().into_owned()
        };
        // SAFETY: ps is live.
        let prob = logmath_to_prob(unsafe { ps_get_prob(self.ps) });
        Ok((!hyp.trim().is_empty()).then(|| (hyp.trim().to_string(), prob)))
    }

    pub fn model_dir_ok(dir: &Path) -> bool {
        dir.join("en-us").is_dir() && dir.join("cmudict-en-us.dict").is_file()
    }
}

/// pocketsphinx scores are log base 1.0001.
fn logmath_to_prob(score: i32) -> f32 {
    (f64::from(score) * 1.0001f64.ln()).exp().clamp(0.0, 1.0) as f32
}

impl Drop for Sphinx {
    fn drop(&mut self) {
        // SAFETY: both were created in `new` and are freed exactly once here.
        unsafe {
            ps_free(self.ps);
            cmd_ln_free_r(self.config);
        }
    }
}
