//! The SIP side: one user agent that registers at srgate (digest, as a `[users]` phone
//! does), answers every INVITE with PCMU, places calls to app users when told
//! ([`Phone::dial`]: INVITE, the 407 answered with digest, ACK), and echoes each RTP
//! packet back to where it came from. It runs on its own thread with a mio loop over its
//! SIP socket and one RTP socket that every call's SDP names: srgate (and the reflector)
//! send each call from a port of its own, so the echo to a datagram's source finds its
//! call without a table, and one `recvmmsg` + one `sendmmsg` carry a wake's packets of
//! every call. Without a gateway it only echoes (the reflector run).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use srgate::io::sys::{RecvBatch, SendBatch, set_socket_buffers};

const SIP: Token = Token(usize::MAX - 1);
const WAKE: Token = Token(usize::MAX - 2);
const RTP: Token = Token(usize::MAX - 3);
/// Datagrams per `recvmmsg` / `sendmmsg`, and the room for one.
const BATCH: usize = 64;
const SLOT: usize = 2048;
/// Kernel buffer asked for the RTP socket (every call's packets arrive on it).
const RTP_BUFFER: usize = 4 << 20;

/// Counters the phone thread publishes.
#[derive(Default)]
pub struct PhoneCounters {
    pub registered: AtomicBool,
    pub calls_answered: AtomicU64,
    pub calls_ended: AtomicU64,
    pub rtp_echoed: AtomicU64,
    /// Echoes the RTP socket refused (its send buffer full).
    pub send_drops: AtomicU64,
    pub cpu_ns: AtomicU64,
    /// Calls the phone placed ([`Phone::dial`]), answered (200), and refused (a final
    /// answer above 299 other than the first 407).
    pub calls_placed: AtomicU64,
    pub calls_connected: AtomicU64,
    pub calls_refused: AtomicU64,
    /// INVITE (the first, before the challenge) to 200, per answered call placed.
    pub setups: Mutex<Vec<Duration>>,
    /// The first few refusals (status lines), for the report.
    pub refusals: Mutex<Vec<String>>,
}

