//! The outputs: `results.json` (the figures, for tools) and `report.md` (the tables and
//! ratios, for people).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use serde_json::{Value, json};

/// What one side (srgate or the reflector) did in one run.
#[derive(Clone, Debug, Default)]
pub struct SideFigures {
    pub calls_up: usize,
    pub failures: Vec<String>,
    pub ramp_s: f64,
    pub window_s: f64,
    pub sent: u64,
    pub received: u64,
    pub damaged: u64,
    pub reordered: u64,
    pub loss: f64,
    /// Packets the relay forwarded in the window (both directions).
    pub relayed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_us_per_pkt: f64,
    /// CPU nanoseconds per thread in the window.
    pub threads: Vec<(String, u64)>,
    pub rss_kb: u64,
    pub idle_rss_kb: u64,
    pub after_rss_kb: u64,
    /// `RssAnon` (heap) before the first call and after the last one ended.
    pub idle_anon_kb: u64,
    pub after_anon_kb: u64,
    /// With several rounds on one srgate: RssAnon after the first.
    pub first_after_anon_kb: Option<u64>,
    pub open_fds: usize,
    pub generator_cpu_share: f64,
    pub phone_cpu_share: f64,
    pub late_sends: u64,
    pub heard_hz: Option<f64>,
    pub setup_p50_ms: f64,
    pub setup_p99_ms: f64,
    /// Every call's setup time (login to first audio), ms, sorted.
    pub setup_ms: Vec<f64>,
    pub ended_clean: usize,
    pub calls_after: Option<u64>,
    /// Datagrams the kernel dropped on the process's sockets (receive buffer full) in the
    /// window.
    pub socket_drops: u64,
    /// Datagrams the generator's own sockets dropped (receive buffer full, send refused)
    /// in the window: loss that is the generator's, not the relay's.
    pub generator_drops: u64,
    /// CPU seconds the process spent while the calls were being set up.
    pub ramp_cpu_s: f64,
    /// Calls refused with `OVERLOADED`.
    pub refused: usize,
    /// RSS at the start of the window (its end is `rss_kb`): the drift of a soak.
    pub rss_start_kb: u64,
    /// Open descriptors before the first call and after the last one ended.
    pub idle_fds: usize,
    pub after_fds: usize,
    /// The process sampled through the window (a soak), oldest first.
    pub samples: Vec<Sample>,
}

/// The gateway at one moment of a soak's window; `sent`/`received` count the calls'
/// frames since the window began.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub t_s: f64,
    pub rss_kb: u64,
    pub anon_kb: u64,
    pub fds: usize,
    pub sent: u64,
    pub received: u64,
}

impl SideFigures {
    /// Each thread's share of the process's CPU time in the window (threads that used
    /// under 1 % of it left out).
    pub fn thread_shares(&self) -> Vec<(String, f64)> {
        let total: u64 = self.threads.iter().map(|t| t.1).sum();
        if total == 0 {
            return Vec::new();
        }
        self.threads
            .iter()
            .map(|(name, ns)| (name.clone(), *ns as f64 / total as f64))
            .filter(|(_, share)| *share >= 0.01)
            .collect()
    }

    /// The generator was the limit, not the relay: one of its threads was busy over 90 %
    /// of the window, over 0.5 % of its frames left more than 10 ms late, or its own
    /// sockets dropped over 0.1 % of what was sent (the loss target).
    pub fn generator_saturated(&self) -> bool {
        self.generator_cpu_share > 0.9
            || self.phone_cpu_share > 0.9
            || self.late_sends as f64 > 0.005 * self.sent.max(1) as f64
            || self.generator_drops as f64 > 0.001 * self.sent.max(1) as f64
    }

    /// How much RSS grew over the window, relative to its start.
    pub fn rss_drift(&self) -> f64 {
        if self.rss_start_kb == 0 {
            return 0.0;
        }
        (self.rss_kb as f64 - self.rss_start_kb as f64) / self.rss_start_kb as f64
    }

    pub fn pps(&self) -> f64 {
        if self.window_s == 0.0 {
            return 0.0;
        }
        self.relayed as f64 / self.window_s
    }
}

pub struct RelayRow {
    pub calls: usize,
    pub srgate: SideFigures,
    pub rtpengine: Option<SideFigures>,
    pub reflector: SideFigures,
}

impl RelayRow {
    pub fn new(
        calls: usize,
        srgate: SideFigures,
        rtpengine: Option<SideFigures>,
        reflector: SideFigures,
    ) -> RelayRow {
        RelayRow {
            calls,
            srgate,
            rtpengine,
            reflector,
        }
    }

    /// Whether the harness itself was the limit in any of the row's runs.
    pub fn generator_saturated(&self) -> bool {
        self.srgate.generator_saturated()
            || self.reflector.generator_saturated()
            || self
                .rtpengine
                .as_ref()
                .is_some_and(|r| r.generator_saturated())
    }

    /// srgate's CPU per packet over rtpengine's (the target is ≤ 0.7).
    pub fn rtpengine_ratio(&self) -> Option<f64> {
        let r = self.rtpengine.as_ref()?;
        (r.cpu_us_per_pkt > 0.0).then(|| self.srgate.cpu_us_per_pkt / r.cpu_us_per_pkt)
    }

