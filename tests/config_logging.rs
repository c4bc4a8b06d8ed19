//! `[log]` honoured: level 0 reveals personal data and SIP dumps, other crates stay at info,
//! passwords never reach the file, the file rotates at `max_file_size` MB without losing
//! lines while several threads log, and the live file keeps its configured name.
//! One test: the logger is global to the process.

use std::path::PathBuf;
use std::thread;

use srgate::config::{Log, LogLevel};
use srgate::logging;
use srgate::pii::{Pii, Secret};

const THREADS: usize = 4;
const LINES_PER_THREAD: usize = 8000;
/// About 5 MB in all, so a 1 MB limit rotates four times, mostly within one second.
const PADDING: usize = 100;

fn read_all(dir: &PathBuf) -> (Vec<PathBuf>, String) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let text = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("");
    (files, text)
}

#[test]
fn level_zero_file_rotation_and_redaction() {
    let dir = std::env::temp_dir().join(format!("srgate-log-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("srgate.log");
    assert!(!logging::sensitive_enabled());
    let handle = logging::init(&Log {
        level: LogLevel::Sensitive,
        file: Some(file.clone()),
        max_file_size_mb: 1,
    })
    .unwrap();
    assert!(logging::sensitive_enabled());

    let password = Secret::from("hunter2-password");
    log::info!(target: "srgate::sip", "registering 1000 with password {password} ({password:?})");
    log::info!(target: "srgate::sip", "callee {}", Pii("1006"));
    srgate::sensitive!(target: "srgate::sip", "SIP in:\nINVITE sip:1006@example.com SIP/2.0");
    log::debug!(target: "srgate::sip", "verbose line");
    log::debug!(target: "some_dependency", "dependency debug line");
    log::info!(target: "some_dependency", "dependency info line");

    let padding = "x".repeat(PADDING);
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let padding = padding.clone();
            thread::Builder::new()
                .name(format!("shard-{t}"))
                .spawn(move || {
                    for i in 0..LINES_PER_THREAD {
                        log::info!(target: "srgate::io", "bulk {t} {i} {padding}");
                    }
                })
                .unwrap()
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    handle.flush();

    let (files, text) = read_all(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"srgate.log".to_owned()), "{names:?}");
    let rotated = names
        .iter()
        .filter(|n| n.starts_with("srgate_r") && n.ends_with(".log"))
        .count();
    assert!(rotated >= 3, "{names:?}");
    assert!(rotated <= logging::KEPT_ROTATED_FILES, "{names:?}");
    assert!(!text.contains("hunter2"), "password logged");
    assert!(text.contains("with password *** (Secret(***))"));
    assert!(text.contains("callee 1006"), "level 0 shows personal data");
    assert!(
        text.contains("INVITE sip:1006@example.com SIP/2.0"),
        "level 0 dumps SIP"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" DEBUG [") && l.ends_with("] srgate::sip: verbose line")),
        "level 0 includes debug"
    );
    assert!(
        !text.contains("dependency debug line"),
        "other crates stay at info"
    );
    assert!(text.contains("dependency info line"));
    let bulk = text.lines().filter(|l| l.contains(" bulk ")).count();
    assert_eq!(bulk, THREADS * LINES_PER_THREAD, "lines lost in rotation");
    assert!(
        text.contains("INFO  [shard-3] srgate::io: bulk 3 "),
        "thread names in lines"
    );
}
