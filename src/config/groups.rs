//! `[groups]`: ring groups — a number that rings several devices at once (a flat's app
//! users and indoor monitors).
//!
//! `301 = app:anna, app:ben, sip:3011`: a call to 301 rings every member that is online.
//! The key is a number, or one `acc_rule`-style range (`3[01-99]`: 301 … 399, see
//! [`AccRule`]), so a building's flats are one line; in a range's members `{n}` stands
//! for the number called (`3[01-99] = app:flat{n}, app:flat{n}b`). A number named by
//! its own key is matched before any range; ranges are tried in file order. A member is
//! `app:USER` (an app user of the browser protocol) or `sip:USER` (a `[users]` phone).

use std::fmt;

use super::acc_rule::AccRule;

/// Members one group may have: each rung member holds an RTP port until the call is
/// answered, so one INVITE may not fan out without bound.
pub const MAX_MEMBERS: usize = 16;

/// What a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    /// An app user (browser protocol).
    App,
    /// A registered SIP phone of `[users]`.
    Sip,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::App => "app",
            MemberKind::Sip => "sip",
        }
    }
}

/// One member as written: its kind and its name, where `{n}` is the number called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub kind: MemberKind,
    name: String,
}

impl Member {
    /// The member's name for a call to `number`.
    pub fn name_for(&self, number: &str) -> String {
        self.name.replace("{n}", number)
    }

    /// The name as written (`{n}` standing for the number called in a range).
    pub fn written(&self) -> &str {
        &self.name
    }
}

/// One `[groups]` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The key as written (`301`, `3[01-99]`).
    pub key: String,
    /// The key read as a rule: one number or one range.
    rule: AccRule,
    literal: bool,
    pub members: Vec<Member>,
}

/// Every ring group, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Groups {
    groups: Vec<Group>,
}

impl Groups {
    /// Reads one `key = value` line of `[groups]` into the table; the error says what is
    /// wrong with the key or which member is.
    pub fn add(&mut self, key: &str, value: &str) -> Result<(), String> {
        if key.contains(';') {
            return Err("one number or one range per key (no `;`)".into());
        }
        let rule = AccRule::parse(key)?;
        if rule.is_empty() {
            return Err("empty key".into());
        }
        let literal = !key.contains('[');
        let mut members = Vec::new();
        for (i, raw) in value.split(',').enumerate() {
            let raw = raw.trim();
            let member = parse_member(raw, literal)
                .map_err(|why| format!("member {} `{raw}`: {why}", i + 1))?;
            if members.contains(&member) {
                return Err(format!("member {} `{raw}` is named twice", i + 1));
            }
            members.push(member);
        }
        if members.len() > MAX_MEMBERS {
            return Err(format!(
                "{} members; a group has {MAX_MEMBERS} at most",
                members.len()
            ));
        }
        self.groups.push(Group {
            key: key.to_owned(),
            rule,
            literal,
            members,
        });
        Ok(())
    }

    /// The group a call to `number` rings: the group keyed by the number itself, else the
    /// first range that holds it.
    pub fn find(&self, number: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.literal && g.rule.matches(number))
            .or_else(|| {
                self.groups
                    .iter()
                    .find(|g| !g.literal && g.rule.matches(number))
            })
    }

    /// The members a call to `number` rings (names filled in), or `None` when `number` is
    /// no group. A filled-in name that is not a valid user name is left out.
    pub fn members(&self, number: &str) -> Option<Vec<(MemberKind, String)>> {
        let group = self.find(number)?;
        Some(
            group
                .members
                .iter()
                .map(|m| (m.kind, m.name_for(number)))
                .filter(|(kind, name)| valid_name(*kind, name))
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

fn valid_name(kind: MemberKind, name: &str) -> bool {
    match kind {
        MemberKind::App => super::values::is_app_user(name),
        MemberKind::Sip => super::values::is_sip_user(name),
    }
}

fn parse_member(raw: &str, literal_key: bool) -> Result<Member, String> {
    let (kind, name) = if let Some(name) = raw.strip_prefix("app:") {
        (MemberKind::App, name)
    } else if let Some(name) = raw.strip_prefix("sip:") {
        (MemberKind::Sip, name)
    } else if raw.is_empty() {
        return Err("empty (a stray `,`?)".into());
    } else {
        return Err("a member is `app:USER` or `sip:USER`".into());
    };
    let name = name.trim();
    if name.contains("{n}") && literal_key {
        return Err("`{n}` (the number called) is for range keys like `3[01-99]`".into());
    }
    // `{n}` becomes digits: the name must be valid with it filled in
    if !valid_name(kind, &name.replace("{n}", "0")) {
        return Err(match kind {
            MemberKind::App => "not an app user name (1-64 letters, digits, `_.+@-`)".into(),
            MemberKind::Sip => {
                "not a SIP user name (1-64 letters, digits, `-_.!~*'()&=+$,?/%`)".into()
            }
        });
    }
    Ok(Member {
        kind,
        name: name.to_owned(),
    })
}

/// `app:anna, sip:3011` (as `srgate check` and the effective configuration print them).
impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}:{}", m.kind.as_str(), m.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(lines: &[(&str, &str)]) -> Groups {
        let mut g = Groups::default();
        for (k, v) in lines {
            g.add(k, v).unwrap();
        }
        g
    }

    #[test]
    fn a_number_rings_its_members_and_a_range_fills_in_the_number() {
        let g = groups(&[
            ("3[01-99]", "app:flat{n}, sip:{n}1"),
            ("301", "app:anna, app:ben, sip:3011"),
        ]);
        // the number's own key wins over the range written before it
        assert_eq!(
            g.members("301").unwrap(),
            [
                (MemberKind::App, "anna".to_string()),
                (MemberKind::App, "ben".to_string()),
                (MemberKind::Sip, "3011".to_string())
            ]
        );
        assert_eq!(
            g.members("342").unwrap(),
            [
                (MemberKind::App, "flat342".to_string()),
                (MemberKind::Sip, "3421".to_string())
            ]
        );
        assert!(g.members("400").is_none());
        assert!(g.members("3420").is_none());
        assert_eq!(g.find("342").unwrap().to_string(), "app:flat{n}, sip:{n}1");
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let err = |k: &str, v: &str| Groups::default().add(k, v).unwrap_err();
        assert!(
            err("301", "anna").contains("member 1 `anna`"),
            "{}",
            err("301", "anna")
        );
        assert!(err("301", "app:anna,").contains("member 2 ``: empty"));
        assert!(err("301", "app:an na").contains("not an app user name"));
        assert!(err("301", "app:flat{n}").contains("range keys"));
        assert!(err("301", "app:a, app:a").contains("named twice"));
        assert!(err("3[01-9]", "app:a").contains("differ in width"));
        assert!(err("301;302", "app:a").contains("one number or one range"));
        let many: Vec<String> = (0..17).map(|i| format!("app:u{i}")).collect();
        assert!(err("301", &many.join(",")).contains("16 at most"));
    }
}
