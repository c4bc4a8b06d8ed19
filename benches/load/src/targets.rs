//! The targets srgate is held to (docs/benchmarks.md), each judged on this run's figures:
//! met, missed (with the gap, and the reason where it is known), not counting (the harness
//! was the limit) or not measured (the scenario did not run). A missed target stays in
//! the report with its gap.

use crate::report::{RelayRow, Results, SideFigures, relay_kb_per_call, transcode_kb_per_call};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Met,
    Missed,
    /// Measured, but the harness was saturated: the figure is the harness's as much as
    /// srgate's.
    DoesNotCount,
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::DoesNotCount => "does not count",
            Verdict::NotMeasured => "not measured",
        }
    }
}

pub struct Target {
    pub name: String,
    pub goal: &'static str,
    pub measured: String,
    pub verdict: Verdict,
    /// Why it was missed or does not count.
    pub why: Option<String>,
}

const SATURATED: &str = "the harness was saturated (its browser or phone thread busy over 90 % \
                         of the window, its frames late or its own sockets dropping): on a \
                         2-core machine it shares the cores with the relay";

/// Every target, judged on `r`.
pub fn evaluate(r: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    for row in &r.relay {
        let mut judged = vec![relay_vs_reflector(row)];
        judged.extend(relay_vs_rtpengine(row));
        if row.calls < 250 {
            for t in &mut judged {
                t.verdict = Verdict::NotMeasured;
                t.why = Some("indicative: the target is set at 250, 500 and 1 000 calls".into());
            }
        }
        out.extend(judged);
    }
    if r.relay.is_empty() {
        out.push(not_measured(
            "relay: CPU per packet",
            "≤ 1.2 × the reflector's",
        ));
    }
    out.push(thousand_calls(&r.relay));
    for t in &r.transcode {
        let ratio = t.floor_ratio();
        let (verdict, why) = if t.calls < 50 {
            (
                Verdict::NotMeasured,
                Some("indicative: too few calls to load a core".to_string()),
            )
        } else {
            judge(
                ratio >= 0.8,
                t.srgate.generator_saturated(),
                format!(
                    "about a quarter of srgate's CPU in a transcoded call is the kernel's packet I/O \
                 (docs/benchmarks.md); against libopus plus this machine's I/O floor srgate \
                 reaches {:.2} ×",
                    t.io_floor_ratio()
                ),
            )
        };
        out.push(Target {
            name: format!("transcode, {} calls: calls per core", t.calls),
            goal: "≥ 0.8 × raw libopus",
            measured: format!(
                "{:.2} × ({:.0} against {:.0})",
                ratio,
                t.calls_per_core(),
                t.libopus_calls_per_core
            ),
            verdict,
            why,
        });
    }
    if r.transcode.is_empty() {
        out.push(not_measured(
            "transcode: calls per core",
            "≥ 0.8 × raw libopus",
        ));
    }
    out.push(match &r.setup {
        Some(s) => {
            let ratio = s.floor_ratio();
            Target {
                name: "setups per core".into(),
                goal: "≥ 0.3 × the DTLS crypto floor",
                measured: format!("{ratio:.2} ×"),
                verdict: if ratio >= 0.3 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
                why: None,
            }
        }
        None => not_measured("setups per core", "≥ 0.3 × the DTLS crypto floor"),
    });
    // a slope over a few calls is mostly the fixed cost of the first ones
    let enough = |most: Option<usize>, least: usize| most.is_some_and(|n| n >= least);
    out.push(memory(
        "RSS per relayed call",
        "≤ 32 KB",
        relay_kb_per_call(&r.relay).filter(|_| enough(r.relay.iter().map(|x| x.calls).max(), 100)),
        32.0,
    ));
    out.push(memory(
        "RSS per transcoded call",
        "≤ 128 KB",
        transcode_kb_per_call(&r.transcode)
            .filter(|_| enough(r.transcode.iter().map(|x| x.calls).max(), 50)),
        128.0,
    ));
    out.push(match &r.overload {
        Some(o) => {
            let carried = o.carried_calls as f64 / o.capacity_calls.max(1) as f64;
            let clean = o.carried_calls + o.refused == o.offered_calls;
            let met = carried >= 0.95 && clean && o.live_loss <= 0.001 && o.calls_after == Some(0);
            Target {
                name: "overload at 120 %".into(),
                goal: "≥ 95 % of capacity carried, the excess refused, live loss ≤ 0.1 %, no call left",
                measured: format!(
                    "{:.0} % carried, {} refused of {} offered, live loss {:.3} %, calls after {}",
                    carried * 100.0,
                    o.refused,
                    o.offered_calls,
                    o.live_loss * 100.0,
                    o.calls_after.map_or("?".into(), |c| c.to_string())
                ),
                verdict: if met { Verdict::Met } else { Verdict::Missed },
                why: None,
            }
        }
        None => not_measured(
            "overload at 120 %",
            "≥ 95 % of capacity carried, the excess refused, live loss ≤ 0.1 %, no call left",
        ),
    });
    out.push(match &r.soak {
        Some(k) => {
            let s = &k.srgate;
            let drift = s.rss_drift();
            let met = drift < 0.01 && s.after_fds == s.idle_fds && s.calls_after == Some(0);
            let hour = s.window_s >= 3600.0 - 1.0;
            Target {
                name: format!("soak, {} calls for {:.0} s", k.calls, s.window_s),
                goal: "1 h: RSS drift < 1 %, every descriptor back",
                measured: format!(
                    "drift {:.3} %, descriptors {} → {}, calls after {}",
                    drift * 100.0,
                    s.idle_fds,
                    s.after_fds,
                    s.calls_after.map_or("?".into(), |c| c.to_string())
                ),
                verdict: match (met, hour) {
                    (true, true) => Verdict::Met,
                    (false, _) => Verdict::Missed,
                    (true, false) => Verdict::NotMeasured,
                },
                why: (!hour).then(|| "shorter than an hour: indicative only".to_string()),
            }
        }
        None => not_measured(
            "soak",
            "1 h: RSS drift < 1 %, every descriptor back (`--soak 3600`)",
        ),
    });
    out
}

