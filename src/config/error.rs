//! What loading reports: [`ConfigError`], a configuration that cannot be used, with its
//! [`ErrorKind`], and [`Warning`], something accepted that the user should know about;
//! both display as `FILE:LINE: [section] key: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file cannot be read or is not UTF-8.
    Io,
    /// A line is neither a comment, a `[section]` nor `key = value`.
    Syntax,
    UnknownSection,
    UnknownKey,
    /// A key set twice in one section.
    DuplicateKey,
    /// A value srgate cannot use; the message says what is expected.
    BadValue,
    /// Keys that contradict each other (e.g. `tls_listen` without `[tls] cert`).
    Conflict,
}

/// A configuration that cannot be used. Displays as `FILE:LINE: [section] key: message`
/// (line, section and key omitted when they do not apply).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub section: Option<String>,
    pub key: Option<String>,
    pub kind: ErrorKind,
    pub message: String,
}

/// Something srgate accepted but that the user should know about. Displays like
/// [`ConfigError`].
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub section: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

fn write_located(
    f: &mut fmt::Formatter<'_>,
    file: &Path,
    line: Option<usize>,
    section: Option<&str>,
    key: Option<&str>,
    message: &str,
) -> fmt::Result {
    write!(f, "{}", file.display())?;
    if let Some(line) = line {
        write!(f, ":{line}")?;
    }
    f.write_str(":")?;
    if let Some(section) = section {
        write!(f, " [{section}]")?;
    }
    if let Some(key) = key {
        write!(f, " {key}")?;
    }
    if section.is_some() || key.is_some() {
        f.write_str(":")?;
    }
    write!(f, " {message}")
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(
            f,
            &self.file,
            self.line,
            self.section.as_deref(),
            self.key.as_deref(),
            &self.message,
        )
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(
            f,
            &self.file,
            self.line,
            self.section.as_deref(),
            self.key.as_deref(),
            &self.message,
        )
    }
}
