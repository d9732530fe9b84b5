//! Escalation accuracy, end to end: CI's fixed subset of the labelled calls
//! (`benches/accuracy/cases.py`, every category) played through this binary by SIPp over
//! SIP with G.711 RTP, three at a time, with the real whisper model, and scored from the
//! audit trail. Fails below 90 % right triggers or above 5 % false
//! escalations, and when a call leaves no audit trail. The whole set (81 calls) is `benches/accuracy.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::PathBuf;
use std::process::Command;

fn model() -> PathBuf {
    if let Some(p) = std::env::var_os("WARMLINE_WHISPER_MODEL") {
        return p.into();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_warmline"))
        .args(["model", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("tiny.en-q8_0").map(str::trim))
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from);
    path.unwrap_or_else(|| {
        panic!(
            "no whisper tiny.en-q8_0 model installed ({text}): run `cargo run -- model fetch` (the README's test command does)"
        )
    })
}

#[test]
fn escalations_fire_for_the_right_reason_on_calls_that_sound_like_people() {
    common::require_sipp();
    common::require("espeak-ng");
    common::require("sox");
    let model = model();
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(common::scenarios().join("../benches/accuracy/run.py"))
        .args([
            "--bin",
            env!("CARGO_BIN_EXE_warmline"),
            "--subset",
            "ci",
            "--check",
        ])
        // The gate. 21 should-escalate calls: tiny.en-q8_0 mishears one ("Representative."
        // said by en-us-nyc: 20/21 = 95.2 %); a second miss still passes, a third fails.
        .args(["--min-right", "0.90", "--max-false", "0.05"])
        // The gate is about hearing right, not fast (`benches/accuracy.sh` prints the
        // latency): each caller stays 30 s after its last turn, so a box another process
        // loads still hears every turn before the caller hangs up. With a `yes` hog on
        // one of 2 cores, three callers' turns queue for the one core left: a third turn
        // was heard 17 s after its end, and with a 10 s tail three frustrated callers
        // hung up before their angry turns were heard (the gate failed at 16/21).
        .args(["--tail-s", "30"])
        .arg("--model")
        .arg(&model)
        .arg("--work")
        .arg(work.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    println!("{report}\n{errors}");
    assert!(
        out.status.success(),
        "the accuracy gate failed:\n{report}\n{errors}\nwarmline's log:\n{}",
        std::fs::read_to_string(work.path().join("warmline.log"))
            .unwrap_or_default()
            .lines()
            // A gateway that would not start says why on a line of its own ("error: …").
            .filter(|l| l.contains("caller turn")
                || l.contains("escalation trigger")
                || l.starts_with("error")
                || l.contains(" ERROR ")
                || l.contains(" WARN "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
