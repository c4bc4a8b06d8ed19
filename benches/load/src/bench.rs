//! The standard comparison: for each call count, a relay run through srgate and the same
//! load through the reflector, one after the other in one invocation, so their ratio is
//! measured on the same machine in the same minute.

use std::fs;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::browser::{Browsers, Media};
use crate::kamailio::{GATEWAY_ACCOUNT, Kamailio, PHONE_ACCOUNT};
use crate::payload;
use crate::phone::{Account, Phone};
use crate::plain::PlainBrowsers;
use crate::procfs::{self, CpuSnapshot};
use crate::report::{self, RelayRow, Results, SideFigures};
use crate::stats::Totals;

const PHONE_USER: &str = "phone";
const PHONE_PASSWORD: &str = "load-phone-pw";
/// Proxy mode's first app user: Kamailio's X-Number route takes 4-digit numbers that are
/// not registered there (its users are 1000, 1006 and 1009).
const FIRST_NUMBERED_APP_USER: u32 = 2000;

pub struct Options {
    pub srgate: PathBuf,
    pub calls: Vec<usize>,
    pub seconds: u64,
    pub shards: usize,
    pub out: PathBuf,
    /// A few calls, only to check the harness works (CI): fails unless every call came up
    /// and the tone came back.
    pub smoke: bool,
    /// New calls started per second during the ramp.
    pub rate: usize,
    /// Also measure rtpengine (when installed).
    pub rtpengine: bool,
    /// Calls of the setup run (started as fast as srgate takes them; 0: no setup run).
    pub setup_calls: usize,
    /// `[calls] max_calls` of the overload run, which offers 120 % of it (0: no run).
    pub overload_capacity: usize,
    /// Call counts of the transcode runs (Opus browsers, PCMU phone).
    pub transcode_calls: Vec<usize>,
    /// How many times the overload run offers its calls to the same srgate (2 at least:
    /// memory must end each round where the first left it).
    pub overload_rounds: usize,
    /// Call counts of the idle runs (calls up but silent: srgate's cost of a held call).
    pub idle_calls: Vec<usize>,
    /// Length of the soak in seconds (0: no soak): `soak_calls` relayed calls through one
    /// srgate, memory and descriptors sampled through the window.
    pub soak: u64,
    pub soak_calls: usize,
    /// Every browser peer on a socket of its own, instead of one shared socket (for
    /// comparison; the fallback where the shared socket cannot be had).
    pub socket_per_peer: bool,
    /// Call counts of the proxy-mode runs: srgate registered at Kamailio, the browsers'
    /// calls routed through it to the phone registered there (empty: none).
    pub proxy_calls: Vec<usize>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            srgate: crate::sibling_srgate(),
            calls: vec![250, 500, 1000],
            seconds: 20,
            shards: 2,
            out: PathBuf::from("target/bench"),
            smoke: false,
            rate: 200,
            rtpengine: true,
            setup_calls: 300,
            overload_capacity: 250,
            overload_rounds: 2,
            transcode_calls: vec![50, 100],
            idle_calls: vec![250, 500, 1000],
            soak: 0,
            soak_calls: 400,
            socket_per_peer: false,
            proxy_calls: vec![100],
        };
        let mut args = args.iter();
        // bounded: every turn takes at least one argument
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .map(String::as_str)
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--srgate" => o.srgate = PathBuf::from(value()?),
                "--calls" => o.calls = counts(flag, value()?, 1..=5000)?,
                // --duration: the name for a soak's length
                "--seconds" | "--duration" => o.seconds = number(flag, value()?, 1..=86_400)?,
                "--shards" => o.shards = number(flag, value()?, 1..=64)?,
                "--rate" => o.rate = number(flag, value()?, 1..=10_000)?,
                "--out" => o.out = PathBuf::from(value()?),
                "--no-rtpengine" => o.rtpengine = false,
                "--socket-per-peer" => o.socket_per_peer = true,
                "--overload-capacity" => o.overload_capacity = number(flag, value()?, 0..=4000)?,
                "--overload-rounds" => o.overload_rounds = number(flag, value()?, 2..=100)?,
                "--setup-calls" => o.setup_calls = number(flag, value()?, 0..=5000)?,
                "--transcode-calls" => o.transcode_calls = runs(flag, value()?, 2000)?,
                "--proxy-calls" => o.proxy_calls = runs(flag, value()?, 2000)?,
                "--idle-calls" => o.idle_calls = runs(flag, value()?, 5000)?,
                // the soak alone, unless scenarios are named after it
                "--soak" => {
                    o.soak = number(flag, value()?, 60..=86_400)?;
                    o.calls.clear();
                    o.transcode_calls.clear();
                    o.idle_calls.clear();
                    o.setup_calls = 0;
                    o.overload_capacity = 0;
                    o.proxy_calls.clear();
                }
                "--soak-calls" => o.soak_calls = number(flag, value()?, 1..=5000)?,
                "--quick" => {
                    o.calls = vec![50, 250, 500];
                    o.seconds = 10;
                    o.setup_calls = 200;
                    o.overload_capacity = 100;
                    o.transcode_calls = vec![50];
                    o.idle_calls = vec![50, 250, 500];
                    o.proxy_calls = vec![50];
                }
                "--smoke" => {
                    o.calls = vec![4];
                    o.seconds = 3;
                    o.setup_calls = 4;
                    o.overload_capacity = 5;
                    o.transcode_calls = vec![2];
                    o.idle_calls = vec![4];
                    o.proxy_calls = vec![2];
                    o.soak = 6;
                    o.soak_calls = 4;
                    o.smoke = true;
                }
                other => return Err(format!("unknown option '{other}'")),
            }
        }
        Ok(o)
    }
}

/// The value of `flag`: a number within `range`.
fn number<T>(flag: &str, value: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    value
        .parse()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{flag} takes {}..={}", range.start(), range.end()))
}

/// The call counts of `flag`'s runs (1 to `most` each, comma-separated), or none: "0".
fn runs(flag: &str, value: &str, most: usize) -> Result<Vec<usize>, String> {
    if value == "0" {
        return Ok(Vec::new());
    }
    counts(flag, value, 1..=most)
}

