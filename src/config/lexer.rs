//! The INI dialect of `conf/srgate.ini` and SRProxy's `rtx.conf`, split into sections and
//! `key = value` entries that remember their line numbers.
//!
//! Rules (the same for every section):
//! - a line whose first non-blank character is `;` or `#` is a comment;
//! - `[name]` opens a section; a comment may follow the `]`; a section may appear more than
//!   once, its keys are merged;
//! - `key = value`: the key is everything before the first `=`, trimmed, without blanks;
//! - an inline comment starts at a `;` or `#` that follows a space or a tab, so
//!   `sip_svr=10.0.0.1:5060   ## the PBX` is `10.0.0.1:5060` while `sip_pwd=a#b;c` keeps its
//!   `#` and `;`;
//! - a value that starts with `"` runs to the next `"` and is taken literally (for values with
//!   leading or trailing blanks, or a blank followed by `;` or `#`); only a comment may follow;
//! - a key set twice in one section is an error (not last-wins): a repeated key is almost
//!   always a forgotten edit, and silently taking one of them hides it.
//!
//! A UTF-8 byte order mark is skipped and `\r\n` line ends are accepted.

use super::ErrorKind;

/// The file split into sections, in file order.
#[derive(Debug)]
pub(super) struct Document<'a> {
    pub sections: Vec<Section<'a>>,
}

#[derive(Debug)]
pub(super) struct Section<'a> {
    pub name: &'a str,
    /// Line of the first `[name]` header.
    pub line: usize,
    pub entries: Vec<Entry<'a>>,
}

#[derive(Debug)]
pub(super) struct Entry<'a> {
    pub line: usize,
    pub key: &'a str,
    pub value: &'a str,
}

#[derive(Debug, PartialEq)]
pub(super) struct LexError {
    pub line: usize,
    pub kind: ErrorKind,
    pub section: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl<'a> Document<'a> {
    pub fn section(&self, name: &str) -> Option<&Section<'a>> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn entry(&self, section: &str, key: &str) -> Option<&Entry<'a>> {
        self.section(section)?.entries.iter().find(|e| e.key == key)
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_comment_start(c: char) -> bool {
    c == ';' || c == '#'
}

/// Splits `text` into sections and entries. Line numbers start at 1.
pub(super) fn lex(text: &str) -> Result<Document<'_>, LexError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: Vec<Section<'_>> = Vec::new();
    let mut current: Option<usize> = None;

    for (index, raw_line) in text.split('\n').enumerate() {
        let line = index + 1;
        let raw_line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let trimmed = raw_line.trim_matches(is_blank);
        let current_name = current.and_then(|i| sections.get(i)).map(|s| s.name);
        let error = |kind, key: Option<&str>, message: String| LexError {
            line,
            kind,
            section: current_name.map(str::to_owned),
            key: key.map(str::to_owned),
            message,
        };
        if let Some(c) = raw_line.chars().find(|c| c.is_control() && *c != '\t') {
            // a NUL or a lone CR in a password would not survive being written back (srgate
            // check), and is no one's intent: refused, named
            return Err(error(
                ErrorKind::Syntax,
                None,
                format!("control character U+{:04X} in the line", u32::from(c)),
            ));
        }
        if trimmed.is_empty() || trimmed.starts_with(is_comment_start) {
            continue;
        }
        if let Some(after_bracket) = trimmed.strip_prefix('[') {
            let Some(close) = after_bracket.find(']') else {
                return Err(error(
                    ErrorKind::Syntax,
                    None,
                    "section header has no closing `]`".into(),
                ));
            };
            let name = after_bracket[..close].trim_matches(is_blank);
            let rest = after_bracket[close + 1..].trim_start_matches(is_blank);
            if !rest.is_empty() && !rest.starts_with(is_comment_start) {
                return Err(error(
                    ErrorKind::Syntax,
                    None,
                    format!("unexpected `{rest}` after the section header"),
                ));
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                return Err(error(
                    ErrorKind::Syntax,
                    None,
                    format!("bad section name `{name}` (letters, digits, `_`, `-`, `.`)"),
                ));
            }
            current = Some(match sections.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    sections.push(Section {
                        name,
                        line,
                        entries: Vec::new(),
                    });
                    sections.len() - 1
                }
            });
            continue;
        }
        let Some(eq) = trimmed.find('=') else {
            return Err(error(
                ErrorKind::Syntax,
                None,
                "expected `key = value`, a `[section]` header or a comment (`;` or `#`)".into(),
            ));
        };
        let key = trimmed[..eq].trim_matches(is_blank);
        if key.is_empty() {
            return Err(error(
                ErrorKind::Syntax,
                None,
                "missing key before `=`".into(),
            ));
        }
        if key.contains(is_blank) {
            return Err(error(
                ErrorKind::Syntax,
                Some(key),
                "a key has no blanks in it (is a `=` missing?)".into(),
            ));
        }
        let value =
            value_of(&trimmed[eq + 1..]).map_err(|m| error(ErrorKind::Syntax, Some(key), m))?;
        let Some(section) = current.and_then(|i| sections.get_mut(i)) else {
            return Err(error(
                ErrorKind::Syntax,
                Some(key),
                "key outside any section (put a `[section]` header above it)".into(),
            ));
        };
        if let Some(first) = section.entries.iter().find(|e| e.key == key) {
            let message = format!(
                "set twice in [{}] (first on line {}); keep one",
                section.name, first.line
            );
            return Err(error(ErrorKind::DuplicateKey, Some(key), message));
        }
        section.entries.push(Entry { line, key, value });
    }
    Ok(Document { sections })
}