    pub fn ratio(&self) -> f64 {
        if self.reflector.cpu_us_per_pkt == 0.0 {
            return 0.0;
        }
        self.srgate.cpu_us_per_pkt / self.reflector.cpu_us_per_pkt
    }
}

/// A transcode run: srgate's figures with the raw libopus floor.
pub struct TranscodeRow {
    pub calls: usize,
    pub srgate: SideFigures,
    /// Calls a core could transcode with raw libopus (`opus_floor.rs`).
    pub libopus_calls_per_core: f64,
    /// The reflector's CPU per forwarded packet at the same call count: the machine's
    /// packet I/O floor.
    pub reflector_us_per_pkt: f64,
    /// rtpengine doing the same transcoding (Opus ⇄ PCMU, DTLS-SRTP ⇄ RTP), if it ran.
    pub rtpengine: Option<SideFigures>,
}

/// Cores a side kept busy in its window.
pub fn cores(s: &SideFigures) -> f64 {
    let ns: u64 = s.threads.iter().map(|t| t.1).sum();
    if s.window_s > 0.0 {
        ns as f64 / 1e9 / s.window_s
    } else {
        0.0
    }
}

/// Calls up per core a side kept busy.
pub fn calls_per_core(s: &SideFigures) -> f64 {
    let c = cores(s);
    if c > 0.0 { s.calls_up as f64 / c } else { 0.0 }
}

impl TranscodeRow {
    /// Cores srgate kept busy in the window.
    pub fn srgate_cores(&self) -> f64 {
        cores(&self.srgate)
    }

    pub fn calls_per_core(&self) -> f64 {
        calls_per_core(&self.srgate)
    }

    /// rtpengine's transcoded calls per core, when it ran and carried calls.
    pub fn rtpengine_calls_per_core(&self) -> Option<f64> {
        self.rtpengine
            .as_ref()
            .filter(|r| r.calls_up > 0)
            .map(calls_per_core)
    }

    /// srgate's calls per core over raw libopus's (the target is ≥ 0.8).
    pub fn floor_ratio(&self) -> f64 {
        if self.libopus_calls_per_core > 0.0 {
            self.calls_per_core() / self.libopus_calls_per_core
        } else {
            0.0
        }
    }

    /// Calls per core of a gateway that did nothing but libopus's work and the reflector's
    /// packet I/O: a transcoded call forwards 100 packets a second (50 each way, each
    /// received once and sent once), as a relayed one does.
    pub fn io_floor_calls_per_core(&self) -> f64 {
        if self.libopus_calls_per_core <= 0.0 {
            return 0.0;
        }
        let core_s_per_call =
            1.0 / self.libopus_calls_per_core + self.reflector_us_per_pkt * 100.0 / 1e6;
        1.0 / core_s_per_call
    }

    /// srgate's calls per core over [`TranscodeRow::io_floor_calls_per_core`].
    pub fn io_floor_ratio(&self) -> f64 {
        let floor = self.io_floor_calls_per_core();
        if floor > 0.0 {
            self.calls_per_core() / floor
        } else {
            0.0
        }
    }
}

/// An idle run: calls up (ICE, DTLS, SIP answered) carrying no RTP.
/// Relayed calls in proxy mode (srgate and the phone registered at Kamailio).
pub struct ProxyRow {
    pub calls: usize,
    /// The browsers' calls to the phone.
    pub srgate: SideFigures,
    /// The phone's calls to app users (Kamailio's X-Number route).
    pub incoming: SetupFigures,
}

pub struct IdleRow {
    pub calls: usize,
    pub srgate: SideFigures,
}

impl IdleRow {
    /// srgate's CPU µs per idle call per second of the window.
    pub fn cpu_us_per_call_s(&self) -> f64 {
        let ns: u64 = self.srgate.threads.iter().map(|t| t.1).sum();
        let call_s = self.srgate.calls_up as f64 * self.srgate.window_s;
        if call_s > 0.0 {
            ns as f64 / 1e3 / call_s
        } else {
            0.0
        }
    }

    /// srgate's RSS per idle call over its RSS before the first call.
    pub fn kb_per_call(&self) -> f64 {
        let s = &self.srgate;
        if s.calls_up > 0 {
            (s.rss_kb as f64 - s.idle_rss_kb as f64) / s.calls_up as f64
        } else {
            0.0
        }
    }
}

/// The setup run: calls started as fast as srgate takes them.
pub struct SetupFigures {
    pub calls: usize,
    pub calls_up: usize,
    /// From the first call started to the last one up.
    pub wall_s: f64,
    /// srgate's CPU time over that span.
    pub srgate_cpu_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Handshakes' worth of P-256 crypto (sign, verify, ECDH) a second on one core.
    pub crypto_floor_per_s: f64,
    pub failures: Vec<String>,
    /// Every call's setup time, ms, sorted (report.md's CDF).
    pub samples_ms: Vec<f64>,
}