/// The value of `flag`: numbers within `range` separated by commas, at least one.
fn counts(
    flag: &str,
    value: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<Vec<usize>, String> {
    value
        .split(',')
        .map(|v| number(flag, v.trim(), range.clone()))
        .collect()
}

pub fn run(o: &Options) -> Result<(), String> {
    if !o.srgate.is_file() {
        return Err(format!(
            "no srgate binary at {} (build it: cargo build --release, or give --srgate)",
            o.srgate.display()
        ));
    }
    fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let mut results = Results::new(o.shards, o.seconds);
    for &calls in &o.calls {
        eprintln!("== {calls} calls: through srgate ({} shards)", o.shards);
        let srgate = relay_srgate(o, &Run::new(o, calls))?;
        eprintln!("   {}", summary(&srgate, calls));
        if o.smoke {
            check_smoke(&srgate, calls)?;
        }
        let rtpengine = if !o.rtpengine {
            None
        } else if std::path::Path::new(RTPENGINE).is_file() {
            eprintln!("== {calls} calls: through rtpengine ({} threads)", o.shards);
            let r = relay_rtpengine(o, calls)?;
            eprintln!(
                "   up {}/{calls}, loss {:.4} %, p99 {:.2} ms, {:.2} µs CPU per packet",
                r.calls_up,
                r.loss * 100.0,
                r.p99_ms,
                r.cpu_us_per_pkt
            );
            if o.smoke {
                check_smoke(&r, calls)?;
            }
            Some(r)
        } else {
            eprintln!(
                "   rtpengine is not installed ({RTPENGINE}): skipped (apt-get install rtpengine-daemon)"
            );
            None
        };
        eprintln!("== {calls} calls: through the reflector");
        let reflector = relay_reflector(o, calls)?;
        eprintln!(
            "   loss {:.4} %, p99 {:.2} ms, {:.2} µs CPU per packet",
            reflector.loss * 100.0,
            reflector.p99_ms,
            reflector.cpu_us_per_pkt
        );
        results
            .relay
            .push(RelayRow::new(calls, srgate, rtpengine, reflector));
    }
    if !o.transcode_calls.is_empty() {
        for &calls in &o.transcode_calls {
            let floor = crate::opus_floor::libopus_calls_per_core(Duration::from_secs(2), calls)?;
            results.transcode.push(transcode_run(o, calls, floor)?);
        }
    }
    for &calls in &o.idle_calls {
        results.idle.push(idle_run(o, calls)?);
    }
    if !o.proxy_calls.is_empty() {
        if Kamailio::installed() {
            for &calls in &o.proxy_calls {
                results.proxy.push(proxy_run(o, calls)?);
            }
        } else if o.smoke && std::env::var_os("CI").is_some() {
            return Err("smoke: Kamailio is not installed (apt-get install kamailio)".into());
        } else {
            eprintln!(
                "== proxy mode: Kamailio is not installed: skipped (apt-get install kamailio)"
            );
        }
    }
    if o.setup_calls > 0 {
        results.setup = Some(setup_run(o)?);
        results.setup_in = Some(setup_in_run(o, o.setup_calls, None)?);
    }
    if o.overload_capacity > 0 {
        results.overload = Some(overload_run(o)?);
    }
    if o.soak > 0 {
        results.soak = Some(soak_run(o)?);
    }
    report::write(&results, &o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    eprintln!(
        "wrote {} and {}",
        o.out.join("results.json").display(),
        o.out.join("report.md").display()
    );
    Ok(())
}

/// One line on a run through srgate of `calls` calls.
fn summary(s: &SideFigures, calls: usize) -> String {
    format!(
        "up {}/{calls}, loss {:.4} %, p99 {:.2} ms, {:.2} µs CPU per packet \
         (harness: browsers {:.2} core, phone {:.2}, its own drops {}{})",
        s.calls_up,
        s.loss * 100.0,
        s.p99_ms,
        s.cpu_us_per_pkt,
        s.generator_cpu_share,
        s.phone_cpu_share,
        s.generator_drops,
        if s.generator_saturated() {
            ", saturated"
        } else {
            ""
        }
    )
}

/// Relayed calls in proxy mode: srgate registered at a Kamailio of the harness's own,
/// each browser's call routed by it (digest, location, Record-Route) to the phone
/// registered there; the media between srgate and the phone as in the relay runs.
fn proxy_run(o: &Options, calls: usize) -> Result<report::ProxyRow, String> {
    eprintln!("== {calls} calls in proxy mode: srgate and the phone registered at Kamailio");
    let dir = o.out.join("kamailio");
    let mut kamailio = Kamailio::start(&dir, free_port_run(1)?)?;
    let result = relay_srgate(
        o,
        &Run {
            proxy: Some(kamailio.addr),
            ..Run::new(o, calls)
        },
    )
    .and_then(|s| Ok((s, setup_in_run(o, calls, Some(kamailio.addr))?)));
    kamailio.stop();
    let (s, incoming) =
        result.map_err(|e| format!("{e} (Kamailio's log: {})", kamailio.log().display()))?;
    eprintln!(
        "   from the browsers: {}; setup p99 {:.0} ms",
        summary(&s, calls),
        s.setup_p99_ms
    );
    if o.smoke {
        check_smoke(&s, calls)?;
    }
    Ok(report::ProxyRow {
        calls,
        srgate: s,
        incoming,
    })
}

/// Transcoded calls: the browsers send Opus, the phone answers PCMU, srgate transcodes
/// both ways; its calls per core against raw libopus doing the same (`floor`).
fn transcode_run(o: &Options, calls: usize, floor: f64) -> Result<report::TranscodeRow, String> {
    eprintln!("== {calls} calls transcoded (Opus ⇄ PCMU) through srgate");
    let s = relay_srgate(
        o,
        &Run {
            transcode: true,
            ..Run::new(o, calls)
        },
    )?;
    // The machine's packet I/O floor at this packet rate: what any userspace gateway pays
    // to receive and send the call's packets, on top of the codec work.
    eprintln!("   the same packet rate through the reflector");
    let reflector = relay_reflector(o, calls)?;
    let rtpengine = if o.rtpengine {
        eprintln!("   the same calls transcoded by rtpengine");
        match transcode_rtpengine(o, calls) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("   rtpengine: {e}");
                None
            }
        }
    } else {
        None
    };
    let row = report::TranscodeRow {
        calls,
        libopus_calls_per_core: floor,
        srgate: s,
        reflector_us_per_pkt: reflector.cpu_us_per_pkt,
        rtpengine,
    };
    if let Some(r) = &row.rtpengine {
        eprintln!(
            "   rtpengine: up {}/{calls}, loss {:.4} %, {:.0} calls per core, heard {:?} Hz",
            r.calls_up,
            r.loss * 100.0,
            report::calls_per_core(r),
            r.heard_hz
        );
    }
    eprintln!(
        "   up {}/{calls}, loss {:.4} %, srgate {:.2} cores: {:.0} calls per core (raw libopus {:.0}: {:.2}; libopus + reflector I/O {:.0}: {:.2}), heard {:?} Hz",
        row.srgate.calls_up,
        row.srgate.loss * 100.0,
        row.srgate_cores(),
        row.calls_per_core(),
        floor,
        row.floor_ratio(),
        row.io_floor_calls_per_core(),
        row.io_floor_ratio(),
        row.srgate.heard_hz
    );
    if o.smoke {
        let s = &row.srgate;
        if s.calls_up != calls || s.received == 0 || s.loss > 0.01 {
            return Err(format!(
                "smoke: transcoded calls up {}/{calls}, frames sent {}, back {}: {:?}",
                s.calls_up, s.sent, s.received, s.failures
            ));
        }
        match s.heard_hz {
            Some(hz) if (hz - 1000.0).abs() <= 50.0 => {}
            other => {
                return Err(format!(
                    "smoke: the transcoded echo is not the 1 kHz tone sent: {other:?} Hz"
                ));
            }
        }
    }
    Ok(row)
}

/// Idle calls: set up (ICE, DTLS, SIP answered, one frame echoed to prove the path), then
/// silent for the window: srgate's CPU and memory per held call.
fn idle_run(o: &Options, calls: usize) -> Result<report::IdleRow, String> {
    eprintln!("== {calls} idle calls (up, no RTP) through srgate");
    let s = relay_srgate(
        o,
        &Run {
            silent: true,
            ..Run::new(o, calls)
        },
    )?;
    let row = report::IdleRow { calls, srgate: s };
    eprintln!(
        "   up {}/{calls}, {} frames in the window, {:.2} µs srgate CPU per call-second, {:.1} KB per call",
        row.srgate.calls_up,
        row.srgate.sent,
        row.cpu_us_per_call_s(),
        row.kb_per_call()
    );
    if o.smoke && (row.srgate.calls_up != calls || row.srgate.sent > 0) {
        return Err(format!(
            "smoke: idle calls up {}/{calls}, frames sent in the window {} (none expected): {:?}",
            row.srgate.calls_up, row.srgate.sent, row.srgate.failures
        ));
    }
    Ok(row)
}

