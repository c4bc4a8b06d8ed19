//! report.md's plots: PNGs drawn with plotters' bitmap backend next to report.md. Text
//! needs a TrueType font, read at run time (`SRGATE_LOAD_FONT`, else DejaVu Sans or
//! Liberation Sans where Debian and others install them); without one the plots are drawn
//! without titles, axis labels or legends, and report.md says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::report::{Results, SideFigures};

const FONT: &str = "sans-serif";
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// The plots written, and whether they carry text.
pub struct Plots {
    /// (file name, what it shows)
    pub files: Vec<(&'static str, &'static str)>,
    pub labelled: bool,
    pub errors: Vec<String>,
}

/// Registers a font with plotters once per process; false when none could be read. With
/// `SRGATE_LOAD_FONT` set, only that file is tried.
fn font() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        let paths: Vec<PathBuf> = match std::env::var_os("SRGATE_LOAD_FONT") {
            Some(p) => vec![PathBuf::from(p)],
            None => FONT_PATHS.iter().map(PathBuf::from).collect(),
        };
        paths.iter().any(|p| {
            let Ok(bytes) = fs::read(p) else {
                return false;
            };
            // plotters keeps fonts for the life of the process
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok()
        })
    })
}

struct Series {
    name: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// A dot on each point (off for a CDF's many samples).
    markers: bool,
}

impl Series {
    fn new(name: impl Into<String>, color: RGBColor, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            color,
            points,
            markers: true,
        }
    }
}

