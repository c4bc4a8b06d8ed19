//! Call detail records: one JSON object per ended call, written as one line to the
//! `[calls] cdr_file` by the I/O shell.
//!
//! Fields: `call` (the browser protocol's call id), `user` (the app user), `peer` (the SIP
//! number called or calling; `echo`), `direction` (`app_to_sip`, `sip_to_app`, `echo`,
//! `sip_to_sip`: then `user` is the SIP user called and `peer` the caller), `start`,
//! `answer` (null when never answered), `end` (Unix milliseconds), `duration_ms` (answer to end), `sip_code` (the final SIP code when one was sent or
//! received), `reason` (how it ended), `codec_webrtc`, `codec_sip`, `mode` (`relay`,
//! `transcode`, or null when media never flowed), and per leg the packets in and out
//! and the packets lost (RFC 3550 A.3, as srgate received them).

use serde_json::{Value, json};

use super::bridge::BridgeCall;
use super::echo::EchoCall;
use crate::media::bridge::BridgeMode;

/// One call's record.
#[derive(Debug, Clone, PartialEq)]
pub struct Cdr {
    value: Value,
}

impl Cdr {
    pub(super) fn echo(
        user: &str,
        id: &str,
        end_ms: u64,
        reason: &str,
        call: &mut EchoCall,
    ) -> Cdr {
        let c = *call.browser().counters();
        Cdr {
            value: json!({
                "call": id,
                "user": user,
                "peer": "echo",
                "direction": "echo",
                "end": end_ms,
                "reason": reason,
                "codec_webrtc": "opus",
                "webrtc": {"rtp_in": c.rtp_in, "rtp_out": c.rtp_out, "srtp_errors": c.srtp_errors},
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn bridged(
        user: &str,
        id: &str,
        call: &BridgeCall,
        start_ms: u64,
        answer_ms: Option<u64>,
        end_ms: u64,
        sip_code: Option<u16>,
        reason: &str,
    ) -> Cdr {
        let browser = call
            .browser
            .as_ref()
            .map(|b| *b.counters())
            .unwrap_or_default();
        let codec_webrtc = call
            .browser
            .as_ref()
            .map(|b| b.negotiated().codec.encoding_name());
        let codec_sip = call.sip_format().map(|(_, c)| c.encoding_name());
        let mode = call.mode().map(|m| match m {
            BridgeMode::Relay => "relay",
            BridgeMode::Transcode => "transcode",
        });
        let (lost_webrtc, lost_sip) = call
            .media()
            .map(|m| {
                let s = m.stats();
                (s.webrtc.lost, s.sip.lost)
            })
            .unwrap_or((0, 0));
        let sip = call.sip_counters;
        let duration = answer_ms.map(|a| end_ms.saturating_sub(a));
        // An answered call's INVITE got (or was answered with) a 200.
        let sip_code = sip_code.or(answer_ms.map(|_| 200));
        Cdr {
            value: json!({
                "call": id,
                "user": user,
                "peer": call.peer,
                "direction": call.way.name(),
                "start": start_ms,
                "answer": answer_ms,
                "end": end_ms,
                "duration_ms": duration,
                "sip_code": sip_code,
                "reason": reason,
                "codec_webrtc": codec_webrtc,
                "codec_sip": codec_sip,
                "mode": mode,
                "webrtc": {"rtp_in": browser.rtp_in, "rtp_out": browser.rtp_out,
                           "lost": lost_webrtc, "srtp_errors": browser.srtp_errors},
                "sip": {"rtp_in": sip.rtp_in, "rtp_out": sip.rtp_out, "lost": lost_sip,
                        "refused": sip.refused, "rtp_port": call.port},
            }),
        }
    }

    /// A SIP ↔ SIP call: `user` is the callee, `peer` the caller, the legs are `caller`
    /// and `callee`; `codec_sip` the relayed codec, `mode` relay.
    pub(super) fn pair(
        id: &str,
        call: &super::sip_pair::SipPairCall,
        start_ms: u64,
        answer_ms: Option<u64>,
        end_ms: u64,
        sip_code: Option<u16>,
        reason: &str,
    ) -> Cdr {
        let leg = |l: &super::sip_pair::PairLeg| {
            let c = l.counters;
            json!({"rtp_in": c.rtp_in, "rtp_out": c.rtp_out, "refused": c.refused,
                   "rtp_port": l.port})
        };
        let duration = answer_ms.map(|a| end_ms.saturating_sub(a));
        let sip_code = sip_code.or(answer_ms.map(|_| 200));
        Cdr {
            value: json!({
                "call": id,
                "user": call.callee,
                "peer": call.caller,
                "direction": "sip_to_sip",
                "group": call.group,
                "start": start_ms,
                "answer": answer_ms,
                "end": end_ms,
                "duration_ms": duration,
                "sip_code": sip_code,
                "reason": reason,
                "codec_webrtc": null,
                "codec_sip": call.codec.map(|c| c.encoding_name()),
                "mode": answer_ms.map(|_| "relay"),
                "caller": leg(&call.a),
                "callee": leg(&call.b),
            }),
        }
    }

    /// A record made elsewhere in the call layer (a REST call's).
    pub(super) fn from_value(value: Value) -> Cdr {
        Cdr { value }
    }

    /// A call that never got a media path: refused or failed before it was set up.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attempt(
        user: &str,
        id: &str,
        peer: &str,
        direction: &str,
        at_ms: u64,
        sip_code: Option<u16>,
        reason: &str,
    ) -> Cdr {
        Cdr {
            value: json!({
                "call": id,
                "user": user,
                "peer": peer,
                "direction": direction,
                "start": at_ms,
                "answer": null,
                "end": at_ms,
                "duration_ms": null,
                "sip_code": sip_code,
                "reason": reason,
                "codec_webrtc": null,
                "codec_sip": null,
                "mode": null,
            }),
        }
    }

    /// A record for tests of what writes records: an answered call, or one refused.
    #[cfg(test)]
    pub(crate) fn sample(answered: bool) -> Cdr {
        Cdr {
            value: json!({
                "call": "c1", "user": "u1", "peer": "1001", "direction": "app-to-sip",
                "start": 1, "answer": if answered { Some(2) } else { None }, "end": 3,
                "reason": "test",
            }),
        }
    }

    /// The record as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        self.value.to_string()
    }

    /// A short summary for the log.
    pub fn summary(&self) -> String {
        let v = &self.value;
        format!(
            "mode {} codecs {}/{}, browser RTP in {} out {}, SIP RTP in {} out {}",
            v["mode"],
            v["codec_webrtc"],
            v["codec_sip"],
            v["webrtc"]["rtp_in"],
            v["webrtc"]["rtp_out"],
            v["sip"]["rtp_in"],
            v["sip"]["rtp_out"]
        )
    }

    /// A field, for tests and the API.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key)
    }
}
