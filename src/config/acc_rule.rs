//! `[rtm2sip] acc_rule`: the SIP numbers app users may call, in SRProxy's syntax.
//!
//! `1005;10[06-19]` is 1005 and 1006 … 1019. Entries are separated by `;`. An entry is a
//! literal number, optionally followed by one range `[A-B]`: A and B are digit strings of the
//! same width and the range stands for every number from A to B written zero-padded to that
//! width, after the literal prefix (`10[06-19]` matches the four-digit strings `1006` …
//! `1019`, never `106` or `10061`). An empty rule allows no number. There are no wildcards:
//! `[rtm2sip] allow_any = 1` is the way to allow every number.
//!
//! SRProxy ignored entries it could not read; here each malformed entry is an error that says
//! what is wrong.

use std::fmt;

/// Digits a range bound may have, so that it fits in a `u64`.
const MAX_RANGE_WIDTH: usize = 18;

/// A parsed `acc_rule`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccRule {
    entries: Vec<AccEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AccEntry {
    Number(String),
    Range {
        prefix: String,
        low: u64,
        high: u64,
        width: usize,
    },
}

fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '.')
}

impl AccRule {
    /// Parses the rule. The error says which entry is wrong and why.
    pub fn parse(s: &str) -> Result<AccRule, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(AccRule::default());
        }
        let entries = s
            .split(';')
            .enumerate()
            .map(|(i, entry)| {
                parse_entry(entry.trim()).map_err(|why| format!("entry {} `{entry}`: {why}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AccRule { entries })
    }

    /// Whether app users may call `number`.
    pub fn matches(&self, number: &str) -> bool {
        self.entries.iter().any(|entry| match entry {
            AccEntry::Number(n) => n == number,
            AccEntry::Range {
                prefix,
                low,
                high,
                width,
            } => number.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                rest.len() == *width
                    && rest.bytes().all(|b| b.is_ascii_digit())
                    && rest
                        .parse::<u64>()
                        .is_ok_and(|n| (*low..=*high).contains(&n))
            }),
        })
    }

    /// True when the rule allows no number at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_entry(entry: &str) -> Result<AccEntry, String> {
    if entry.is_empty() {
        return Err("empty (a stray `;`?)".into());
    }
    if entry.contains('*') {
        return Err(
            "wildcards are not supported; use `allow_any = 1` to allow every number".into(),
        );
    }
    let (prefix, range) = match entry.find('[') {
        None => {
            if entry.contains(']') {
                return Err("`]` without `[`".into());
            }
            (entry, None)
        }
        Some(open) => {
            let inside_and_rest = &entry[open + 1..];
            let Some(close) = inside_and_rest.find(']') else {
                return Err("`[` without `]`".into());
            };
            if close + 1 != inside_and_rest.len() {
                return Err("nothing may follow the `]` of a range".into());
            }
            (&entry[..open], Some(&inside_and_rest[..close]))
        }
    };
    if let Some(bad) = prefix.chars().find(|&c| !is_literal_char(c)) {
        return Err(format!(
            "`{bad}` is not allowed in a number (letters, digits, `+`, `-`, `_`, `.`)"
        ));
    }
    let Some(range) = range else {
        return Ok(AccEntry::Number(prefix.to_owned()));
    };
    let Some((low, high)) = range.split_once('-') else {
        return Err("a range is `[A-B]`, e.g. `[06-19]`".into());
    };
    let (low, high) = (low.trim(), high.trim());
    for bound in [low, high] {
        if bound.is_empty() || !bound.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("range bound `{bound}` is not a digit string"));
        }
    }
    if low.len() != high.len() {
        return Err(format!(
            "range bounds `{low}` and `{high}` differ in width; write both with the same \
             number of digits (zero-padded)"
        ));
    }
    if low.len() > MAX_RANGE_WIDTH {
        return Err(format!("range bounds longer than {MAX_RANGE_WIDTH} digits"));
    }
    let (Ok(low_n), Ok(high_n)) = (low.parse::<u64>(), high.parse::<u64>()) else {
        return Err("range bound out of range".into());
    };
    if low_n > high_n {
        return Err(format!("range start `{low}` is above its end `{high}`"));
    }
    Ok(AccEntry::Range {
        prefix: prefix.to_owned(),
        low: low_n,
        high: high_n,
        width: low.len(),
    })
}

/// The canonical form, which [`AccRule::parse`] reads back to an equal rule.
impl fmt::Display for AccRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            match entry {
                AccEntry::Number(n) => f.write_str(n)?,
                AccEntry::Range {
                    prefix,
                    low,
                    high,
                    width,
                } => write!(f, "{prefix}[{low:0width$}-{high:0width$}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srproxy_example() {
        let rule = AccRule::parse("1005;10[06-19]").unwrap();
        for (number, allowed) in [
            ("1005", true),
            ("1006", true),
            ("1010", true),
            ("1019", true),
            ("1020", false),
            ("1004", false),
            ("10061", false),
            ("106", false),
            ("10", false),
            ("", false),
            ("10a6", false),
            ("10+6", false),
        ] {
            assert_eq!(rule.matches(number), allowed, "{number}");
        }
    }

    #[test]
    fn zero_padding_follows_the_width_of_the_bounds() {
        let rule = AccRule::parse("8[000-099]").unwrap();
        assert!(rule.matches("8000"));
        assert!(rule.matches("8099"));
        assert!(!rule.matches("80"));
        assert!(!rule.matches("8100"));
        let rule = AccRule::parse("[1-3]").unwrap();
        assert!(rule.matches("2"));
        assert!(!rule.matches("02"));
    }

    #[test]
    fn empty_rule_allows_nobody() {
        let rule = AccRule::parse("  ").unwrap();
        assert!(rule.is_empty());
        assert!(!rule.matches("1005"));
        assert!(!rule.matches(""));
    }

    #[test]
    fn plain_numbers_and_blanks_around_entries() {
        let rule = AccRule::parse("+4930123; alice ;9").unwrap();
        assert!(rule.matches("+4930123"));
        assert!(rule.matches("alice"));
        assert!(rule.matches("9"));
        assert!(!rule.matches("99"));
    }

    #[test]
    fn malformed_rules_say_what_is_wrong() {
        for (rule, needle) in [
            ("1005;;1006", "entry 2"),
            ("1005;", "empty"),
            ("10[06-19", "without `]`"),
            ("1006]", "without `[`"),
            ("10[19-06]", "above its end"),
            ("10[0a-19]", "not a digit string"),
            ("10[6-19]", "differ in width"),
            ("10[06]", "[A-B]"),
            ("10[06-19]5", "nothing may follow"),
            ("10*", "wildcards"),
            ("10 06", "not allowed"),
            ("1[0000000000000000000-9999999999999999999]", "longer than"),
            ("10[-19]", "not a digit string"),
        ] {
            let err = AccRule::parse(rule).unwrap_err();
            assert!(err.contains(needle), "{rule}: {err}");
        }
    }

    #[test]
    fn display_reads_back_equal() {
        for text in ["1005;10[06-19]", "", "[000-999]", "a;b;8[5-7]"] {
            let rule = AccRule::parse(text).unwrap();
            assert_eq!(rule.to_string(), text);
            assert_eq!(AccRule::parse(&rule.to_string()).unwrap(), rule);
        }
    }
}
