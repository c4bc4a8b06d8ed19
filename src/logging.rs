//! The process logger: `[log] level`, `file` and `max_file_size` on top of `log` +
//! `flexi_logger`.
//!
//! Levels (SRProxy's numbers): 0 SENSITIVE = `trace`, including SIP message dumps and the
//! plain values behind [`crate::pii::Pii`]; 1 VERBOSE = `debug`; 2 INFO; 3 WARNING; 4 ERROR;
//! 5 NONE = off. Other crates never log below `info`, so level 0 means every line of srgate,
//! not every line of its dependencies.
//!
//! With a `file`, lines go to that file (rotated when it reaches `max_file_size` MB, the
//! current one always under the configured name, [`KEPT_ROTATED_FILES`] older ones kept as
//! `NAME_r<timestamp>.EXT`) and warnings and errors are also copied to stderr. Without a
//! file, everything goes to stderr. The logger is global and may be used from every thread.
//!
//! Passwords never reach a log line: they live in [`crate::pii::Secret`], which does not print.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::{fmt, thread};

use flexi_logger::{
    Cleanup, Criterion, DeferredNow, Duplicate, FileSpec, FlexiLoggerError, LogSpecification,
    Logger, LoggerHandle, Naming, WriteMode,
};
use log::{LevelFilter, Record};

use crate::config::{Log, LogLevel};

#[doc(hidden)]
pub use log as __log;

/// Rotated log files kept besides the current one.
pub const KEPT_ROTATED_FILES: usize = 5;

/// Name part of rotated files: `srgate_r2026-01-31_12-00-00.log`.
const ROTATED_INFIX: &str = "r%Y-%m-%d_%H-%M-%S";

static SENSITIVE: AtomicBool = AtomicBool::new(false);

/// Whether `[log] level = 0` (SENSITIVE) is on: SIP bodies and plain personal data may be
/// logged. False until [`init`] runs.
pub fn sensitive_enabled() -> bool {
    SENSITIVE.load(Ordering::Relaxed)
}

/// Logs at level 0 (SENSITIVE) only, e.g. a whole SIP message; the arguments are not even
/// evaluated otherwise. Same arguments as `log::trace!`.
#[macro_export]
macro_rules! sensitive {
    ($($arg:tt)+) => {
        if $crate::logging::sensitive_enabled() {
            $crate::logging::__log::trace!($($arg)+);
        }
    };
}

/// The `log` filter for a configured level.
pub fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Sensitive => LevelFilter::Trace,
        LogLevel::Verbose => LevelFilter::Debug,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Warning => LevelFilter::Warn,
        LogLevel::Error => LevelFilter::Error,
        LogLevel::None => LevelFilter::Off,
    }
}

/// Starting the logger failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LogError {
    /// flexi_logger refused the file or was already started in this process.
    Start(FlexiLoggerError),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Start(e) => write!(f, "cannot start the logger: {e}"),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::Start(e) => Some(e),
        }
    }
}

/// Starts the global logger as `[log]` says. Call once, early in `main`; keep the handle
/// until exit (dropping it flushes and stops the file writer).
pub fn init(log: &Log) -> Result<LoggerHandle, LogError> {
    let ours = level_filter(log.level);
    let others = ours.min(LevelFilter::Info);
    let spec = LogSpecification::builder()
        .default(others)
        .module(env!("CARGO_CRATE_NAME"), ours)
        .build();
    let logger = Logger::with(spec)
        .format(format_line)
        .write_mode(WriteMode::Direct);
    let logger = match &log.file {
        None => logger.log_to_stderr(),
        Some(path) => {
            let bytes = log.max_file_size_mb.saturating_mul(1024 * 1024);
            logger
                .log_to_file(FileSpec::try_from(path).map_err(LogError::Start)?)
                .append()
                .rotate(
                    Criterion::Size(bytes),
                    // An empty current infix keeps the live file under its configured name.
                    Naming::TimestampsCustomFormat {
                        current_infix: Some(""),
                        format: ROTATED_INFIX,
                    },
                    Cleanup::KeepLogFiles(KEPT_ROTATED_FILES),
                )
                .duplicate_to_stderr(Duplicate::Warn)
        }
    };
    let handle = logger.start().map_err(LogError::Start)?;
    SENSITIVE.store(log.level == LogLevel::Sensitive, Ordering::Relaxed);
    Ok(handle)
}

/// `2026-01-31 12:00:00.123 INFO  [shard-0] srgate::sip: message`
fn format_line(w: &mut dyn Write, now: &mut DeferredNow, record: &Record<'_>) -> io::Result<()> {
    write!(
        w,
        "{} {:<5} [{}] {}: {}",
        now.format("%Y-%m-%d %H:%M:%S%.3f"),
        record.level(),
        thread::current().name().unwrap_or("-"),
        record.target(),
        record.args()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_srproxy_numbers() {
        let expected = [
            LevelFilter::Trace,
            LevelFilter::Debug,
            LevelFilter::Info,
            LevelFilter::Warn,
            LevelFilter::Error,
            LevelFilter::Off,
        ];
        for (n, filter) in expected.into_iter().enumerate() {
            let level = LogLevel::from_number(n as u8).expect("0-5 are levels");
            assert_eq!(level_filter(level), filter, "level {n}");
        }
    }
}
