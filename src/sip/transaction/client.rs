//! Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).
//!
//! ```text
//!   new ──► Trying ──1xx──► Proceeding
//!             │  E: resend, interval min(2·E, T2)   E: resend, interval T2
//!             ├──200-699──► Completed ◄──200-699──┤
//!             │              K (T4 / 0) ──► Terminated
//!             └── F (64·T1), transport error ──► Terminated (Timeout / TransportError)
//! ```

use super::{
    Event, Events, T1, T2, TIMER_F, TIMER_K, TransactionError, check_status, due, earliest,
    unreliable_only,
};
use std::time::{Duration, Instant};

/// States of Figure 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Request sent, no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; absorbing its retransmissions (timer K).
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE client transaction.
#[derive(Debug)]
pub struct ClientTransaction {
    state: ClientState,
    reliable: bool,
    request: Vec<u8>,
    send_request: bool,
    timer_e: Option<Instant>,
    interval_e: Duration,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
    events: Events,
}

impl ClientTransaction {
    /// Starts the transaction: `request` is sent at once (drain `poll_transmit`) and
    /// retransmitted over unreliable transports.
    pub fn new(now: Instant, request: Vec<u8>, reliable: bool) -> Self {
        ClientTransaction {
            state: ClientState::Trying,
            reliable,
            request,
            send_request: true,
            timer_e: (!reliable).then(|| now + T1),
            interval_e: T1,
            timer_f: Some(now + TIMER_F),
            timer_k: None,
            events: Events::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// Whether the transaction has terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// A response matched this transaction (its status code). Provisional and first final
    /// responses come out as [`Event::Response`]; retransmitted finals are absorbed.
    pub fn handle_response(&mut self, now: Instant, status: u16) -> Result<(), TransactionError> {
        let status = check_status(status)?;
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {
                if status < 200 {
                    self.state = ClientState::Proceeding;
                    self.events.push_repeatable(Event::Response(status));
                } else {
                    self.events.push(Event::Response(status));
                    self.timer_e = None;
                    self.timer_f = None;
                    self.send_request = false;
                    let k = unreliable_only(self.reliable, TIMER_K);
                    if k.is_zero() {
                        self.terminate();
                    } else {
                        self.state = ClientState::Completed;
                        self.timer_k = Some(now + k);
                    }
                }
            }
            ClientState::Completed | ClientState::Terminated => {}
        }
        Ok(())
    }

    /// Fires the timers due at `now`: F (timeout), E (retransmit), K (terminate).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {
                if due(self.timer_f, now) {
                    self.events.push(Event::Timeout);
                    self.terminate();
                } else if due(self.timer_e, now) {
                    self.send_request = true;
                    self.interval_e = if self.state == ClientState::Trying {
                        (self.interval_e * 2).min(T2)
                    } else {
                        T2
                    };
                    self.timer_e = Some(now + self.interval_e);
                }
            }
            ClientState::Completed => {
                if due(self.timer_k, now) {
                    self.terminate();
                }
            }
            ClientState::Terminated => {}
        }
    }

    /// The transport could not send the request.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ClientState::Terminated {
            self.events.push(Event::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.send_request = false;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
        self.events.push(Event::Terminated);
    }

    /// The request bytes, when (re)sending is due.
    pub fn poll_transmit(&mut self) -> Option<&[u8]> {
        if std::mem::take(&mut self.send_request) {
            Some(&self.request)
        } else {
            None
        }
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When `handle_timeout` is next wanted.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e, self.timer_f, self.timer_k])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Log, drain, impl_machine, ms, run_until, start};
    use super::super::{T4, TIMER_F};
    use super::*;

    impl_machine!(ClientTransaction);

    #[test]
    fn timer_e_doubles_to_t2_and_timer_f_times_out_at_64_t1() {
        let t0 = start();
        let mut tx = ClientTransaction::new(t0, b"OPTIONS".to_vec(), false);
        let mut log = Log::default();
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
        // Sent at 0, then after 0.5, 1, 2, 4, 4, 4 ... s until F at 32 s.
        let expected: Vec<Duration> = [
            0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(log.send_times(), expected);
        assert!(log.sends.iter().all(|(_, b)| b == b"OPTIONS"));
        assert_eq!(
            log.events,
            vec![(TIMER_F, Event::Timeout), (TIMER_F, Event::Terminated)]
        );
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let t0 = start();
        let mut tx = ClientTransaction::new(t0, b"REGISTER".to_vec(), false);
        let mut log = Log::default();
        run_until(&mut tx, t0, t0 + ms(1000), &mut log);
        assert_eq!(log.send_times(), vec![ms(0), ms(500)]);
        tx.handle_response(t0 + ms(1000), 100).unwrap();
        drain(&mut tx, t0, t0 + ms(1000), &mut log);
        assert_eq!(tx.state(), ClientState::Proceeding);
        // E was running with 1 s (due at 1.5 s); then T2 each time.
        run_until(&mut tx, t0, t0 + ms(14_000), &mut log);
        assert_eq!(
            log.send_times(),
            vec![ms(0), ms(500), ms(1500), ms(5500), ms(9500), ms(13_500)]
        );
        assert_eq!(log.events, vec![(ms(1000), Event::Response(100))]);
        // A final response stops everything; K = T4.
        tx.handle_response(t0 + ms(14_000), 200).unwrap();
        drain(&mut tx, t0, t0 + ms(14_000), &mut log);
        assert_eq!(tx.state(), ClientState::Completed);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(14_000) + T4));
        run_until(&mut tx, t0, t0 + ms(60_000), &mut log);
        assert_eq!(log.sends.len(), 6);
        assert_eq!(
            log.events[1..],
            [
                (ms(14_000), Event::Response(200)),
                (ms(19_000), Event::Terminated)
            ]
        );
    }

    #[test]
    fn completed_absorbs_retransmitted_finals_until_timer_k() {
        let t0 = start();
        let mut tx = ClientTransaction::new(t0, b"BYE".to_vec(), false);
        let mut log = Log::default();
        drain(&mut tx, t0, t0, &mut log);
        tx.handle_response(t0 + ms(100), 481).unwrap();
        tx.handle_response(t0 + ms(600), 481).unwrap();
        tx.handle_response(t0 + ms(700), 200).unwrap();
        drain(&mut tx, t0, t0 + ms(700), &mut log);
        assert_eq!(log.events, vec![(ms(700), Event::Response(481))]);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(100) + TIMER_K));
        tx.handle_timeout(t0 + ms(5099));
        assert!(!tx.is_terminated());
        tx.handle_timeout(t0 + ms(5100));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(Event::Terminated));
        assert_eq!(log.sends.len(), 1);
    }

    #[test]
    fn reliable_sends_once_and_terminates_on_final() {
        let t0 = start();
        let mut tx = ClientTransaction::new(t0, b"OPTIONS".to_vec(), true);
        assert_eq!(tx.poll_timeout(), Some(t0 + TIMER_F));
        let mut log = Log::default();
        run_until(&mut tx, t0, t0 + ms(10_000), &mut log);
        assert_eq!(log.send_times(), vec![ms(0)]);
        tx.handle_response(t0 + ms(10_000), 200).unwrap();
        drain(&mut tx, t0, t0 + ms(10_000), &mut log);
        assert!(tx.is_terminated());
        assert_eq!(
            log.events,
            vec![
                (ms(10_000), Event::Response(200)),
                (ms(10_000), Event::Terminated)
            ]
        );
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn reliable_timer_f_times_out() {
        let t0 = start();
        let mut tx = ClientTransaction::new(t0, b"OPTIONS".to_vec(), true);
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
    fn transport_error_and_bad_status() {
        let t0 = start();
        let mut tx = ClientTransaction::new(t0, b"OPTIONS".to_vec(), false);
        assert_eq!(
            tx.handle_response(t0, 99),
            Err(TransactionError::InvalidStatus(99))
        );
        assert_eq!(
            tx.handle_response(t0, 700),
            Err(TransactionError::InvalidStatus(700))
        );
        assert_eq!(tx.state(), ClientState::Trying);
        tx.handle_transport_error(t0);
        tx.handle_transport_error(t0);
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), Some(Event::TransportError));
        assert_eq!(tx.poll_event(), Some(Event::Terminated));
        assert_eq!(tx.poll_event(), None);
        // Late responses after termination are ignored.
        tx.handle_response(t0, 200).unwrap();
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn late_timeout_call_fires_f_before_e() {
        let t0 = start();
        let mut tx = ClientTransaction::new(t0, b"OPTIONS".to_vec(), false);
        tx.poll_transmit();
        tx.handle_timeout(t0 + ms(40_000));
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_event(), Some(Event::Timeout));
    }
}
