//! baresip (Debian's) as a real softphone in the tests: an agent that answers by itself, or
//! a caller that dials at start; over UDP, or over TLS with certificates from [`super::pki`].
//! Its voice is a WAV file, and what it hears is written, decoded, by the sndfile module.

use super::{media, require, wait_udp_listening};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// baresip's TLS: its certificate and key in one PEM (`sip_certificate`) and the CA it
/// trusts (`sip_cafile`).
pub struct BaresipTls<'a> {
    pub combined: &'a Path,
    pub ca: &'a Path,
}

pub struct Baresip {
    child: Child,
    rec: PathBuf,
    /// Where it listens for SIP over UDP and TCP; over TLS at the next port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Baresip {
    /// The agent's softphone: auto-answer, a 600 Hz tone as its voice.
    pub fn agent(port: u16, tls: Option<&BaresipTls>) -> Baresip {
        Self::agent_with(port, tls, None)
    }

    /// The agent as [`Baresip::agent`], with `mediaenc` (`srtp`: SRTP when the offer
    /// carries `a=crypto`; `srtp-mand`: `RTP/SAVP` only).
    pub fn agent_with(port: u16, tls: Option<&BaresipTls>, mediaenc: Option<&str>) -> Baresip {
        let enc = mediaenc
            .map(|m| format!(";mediaenc={m}"))
            .unwrap_or_default();
        Self::start(
            port,
            tls,
            &media().join("agent_tone.wav"),
            "",
            &format!(
                "<sip:agent@127.0.0.1:{port}>;regint=0;answermode=auto;audio_codecs=PCMU{enc}"
            ),
            &[],
        )
    }

    /// A caller that dials `uri` at once, plays `voice` and hangs up when baresip quits
    /// after `quit_after` seconds.
    pub fn caller(
        port: u16,
        tls: Option<&BaresipTls>,
        uri: &str,
        voice: &Path,
        quit_after: u32,
    ) -> Baresip {
        Self::caller_with("PCMU", None, port, tls, uri, voice, quit_after)
    }

    /// A caller as [`Baresip::caller`], offering only `codec` (`PCMU`, `G722`), with
    /// `mediaenc` as in [`Baresip::agent_with`]. On G.722 its voice is a 16 kHz WAV and what
    /// it hears is recorded at 16 kHz (baresip's aufile takes only files at the source rate).
    pub fn caller_with(
        codec: &str,
        mediaenc: Option<&str>,
        port: u16,
        tls: Option<&BaresipTls>,
        uri: &str,
        voice: &Path,
        quit_after: u32,
    ) -> Baresip {
        let enc = mediaenc
            .map(|m| format!(";mediaenc={m}"))
            .unwrap_or_default();
        // baresip names its G.722 by the audio rate (G722/16000), not the RTP clock.
        let (codec, rates) = match codec {
            "G722" => ("G722/16000", "ausrc_srate 16000\nauplay_srate 16000\n"),
            other => (other, ""),
        };
        Self::start(
            port,
            tls,
            voice,
            rates,
            &format!("<sip:caller@127.0.0.1:{port}>;regint=0;audio_codecs={codec}{enc}"),
            &["-e", &format!("/dial {uri}"), "-t", &quit_after.to_string()],
        )
    }

    fn start(
        port: u16,
        tls: Option<&BaresipTls>,
        voice: &Path,
        more_config: &str,
        account: &str,
        args: &[&str],
    ) -> Baresip {
        require("baresip");
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join("rec");
        std::fs::create_dir(&rec).unwrap();
        let tls_lines = tls
            .map(|t| {
                format!(
                    "sip_certificate {}\nsip_cafile {}\n",
                    t.combined.display(),
                    t.ca.display()
                )
            })
            .unwrap_or_default();
        // baresip draws its RTP ports from 1024-49152 unless told: one drawn inside a
        // gateway's range (20000-31999 here) reads, in a capture of that range, as the
        // gateway's own port, and a test once failed to find the agent's RTP for it. Below
        // the gateways' ranges and above the accuracy runner's blocks (10000-15999).
        std::fs::write(
            dir.path().join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:{port}\nrtp_ports 16000-19999\n{tls_lines}\
                 audio_player aubridge,nil\naudio_source aufile,{}\naudio_alert aubridge,nil\n\
                 module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule g722.so\nmodule srtp.so\n\
                 module aufile.so\n\
                 module aubridge.so\nmodule sndfile.so\nmodule account.so\nmodule menu.so\n\
                 snd_path {}\n{more_config}",
                voice.display(),
                rec.display()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("accounts"), format!("{account}\n")).unwrap();
        let child = std::process::Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .args(args)
            .stdout(std::fs::File::create(dir.path().join("out.log")).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_udp_listening(port, "baresip");
        Baresip {
            child,
            rec,
            port,
            _dir: dir,
        }
    }

    /// What baresip printed: its call progress and any TLS complaint.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("out.log")).unwrap_or_default()
    }

    /// Waits (with a deadline) for baresip to quit by itself (`-t`).
    pub fn wait_exit(&mut self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "baresip did not quit within {within:?}; it said:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it heard, decoded (8 kHz mono on G.711), once the call is over.
    pub fn heard(&self) -> Vec<i16> {
        let (pcm, rate) = self.heard_at();
        assert_eq!(rate, 8000, "baresip's recording is not narrowband");
        pcm
    }

    /// What it heard and at what rate (16 kHz on G.722). baresip writes the
    /// WAV's sizes when it closes the file, after it has handled the BYE, which can be
    /// after warmline has stored the call's end: wait (with a deadline) for a recording that
    /// reads whole, not for a fixed time.
    pub fn heard_at(&self) -> (Vec<i16>, u32) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut last = String::from("no recording yet");
        loop {
            let file = std::fs::read_dir(&self.rec)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("-dec.wav"));
            if let Some(file) = file {
                match std::fs::File::open(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|f| warmline_media::wav::read_clip(f).map_err(|e| e.to_string()))
                {
                    Ok(clip) if !clip.pcm.is_empty() => return (clip.pcm.to_vec(), clip.rate),
                    Ok(_) => last = "an empty recording".into(),
                    Err(e) => last = e,
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "baresip's sndfile recording of what it heard is not complete after 15 s: {last}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Energy of `freq` Hz in 8 kHz audio, relative to the total (Goertzel).
pub fn tone_share(pcm: &[i16], freq: f64) -> f64 {
    tone_share_at(pcm, 8000, freq)
}

/// Energy of `freq` Hz in audio at `rate`, relative to the total (Goertzel).
pub fn tone_share_at(pcm: &[i16], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in pcm {
        let s = f64::from(*x) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let total: f64 =
        pcm.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() * pcm.len() as f64 / 2.0;
    power / total.max(1.0)
}
