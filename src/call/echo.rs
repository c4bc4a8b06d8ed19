//! One echo call: the browser's side and the echo media pipeline between its SRTP
//! contexts (Opus → PCM → Opus through the transcoder). No allocation per packet.

use std::net::SocketAddr;
use std::time::Instant;

use super::browser::{BrowserSetup, BrowserSide, SetupError};
use super::{MediaTransmit, Step};
use crate::media::codec::SampleRate;
use crate::media::echo::{Echo, EchoConfig};
use crate::sdp::Codec;

/// What an echo call needs besides the browser side's setup.
pub struct EchoSetup<'a> {
    pub browser: BrowserSetup<'a>,
    pub sequence: u16,
    pub timestamp: u32,
    pub opus_complexity: u8,
}

pub struct EchoCall {
    browser: BrowserSide,
    echo: Echo,
}

impl EchoCall {
    /// Negotiates the offer (Opus only: the echo runs Opus → PCM → Opus) and builds the
    /// leg and pipeline; returns the SDP answer too.
    pub fn new(s: EchoSetup<'_>) -> Result<(EchoCall, String), SetupError> {
        let ssrc = s.browser.ssrc;
        let opus_only: Vec<Codec> = s
            .browser
            .codecs
            .iter()
            .copied()
            .filter(|c| *c == Codec::Opus)
            .collect();
        let (browser, answer) = BrowserSide::new(BrowserSetup {
            codecs: &opus_only,
            ..s.browser
        })?;
        let echo = Echo::new(EchoConfig {
            payload_type: browser.negotiated().payload_type,
            pcm_rate: SampleRate::Hz48000,
            opus_complexity: s.opus_complexity,
            ssrc,
            initial_sequence: s.sequence,
            initial_timestamp: s.timestamp,
        })
        .map_err(SetupError::Codec)?;
        Ok((EchoCall { browser, echo }, answer))
    }

    pub fn browser_ref(&self) -> &BrowserSide {
        &self.browser
    }

    pub fn browser(&mut self) -> &mut BrowserSide {
        &mut self.browser
    }

    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        data: &mut [u8],
    ) -> Step {
        let echo = &mut self.echo;
        self.browser
            .handle_datagram(now, from, local, data, &mut |now, packet, rtcp| {
                if !rtcp {
                    let _ = echo.push_rtp(now, packet);
                }
            })
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Step {
        self.browser.handle_timeout(now)
    }

    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<MediaTransmit> {
        if let Some(t) = self.browser.poll_setup(buf) {
            return Some(t);
        }
        if !self.browser.can_send() {
            return None;
        }
        let room = BrowserSide::room(buf.len())?;
        // Bounded: the echo yields at most what is due at `now`.
        for _ in 0..16 {
            let n = self.echo.poll_rtp(now, &mut buf[..room])?;
            if let Some(t) = self.browser.protect(buf, n, false) {
                return Some(t);
            }
        }
        None
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let leg = self.browser.poll_timeout();
        // The echo's 20 ms cadence matters only once it can send.
        let echo = if self.browser.can_send() {
            self.echo.poll_timeout()
        } else {
            None
        };
        super::earliest(leg, echo)
    }

    pub fn summary(&self) -> String {
        let s = self.echo.stats();
        let c = self.browser.counters();
        format!(
            "RTP in {} out {}, RTCP in {}, SRTP errors {}, PLC {} FEC {}",
            c.rtp_in, c.rtp_out, c.rtcp_in, c.srtp_errors, s.plc_frames, s.fec_frames
        )
    }
}
