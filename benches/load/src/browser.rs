//! The browser side: many WebRTC peers on one thread, each a str0m `Rtc` (ICE, DTLS, SRTP
//! of a stack independent of srgate's) with an address of its own, and a WebSocket that
//! speaks srgate's browser protocol (login, invite, hangup). Each peer sends one marked
//! PCMU frame every 20 ms once the call is answered and reads its frames coming back.
//!
//! The peers' media share one UDP socket when they can: bound to the wildcard address
//! and to the loopback device only (no other host can reach it), each peer has a loopback
//! address of its own (127.1.x.y, one port), the kernel tells each datagram's destination
//! (`IP_PKTINFO`: which peer it is for) and takes each reply's source from the same option;
//! datagrams go in and out in batches (`recvmmsg`, `sendmmsg`). A thousand peers then take
//! one descriptor instead of a thousand and a few system calls per wake instead of two or
//! three per packet (measured, the harness's CPU stays about the same: the kernel's
//! loopback delivery and str0m's own work dominate it). Where that cannot be set up (a
//! gateway not on IPv4 loopback, a kernel that refuses `SO_BINDTODEVICE`), each peer has a
//! socket of its own.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tungstenite::handshake::MidHandshake;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::{HandshakeError, Message, WebSocket};

use srgate::io::sys::{RecvBatch, SendBatch, receive_destinations, set_socket_buffers};

use crate::payload::{self, FRAME, Mark};
use crate::stats::{self, Echo, Rtt, Totals};

/// What the browsers send.
pub enum Media {
    /// Marked PCMU frames (relayed: they come back byte for byte).
    Pcmu,
    /// A looping Opus tone (transcoded to PCMU and back: counted, and the first call's
    /// echo decoded for its frequency).
    Opus(Vec<Vec<u8>>),
}

/// Where a call stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    Handshaking,
    LoggingIn,
    /// Logged in, waiting for a `remote_invitation` (calls from SIP).
    Listening,
    Inviting,
    Ringing,
    Up,
    Ending,
    Ended,
    Failed(String),
}

type Handshake = MidHandshake<ClientHandshake<TcpStream>>;

struct Call {
    idx: u32,
    id: String,
    /// The app user it logs in as.
    user: String,
    stage: Stage,
    ws: Option<WebSocket<TcpStream>>,
    handshake: Option<Handshake>,
    /// The call's own socket (`None`: it uses the shared one).
    udp: Option<UdpSocket>,
    local: SocketAddr,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    mid: Option<Mid>,
    connected: bool,
    next_timeout: Instant,
    next_send: Option<Instant>,
    seq: u32,
    echo: Echo,
    started: Instant,
    /// Login to the first frame heard back.
    setup: Option<Duration>,
    /// Tone bytes of the echoed frames, for the frequency check (the first few only).
    heard: Vec<u8>,
    /// The incoming SSRC taken with `Browsers::learn_ssrc`.
    learned_ssrc: Option<u32>,
}

/// The one socket of every peer (see the module's documentation).
struct Shared {
    udp: UdpSocket,
    port: u16,
    recv: RecvBatch,
    send: SendBatch,
    /// Datagrams the kernel would not take (a full send buffer): the generator's loss.
    send_drops: u64,
}

/// The first peer's address on the shared socket (peer `i` has `FIRST_PEER + i`).
const FIRST_PEER: u32 = u32::from_be_bytes([127, 1, 0, 1]);
/// Peers on the shared socket: 127.1.0.1 to 127.1.255.255.
const MAX_SHARED_PEERS: usize = 0xffff;
/// The token of the shared socket (the calls' tokens are `2 * idx` and `2 * idx + 1`).
const SHARED: Token = Token(usize::MAX);
/// Datagrams per batch (a receive, a send), and the room for one.
const BATCH: usize = 64;
const SLOT: usize = 2048;
/// Kernel buffer asked for the shared socket.
const SHARED_BUFFER: usize = 4 << 20;

