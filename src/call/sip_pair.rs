//! SIP ↔ SIP calls of standalone mode: a `[users]` phone calls another one (a door station
//! its indoor monitor, one phone another), directly or as a member of a ring group
//! (`sip:` members). srgate is a back-to-back user agent in the middle:
//!
//! - The caller's INVITE (leg A) becomes srgate's own INVITE (leg B) to the callee's
//!   registered contact, offering the formats of A's offer that srgate knows (G.711 both
//!   laws, G.722, Opus, each under A's payload type, and telephone-event) at srgate's RTP
//!   address. The callee's 18x rings the caller (one 180), its 200 answers the caller with
//!   the codec the callee picked, its refusal is the caller's answer (an authentication
//!   challenge or a redirect becomes 480: srgate does not follow them). The caller's
//!   CANCEL cancels leg B; a BYE on either leg ends the other.
//! - Media is relayed both ways on two ports of `[media] rtp_ports`, so phones on private
//!   addresses and behind NAT reach each other: each packet's header is rewritten into
//!   srgate's stream toward the other leg (payload type, SSRC, continuous sequence numbers
//!   and timestamps), its payload is left as it is: no transcoding. A caller whose offer
//!   has no codec srgate relays, or SRTP (SDES is not carried between two phones), gets 488
//!   with a `Warning` saying why. Each leg's source is guarded as a bridged call's
//!   ([`super::latch`]); RTCP is taken from that source and not relayed (srgate's SSRCs
//!   stand between the phones). A leg that sends nothing for `[media] rtp_timeout` while
//!   it should ends the call.
//! - Digits: RFC 4733 packets are relayed like audio (the other leg's telephone-event
//!   payload type); SIP INFO digits are sent on as SIP INFO.
//! - A re-INVITE (hold, a new address) is answered by srgate on its own leg and moves that
//!   leg's media; the other leg is not re-offered (its media toward a holding phone stops
//!   while the phone says `sendonly` or `inactive`).
//!
//! Such calls are placed on the signalling shard (shard 0) and keyed by the callee.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::media::relay::{RELAY_MAX, Relay, RelayArena};
use crate::sdp::Codec;
use crate::sdp::answer::Direction;
use crate::sdp::sip::{RemoteRtp, RtpDescription, build_rtp_sdp, parse_rtp_sdp};
use crate::sip::endpoint::{CallError, Event as SipEvent, OutgoingCall, Reach, SipCallId};
use crate::wire::rtp;

use super::bridge::{SipCounters, StreamIds};
use super::latch::RtpSource;
use super::{Call, Calls, Ctx, MAX_CALLS_PER_USER, MediaSocket, MediaTransmit, earliest};

/// The codecs a SIP ↔ SIP call relays (RTP clock and payload as the phones send them).
const RELAYED: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

/// One leg of a SIP ↔ SIP call.
#[derive(Debug)]
pub struct PairLeg {
    pub sip: SipCallId,
    /// srgate's RTP port for this leg's phone (RTCP: port + 1).
    pub port: u16,
    /// The phone's media, from its SDP.
    remote: Option<RemoteRtp>,
    source: RtpSource,
    /// Packets on their way to this leg's phone.
    out: Option<Relay>,
    /// This leg's payload types of the call's codec and of telephone-event.
    pt: Option<u8>,
    te: Option<u8>,
    pub counters: SipCounters,
    last_rtp: Instant,
    /// The leg still exists at the endpoint (a hangup must reach it).
    pub alive: bool,
}

impl PairLeg {
    fn new(now: Instant, sip: SipCallId, port: u16) -> PairLeg {
        PairLeg {
            sip,
            port,
            remote: None,
            source: RtpSource::default(),
            out: None,
            pt: None,
            te: None,
            counters: SipCounters::default(),
            last_rtp: now,
            alive: true,
        }
    }

    /// Takes the phone's description: where its media is, and how it flows.
    fn set_remote(&mut self, remote: RemoteRtp) {
        self.source.set_expected(remote.addr);
        self.remote = Some(remote);
    }