pub struct Phone {
    pub counters: Arc<PhoneCounters>,
    /// The RTP socket's address (every call's media, the reflector's too).
    pub rtp_addr: SocketAddr,
    dials: Sender<String>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// A registration: srgate's SIP address, the user and its password.
#[derive(Clone)]
pub struct Account {
    pub gateway: SocketAddr,
    pub user: String,
    pub password: String,
}

impl Phone {
    /// Starts the phone: registered at `account` when given.
    pub fn start(account: Option<Account>) -> io::Result<Phone> {
        let counters = Arc::new(PhoneCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (dials, dial_rx) = channel();
        let mut ua = Ua::new(account, counters.clone(), dial_rx)?;
        let waker = Arc::new(Waker::new(ua.poll.registry(), WAKE)?);
        let rtp_addr = ua.rtp_addr;
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("load-phone".into())
            .spawn(move || ua.run(&thread_stop))?;
        Ok(Phone {
            counters,
            rtp_addr,
            dials,
            waker,
            stop,
            thread: Some(thread),
        })
    }

    /// Waits up to `within` for the registration's 200.
    pub fn wait_registered(&self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.counters.registered.load(Ordering::Relaxed) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Calls app user `callee` at the gateway (from the registered account).
    pub fn dial(&self, callee: &str) -> io::Result<()> {
        self.dials
            .send(callee.to_string())
            .map_err(|_| io::Error::other("the phone thread is gone"))?;
        self.waker.wake()
    }

    /// Calls placed and not answered or refused yet.
    pub fn dials_pending(&self) -> u64 {
        let c = &self.counters;
        c.calls_placed
            .load(Ordering::Relaxed)
            .saturating_sub(c.calls_connected.load(Ordering::Relaxed))
            .saturating_sub(c.calls_refused.load(Ordering::Relaxed))
    }

    /// CPU nanoseconds of the phone's thread so far (read every 100 ms: up to 100 ms behind).
    pub fn cpu_ns(&self) -> u64 {
        self.counters.cpu_ns.load(Ordering::Relaxed)
    }

    /// RTP packets echoed so far.
    pub fn echoed(&self) -> u64 {
        self.counters.rtp_echoed.load(Ordering::Relaxed)
    }

    /// Echoes its socket refused so far (the generator's own loss).
    pub fn send_drops(&self) -> u64 {
        self.counters.send_drops.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the phone thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Dialog {
    /// The 200 OK, sent again when the INVITE is.
    answer: String,
}

/// A call the phone placed, by Call-ID.
struct OutCall {
    callee: String,
    /// The INVITE's CSeq number and Via branch (1, then 2 with credentials).
    cseq: u32,
    branch: String,
    first_sent: Instant,
    /// The ACK of the 200, once answered (sent again for each 200 that comes again).
    ack: Option<String>,
}

struct Ua {
    poll: Poll,
    dials: Receiver<String>,
    out: HashMap<String, OutCall>,
    sip: Option<UdpSocket>,
    account: Option<Account>,
    counters: Arc<PhoneCounters>,
    rtp: UdpSocket,
    rtp_addr: SocketAddr,
    dialogs: HashMap<String, Dialog>,
    cseq: u32,
    call_id: String,
    tag: u32,
}

impl Ua {
    fn new(
        account: Option<Account>,
        counters: Arc<PhoneCounters>,
        dials: Receiver<String>,
    ) -> io::Result<Ua> {
        let poll = Poll::new()?;
        let sip = match &account {
            Some(a) => {
                let bind: SocketAddr = if a.gateway.is_ipv4() {
                    "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())
                } else {
                    "[::1]:0".parse().unwrap_or_else(|_| unreachable!())
                };
                let mut s = UdpSocket::bind(bind)?;
                poll.registry().register(&mut s, SIP, Interest::READABLE)?;
                Some(s)
            }
            None => None,
        };
        let mut rtp = UdpSocket::bind("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()))?;
        // ~80 ms of 1 000 calls' packets (the kernel reports twice the data it holds)
        let granted = set_socket_buffers(rtp.as_raw_fd(), RTP_BUFFER)?;
        if granted < RTP_BUFFER / 2 {
            eprintln!(
                "   (phone: the RTP socket's buffers are capped at {} KiB, asked {} KiB: a \
                 phone that falls behind drops packets, counted as the generator's own; \
                 raise net.core.rmem_max and wmem_max)",
                granted / 2048,
                RTP_BUFFER / 1024
            );
        }
        poll.registry()
            .register(&mut rtp, RTP, Interest::READABLE)?;
        let rtp_addr = rtp.local_addr()?;
        Ok(Ua {
            poll,
            dials,
            out: HashMap::new(),
            sip,
            account,
            counters,
            rtp,
            rtp_addr,
            dialogs: HashMap::new(),
            cseq: 0,
            call_id: format!("load-reg-{}", std::process::id()),
            tag: 1,
        })
    }

    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let tid = crate::procfs::thread_id();
        if self.account.is_some() {
            self.register(None)?;
        }
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 65_536];
        // one wake's RTP in and echoes out (a read that gave less than a batch emptied the
        // socket, which saves the read that would only say so); made here: a batch stays
        // on the thread that made it
        let (mut rtp_in, mut rtp_out) = (RecvBatch::new(BATCH, SLOT), SendBatch::new(BATCH, SLOT));
        let mut last_register = Instant::now();
        let mut last_cpu_read = Instant::now();
        // bounded by the stop flag, checked at least every 50 ms
        while !stop.load(Ordering::Relaxed) {
            self.poll
                .poll(&mut events, Some(Duration::from_millis(50)))?;
            for event in &events {
                match event.token() {
                    SIP => self.read_sip(&mut buf)?,
                    RTP => self.echo(&mut rtp_in, &mut rtp_out),
                    _ => {}
                }
            }
            // bounded: what was asked since the last turn, at most 10 000
            for _ in 0..10_000 {
                let Ok(callee) = self.dials.try_recv() else {
                    break;
                };
                self.place(callee)?;
            }
            // not registered yet: try again every 2 s; registered (Expires 3600): refresh
            // every 25 minutes, so a soak of hours keeps its registration
            let registered = self.counters.registered.load(Ordering::Relaxed);
            let every = if registered {
                Duration::from_secs(1500)
            } else {
                Duration::from_secs(2)
            };
            if self.account.is_some() && last_register.elapsed() > every {
                last_register = Instant::now();
                self.register(None)?;
            }
            // read from /proc at most every 100 ms (an open, read and close each time)
            if last_cpu_read.elapsed() >= Duration::from_millis(100) {
                last_cpu_read = Instant::now();
                self.counters
                    .cpu_ns
                    .store(crate::procfs::thread_cpu_ns(tid), Ordering::Relaxed);
            }
        }
        self.counters
            .cpu_ns
            .store(crate::procfs::thread_cpu_ns(tid), Ordering::Relaxed);
        Ok(())
    }

    /// Echoes what waits on the RTP socket, each datagram to its source.
    fn echo(&mut self, rx: &mut RecvBatch, tx: &mut SendBatch) {
        let fd = self.rtp.as_raw_fd();
        let (mut echoed, mut dropped) = (0, 0);
        // bounded: the socket's receive queue, at most 1 000 batches per wake
        for _ in 0..1000 {
            if rx.recv(fd).is_err() {
                break;
            }
            for i in 0..rx.len() {
                let Some((Some(from), data, false)) = rx.get(i) else {
                    continue;
                };
                let n = data.len().min(SLOT);
                let out = &mut tx.slot()[..n];
                out.copy_from_slice(&data[..n]);
                // a phone sends its own stream: RTP goes back under another SSRC
                // (RTCP, payload types 72-76 with the marker bit, as it came)
                if n >= 12 && out[0] >> 6 == 2 && !(72..=76).contains(&(out[1] & 0x7f)) {
                    out[8] ^= 0x5a;
                }
                tx.commit(from, n);
                if tx.is_full() {
                    let (sent, lost) = tx.flush(fd);
                    (echoed, dropped) = (echoed + sent, dropped + lost);
                }
            }
            if rx.drained() {
                break;
            }
        }
        if !tx.is_empty() {
            let (sent, lost) = tx.flush(fd);
            (echoed, dropped) = (echoed + sent, dropped + lost);
        }
        let c = &self.counters;
        c.rtp_echoed.fetch_add(echoed as u64, Ordering::Relaxed);
        c.send_drops.fetch_add(dropped as u64, Ordering::Relaxed);
    }

    fn send_sip(&self, text: &str, to: SocketAddr) -> io::Result<()> {
        if let Some(s) = &self.sip {
            match s.send_to(text.as_bytes(), to) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn local(&self) -> SocketAddr {
        self.sip
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// REGISTER, with an Authorization answering `challenge` when given.
    fn register(&mut self, challenge: Option<&str>) -> io::Result<()> {
        let Some(a) = self.account.clone() else {
            return Ok(());
        };
        self.cseq += 1;
        let local = self.local();
        let uri = format!("sip:{}", a.gateway);
        let mut auth = String::new();
        if let Some(c) = challenge {
            auth = authorization(c, &a.user, &a.password, "REGISTER", &uri);
        }
        let text = format!(
            "REGISTER {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq}x{pid};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{gw}>;tag=reg{pid}\r\n\
             To: <sip:{user}@{gw}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{local}>\r\n\
             Expires: 3600\r\n\
             {auth}\
             User-Agent: srgate-load\r\n\
             Content-Length: 0\r\n\r\n",
            cseq = self.cseq,
            pid = std::process::id(),
            user = a.user,
            gw = a.gateway,
            call_id = self.call_id,
        );
        self.send_sip(&text, a.gateway)
    }

    /// Places a call to app user `callee`: a fresh Call-ID, the INVITE (PCMU) without
    /// credentials; the 407 brings the second one.
    fn place(&mut self, callee: String) -> io::Result<()> {
        let Some(gw) = self.account.as_ref().map(|a| a.gateway) else {
            return Ok(());
        };
        self.tag += 1;
        let call_id = format!("load-out-{}-{}", std::process::id(), self.tag);
        let call = OutCall {
            callee,
            cseq: 1,
            branch: format!("z9hG4bKout{}x1", self.tag),
            first_sent: Instant::now(),
            ack: None,
        };
        let text = self.invite_text(&call_id, &call, "");
        self.out.insert(call_id, call);
        self.counters.calls_placed.fetch_add(1, Ordering::Relaxed);
        self.send_sip(&text, gw)
    }

    /// The INVITE of `call` with `auth` (a credentials header line, or empty).
    fn invite_text(&self, call_id: &str, call: &OutCall, auth: &str) -> String {
        let Some(a) = &self.account else {
            return String::new();
        };
        let local = self.local();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
            ip = self.rtp_addr.ip(),
            port = self.rtp_addr.port(),
        );
        format!(
            "INVITE sip:{callee}@{gw} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{gw}>;tag=out{call_id}\r\n\
             To: <sip:{callee}@{gw}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} INVITE\r\n\
             Contact: <sip:{user}@{local}>\r\n\
             {auth}\
             User-Agent: srgate-load\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            callee = call.callee,
            gw = a.gateway,
            branch = call.branch,
            user = a.user,
            cseq = call.cseq,
            len = sdp.len(),
        )
    }

    /// The ACK of a final answer `response` to `call`'s INVITE: for a 2xx a new
    /// transaction (its own branch) in the dialog — to the answer's Contact, through the
    /// proxies that recorded their route (RFC 3261 §12.1.2, §13.2.2.4); for a refusal the
    /// INVITE's (§17.1.1.3).
    fn ack_text(&self, call_id: &str, call: &OutCall, response: &str, success: bool) -> String {
        let gw = self.account.as_ref().map_or(self.local(), |a| a.gateway);
        let mut target = format!("sip:{}@{gw}", call.callee);
        let mut routes = String::new();
        let branch = if success {
            if let Some(contact) = header(response, "Contact").and_then(uri_of) {
                target = contact.to_string();
            }
            for route in route_set(response).iter().rev() {
                let _ = write!(routes, "Route: {route}\r\n");
            }
            format!("{}ack", call.branch)
        } else {
            call.branch.clone()
        };
        format!(
            "ACK {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             {routes}\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} ACK\r\n\
             Content-Length: 0\r\n\r\n",
            local = self.local(),
            from = header(response, "From").unwrap_or(""),
            to = header(response, "To").unwrap_or(""),
            cseq = call.cseq,
        )
    }

    /// A response to one of the phone's INVITEs.
    fn on_invite_response(&mut self, code: u16, text: &str, from: SocketAddr) -> io::Result<()> {
        let call_id = header(text, "Call-ID").unwrap_or("").to_string();
        let Some(call) = self.out.get(&call_id) else {
            return Ok(());
        };
        let cseq_ok = header(text, "CSeq")
            .and_then(|c| c.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
            == Some(call.cseq);
        if code < 200 || !cseq_ok {
            return Ok(());
        }
        if (200..300).contains(&code) {
            if let Some(ack) = &call.ack {
                // the 200 again: our ACK was lost
                return self.send_sip(ack, from);
            }
            let ack = self.ack_text(&call_id, call, text, true);
            let setup = call.first_sent.elapsed();
            if let Ok(mut s) = self.counters.setups.lock() {
                s.push(setup);
            }
            self.counters
                .calls_connected
                .fetch_add(1, Ordering::Relaxed);
            self.send_sip(&ack, from)?;
            if let Some(call) = self.out.get_mut(&call_id) {
                call.ack = Some(ack);
            }
            return Ok(());
        }
        let ack = self.ack_text(&call_id, call, text, false);
        self.send_sip(&ack, from)?;
        if code == 407 && call.cseq == 1 {
            let challenge = header(text, "Proxy-Authenticate").unwrap_or("").to_string();
            let (user, password, gw) = match &self.account {
                Some(a) => (a.user.clone(), a.password.clone(), a.gateway),
                None => return Ok(()),
            };
            // the INVITE's request URI
            let uri = format!("sip:{}@{}", call.callee, gw);
            let auth = authorization(&challenge, &user, &password, "INVITE", &uri).replacen(
                "Authorization:",
                "Proxy-Authorization:",
                1,
            );
            self.tag += 1;
            let tag = self.tag;
            let Some(call) = self.out.get_mut(&call_id) else {
                return Ok(());
            };
            call.cseq = 2;
            call.branch = format!("z9hG4bKout{tag}x2");
            let call = self
                .out
                .get(&call_id)
                .map(|c| self.invite_text(&call_id, c, &auth));
            if let Some(invite) = call {
                self.send_sip(&invite, from)?;
            }
            return Ok(());
        }
        self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.counters.refusals.lock()
            && r.len() < 5
        {
            r.push(text.lines().next().unwrap_or("").to_string());
        }
        self.out.remove(&call_id);
        Ok(())
    }

    fn read_sip(&mut self, buf: &mut [u8]) -> io::Result<()> {
        // bounded: at most 10 000 datagrams per wake
        for _ in 0..10_000 {
            let Some(s) = &self.sip else { return Ok(()) };
            let (n, from) = match s.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            let Ok(text) = std::str::from_utf8(&buf[..n]) else {
                continue;
            };
            let text = text.to_string();
            self.on_sip(&text, from)?;
        }
        Ok(())
    }

    fn on_sip(&mut self, text: &str, from: SocketAddr) -> io::Result<()> {
        let Some(first) = text.lines().next() else {
            return Ok(());
        };
        if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            // a response: to our REGISTERs or to the INVITEs of calls we placed
            let code: u16 = rest.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if header(text, "CSeq").is_some_and(|c| c.ends_with("INVITE")) {
                return self.on_invite_response(code, text, from);
            }
            if !header(text, "CSeq").is_some_and(|c| c.ends_with("REGISTER")) {
                return Ok(());
            }
            match code {
                200 => self.counters.registered.store(true, Ordering::Relaxed),
                401 | 407 => {
                    let name = if code == 401 {
                        "WWW-Authenticate"
                    } else {
                        "Proxy-Authenticate"
                    };
                    if let Some(c) = header(text, name) {
                        let c = c.to_string();
                        self.register(Some(&c))?;
                    }
                }
                _ => {}
            }
            return Ok(());
        }
        let method = first.split(' ').next().unwrap_or("");
        let call_id = header(text, "Call-ID").unwrap_or("").to_string();
        match method {
            "INVITE" => {
                if let Some(d) = self.dialogs.get(&call_id) {
                    let again = d.answer.clone();
                    return self.send_sip(&again, from);
                }
                let rtp = self.rtp_addr;
                self.tag += 1;
                let sdp = format!(
                    "v=0\r\no=- {t} {t} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
                     m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
                    t = self.tag,
                    ip = rtp.ip(),
                    port = rtp.port(),
                );
                let mut answer = response(text, "200 OK", Some(self.tag));
                // a proxy's route (Kamailio's in proxy mode): its ACK and BYE come through it
                for rr in headers(text, "Record-Route", None) {
                    let _ = write!(answer, "Record-Route: {rr}\r\n");
                }
                let _ = write!(
                    answer,
                    "Contact: <sip:load@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
                    local = self.local(),
                    len = sdp.len()
                );
                self.send_sip(&answer, from)?;
                self.dialogs.insert(call_id, Dialog { answer });
                self.counters.calls_answered.fetch_add(1, Ordering::Relaxed);
            }
            "BYE" | "CANCEL" => {
                let mut ok = response(text, "200 OK", None);
                ok.push_str("Content-Length: 0\r\n\r\n");
                self.send_sip(&ok, from)?;
                if self.dialogs.remove(&call_id).is_some() {
                    self.counters.calls_ended.fetch_add(1, Ordering::Relaxed);
                }
                if self.out.remove(&call_id).is_some() {
                    self.counters.calls_ended.fetch_add(1, Ordering::Relaxed);
                }
            }
            "ACK" => {}
            "" => {}
            _ => {
                let mut ok = response(text, "200 OK", None);
                ok.push_str("Content-Length: 0\r\n\r\n");
                self.send_sip(&ok, from)?;
            }
        }
        Ok(())
    }
}

/// The value of the first header `name` (case-insensitive; compact forms of the few
/// headers the phone reads included).
fn header<'a>(text: &'a str, name: &'a str) -> Option<&'a str> {
    let compact = match name {
        "Call-ID" => Some("i"),
        "Via" => Some("v"),
        "From" => Some("f"),
        "To" => Some("t"),
        _ => None,
    };
    headers(text, name, compact).next()
}

fn headers<'a>(
    text: &'a str,
    name: &'a str,
    compact: Option<&'a str>,
) -> impl Iterator<Item = &'a str> + 'a {
    text.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(move |l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c)))
                .then(|| v.trim())
        })
}

/// The URI inside a name-address (`"x" <sip:a@b;lr>;tag=1` → `sip:a@b;lr`) or a bare one.
fn uri_of(value: &str) -> Option<&str> {
    match value.split_once('<') {
        Some((_, rest)) => rest.split_once('>').map(|(uri, _)| uri),
        None => value.split(';').next().map(str::trim),
    }
    .filter(|u| !u.is_empty())
}

/// The Record-Route entries of `message`, in order (several headers, or several entries
/// separated by commas in one), each a name-address as it came (`<sip:proxy;lr>`).
fn route_set(message: &str) -> Vec<String> {
    headers(message, "Record-Route", None)
        .flat_map(|v| v.split(">,"))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.ends_with('>') {
                e.to_string()
            } else {
                format!("{e}>")
            }
        })
        .collect()
}

