//! INVITE server transaction (RFC 3261 §17.2.1, Figure 7, with RFC 6026 §7.1's
//! `Accepted` state).
//!
//! ```text
//!   INVITE ──► Proceeding ──TU 1xx (retransmission: resend last 1xx)
//!                │
//!                ├──TU 2xx──► Accepted ──L (64·T1)──► Terminated
//!                │             (INVITE retransmissions absorbed, TU's 2xx retransmissions
//!                │              sent, ACKs passed up)
//!                └──TU 300-699──► Completed ──ACK──► Confirmed ──I (T4 / 0)──► Terminated
//!                                 G: resend, interval min(2·G, T2)  (ACKs absorbed)
//!                                 retransmission: resend the final
//!                                 H (64·T1) ──► Terminated (Timeout)
//! ```
//!
//! RFC 6026 rather than RFC 3261's "2xx terminates at once": with `Accepted`, a
//! retransmitted INVITE arriving after the 2xx is absorbed here instead of looking like a
//! new request. The 2xx itself is retransmitted by the TU (the dialog, §13.3.1.4), which
//! passes each copy to [`ServerInviteTransaction::send_response`].
//!
//! §17.2.1 wants a `100 Trying` within 200 ms when the TU is slow; this machine builds no
//! bytes, so the TU sends 100 at once when it creates the transaction.

use super::{
    Event, Events, T1, T2, TIMER_H, TIMER_I, TIMER_L, TransactionError, check_status, due,
    earliest, unreliable_only,
};
use std::time::{Duration, Instant};

/// States of Figure 7 plus RFC 6026 `Accepted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerInviteState {
    /// INVITE received; provisional responses may be sent.
    Proceeding,
    /// A 300–699 was sent; retransmitting it until the ACK (timers G, H).
    Completed,
    /// The ACK arrived; absorbing ACK retransmissions (timer I).
    Confirmed,
    /// A 2xx was sent (timer L).
    Accepted,
    /// Done.
    Terminated,
}

/// An INVITE server transaction.
#[derive(Debug)]
pub struct ServerInviteTransaction {
    state: ServerInviteState,
    reliable: bool,
    response: Vec<u8>,
    send_response: bool,
    timer_g: Option<Instant>,
    interval_g: Duration,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
    events: Events,
}

