//! INVITE client transaction (RFC 3261 §17.1.1, Figure 5, with RFC 6026 §7.2's
//! `Accepted` state).
//!
//! ```text
//!   new ──► Calling ──1xx──► Proceeding ──1xx──┐
//!             │ A: resend, interval doubles   │◄─────────┘
//!             ├──2xx──────────────────────────┼──► Accepted ──M (64·T1)──► Terminated
//!             ├──300-699──────────────────────┴──► Completed ──D (32 s / 0)──► Terminated
//!             │                                     (ACK sent, resent per retransmitted final)
//!             └── B (64·T1, Calling only), transport error ──► Terminated
//! ```
//!
//! The ACK for a non-2xx final is part of this transaction but needs the response's `To`
//! tag, and this machine never parses SIP. So on the first 300–699 it emits
//! [`Event::Response`] then [`Event::NeedAck`]; the TU builds the ACK (§17.1.1.3) and calls
//! [`ClientInviteTransaction::send_ack`], which sends it and keeps it to answer every
//! retransmission of that final response. The ACK for a 2xx is the TU's own business (a
//! new transaction, RFC 6026): in `Accepted` each 2xx is passed up for it.

use super::{
    Event, Events, T1, TIMER_B, TIMER_D, TIMER_M, TransactionError, check_status, due, earliest,
    unreliable_only,
};
use std::time::{Duration, Instant};

/// States of Figure 5 plus RFC 6026 `Accepted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, no response yet (timers A, B).
    Calling,
    /// A provisional response arrived: no more retransmissions, no timeout here.
    Proceeding,
    /// A 300–699 arrived; ACKing its retransmissions (timer D).
    Completed,
    /// A 2xx arrived; passing retransmitted 2xx up (timer M).
    Accepted,
    /// Done.
    Terminated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Nothing,
    Invite,
    Ack,
}

/// An INVITE client transaction.
#[derive(Debug)]
pub struct ClientInviteTransaction {
    state: ClientInviteState,
    reliable: bool,
    invite: Vec<u8>,
    ack: Option<Vec<u8>>,
    ack_needed: bool,
    pending: Pending,
    timer_a: Option<Instant>,
    interval_a: Duration,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
    timer_m: Option<Instant>,
    events: Events,
}