/// The start of a response to `request`: status line, its Vias, From, To (with `tag`
/// added when given), Call-ID and CSeq.
fn response(request: &str, status: &str, tag: Option<u32>) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for v in headers(request, "Via", Some("v")) {
        let _ = write!(r, "Via: {v}\r\n");
    }
    let _ = write!(r, "From: {}\r\n", header(request, "From").unwrap_or(""));
    let to = header(request, "To").unwrap_or("");
    match tag {
        Some(t) if !to.contains(";tag=") => {
            let _ = write!(r, "To: {to};tag=load{t}\r\n");
        }
        _ => {
            let _ = write!(r, "To: {to}\r\n");
        }
    }
    let _ = write!(
        r,
        "Call-ID: {}\r\nCSeq: {}\r\n",
        header(request, "Call-ID").unwrap_or(""),
        header(request, "CSeq").unwrap_or("")
    );
    r
}

/// An `Authorization` header answering a digest `challenge` (RFC 2617 / 7616, MD5, with
/// `qop=auth` when offered).
fn authorization(challenge: &str, user: &str, password: &str, method: &str, uri: &str) -> String {
    let param = |key: &str| -> Option<String> {
        let at = challenge.find(&format!("{key}="))?;
        let rest = &challenge[at + key.len() + 1..];
        Some(if let Some(q) = rest.strip_prefix('"') {
            q.split('"').next()?.to_string()
        } else {
            rest.split(',').next()?.trim().to_string()
        })
    };
    let realm = param("realm").unwrap_or_default();
    let nonce = param("nonce").unwrap_or_default();
    let qop = param("qop").filter(|q| q.split(',').any(|x| x.trim() == "auth"));
    let md5 = |s: String| {
        Md5::digest(s.as_bytes())
            .iter()
            .fold(String::new(), |mut out, b| {
                let _ = write!(out, "{b:02x}");
                out
            })
    };
    let ha1 = md5(format!("{user}:{realm}:{password}"));
    let ha2 = md5(format!("{method}:{uri}"));
    match qop {
        Some(_) => {
            let cnonce = "0a4f113b";
            let nc = "00000001";
            let response = md5(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
            format!(
                "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"\r\n"
            )
        }
        None => {
            let response = md5(format!("{ha1}:{nonce}:{ha2}"));
            format!(
                "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5\r\n"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_rfc_2617_example() {
        // RFC 2617 §3.5: Mufasa, "Circle Of Life", GET /dir/index.html, cnonce 0a4f113b
        let c = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let h = authorization(c, "Mufasa", "Circle Of Life", "GET", "/dir/index.html");
        assert!(
            h.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{h}"
        );
    }

    #[test]
    fn a_response_copies_vias_and_tags_the_to() {
        let req = "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=1\r\nv: SIP/2.0/UDP b;branch=2\r\nFrom: <sip:a>;tag=9\r\nTo: <sip:b>\r\ni: abc\r\nCSeq: 1 INVITE\r\n\r\n";
        let r = response(req, "200 OK", Some(5));
        assert!(
            r.contains("Via: SIP/2.0/UDP a;branch=1\r\nVia: SIP/2.0/UDP b;branch=2\r\n"),
            "{r}"
        );
        assert!(
            r.contains("To: <sip:b>;tag=load5\r\n") && r.contains("Call-ID: abc\r\n"),
            "{r}"
        );
    }

    #[test]
    fn an_ack_takes_the_answers_contact_and_its_route_reversed() {
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=1\r\n\
                  Record-Route: <sip:10.0.0.2;lr;ftag=x>, <sip:10.0.0.1;lr>\r\n\
                  Record-Route: <sip:10.0.0.0;lr>\r\n\
                  Contact: \"gw\" <sip:1000@127.0.0.1:5070;transport=udp>;expires=60\r\n\r\n";
        assert_eq!(
            route_set(ok),
            [
                "<sip:10.0.0.2;lr;ftag=x>",
                "<sip:10.0.0.1;lr>",
                "<sip:10.0.0.0;lr>"
            ]
        );
        assert_eq!(
            header(ok, "Contact").and_then(uri_of),
            Some("sip:1000@127.0.0.1:5070;transport=udp")
        );
        assert_eq!(uri_of("sip:a@b;tag=1"), Some("sip:a@b"));
        assert!(route_set("SIP/2.0 200 OK\r\nContact: <sip:a@b>\r\n\r\n").is_empty());
    }
}
