//! DTMF as RFC 4733 telephone-events: a sender that turns digits into event packets and a
//! receiver that reports each event once.
//!
//! Sender: one event per digit; a packet every 20 ms (the audio frame cadence, so the
//! stream's packet rate does not change while a digit plays) with the duration growing
//! by 20 ms, the marker bit on the first (RFC 4733 §2.5.1.1), 100 ms of tone, then three
//! end packets with the final duration and the same timestamp (§2.5.1.4: sent three
//! times against loss), then a 60 ms pause before the next digit. Sequence numbers and
//! timestamps are the caller's: the event packets share the audio stream's SSRC and
//! sequence space, and the audio is held back while an event plays.
//!
//! Receiver: an event is identified by its RTP timestamp (§2.5.1.1: all packets of one
//! event carry the timestamp of its start); the digit is reported at the first packet
//! seen, retransmitted and end packets of the same event are ignored.

use std::time::{Duration, Instant};

use heapless::Deque;

/// Digits queued at most.
pub const MAX_QUEUED: usize = 32;
/// Tone length of one digit and the pause after it.
pub const TONE: Duration = Duration::from_millis(100);
pub const PAUSE: Duration = Duration::from_millis(60);
/// Packet interval.
pub const INTERVAL: Duration = Duration::from_millis(20);
/// Volume field: -10 dBm0 (RFC 4733 §2.3.4), what phones commonly send.
const VOLUME: u8 = 10;

/// The event code of a digit (RFC 4733 §3.2): 0-9, * = 10, # = 11, A-D = 12-15.
pub fn event_code(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The digit of an event code (16, flash, and others have none).
pub fn digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some((b'0' + code) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + code - 12) as char),
        _ => None,
    }
}

/// Why digits were not queued (nothing of the request was queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfError {
    /// Not one of 0-9 * # A-D.
    BadDigit(char),
    /// More than [`MAX_QUEUED`] digits would wait.
    QueueFull,
    /// The other side did not negotiate telephone-event.
    NotNegotiated,
}

/// One event packet's payload and header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// The 4-byte payload (§2.3).
    pub payload: [u8; 4],
    /// Set on the first packet of an event.
    pub marker: bool,
    /// The E bit: the event ended (sent three times).
    pub end: bool,
}

#[derive(Debug, Clone, Copy)]
struct Playing {
    code: u8,
    started: Instant,
    /// Packets sent so far (the first has the marker).
    sent: u32,
    /// End packets sent (0-3).
    ends: u8,
}

/// Turns queued digits into event packets on a clock of `clock_rate` Hz.
#[derive(Debug)]
pub struct DtmfSender {
    clock_rate: u32,
    queue: Deque<u8, MAX_QUEUED>,
    playing: Option<Playing>,
    /// No new event before this instant (the pause after the previous one).
    quiet_until: Option<Instant>,
    next_at: Option<Instant>,
    pub sent_digits: u64,
}

impl DtmfSender {
    pub fn new(clock_rate: u32) -> Self {
        DtmfSender {
            clock_rate,
            queue: Deque::new(),
            playing: None,
            quiet_until: None,
            next_at: None,
            sent_digits: 0,
        }
    }

    /// Queues `digits` (all or nothing).
    pub fn queue(&mut self, now: Instant, digits: &str) -> Result<(), DtmfError> {
        let mut codes = heapless::Vec::<u8, MAX_QUEUED>::new();
        for d in digits.chars() {
            let code = event_code(d).ok_or(DtmfError::BadDigit(d))?;
            codes.push(code).map_err(|_| DtmfError::QueueFull)?;
        }
        if self.queue.len() + codes.len() > MAX_QUEUED {
            return Err(DtmfError::QueueFull);
        }
        for code in codes {
            // Room was checked above.
            let _ = self.queue.push_back(code);
        }
        if self.next_at.is_none() {
            self.next_at = Some(self.quiet_until.map_or(now, |q| q.max(now)));
        }
        Ok(())
    }

    /// Whether an event is playing (audio toward this side is held back meanwhile).
    pub fn is_active(&self) -> bool {
        self.playing.is_some()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_at
    }

