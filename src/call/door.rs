//! Door opening (`[door]`): the app user who answered a call from a door station keys a
//! DTMF sequence (`#`, `*1`) and the door opens. The digits go to the door station as
//! RFC 4733 like every digit; when the last digits keyed match the sequence, srgate also
//! sends them as SIP INFO (`open_info`, for door stations that take only that) and
//! reports a [`DoorOpened`], which the I/O shell logs and POSTs to `[door] open_hook`.

use std::time::Instant;

use super::{Call, Calls, Ctx, Phase, Way};

/// The longest sequence (the config allows 8 digits).
const MAX_SEQUENCE: usize = 8;

/// How long srgate's INFO says each digit lasts.
const INFO_DIGIT_MS: u32 = 160;

/// What `[door]` asks of the call layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoorOpening {
    /// The sequence that opens (1 to 8 of `0-9 * # A-D`).
    pub sequence: String,
    /// Also send the sequence's digits as SIP INFO.
    pub info: bool,
}

/// The door was opened from a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoorOpened {
    /// The app user who opened it, and their call's id.
    pub user: String,
    pub call: String,
    /// The door station: the SIP caller.
    pub door: String,
    /// The sequence keyed.
    pub digits: String,
}

/// The last digits a call's app user keyed (no allocation: a call keeps 8 at most).
#[derive(Clone, Debug, Default)]
pub struct Keyed {
    last: [u8; MAX_SEQUENCE],
    len: usize,
}

impl Keyed {
    /// Adds `digit`; true when the digits keyed now end with `sequence` (then they are
    /// forgotten, so the same digits do not open twice).
    pub fn push(&mut self, digit: char, sequence: &str) -> bool {
        let Ok(byte) = u8::try_from(digit) else {
            return false;
        };
        if self.len == MAX_SEQUENCE {
            self.last.copy_within(1.., 0);
            self.len -= 1;
        }
        self.last[self.len] = byte.to_ascii_uppercase();
        self.len += 1;
        let keyed = &self.last[..self.len];
        let opens = !sequence.is_empty() && keyed.ends_with(sequence.as_bytes());
        if opens {
            self.len = 0;
        }
        opens
    }
}

impl Calls {
    /// `digits` the app user of call `slot` keyed (already sent as RFC 4733): when they
    /// complete `[door] open_dtmf` on an answered call from SIP, the door opens.
    pub(super) fn door_digits(
        &mut self,
        now: Instant,
        slot: usize,
        digits: &str,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(door) = self.cfg.door.clone() else {
            return;
        };
        let Some(key) = self.key_of(slot) else {
            return;
        };
        let Some((_, Call::Bridge(b))) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if b.way != Way::SipToApp || b.phase != Phase::Answered {
            return;
        }
        let mut opened = false;
        for digit in digits.chars() {
            opened |= b.keyed.push(digit, &door.sequence);
        }
        if !opened {
            return;
        }
        let sip = b.sip;
        let opened = DoorOpened {
            user: key.0.clone(),
            call: key.1.clone(),
            door: b.peer.clone(),
            digits: door.sequence.clone(),
        };
        log::info!(
            "door {} opened by {} (call {}, DTMF {})",
            crate::pii::Pii(&opened.door),
            crate::pii::Pii(&opened.user),
            opened.call,
            opened.digits
        );
        if door.info {
            for digit in door.sequence.chars() {
                ctx.sip.info(now, sip, digit, INFO_DIGIT_MS);
            }
        }
        self.doors.push_back(opened);
    }

    /// A door opened from a call (see [`DoorOpened`]).
    pub fn poll_door(&mut self) -> Option<DoorOpened> {
        self.doors.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_digits_keyed_open_once() {
        let mut k = Keyed::default();
        assert!(!k.push('1', "*1"));
        assert!(!k.push('*', "*1"));
        assert!(k.push('1', "*1"));
        // forgotten: the next `1` alone does not open again
        assert!(!k.push('1', "*1"));
        // a long run of other digits keeps only the last eight
        for d in "0123456789".chars() {
            assert!(!k.push(d, "#"));
        }
        assert!(k.push('#', "#"));
        assert!(k.push('a', "A"), "letters in either case");
        assert!(!k.push('5', ""), "no sequence: never");
    }
}