impl SetupFigures {
    pub fn setups_per_s(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.calls_up as f64 / self.wall_s
        } else {
            0.0
        }
    }

    /// Setups per second of srgate CPU time: per core.
    pub fn setups_per_cpu_s(&self) -> f64 {
        if self.srgate_cpu_s > 0.0 {
            self.calls_up as f64 / self.srgate_cpu_s
        } else {
            0.0
        }
    }

    /// Setups per core over the crypto floor (the target is ≥ 0.3).
    pub fn floor_ratio(&self) -> f64 {
        if self.crypto_floor_per_s > 0.0 {
            self.setups_per_cpu_s() / self.crypto_floor_per_s
        } else {
            0.0
        }
    }
}

/// The overload run: 120 % of `[calls] max_calls` offered.
pub struct OverloadFigures {
    pub capacity_calls: usize,
    pub offered_calls: usize,
    pub carried_calls: usize,
    pub refused: usize,
    /// Loss of the calls carried, over the window.
    pub live_loss: f64,
    pub damaged: u64,
    pub idle_rss_kb: u64,
    /// RSS with the calls up.
    pub peak_rss_kb: u64,
    /// RSS once every call ended and their SIP transactions are gone.
    pub after_rss_kb: u64,
    /// The same for `RssAnon` (heap): code pages mapped in by running code do not count;
    /// after the first and after the second round of the same calls.
    pub idle_anon_kb: u64,
    pub first_after_anon_kb: u64,
    pub after_anon_kb: u64,
    /// `/health` calls once every call ended.
    pub calls_after: Option<u64>,
}

/// The soak: relayed calls through one srgate for a long window.
pub struct SoakFigures {
    pub calls: usize,
    pub srgate: SideFigures,
}

impl SoakFigures {
    /// The largest RSS seen: at the window's ends or at a sample.
    pub fn max_rss_kb(&self) -> u64 {
        let s = &self.srgate;
        s.samples
            .iter()
            .map(|x| x.rss_kb)
            .chain([s.rss_start_kb, s.rss_kb])
            .max()
            .unwrap_or(0)
    }

    /// RSS growth from the end of the first interval (the sample after the window's start)
    /// to the window's end: the drift once buffers reached their high-water mark. None
    /// with fewer than three samples.
    pub fn settled_drift(&self) -> Option<f64> {
        let s = &self.srgate;
        let first = s.samples.get(1).filter(|_| s.samples.len() >= 3)?.rss_kb;
        (first > 0).then(|| (s.rss_kb as f64 - first as f64) / first as f64)
    }

    /// Each sample with the loss of the frames sent since the one before it.
    pub fn intervals(&self) -> Vec<(&Sample, f64)> {
        let mut before = (0, 0);
        self.srgate
            .samples
            .iter()
            .map(|x| {
                let (sent, received) = (x.sent - before.0, x.received.saturating_sub(before.1));
                before = (x.sent, x.received);
                let loss = if sent == 0 {
                    0.0
                } else {
                    (sent - received.min(sent)) as f64 / sent as f64
                };
                (x, loss)
            })
            .collect()
    }
}

pub struct Results {
    pub shards: usize,
    pub seconds: u64,
    pub relay: Vec<RelayRow>,
    pub transcode: Vec<TranscodeRow>,
    pub idle: Vec<IdleRow>,
    pub proxy: Vec<ProxyRow>,
    pub setup: Option<SetupFigures>,
    /// The setup run from the SIP side (the phone calls waiting app users).
    pub setup_in: Option<SetupFigures>,
    pub overload: Option<OverloadFigures>,
    pub soak: Option<SoakFigures>,
    /// The checkout's commit when the run began (`+dirty` with uncommitted changes): what
    /// was built and measured, even if the checkout moves on during a long run.
    pub git: String,
}

impl Results {
    pub fn new(shards: usize, seconds: u64) -> Results {
        Results {
            git: git_commit(),
            shards,
            seconds,
            relay: Vec::new(),
            transcode: Vec::new(),
            idle: Vec::new(),
            proxy: Vec::new(),
            setup: None,
            setup_in: None,
            overload: None,
            soak: None,
        }
    }
}

