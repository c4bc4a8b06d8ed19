//! `/metrics` in the Prometheus text format, read back with a Prometheus-format parser
//! (the prometheus-parse crate): every metric has its `# HELP` and a `# TYPE` of counter
//! (the `_total` ones), gauge or histogram (the calls' answer time, loss, jitter, RTT), nothing is
//! untyped, the per-shard metrics carry one `shard` label per shard, and the values say
//! what srgate is.

mod common;

use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use common::{GatewayConfig, Srgate, TestDir, http};

#[test]
fn metrics_parse_with_help_and_types() {
    let dir = TestDir::new("metrics-format");
    let mut config = GatewayConfig::standalone();
    config.shards = 2;
    let srgate = Srgate::start(config, dir.path());
    let response = http::get(srgate.config.api_addr(), "/metrics", Duration::from_secs(3))
        .expect("/metrics answers");
    assert_eq!(response.status, 200);
    let text = response.body;
    assert!(!text.contains(" untyped"), "every metric is typed:\n{text}");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    assert!(scrape.samples.len() > 30, "{text}");
    for sample in &scrape.samples {
        let name = &sample.metric;
        assert!(name.starts_with("srgate_"), "{name}");
        // a histogram's _sum and _count are read as samples of their own
        let base = ["_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| scrape.docs.contains_key(*base))
            .unwrap_or(name);
        let help = scrape.docs.get(base).map(String::as_str).unwrap_or("");
        assert!(help.len() > 10, "{name} has a help text: {help:?}");
        let counter = matches!(sample.value, Value::Counter(_));
        assert_eq!(
            counter,
            name.ends_with("_total"),
            "{name}: a counter exactly when it ends in _total ({:?})",
            sample.value
        );
        if let Value::Counter(v) | Value::Gauge(v) = sample.value {
            assert!(v >= 0.0 && v.fract() == 0.0, "{name} = {v}");
        }
    }
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("shard").is_none())
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} is shown:\n{text}"))
    };
    assert_eq!(value("srgate_shards"), 2.0);
    assert_eq!(value("srgate_calls"), 0.0);
    assert_eq!(
        value("srgate_proxy_registered"),
        0.0,
        "standalone: no account"
    );
    let shards: Vec<String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "srgate_shard_calls")
        .filter_map(|s| s.labels.get("shard").map(str::to_owned))
        .collect();
    assert_eq!(shards, ["0", "1"], "one sample per shard");
    // the calls' histograms: buckets up to +Inf, nothing observed yet
    for name in [
        "srgate_call_answer_seconds",
        "srgate_call_loss_ratio",
        "srgate_call_jitter_seconds",
        "srgate_call_rtt_seconds",
    ] {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("{name} is shown:\n{text}"));
        let Value::Histogram(buckets) = &sample.value else {
            panic!("{name} is a histogram: {:?}", sample.value);
        };
        assert!(buckets.len() >= 8, "{buckets:?}");
        assert!(buckets.iter().all(|b| b.count == 0.0), "{buckets:?}");
        assert!(
            buckets.iter().any(|b| b.less_than == f64::INFINITY),
            "{buckets:?}"
        );
    }
}

/// `conf/grafana-dashboard.json` is a Grafana dashboard whose every query names only
/// metrics srgate exports (a renamed metric would leave a panel silently empty), with a
/// title and the Prometheus datasource variable on every panel.
#[test]
fn the_grafana_dashboard_queries_only_what_srgate_exports() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/grafana-dashboard.json");
    let text = std::fs::read_to_string(path).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(dashboard["uid"], "srgate");

    let dir = TestDir::new("metrics-dashboard");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());
    let response = http::get(srgate.config.api_addr(), "/metrics", Duration::from_secs(3))
        .expect("/metrics answers");
    let scrape = Scrape::parse(response.body.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let exported = |name: &str| {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        scrape.docs.contains_key(name) || scrape.docs.contains_key(base)
    };

    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queried = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("");
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} queries something");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            let mut rest = expr;
            // bounded: each pass consumes at least "srgate_"
            while let Some(at) = rest.find("srgate_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(exported(&name), "{title}: {name} is not in /metrics");
                queried += 1;
                rest = &rest[at + name.len()..];
            }
        }
    }
    assert!(queried >= 30, "{queried} metric references");
}