const SRGATE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RTPENGINE: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const REFLECTOR: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const OTHER: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Draws the plots the results have data for into `dir`.
pub fn write(r: &Results, dir: &Path) -> Plots {
    let labelled = font();
    let mut plots = Plots {
        files: Vec::new(),
        labelled,
        errors: Vec::new(),
    };
    let relay = &r.relay;
    let xy = |f: &dyn Fn(&crate::report::RelayRow) -> Option<f64>| -> Vec<(f64, f64)> {
        relay
            .iter()
            .filter_map(|row| Some((row.calls as f64, f(row)?)))
            .collect()
    };
    let mut charts: Vec<(&'static str, &'static str, &str, &str, Vec<Series>)> = Vec::new();
    if !relay.is_empty() {
        let mut cpu = vec![Series::new(
            "srgate",
            SRGATE,
            xy(&|row| Some(row.srgate.cpu_us_per_pkt)),
        )];
        let rtpengine = xy(&|row| row.rtpengine.as_ref().map(|e| e.cpu_us_per_pkt));
        if !rtpengine.is_empty() {
            cpu.push(Series::new("rtpengine", RTPENGINE, rtpengine));
        }
        cpu.push(Series::new(
            "reflector",
            REFLECTOR,
            xy(&|row| Some(row.reflector.cpu_us_per_pkt)),
        ));
        charts.push((
            "cpu_per_packet.png",
            "CPU µs per packet vs calls (relay)",
            "calls",
            "CPU µs per packet",
            cpu,
        ));

        let mut loss = vec![Series::new(
            "srgate",
            SRGATE,
            xy(&|row| Some(row.srgate.loss * 100.0)),
        )];
        let rtpengine = xy(&|row| row.rtpengine.as_ref().map(|e| e.loss * 100.0));
        if !rtpengine.is_empty() {
            loss.push(Series::new("rtpengine", RTPENGINE, rtpengine));
        }
        loss.push(Series::new(
            "reflector",
            REFLECTOR,
            xy(&|row| Some(row.reflector.loss * 100.0)),
        ));
        if let Some(o) = &r.overload {
            loss.push(Series::new(
                "srgate overload (120 % of max_calls)",
                OTHER,
                vec![(o.offered_calls as f64, o.live_loss * 100.0)],
            ));
        }
        charts.push((
            "loss.png",
            "Loss vs offered calls",
            "calls offered",
            "loss %",
            loss,
        ));

        let mut rss = vec![Series::new(
            "srgate relay",
            SRGATE,
            xy(&|row| Some(row.srgate.rss_kb as f64 / 1024.0)),
        )];
        let others = [
            (
                "srgate transcode",
                OTHER,
                rss_mb(r.transcode.iter().map(|t| (t.calls, &t.srgate))),
            ),
            (
                "srgate idle (no RTP)",
                REFLECTOR,
                rss_mb(r.idle.iter().map(|i| (i.calls, &i.srgate))),
            ),
        ];
        for (name, color, points) in others {
            if !points.is_empty() {
                rss.push(Series::new(name, color, points));
            }
        }
        charts.push(("rss.png", "srgate RSS vs calls", "calls", "RSS MB", rss));
    }
    let cdf = |s: &crate::report::SetupFigures| -> Vec<(f64, f64)> {
        let n = s.samples_ms.len() as f64;
        s.samples_ms
            .iter()
            .enumerate()
            .map(|(i, ms)| (*ms, (i + 1) as f64 / n))
            .collect()
    };
    let mut setup_series = Vec::new();
    if let Some(s) = r.setup.as_ref().filter(|s| !s.samples_ms.is_empty()) {
        setup_series.push(Series {
            markers: false,
            ..Series::new("app → SIP (login to first audio)", SRGATE, cdf(s))
        });
    }
    if let Some(s) = r.setup_in.as_ref().filter(|s| !s.samples_ms.is_empty()) {
        setup_series.push(Series {
            markers: false,
            ..Series::new("SIP → app (INVITE to 200)", RTPENGINE, cdf(s))
        });
    }
    if !setup_series.is_empty() {
        charts.push((
            "setup_cdf.png",
            "Setup time CDF",
            "setup ms",
            "fraction of calls",
            setup_series,
        ));
    }
    if let Some(k) = r.soak.as_ref().filter(|k| !k.srgate.samples.is_empty()) {
        let mb = |kb: u64| kb as f64 / 1024.0;
        let rss = k
            .srgate
            .samples
            .iter()
            .map(|x| (x.t_s / 60.0, mb(x.rss_kb)));
        let anon = k
            .srgate
            .samples
            .iter()
            .map(|x| (x.t_s / 60.0, mb(x.anon_kb)));
        charts.push((
            "soak_rss.png",
            "srgate memory through the soak",
            "minutes",
            "MB",
            vec![
                Series::new("RSS", SRGATE, rss.collect()),
                Series::new("heap (RssAnon)", RTPENGINE, anon.collect()),
            ],
        ));
    }
    for (file, title, x_desc, y_desc, series) in charts {
        match chart(&dir.join(file), title, x_desc, y_desc, &series, labelled) {
            Ok(()) => plots.files.push((file, title)),
            Err(e) => plots.errors.push(format!("{file}: {e}")),
        }
    }
    plots
}

/// (calls, srgate's RSS in MB) of each run.
fn rss_mb<'a>(runs: impl Iterator<Item = (usize, &'a SideFigures)>) -> Vec<(f64, f64)> {
    runs.map(|(calls, s)| (calls as f64, s.rss_kb as f64 / 1024.0))
        .collect()
}

