//! srgate-load: srgate's load harness. It puts many WebRTC⇄SIP calls through srgate (str0m
//! browsers on one side, an echoing SIP phone on the other) and the same packets through a
//! bare UDP reflector, measures both from `/proc`, and writes `results.json` and
//! `report.md`. `scripts/bench` builds it and runs the standard comparison; see
//! docs/benchmarks.md.
//!
//! ```text
//! srgate-load bench [--srgate PATH] [--calls 250,500,1000] [--seconds 20] [--shards 2]
//!                   [--out target/bench] [--quick | --smoke] [--no-rtpengine]
//!                   [--setup-calls N] [--transcode-calls N,...] [--idle-calls N,...]
//!                   [--overload-capacity N] [--overload-rounds N] [--rate N]
//!                   [--soak SECONDS] [--soak-calls N] [--socket-per-peer]
//!                   [--proxy-calls N,...]
//! srgate-load reflector      (started by `bench`; set up over stdin)
//! ```
#![deny(unsafe_code)]
// serde_json::json! of a relay row nests deeper than the default limit allows
#![recursion_limit = "256"]
// A load generator is I/O through and through: it reads the clock (clippy.toml forbids that
// in srgate's sans-IO core only).
#![allow(clippy::disallowed_methods)]

mod bench;
mod browser;
mod crypto;
mod kamailio;
mod ng;
mod opus_floor;
mod payload;
mod phone;
mod plain;
mod plots;
mod procfs;
mod reflector;
mod report;
mod stats;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("reflector") => reflector::run().map_err(|e| e.to_string()),
        Some("bench") => bench::Options::parse(&args[1..]).and_then(|o| bench::run(&o)),
        Some("-h" | "--help") | None => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command '{other}'\n{}", usage())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("srgate-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> &'static str {
    "usage: srgate-load bench [--srgate PATH] [--calls N,N,...] [--seconds S] [--shards N]\n\
     \x20                        [--out DIR] [--quick | --smoke] [--no-rtpengine]\n\
     \x20                        [--setup-calls N] [--transcode-calls N,...] [--idle-calls N,...]\n\
     \x20                        [--overload-capacity N] [--overload-rounds N] [--rate N]\n\
     \x20                        [--soak SECONDS] [--soak-calls N] [--socket-per-peer]\n\
     \x20                        (0 skips a scenario; --soak alone runs only the soak)\n\
     \x20      srgate-load reflector   (run by bench)"
}

/// The srgate binary next to this one (target/release/srgate when both were built there).
fn sibling_srgate() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("srgate")))
        .unwrap_or_else(|| PathBuf::from("srgate"))
}