impl ServerInviteTransaction {
    /// A transaction for an INVITE just received.
    pub fn new(_now: Instant, reliable: bool) -> Self {
        ServerInviteTransaction {
            state: ServerInviteState::Proceeding,
            reliable,
            response: Vec::new(),
            send_response: false,
            timer_g: None,
            interval_g: T1,
            timer_h: None,
            timer_i: None,
            timer_l: None,
            events: Events::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// Whether the transaction has terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// A retransmission of the INVITE arrived: the last provisional (in `Proceeding`) or
    /// the final (in `Completed`) is sent again; otherwise it is absorbed.
    pub fn handle_request_retransmission(&mut self, _now: Instant) {
        let has_response = !self.response.is_empty();
        if has_response
            && matches!(
                self.state,
                ServerInviteState::Proceeding | ServerInviteState::Completed
            )
        {
            self.send_response = true;
        }
    }

    /// The TU answers: `status` and the response bytes.
    ///
    /// - `Proceeding`: 1xx sent; 2xx sent and → `Accepted`; 300–699 sent and → `Completed`.
    /// - `Accepted`: further 2xx (the TU's retransmissions of its 2xx) are sent.
    /// - anything else: [`TransactionError::InvalidState`].
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        response: Vec<u8>,
    ) -> Result<(), TransactionError> {
        let status = check_status(status)?;
        match self.state {
            ServerInviteState::Proceeding => {
                if (200..300).contains(&status) {
                    self.state = ServerInviteState::Accepted;
                    self.timer_l = Some(now + TIMER_L);
                } else if status >= 300 {
                    self.state = ServerInviteState::Completed;
                    self.timer_h = Some(now + TIMER_H);
                    self.timer_g = (!self.reliable).then(|| now + T1);
                    self.interval_g = T1;
                }
            }
            ServerInviteState::Accepted if (200..300).contains(&status) => {}
            _ => return Err(TransactionError::InvalidState),
        }
        self.response = response;
        self.send_response = true;
        Ok(())
    }

    /// An ACK matched this transaction (same branch: the ACK for a non-2xx final).
    /// `Completed` → `Confirmed`; in `Accepted` it is passed up as [`Event::Ack`];
    /// otherwise absorbed.
    pub fn handle_ack(&mut self, now: Instant) {
        match self.state {
            ServerInviteState::Completed => {
                self.timer_g = None;
                self.timer_h = None;
                self.send_response = false;
                let i = unreliable_only(self.reliable, TIMER_I);
                if i.is_zero() {
                    self.terminate();
                } else {
                    self.state = ServerInviteState::Confirmed;
                    self.timer_i = Some(now + i);
                }
            }
            ServerInviteState::Accepted => self.events.push_repeatable(Event::Ack),
            ServerInviteState::Proceeding
            | ServerInviteState::Confirmed
            | ServerInviteState::Terminated => {}
        }
    }

    /// Fires the timers due at `now`: H (timeout), G (retransmit), I and L (terminate).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            ServerInviteState::Completed => {
                if due(self.timer_h, now) {
                    self.events.push(Event::Timeout);
                    self.terminate();
                } else if due(self.timer_g, now) {
                    self.send_response = true;
                    self.interval_g = (self.interval_g * 2).min(T2);
                    self.timer_g = Some(now + self.interval_g);
                }
            }
            ServerInviteState::Confirmed => {
                if due(self.timer_i, now) {
                    self.terminate();
                }
            }
            ServerInviteState::Accepted => {
                if due(self.timer_l, now) {
                    self.terminate();
                }
            }
            ServerInviteState::Proceeding | ServerInviteState::Terminated => {}
        }
    }

    /// The transport could not send a response.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ServerInviteState::Terminated {
            self.send_response = false;
            self.events.push(Event::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
        self.timer_l = None;
        self.events.push(Event::Terminated);
    }

    /// The last response, when (re)sending is due.
    pub fn poll_transmit(&mut self) -> Option<&[u8]> {
        if std::mem::take(&mut self.send_response) {
            Some(&self.response)
        } else {
            None
        }
    }

    /// The next event for the TU ([`Event::Ack`], [`Event::Timeout`],
    /// [`Event::TransportError`], [`Event::Terminated`]).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When `handle_timeout` is next wanted.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_g, self.timer_h, self.timer_i, self.timer_l])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Log, drain, impl_machine, ms, run_until, start};
    use super::super::{TIMER_H, TIMER_I, TIMER_L};
    use super::*;

    impl_machine!(ServerInviteTransaction);

    #[test]
    fn proceeding_resends_last_provisional_on_retransmission() {
        let t0 = start();
        let mut tx = ServerInviteTransaction::new(t0, false);
        let mut log = Log::default();
        // Before any response the retransmission is absorbed silently.
        tx.handle_request_retransmission(t0);
        drain(&mut tx, t0, t0, &mut log);
        tx.send_response(t0, 100, b"100".to_vec()).unwrap();
        drain(&mut tx, t0, t0, &mut log);
        tx.handle_request_retransmission(t0 + ms(500));
        drain(&mut tx, t0, t0 + ms(500), &mut log);
        tx.send_response(t0 + ms(900), 180, b"180".to_vec())
            .unwrap();
        drain(&mut tx, t0, t0 + ms(900), &mut log);
        tx.handle_request_retransmission(t0 + ms(1500));
        drain(&mut tx, t0, t0 + ms(1500), &mut log);
        // Provisionals are never retransmitted by timer.
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(
            log.sends,
            vec![
                (ms(0), b"100".to_vec()),
                (ms(500), b"100".to_vec()),
                (ms(900), b"180".to_vec()),
                (ms(1500), b"180".to_vec()),
            ]
        );
        assert!(log.events.is_empty());
    }

    #[test]
    fn timer_g_doubles_to_t2_and_timer_h_times_out() {
        let t0 = start();
        let mut tx = ServerInviteTransaction::new(t0, false);
        let mut log = Log::default();
        tx.send_response(t0, 486, b"486".to_vec()).unwrap();
        assert_eq!(tx.state(), ServerInviteState::Completed);
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
        // 0, then after 0.5, 1, 2, 4, 4, ... until H at 32 s.
        let expected: Vec<Duration> = [
            0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(log.send_times(), expected);
        assert_eq!(
            log.events,
            vec![(TIMER_H, Event::Timeout), (TIMER_H, Event::Terminated)]
        );
        assert!(tx.is_terminated());
    }

    #[test]
    fn ack_confirms_and_timer_i_terminates() {
        let t0 = start();
        let mut tx = ServerInviteTransaction::new(t0, false);
        let mut log = Log::default();
        tx.send_response(t0, 100, b"100".to_vec()).unwrap();
        drain(&mut tx, t0, t0, &mut log);
        tx.send_response(t0 + ms(100), 603, b"603".to_vec())
            .unwrap();
        drain(&mut tx, t0, t0 + ms(100), &mut log);
        run_until(&mut tx, t0, t0 + ms(1700), &mut log);
        // The INVITE retransmitted while Completed gets the final again.
        tx.handle_request_retransmission(t0 + ms(1700));
        drain(&mut tx, t0, t0 + ms(1700), &mut log);
        tx.handle_ack(t0 + ms(2000));
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(2000) + TIMER_I));
        // ACK retransmissions and INVITE retransmissions are absorbed.
        tx.handle_ack(t0 + ms(2500));
        tx.handle_request_retransmission(t0 + ms(2600));
        drain(&mut tx, t0, t0 + ms(2600), &mut log);
        assert_eq!(
            tx.send_response(t0 + ms(2600), 500, b"500".to_vec()),
            Err(TransactionError::InvalidState)
        );
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
        assert_eq!(
            log.send_times(),
            vec![ms(0), ms(100), ms(600), ms(1600), ms(1700)]
        );
        assert_eq!(log.sends[4].1, b"603");
        assert_eq!(log.events, vec![(ms(7000), Event::Terminated)]);
    }

    #[test]
    fn reliable_no_timer_g_and_ack_terminates_at_once() {
        let t0 = start();
        let mut tx = ServerInviteTransaction::new(t0, true);
        let mut log = Log::default();
        tx.send_response(t0, 480, b"480".to_vec()).unwrap();
        drain(&mut tx, t0, t0, &mut log);
        assert_eq!(tx.poll_timeout(), Some(t0 + TIMER_H));
        run_until(&mut tx, t0, t0 + ms(10_000), &mut log);
        assert_eq!(log.send_times(), vec![ms(0)]);
        tx.handle_ack(t0 + ms(10_000));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(Event::Terminated));
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn reliable_timer_h_still_runs() {
        let t0 = start();
        let mut tx = ServerInviteTransaction::new(t0, true);
        let mut log = Log::default();
        tx.send_response(t0, 480, b"480".to_vec()).unwrap();
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
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
    fn accepted_absorbs_invite_sends_tu_2xx_and_passes_acks_up_until_timer_l() {
        let t0 = start();
        let mut tx = ServerInviteTransaction::new(t0, false);
        let mut log = Log::default();
        tx.send_response(t0, 180, b"180".to_vec()).unwrap();
        drain(&mut tx, t0, t0, &mut log);
        tx.send_response(t0 + ms(1000), 200, b"200".to_vec())
            .unwrap();
        drain(&mut tx, t0, t0 + ms(1000), &mut log);
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(1000) + TIMER_L));
        // The INVITE retransmission is absorbed: no resend by the transaction.
        tx.handle_request_retransmission(t0 + ms(1200));
        drain(&mut tx, t0, t0 + ms(1200), &mut log);
        // The TU retransmits its 2xx (T1 later) through the transaction.
        tx.send_response(t0 + ms(1500), 200, b"200".to_vec())
            .unwrap();
        drain(&mut tx, t0, t0 + ms(1500), &mut log);
        assert_eq!(
            tx.send_response(t0 + ms(1500), 486, b"486".to_vec()),
            Err(TransactionError::InvalidState)
        );
        assert_eq!(
            tx.send_response(t0 + ms(1500), 180, b"180".to_vec()),
            Err(TransactionError::InvalidState)
        );
        tx.handle_ack(t0 + ms(1600));
        drain(&mut tx, t0, t0 + ms(1600), &mut log);
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
        assert_eq!(
            log.sends,
            vec![
                (ms(0), b"180".to_vec()),
                (ms(1000), b"200".to_vec()),
                (ms(1500), b"200".to_vec()),
            ]
        );
        assert_eq!(
            log.events,
            vec![(ms(1600), Event::Ack), (ms(33_000), Event::Terminated)]
        );
    }

    #[test]
    fn ack_before_final_is_ignored_and_transport_error_terminates() {
        let t0 = start();
        let mut tx = ServerInviteTransaction::new(t0, false);
        tx.handle_ack(t0);
        assert_eq!(tx.state(), ServerInviteState::Proceeding);
        assert_eq!(tx.poll_event(), None);
        assert_eq!(
            tx.send_response(t0, 700, Vec::new()),
            Err(TransactionError::InvalidStatus(700))
        );
        tx.send_response(t0, 500, b"500".to_vec()).unwrap();
        tx.handle_transport_error(t0);
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), Some(Event::TransportError));
        assert_eq!(tx.poll_event(), Some(Event::Terminated));
        assert_eq!(tx.poll_timeout(), None);
    }
}