    /// The phone sends (its SDP says sendrecv or sendonly, at a real address).
    fn sends(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| {
            matches!(r.direction, Direction::SendRecv | Direction::SendOnly)
                && !r.addr.ip().is_unspecified()
        })
    }

    /// Where srgate sends this phone's media: where it comes from, else its SDP's address;
    /// nothing while the phone does not receive (hold).
    fn destination(&self) -> Option<SocketAddr> {
        self.source.send_to(self.remote.as_ref()?)
    }
}

/// Where a SIP ↔ SIP call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairPhase {
    /// srgate's INVITE is out to the callee.
    Calling,
    /// The callee rings (the caller got 180).
    Early,
    /// Both talk.
    Answered,
}

/// Which leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller's (srgate answers it).
    A,
    /// The callee's (srgate called it).
    B,
}

pub struct SipPairCall {
    /// The calling SIP user (as authenticated) and the one called.
    pub caller: String,
    pub callee: String,
    /// The ring group dialled, when the callee is one of its members.
    pub group: Option<String>,
    pub a: PairLeg,
    pub b: PairLeg,
    pub phase: PairPhase,
    /// The invitation timeout, until the answer.
    pub deadline: Option<Instant>,
    pub started: Instant,
    pub answered: Option<Instant>,
    pub rtp_timeout: Duration,
    /// The codec the callee picked.
    pub codec: Option<Codec>,
    /// The caller's offer.
    offer: RemoteRtp,
    ids: StreamIds,
    /// srgate's RTP address toward the caller and toward the callee.
    a_ip: IpAddr,
    b_ip: IpAddr,
    session_id: u64,
}

