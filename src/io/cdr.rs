//! The CDR file (`[calls] cdr_file`): one JSON line per ended call, written by shard 0.
//!
//! - Created `0640` (and a warning when an existing file is readable by every user).
//! - Rotated like the log: when a line would take the file past `[calls]
//!   cdr_max_file_size`, the file is renamed `NAME_r<date>_<time>.EXT` and a new one
//!   started; the newest [`KEPT_ROTATED`] rotated files are kept.
//! - Records of calls that never connected (refused, failed, unanswered) are limited to
//!   [`UNANSWERED_PER_SECOND`] with a burst of [`UNANSWERED_BURST`]: a flood of refused
//!   INVITEs cannot fill the disk. Those left out are counted
//!   (`srgate_cdr_suppressed_total`) and reported in one log line a minute. Answered calls
//!   are always written.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::call::Cdr;
use crate::rate::TokenBucket;

/// Rotated CDR files kept besides the current one.
pub const KEPT_ROTATED: usize = 5;
/// Records of calls that never connected written per second, sustained.
pub const UNANSWERED_PER_SECOND: u32 = 20;
/// ... and at once, after a quiet spell.
pub const UNANSWERED_BURST: u32 = 200;
/// How often the count of records left out is logged.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The open CDR file.
pub struct CdrLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    bucket: TokenBucket,
    suppressed: u64,
    /// Suppressed since the last report, and when that was.
    unreported: u64,
    reported_at: Instant,
    errors: u64,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl CdrLog {
    /// Opens (or creates, `0640`) the file at `path`, rotating at `max_size` bytes.
    pub fn open(path: &Path, max_size: u64, now: Instant) -> io::Result<CdrLog> {
        let file = open(path)?;
        let meta = file.metadata()?;
        if meta.permissions().mode() & 0o004 != 0 {
            log::warn!(
                "[calls] cdr_file {}: readable by every user of this machine (chmod o-r)",
                path.display()
            );
        }
        Ok(CdrLog {
            path: path.to_owned(),
            file,
            size: meta.len(),
            max_size: max_size.max(1),
            bucket: TokenBucket::full(now, UNANSWERED_BURST),
            suppressed: 0,
            unreported: 0,
            reported_at: now,
            errors: 0,
        })
    }

    /// Records left out (calls that never connected, over the rate).
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Failed writes and rotations.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Writes one record (see the module doc for what may be left out).
    pub fn write(&mut self, now: Instant, cdr: &Cdr) {
        let connected = !matches!(cdr.get("answer"), Some(serde_json::Value::Null));
        let written = connected
            || self
                .bucket
                .take(now, UNANSWERED_PER_SECOND, UNANSWERED_BURST);
        if !written {
            self.suppressed += 1;
            self.unreported += 1;
        }
        if self.unreported > 0 && now.saturating_duration_since(self.reported_at) >= REPORT_EVERY {
            log::warn!(
                "[calls] cdr_file: {} records of calls that never connected left out in the \
                 last {} s (more than {UNANSWERED_PER_SECOND} a second)",
                self.unreported,
                now.saturating_duration_since(self.reported_at).as_secs()
            );
            self.unreported = 0;
            self.reported_at = now;
        }
        if !written {
            return;
        }
        let mut line = cdr.to_line();
        line.push('\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate();
        }
        match self.file.write_all(line.as_bytes()) {
            Ok(()) => self.size += line.len() as u64,
            Err(e) => {
                self.errors += 1;
                log::warn!("[calls] cdr_file {}: {e}", self.path.display());
            }
        }
    }

    /// Renames the current file aside, starts a new one and removes the oldest rotated
    /// files beyond [`KEPT_ROTATED`].
    fn rotate(&mut self) {
        let stamp = flexi_logger::DeferredNow::new()
            .format("%Y-%m-%d_%H-%M-%S")
            .to_string();
        let rotated = rotated_name(&self.path, &stamp);
        let result = std::fs::rename(&self.path, &rotated).and_then(|()| open(&self.path));
        match result {
            Ok(file) => {
                self.file = file;
                self.size = 0;
                log::info!("[calls] cdr_file rotated to {}", rotated.display());
            }
            Err(e) => {
                // keep appending to the file we have rather than lose records
                self.errors += 1;
                log::warn!(
                    "[calls] cdr_file {}: cannot rotate: {e}",
                    self.path.display()
                );
                return;
            }
        }
        if let Err(e) = remove_oldest(&self.path, KEPT_ROTATED) {
            log::warn!("[calls] cdr_file: cannot remove old rotated files: {e}");
        }
    }
}