/// How long a soak's calls run before its window opens: queues, socket buffers and the
/// allocator's pages reach the sizes the load's bursts give them, and the drift measured
/// after is what the calls keep adding (a leak), not that first growth.
const SOAK_WARM_UP: Duration = Duration::from_secs(60);

/// The soak: `--soak-calls` relayed calls through one srgate for `--soak` seconds (after a
/// minute's warm-up), its memory, descriptors and the calls' loss sampled twelve times over
/// the window (every 10 s to 5 min); then every call hung up and srgate's descriptors
/// counted again.
fn soak_run(o: &Options) -> Result<report::SoakFigures, String> {
    let calls = o.soak_calls;
    eprintln!(
        "== soak: {calls} relayed calls through srgate ({} shards) for {} s",
        o.shards, o.soak
    );
    let every = if o.smoke {
        Duration::from_secs(1)
    } else {
        Duration::from_secs((o.soak / 12).clamp(10, 300))
    };
    let s = relay_srgate(
        o,
        &Run {
            seconds: o.soak,
            sample_every: Some(every),
            warm_up: if o.smoke {
                Duration::from_secs(2)
            } else {
                SOAK_WARM_UP
            },
            ..Run::new(o, calls)
        },
    )?;
    let soak = report::SoakFigures { calls, srgate: s };
    let s = &soak.srgate;
    eprintln!(
        "   up {}/{calls}, loss {:.4} %, RSS {} → {} KB (max {} KB, drift {:.3} %), descriptors {} idle, {} after, /health calls after: {:?}",
        s.calls_up,
        s.loss * 100.0,
        s.rss_start_kb,
        s.rss_kb,
        soak.max_rss_kb(),
        s.rss_drift() * 100.0,
        s.idle_fds,
        s.after_fds,
        s.calls_after
    );
    if o.smoke {
        check_smoke(s, calls)?;
        if s.samples.is_empty() || s.after_fds != s.idle_fds || s.calls_after != Some(0) {
            return Err(format!(
                "smoke: soak samples {}, descriptors {} idle and {} after, /health calls after {:?}",
                s.samples.len(),
                s.idle_fds,
                s.after_fds,
                s.calls_after
            ));
        }
    }
    Ok(soak)
}

/// Calls set up as fast as srgate takes them (1 000 a second offered, 256 at once), each
/// hung up once up; then the DTLS crypto floor on this thread.
fn setup_run(o: &Options) -> Result<report::SetupFigures, String> {
    let calls = o.setup_calls;
    eprintln!("== setup: {calls} calls offered at 1 000 a second");
    let s = relay_srgate(
        o,
        &Run {
            ramp: Ramp {
                rate: 1000,
                in_flight: 256,
            },
            seconds: 0,
            ..Run::new(o, calls)
        },
    )?;
    let floor = crate::crypto::handshakes_per_s(Duration::from_secs(2))?;
    let figures = report::SetupFigures {
        calls,
        calls_up: s.calls_up,
        wall_s: s.ramp_s,
        srgate_cpu_s: s.ramp_cpu_s,
        p50_ms: s.setup_p50_ms,
        p99_ms: s.setup_p99_ms,
        crypto_floor_per_s: floor,
        failures: s.failures,
        samples_ms: s.setup_ms,
    };
    eprintln!(
        "   {}/{calls} up in {:.2} s: {:.0} setups/s, {:.0} per srgate CPU-second (crypto floor {:.0}/s: {:.2}), p99 {:.0} ms",
        figures.calls_up,
        figures.wall_s,
        figures.setups_per_s(),
        figures.setups_per_cpu_s(),
        floor,
        figures.floor_ratio(),
        figures.p99_ms
    );
    if o.smoke && figures.calls_up != calls {
        return Err(format!(
            "smoke: {} of {calls} calls of the setup run came up",
            figures.calls_up
        ));
    }
    Ok(figures)
}

/// The phone registered at `gw`, or in proxy mode at Kamailio (bounded: 5 s).
fn registered_phone(gw: &Gateway) -> Result<Phone, String> {
    let account = match gw.proxy {
        Some(kamailio) => Account {
            gateway: kamailio,
            user: PHONE_ACCOUNT.0.into(),
            password: PHONE_ACCOUNT.1.into(),
        },
        None => Account {
            gateway: gw.sip,
            user: PHONE_USER.into(),
            password: PHONE_PASSWORD.into(),
        },
    };
    let at = account.gateway;
    let phone = Phone::start(Some(account)).map_err(|e| format!("phone: {e}"))?;
    if !phone.wait_registered(Duration::from_secs(5)) {
        return Err(format!("the phone did not register at {at} within 5 s"));
    }
    Ok(phone)
}

/// Calls from the SIP side set up as fast as srgate takes them: every app user logs in and
/// waits, then the phone calls them (INVITE, 407, INVITE with digest) at 1 000 a second
/// with at most 256 unanswered, each app accepts with its offer; a call counts as up at
/// the phone's 200 and its setup is the INVITE-to-200 time. Then every call is hung up
/// from the app.
/// In proxy mode (`proxy`: Kamailio's address) the app users are numbers (2000 on) and the
/// phone calls them at Kamailio, which sends each call to srgate's proxy account naming the
/// app user in X-Number.
fn setup_in_run(
    o: &Options,
    calls: usize,
    proxy: Option<SocketAddr>,
) -> Result<report::SetupFigures, String> {
    match proxy {
        Some(_) => eprintln!("   {calls} calls from the phone through Kamailio to app users"),
        None => eprintln!("== setup from SIP: {calls} calls to waiting app users, 1 000 a second"),
    }
    let run = Run {
        incoming: true,
        proxy,
        ..Run::new(o, calls)
    };
    let gw = Gateway::start(o, &run)?;
    let phone = registered_phone(&gw)?;
    let mut b = browsers(o.socket_per_peer, gw.web, PHONE_USER, Media::Pcmu)?;
    b.answer_invitations = true;
    if proxy.is_some() {
        b.numbered_users = Some(FIRST_NUMBERED_APP_USER);
    }
    let turn = |b: &mut Browsers| {
        b.turn(Duration::from_millis(1))
            .map_err(|e| format!("browsers: {e}"))
    };
    for i in 0..calls {
        b.start_call()
            .map_err(|e| format!("logging in app user {i}: {e}"))?;
        if i % 64 == 63 {
            turn(&mut b)?;
        }
    }
    drive_until(&mut b, Duration::from_secs(30), turn, |b| {
        b.listening() + b.census().3 >= calls
    })?;
    if b.listening() < calls {
        return Err(format!(
            "{} of {calls} app users logged in: {:?}",
            b.listening(),
            b.failures()
        ));
    }

    let cpu0 = CpuSnapshot::of(gw.pid());
    let start = Instant::now();
    let bound = Duration::from_secs(30) + Duration::from_millis(50) * calls as u32;
    let (mut placed, mut answered_at) = (0, None);
    let counters = phone.counters.clone();
    let done = |c: &crate::phone::PhoneCounters| {
        (c.calls_connected.load(std::sync::atomic::Ordering::Relaxed)
            + c.calls_refused.load(std::sync::atomic::Ordering::Relaxed)) as usize
    };
    // bounded by `bound`
    while start.elapsed() < bound {
        let due = (start.elapsed().as_secs_f64() * 1000.0) as usize + 1;
        // bounded by `calls`
        while placed < calls.min(due) && phone.dials_pending() < 256 {
            phone
                .dial(&b.user_name(placed))
                .map_err(|e| format!("phone: {e}"))?;
            placed += 1;
        }
        turn(&mut b)?;
        if answered_at.is_none() && done(&counters) >= calls {
            answered_at = Some(start.elapsed());
        }
        // every call answered and hearing its echo (or failed)
        if answered_at.is_some() && b.census().1 + b.census().3 >= calls {
            break;
        }
    }
    let wall = answered_at.unwrap_or_else(|| start.elapsed());
    let cpu_ns: u64 = CpuSnapshot::of(gw.pid())
        .since(&cpu0)
        .iter()
        .map(|t| t.2)
        .sum();
    let calls_up = counters
        .calls_connected
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    let heard = b.census().1;
    let mut failures = b.failures();
    failures.extend(
        counters
            .refusals
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
    );
    if heard < calls_up {
        failures.push(format!(
            "{} of the {calls_up} answered calls heard their echo",
            heard
        ));
    }
    let mut setups: Vec<f64> = counters
        .setups
        .lock()
        .map(|s| s.iter().map(|d| d.as_secs_f64() * 1000.0).collect())
        .unwrap_or_default();
    setups.sort_by(f64::total_cmp);

    b.hang_up_all();
    drive_until(&mut b, Duration::from_secs(10), turn, |b| b.census().0 == 0)?;
    drop(b);
    let _ = phone.stop();
    gw.stop();

    let floor = crate::crypto::handshakes_per_s(Duration::from_secs(2))?;
    let figures = report::SetupFigures {
        calls,
        calls_up: calls_up.min(heard),
        wall_s: wall.as_secs_f64(),
        srgate_cpu_s: cpu_ns as f64 / 1e9,
        p50_ms: quantile(&setups, 0.5),
        p99_ms: quantile(&setups, 0.99),
        crypto_floor_per_s: floor,
        failures,
        samples_ms: setups,
    };
    eprintln!(
        "   {}/{calls} up in {:.2} s: {:.0} setups/s, {:.0} per srgate CPU-second ({:.2} × the crypto floor), p99 {:.0} ms",
        figures.calls_up,
        figures.wall_s,
        figures.setups_per_s(),
        figures.setups_per_cpu_s(),
        figures.floor_ratio(),
        figures.p99_ms
    );
    if o.smoke && figures.calls_up != calls {
        return Err(format!(
            "smoke: {} of {calls} calls from SIP came up: {:?}",
            figures.calls_up, figures.failures
        ));
    }
    Ok(figures)
}

