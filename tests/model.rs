//! `warmline model` and bad model input: every failure is a clear error naming the command
//! or key and the reason, never an abort inside whisper.cpp, and a half-written file is
//! never taken for a model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn warmline(args: &[&str], data_dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warmline"))
        .args(args)
        .env("WARMLINE_DATA_DIR", data_dir)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_unknown_model_or_an_unusable_data_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = warmline(&["model", "fetch", "large-v9"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("model fetch: unknown model `large-v9`"),
        "{}",
        stderr(&o)
    );
    // A data directory that cannot be made: the command fails naming it.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let o = warmline(&["model", "fetch", "tiny.en"], &blocker.join("sub"));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("error: model fetch tiny.en: data directory") && e.contains("sub"),
        "{e}"
    );
}

#[test]
fn a_half_written_model_is_never_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    // What an interrupted fetch leaves: the partial file, and a truncated final name.
    std::fs::write(dir.path().join("ggml-tiny.en.bin.partial"), b"lmgg\x00").unwrap();
    std::fs::write(dir.path().join("ggml-base.bin"), b"lmgg").unwrap();
    let o = warmline(&["model", "list"], dir.path());
    assert!(o.status.success());
    let e = stderr(&o);
    assert!(e.contains("tiny.en      (not installed"), "{e}");
    assert!(e.contains("tiny.en-q8_0 (not installed"), "{e}");
    assert!(e.contains("base         (not installed"), "{e}");
}

#[test]
fn models_of_the_wrong_kind_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // A GGUF language model, a CTranslate2 export directory, a truncated ggml file.
    let gguf = dir.path().join("llama.gguf");
    std::fs::write(&gguf, b"GGUF\x03\x00\x00\x00\x00\x00\x00\x00").unwrap();
    let ct2 = dir.path().join("ct2-model");
    std::fs::create_dir(&ct2).unwrap();
    std::fs::write(ct2.join("model.bin"), b"\x06\x00\x00\x00").unwrap();
    let short = dir.path().join("short.bin");
    std::fs::write(&short, b"lmgg\x00\x00").unwrap();
    for (model, reason) in [
        (&gguf, "bad magic"),
        (&ct2, "a directory, not a ggml file"),
        (&short, "not a whisper ggml model"),
    ] {
        let cfg = dir.path().join("warmline.toml");
        std::fs::write(
            &cfg,
            format!("[speech]\nwhisper_model = \"{}\"\n", model.display()),
        )
        .unwrap();
        let o = warmline(
            &["check-config", "--config", cfg.to_str().unwrap()],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(":2: key `speech.whisper_model`") && e.contains(reason),
            "{}: {e}",
            model.display()
        );
    }
}
