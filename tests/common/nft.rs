//! Network faults for tests in a private network namespace, with nftables (`nft`): packets
//! dropped on loopback at random or all of them, in a table of the test's own that
//! [`Faults::clear`] (or dropping it) removes. The kernel here has no netem, so delay,
//! jitter and reordering cannot be made this way.

use std::io::Write;
use std::process::{Command, Stdio};

const TABLE: &str = "srgate_test_faults";

/// The test's fault rules on loopback's input (every packet on loopback passes it once).
pub struct Faults;

/// Runs an nft script; the error says what nft said.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Whether `nft` is installed (in CI it must be).
pub fn available() -> bool {
    let ok = super::find_binary("nft").is_some();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "nft is missing (apt-get install nftables)"
        );
        eprintln!("SKIPPED: nft is missing");
    }
    ok
}

impl Faults {
    /// Replaces the rules with `rules` (nft rule statements, one per line).
    pub fn set(rules: &[String]) -> Faults {
        let mut script = format!(
            "table inet {TABLE}\ndelete table inet {TABLE}\n\
             table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0;\n"
        );
        for rule in rules {
            script.push_str("    ");
            script.push_str(rule);
            script.push('\n');
        }
        script.push_str("  }\n}\n");
        if let Err(e) = nft(&script) {
            panic!("{e}");
        }
        Faults
    }

    /// Drops `percent` % of the UDP datagrams whose destination port is not `spare` (the
    /// SIP port), at random.
    pub fn udp_loss(percent: u32, spare: u16) -> Faults {
        Faults::set(&[format!(
            "udp dport != {spare} numgen random mod 100 < {percent} drop"
        )])
    }

    /// Drops every UDP datagram to or from `port`.
    pub fn udp_cut(port: u16) -> Faults {
        Faults::set(&[
            format!("udp dport {port} drop"),
            format!("udp sport {port} drop"),
        ])
    }

    /// The browser's network gone, as far as srgate sees it: every UDP datagram and TCP
    /// segment to or from srgate's media port (`media`, UDP and ICE-TCP) and its web port
    /// (`web`: the WebSocket of the JSON protocol) dropped.
    pub fn browser_cut(media: u16, web: u16) -> Faults {
        Faults::set(&[
            format!("udp dport {media} drop"),
            format!("udp sport {media} drop"),
            format!("tcp dport {{ {media}, {web} }} drop"),
            format!("tcp sport {{ {media}, {web} }} drop"),
        ])
    }

    /// Removes the rules (as dropping does).
    pub fn clear(self) {}
}

impl Drop for Faults {
    fn drop(&mut self) {
        // never panic in a drop: the namespace goes away with the test anyway
        if let Err(e) = nft(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n")) {
            eprintln!("{e}");
        }
    }
}