/// The value part after `=`: quotes and inline comments resolved, blanks trimmed.
fn value_of(raw: &str) -> Result<&str, String> {
    let start = raw.trim_start_matches(is_blank);
    if let Some(quoted) = start.strip_prefix('"') {
        let Some(close) = quoted.find('"') else {
            return Err("unterminated `\"` in the value".into());
        };
        let rest = quoted[close + 1..].trim_start_matches(is_blank);
        if !rest.is_empty() && !rest.starts_with(is_comment_start) {
            return Err(format!(
                "unexpected `{rest}` after the quoted value (only a comment may follow)"
            ));
        }
        return Ok(&quoted[..close]);
    }
    let mut previous_blank = false;
    let mut end = raw.len();
    for (i, c) in raw.char_indices() {
        if previous_blank && is_comment_start(c) {
            end = i;
            break;
        }
        previous_blank = is_blank(c);
    }
    Ok(raw[..end].trim_matches(is_blank))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_comments_need_a_blank_before_them() {
        assert_eq!(value_of("IP:5060      \t\t\t ## comment"), Ok("IP:5060"));
        assert_eq!(value_of("a#b;c"), Ok("a#b;c"));
        assert_eq!(
            value_of("1005;10[06-19]           ## x"),
            Ok("1005;10[06-19]")
        );
        assert_eq!(value_of(" ; only a comment"), Ok(""));
        assert_eq!(value_of(";not a comment"), Ok(";not a comment"));
        assert_eq!(value_of("   "), Ok(""));
        assert_eq!(value_of("x\t#c"), Ok("x"));
    }

    #[test]
    fn quoted_values_are_literal() {
        assert_eq!(value_of(" \" a ; b \" ; comment"), Ok(" a ; b "));
        assert_eq!(value_of("\"\""), Ok(""));
        assert!(value_of("\"open").is_err());
        assert!(value_of("\"a\" b").is_err());
        // A quote that is not first is an ordinary character.
        assert_eq!(value_of("a\"b"), Ok("a\"b"));
    }

    #[test]
    fn sections_merge_and_lines_are_counted() {
        let doc = lex("\u{feff}; c\r\n[a]\r\nx = 1\n\n[b] ; c\ny=2\n[a]\nz = 3\n").unwrap();
        assert_eq!(doc.sections.len(), 2);
        let a = doc.section("a").unwrap();
        assert_eq!(a.line, 2);
        assert_eq!(
            a.entries
                .iter()
                .map(|e| (e.key, e.value, e.line))
                .collect::<Vec<_>>(),
            [("x", "1", 3), ("z", "3", 8)]
        );
        assert_eq!(doc.entry("b", "y").unwrap().line, 6);
    }

    #[test]
    fn duplicate_key_is_an_error_naming_both_lines() {
        let err = lex("[a]\nx=1\n[b]\nx=1\n[a]\nx=2\n").unwrap_err();
        assert_eq!(err.line, 6);
        assert_eq!(err.kind, ErrorKind::DuplicateKey);
        assert_eq!(err.section.as_deref(), Some("a"));
        assert_eq!(err.key.as_deref(), Some("x"));
        assert!(err.message.contains("line 2"), "{}", err.message);
    }

    #[test]
    fn control_characters_are_refused_with_their_line() {
        // found by the config fuzz target: a NUL and a lone CR inside a [users] password
        let err = lex("[users]\r\n1001 = pw\r\nsip_svr = a\0b\r\n").unwrap_err();
        assert_eq!(
            (err.line, err.kind),
            (3, ErrorKind::Syntax),
            "{}",
            err.message
        );
        assert!(err.message.contains("U+0000"), "{}", err.message);
        let err = lex("[users]\n1001 = p\rw\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(lex("[users]\n1001 =\tpw\t; tab is a blank\n").is_ok());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for (text, line) in [
            ("[a\n", 1),
            ("[a]\nlisten 0.0.0.0:5086\n", 2),
            ("x = 1\n", 1),
            ("[a]\n = 1\n", 2),
            ("[a]\n\nkey x = 1\n", 3),
            ("[a] b\n", 1),
            ("[]\n", 1),
            ("[a]\nk = \"x\n", 2),
        ] {
            let err = lex(text).unwrap_err();
            assert_eq!((err.line, err.kind), (line, ErrorKind::Syntax), "{text:?}");
        }
    }
}
