//! G.722 against a real softphone: baresip (Debian's, with its g722 module, spandsp's codec)
//! calls in offering only G.722 and is bridged to a baresip agent on G.711. What each side
//! hears, what warmline's recording of the caller holds, and the RTP on the wire (tshark)
//! show the wideband leg is negotiated, decoded at 16 kHz, stamped on its 8 kHz clock and
//! transcoded both ways in the bridge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::baresip::{Baresip, tone_share, tone_share_at};
use common::*;
use std::time::Duration;

#[test]
fn a_g722_caller_is_heard_wideband_and_bridged_to_a_g711_agent() {
    let rec = tempfile::tempdir().unwrap();
    let agent = Baresip::agent(free_port(), None);
    let gw = Gw::start_with(
        "",
        &format!("record = true\nrecord_dir = \"{}\"", rec.path().display()),
        &format!(
            "[route]\nmode = \"bridge\"\ntarget = \"sip:agent@127.0.0.1:{}\"\n",
            agent.port
        ),
    );
    let cap = Capture::start(gw.rtp);
    let mut caller = Baresip::caller_with(
        "G722",
        None,
        free_port(),
        None,
        &format!("sip:warmline@{}", gw.sip_addr()),
        &media().join("wide_tone.wav"),
        7,
    );
    caller.wait_exit(Duration::from_secs(30));
    wait_caller_bye(&gw);
    let pkts = cap.stop();

    // On the wire: the caller's leg is payload type 9 both ways, and what warmline sends
    // counts 160 ticks (the 8 kHz clock) per 20 ms frame of 160 bytes, though it carries
    // 320 samples.
    let ours = |p: &&Rtp| (gw.rtp.0..=gw.rtp.1).contains(&p.src);
    let to_caller: Vec<&Rtp> = pkts.iter().filter(ours).filter(|p| p.pt == 9).collect();
    assert!(
        to_caller.len() >= 100,
        "{} G.722 packets to the caller",
        to_caller.len()
    );
    assert!(to_caller.iter().all(|p| p.payload.len() == 160));
    for w in to_caller.windows(2) {
        if w[1].ssrc == w[0].ssrc && w[1].seq == w[0].seq.wrapping_add(1) && !w[1].marker {
            assert_eq!(w[1].ts.wrapping_sub(w[0].ts), 160, "G.722 timestamps");
        }
    }
    let from_caller = pkts
        .iter()
        .filter(|p| (gw.rtp.0..=gw.rtp.1).contains(&p.dst) && p.pt == 9)
        .count();
    assert!(
        from_caller >= 100,
        "{from_caller} G.722 packets from the caller"
    );

    // warmline decoded the caller at 16 kHz: its recording of the caller's leg (the audio
    // the speech tap is fed) keeps the 5.5 kHz half of the voice, which 8 kHz cannot hold.
    let written = eventually(
        Duration::from_secs(10),
        || gw.log(),
        |log| {
            log.lines()
                .any(|l| l.contains("recording written") && l.contains("-leg0.wav"))
        },
    );
    assert!(
        written.contains("recording written"),
        "no recording: {written}"
    );
    let leg0 = eventually(
        Duration::from_secs(10),
        || {
            std::fs::read_dir(rec.path())
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("-leg0.wav"))
                .and_then(|p| warmline_media::wav::read_clip(std::fs::File::open(p).ok()?).ok())
        },
        |c| c.as_ref().is_some_and(|c| !c.pcm.is_empty()),
    )
    .expect("warmline recorded the caller");
    assert_eq!(leg0.rate, 16000, "the caller's leg runs at 16 kHz");
    let best = |pcm: &[i16], rate: u32, hz: f64| {
        pcm.chunks(rate as usize / 2)
            .map(|c| tone_share_at(c, rate, hz))
            .fold(0.0, f64::max)
    };
    let hi = best(&leg0.pcm, 16000, 5500.0);
    let lo = best(&leg0.pcm, 16000, 1000.0);
    assert!(
        hi > 0.25 && lo > 0.25,
        "the recording holds both halves: 5.5 kHz {hi:.2}, 1 kHz {lo:.2}"
    );

    // Across the bridge: the agent (G.711) heard the caller's speech band, the caller
    // (G.722, a 16 kHz recording) the agent's 600 Hz tone.
    let agent_heard = agent.heard();
    assert!(
        agent_heard
            .chunks(4000)
            .any(|c| tone_share(c, 1000.0) > 0.5),
        "the agent heard the caller"
    );
    let (caller_heard, rate) = caller.heard_at();
    assert_eq!(rate, 16000, "the caller decoded G.722");
    let back = best(&caller_heard, rate, 600.0);
    assert!(
        back > 0.5,
        "the caller heard the agent: 600 Hz share {back:.2}"
    );
}