    /// The next event packet due at `now`, and whether it starts a new event (its
    /// timestamp is then taken from the audio clock by the caller).
    pub fn poll(&mut self, now: Instant) -> Option<EventPacket> {
        let due = self.next_at?;
        if due > now {
            return None;
        }
        let mut playing = match self.playing {
            Some(p) => p,
            None => {
                let code = self.queue.pop_front()?;
                Playing {
                    code,
                    started: now,
                    sent: 0,
                    ends: 0,
                }
            }
        };
        let tone_ticks = self.ticks(TONE);
        let elapsed =
            self.ticks(now.saturating_duration_since(playing.started)) + self.ticks(INTERVAL);
        let end = elapsed >= tone_ticks;
        let duration = if end { tone_ticks } else { elapsed };
        let marker = playing.sent == 0;
        playing.sent += 1;
        if end {
            playing.ends += 1;
        }
        let payload = [
            playing.code,
            (if end { 0x80 } else { 0 }) | VOLUME,
            (duration >> 8) as u8,
            duration as u8,
        ];
        if playing.ends >= 3 {
            self.playing = None;
            self.sent_digits += 1;
            let quiet = now + PAUSE;
            self.quiet_until = Some(quiet);
            self.next_at = if self.queue.is_empty() {
                None
            } else {
                Some(quiet)
            };
        } else {
            self.playing = Some(playing);
            self.next_at = Some(now + INTERVAL);
        }
        Some(EventPacket {
            payload,
            marker,
            end,
        })
    }

    fn ticks(&self, d: Duration) -> u32 {
        // At most a few seconds: fits easily.
        (d.as_micros() * u128::from(self.clock_rate) / 1_000_000).min(0xffff) as u32
    }
}

/// Reports each received event once.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// (SSRC, timestamp) of the last event reported.
    last: Option<(u32, u32)>,
    pending: Deque<char, MAX_QUEUED>,
    pub received_digits: u64,
}

impl DtmfReceiver {
    /// One telephone-event packet (its RTP SSRC, timestamp and payload).
    pub fn push(&mut self, ssrc: u32, timestamp: u32, payload: &[u8]) {
        let Some(&code) = payload.first() else {
            return;
        };
        if payload.len() < 4 || self.last == Some((ssrc, timestamp)) {
            return;
        }
        self.last = Some((ssrc, timestamp));
        if let Some(d) = digit(code) {
            self.received_digits += 1;
            // A full queue loses the digit: the reader drains it every event.
            let _ = self.pending.push_back(d);
        }
    }

    pub fn poll(&mut self) -> Option<char> {
        self.pending.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    #[test]
    fn codes_round_trip() {
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(digit(event_code(d).unwrap()), Some(d));
        }
        assert_eq!(event_code('x'), None);
        assert_eq!(digit(16), None);
    }

    #[test]
    fn one_digit_is_five_packets_then_three_ends() {
        let t0 = base();
        let mut s = DtmfSender::new(8000);
        s.queue(t0, "5").unwrap();
        let mut packets = Vec::new();
        let mut now = t0;
        for _ in 0..40 {
            while let Some(p) = s.poll(now) {
                packets.push(p);
            }
            now += Duration::from_millis(10);
        }
        let durations: Vec<u16> = packets
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
        assert!(packets[0].marker && packets[1..].iter().all(|p| !p.marker));
        let ends: Vec<bool> = packets.iter().map(|p| p.end).collect();
        assert_eq!(ends, vec![false, false, false, false, true, true, true]);
        assert!(packets.iter().all(|p| p.payload[0] == 5));
        assert!(!s.is_active());
        assert_eq!(s.sent_digits, 1);
    }

    #[test]
    fn digits_are_spaced_and_bad_input_queues_nothing() {
        let t0 = base();
        let mut s = DtmfSender::new(8000);
        assert_eq!(s.queue(t0, "1x"), Err(DtmfError::BadDigit('x')));
        assert!(s.poll(t0).is_none());
        s.queue(t0, "12").unwrap();
        let mut firsts = Vec::new();
        let mut now = t0;
        for _ in 0..100 {
            while let Some(p) = s.poll(now) {
                if p.marker {
                    firsts.push((p.payload[0], now - t0));
                }
            }
            now += Duration::from_millis(5);
        }
        assert_eq!(firsts.len(), 2);
        assert_eq!(firsts[0].0, 1);
        assert_eq!(firsts[1].0, 2);
        // 5 tone packets + 2 more ends (20 ms apart) + the pause
        assert!(firsts[1].1 >= Duration::from_millis(120 + 60), "{firsts:?}");
        let too_many = "1".repeat(MAX_QUEUED + 1);
        assert_eq!(s.queue(now, &too_many), Err(DtmfError::QueueFull));
    }

    #[test]
    fn the_receiver_reports_each_event_once() {
        let mut r = DtmfReceiver::default();
        for _ in 0..3 {
            r.push(7, 1000, &[1, 0x0a, 0, 160]);
        }
        r.push(7, 1000, &[1, 0x8a, 3, 32]);
        r.push(7, 2000, &[11, 0x0a, 0, 160]);
        r.push(7, 3000, &[16, 0x0a, 0, 160]); // flash: no digit
        r.push(7, 4000, &[2]); // too short
        assert_eq!(r.poll(), Some('1'));
        assert_eq!(r.poll(), Some('#'));
        assert_eq!(r.poll(), None);
    }
}
