//! Prometheus metrics (`GET /metrics`): the KPIs operators chart (transfer rate, time to
//! human, abandonment, trigger reasons) and the health of each plane (SIP messages, RTP
//! loss and jitter, speech latency and drops, CRM outbox). One registry per process; the
//! drivers hold an `Arc<Metrics>` and record as things happen, gauges are refreshed at
//! scrape time.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

pub struct Metrics {
    registry: Registry,
    pub calls_active: IntGauge,
    /// Calls that ended, by role (inbound, outbound) and end code (`call.peer_bye`…).
    pub calls_total: IntCounterVec,
    /// Escalation triggers by kind, route and decision (transfer, callback).
    pub escalations_total: IntCounterVec,
    /// Finished warm transfers by trigger kind, route and outcome (bridged, failed,
    /// abandoned, ended).
    pub transfers_total: IntCounterVec,
    /// Trigger → caller and agent bridged.
    pub time_to_human: Histogram,
    /// Agent calls by outcome (answered, busy, no_answer, rejected, unreachable, cancelled)
    /// and SIP status.
    pub agent_attempts_total: IntCounterVec,
    /// SIP messages over UDP by direction (in, out), kind (request, response) and method or
    /// status code.
    pub sip_messages_total: IntCounterVec,
    pub stt_latency: Histogram,
    pub stt_dropped_total: IntCounter,
    pub stt_speculation_stopped_total: IntCounter,
    /// Cost of one 20 ms frame: `vad` and `prosody`.
    pub frame_cost: HistogramVec,
    /// Per leg, when it ends: fraction of packets lost, and interarrival jitter.
    pub rtp_loss_fraction: Histogram,
    pub rtp_jitter: Histogram,
    pub crm_outbox_depth: IntGauge,
    pub crm_delivery: Histogram,
    pub crm_failed_attempts_total: IntCounter,
    // The planes' own counters; `/v1/stats` shows them too, read from here.
    /// RTP datagrams in and out over every leg (RTCP not included).
    pub rtp_in: IntCounter,
    pub rtp_out: IntCounter,
    pub rtp_send_errors: IntCounter,
    pub rtp_timeouts: IntCounter,
    /// RTP/RTCP socket pairs a call took from the spares of ended calls (`rtp_ports`), and
    /// datagrams that reached them while spare and were thrown away.
    pub rtp_pairs_reused: IntCounter,
    pub rtp_spare_drained: IntCounter,
    pub rtp_spare_pairs: IntGauge,
    /// RTP and RTCP dropped because they came from an address that may not speak for the
    /// party (counted when a leg ends).
    pub rtp_strangers: IntCounter,
    pub srtp_auth_failed: IntCounter,
    pub srtp_replayed: IntCounter,
    pub tap_frames: IntCounter,
    pub tap_dropped: IntCounter,
    pub record_dropped: IntCounter,
    pub stt_utterances: IntCounter,
    pub stt_errors: IntCounter,
    pub store_audit_rows: IntCounter,
    pub store_write_errors: IntCounter,
    /// Datagrams the UDP guard kept from the stack: answered (400/505) or dropped.
    pub sip_malformed_answered: IntCounter,
    pub sip_malformed_dropped: IntCounter,
    /// New INVITEs refused by the UDP guard without a transaction (full, draining, or a
    /// source not allowed).
    pub sip_invites_shed: IntCounter,
    /// OPTIONS outside a dialog answered statelessly by the UDP guard (keepalives, probes).
    pub sip_options_stateless: IntCounter,
    /// BYEs for no live call, answered 481 statelessly by the UDP guard.
    pub sip_stray_byes: IntCounter,
    /// Other requests the UDP guard answered statelessly: in-dialog requests naming no
    /// live call (481) and methods not taken outside a dialog (405).
    pub sip_stray_requests: IntCounter,
    /// INVITEs and refreshes refused for their session timer: an interval under our
    /// `min_se_s` (422) or an unreadable `Session-Expires`/`Min-SE` (400).
    pub session_timer_refused: IntCounter,
    /// Requests dropped because their source went over its rate (and is banned a while).
    pub sip_rate_limited: IntCounter,
    /// SIP over TCP: connections peers hold open, those closed at accept (a bound
    /// reached) or cut (no whole message in time), and failed accepts. rsipstack counts
    /// them; copied here at scrape time (`observe_tcp`).
    pub sip_tcp_open: IntGauge,
    pub sip_tcp_refused: IntCounter,
    pub sip_tcp_cut: IntCounter,
    pub sip_tcp_accept_errors: IntCounter,
    /// TLS handshakes that failed or stalled past `tcp_message_timeout_s` (untrusted or
    /// expired certificates, a client without one under `client_ca`, plain text on a TLS
    /// port); the connection is closed, other calls go on.
    pub sip_tls_handshake_failures: IntCounter,
    /// Log lines dropped because the log's writer fell behind (`crate::logging`); copied
    /// here at scrape time (`observe_log`).
    pub log_lines_dropped: IntCounter,
    /// The heap as jemalloc sees it (`observe_heap`): bytes the program holds, and bytes
    /// of the allocator's pages still resident. Resident well above allocated after a
    /// burst is memory freed but not yet given back; allocated above its baseline is state
    /// something still holds.
    pub heap_allocated: IntGauge,
    pub heap_resident: IntGauge,
    /// Callers the recognizer can hear at once, those it listens to (set at scrape time),
    /// and calls that arrived beyond it: refused (503) or handed straight to the agents.
    pub speech_capacity: IntGauge,
    pub speech_listening: IntGauge,
    pub speech_over_refused: IntCounter,
    pub speech_over_agents: IntCounter,
    pub tts_prompts: IntCounter,
    pub tts_errors: IntCounter,
    pub brain_requests: IntCounter,
    pub brain_ok: IntCounter,
    pub brain_timeouts: IntCounter,
    /// Refused connections, non-2xx answers and replies that were not the contract.
    pub brain_errors: IntCounter,
    /// Round trips of the brain's answered turns.
    pub brain_round_trip: Histogram,
    pub briefings_written: IntCounter,
    pub briefings_failed: IntCounter,
    /// 1 while our Contact is bound at the registrar for this AOR, else 0.
    pub sip_registered: IntGaugeVec,
    /// REGISTERs by AOR and outcome (registered, unregistered, interval_too_brief, rejected,
    /// no_response).
    pub sip_registrations_total: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn buckets(list: &[f64]) -> Vec<f64> {
    list.to_vec()
}

impl Metrics {
    /// One call leg ended (`role` inbound/outbound, `code` its end code): wherever it ends,
    /// even refused before it had a dialog.
    pub fn call_ended(&self, role: &str, code: &str) {
        self.calls_total.with_label_values(&[role, code]).inc();
    }

    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new_custom(Some("warmline".into()), None)?;
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let histogram = |name: &str, help: &str, b: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets(b)))
        };
        let rtp_packets = counter_vec(
            "rtp_packets_total",
            "RTP datagrams over every leg, by direction (RTCP not included)",
            &["direction"],
        )?;
        let sip_malformed = counter_vec(
            "sip_malformed_total",
            "Malformed SIP datagrams kept from the stack, answered (400/505) or dropped",
            &["action"],
        )?;
        let brain_replies = counter_vec(
            "brain_replies_total",
            "Turns sent to the external brain, by result (ok, timeout, error)",
            &["result"],
        )?;
        let briefings = counter_vec(
            "briefings_total",
            "Briefings asked of the language model, by result (written, failed)",
            &["result"],
        )?;
        let sip_tcp_closed = counter_vec(
            "sip_tcp_closed_total",
            "SIP TCP connections closed by warmline: refused (a connection bound reached) or cut (no whole message within tcp_message_timeout_s)",
            &["reason"],
        )?;
        let speech_over = counter_vec(
            "speech_over_capacity_total",
            "Calls that arrived with the recognizer at capacity: refused (503) or answered straight to the agents",
            &["action"],
        )?;
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let m = Self {
            heap_allocated: IntGauge::new(
                "process_heap_allocated_bytes",
                "Heap bytes allocated by warmline and not yet freed (jemalloc stats.allocated)",
            )?,
            heap_resident: IntGauge::new(
                "process_heap_resident_bytes",
                "Bytes of the allocator's pages resident in memory (jemalloc stats.resident)",
            )?,
            sip_tcp_open: IntGauge::new(
                "sip_tcp_connections",
                "SIP TCP connections peers hold open to warmline",
            )?,
            sip_tcp_refused: sip_tcp_closed.with_label_values(&["refused"]),
            sip_tcp_cut: sip_tcp_closed.with_label_values(&["cut"]),
            sip_tcp_accept_errors: counter(
                "sip_tcp_accept_errors_total",
                "Failed accepts on SIP TCP listeners (descriptors exhausted and the like)",
            )?,
            sip_tls_handshake_failures: counter(
                "sip_tls_handshake_failures_total",
                "TLS handshakes on SIP TLS listeners that failed or did not finish in time",
            )?,
            log_lines_dropped: counter(
                "log_lines_dropped_total",
                "Log lines dropped because the log writer's queue was full",
            )?,
            rtp_in: rtp_packets.with_label_values(&["in"]),
            rtp_out: rtp_packets.with_label_values(&["out"]),
            rtp_send_errors: counter("rtp_send_errors_total", "RTP datagrams the kernel refused")?,
            rtp_pairs_reused: counter(
                "rtp_pairs_reused_total",
                "RTP/RTCP socket pairs taken from those of ended calls, not newly bound",
            )?,
            rtp_spare_drained: counter(
                "rtp_spare_drained_total",
                "Datagrams that reached a spare RTP/RTCP pair between calls, thrown away",
            )?,
            rtp_spare_pairs: IntGauge::new(
                "rtp_spare_pairs",
                "RTP/RTCP socket pairs of ended calls resting, bound, for the next calls",
            )?,
            rtp_timeouts: counter(
                "rtp_timeouts_total",
                "Calls ended because no RTP came for rtp_timeout_s",
            )?,
            rtp_strangers: counter(
                "rtp_strangers_dropped_total",
                "RTP and RTCP from addresses that may not speak for the party, dropped",
            )?,
            srtp_auth_failed: counter(
                "srtp_auth_failed_total",
                "SRTP and SRTCP packets dropped because their authentication tag did not verify",
            )?,
            srtp_replayed: counter(
                "srtp_replayed_total",
                "SRTP and SRTCP packets dropped as replays",
            )?,
            tap_frames: counter(
                "speech_tap_frames_total",
                "20 ms frames handed to the speech pipelines",
            )?,
            tap_dropped: counter(
                "speech_tap_dropped_total",
                "Frames dropped because a call's speech pipeline was behind",
            )?,
            record_dropped: counter(
                "recording_dropped_total",
                "Frames dropped because the recording writer was behind",
            )?,
            stt_utterances: counter("stt_utterances_total", "Caller turns the VAD closed")?,
            stt_errors: counter("stt_errors_total", "Recognitions that failed")?,
            store_audit_rows: counter("store_audit_rows_total", "Audit events written")?,
            store_write_errors: counter(
                "store_write_errors_total",
                "Store writes that failed (logged with what was lost)",
            )?,
            sip_malformed_answered: sip_malformed.with_label_values(&["answered"]),
            sip_malformed_dropped: sip_malformed.with_label_values(&["dropped"]),
            sip_rate_limited: counter(
                "sip_rate_limited_total",
                "SIP requests dropped because their source went over its request rate",
            )?,
            sip_invites_shed: counter(
                "sip_invites_shed_total",
                "New INVITEs refused statelessly at the UDP socket (full, draining, or not allowed)",
            )?,
            sip_options_stateless: counter(
                "sip_options_stateless_total",
                "OPTIONS outside a dialog answered statelessly at the UDP socket",
            )?,
            sip_stray_byes: counter(
                "sip_stray_byes_total",
                "BYEs naming no live call, answered 481 statelessly at the UDP socket",
            )?,
            sip_stray_requests: counter(
                "sip_stray_requests_total",
                "In-dialog requests naming no live call (481) and methods not taken outside \
                 a dialog (405), answered statelessly at the UDP socket",
            )?,
            session_timer_refused: counter(
                "sip_session_timer_refused_total",
                "INVITEs and session refreshes refused for their session timer: 422 (under \
                 min_se_s) or 400 (an unreadable Session-Expires or Min-SE)",
            )?,
            tts_prompts: counter("tts_prompts_total", "Prompts rendered and queued to play")?,
            tts_errors: counter("tts_errors_total", "Prompts the TTS failed to render")?,
            brain_requests: counter("brain_requests_total", "Turns sent to the external brain")?,
            brain_ok: brain_replies.with_label_values(&["ok"]),
            brain_timeouts: brain_replies.with_label_values(&["timeout"]),
            brain_errors: brain_replies.with_label_values(&["error"]),
            brain_round_trip: histogram(
                "brain_round_trip_seconds",
                "Turn sent to the brain's reply, for the turns it answered",
                &[0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 3.0],
            )?,
            briefings_written: briefings.with_label_values(&["written"]),
            briefings_failed: briefings.with_label_values(&["failed"]),
            calls_active: IntGauge::new("calls_active", "Calls in progress")?,
            speech_capacity: IntGauge::new(
                "speech_capacity_callers",
                "Callers the recognizer can hear at once within 1 s ([speech] capacity, or measured at start-up)",
            )?,
            speech_listening: IntGauge::new(
                "speech_listening_callers",
                "Callers the recognizer listens to now",
            )?,
            speech_over_refused: speech_over.with_label_values(&["refused"]),
            speech_over_agents: speech_over.with_label_values(&["agents"]),
            calls_total: counter_vec(
                "calls_total",
                "Calls that ended, by role and end code",
                &["role", "outcome"],
            )?,
            escalations_total: counter_vec(
                "escalations_total",
                "Escalation triggers, by kind, route and decision",
                &["kind", "route", "decision"],
            )?,
            transfers_total: counter_vec(
                "transfers_total",
                "Finished warm transfers, by trigger kind, route and outcome",
                &["kind", "route", "outcome"],
            )?,
            time_to_human: histogram(
                "time_to_human_seconds",
                "Trigger to caller and agent bridged",
                &[2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0],
            )?,
            agent_attempts_total: counter_vec(
                "agent_attempts_total",
                "Calls to agents, by outcome and SIP status",
                &["outcome", "code"],
            )?,
            sip_messages_total: counter_vec(
                "sip_messages_total",
                "SIP messages over UDP, by direction, kind and method or status",
                &["direction", "kind", "name"],
            )?,
            stt_latency: histogram(
                "stt_latency_seconds",
                "End of utterance to text, queue wait included",
                &[0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0],
            )?,
            stt_dropped_total: IntCounter::new(
                "stt_dropped_total",
                "Utterances dropped because every recognizer was busy",
            )?,
            stt_speculation_stopped_total: IntCounter::new(
                "stt_speculation_stopped_total",
                "Turns recognised ahead of their end and stopped because the caller went on talking",
            )?,
            frame_cost: HistogramVec::new(
                HistogramOpts::new(
                    "speech_frame_cost_seconds",
                    "CPU time of one 20 ms frame, by stage (vad, prosody)",
                )
                .buckets(buckets(&[5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3])),
                &["stage"],
            )?,
            rtp_loss_fraction: histogram(
                "rtp_leg_loss_fraction",
                "Fraction of RTP packets lost over a leg's life",
                &[0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
            )?,
            rtp_jitter: histogram(
                "rtp_leg_jitter_seconds",
                "Interarrival jitter (RFC 3550) at a leg's end",
                &[0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16],
            )?,
            crm_outbox_depth: IntGauge::new(
                "crm_outbox_depth",
                "Context packets waiting for the CRM",
            )?,
            crm_delivery: histogram(
                "crm_delivery_seconds",
                "Packet due to acknowledged by the CRM",
                &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0],
            )?,
            sip_registered: IntGaugeVec::new(
                Opts::new(
                    "sip_registered",
                    "1 while warmline's Contact is bound at the registrar for the AOR",
                ),
                &["aor"],
            )?,
            sip_registrations_total: counter_vec(
                "sip_registrations_total",
                "REGISTERs sent to trunks, by AOR and outcome",
                &["aor", "outcome"],
            )?,
            crm_failed_attempts_total: IntCounter::new(
                "crm_failed_attempts_total",
                "CRM deliveries that failed and will be retried",
            )?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.calls_active.clone()))?;
        r.register(Box::new(m.calls_total.clone()))?;
        r.register(Box::new(m.escalations_total.clone()))?;
        r.register(Box::new(m.transfers_total.clone()))?;
        r.register(Box::new(m.time_to_human.clone()))?;
        r.register(Box::new(m.agent_attempts_total.clone()))?;
        r.register(Box::new(m.sip_messages_total.clone()))?;
        r.register(Box::new(m.sip_registered.clone()))?;
        r.register(Box::new(m.sip_registrations_total.clone()))?;
        r.register(Box::new(m.stt_latency.clone()))?;
        r.register(Box::new(m.stt_dropped_total.clone()))?;
        r.register(Box::new(m.stt_speculation_stopped_total.clone()))?;
        r.register(Box::new(m.frame_cost.clone()))?;
        r.register(Box::new(m.rtp_loss_fraction.clone()))?;
        r.register(Box::new(m.rtp_jitter.clone()))?;
        r.register(Box::new(m.crm_outbox_depth.clone()))?;
        r.register(Box::new(m.crm_delivery.clone()))?;
        r.register(Box::new(m.crm_failed_attempts_total.clone()))?;
        r.register(Box::new(rtp_packets))?;
        r.register(Box::new(sip_malformed))?;
        r.register(Box::new(brain_replies))?;
        r.register(Box::new(briefings))?;
        r.register(Box::new(sip_tcp_closed))?;
        r.register(Box::new(m.sip_tcp_open.clone()))?;
        r.register(Box::new(m.heap_allocated.clone()))?;
        r.register(Box::new(m.heap_resident.clone()))?;
        r.register(Box::new(m.speech_capacity.clone()))?;
        r.register(Box::new(m.speech_listening.clone()))?;
        r.register(Box::new(m.rtp_spare_pairs.clone()))?;
        r.register(Box::new(speech_over))?;
        for c in [
            &m.rtp_send_errors,
            &m.rtp_pairs_reused,
            &m.rtp_spare_drained,
            &m.rtp_timeouts,
            &m.rtp_strangers,
            &m.srtp_auth_failed,
            &m.srtp_replayed,
            &m.tap_frames,
            &m.tap_dropped,
            &m.record_dropped,
            &m.stt_utterances,
            &m.stt_errors,
            &m.store_audit_rows,
            &m.store_write_errors,
            &m.tts_prompts,
            &m.tts_errors,
            &m.brain_requests,
            &m.sip_invites_shed,
            &m.sip_options_stateless,
            &m.sip_stray_byes,
            &m.sip_stray_requests,
            &m.session_timer_refused,
            &m.sip_rate_limited,
            &m.sip_tcp_accept_errors,
            &m.sip_tls_handshake_failures,
            &m.log_lines_dropped,
        ] {
            r.register(Box::new(c.clone()))?;
        }
        r.register(Box::new(m.brain_round_trip.clone()))?;
        Ok(m)
    }

    /// Brings the TCP series up to what rsipstack has counted.
    pub fn observe_tcp(&self, s: rsipstack::transport::stream::StreamStats) {
        self.sip_tcp_open
            .set(i64::try_from(s.open).unwrap_or(i64::MAX));
        for (c, now) in [
            (&self.sip_tcp_refused, s.refused),
            (&self.sip_tcp_cut, s.cut),
            (&self.sip_tcp_accept_errors, s.accept_errors),
            (&self.sip_tls_handshake_failures, s.handshake_failures),
        ] {
            c.inc_by(now.saturating_sub(c.get()));
        }
    }

    /// Brings the log-drop count up to what the log's writer has counted.
    pub fn observe_log(&self, dropped: u64) {
        let c = &self.log_lines_dropped;
        c.inc_by(dropped.saturating_sub(c.get()));
    }

    /// Brings the spare-pair series up to what the port pool has counted.
    pub fn observe_ports(&self, s: crate::rtp_ports::PortStats) {
        self.rtp_spare_pairs
            .set(i64::try_from(s.spare).unwrap_or(i64::MAX));
        for (c, now) in [
            (&self.rtp_pairs_reused, s.reused),
            (&self.rtp_spare_drained, s.drained),
        ] {
            c.inc_by(now.saturating_sub(c.get()));
        }
    }

    /// Reads jemalloc's statistics afresh (they are cached until the epoch moves). Zero
    /// where jemalloc is not the process allocator (the library's tests).
    pub fn observe_heap(&self) {
        if tikv_jemalloc_ctl::epoch::advance().is_err() {
            return;
        }
        for (g, read) in [
            (
                &self.heap_allocated,
                tikv_jemalloc_ctl::stats::allocated::read(),
            ),
            (
                &self.heap_resident,
                tikv_jemalloc_ctl::stats::resident::read(),
            ),
        ] {
            if let Ok(bytes) = read {
                g.set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
    }

    /// The planes' figures as `/v1/stats` shows them, read from the series `/metrics`
    /// exposes (one count, two views). `speech` is false when no pipeline runs.
    pub fn stats(&self, speech: bool) -> serde_json::Value {
        let esc = &self.escalations_total;
        let tr = &self.transfers_total;
        let ms = |h: &Histogram| (h.get_sample_sum() * 1000.0).round() as u64;
        serde_json::json!({
            "malformed_answered": self.sip_malformed_answered.get(),
            "malformed_dropped": self.sip_malformed_dropped.get(),
            "invites_shed": self.sip_invites_shed.get(),
            "options_stateless": self.sip_options_stateless.get(),
            "stray_byes": self.sip_stray_byes.get(),
            "stray_requests": self.sip_stray_requests.get(),
            "session_timer_refused": self.session_timer_refused.get(),
            "rate_limited": self.sip_rate_limited.get(),
            "media": {
                "rtp_in": self.rtp_in.get(),
                "rtp_out": self.rtp_out.get(),
                "tap_frames": self.tap_frames.get(),
                "tap_dropped": self.tap_dropped.get(),
                "record_dropped": self.record_dropped.get(),
                "send_errors": self.rtp_send_errors.get(),
                "rtp_timeouts": self.rtp_timeouts.get(),
                "strangers_dropped": self.rtp_strangers.get(),
                "srtp_auth_failed": self.srtp_auth_failed.get(),
                "srtp_replayed": self.srtp_replayed.get(),
            },
            "speech": speech.then(|| serde_json::json!({
                "utterances": self.stt_utterances.get(),
                "dropped": self.stt_dropped_total.get(),
                "recognized": self.stt_latency.get_sample_count(),
                "errors": self.stt_errors.get(),
                "latency_ms_total": ms(&self.stt_latency),
            })),
            "assistant": {
                "says": self.tts_prompts.get(),
                "tts_errors": self.tts_errors.get(),
                "brain_requests": self.brain_requests.get(),
                "brain_ok": self.brain_ok.get(),
                "brain_timeouts": self.brain_timeouts.get(),
                "brain_errors": self.brain_errors.get(),
                "brain_ms_total": ms(&self.brain_round_trip),
                "briefings_written": self.briefings_written.get(),
                "briefings_failed": self.briefings_failed.get(),
                "escalations": counted(esc, None),
                "transfers_decided": counted(esc, Some(("decision", "transfer"))),
                "callbacks": counted(esc, Some(("decision", "callback"))),
                "bridged": counted(tr, Some(("outcome", "bridged"))),
                "abandoned": counted(tr, Some(("outcome", "abandoned"))),
                "transfers_failed": counted(tr, Some(("outcome", "failed"))),
            },
            "crm": {
                "delivered": self.crm_delivery.get_sample_count(),
                "failed_attempts": self.crm_failed_attempts_total.get(),
                "delivery_ms_total": ms(&self.crm_delivery),
            },
            "store": {
                "audit_rows": self.store_audit_rows.get(),
                "write_errors": self.store_write_errors.get(),
            },
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics not encoded");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Count one SIP datagram by its start line; a method outside [`SIP_METHODS`] counts as
    /// `other`.
    pub fn sip_message(&self, direction: &str, datagram: &[u8]) {
        let line = datagram
            .split(|b| *b == b'\r' || *b == b'\n')
            .next()
            .unwrap_or_default();
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        let mut parts = line.split(' ');
        // Labels come from the network: only names from a fixed set, so a peer inventing
        // methods or codes cannot grow the series without bound.
        let (kind, name) = match (parts.next(), parts.next()) {
            (Some("SIP/2.0"), Some(code))
                if code.len() == 3
                    && code.bytes().all(|b| b.is_ascii_digit())
                    && (b'1'..=b'6').contains(&code.as_bytes()[0]) =>
            {
                ("response", code)
            }
            (Some("SIP/2.0"), _) => return,
            (Some(method), Some(_)) if !method.is_empty() => (
                "request",
                SIP_METHODS
                    .iter()
                    .copied()
                    .find(|m| *m == method)
                    .unwrap_or("other"),
            ),
            // Keep-alives and junk.
            _ => return,
        };
        self.sip_messages_total
            .with_label_values(&[direction, kind, name])
            .inc();
    }
}

/// The methods of RFC 3261 and its extensions (PRACK, UPDATE, INFO, REFER, the event and
/// messaging ones): the request label values.
const SIP_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "UPDATE",
    "INFO",
    "REFER",
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "PUBLISH",
];

/// The sum of a counter family's series, or of those whose `label` has the given value.
fn counted(family: &IntCounterVec, label: Option<(&str, &str)>) -> u64 {
    use prometheus::core::Collector as _;
    family
        .collect()
        .iter()
        .flat_map(|mf| mf.get_metric())
        .filter(|m| {
            label.is_none_or(|(name, value)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == name && l.value() == value)
            })
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_stats_view_is_the_prometheus_count() {
        let m = Metrics::new().unwrap();
        let esc = |kind, decision| {
            m.escalations_total
                .with_label_values(&[kind, "default", decision])
                .inc()
        };
        esc("explicit_request", "transfer");
        esc("dtmf", "transfer");
        esc("keyword", "callback");
        m.transfers_total
            .with_label_values(&["dtmf", "default", "bridged"])
            .inc();
        m.transfers_total
            .with_label_values(&["explicit_request", "default", "abandoned"])
            .inc();
        m.rtp_in.inc_by(5);
        m.stt_latency.observe(0.25);
        m.stt_latency.observe(0.5);
        let all = m.stats(true);
        let v = &all["assistant"];
        assert_eq!(v["escalations"], 3);
        assert_eq!(v["transfers_decided"], 2);
        assert_eq!(v["callbacks"], 1);
        assert_eq!(v["bridged"], 1);
        assert_eq!(v["abandoned"], 1);
        assert_eq!(v["transfers_failed"], 0);
        assert_eq!(all["media"]["rtp_in"], 5);
        assert_eq!(all["speech"]["recognized"], 2);
        assert_eq!(all["speech"]["latency_ms_total"], 750);
        assert!(m.stats(false)["speech"].is_null());
        let text = m.render();
        assert!(text.contains("warmline_escalations_total"));
        assert!(
            text.contains("warmline_rtp_packets_total{direction=\"in\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn sip_start_lines_are_counted_by_method_and_code() {
        let m = Metrics::new().unwrap();
        m.sip_message("in", b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        m.sip_message("out", b"SIP/2.0 486 Busy Here\r\n\r\n");
        m.sip_message("in", b"\r\n\r\n");
        // Invented methods and codes share one series each way, or none.
        m.sip_message("in", b"FOOBAR sip:a@b SIP/2.0\r\n\r\n");
        m.sip_message("in", b"BAZQUX sip:a@b SIP/2.0\r\n\r\n");
        m.sip_message("in", b"SIP/2.0 9x9 Odd\r\n\r\n");
        let text = m.render();
        assert!(text.contains(
            "warmline_sip_messages_total{direction=\"in\",kind=\"request\",name=\"other\"} 2"
        ));
        assert!(!text.contains("FOOBAR") && !text.contains("9x9"), "{text}");
        assert!(text.contains(
            "warmline_sip_messages_total{direction=\"in\",kind=\"request\",name=\"INVITE\"} 1"
        ));
        assert!(text.contains(
            "warmline_sip_messages_total{direction=\"out\",kind=\"response\",name=\"486\"} 1"
        ));
    }
}