impl Shared {
    /// The shared socket, or why it cannot be had.
    fn open(poll: &Poll) -> io::Result<Shared> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
        // loopback only: the wildcard bind below then takes no datagram from the network
        socket.bind_device(Some(b"lo"))?;
        socket.set_nonblocking(true)?;
        // 80-160 ms of every peer's packets at 1 000 calls (the kernel reports twice the
        // data it holds)
        let granted = set_socket_buffers(socket.as_raw_fd(), SHARED_BUFFER)?;
        if granted < SHARED_BUFFER / 2 {
            eprintln!(
                "   (browsers: the shared socket's receive buffer is capped at {} KiB, asked \
                 {} KiB: a generator that falls behind drops packets, counted as its own; \
                 raise net.core.rmem_max)",
                granted / 2048,
                SHARED_BUFFER / 1024
            );
        }
        socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
        receive_destinations(socket.as_raw_fd(), false)?;
        let mut udp = UdpSocket::from_std(socket.into());
        let port = udp.local_addr()?.port();
        poll.registry()
            .register(&mut udp, SHARED, Interest::READABLE)?;
        Ok(Shared {
            udp,
            port,
            recv: RecvBatch::with_destinations(BATCH, SLOT),
            send: SendBatch::with_sources(BATCH, SLOT),
            send_drops: 0,
        })
    }

    /// Queues `contents` from peer address `from` to `to`, sending the batch when full.
    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, contents: &[u8]) {
        if self.send.is_full() {
            self.flush();
        }
        let slot = self.send.slot();
        let Some(slot) = slot.get_mut(..contents.len()) else {
            self.send_drops += 1; // larger than any datagram str0m makes here
            return;
        };
        slot.copy_from_slice(contents);
        self.send.commit_from(to, Some(from.ip()), contents.len());
    }

    fn flush(&mut self) {
        if !self.send.is_empty() {
            let (_, dropped) = self.send.flush(self.udp.as_raw_fd());
            self.send_drops += dropped as u64;
        }
    }
}

/// The peer a shared-socket datagram to `ip` is for.
fn shared_peer(ip: IpAddr) -> Option<usize> {
    match ip {
        IpAddr::V4(v4) => u32::from(v4)
            .checked_sub(FIRST_PEER)
            .map(|i| i as usize)
            .filter(|&i| i < MAX_SHARED_PEERS),
        IpAddr::V6(_) => None,
    }
}

/// The peers and the loop that drives them.
pub struct Browsers {
    poll: Poll,
    events: Events,
    calls: Vec<Call>,
    web: SocketAddr,
    callee: String,
    tone: [u8; FRAME],
    epoch: Instant,
    rtt: Rtt,
    buf: Vec<u8>,
    /// Frames whose send time came later than 10 ms after it was due (the generator fell
    /// behind).
    pub late_sends: u64,
    /// The tokens of one wake (kept to reuse its memory).
    ready: Vec<Token>,
    media: Media,
    /// Decodes what the first call hears back (Opus media).
    probe: Option<srgate::media::codec::opus::OpusDecoder>,
    probe_pcm: Vec<i16>,
    /// Idle calls: each call stops sending once its first frame came back (ICE, DTLS, SIP
    /// and the media path proven), and then carries no RTP.
    pub silent_once_up: bool,
    /// A relay that sends from an SSRC it never announces (rtpengine transcoding): each
    /// call takes the first RTP SSRC that reaches it as its incoming stream.
    pub learn_ssrc: bool,
    /// Calls from SIP: each browser logs in and waits; a `remote_invitation` is accepted
    /// with an offer (setup: from the invitation to the first frame heard back).
    pub answer_invitations: bool,
    /// App users named by number from this one on (call `i` logs in as `first + i`)
    /// instead of `load<i>`: a PBX's route to the gateway may take numbers only.
    pub numbered_users: Option<u32>,
    /// The peers' shared socket (`None`: a socket per peer).
    shared: Option<Shared>,
    /// Datagrams the peers' own sockets refused (`--socket-per-peer`).
    peer_send_drops: u64,
}

fn udp_token(idx: usize) -> Token {
    Token(idx * 2)
}

fn ws_token(idx: usize) -> Token {
    Token(idx * 2 + 1)
}