/// srgate with `[calls] max_calls` = capacity, offered 120 % of it: the excess must be
/// refused cleanly (`OVERLOADED`), the calls carried must keep their audio, and memory
/// must go back to idle once they end.
fn overload_run(o: &Options) -> Result<report::OverloadFigures, String> {
    let capacity = o.overload_capacity;
    let offered = (capacity * 6).div_ceil(5);
    eprintln!(
        "== overload: {offered} calls offered to srgate with max_calls = {capacity}, {} rounds",
        o.overload_rounds
    );
    let s = relay_srgate(
        o,
        &Run {
            max_calls: Some(capacity),
            // memory is read once the SIP transactions of the hang-ups are gone too (RFC 3261
            // Timer J: 64 × T1 = 32 s)
            settle: if o.smoke {
                Duration::from_millis(1500)
            } else {
                Duration::from_secs(35)
            },
            // the last round must end where the first did
            rounds: o.overload_rounds,
            ..Run::new(o, offered)
        },
    )?;
    let f = report::OverloadFigures {
        capacity_calls: capacity,
        offered_calls: offered,
        carried_calls: s.calls_up,
        refused: s.refused,
        live_loss: s.loss,
        idle_rss_kb: s.idle_rss_kb,
        after_rss_kb: s.after_rss_kb,
        idle_anon_kb: s.idle_anon_kb,
        first_after_anon_kb: s.first_after_anon_kb.unwrap_or(0),
        after_anon_kb: s.after_anon_kb,
        peak_rss_kb: s.rss_kb,
        calls_after: s.calls_after,
        damaged: s.damaged,
    };
    eprintln!(
        "   carried {}, refused {} (OVERLOADED), live loss {:.4} %, heap (RssAnon) idle {} KB, \
         with the calls {} KB RSS, after the first round {} KB, after the last {} KB",
        f.carried_calls,
        f.refused,
        f.live_loss * 100.0,
        f.idle_anon_kb,
        f.peak_rss_kb,
        f.first_after_anon_kb,
        f.after_anon_kb
    );
    if o.smoke
        && (f.carried_calls != capacity || f.refused != offered - capacity || f.live_loss > 0.01)
    {
        return Err(format!(
            "smoke: overload carried {} of {capacity}, refused {} of {}, live loss {:.2} %",
            f.carried_calls,
            f.refused,
            offered - capacity,
            f.live_loss * 100.0
        ));
    }
    Ok(f)
}

fn check_smoke(s: &SideFigures, calls: usize) -> Result<(), String> {
    if s.calls_up != calls {
        return Err(format!(
            "smoke: {} of {calls} calls came up: {:?}",
            s.calls_up, s.failures
        ));
    }
    if s.received == 0 || s.loss > 0.01 || s.damaged > 0 {
        return Err(format!(
            "smoke: frames sent {}, back {}, damaged {} (loss {:.2} %)",
            s.sent,
            s.received,
            s.damaged,
            s.loss * 100.0
        ));
    }
    match s.heard_hz {
        Some(hz) if (hz - 1000.0).abs() <= 50.0 => Ok(()),
        other => Err(format!(
            "smoke: the echo is not the 1 kHz tone sent: {other:?} Hz"
        )),
    }
}

/// Free loopback UDP and TCP port numbers, `n` in a row from the first.
fn free_port_run(n: u16) -> Result<u16, String> {
    // bounded: 200 tries of an ephemeral base
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let base = probe.local_addr().map_err(|e| e.to_string())?.port();
        drop(probe);
        if base.checked_add(n).is_none() {
            continue;
        }
        let held: Vec<_> = (base..base + n)
            .map(|p| {
                (
                    UdpSocket::bind(("127.0.0.1", p)),
                    std::net::TcpListener::bind(("127.0.0.1", p)),
                )
            })
            .collect();
        if held.iter().all(|(u, t)| u.is_ok() && t.is_ok()) {
            return Ok(base);
        }
    }
    Err("no free loopback ports".into())
}

/// A process the harness started: stopped by its PID (SIGTERM, then SIGKILL after 5 s),
/// and killed if it is still running when dropped (an error on the way).
pub(crate) struct Daemon(pub(crate) Child);