fn relay_vs_reflector(row: &RelayRow) -> Target {
    relay_against(
        row,
        row.ratio(),
        &row.reflector,
        1.2,
        "≤ 1.2 × the reflector's",
    )
}

fn relay_vs_rtpengine(row: &RelayRow) -> Option<Target> {
    let ratio = row.rtpengine_ratio()?;
    let rtpengine = row.rtpengine.as_ref()?;
    Some(relay_against(
        row,
        ratio,
        rtpengine,
        0.7,
        "≤ 0.7 × rtpengine's",
    ))
}

/// srgate's CPU per packet in `row`, `ratio` times `other`'s (the same calls through
/// another relay): at most `limit` times it.
fn relay_against(
    row: &RelayRow,
    ratio: f64,
    other: &SideFigures,
    limit: f64,
    goal: &'static str,
) -> Target {
    let (verdict, why) = judge(
        ratio <= limit,
        row.srgate.generator_saturated() || other.generator_saturated(),
        String::new(),
    );
    Target {
        name: format!("relay, {} calls: CPU per packet", row.calls),
        goal,
        measured: format!(
            "{ratio:.2} × ({:.2} against {:.2} µs)",
            row.srgate.cpu_us_per_pkt, other.cpu_us_per_pkt
        ),
        verdict,
        why,
    }
}

/// 1 000 relayed calls at ≤ 0.1 % loss (the largest relay row of at least 1 000 calls).
fn thousand_calls(rows: &[RelayRow]) -> Target {
    const GOAL: &str = "1 000 relayed calls, 2 shards, loss ≤ 0.1 %";
    let Some(row) = rows
        .iter()
        .filter(|r| r.calls >= 1000)
        .max_by_key(|r| r.calls)
    else {
        return not_measured("1 000 relayed calls", GOAL);
    };
    let s = &row.srgate;
    let (verdict, why) = judge(
        s.calls_up == row.calls && s.loss <= 0.001,
        s.generator_saturated(),
        String::new(),
    );
    Target {
        name: format!("{} relayed calls", row.calls),
        goal: GOAL,
        measured: format!(
            "{}/{} up, loss {:.4} %, {:.0} of {} packets/s",
            s.calls_up,
            row.calls,
            s.loss * 100.0,
            s.pps(),
            row.calls * 100
        ),
        verdict,
        why: why.map(|w| {
            format!(
                "{w}; at 1 000 calls the machine's loopback I/O for the relay and the harness is \
                 ≈ 2 cores by itself (docs/benchmarks.md)"
            )
        }),
    }
}

/// Met or missed by `ok`, unless the harness was `saturated`; `missed_why`: the known
/// reason of a miss (empty: none known).
fn judge(ok: bool, saturated: bool, missed_why: String) -> (Verdict, Option<String>) {
    match (ok, saturated) {
        (_, true) => (Verdict::DoesNotCount, Some(SATURATED.to_string())),
        (true, false) => (Verdict::Met, None),
        (false, false) => (
            Verdict::Missed,
            (!missed_why.is_empty()).then_some(missed_why),
        ),
    }
}

fn memory(name: &str, goal: &'static str, kb: Option<f64>, limit: f64) -> Target {
    match kb {
        Some(kb) => Target {
            name: name.into(),
            goal,
            measured: format!("{kb:.1} KB"),
            verdict: if kb <= limit {
                Verdict::Met
            } else {
                Verdict::Missed
            },
            why: None,
        },
        None => Target {
            why: Some("not in this run, or too few calls for a slope".into()),
            ..not_measured(name, goal)
        },
    }
}

fn not_measured(name: &str, goal: &'static str) -> Target {
    Target {
        name: name.into(),
        goal,
        measured: "–".into(),
        verdict: Verdict::NotMeasured,
        why: Some("not in this run".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SideFigures;

    fn side(us: f64, calls: usize, saturated: bool) -> SideFigures {
        SideFigures {
            calls_up: calls,
            cpu_us_per_pkt: us,
            sent: 1000,
            window_s: 1.0,
            generator_cpu_share: if saturated { 0.95 } else { 0.5 },
            ..SideFigures::default()
        }
    }

    #[test]
    fn a_relay_row_is_met_missed_or_void_by_the_harness() {
        let row = |srgate: f64, saturated: bool| RelayRow {
            calls: 1000,
            srgate: side(srgate, 1000, saturated),
            rtpengine: None,
            reflector: side(10.0, 1000, false),
        };
        let met = relay_vs_reflector(&row(11.0, false));
        assert_eq!(met.verdict, Verdict::Met);
        let missed = relay_vs_reflector(&row(13.0, false));
        assert_eq!(missed.verdict, Verdict::Missed);
        assert!(missed.measured.starts_with("1.30 ×"), "{}", missed.measured);
        let void = thousand_calls(&[row(11.0, true)]);
        assert_eq!(void.verdict, Verdict::DoesNotCount);
        assert!(void.why.unwrap().contains("saturated"));
        assert_eq!(thousand_calls(&[row(11.0, false)]).verdict, Verdict::Met);
        assert_eq!(thousand_calls(&[]).verdict, Verdict::NotMeasured);
    }
}