impl Browsers {
    pub fn new(web: SocketAddr, callee: &str, media: Media) -> io::Result<Browsers> {
        use srgate::media::codec::SampleRate;
        use srgate::media::codec::opus::OpusDecoder;
        let probe = match media {
            Media::Opus(_) => Some(
                OpusDecoder::new(SampleRate::Hz48000)
                    .map_err(|e| io::Error::other(format!("opus decoder: {e:?}")))?,
            ),
            Media::Pcmu => None,
        };
        Ok(Browsers {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            calls: Vec::new(),
            web,
            callee: callee.to_string(),
            tone: payload::tone_frame(),
            epoch: Instant::now(),
            rtt: Rtt::default(),
            buf: vec![0u8; 4096],
            late_sends: 0,
            ready: Vec::new(),
            media,
            probe,
            probe_pcm: Vec::new(),
            silent_once_up: false,
            learn_ssrc: false,
            answer_invitations: false,
            numbered_users: None,
            peer_send_drops: 0,
            shared: None,
        })
    }

    /// Puts the peers' media on one shared socket (see the module's documentation) when
    /// the gateway is on IPv4 and the socket can be had; says why not otherwise (the peers
    /// then have a socket each). Before the first call.
    pub fn share_socket(&mut self) -> Result<(), String> {
        if !(self.web.is_ipv4() && self.web.ip().is_loopback()) {
            return Err(format!(
                "the gateway is not on IPv4 loopback ({})",
                self.web
            ));
        }
        let shared = Shared::open(&self.poll).map_err(|e| format!("shared socket: {e}"))?;
        self.shared = Some(shared);
        Ok(())
    }