impl SipPairCall {
    /// A call for the caller's `offer`, with srgate's ports for both legs. Refused (the
    /// reason for a `Warning`) when srgate cannot relay the offer.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        caller: String,
        callee: String,
        (a_sip, a_port): (SipCallId, u16),
        (b_sip, b_port): (SipCallId, u16),
        offer: RemoteRtp,
        ids: StreamIds,
        (a_ip, b_ip): (IpAddr, IpAddr),
        session_id: u64,
    ) -> Result<SipPairCall, &'static str> {
        // a best-effort SRTP offer takes plain RTP too
        let mut offer = offer.plain();
        if offer.crypto.is_some() {
            return Err("SRTP is not relayed between SIP phones: offer RTP/AVP");
        }
        offer.codecs.retain(|(_, c)| RELAYED.contains(c));
        if offer.codecs.is_empty() {
            return Err("no codec srgate relays (PCMU, PCMA, G722, opus) in the offer");
        }
        Ok(SipPairCall {
            caller,
            callee,
            group: None,
            a: PairLeg::new(now, a_sip, a_port),
            b: PairLeg::new(now, b_sip, b_port),
            phase: PairPhase::Calling,
            deadline: None,
            started: now,
            answered: None,
            rtp_timeout: Duration::from_secs(30),
            codec: None,
            offer,
            ids,
            a_ip,
            b_ip,
            session_id,
        })
    }

    fn leg(&self, side: Side) -> &PairLeg {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// The leg of SIP call `id`.
    pub fn side_of(&self, id: SipCallId) -> Option<Side> {
        if id == self.a.sip {
            Some(Side::A)
        } else if id == self.b.sip {
            Some(Side::B)
        } else {
            None
        }
    }

    /// The other leg's SIP call.
    pub fn other(&self, side: Side) -> SipCallId {
        match side {
            Side::A => self.b.sip,
            Side::B => self.a.sip,
        }
    }

    pub fn alive_mut(&mut self, side: Side) -> &mut bool {
        match side {
            Side::A => &mut self.a.alive,
            Side::B => &mut self.b.alive,
        }
    }

    fn ptime(r: &RemoteRtp) -> u8 {
        r.ptime.filter(|p| (10..=120).contains(p)).unwrap_or(20)
    }

    /// srgate's offer to the callee: the caller's formats at srgate's address.
    pub fn offer_sdp(&self) -> String {
        build_rtp_sdp(&RtpDescription {
            addr: SocketAddr::new(self.b_ip, self.b.port),
            codecs: &self.offer.codecs,
            telephone_event: self.offer.telephone_event,
            direction: self.offer.direction,
            session_id: self.session_id,
            version: 1,
            ptime: Self::ptime(&self.offer),
            crypto: &[],
            best_effort: false,
            layout: &[],
        })
    }

    /// The callee rang: whether the caller is told now (the first time).
    pub fn progress(&mut self) -> bool {
        let first = self.phase == PairPhase::Calling;
        if first {
            self.phase = PairPhase::Early;
        }
        first
    }

    /// The callee's answer: the codec it picked from the caller's formats; returns srgate's
    /// answer to the caller. Media flows from now on.
    pub fn answer(&mut self, now: Instant, answer: RemoteRtp) -> Result<String, &'static str> {
        let answer = answer.plain();
        if answer.crypto.is_some() {
            return Err("the callee answered with SRTP to an RTP offer");
        }
        let Some((pt_b, codec, pt_a)) = answer.codecs.iter().find_map(|&(pt_b, c)| {
            let (pt_a, _) = self.offer.codecs.iter().find(|(_, o)| *o == c)?;
            Some((pt_b, c, *pt_a))
        }) else {
            return Err("the callee's answer has none of the caller's codecs");
        };
        // digits go through only when both phones take telephone-event
        let (te_a, te_b) = match (self.offer.telephone_event, answer.telephone_event) {
            (Some(a), Some(b)) => (Some(a), Some(b)),
            _ => (None, None),
        };
        // the caller's other sections (video, ...) are rejected in place (RFC 3264 §6)
        let layout = crate::sdp::sip::answer_layout(&self.offer, None);
        let sdp = build_rtp_sdp(&RtpDescription {
            addr: SocketAddr::new(self.a_ip, self.a.port),
            codecs: &[(pt_a, codec)],
            telephone_event: te_a,
            direction: answer.direction,
            session_id: self.session_id,
            version: 1,
            ptime: Self::ptime(&answer),
            crypto: &[],
            best_effort: false,
            layout: &layout,
        });
        let ids = self.ids;
        self.a.out = Some(Relay::new(
            pt_a,
            ids.ssrc_webrtc,
            ids.seq_webrtc,
            ids.ts_webrtc,
            RELAY_MAX,
        ));
        self.b.out = Some(Relay::new(
            pt_b,
            ids.ssrc_sip,
            ids.seq_sip,
            ids.ts_sip,
            RELAY_MAX,
        ));
        (self.a.pt, self.a.te) = (Some(pt_a), te_a);
        (self.b.pt, self.b.te) = (Some(pt_b), te_b);
        self.a.set_remote(self.offer.clone());
        self.b.set_remote(answer);
        self.codec = Some(codec);
        self.phase = PairPhase::Answered;
        self.answered = Some(now);
        self.deadline = None;
        self.a.last_rtp = now;
        self.b.last_rtp = now;
        Ok(sdp)
    }

    /// A re-offer on one leg (answered by the endpoint): where that phone's media is now,
    /// and how it flows. The codec stays: its payload type follows the re-offer's.
    pub fn update(&mut self, now: Instant, side: Side, remote: RemoteRtp) {
        let codec = self.codec;
        let leg = match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        };
        if let Some(&(pt, _)) = remote.codecs.iter().find(|(_, c)| Some(*c) == codec)
            && leg.pt.is_some()
        {
            leg.pt = Some(pt);
        }
        if leg.te.is_some() {
            leg.te = remote.telephone_event.or(leg.te);
        }
        leg.set_remote(remote);
        leg.last_rtp = now;
    }

    /// RTP clock ticks of one 20 ms frame of the call's codec (a new incoming stream
    /// continues srgate's one frame later).
    fn frame_ticks(&self) -> u32 {
        match self.codec {
            Some(Codec::Opus) => 960,
            _ => 160,
        }
    }

    /// A datagram on one of the call's four ports; a relayed packet waits in `arena`.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddr,
        data: &[u8],
        arena: &mut RelayArena,
    ) {
        let ticks = self.frame_ticks();
        let answered = self.phase == PairPhase::Answered;
        let (from_leg, to_leg) = if port == self.a.port || port == self.a.port.wrapping_add(1) {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        };
        if port != from_leg.port {
            // RTCP: taken from the phone's source, not relayed
            if from_leg.source.admits_rtcp(from) {
                from_leg.counters.rtcp_in += 1;
            } else {
                from_leg.counters.refused += 1;
            }
            return;
        }
        if !answered {
            // early packets (before the answer) have nowhere to go yet
            return;
        }
        if !from_leg.source.admits(from) {
            from_leg.counters.refused += 1;
            return;
        }
        let Ok(packet) = rtp::Packet::new_checked(data) else {
            from_leg.counters.refused += 1;
            return;
        };
        let pt = packet.payload_type();
        let out_pt = if Some(pt) == from_leg.pt {
            to_leg.pt
        } else if from_leg.te.is_some() && Some(pt) == from_leg.te {
            to_leg.te
        } else {
            None
        };
        let Some(out_pt) = out_pt else {
            from_leg.counters.refused += 1;
            return;
        };
        from_leg.source.latch(from);
        from_leg.counters.rtp_in += 1;
        from_leg.last_rtp = now;
        if to_leg.destination().is_none() {
            return; // the other phone holds the call
        }
        if let Some(relay) = to_leg.out.as_mut()
            && relay.push_as(&packet, out_pt, ticks, arena).is_err()
        {
            from_leg.counters.refused += 1;
        }
    }

    /// The next relayed datagram of the call.
    pub fn poll_transmit(&mut self, buf: &mut [u8], arena: &RelayArena) -> Option<MediaTransmit> {
        for leg in [&mut self.a, &mut self.b] {
            let destination = leg.destination();
            let Some(relay) = leg.out.as_mut() else {
                continue;
            };
            // bounded: a relay holds a few packets of this wake-up
            while let Some(len) = relay.pop(buf, arena) {
                if let Some(destination) = destination {
                    leg.counters.rtp_out += 1;
                    return Some(MediaTransmit {
                        socket: MediaSocket::Rtp(leg.port),
                        destination,
                        len,
                    });
                }
            }
        }
        None
    }

    /// The leg whose phone has been silent too long while it should send, if one is.
    pub fn silent_leg(&self, now: Instant) -> Option<Side> {
        if self.phase != PairPhase::Answered {
            return None;
        }
        [Side::A, Side::B].into_iter().find(|&s| {
            let leg = self.leg(s);
            leg.sends() && now.saturating_duration_since(leg.last_rtp) >= self.rtp_timeout
        })
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let silence = |leg: &PairLeg| {
            (self.phase == PairPhase::Answered && leg.sends())
                .then(|| leg.last_rtp + self.rtp_timeout)
        };
        earliest(self.deadline, earliest(silence(&self.a), silence(&self.b)))
    }

    /// Packets relayed to each leg's phone that went stale (their leg could not send).
    pub fn rtp_summary(&self) -> String {
        format!(
            "codec {}, caller RTP in {} out {}, callee RTP in {} out {}",
            self.codec.map_or("none", Codec::encoding_name),
            self.a.counters.rtp_in,
            self.a.counters.rtp_out,
            self.b.counters.rtp_in,
            self.b.counters.rtp_out
        )
    }
}