/// The targets, judged on this run (a missed one with its gap and, where known, why).
fn targets_section(m: &mut String, r: &Results) {
    let _ = writeln!(
        m,
        "## Targets

| target | goal | measured | verdict | why |
|---|---|---|---|---|"
    );
    for t in crate::targets::evaluate(r) {
        let verdict = match t.verdict {
            crate::targets::Verdict::Met => "met".to_string(),
            v => format!("**{}**", v.as_str()),
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {verdict} | {} |",
            t.name,
            t.goal,
            t.measured,
            t.why.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(m);
}

/// The soak's section of report.md: the figures, then one line per sample.
fn soak_section(m: &mut String, k: &SoakFigures) {
    let s = &k.srgate;
    let _ = writeln!(
        m,
        "\n## Soak\n\n{} relayed calls ({} up) through one srgate for {:.0} s: loss {:.4} % \
         ({} damaged), {:.2} µs CPU per packet, p99 round trip {:.2} ms; RSS {:.1} MB at the \
         window's start, {:.1} MB at its end, {:.1} MB at most: **drift {:.3} %** (target < 1 % \
         over an hour; {} from the end of the first interval); open descriptors {} before the first call, {} with the calls up, **{} \
         after the last ended**; `/health` calls after: {}.{}\n",
        k.calls,
        s.calls_up,
        s.window_s,
        s.loss * 100.0,
        s.damaged,
        s.cpu_us_per_pkt,
        s.p99_ms,
        s.rss_start_kb as f64 / 1024.0,
        s.rss_kb as f64 / 1024.0,
        k.max_rss_kb() as f64 / 1024.0,
        s.rss_drift() * 100.0,
        k.settled_drift()
            .map_or("–".to_string(), |x| format!("{:.3} %", x * 100.0)),
        s.idle_fds,
        s.open_fds,
        s.after_fds,
        s.calls_after.map_or("?".to_string(), |c| c.to_string()),
        if s.generator_saturated() {
            " The harness was saturated during the window: the loss is its as much as srgate's."
        } else {
            ""
        }
    );
    let _ = writeln!(
        m,
        "| time s | RSS KB | heap (RssAnon) KB | descriptors | loss since the sample before |\n|---|---|---|---|---|"
    );
    for (x, loss) in k.intervals() {
        let _ = writeln!(
            m,
            "| {:.0} | {} | {} | {} | {:.4} % |",
            x.t_s,
            x.rss_kb,
            x.anon_kb,
            x.fds,
            loss * 100.0
        );
    }
    for f in &s.failures {
        let _ = writeln!(m, "- soak: {f}");
    }
}

/// A setup run's section of report.md: `what` the calls were, then the figures.
fn setup_section(m: &mut String, title: &str, what: &str, s: &SetupFigures) {
    let _ = writeln!(
        m,
        "\n## {title}\n\n{} {what}: {}/{} up in {:.2} s, **{:.0} setups/s**, {:.0} per second \
         of srgate CPU time; p50 {:.0} ms, p99 {:.0} ms. DTLS crypto floor (P-256 sign + \
         verify + ECDH, the crates srgate uses): {:.0} handshakes/s on one core, so srgate \
         sets up **{:.2} ×** the floor per core (target ≥ 0.3).",
        s.calls,
        s.calls_up,
        s.calls,
        s.wall_s,
        s.setups_per_s(),
        s.setups_per_cpu_s(),
        s.p50_ms,
        s.p99_ms,
        s.crypto_floor_per_s,
        s.floor_ratio()
    );
    for f in &s.failures {
        let _ = writeln!(m, "- {title}: {f}");
    }
}

fn setup_json(s: &SetupFigures) -> Value {
    json!({
        "calls": s.calls,
        "calls_up": s.calls_up,
        "setups_per_s": round(s.setups_per_s(), 1),
        "setups_per_srgate_cpu_s": round(s.setups_per_cpu_s(), 1),
        "p50_setup_ms": s.p50_ms,
        "p99_setup_ms": s.p99_ms,
        "crypto_floor_per_s": round(s.crypto_floor_per_s, 1),
        "over_crypto_floor": round(s.floor_ratio(), 3),
        "failures": s.failures,
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn machine() -> Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    json!({"cpu": cpu, "cores": cores, "kernel": kernel, "arch": std::env::consts::ARCH})
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--abbrev=12", "--dirty=+dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// KB of srgate RSS per call over runs of `SideFigures`: the slope between the smallest
/// and the largest run, or against idle when there is one run.
fn kb_per_call<'a>(runs: impl Iterator<Item = &'a SideFigures> + Clone) -> Option<f64> {
    let first = runs.clone().min_by_key(|r| r.calls_up)?;
    let last = runs.max_by_key(|r| r.calls_up)?;
    let dc = last.calls_up as f64 - first.calls_up as f64;
    if dc > 0.0 {
        return Some((last.rss_kb as f64 - first.rss_kb as f64) / dc);
    }
    (first.calls_up > 0)
        .then(|| (first.rss_kb as f64 - first.idle_rss_kb as f64) / first.calls_up as f64)
}

pub fn relay_kb_per_call(rows: &[RelayRow]) -> Option<f64> {
    kb_per_call(rows.iter().map(|r| &r.srgate))
}

pub fn transcode_kb_per_call(rows: &[TranscodeRow]) -> Option<f64> {
    kb_per_call(rows.iter().map(|r| &r.srgate))
}

pub fn to_json(r: &Results) -> Value {
    let relay: Vec<Value> = r
        .relay
        .iter()
        .map(|row| {
            let s = &row.srgate;
            let f = &row.reflector;
            json!({
                "calls": row.calls,
                "calls_up": s.calls_up,
                "pps": round(s.pps(), 0),
                "loss": s.loss,
                "reordered": s.reordered,
                "damaged": s.damaged,
                "p50_ms": s.p50_ms,
                "p99_ms": s.p99_ms,
                "srgate_cpu_us_per_pkt": round(s.cpu_us_per_pkt, 3),
                "reflector_cpu_us_per_pkt": round(f.cpu_us_per_pkt, 3),
                "rtpengine_cpu_us_per_pkt": row.rtpengine.as_ref().map(|r| round(r.cpu_us_per_pkt, 3)),
                "srgate_over_rtpengine": row.rtpengine_ratio().map(|x| round(x, 3)),
                "rtpengine": row.rtpengine.as_ref().map(|r| json!({
                    "job": "DTLS-SRTP with ICE toward the browser, RTP toward the phone, PCMU both sides (the same as srgate)",
                    "calls_up": r.calls_up,
                    "loss": r.loss,
                    "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms,
                    "rss_kb": r.rss_kb,
                    "socket_drops": r.socket_drops,
                    "heard_hz": r.heard_hz,
                    "failures": r.failures,
                    "thread_cpu_share": r.thread_shares().iter().map(|(n, x)| json!({"thread": n, "share": round(*x, 3)})).collect::<Vec<_>>(),
                })),
                "srgate_over_reflector": round(row.ratio(), 3),
                "shard_cpu_share": s.thread_shares().iter().map(|(n, x)| json!({"thread": n, "share": round(*x, 3)})).collect::<Vec<_>>(),
                "srgate_rss_kb": s.rss_kb,
                "srgate_idle_rss_kb": s.idle_rss_kb,
                "srgate_rss_after_kb": s.after_rss_kb,
                "srgate_open_fds": s.open_fds,
                "srgate_rss_drift": round(s.rss_drift(), 4),
                "srgate_idle_fds": s.idle_fds,
                "srgate_fds_after": s.after_fds,
                "setup_p50_ms": s.setup_p50_ms,
                "setup_p99_ms": s.setup_p99_ms,
                "ramp_s": round(s.ramp_s, 2),
                "calls_ended_clean": s.ended_clean,
                "calls_after": s.calls_after,
                "heard_hz": s.heard_hz,
                "failures": s.failures,
                "srgate_socket_drops": s.socket_drops,
                "reflector_loss": f.loss,
                "reflector_socket_drops": f.socket_drops,
                "reflector_p50_ms": f.p50_ms,
                "reflector_p99_ms": f.p99_ms,
                "generator": {
                    "browsers_cpu_share": round(s.generator_cpu_share, 3),
                    "phone_cpu_share": round(s.phone_cpu_share, 3),
                    "late_sends": s.late_sends,
                    "socket_drops": s.generator_drops,
                    "saturated": {
                        "srgate": s.generator_saturated(),
                        "reflector": f.generator_saturated(),
                        "rtpengine": row.rtpengine.as_ref().map(SideFigures::generator_saturated),
                    },
                },
            })
        })
        .collect();
    json!({
        "machine": machine(),
        "git": r.git,
        "targets": crate::targets::evaluate(r).iter().map(|t| json!({
            "target": t.name,
            "goal": t.goal,
            "measured": t.measured,
            "verdict": t.verdict.as_str(),
            "why": t.why,
        })).collect::<Vec<_>>(),
        "shards": r.shards,
        "window_s": r.seconds,
        "relay": relay,
        "transcode": r.transcode.iter().map(|t| json!({
            "calls": t.calls,
            "calls_up": t.srgate.calls_up,
            "loss": t.srgate.loss,
            "srgate_cores": round(t.srgate_cores(), 3),
            "srgate_calls_per_core": round(t.calls_per_core(), 1),
            "rtpengine_calls_per_core": t.rtpengine_calls_per_core().map(|x| round(x, 1)),
            "rtpengine_calls_up": t.rtpengine.as_ref().map(|r| r.calls_up),
            "rtpengine_loss": t.rtpengine.as_ref().map(|r| r.loss),
            "rtpengine_heard_hz": t.rtpengine.as_ref().and_then(|r| r.heard_hz),
            "srgate_over_rtpengine": t.rtpengine_calls_per_core().filter(|x| *x > 0.0).map(|x| round(t.calls_per_core() / x, 3)),
            "libopus_calls_per_core": round(t.libopus_calls_per_core, 1),
            "srgate_over_libopus": round(t.floor_ratio(), 3),
            "reflector_cpu_us_per_pkt": round(t.reflector_us_per_pkt, 2),
            "libopus_plus_io_calls_per_core": round(t.io_floor_calls_per_core(), 1),
            "srgate_over_libopus_plus_io": round(t.io_floor_ratio(), 3),
            "heard_hz": t.srgate.heard_hz,
            "srgate_rss_kb": t.srgate.rss_kb,
            "shard_cpu_share": t.srgate.thread_shares().iter().map(|(n, x)| json!({"thread": n, "share": round(*x, 3)})).collect::<Vec<_>>(),
            "generator_saturated": t.srgate.generator_saturated(),
            "failures": t.srgate.failures,
        })).collect::<Vec<_>>(),
        "idle": r.idle.iter().map(|i| json!({
            "calls": i.calls,
            "calls_up": i.srgate.calls_up,
            "window_s": round(i.srgate.window_s, 2),
            "frames_sent": i.srgate.sent,
            "srgate_cpu_us_per_call_s": round(i.cpu_us_per_call_s(), 3),
            "kb_per_call": round(i.kb_per_call(), 1),
            "srgate_rss_kb": i.srgate.rss_kb,
            "srgate_idle_rss_kb": i.srgate.idle_rss_kb,
            "shard_cpu_share": i.srgate.thread_shares().iter().map(|(n, x)| json!({"thread": n, "share": round(*x, 3)})).collect::<Vec<_>>(),
            "failures": i.srgate.failures,
        })).collect::<Vec<_>>(),
        "proxy": r.proxy.iter().map(|p| json!({
            "calls": p.calls,
            "calls_up": p.srgate.calls_up,
            "pps": round(p.srgate.pps(), 0),
            "loss": p.srgate.loss,
            "damaged": p.srgate.damaged,
            "p50_ms": p.srgate.p50_ms,
            "p99_ms": p.srgate.p99_ms,
            "setup_p99_ms": round(p.srgate.setup_p99_ms, 1),
            "srgate_cpu_us_per_pkt": round(p.srgate.cpu_us_per_pkt, 3),
            "heard_hz": p.srgate.heard_hz,
            "calls_ended_clean": p.srgate.ended_clean,
            "shard_cpu_share": p.srgate.thread_shares().iter().map(|(n, x)| json!({"thread": n, "share": round(*x, 3)})).collect::<Vec<_>>(),
            "generator_saturated": p.srgate.generator_saturated(),
            "failures": p.srgate.failures,
            "from_sip": setup_json(&p.incoming),
        })).collect::<Vec<_>>(),
        "setup": r.setup.as_ref().map(setup_json),
        "setup_from_sip": r.setup_in.as_ref().map(setup_json),
        "memory": {"relay_kb_per_call": relay_kb_per_call(&r.relay).map(|x| round(x, 1)), "transcode_kb_per_call": transcode_kb_per_call(&r.transcode).map(|x| round(x, 1))},
        "overload": r.overload.as_ref().map(|o| json!({
            "capacity_calls": o.capacity_calls,
            "offered_calls": o.offered_calls,
            "carried_calls": o.carried_calls,
            "refused": o.refused,
            "live_loss": o.live_loss,
            "damaged": o.damaged,
            "idle_rss_kb": o.idle_rss_kb,
            "peak_rss_kb": o.peak_rss_kb,
            "rss_after_kb": o.after_rss_kb,
            "idle_anon_kb": o.idle_anon_kb,
            "anon_after_first_round_kb": o.first_after_anon_kb,
            "anon_after_kb": o.after_anon_kb,
            "calls_after": o.calls_after,
        })),
        "soak": r.soak.as_ref().map(|k| {
            let s = &k.srgate;
            json!({
                "calls": k.calls,
                "calls_up": s.calls_up,
                "window_s": round(s.window_s, 1),
                "loss": s.loss,
                "damaged": s.damaged,
                "pps": round(s.pps(), 0),
                "srgate_cpu_us_per_pkt": round(s.cpu_us_per_pkt, 3),
                "p99_ms": s.p99_ms,
                "rss_start_kb": s.rss_start_kb,
                "rss_end_kb": s.rss_kb,
                "rss_max_kb": k.max_rss_kb(),
                "rss_drift": round(s.rss_drift(), 5),
                "rss_drift_after_first_interval": k.settled_drift().map(|x| round(x, 5)),
                "idle_fds": s.idle_fds,
                "open_fds": s.open_fds,
                "fds_after": s.after_fds,
                "calls_after": s.calls_after,
                "calls_ended_clean": s.ended_clean,
                "socket_drops": s.socket_drops,
                "generator_socket_drops": s.generator_drops,
                "generator_saturated": s.generator_saturated(),
                "samples": k.intervals().iter().map(|(x, loss)| json!({
                    "t_s": round(x.t_s, 1),
                    "rss_kb": x.rss_kb,
                    "anon_kb": x.anon_kb,
                    "fds": x.fds,
                    "loss": loss,
                })).collect::<Vec<_>>(),
                "failures": s.failures,
            })
        }),
    })
}

pub fn to_markdown(r: &Results, plots: &crate::plots::Plots) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# srgate load report\n");
    let _ = writeln!(
        m,
        "commit `{}`, {}, srgate with {} shards, {} s windows. Reproduce: `scripts/bench` \
         (or `scripts/bench --quick`).\n",
        r.git,
        machine()["cpu"].as_str().unwrap_or("?"),
        r.shards,
        r.seconds
    );
    targets_section(&mut m, r);
    let _ = writeln!(
        m,
        "## Relay: PCMU both sides, SRTP (str0m browsers) ⇄ RTP (echoing phone)\n"
    );
    let _ = writeln!(
        m,
        "CPU per packet = the process's CPU time (`/proc/PID/task/*/schedstat`) over the packets it \
         forwarded in the window (each frame is forwarded twice: to the phone and back). The \
         reflector is a bare `recvmmsg`/`sendmmsg` relay: the floor of a userspace relay here. \
         rtpengine (userspace, `--table=-1`, as many threads as srgate has shards) does srgate's job: \
         DTLS-SRTP with ICE toward the same str0m browsers, RTP toward the same phone.\n"
    );
    let _ = writeln!(
        m,
        "| calls | up | pps | srgate µs/pkt | rtpengine µs/pkt | reflector µs/pkt | srgate / rtpengine | srgate / reflector | loss | p50 / p99 RTT ms | rtpengine p99 ms | reflector p99 ms | shard CPU share | RSS MB | setup p99 ms | generator |"
    );
    let _ = writeln!(
        m,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for row in &r.relay {
        let s = &row.srgate;
        let f = &row.reflector;
        let shares = s
            .thread_shares()
            .iter()
            .map(|(n, x)| format!("{n} {:.0} %", x * 100.0))
            .collect::<Vec<_>>()
            .join(", ");
        let r = row.rtpengine.as_ref();
        let opt = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.2}"));
        let generator = if row.generator_saturated() {
            let runs: Vec<&str> = [
                ("srgate", s.generator_saturated()),
                ("rtpengine", r.is_some_and(SideFigures::generator_saturated)),
                ("reflector", f.generator_saturated()),
            ]
            .iter()
            .filter(|(_, x)| *x)
            .map(|(name, _)| *name)
            .collect();
            format!(
                "**saturated in the {} run: does not count**",
                runs.join(", ")
            )
        } else {
            format!(
                "{:.0} % / {:.0} %",
                s.generator_cpu_share * 100.0,
                s.phone_cpu_share * 100.0
            )
        };
        let _ = writeln!(
            m,
            "| {} | {} | {:.0} | {:.2} | {} | {:.2} | {} | {:.2} | {:.3} % | {:.2} / {:.2} | {} | {:.2} | {} | {:.1} | {:.0} | {} |",
            row.calls,
            s.calls_up,
            s.pps(),
            s.cpu_us_per_pkt,
            opt(r.map(|r| r.cpu_us_per_pkt)),
            f.cpu_us_per_pkt,
            opt(row.rtpengine_ratio()),
            row.ratio(),
            s.loss * 100.0,
            s.p50_ms,
            s.p99_ms,
            opt(r.map(|r| r.p99_ms)),
            f.p99_ms,
            shares,
            s.rss_kb as f64 / 1024.0,
            s.setup_p99_ms,
            generator
        );
    }
    if !r.transcode.is_empty() {
        let _ = writeln!(
            m,
            "\n## Transcode: Opus (str0m browsers) ⇄ PCMU (echoing phone)\n\n\
             Calls per core = calls up over the cores srgate kept busy in the window; raw \
             libopus = one Opus decode and one encode per 20 ms at srgate's settings (8 kHz \
             PCM, VoIP, FEC, complexity 5) on one core of the same machine; libopus + I/O = \
             that plus the reflector's CPU for the call's 100 packets a second at the same \
             call count (the machine's packet I/O floor), which any userspace gateway pays \
             as well.\n\n\
             | calls | up | loss | srgate cores | srgate calls/core | libopus calls/core | srgate / libopus | libopus + I/O calls/core | srgate / (libopus + I/O) | rtpengine calls/core | srgate / rtpengine | heard Hz | RSS MB |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for t in &r.transcode {
            let _ = writeln!(
                m,
                "| {} | {} | {:.3} % | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {} | {} | {} | {:.1} |",
                t.calls,
                t.srgate.calls_up,
                t.srgate.loss * 100.0,
                t.srgate_cores(),
                t.calls_per_core(),
                t.libopus_calls_per_core,
                t.floor_ratio(),
                t.io_floor_calls_per_core(),
                t.io_floor_ratio(),
                t.rtpengine_calls_per_core()
                    .map_or("–".to_string(), |x| format!("{x:.0}")),
                t.rtpengine_calls_per_core().filter(|x| *x > 0.0).map_or(
                    "–".to_string(),
                    |x| format!("{:.2}", t.calls_per_core() / x)
                ),
                t.srgate
                    .heard_hz
                    .map_or("–".to_string(), |h| format!("{h:.0}")),
                t.srgate.rss_kb as f64 / 1024.0
            );
        }
        if let Some(kb) = transcode_kb_per_call(&r.transcode) {
            let _ = writeln!(m, "\nsrgate RSS per transcoded call: {kb:.1} KB.");
        }
    }
    if !r.idle.is_empty() {
        let _ = writeln!(
            m,
            "\n## Idle (held) calls: up, no RTP\n\n\
             Each call is set up as in the relay runs (ICE, DTLS, SIP answered, one frame \
             echoed to prove the path), then sends nothing; srgate's CPU time over the window \
             per call and second, and its RSS over its RSS before the first call, per call.\n\n\
             | calls | up | frames in window | srgate µs CPU per call-second | RSS MB | KB per call |\n\
             |---|---|---|---|---|---|"
        );
        for i in &r.idle {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {:.2} | {:.1} | {:.1} |",
                i.calls,
                i.srgate.calls_up,
                i.srgate.sent,
                i.cpu_us_per_call_s(),
                i.srgate.rss_kb as f64 / 1024.0,
                i.kb_per_call()
            );
        }
        for f in r.idle.iter().flat_map(|i| &i.srgate.failures) {
            let _ = writeln!(m, "- idle: {f}");
        }
    }
    if !r.proxy.is_empty() {
        let _ = writeln!(
            m,
            "\n## Proxy mode: srgate and the phone registered at Kamailio\n\n\
             srgate registers its proxy account at Kamailio (digest), the phone registers \
             there too; each browser's call goes srgate → Kamailio (407 answered, location \
             lookup, Record-Route) → phone, its ACK and BYE through Kamailio; the media flows \
             between srgate and the phone as in the relay runs.\n\n\
             | calls | up | pps | srgate µs/pkt | loss | p50 / p99 RTT ms | setup p99 ms | ended clean | heard Hz | generator |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        );
        for p in &r.proxy {
            let s = &p.srgate;
            let _ = writeln!(
                m,
                "| {} | {} | {:.0} | {:.2} | {:.3} % | {:.2} / {:.2} | {:.0} | {} | {} | {} |",
                p.calls,
                s.calls_up,
                s.pps(),
                s.cpu_us_per_pkt,
                s.loss * 100.0,
                s.p50_ms,
                s.p99_ms,
                s.setup_p99_ms,
                s.ended_clean,
                s.heard_hz.map_or("–".to_string(), |h| format!("{h:.0}")),
                if s.generator_saturated() {
                    "**saturated: does not count**".to_string()
                } else {
                    format!("{:.2} / {:.2}", s.generator_cpu_share, s.phone_cpu_share)
                }
            );
        }
        for f in r.proxy.iter().flat_map(|p| &p.srgate.failures) {
            let _ = writeln!(m, "- proxy mode: {f}");
        }
        for p in &r.proxy {
            setup_section(
                &mut m,
                &format!(
                    "Proxy mode: {} calls from the phone through Kamailio",
                    p.calls
                ),
                "calls from the phone (registered at Kamailio) to app users named by number, \
                 through Kamailio's X-Number route to srgate's proxy account, offered at 1 000 \
                 a second (256 unanswered at most), each from the phone's first INVITE to \
                 srgate's 200",
                &p.incoming,
            );
        }
    }
    if let Some(s) = &r.setup {
        setup_section(
            &mut m,
            "Setup",
            "calls offered at 1 000 a second (256 at once), each from WebSocket login to the \
             first echoed frame",
            s,
        );
    }
    if let Some(s) = &r.setup_in {
        setup_section(
            &mut m,
            "Setup from SIP",
            "calls from the phone to app users logged in and waiting, offered at 1 000 a \
             second (256 unanswered at most), each from the first INVITE (407, INVITE with \
             digest) to the phone's 200, the app accepting with its offer",
            s,
        );
    }
    if let Some(o) = &r.overload {
        let _ = writeln!(
            m,
            "\n## Overload\n\n`[calls] max_calls = {}`, {} calls offered (120 %), round after \
             round on one srgate: **{} carried, {} refused** with `OVERLOADED` (last round); the calls \
             carried lost {:.3} % of their frames ({} damaged); srgate's heap (RssAnon) {:.1} MB \
             idle, {:.1} MB once the first round's calls ended and their SIP transactions were \
             gone, {:.1} MB after the last (RSS {:.1} MB with the calls up, {:.1} MB after); \
             `/health` calls after: {}. (The capacity here is the configured limit; the CPU capacity of \
             this machine is bounded by the harness, see the relay table.)",
            o.capacity_calls,
            o.offered_calls,
            o.carried_calls,
            o.refused,
            o.live_loss * 100.0,
            o.damaged,
            o.idle_anon_kb as f64 / 1024.0,
            o.first_after_anon_kb as f64 / 1024.0,
            o.after_anon_kb as f64 / 1024.0,
            o.peak_rss_kb as f64 / 1024.0,
            o.after_rss_kb as f64 / 1024.0,
            o.calls_after.map_or("?".to_string(), |c| c.to_string())
        );
    }
    if let Some(k) = &r.soak {
        soak_section(&mut m, k);
    }
    if let Some(kb) = relay_kb_per_call(&r.relay) {
        let _ = writeln!(
            m,
            "\nsrgate RSS per relayed call (slope over the runs): {kb:.1} KB."
        );
    }
    if !r.relay.is_empty() {
        let _ = writeln!(
            m,
            "\nGenerator column: CPU share of the harness's browser thread / phone thread in \
             the window."
        );
    }
    if !plots.files.is_empty() || !plots.errors.is_empty() {
        let _ = writeln!(m, "\n## Plots\n");
        if !plots.labelled {
            let _ = writeln!(
                m,
                "No TrueType font was found (install fonts-dejavu-core or set SRGATE_LOAD_FONT): \
                 the plots have no titles, axis labels or legends.\n"
            );
        }
        for (file, title) in &plots.files {
            let _ = writeln!(m, "![{title}]({file})\n");
        }
        for e in &plots.errors {
            let _ = writeln!(m, "- plot not drawn: {e}");
        }
    }
    for row in &r.relay {
        for f in &row.srgate.failures {
            let _ = writeln!(m, "- {} calls, srgate: {f}", row.calls);
        }
        for f in row.rtpengine.iter().flat_map(|r| &r.failures) {
            let _ = writeln!(m, "- {} calls, rtpengine: {f}", row.calls);
        }
    }
    m
}

pub fn write(r: &Results, dir: &Path) -> io::Result<()> {
    let json = serde_json::to_string_pretty(&to_json(r)).map_err(io::Error::other)?;
    fs::write(dir.join("results.json"), json + "\n")?;
    let plots = crate::plots::write(r, dir);
    fs::write(dir.join("report.md"), to_markdown(r, &plots))
}
