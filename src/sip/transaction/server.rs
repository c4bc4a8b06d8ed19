//! Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
//!
//! ```text
//!   request ──► Trying ──TU 1xx──► Proceeding ──TU 1xx──┐
//!   (retransmissions      │          ▲ (retransmission: resend last 1xx)
//!    absorbed)            │          └────────────────────┘
//!                         └──TU 200-699──► Completed ◄──TU 200-699── Proceeding
//!                              (retransmission: resend the final)
//!                              J (64·T1 / 0) ──► Terminated
//! ```

use super::{Event, Events, TIMER_J, TransactionError, check_status, due, unreliable_only};
use std::time::Instant;

/// States of Figure 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// Request received, nothing sent yet.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// The final response was sent; answering retransmissions with it (timer J).
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug)]
pub struct ServerTransaction {
    state: ServerState,
    reliable: bool,
    response: Vec<u8>,
    send_response: bool,
    timer_j: Option<Instant>,
    events: Events,
}

impl ServerTransaction {
    /// A transaction for a request just received (over a reliable transport or not).
    pub fn new(_now: Instant, reliable: bool) -> Self {
        ServerTransaction {
            state: ServerState::Trying,
            reliable,
            response: Vec::new(),
            send_response: false,
            timer_j: None,
            events: Events::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// Whether the transaction has terminated (drain `poll_transmit` still: over reliable
    /// transports the final response is due at the moment it terminates).
    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// A retransmission of the request arrived: absorbed, and the last response (if any)
    /// is sent again.
    pub fn handle_request_retransmission(&mut self, _now: Instant) {
        if matches!(self.state, ServerState::Proceeding | ServerState::Completed) {
            self.send_response = true;
        }
    }

    /// The TU answers: `status` and the response bytes. A provisional keeps the
    /// transaction open; a final completes it. After a final, any response is
    /// [`TransactionError::InvalidState`].
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        response: Vec<u8>,
    ) -> Result<(), TransactionError> {
        let status = check_status(status)?;
        if !matches!(self.state, ServerState::Trying | ServerState::Proceeding) {
            return Err(TransactionError::InvalidState);
        }
        self.response = response;
        self.send_response = true;
        if status < 200 {
            self.state = ServerState::Proceeding;
        } else {
            let j = unreliable_only(self.reliable, TIMER_J);
            if j.is_zero() {
                self.terminate();
            } else {
                self.state = ServerState::Completed;
                self.timer_j = Some(now + j);
            }
        }
        Ok(())
    }

    /// Fires timer J when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == ServerState::Completed && due(self.timer_j, now) {
            self.terminate();
        }
    }

    /// The transport could not send a response.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ServerState::Terminated {
            self.send_response = false;
            self.events.push(Event::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.timer_j = None;
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

    /// The next event for the TU ([`Event::TransportError`], [`Event::Terminated`]).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When `handle_timeout` is next wanted.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Log, drain, impl_machine, ms, run_until, start};
    use super::*;

    impl_machine!(ServerTransaction);

    #[test]
    fn trying_absorbs_retransmissions_silently() {
        let t0 = start();
        let mut tx = ServerTransaction::new(t0, false);
        tx.handle_request_retransmission(t0 + ms(500));
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), None);
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.state(), ServerState::Trying);
    }

    #[test]
    fn proceeding_resends_last_provisional_then_completed_resends_final_until_j() {
        let t0 = start();
        let mut tx = ServerTransaction::new(t0, false);
        let mut log = Log::default();
        tx.send_response(t0 + ms(10), 100, b"100".to_vec()).unwrap();
        drain(&mut tx, t0, t0 + ms(10), &mut log);
        assert_eq!(tx.state(), ServerState::Proceeding);
        tx.handle_request_retransmission(t0 + ms(500));
        drain(&mut tx, t0, t0 + ms(500), &mut log);
        tx.send_response(t0 + ms(800), 183, b"183".to_vec())
            .unwrap();
        drain(&mut tx, t0, t0 + ms(800), &mut log);
        tx.handle_request_retransmission(t0 + ms(1500));
        drain(&mut tx, t0, t0 + ms(1500), &mut log);
        tx.send_response(t0 + ms(2000), 200, b"200".to_vec())
            .unwrap();
        drain(&mut tx, t0, t0 + ms(2000), &mut log);
        assert_eq!(tx.state(), ServerState::Completed);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(2000) + TIMER_J));
        for t in [3500, 7500, 33_999] {
            tx.handle_request_retransmission(t0 + ms(t));
            drain(&mut tx, t0, t0 + ms(t), &mut log);
        }
        assert_eq!(
            tx.send_response(t0 + ms(3000), 500, b"500".to_vec()),
            Err(TransactionError::InvalidState)
        );
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
        assert_eq!(
            log.sends,
            vec![
                (ms(10), b"100".to_vec()),
                (ms(500), b"100".to_vec()),
                (ms(800), b"183".to_vec()),
                (ms(1500), b"183".to_vec()),
                (ms(2000), b"200".to_vec()),
                (ms(3500), b"200".to_vec()),
                (ms(7500), b"200".to_vec()),
                (ms(33_999), b"200".to_vec()),
            ]
        );
        assert_eq!(log.events, vec![(ms(34_000), Event::Terminated)]);
        // Terminated: retransmissions are no longer this transaction's.
        tx.handle_request_retransmission(t0 + ms(34_001));
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn final_from_trying_and_exact_timer_j() {
        let t0 = start();
        let mut tx = ServerTransaction::new(t0, false);
        tx.send_response(t0, 404, b"404".to_vec()).unwrap();
        assert_eq!(tx.poll_transmit(), Some(&b"404"[..]));
        tx.handle_timeout(t0 + TIMER_J - ms(1));
        assert!(!tx.is_terminated());
        tx.handle_timeout(t0 + TIMER_J);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(Event::Terminated));
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn reliable_terminates_at_once_but_still_sends_the_final() {
        let t0 = start();
        let mut tx = ServerTransaction::new(t0, true);
        tx.send_response(t0, 100, b"100".to_vec()).unwrap();
        assert_eq!(tx.poll_transmit(), Some(&b"100"[..]));
        tx.send_response(t0 + ms(5), 200, b"200".to_vec()).unwrap();
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.poll_transmit(), Some(&b"200"[..]));
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), Some(Event::Terminated));
    }

    #[test]
    fn bad_status_and_transport_error() {
        let t0 = start();
        let mut tx = ServerTransaction::new(t0, false);
        assert_eq!(
            tx.send_response(t0, 42, Vec::new()),
            Err(TransactionError::InvalidStatus(42))
        );
        assert_eq!(tx.state(), ServerState::Trying);
        tx.send_response(t0, 200, b"200".to_vec()).unwrap();
        tx.handle_transport_error(t0);
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), Some(Event::TransportError));
        assert_eq!(tx.poll_event(), Some(Event::Terminated));
        assert_eq!(tx.poll_timeout(), None);
    }
}