/// The answer the caller gets for the callee's final refusal `code`: the callee's own,
/// except what srgate does not follow (authentication, redirects), which is 480.
fn caller_code(code: u16) -> u16 {
    match code {
        401 | 407 | 300..=399 => 480,
        400..=699 => code,
        _ => 480,
    }
}

/// An incoming INVITE for a SIP user, as the call layer got it.
pub(super) struct PairRequest {
    pub sip: SipCallId,
    pub callee: String,
    pub caller: String,
    pub caller_name: Option<String>,
    pub group: Option<String>,
    pub sdp: String,
    /// An app user's call offered inside srgate (its media on srgate's own ports).
    pub internal: bool,
}

impl Calls {
    /// Pairs the SIP user `caller` has going as the caller.
    fn pairs_of_caller(&self, caller: &str) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|(_, c)| matches!(c, Call::Pair(p) if p.caller == caller))
            .count()
    }

    /// An INVITE for SIP user `callee` (standalone mode): srgate calls the callee's
    /// registered contact and relays the call (see the module doc).
    pub(super) fn incoming_pair(&mut self, now: Instant, req: PairRequest, ctx: &mut Ctx<'_>) {
        let PairRequest {
            sip,
            callee,
            caller,
            caller_name,
            group,
            sdp,
            internal,
        } = req;
        let refuse = |this: &mut Calls, ctx: &mut Ctx<'_>, code: u16, reason: &str| {
            ctx.sip.reject(now, sip, code);
            this.record_attempt(now, &callee, &caller, "sip_to_sip", Some(code), reason);
        };
        if self.pairs_of_caller(&caller) >= MAX_CALLS_PER_USER {
            return refuse(self, ctx, 486, "TOO_MANY_CALLS");
        }
        if sdp.is_empty() {
            log::info!("SIP call to SIP user: an INVITE without an offer → 488");
            ctx.sip
                .reject_offer(now, sip, "an INVITE to a SIP user needs an SDP offer");
            self.record_attempt(now, &callee, &caller, "sip_to_sip", Some(488), "BAD_SDP");
            return;
        }
        let offer = match parse_rtp_sdp(&sdp) {
            // an internal caller's media is on srgate's own ports, reached at loop_ip
            Ok(mut offer) if internal => {
                offer.addr = SocketAddr::new(self.cfg.loop_ip, offer.addr.port());
                offer
            }
            Ok(offer) => offer,
            Err(e) => {
                ctx.sip.reject_offer(now, sip, &e.to_string());
                self.record_attempt(now, &callee, &caller, "sip_to_sip", Some(488), "BAD_SDP");
                return;
            }
        };
        if !ctx.sip.can_reach(now, &callee) {
            log::info!(
                "SIP call from {} for {}: neither logged in nor registered → 480",
                crate::pii::Pii(&caller),
                crate::pii::Pii(&callee)
            );
            return refuse(self, ctx, 480, "NOT_REGISTERED");
        }
        let Some(port_a) = ctx.ports.open() else {
            self.metrics.rtp_ports_exhausted += 1;
            log::warn!("SIP call to SIP user: no free port in [media] rtp_ports → 503");
            return refuse(self, ctx, 503, "OVERLOADED");
        };
        let Some(port_b) = ctx.ports.open() else {
            ctx.ports.close(port_a);
            self.metrics.rtp_ports_exhausted += 1;
            log::warn!("SIP call to SIP user: no free port in [media] rtp_ports → 503");
            return refuse(self, ctx, 503, "OVERLOADED");
        };
        let b_sip = SipCallId(self.next_sip);
        self.next_sip += 1;
        let ids = self.stream_ids();
        let session_id = self.session_id();
        let call = SipPairCall::new(
            now,
            caller.clone(),
            callee.clone(),
            (sip, port_a),
            (b_sip, port_b),
            offer,
            ids,
            (
                if internal {
                    self.cfg.loop_ip
                } else {
                    self.cfg.rtp_ip
                },
                self.cfg.rtp_ip,
            ),
            session_id,
        );
        let mut call = match call {
            Ok(call) => call,
            Err(why) => {
                ctx.ports.close(port_a);
                ctx.ports.close(port_b);
                log::info!("SIP call to SIP user: offer unusable ({why}) → 488");
                ctx.sip.reject_offer(now, sip, why);
                self.record_attempt(now, &callee, &caller, "sip_to_sip", Some(488), "BAD_SDP");
                return;
            }
        };
        call.rtp_timeout = self.cfg.rtp_timeout;
        call.group = group;
        let outgoing = OutgoingCall {
            id: b_sip,
            callee: callee.clone(),
            caller: caller.clone(),
            display_name: caller_name,
            sdp: call.offer_sdp(),
            headers: Vec::new(),
            reach: Reach::Phone,
            account: None,
        };
        if let Err(e) = ctx.sip.start_call(now, outgoing) {
            ctx.ports.close(port_a);
            ctx.ports.close(port_b);
            let (code, reason) = match e {
                CallError::NoRoute => (480, "NOT_REGISTERED"),
                _ => (503, "OVERLOADED"),
            };
            log::info!(
                "SIP call from {} for {}: {} → {code}",
                crate::pii::Pii(&caller),
                crate::pii::Pii(&callee),
                if code == 480 {
                    "neither logged in nor registered"
                } else {
                    "cannot be placed"
                }
            );
            return refuse(self, ctx, code, reason);
        }
        self.metrics.sip_invites_out += 1;
        call.deadline = Some(now + self.cfg.invitation_timeout);
        log::info!(
            "SIP call from {} for SIP user {}: relayed, RTP ports {port_a} and {port_b}",
            crate::pii::Pii(&caller),
            crate::pii::Pii(&callee),
        );
        let id = format!("p{}", self.rng.token(12));
        self.insert((callee, id), Call::Pair(Box::new(call)), None);
    }

    fn pair_mut(&mut self, slot: usize) -> Option<&mut SipPairCall> {
        match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some((_, Call::Pair(p))) => Some(p),
            _ => None,
        }
    }

    /// A SIP event for a leg of the SIP ↔ SIP call in `slot`.
    pub(super) fn pair_event(
        &mut self,
        now: Instant,
        slot: usize,
        event: SipEvent,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(id) = event.call_id() else { return };
        let Some(p) = self.pair_mut(slot) else { return };
        let Some(side) = p.side_of(id) else { return };
        let other = p.other(side);
        match (side, event) {
            (Side::B, SipEvent::CallProgress { .. }) if p.progress() => {
                ctx.sip.ring(now, p.a.sip);
            }
            (Side::B, SipEvent::CallAnswered { sdp, .. }) => {
                let answered = parse_rtp_sdp(&sdp)
                    .map_err(|_| "the callee's SDP answer is unreadable")
                    .and_then(|answer| p.answer(now, answer));
                match answered {
                    Ok(sdp) => {
                        // a ring group's branch: the call is this member's
                        ctx.sip.claim(p.a.sip);
                        ctx.sip.answer(now, p.a.sip, &sdp);
                        self.metrics.relayed += 1;
                        self.touch(slot);
                    }
                    Err(why) => {
                        log::info!("SIP call {id:?}: {why}: BYE to the callee, 488 to the caller");
                        ctx.sip.hangup(now, p.b.sip);
                        ctx.sip.reject_offer(now, p.a.sip, why);
                        p.a.alive = false;
                        p.b.alive = false;
                        self.remove(now, slot, ctx, Some(488), "ERROR");
                    }
                }
            }
            (Side::B, SipEvent::CallFailed { code, reason, .. }) => {
                p.b.alive = false;
                p.a.alive = false;
                let to_caller = caller_code(code);
                log::info!("SIP call {id:?}: the callee answered {code} {reason}");
                ctx.sip.reject(now, p.a.sip, to_caller);
                self.remove(now, slot, ctx, Some(code), "REMOTE");
            }
            (Side::A, SipEvent::CallCanceled { elsewhere, .. }) => {
                p.a.alive = false;
                p.b.alive = false;
                // CANCEL toward the callee (or BYE, had it just answered), saying so when
                // another member of the group took the call
                if elsewhere {
                    ctx.sip.cancel_elsewhere(now, p.b.sip);
                } else {
                    ctx.sip.hangup(now, p.b.sip);
                }
                let reason = if elsewhere {
                    "ANSWERED_ELSEWHERE"
                } else {
                    "CANCELED"
                };
                self.remove(now, slot, ctx, Some(487), reason);
            }
            (_, SipEvent::CallEnded { code, .. }) => {
                *p.alive_mut(side) = false;
                let reason = if code.is_some() { "TIMEOUT" } else { "REMOTE" };
                ctx.sip.hangup(now, other);
                *p.alive_mut(side.flip()) = false;
                self.remove(now, slot, ctx, code, reason);
            }
            (_, SipEvent::CallUpdated { sdp, .. }) => match parse_rtp_sdp(&sdp) {
                Ok(remote) => {
                    p.update(now, side, remote);
                    self.touch(slot);
                }
                Err(e) => log::info!("re-offer of SIP call {id:?}: {e}"),
            },
            (
                _,
                SipEvent::Dtmf {
                    digit, duration_ms, ..
                },
            ) if p.phase == PairPhase::Answered => {
                ctx.sip.info(now, other, digit, duration_ms);
            }
            _ => {}
        }
    }

    /// Ends the SIP ↔ SIP call in `slot` from srgate's side (timeout, shutdown, fault):
    /// the caller gets `code` while unanswered, both legs BYE or CANCEL otherwise.
    pub(super) fn end_pair(&mut self, now: Instant, slot: usize, code: u16, ctx: &mut Ctx<'_>) {
        let Some(p) = self.pair_mut(slot) else { return };
        if p.a.alive {
            p.a.alive = false;
            if p.phase == PairPhase::Answered {
                ctx.sip.hangup(now, p.a.sip);
            } else {
                ctx.sip.reject(now, p.a.sip, code);
            }
        }
        if p.b.alive {
            p.b.alive = false;
            ctx.sip.hangup(now, p.b.sip);
        }
    }
}