fn chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    text: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_max = points().map(|p| p.0).fold(0.0, f64::max);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max);
    let x_max = if x_max > 0.0 { x_max * 1.05 } else { 1.0 };
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };

    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(title, (FONT, 22))
            .x_label_area_size(45)
            .y_label_area_size(70);
    }
    let mut c = builder.build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    let mut mesh = c.configure_mesh();
    if text {
        mesh.x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16));
    }
    mesh.draw()?;
    for s in series {
        let color = s.color;
        let line = c.draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(2),
        ))?;
        if text {
            line.label(s.name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
        if s.markers {
            c.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
    }
    if text {
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{IdleRow, RelayRow, SetupFigures};

    fn side(calls: usize, us: f64, loss: f64, rss_kb: u64) -> SideFigures {
        SideFigures {
            calls_up: calls,
            cpu_us_per_pkt: us,
            loss,
            rss_kb,
            ..SideFigures::default()
        }
    }

    fn results() -> Results {
        let mut r = Results::new(2, 3);
        for (calls, us) in [(10, 4.0), (20, 3.5), (40, 3.2)] {
            r.relay.push(RelayRow::new(
                calls,
                side(calls, us, 0.001, 5000 + 20 * calls as u64),
                Some(side(calls, us * 1.5, 0.0, 0)),
                side(calls, us / 2.0, 0.0, 0),
            ));
        }
        r.idle.push(IdleRow {
            calls: 20,
            srgate: SideFigures {
                idle_rss_kb: 5000,
                ..side(20, 0.0, 0.0, 5200)
            },
        });
        r.setup = Some(SetupFigures {
            calls: 50,
            calls_up: 50,
            wall_s: 1.0,
            srgate_cpu_s: 0.5,
            p50_ms: 40.0,
            p99_ms: 90.0,
            crypto_floor_per_s: 1000.0,
            failures: Vec::new(),
            samples_ms: (0..50).map(|i| 20.0 + f64::from(i) * 1.5).collect(),
        });
        let sample = |t: u32, rss_kb, sent, received| crate::report::Sample {
            t_s: f64::from(t),
            rss_kb,
            anon_kb: rss_kb / 2,
            fds: 60,
            sent,
            received,
        };
        r.soak = Some(crate::report::SoakFigures {
            calls: 20,
            srgate: SideFigures {
                rss_start_kb: 8000,
                samples: vec![
                    sample(0, 8000, 0, 0),
                    sample(60, 8040, 1000, 1000),
                    sample(120, 8100, 2000, 1990),
                    sample(180, 8020, 3000, 2990),
                ],
                idle_fds: 12,
                after_fds: 12,
                ..side(20, 3.0, 0.0, 8040)
            },
        });
        r
    }

    fn is_png(path: &Path) -> bool {
        fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 1000)
    }

    #[test]
    fn every_plot_is_written_and_linked() {
        let dir = std::env::temp_dir().join(format!("srgate-load-plots-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        crate::report::write(&results(), &dir).unwrap();
        let md = fs::read_to_string(dir.join("report.md")).unwrap();
        for file in [
            "cpu_per_packet.png",
            "loss.png",
            "rss.png",
            "setup_cdf.png",
            "soak_rss.png",
        ] {
            assert!(is_png(&dir.join(file)), "{file} is not a PNG");
            assert!(
                md.contains(&format!("]({file})")),
                "report.md does not link {file}"
            );
        }
        assert!(!md.contains("plot not drawn"), "{md}");
        let json = fs::read_to_string(dir.join("results.json")).unwrap();
        assert!(json.contains("\"kb_per_call\": 10.0"), "{json}");
        // the soak: its drift (8000 → 8040 KB), its peak, each interval's own loss
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let soak = &v["soak"];
        assert_eq!(soak["rss_drift"], 0.005, "{soak}");
        assert_eq!(soak["rss_max_kb"], 8100, "{soak}");
        let losses: Vec<f64> = soak["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["loss"].as_f64().unwrap())
            .collect();
        assert_eq!(losses, [0.0, 0.0, 0.01, 0.0], "{soak}");
        // from the end of the first interval (8040 KB) to the end (8040 KB)
        assert_eq!(soak["rss_drift_after_first_interval"], 0.0, "{soak}");
        assert!(md.contains("**drift 0.500 %**"), "{md}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// Without a font the plots are still drawn (no text at all).
    #[test]
    fn a_plot_without_text_is_drawn() {
        let dir = std::env::temp_dir().join(format!("srgate-load-notext-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plain.png");
        let series = [Series::new("a", SRGATE, vec![(1.0, 2.0), (3.0, 1.0)])];
        chart(&path, "t", "x", "y", &series, false).unwrap();
        assert!(is_png(&path));
        let _ = fs::remove_dir_all(&dir);
    }
}