impl Daemon {
    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }

    pub(crate) fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.0.try_wait()
    }

    fn stop(&mut self) {
        self.stop_within(Duration::from_secs(5));
    }

    /// SIGTERM by its PID, SIGKILL if it is still running after `grace`.
    pub(crate) fn stop_within(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let end = Instant::now() + grace;
        // bounded: `grace`
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

struct Gateway {
    child: Daemon,
    sip: SocketAddr,
    /// Proxy mode: the registrar srgate registered its proxy account at.
    proxy: Option<SocketAddr>,
    web: SocketAddr,
    api: SocketAddr,
    dir: PathBuf,
}

impl Gateway {
    /// srgate for `calls` calls: `[calls] max_calls` is `max_calls` when given, else room
    /// for twice the calls.
    fn start(o: &Options, run: &Run) -> Result<Gateway, String> {
        let (calls, max_calls, transcode) = (run.calls, run.max_calls, run.transcode);
        let dir = o.out.join(match (max_calls, transcode, run.silent) {
            _ if run.incoming => format!("srgate-in-{calls}"),
            _ if run.proxy.is_some() => format!("srgate-proxy-{calls}"),
            (Some(m), _, _) => format!("srgate-{calls}-max-{m}"),
            (None, true, _) => format!("srgate-transcode-{calls}"),
            (None, false, true) => format!("srgate-idle-{calls}"),
            (None, false, false) => format!("srgate-{calls}"),
        });
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sip = free_port_run(1)?;
        let web = free_port_run(1)?;
        let api = free_port_run(1)?;
        let udp = free_port_run(o.shards as u16)?;
        // standalone: the phone is a `[users]` entry; proxy mode: srgate registers its
        // proxy account at Kamailio, where the phone registers too
        let sip_side = match run.proxy {
            Some(kamailio) => format!(
                "[global]\nsip_svr = {kamailio}\nshards = {shards}\n\n\
                 [sip]\nlisten = 127.0.0.1:{sip}\ndomain = 127.0.0.1\n\n\
                 [proxy]\non = 1\nsip_account = {account}\nsip_pwd = {password}\nexpires = 300\n\n",
                shards = o.shards,
                account = GATEWAY_ACCOUNT.0,
                password = GATEWAY_ACCOUNT.1,
            ),
            None => format!(
                "[global]\nsip_svr =\nshards = {shards}\n\n\
                 [sip]\nlisten = 127.0.0.1:{sip}\ndomain = 127.0.0.1\ndigest = md5\n\n\
                 [users]\n{PHONE_USER} = {PHONE_PASSWORD}\n\n",
                shards = o.shards,
            ),
        };
        let ini = format!(
            "; written by srgate-load\n{sip_side}\
             [webrtc]\nlisten = 127.0.0.1:{web}\nudp = 127.0.0.1:{udp}\nmax_conns_per_ip = 4096\n\n\
             [media]\ncodecs = {codecs}\nrtp_timeout = 30\n\n\
             [calls]\nmax_calls = {max_calls}\ncdr_file = {cdr}\n\n\
             [api]\nlisten = 127.0.0.1:{api}\n\n\
             [log]\nlevel = 3\nfile = {log}\n",
            max_calls = max_calls.unwrap_or((calls * 2).max(16)),
            // transcoded calls: Opus toward the browsers, PCMU toward the phone
            codecs = if transcode { "opus,pcmu" } else { "pcmu" },
            cdr = dir.join("cdr.jsonl").display(),
            log = dir.join("srgate.log").display(),
        );
        let config = dir.join("srgate.ini");
        fs::write(&config, ini).map_err(|e| format!("{}: {e}", config.display()))?;
        let child = Command::new(&o.srgate)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stderr.txt")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("{}: {e}", o.srgate.display()))?;
        let gw = Gateway {
            child: Daemon(child),
            sip: SocketAddr::from(([127, 0, 0, 1], sip)),
            proxy: run.proxy,
            web: SocketAddr::from(([127, 0, 0, 1], web)),
            api: SocketAddr::from(([127, 0, 0, 1], api)),
            dir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        // healthy, and in proxy mode registered (bounded: 10 s)
        while Instant::now() < end {
            if gw.health().is_some_and(|h| {
                h.contains("\"status\":\"ok\"")
                    && (run.proxy.is_none() || h.contains("\"registered\":true"))
            }) {
                return Ok(gw);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "srgate did not become healthy within 10 s; see {}",
            gw.dir.join("stderr.txt").display()
        ))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn health(&self) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.api, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    }

    fn stop(mut self) {
        self.child.stop();
    }
}

/// Turns `s` until `done` or `within` passes; true when done.
fn drive_until<S>(
    s: &mut S,
    within: Duration,
    mut turn: impl FnMut(&mut S) -> Result<(), String>,
    mut done: impl FnMut(&S) -> bool,
) -> Result<bool, String> {
    let end = Instant::now() + within;
    // bounded by `within`
    while Instant::now() < end {
        turn(s)?;
        if done(s) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One srgate scenario: how many calls, how they start, how they are measured.
struct Run {
    calls: usize,
    ramp: Ramp,
    /// The measurement window (0: none, the setup run).
    seconds: u64,
    /// `[calls] max_calls` (None: room for twice the calls).
    max_calls: Option<usize>,
    /// How long after the last call ended memory and descriptors are read.
    settle: Duration,
    /// Rounds of the same calls on one srgate.
    rounds: usize,
    /// Opus browsers (srgate transcodes) instead of PCMU (srgate relays).
    transcode: bool,
    /// Each call goes silent once its first frame came back (idle calls).
    silent: bool,
    /// The calls come from SIP (the setup run from the phone).
    incoming: bool,
    /// Memory, descriptors and loss sampled this often in the window (a soak).
    sample_every: Option<Duration>,
    /// The calls run this long before the window opens.
    warm_up: Duration,
    /// `--socket-per-peer`.
    socket_per_peer: bool,
    /// Proxy mode: srgate registers at this Kamailio, which routes the calls to the phone.
    proxy: Option<SocketAddr>,
}

impl Run {
    /// `calls` started at `--rate`, measured for `--seconds`, once.
    fn new(o: &Options, calls: usize) -> Run {
        Run {
            calls,
            ramp: Ramp {
                rate: o.rate,
                in_flight: 64,
            },
            seconds: o.seconds,
            max_calls: None,
            settle: Duration::from_millis(1500),
            rounds: 1,
            transcode: false,
            silent: false,
            incoming: false,
            sample_every: None,
            warm_up: Duration::from_secs(2),
            socket_per_peer: o.socket_per_peer,
            proxy: None,
        }
    }
}

/// How calls are started: `rate` a second, at most `in_flight` being set up at once.
pub struct Ramp {
    pub rate: usize,
    pub in_flight: usize,
}

/// Starts `calls` calls with `start` at the ramp's pace and turns the browsers until every
/// call is up, ended or failed (bounded: 30 s plus 50 ms a call). Returns how long it took.
fn ramp_up(
    b: &mut Browsers,
    calls: usize,
    ramp: &Ramp,
    mut start: impl FnMut(&mut Browsers) -> Result<(), String>,
) -> Result<Duration, String> {
    let ramp_start = Instant::now();
    let ramp_bound = Duration::from_secs(30) + Duration::from_millis(50) * calls as u32;
    // bounded by ramp_bound
    while Instant::now() < ramp_start + ramp_bound {
        let (setting_up, up, ended, failed) = b.census();
        if up + ended + failed >= calls {
            break;
        }
        let due = (ramp_start.elapsed().as_secs_f64() * ramp.rate as f64) as usize + 1;
        let mut in_flight = setting_up;
        // bounded by `calls`
        while b.len() < calls.min(due) && in_flight < ramp.in_flight {
            start(b)?;
            in_flight += 1;
        }
        b.turn(Duration::from_millis(1))
            .map_err(|e| format!("browsers: {e}"))?;
    }
    Ok(ramp_start.elapsed())
}

/// A browser side the measurement window drives: str0m peers or plain RTP sockets.
trait Load {
    fn turn_once(&mut self) -> Result<(), String>;
    fn totals(&self) -> Totals;
    fn late_sends(&self) -> u64;
    /// Datagrams its sockets could not send.
    fn send_drops(&self) -> u64 {
        0
    }
    fn take_rtt(&mut self) -> crate::stats::Rtt;
}

impl Load for Browsers {
    fn turn_once(&mut self) -> Result<(), String> {
        self.turn(Duration::from_millis(1))
            .map_err(|e| format!("browsers: {e}"))
    }
    fn totals(&self) -> Totals {
        Browsers::totals(self)
    }
    fn late_sends(&self) -> u64 {
        self.late_sends
    }
    fn send_drops(&self) -> u64 {
        Browsers::send_drops(self)
    }
    fn take_rtt(&mut self) -> crate::stats::Rtt {
        Browsers::take_rtt(self)
    }
}

impl Load for PlainBrowsers {
    fn turn_once(&mut self) -> Result<(), String> {
        self.turn(Duration::from_millis(1))
            .map_err(|e| format!("browsers: {e}"))
    }
    fn totals(&self) -> Totals {
        PlainBrowsers::totals(self)
    }
    fn late_sends(&self) -> u64 {
        self.late_sends
    }
    fn take_rtt(&mut self) -> crate::stats::Rtt {
        PlainBrowsers::take_rtt(self)
    }
}

/// The measurement window: drives `load` for `seconds` and reads, at both ends, the CPU
/// time of every thread of the relay `pid`, its socket drops, the harness's own threads,
/// the frames sent and heard back, and the phone's echoes. The relay forwards every frame
/// twice: browser → phone (the phone echoed it) and back (the browser heard it).
fn measure(
    load: &mut impl Load,
    pid: u32,
    phone: &Phone,
    seconds: u64,
    sample_every: Option<Duration>,
) -> Result<SideFigures, String> {
    let me = procfs::thread_id();
    let cpu0 = CpuSnapshot::of(pid);
    let drops0 = procfs::udp_drops(pid);
    // the generator's own: its receive buffers (every thread of this process) and sends
    let own_drops =
        |l: &dyn Load| procfs::udp_drops(std::process::id()) + l.send_drops() + phone.send_drops();
    let own_drops0 = own_drops(&*load);
    let (gen0, phone0, echoed0) = (procfs::thread_cpu_ns(me), phone.cpu_ns(), phone.echoed());
    let (t0, late0) = (load.totals(), load.late_sends());
    let _ = load.take_rtt();
    let rss_start_kb = procfs::rss_kb(pid);
    let start = Instant::now();
    // a soak's first sample is the window's start
    let mut samples: Vec<report::Sample> = sample_every
        .map(|_| report::Sample {
            t_s: 0.0,
            rss_kb: rss_start_kb,
            anon_kb: procfs::rss_anon_kb(pid),
            fds: procfs::open_fds(pid),
            sent: 0,
            received: 0,
        })
        .into_iter()
        .collect();
    let mut next_sample = sample_every.map(|every| start + every);
    drive_until(
        load,
        Duration::from_secs(seconds),
        |l| {
            l.turn_once()?;
            if let (Some(at), Some(every)) = (next_sample, sample_every)
                && Instant::now() >= at
            {
                let t = l.totals().minus(&t0);
                samples.push(report::Sample {
                    t_s: start.elapsed().as_secs_f64(),
                    rss_kb: procfs::rss_kb(pid),
                    anon_kb: procfs::rss_anon_kb(pid),
                    fds: procfs::open_fds(pid),
                    sent: t.sent,
                    received: t.received,
                });
                next_sample = Some(at + every);
            }
            Ok(())
        },
        |_| false,
    )?;
    let wall = start.elapsed();
    let threads = CpuSnapshot::of(pid).since(&cpu0);
    let socket_drops = procfs::udp_drops(pid) - drops0;
    let generator_drops = own_drops(&*load).saturating_sub(own_drops0);
    let gen_ns = procfs::thread_cpu_ns(me) - gen0;
    let phone_ns = phone.cpu_ns() - phone0;
    let t = load.totals().minus(&t0);
    let relayed = phone.echoed() - echoed0 + t.received;
    let rtt = load.take_rtt();
    let cpu_ns: u64 = threads.iter().map(|t| t.2).sum();
    let wall_ns = wall.as_nanos().max(1) as f64;
    Ok(SideFigures {
        window_s: wall.as_secs_f64(),
        sent: t.sent,
        received: t.received,
        damaged: t.damaged,
        reordered: t.reordered,
        loss: if seconds > 0 { loss(&t) } else { 0.0 },
        relayed,
        p50_ms: rtt.quantile_ms(0.5),
        p99_ms: rtt.quantile_ms(0.99),
        cpu_us_per_pkt: per_packet(cpu_ns, relayed),
        threads: threads
            .into_iter()
            .map(|(_, name, ns)| (name, ns))
            .collect(),
        rss_kb: procfs::rss_kb(pid),
        rss_start_kb,
        generator_cpu_share: gen_ns as f64 / wall_ns,
        phone_cpu_share: phone_ns as f64 / wall_ns,
        late_sends: load.late_sends() - late0,
        socket_drops,
        generator_drops,
        samples,
        ..SideFigures::default()
    })
}

/// Calls through a fresh srgate, `run.rounds` times over (the same calls again once the
/// last ones ended: memory that grows from round to round would be a leak). The figures are
/// the last round's, with the first round's heap after it (`first_after_anon_kb`).
fn relay_srgate(o: &Options, run: &Run) -> Result<SideFigures, String> {
    let gw = Gateway::start(o, run)?;
    let phone = registered_phone(&gw)?;
    let idle = (
        procfs::rss_kb(gw.pid()),
        procfs::rss_anon_kb(gw.pid()),
        procfs::open_fds(gw.pid()),
    );
    let mut first_after = None;
    let mut last = None;
    for round in 1..=run.rounds.max(1) {
        let f = srgate_round(&gw, &phone, run, idle)?;
        if run.rounds > 1 {
            eprintln!(
                "   round {round}: {} calls up, srgate's heap (RssAnon) after {} KB",
                f.calls_up, f.after_anon_kb
            );
        }
        first_after.get_or_insert(f.after_anon_kb);
        last = Some(f);
    }
    let _ = phone.stop();
    gw.stop();
    let mut f = last.ok_or("no round ran")?;
    f.first_after_anon_kb = first_after;
    Ok(f)
}

/// One round of calls through `gw`: ramp, window, hang-up, then memory and descriptors
/// once the browsers' sockets are closed and `settle` has passed. `idle`: srgate's RSS,
/// RssAnon and open descriptors before any call.
fn srgate_round(
    gw: &Gateway,
    phone: &Phone,
    run: &Run,
    idle: (u64, u64, usize),
) -> Result<SideFigures, String> {
    let (idle_rss, idle_anon, idle_fds) = idle;
    let (calls, seconds) = (run.calls, run.seconds);
    let media = if run.transcode {
        Media::Opus(payload::opus_tone_frames()?)
    } else {
        Media::Pcmu
    };
    let callee = if run.proxy.is_some() {
        PHONE_ACCOUNT.0
    } else {
        PHONE_USER
    };
    let mut b = browsers(run.socket_per_peer, gw.web, callee, media)?;
    b.silent_once_up = run.silent;
    let tick = Duration::from_millis(1);
    let turn = |b: &mut Browsers| b.turn(tick).map_err(|e| format!("browsers: {e}"));

    let cpu_before_ramp = CpuSnapshot::of(gw.pid());
    let ramp = ramp_up(&mut b, calls, &run.ramp, |b| {
        b.start_call()
            .map_err(|e| format!("starting call {}: {e}", b.len()))
    })?;
    let ramp_cpu_ns: u64 = CpuSnapshot::of(gw.pid())
        .since(&cpu_before_ramp)
        .iter()
        .map(|t| t.2)
        .sum();
    let (_, calls_up, _, _) = b.census();
    let failures = b.failures();
    let refused = b.refused_overloaded();
    if calls_up == 0 {
        return Err(format!("no call came up through srgate: {failures:?}"));
    }

    // warm up, then the window (none for a setup run)
    if seconds > 0 {
        drive_until(&mut b, run.warm_up, turn, |_| false)?;
    }
    let m = measure(&mut b, gw.pid(), phone, seconds, run.sample_every)?;
    let fds = procfs::open_fds(gw.pid());
    let heard_hz = b.heard_hz();
    let mut setups: Vec<f64> = b
        .setup_times()
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    setups.sort_by(f64::total_cmp);

    // the end: every call hung up from the browser, the browsers' sockets closed (srgate
    // forgets a closed socket's user after its 10 s grace), then srgate stopped
    b.hang_up_all();
    drive_until(&mut b, Duration::from_secs(10), turn, |b| b.census().0 == 0)?;
    let ended_clean = b.census().2;
    drive_until(&mut b, Duration::from_millis(500), turn, |_| false)?;
    drop(b);
    std::thread::sleep(run.settle);
    let after_rss = procfs::rss_kb(gw.pid());
    let after_anon = procfs::rss_anon_kb(gw.pid());
    let after_fds = procfs::open_fds(gw.pid());
    let health_after = gw.health().unwrap_or_default();

    Ok(SideFigures {
        calls_up,
        failures,
        ramp_s: ramp.as_secs_f64(),
        idle_rss_kb: idle_rss,
        after_rss_kb: after_rss,
        idle_anon_kb: idle_anon,
        after_anon_kb: after_anon,
        open_fds: fds,
        idle_fds,
        after_fds,
        heard_hz,
        setup_p50_ms: quantile(&setups, 0.5),
        setup_p99_ms: quantile(&setups, 0.99),
        setup_ms: setups,
        ended_clean,
        calls_after: health_calls(&health_after),
        ramp_cpu_s: ramp_cpu_ns as f64 / 1e9,
        refused,
        ..m
    })
}

fn relay_reflector(o: &Options, calls: usize) -> Result<SideFigures, String> {
    let phone = Phone::start(None).map_err(|e| format!("phone: {e}"))?;
    let mut b = PlainBrowsers::new(calls).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("reflector")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("reflector: {e}"))?;
    let result = (|| {
        let mut stdin = child.stdin.take().ok_or("reflector stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("reflector stdout")?);
        let mut line = String::new();
        let mut read_port = |prefix: &str| -> Result<u16, String> {
            line.clear();
            stdout.read_line(&mut line).map_err(|e| e.to_string())?;
            line.trim()
                .strip_prefix(prefix)
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| format!("reflector said '{}'", line.trim()))
        };
        let a = read_port("A")?;
        for browser in b.addrs().map_err(|e| e.to_string())? {
            writeln!(stdin, "call {browser} {}", phone.rtp_addr).map_err(|e| e.to_string())?;
            read_port("B")?;
        }
        writeln!(stdin, "go").map_err(|e| e.to_string())?;
        drop(stdin);
        let pid = child.id();
        b.start(SocketAddr::from(([127, 0, 0, 1], a)));
        let turn =
            |b: &mut PlainBrowsers| b.turn(Duration::from_millis(1)).map_err(|e| e.to_string());
        drive_until(&mut b, Duration::from_secs(2), turn, |_| false)?;
        let m = measure(&mut b, pid, &phone, o.seconds, None)?;
        Ok(SideFigures {
            calls_up: calls,
            ..m
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = phone.stop();
    result
}

fn loss(t: &Totals) -> f64 {
    if t.sent == 0 {
        return 1.0;
    }
    (1.0 - t.received as f64 / t.sent as f64).max(0.0)
}

fn per_packet(cpu_ns: u64, packets: u64) -> f64 {
    if packets == 0 {
        return 0.0;
    }
    cpu_ns as f64 / packets as f64 / 1000.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `calls` of a `/health` answer.
fn health_calls(text: &str) -> Option<u64> {
    let body = text.split("\r\n\r\n").nth(1)?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["calls"].as_u64()
}

/// rtpengine (Debian's `rtpengine-daemon`, userspace only: `--table=-1`), doing srgate's
/// job as closely as it can: DTLS-SRTP with ICE toward the browser, plain RTP toward the
/// phone, PCMU on both sides, with as many threads as srgate has shards.
struct Rtpengine {
    child: Daemon,
    ng: crate::ng::Ng,
}

/// Where Debian installs rtpengine.
const RTPENGINE: &str = "/usr/bin/rtpengine";

impl Rtpengine {
    /// Starts rtpengine; again on another NG port (3 tries) when the free port it was
    /// given was taken meanwhile (another process's ephemeral bind: the machine is shared).
    fn start(o: &Options, calls: usize) -> Result<Rtpengine, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match Rtpengine::start_once(o, calls) {
                Ok(r) => return Ok(r),
                Err((why, port_taken)) => {
                    if !port_taken {
                        return Err(why);
                    }
                    eprintln!("srgate-load: {why}; again on another port");
                    last = why;
                }
            }
        }
        Err(last)
    }

    /// One start; the error says whether rtpengine found its NG port taken.
    fn start_once(o: &Options, calls: usize) -> Result<Rtpengine, (String, bool)> {
        Rtpengine::spawn(o, calls).map_err(|why| {
            let stderr = o.out.join(format!("rtpengine-{calls}")).join("stderr.txt");
            let taken = fs::read_to_string(stderr)
                .is_ok_and(|t| t.contains("NG control") && t.contains("Address already in use"));
            (why, taken)
        })
    }

    fn spawn(o: &Options, calls: usize) -> Result<Rtpengine, String> {
        let dir = o.out.join(format!("rtpengine-{calls}"));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ng_port = free_port_run(1)?;
        let child = Command::new(RTPENGINE)
            .args([
                "--table=-1",
                "--interface=127.0.0.1",
                &format!("--listen-ng=127.0.0.1:{ng_port}"),
                "--foreground",
                "--log-stderr",
                // SRGATE_LOAD_RTPENGINE_LOG=7 for a debug log under DIR/rtpengine-N/
                &format!(
                    "--log-level={}",
                    std::env::var("SRGATE_LOAD_RTPENGINE_LOG").unwrap_or_else(|_| "4".into())
                ),
                "--port-min=22000",
                "--port-max=29999",
                &format!("--num-threads={}", o.shards),
                "--delete-delay=0",
                "--no-fallback",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stderr.txt")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("{RTPENGINE}: {e}"))?;
        let ng = crate::ng::Ng::new(SocketAddr::from(([127, 0, 0, 1], ng_port)))
            .map_err(|e| e.to_string())?;
        // a ping sent before rtpengine listens is lost: ask often until one is answered
        ng.set_timeout(Duration::from_millis(200))
            .map_err(|e| e.to_string())?;
        let mut r = Rtpengine {
            child: Daemon(child),
            ng,
        };
        let end = Instant::now() + Duration::from_secs(10);
        // bounded: 10 s
        while Instant::now() < end {
            use crate::ng::B;
            if r.ng.call(vec![("command".into(), B::s("ping"))]).is_ok() {
                r.ng.set_timeout(Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                return Ok(r);
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                return Err(format!(
                    "rtpengine exited ({status}); see {}",
                    dir.join("stderr.txt").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("rtpengine did not answer ng ping within 10 s".into())
    }

    /// The browser's offer through rtpengine to the phone at `phone`, and the phone's
    /// answer back: rtpengine's SDP for the browser.
    /// Sets up one call: the browser's `offer` toward the `phone` (which answers PCMU);
    /// with `transcode`, rtpengine offers the phone PCMU next to the browser's Opus and
    /// transcodes between them.
    fn connect(
        &mut self,
        id: &str,
        offer: &str,
        phone: SocketAddr,
        transcode: bool,
    ) -> Result<String, String> {
        use crate::ng::B;
        let common = |command: &str, sdp: &str| -> Vec<(String, B)> {
            vec![
                ("command".into(), B::s(command)),
                ("call-id".into(), B::s(id)),
                ("from-tag".into(), B::s(&format!("b{id}"))),
                ("sdp".into(), B::s(sdp)),
                ("flags".into(), B::list(&["trust-address"])),
                ("replace".into(), B::list(&["origin", "session-connection"])),
            ]
        };
        let mut req = common("offer", offer);
        req.push(("ICE".into(), B::s("remove")));
        req.push(("DTLS".into(), B::s("off")));
        req.push(("SDES".into(), B::list(&["off"])));
        req.push(("transport-protocol".into(), B::s("RTP/AVP")));
        req.push(("rtcp-mux".into(), B::list(&["demux"])));
        if transcode {
            req.push((
                "codec".into(),
                B::Dict(vec![("transcode".into(), B::list(&["PCMU"]))]),
            ));
        }
        self.ng.call(req)?;
        let phone_sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
            ip = phone.ip(),
            port = phone.port()
        );
        let mut req = common("answer", &phone_sdp);
        req.push(("to-tag".into(), B::s(&format!("p{id}"))));
        req.push(("ICE".into(), B::s("force")));
        req.push(("DTLS".into(), B::s("passive")));
        req.push(("transport-protocol".into(), B::s("UDP/TLS/RTP/SAVPF")));
        req.push(("rtcp-mux".into(), B::list(&["accept"])));
        let reply = self.ng.call(req)?;
        let sdp = reply
            .get("sdp")
            .and_then(B::text)
            .ok_or_else(|| "rtpengine's answer has no SDP".to_string())?;
        // Transcoding, rtpengine sends from an SSRC of its own it does not announce.
        Ok(for_str0m(&sdp, offer, !transcode))
    }

    fn delete(&mut self, id: &str) {
        use crate::ng::B;
        let _ = self.ng.call(vec![
            ("command".into(), B::s("delete")),
            ("call-id".into(), B::s(id)),
            ("from-tag".into(), B::s(&format!("b{id}"))),
        ]);
    }

    fn stop(mut self) {
        self.child.stop();
    }
}

/// What str0m needs of an answer that rtpengine leaves out: rtpengine answers a
/// one-section BUNDLE offer without `a=group:BUNDLE` (and may leave out `a=mid`), and it
/// passes the phone's SSRC through unsignalled, which str0m does not map to the section
/// (a browser would). Both are added: the group from the offer's mid, and the SSRC the
/// harness's phone sends with (the browser's, its top byte XOR 0x5a: `phone.rs`).
fn for_str0m(answer: &str, offer: &str, echo_ssrc: bool) -> String {
    let phone_ssrc = offer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ssrc:"))
        .and_then(|l| l.split(' ').next()?.parse::<u32>().ok())
        .map(|ssrc| ssrc ^ 0x5a00_0000)
        .filter(|_| echo_ssrc);
    let answer = match phone_ssrc {
        Some(ssrc) if !answer.contains("a=ssrc:") => {
            format!(
                "{}a=ssrc:{ssrc} cname:load-phone\r\n",
                answer.trim_end_matches("\r\n").to_string() + "\r\n"
            )
        }
        _ => answer.to_string(),
    };
    if answer.contains("a=group:BUNDLE") {
        return answer;
    }
    let Some(mid) = offer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
        .map(str::to_string)
    else {
        return answer.to_string();
    };
    let mut out = String::with_capacity(answer.len() + 64);
    let mut in_media = false;
    for line in answer.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            if !in_media {
                out.push_str(&format!("a=group:BUNDLE {mid}\r\n"));
            }
            in_media = true;
            out.push_str(line);
            out.push_str("\r\n");
            if !answer.contains("a=mid:") {
                out.push_str(&format!("a=mid:{mid}\r\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// The browser side of a run: its peers on one shared socket unless `per_peer`
/// (`--socket-per-peer`) or the shared socket cannot be had (said once: each peer then
/// gets a socket).
fn browsers(
    per_peer: bool,
    web: SocketAddr,
    callee: &str,
    media: Media,
) -> Result<Browsers, String> {
    let mut b = Browsers::new(web, callee, media).map_err(|e| e.to_string())?;
    if !per_peer && let Err(why) = b.share_socket() {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| eprintln!("   (browsers: a socket per peer: {why})"));
    }
    Ok(b)
}

fn relay_rtpengine(o: &Options, calls: usize) -> Result<SideFigures, String> {
    rtpengine_run(o, calls, false)
}

/// The transcode job through rtpengine: Opus browsers, PCMU phone (`codec-transcode`).
fn transcode_rtpengine(o: &Options, calls: usize) -> Result<SideFigures, String> {
    rtpengine_run(o, calls, true)
}

fn rtpengine_run(o: &Options, calls: usize, transcode: bool) -> Result<SideFigures, String> {
    let mut engine = Rtpengine::start(o, calls)?;
    let pid = engine.child.id();
    let phone = Phone::start(None).map_err(|e| format!("phone: {e}"))?;
    let media = if transcode {
        Media::Opus(payload::opus_tone_frames()?)
    } else {
        Media::Pcmu
    };
    let mut b = browsers(
        o.socket_per_peer,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "",
        media,
    )?;
    b.learn_ssrc = transcode;
    let turn = |b: &mut Browsers| {
        b.turn(Duration::from_millis(1))
            .map_err(|e| format!("browsers: {e}"))
    };
    let ramp = ramp_up(
        &mut b,
        calls,
        &Ramp {
            rate: o.rate,
            in_flight: 64,
        },
        |b| {
            let phone_addr = phone.rtp_addr;
            b.start_direct_call(|id, offer| engine.connect(id, offer, phone_addr, transcode))
                .map_err(|e| e.to_string())
        },
    )?;
    let (_, calls_up, _, _) = b.census();
    let failures = b.failures();
    if calls_up == 0 {
        return Err(format!("no call came up through rtpengine: {failures:?}"));
    }
    drive_until(&mut b, Duration::from_secs(2), turn, |_| false)?;
    let m = measure(&mut b, pid, &phone, o.seconds, None)?;
    let heard_hz = b.heard_hz();
    for id in b.end_direct_calls() {
        engine.delete(&id);
    }
    drop(b);
    let _ = phone.stop();
    engine.stop();
    Ok(SideFigures {
        calls_up,
        failures,
        ramp_s: ramp.as_secs_f64(),
        heard_hz,
        ..m
    })
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn scenario_counts_parse_and_zero_turns_a_scenario_off() {
        let o = parse(&["--proxy-calls", "20,50", "--idle-calls", "0"]).unwrap();
        assert_eq!((o.proxy_calls, o.idle_calls), (vec![20, 50], vec![]));
        assert_eq!(parse(&[]).unwrap().proxy_calls, vec![100]);
        assert!(parse(&["--smoke"]).unwrap().proxy_calls == vec![2]);
        // the soak alone: every other scenario off
        let soak = parse(&["--soak", "600"]).unwrap();
        assert!(soak.proxy_calls.is_empty() && soak.calls.is_empty());
        for bad in [
            &["--proxy-calls", "0,5"][..],
            &["--proxy-calls", "3000"],
            &["--proxy-calls"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