    /// A new call's UDP socket and `Rtc` (PCMU only, one host candidate), not yet signalled.
    fn new_call(&mut self) -> io::Result<Call> {
        let idx = self.calls.len();
        let now = Instant::now();
        let (udp, local) = match &self.shared {
            Some(shared) if idx < MAX_SHARED_PEERS => {
                let ip = Ipv4Addr::from(FIRST_PEER + idx as u32);
                (None, SocketAddr::from((ip, shared.port)))
            }
            Some(_) => return Err(io::Error::other("no loopback address left for a peer")),
            None => {
                let mut udp = UdpSocket::bind(SocketAddr::new(self.web.ip(), 0))?;
                let local = udp.local_addr()?;
                self.poll
                    .registry()
                    .register(&mut udp, udp_token(idx), Interest::READABLE)?;
                (Some(udp), local)
            }
        };
        let builder = Rtc::builder().clear_codecs().set_rtp_mode(false);
        let builder = match self.media {
            Media::Pcmu => builder.enable_pcmu(true, false),
            Media::Opus(_) => builder.enable_opus(true, false),
        };
        let mut rtc = builder.build(now);
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| io::Error::other(format!("candidate {local}: {e}")))?;
        rtc.add_local_candidate(candidate);
        Ok(Call {
            idx: idx as u32,
            id: format!("load{idx}"),
            user: self.user_name(idx),
            stage: Stage::Handshaking,
            ws: None,
            handshake: None,
            udp,
            local,
            rtc,
            pending: None,
            mid: None,
            connected: false,
            next_timeout: now,
            next_send: None,
            seq: 0,
            echo: Echo::default(),
            started: now,
            setup: None,
            heard: Vec::new(),
            learned_ssrc: None,
        })
    }

    /// Starts one more call through srgate: connects its WebSocket (its login and invite
    /// follow as the loop turns).
    pub fn start_call(&mut self) -> io::Result<()> {
        let mut call = self.new_call()?;
        let idx = call.idx as usize;
        let stream = StdTcpStream::connect(self.web)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        self.poll.registry().register(
            &mut stream,
            ws_token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let url = format!("ws://{}/ws", self.web);
        match tungstenite::client(url.as_str(), stream) {
            Ok((ws, _)) => {
                call.ws = Some(ws);
                login(&mut call);
            }
            Err(HandshakeError::Interrupted(mid)) => call.handshake = Some(mid),
            Err(HandshakeError::Failure(e)) => {
                call.stage = Stage::Failed(format!("websocket: {e}"))
            }
        }
        self.calls.push(call);
        Ok(())
    }

    /// Starts one more call whose offer is answered by `answer` (another relay driven by
    /// its own control protocol): the call counts as answered at once and sends as soon as
    /// DTLS is up.
    pub fn start_direct_call(
        &mut self,
        answer: impl FnOnce(&str, &str) -> Result<String, String>,
    ) -> io::Result<()> {
        let mut call = self.new_call()?;
        let mut api = call.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let result = match api.apply() {
            Some((offer, pending)) => answer(&call.id, &offer.to_sdp_string()).and_then(|sdp| {
                let a = SdpAnswer::from_sdp_string(&sdp).map_err(|e| format!("answer SDP: {e}"))?;
                call.rtc
                    .sdp_api()
                    .accept_answer(pending, a)
                    .map_err(|e| format!("answer refused by str0m: {e}"))
            }),
            None => Err("str0m made no offer".into()),
        };
        call.mid = Some(mid);
        call.stage = match result {
            Ok(()) => Stage::Up,
            Err(e) => Stage::Failed(e),
        };
        self.calls.push(call);
        self.drain(self.calls.len() - 1);
        Ok(())
    }

    /// Marks every direct call ended (its relay was told separately).
    pub fn end_direct_calls(&mut self) -> Vec<String> {
        let mut ids = Vec::new();
        for c in &mut self.calls {
            if c.stage == Stage::Up {
                c.stage = Stage::Ended;
                c.next_send = None;
                c.rtc.disconnect();
                ids.push(c.id.clone());
            }
        }
        ids
    }

    /// The app user call `idx` logs in as.
    pub fn user_name(&self, idx: usize) -> String {
        match self.numbered_users {
            Some(first) => (first as usize + idx).to_string(),
            None => format!("load{idx}"),
        }
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Datagrams the peers' sockets could not send (the generator's own loss).
    pub fn send_drops(&self) -> u64 {
        self.peer_send_drops + self.shared.as_ref().map_or(0, |s| s.send_drops)
    }

    /// Calls in each stage: (setting up, up, ended, failed).
    pub fn census(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for call in &self.calls {
            match call.stage {
                Stage::Up if call.setup.is_some() => c.1 += 1,
                Stage::Ended => c.2 += 1,
                Stage::Failed(_) => c.3 += 1,
                _ => c.0 += 1,
            }
        }
        c
    }

    /// Calls srgate refused with `OVERLOADED`.
    pub fn refused_overloaded(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| matches!(&c.stage, Stage::Failed(why) if why.contains("OVERLOADED")))
            .count()
    }

    /// The first few failures, for the report.
    pub fn failures(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter_map(|c| match &c.stage {
                Stage::Failed(why) => Some(format!("call {}: {why}", c.idx)),
                _ => None,
            })
            .take(5)
            .collect()
    }

    pub fn totals(&self) -> Totals {
        Totals::sum(self.calls.iter().map(|c| &c.echo))
    }

    /// The round-trip times so far (taken: the next call starts a new histogram).
    pub fn take_rtt(&mut self) -> Rtt {
        std::mem::take(&mut self.rtt)
    }

    /// Setup times (login to the first frame heard back) of the calls that got one.
    pub fn setup_times(&self) -> Vec<Duration> {
        self.calls.iter().filter_map(|c| c.setup).collect()
    }

    /// The dominant frequency of what the first call heard back (the tone's content check).
    pub fn heard_hz(&self) -> Option<f64> {
        if self.probe.is_some() {
            // skip the first 100 ms (the decoder and the jitter buffers settling)
            return (self.probe_pcm.len() >= 48_000)
                .then(|| payload::dominant_hz_pcm(&self.probe_pcm[4800..], 48_000.0));
        }
        let c = self.calls.iter().find(|c| c.heard.len() >= 800)?;
        Some(payload::dominant_hz(&c.heard, FRAME - payload::MARK))
    }

    /// Browsers logged in and waiting for an invitation.
    pub fn listening(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| c.stage == Stage::Listening)
            .count()
    }

    /// Asks srgate to end every call that is up or being set up.
    pub fn hang_up_all(&mut self) {
        for c in &mut self.calls {
            if matches!(c.stage, Stage::Ringing | Stage::Up | Stage::Inviting) {
                send(c, json!({"type": "hangup", "id": c.id}));
                c.stage = Stage::Ending;
                c.next_send = None;
            }
        }
    }

    /// One turn of the loop: waits up to `wait` for sockets, handles what came, fires due
    /// timers and sends due frames.
    pub fn turn(&mut self, wait: Duration) -> io::Result<()> {
        // what came out of str0m since the last turn (a direct call's start)
        if let Some(shared) = self.shared.as_mut() {
            shared.flush();
        }
        self.poll.poll(&mut self.events, Some(wait))?;
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter().map(|e| e.token()));
        for &token in &ready {
            if token == SHARED {
                self.read_shared();
                continue;
            }
            let idx = token.0 / 2;
            if idx >= self.calls.len() {
                continue;
            }
            if token.0 % 2 == 0 {
                self.read_udp(idx);
            } else {
                self.read_ws(idx);
            }
        }
        self.ready = ready;
        let now = Instant::now();
        let epoch = self.epoch;
        for i in 0..self.calls.len() {
            let c = &mut self.calls[i];
            if matches!(c.stage, Stage::Ended | Stage::Failed(_)) {
                continue;
            }
            if now >= c.next_timeout {
                if c.rtc.handle_input(Input::Timeout(now)).is_err() {
                    c.stage = Stage::Failed("str0m timeout handling failed".into());
                    continue;
                }
                self.drain(i);
            }
            let c = &mut self.calls[i];
            if let (Some(due), Some(mid)) = (c.next_send, c.mid)
                && now >= due
            {
                let (late, next) = stats::pace(due, now);
                self.late_sends += u64::from(late);
                c.next_send = Some(next);
                let (data, time) = match &self.media {
                    Media::Pcmu => {
                        let mut frame = [0u8; FRAME];
                        payload::fill(
                            &mut frame,
                            &self.tone,
                            Mark {
                                call: c.idx,
                                seq: c.seq,
                                sent_us: now.duration_since(epoch).as_micros() as u64,
                            },
                        );
                        let time =
                            MediaTime::new(c.seq as u64 * FRAME as u64, Frequency::EIGHT_KHZ);
                        (frame.to_vec(), time)
                    }
                    Media::Opus(frames) => (
                        frames[c.seq as usize % frames.len()].clone(),
                        MediaTime::new(c.seq as u64 * 960, Frequency::FORTY_EIGHT_KHZ),
                    ),
                };
                let Some(writer) = c.rtc.writer(mid) else {
                    continue;
                };
                let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else {
                    continue;
                };
                if writer.write(pt, now, time, data).is_ok() {
                    c.seq += 1;
                    c.echo.sent += 1;
                }
                self.drain(i);
            }
        }
        if let Some(shared) = self.shared.as_mut() {
            shared.flush();
        }
        Ok(())
    }

    /// Reads the shared socket until it is empty (bounded: 1 000 batches per wake).
    fn read_shared(&mut self) {
        for _ in 0..1000 {
            let Some(shared) = self.shared.as_mut() else {
                return;
            };
            if shared.recv.recv(shared.udp.as_raw_fd()).is_err() {
                return;
            }
            let drained = shared.recv.drained();
            for i in 0..shared.recv.len() {
                let Some(shared) = self.shared.as_mut() else {
                    return;
                };
                let Some(idx) = shared.recv.destination(i).and_then(shared_peer) else {
                    continue;
                };
                let Some((Some(source), bytes, false)) = shared.recv.get(i) else {
                    continue;
                };
                let n = bytes.len();
                self.buf[..n].copy_from_slice(bytes);
                if idx < self.calls.len() {
                    self.on_datagram(idx, source, n);
                }
            }
            if drained {
                return;
            }
        }
    }

    fn read_udp(&mut self, idx: usize) {
        // bounded: at most 1 000 datagrams per wake of one socket
        for _ in 0..1000 {
            let Some(udp) = self.calls[idx].udp.as_ref() else {
                return;
            };
            let (n, source) = match udp.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(_) => return,
            };
            self.on_datagram(idx, source, n);
        }
    }

    /// Datagram `self.buf[..n]` from `source` reached call `idx`.
    fn on_datagram(&mut self, idx: usize, source: SocketAddr, n: usize) {
        let c = &mut self.calls[idx];
        // RTP (version 2, not an RTCP packet type: RFC 5761 §4) in the clear header of
        // SRTP: its SSRC
        let rtp_ssrc = (n >= 12 && self.buf[0] >> 6 == 2 && !(192..=223).contains(&self.buf[1]))
            .then(|| u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]));
        if self.learn_ssrc
            && c.learned_ssrc.is_none()
            && let (Some(ssrc), Some(mid)) = (rtp_ssrc, c.mid)
        {
            c.rtc
                .direct_api()
                .expect_stream_rx(ssrc.into(), None, mid, None);
            c.learned_ssrc = Some(ssrc);
        }
        let Ok(contents) = self.buf[..n].try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: c.local,
                contents,
            },
        );
        if c.rtc.accepts(&input) {
            let _ = c.rtc.handle_input(input);
            self.drain(idx);
        }
    }

    /// Polls `Rtc` until its next timeout: sends what it transmits, takes its events.
    fn drain(&mut self, idx: usize) {
        let epoch = self.epoch;
        let tone = self.tone;
        let c = &mut self.calls[idx];
        // bounded: str0m's output for one input is finite; 10 000 outputs is far beyond it
        for _ in 0..10_000 {
            match c.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    c.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => match (&c.udp, self.shared.as_mut()) {
                    (Some(udp), _) => {
                        if udp.send_to(&t.contents, t.destination).is_err() {
                            self.peer_send_drops += 1;
                        }
                    }
                    (None, Some(shared)) => shared.transmit(t.source, t.destination, &t.contents),
                    (None, None) => {}
                },
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        c.connected = true;
                        if c.stage == Stage::Up && c.next_send.is_none() {
                            c.next_send = Some(Instant::now());
                        }
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                        if !matches!(c.stage, Stage::Ending | Stage::Ended) =>
                    {
                        c.stage = Stage::Failed("ICE disconnected".into());
                    }
                    Event::MediaData(d) if self.probe.is_some() => {
                        // transcoded: no marker survives; count by RTP sequence number
                        c.echo.on_receive(**d.seq_range.end() as u32);
                        if c.setup.is_none() {
                            c.setup = Some(d.network_time.duration_since(c.started));
                        }
                        if c.idx == 0
                            && self.probe_pcm.len() < 96_000
                            && let Some(dec) = self.probe.as_mut()
                        {
                            let mut pcm = [0i16; srgate::media::codec::MAX_FRAME_SAMPLES];
                            if let Ok(n) = dec.decode(&d.data, &mut pcm) {
                                self.probe_pcm.extend_from_slice(&pcm[..n]);
                            }
                        }
                    }
                    Event::MediaData(d) => {
                        let Some((mark, intact)) = payload::read(&d.data, &tone) else {
                            continue;
                        };
                        if mark.call != c.idx {
                            c.echo.damaged += 1;
                            continue;
                        }
                        c.echo.on_receive(mark.seq);
                        if !intact {
                            c.echo.damaged += 1;
                        }
                        let now_us = d.network_time.duration_since(epoch).as_micros() as u64;
                        self.rtt.add(now_us.saturating_sub(mark.sent_us));
                        if c.setup.is_none() {
                            c.setup = Some(d.network_time.duration_since(c.started));
                            if self.silent_once_up {
                                c.next_send = None;
                            }
                        }
                        if c.heard.len() < 1600 {
                            c.heard.extend_from_slice(&d.data[payload::MARK..]);
                        }
                    }
                    _ => {}
                },
                Err(e) => {
                    c.stage = Stage::Failed(format!("str0m: {e}"));
                    return;
                }
            }
        }
    }

    fn read_ws(&mut self, idx: usize) {
        let c = &mut self.calls[idx];
        if let Some(mid) = c.handshake.take() {
            match mid.handshake() {
                Ok((ws, _)) => {
                    c.ws = Some(ws);
                    login(c);
                }
                Err(HandshakeError::Interrupted(mid)) => {
                    c.handshake = Some(mid);
                    return;
                }
                Err(HandshakeError::Failure(e)) => {
                    c.stage = Stage::Failed(format!("websocket handshake: {e}"));
                    return;
                }
            }
        }
        // bounded: at most 100 messages per wake
        for _ in 0..100 {
            let c = &mut self.calls[idx];
            let Some(ws) = c.ws.as_mut() else { return };
            let msg = match ws.read() {
                Ok(Message::Text(t)) => t.to_string(),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    let _ = ws.flush();
                    return;
                }
                Err(e) => {
                    if !matches!(c.stage, Stage::Ended) {
                        c.stage = Stage::Failed(format!("websocket: {e}"));
                    }
                    c.ws = None;
                    return;
                }
            };
            let Ok(v) = serde_json::from_str::<Value>(&msg) else {
                continue;
            };
            self.on_message(idx, &v);
        }
    }

    fn on_message(&mut self, idx: usize, v: &Value) {
        let c = &mut self.calls[idx];
        let kind = v["type"].as_str().unwrap_or("");
        match (kind, v["state"].as_str()) {
            ("login_ok", _) if self.answer_invitations => c.stage = Stage::Listening,
            ("remote_invitation", _) if c.stage == Stage::Listening => {
                let Some(sdp) = offer(c) else { return };
                c.id = v["id"].as_str().unwrap_or("").to_string();
                c.started = Instant::now();
                let id = c.id.clone();
                send(c, json!({"type": "accept", "id": id, "sdp": sdp}));
                c.stage = Stage::Ringing;
                self.drain(idx);
            }
            ("remote_state", Some("ACCEPTED")) => {
                if !take_answer(c, v["sdp"].as_str().unwrap_or("")) {
                    return;
                }
                c.stage = Stage::Up;
                if c.connected && c.next_send.is_none() {
                    c.next_send = Some(Instant::now());
                }
                self.drain(idx);
            }
            ("remote_state", Some(state)) => {
                c.stage = Stage::Failed(format!("invitation ended in {state}: {v}"));
            }
            ("login_ok", _) => {
                let Some(sdp) = offer(c) else { return };
                let id = c.id.clone();
                let callee = self.callee.clone();
                let c = &mut self.calls[idx];
                send(
                    c,
                    json!({"type": "invite", "id": id, "callee": callee, "sdp": sdp}),
                );
                c.stage = Stage::Inviting;
                self.drain(idx);
            }
            ("local_state", Some("SENT_TO_REMOTE")) => {
                if !take_answer(c, v["sdp"].as_str().unwrap_or("")) {
                    return;
                }
                c.stage = Stage::Ringing;
                self.drain(idx);
            }
            ("local_state", Some("ACCEPTED_BY_REMOTE")) => {
                c.stage = Stage::Up;
                if c.connected && c.next_send.is_none() {
                    c.next_send = Some(Instant::now());
                }
            }
            ("local_state", Some("RECEIVED_BY_REMOTE")) => {}
            ("local_state", Some(state)) => {
                c.stage = Stage::Failed(format!("call ended in {state}: {v}"));
            }
            ("hangup", _) => {
                if c.stage == Stage::Ending {
                    c.stage = Stage::Ended;
                } else {
                    c.stage = Stage::Failed(format!("srgate hung up: {v}"));
                }
                c.next_send = None;
                c.rtc.disconnect();
            }
            ("error", _) => {
                c.stage = Stage::Failed(format!("srgate error: {v}"));
            }
            _ => {}
        }
    }
}