impl Side {
    fn flip(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start their clock at Instant::now()
mod tests {
    use super::*;

    fn remote(addr: &str, codecs: &[(u8, Codec)], te: Option<u8>) -> RemoteRtp {
        RemoteRtp {
            addr: addr.parse().unwrap(),
            codecs: codecs.to_vec(),
            telephone_event: te,
            direction: Direction::SendRecv,
            ptime: Some(20),
            crypto: None,
            best_effort: false,
            sections: Vec::new(),
            audio_index: 0,
            video: None,
        }
    }

    fn ids() -> StreamIds {
        StreamIds {
            ssrc_webrtc: 0xaaaa_0001,
            ssrc_sip: 0xbbbb_0002,
            seq_webrtc: 100,
            seq_sip: 200,
            ts_webrtc: 1000,
            ts_sip: 2000,
        }
    }

    fn pair(now: Instant, offer: RemoteRtp) -> SipPairCall {
        SipPairCall::new(
            now,
            "1001".into(),
            "1002".into(),
            (SipCallId(1), 40000),
            (SipCallId(2), 40002),
            offer,
            ids(),
            ("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap()),
            7,
        )
        .unwrap()
    }

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        v[2..4].copy_from_slice(&seq.to_be_bytes());
        v[4..8].copy_from_slice(&ts.to_be_bytes());
        v[8..12].copy_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn the_offer_to_the_callee_keeps_the_callers_formats_and_the_answer_its_pick() {
        let now = Instant::now();
        let offer = remote(
            "10.0.0.5:4000",
            &[(9, Codec::G722), (0, Codec::Pcmu), (8, Codec::Pcma)],
            Some(101),
        );
        let mut p = pair(now, offer);
        let sdp = p.offer_sdp();
        assert!(sdp.contains("m=audio 40002 RTP/AVP 9 0 8 101"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:9 G722/8000"), "{sdp}");
        // the callee takes PCMA under another telephone-event number
        let answer = remote("10.0.0.6:5000", &[(8, Codec::Pcma)], Some(96));
        let to_caller = p.answer(now, answer).unwrap();
        assert!(
            to_caller.contains("m=audio 40000 RTP/AVP 8 101"),
            "{to_caller}"
        );
        assert_eq!(p.codec, Some(Codec::Pcma));
        assert_eq!((p.a.te, p.b.te), (Some(101), Some(96)));
    }

    #[test]
    fn srtp_and_unknown_codecs_are_refused_and_an_answer_without_a_shared_codec_too() {
        let now = Instant::now();
        let mut srtp = remote("10.0.0.5:4000", &[(0, Codec::Pcmu)], None);
        srtp.crypto = crate::sdp::sdes::SdesKey::generate(1, crate::sdp::sdes::OFFERED[0]).ok();
        assert!(srtp.crypto.is_some());
        let refused = SipPairCall::new(
            now,
            "a".into(),
            "b".into(),
            (SipCallId(1), 1),
            (SipCallId(2), 3),
            srtp,
            ids(),
            ("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap()),
            1,
        );
        assert!(refused.is_err());
        let mut p = pair(now, remote("10.0.0.5:4000", &[(0, Codec::Pcmu)], None));
        assert!(
            p.answer(now, remote("10.0.0.6:5000", &[(8, Codec::Pcma)], None))
                .is_err()
        );
        assert_eq!(p.phase, PairPhase::Calling);
    }

    #[test]
    fn media_is_relayed_both_ways_rewritten_and_only_from_the_sdp_sources() {
        let now = Instant::now();
        let mut arena = RelayArena::new(64 * 1024);
        let mut p = pair(
            now,
            remote("127.0.0.1:4000", &[(0, Codec::Pcmu)], Some(101)),
        );
        let caller: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let callee: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        // nothing goes anywhere before the answer
        p.handle_rtp(
            now,
            40000,
            caller,
            &packet(0, 1, 160, 9, &[0xff; 160]),
            &mut arena,
        );
        let mut buf = [0u8; 1500];
        assert!(p.poll_transmit(&mut buf, &arena).is_none());
        p.answer(
            now,
            remote("127.0.0.1:5000", &[(0, Codec::Pcmu)], Some(100)),
        )
        .unwrap();
        // caller → callee: srgate's stream toward the callee
        p.handle_rtp(
            now,
            40000,
            caller,
            &packet(0, 7, 320, 9, &[0x55; 160]),
            &mut arena,
        );
        let t = p.poll_transmit(&mut buf, &arena).expect("relayed");
        assert_eq!((t.socket, t.destination), (MediaSocket::Rtp(40002), callee));
        let out = rtp::Packet::new_checked(&buf[..t.len]).unwrap();
        assert_eq!((out.payload_type(), out.ssrc()), (0, ids().ssrc_sip));
        assert_eq!(out.payload(), &[0x55; 160]);
        // a digit keeps the stream, under the callee's telephone-event number
        p.handle_rtp(
            now,
            40000,
            caller,
            &packet(101, 8, 320, 9, &[1, 0, 0, 160]),
            &mut arena,
        );
        let t = p.poll_transmit(&mut buf, &arena).expect("digit relayed");
        let out = rtp::Packet::new_checked(&buf[..t.len]).unwrap();
        assert_eq!((out.payload_type(), out.ssrc()), (100, ids().ssrc_sip));
        // callee → caller
        p.handle_rtp(
            now,
            40002,
            callee,
            &packet(0, 70, 3200, 4, &[0x66; 160]),
            &mut arena,
        );
        let t = p.poll_transmit(&mut buf, &arena).expect("relayed back");
        assert_eq!((t.socket, t.destination), (MediaSocket::Rtp(40000), caller));
        // a stranger on the caller's port is not heard, nor a format nobody agreed on
        let stranger: SocketAddr = "127.0.0.9:4000".parse().unwrap();
        p.handle_rtp(
            now,
            40000,
            stranger,
            &packet(0, 9, 480, 5, &[1; 160]),
            &mut arena,
        );
        p.handle_rtp(
            now,
            40000,
            caller,
            &packet(8, 10, 480, 9, &[1; 160]),
            &mut arena,
        );
        assert!(p.poll_transmit(&mut buf, &arena).is_none());
        assert_eq!(p.a.counters.refused, 2);
        assert_eq!((p.a.counters.rtp_in, p.b.counters.rtp_out), (2, 2));
    }

    #[test]
    fn a_silent_leg_is_found_and_a_holding_phone_gets_nothing() {
        let now = Instant::now();
        let mut arena = RelayArena::new(64 * 1024);
        let mut p = pair(now, remote("127.0.0.1:4000", &[(0, Codec::Pcmu)], None));
        p.rtp_timeout = Duration::from_secs(5);
        p.answer(now, remote("127.0.0.1:5000", &[(0, Codec::Pcmu)], None))
            .unwrap();
        assert_eq!(p.poll_timeout(), Some(now + Duration::from_secs(5)));
        let later = now + Duration::from_secs(3);
        let callee: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        p.handle_rtp(
            later,
            40002,
            callee,
            &packet(0, 1, 160, 4, &[0; 160]),
            &mut arena,
        );
        assert_eq!(p.silent_leg(now + Duration::from_secs(5)), Some(Side::A));
        // the caller holds (sendonly): it is not expected to be heard, nor sent to
        let mut hold = remote("127.0.0.1:4000", &[(0, Codec::Pcmu)], None);
        hold.direction = Direction::SendOnly;
        p.update(later, Side::A, hold);
        let mut buf = [0u8; 1500];
        p.handle_rtp(
            later,
            40002,
            callee,
            &packet(0, 2, 320, 4, &[0; 160]),
            &mut arena,
        );
        assert!(p.poll_transmit(&mut buf, &arena).is_none());
        assert_eq!(caller_code(407), 480);
        assert_eq!(caller_code(486), 486);
    }
}