impl ClientInviteTransaction {
    /// Starts the transaction: `invite` is sent at once and retransmitted over unreliable
    /// transports until a response arrives.
    pub fn new(now: Instant, invite: Vec<u8>, reliable: bool) -> Self {
        ClientInviteTransaction {
            state: ClientInviteState::Calling,
            reliable,
            invite,
            ack: None,
            ack_needed: false,
            pending: Pending::Invite,
            timer_a: (!reliable).then(|| now + T1),
            interval_a: T1,
            timer_b: Some(now + TIMER_B),
            timer_d: None,
            timer_m: None,
            events: Events::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// Whether the transaction has terminated (drain `poll_transmit` still: the ACK may be
    /// due).
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// A response matched this transaction (its status code).
    pub fn handle_response(&mut self, now: Instant, status: u16) -> Result<(), TransactionError> {
        let status = check_status(status)?;
        match self.state {
            ClientInviteState::Calling | ClientInviteState::Proceeding => {
                self.timer_a = None;
                self.timer_b = None;
                if self.pending == Pending::Invite {
                    self.pending = Pending::Nothing;
                }
                if status < 200 {
                    self.state = ClientInviteState::Proceeding;
                    self.events.push_repeatable(Event::Response(status));
                } else if status < 300 {
                    self.events.push(Event::Response(status));
                    self.state = ClientInviteState::Accepted;
                    self.timer_m = Some(now + TIMER_M);
                } else {
                    self.events.push(Event::Response(status));
                    self.events.push(Event::NeedAck);
                    self.ack_needed = true;
                    let d = unreliable_only(self.reliable, TIMER_D);
                    if d.is_zero() {
                        self.terminate();
                    } else {
                        self.state = ClientInviteState::Completed;
                        self.timer_d = Some(now + d);
                    }
                }
            }
            ClientInviteState::Completed => {
                // A retransmitted final: ACK it again (once the TU gave the ACK).
                if status >= 300 && self.ack.is_some() {
                    self.pending = Pending::Ack;
                }
            }
            ClientInviteState::Accepted => {
                if (200..300).contains(&status) {
                    self.events.push_repeatable(Event::Response(status));
                }
            }
            ClientInviteState::Terminated => {}
        }
        Ok(())
    }

    /// The ACK for the non-2xx final response announced by [`Event::NeedAck`]: sent now and
    /// resent for each retransmission of that response. Allowed once, also after the
    /// transaction terminated (reliable transports terminate at once).
    pub fn send_ack(&mut self, _now: Instant, ack: Vec<u8>) -> Result<(), TransactionError> {
        if !self.ack_needed || self.ack.is_some() {
            return Err(TransactionError::NoAckNeeded);
        }
        self.ack = Some(ack);
        self.pending = Pending::Ack;
        Ok(())
    }

    /// Fires the timers due at `now`: B (timeout), A (retransmit), D and M (terminate).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            ClientInviteState::Calling => {
                if due(self.timer_b, now) {
                    self.events.push(Event::Timeout);
                    self.terminate();
                } else if due(self.timer_a, now) {
                    self.pending = Pending::Invite;
                    self.interval_a *= 2;
                    self.timer_a = Some(now + self.interval_a);
                }
            }
            ClientInviteState::Completed => {
                if due(self.timer_d, now) {
                    self.terminate();
                }
            }
            ClientInviteState::Accepted => {
                if due(self.timer_m, now) {
                    self.terminate();
                }
            }
            ClientInviteState::Proceeding | ClientInviteState::Terminated => {}
        }
    }

    /// The transport could not send the INVITE (or the ACK).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ClientInviteState::Terminated {
            self.events.push(Event::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        if self.pending == Pending::Invite {
            self.pending = Pending::Nothing;
        }
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
        self.timer_m = None;
        self.events.push(Event::Terminated);
    }

    /// The INVITE (while `Calling`) or the ACK, when sending is due.
    pub fn poll_transmit(&mut self) -> Option<&[u8]> {
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Nothing => None,
            Pending::Invite => Some(&self.invite),
            Pending::Ack => self.ack.as_deref(),
        }
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When `handle_timeout` is next wanted.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_a, self.timer_b, self.timer_d, self.timer_m])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Log, drain, impl_machine, ms, run_until, start};
    use super::*;

    impl_machine!(ClientInviteTransaction);

    #[test]
    fn timer_a_doubles_without_cap_and_timer_b_times_out() {
        let t0 = start();
        let mut tx = ClientInviteTransaction::new(t0, b"INVITE".to_vec(), false);
        let mut log = Log::default();
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
        // 0, then after 0.5, 1, 2, 4, 8, 16 s: the next (32 s later) is past B.
        let expected: Vec<Duration> = [0, 500, 1500, 3500, 7500, 15_500, 31_500]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(log.send_times(), expected);
        assert_eq!(
            log.events,
            vec![(TIMER_B, Event::Timeout), (TIMER_B, Event::Terminated)]
        );
        assert!(tx.is_terminated());
    }

    #[test]
    fn provisional_stops_retransmissions_and_timer_b() {
        let t0 = start();
        let mut tx = ClientInviteTransaction::new(t0, b"INVITE".to_vec(), false);
        let mut log = Log::default();
        run_until(&mut tx, t0, t0 + ms(2000), &mut log);
        assert_eq!(log.send_times(), vec![ms(0), ms(500), ms(1500)]);
        tx.handle_response(t0 + ms(2000), 100).unwrap();
        tx.handle_response(t0 + ms(2100), 180).unwrap();
        drain(&mut tx, t0, t0 + ms(2100), &mut log);
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert_eq!(tx.poll_timeout(), None);
        run_until(&mut tx, t0, t0 + ms(120_000), &mut log);
        assert_eq!(log.sends.len(), 3);
        assert_eq!(
            log.events,
            vec![
                (ms(2100), Event::Response(100)),
                (ms(2100), Event::Response(180))
            ]
        );
        // Still answerable long after timer B would have fired.
        tx.handle_response(t0 + ms(120_000), 200).unwrap();
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        assert_eq!(tx.poll_event(), Some(Event::Response(200)));
    }

    #[test]
    fn non_2xx_final_needs_ack_and_timer_d_absorbs_retransmissions() {
        let t0 = start();
        let mut tx = ClientInviteTransaction::new(t0, b"INVITE".to_vec(), false);
        let mut log = Log::default();
        drain(&mut tx, t0, t0, &mut log);
        tx.handle_response(t0 + ms(300), 180).unwrap();
        tx.handle_response(t0 + ms(400), 486).unwrap();
        // A retransmission before the TU built the ACK: nothing to resend yet.
        tx.handle_response(t0 + ms(450), 486).unwrap();
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), Some(Event::Response(180)));
        assert_eq!(tx.poll_event(), Some(Event::Response(486)));
        assert_eq!(tx.poll_event(), Some(Event::NeedAck));
        assert_eq!(tx.poll_event(), None);
        tx.send_ack(t0 + ms(450), b"ACK".to_vec()).unwrap();
        assert_eq!(
            tx.send_ack(t0 + ms(450), b"ACK2".to_vec()),
            Err(TransactionError::NoAckNeeded)
        );
        drain(&mut tx, t0, t0 + ms(450), &mut log);
        assert_eq!(tx.state(), ClientInviteState::Completed);
        // Each retransmitted final gets the same ACK again, nothing goes up.
        for t in [1400, 3400, 7400] {
            tx.handle_response(t0 + ms(t), 486).unwrap();
            drain(&mut tx, t0, t0 + ms(t), &mut log);
        }
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(400) + TIMER_D));
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
        assert_eq!(
            log.sends,
            vec![
                (ms(0), b"INVITE".to_vec()),
                (ms(450), b"ACK".to_vec()),
                (ms(1400), b"ACK".to_vec()),
                (ms(3400), b"ACK".to_vec()),
                (ms(7400), b"ACK".to_vec()),
            ]
        );
        assert_eq!(log.events, vec![(ms(32_400), Event::Terminated)]);
        // After termination, nothing.
        tx.handle_response(t0 + ms(33_000), 486).unwrap();
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn final_in_calling_stops_timer_a() {
        let t0 = start();
        let mut tx = ClientInviteTransaction::new(t0, b"INVITE".to_vec(), false);
        let mut log = Log::default();
        run_until(&mut tx, t0, t0 + ms(600), &mut log);
        tx.handle_response(t0 + ms(700), 503).unwrap();
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(700) + TIMER_D));
        tx.send_ack(t0 + ms(700), b"ACK".to_vec()).unwrap();
        drain(&mut tx, t0, t0 + ms(700), &mut log);
        run_until(&mut tx, t0, t0 + ms(40_000), &mut log);
        assert_eq!(log.send_times(), vec![ms(0), ms(500), ms(700)]);
        assert_eq!(log.sends[2].1, b"ACK");
        assert_eq!(
            log.events,
            vec![
                (ms(700), Event::Response(503)),
                (ms(700), Event::NeedAck),
                (ms(32_700), Event::Terminated)
            ]
        );
    }

    #[test]
    fn reliable_sends_once_and_terminates_at_once_on_non_2xx() {
        let t0 = start();
        let mut tx = ClientInviteTransaction::new(t0, b"INVITE".to_vec(), true);
        assert_eq!(tx.poll_timeout(), Some(t0 + TIMER_B));
        let mut log = Log::default();
        run_until(&mut tx, t0, t0 + ms(5000), &mut log);
        assert_eq!(log.send_times(), vec![ms(0)]);
        tx.handle_response(t0 + ms(5000), 404).unwrap();
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.poll_event(), Some(Event::Response(404)));
        assert_eq!(tx.poll_event(), Some(Event::NeedAck));
        assert_eq!(tx.poll_event(), Some(Event::Terminated));
        // The ACK still goes out.
        tx.send_ack(t0 + ms(5000), b"ACK".to_vec()).unwrap();
        assert_eq!(tx.poll_transmit(), Some(&b"ACK"[..]));
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn reliable_timer_b_times_out() {
        let t0 = start();
        let mut tx = ClientInviteTransaction::new(t0, b"INVITE".to_vec(), true);
        let mut log = Log::default();
        run_until(&mut tx, t0, t0 + ms(40_000), &mut log);
        assert_eq!(log.send_times(), vec![ms(0)]);
        assert_eq!(
            log.events,
            vec![
                (ms(32_000), Event::Timeout),
                (ms(32_000), Event::Terminated)
            ]
        );
    }

    #[test]
    fn accepted_passes_2xx_retransmissions_up_until_timer_m() {
        let t0 = start();
        let mut tx = ClientInviteTransaction::new(t0, b"INVITE".to_vec(), false);
        let mut log = Log::default();
        drain(&mut tx, t0, t0, &mut log);
        tx.handle_response(t0 + ms(200), 200).unwrap();
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(200) + TIMER_M));
        drain(&mut tx, t0, t0 + ms(200), &mut log);
        tx.handle_response(t0 + ms(700), 200).unwrap();
        // A forked 2xx from another UAS comes up too; stray non-2xx do not.
        tx.handle_response(t0 + ms(800), 202).unwrap();
        tx.handle_response(t0 + ms(900), 180).unwrap();
        tx.handle_response(t0 + ms(900), 486).unwrap();
        drain(&mut tx, t0, t0 + ms(900), &mut log);
        assert_eq!(
            tx.send_ack(t0, b"ACK".to_vec()),
            Err(TransactionError::NoAckNeeded)
        );
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
        // No retransmission of the INVITE once answered, no ACK from the transaction.
        assert_eq!(log.send_times(), vec![ms(0)]);
        assert_eq!(
            log.events,
            vec![
                (ms(200), Event::Response(200)),
                (ms(900), Event::Response(200)),
                (ms(900), Event::Response(202)),
                (ms(32_200), Event::Terminated)
            ]
        );
    }

    #[test]
    fn undrained_invite_is_not_sent_after_an_answer() {
        let t0 = start();
        let mut tx = ClientInviteTransaction::new(t0, b"INVITE".to_vec(), false);
        tx.poll_transmit();
        tx.handle_timeout(t0 + ms(500));
        tx.handle_response(t0 + ms(501), 180).unwrap();
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn transport_error_terminates() {
        let t0 = start();
        let mut tx = ClientInviteTransaction::new(t0, b"INVITE".to_vec(), false);
        tx.handle_transport_error(t0);
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), Some(Event::TransportError));
        assert_eq!(tx.poll_event(), Some(Event::Terminated));
        assert_eq!(tx.poll_timeout(), None);
    }
}