/// The call's audio offer (str0m's), kept pending for srgate's answer; `None` (the call
/// failed) when str0m makes none.
fn offer(c: &mut Call) -> Option<String> {
    let mut api = c.rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let Some((offer, pending)) = api.apply() else {
        c.stage = Stage::Failed("str0m made no offer".into());
        return None;
    };
    c.mid = Some(mid);
    c.pending = Some(pending);
    Some(offer.to_sdp_string())
}

/// Takes srgate's answer `sdp` to the pending offer; false (the call failed) when it is
/// unreadable or str0m refuses it, or nothing was pending.
fn take_answer(c: &mut Call, sdp: &str) -> bool {
    let Some(pending) = c.pending.take() else {
        return false;
    };
    let result = SdpAnswer::from_sdp_string(sdp)
        .map_err(|e| format!("answer SDP: {e}"))
        .and_then(|a| {
            c.rtc
                .sdp_api()
                .accept_answer(pending, a)
                .map_err(|e| format!("answer refused by str0m: {e}"))
        });
    match result {
        Ok(()) => true,
        Err(e) => {
            c.stage = Stage::Failed(e);
            false
        }
    }
}

fn login(c: &mut Call) {
    let user = c.user.clone();
    send(c, json!({"type": "login", "user": user}));
    c.stage = Stage::LoggingIn;
}

fn send(c: &mut Call, v: Value) {
    if let Some(ws) = c.ws.as_mut() {
        match ws.send(Message::text(v.to_string())) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => c.stage = Stage::Failed(format!("websocket send: {e}")),
        }
    }
}