/// `dir/NAME_r<stamp>.EXT` for `dir/NAME.EXT` (and `NAME_r<stamp>` without extension); a
/// second rotation within the same second gets `-1`, `-2`… appended to the stamp.
fn rotated_name(path: &Path, stamp: &str) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("cdr");
    let ext = path.extension().and_then(|e| e.to_str());
    let name = |suffix: &str| match ext {
        Some(ext) => format!("{stem}_r{stamp}{suffix}.{ext}"),
        None => format!("{stem}_r{stamp}{suffix}"),
    };
    let mut candidate = path.with_file_name(name(""));
    for n in 1..100 {
        if !candidate.exists() {
            break;
        }
        candidate = path.with_file_name(name(&format!("-{n}")));
    }
    candidate
}

/// Removes rotated files of `path` beyond the newest `keep` (their names sort by time).
fn remove_oldest(path: &Path, keep: usize) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("cdr");
    let prefix = format!("{stem}_r");
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
                && p.extension() == path.extension()
        })
        .collect();
    rotated.sort();
    let excess = rotated.len().saturating_sub(keep);
    for old in &rotated[..excess] {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("srgate-cdr-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn record(answered: bool) -> Cdr {
        Cdr::sample(answered)
    }

    #[test]
    fn a_new_file_is_not_readable_by_others() {
        let d = dir("mode");
        let path = d.join("cdr.jsonl");
        let mut log = CdrLog::open(&path, 1 << 20, Instant::now()).unwrap();
        log.write(Instant::now(), &record(true));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "mode {mode:o}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn refused_calls_are_limited_and_answered_ones_always_written() {
        let d = dir("rate");
        let path = d.join("cdr.jsonl");
        let t0 = Instant::now();
        let mut log = CdrLog::open(&path, 1 << 30, t0).unwrap();
        for _ in 0..2_000 {
            log.write(t0, &record(false));
        }
        log.write(t0, &record(true));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, UNANSWERED_BURST as usize + 1);
        assert_eq!(log.suppressed(), 2_000 - u64::from(UNANSWERED_BURST));
        // a second later the bucket has refilled by the sustained rate
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..100 {
            log.write(t1, &record(false));
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(
            lines,
            (UNANSWERED_BURST + UNANSWERED_PER_SECOND) as usize + 1
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_file_rotates_at_its_size_and_keeps_the_newest_rotated_files() {
        let d = dir("rotate");
        let path = d.join("calls.jsonl");
        let line = record(true).to_line().len() as u64 + 1;
        let t0 = Instant::now();
        let mut log = CdrLog::open(&path, 3 * line, t0).unwrap();
        for _ in 0..(3 * (KEPT_ROTATED + 3)) {
            log.write(t0, &record(true));
        }
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), KEPT_ROTATED + 1, "{names:?}");
        assert!(names.contains(&"calls.jsonl".to_string()));
        assert!(
            names
                .iter()
                .filter(|n| *n != "calls.jsonl")
                .all(|n| n.starts_with("calls_r") && n.ends_with(".jsonl")),
            "{names:?}"
        );
        let current = std::fs::read_to_string(&path).unwrap();
        assert_eq!(current.lines().count(), 3);
        assert_eq!(log.errors(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }
}
