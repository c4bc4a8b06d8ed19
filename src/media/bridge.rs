#![allow(missing_docs, unused)]
use super::codec::{Codec, CodecError};
use super::jitter::JitterConfig;
use std::time::Instant;
pub struct LegFormat {
    pub codec: Codec,
    pub payload_type: u8,
    pub dtmf_payload_type: Option<u8>,
    pub dtmf_clock: u32,
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
}
pub struct BridgeConfig {
    pub webrtc: LegFormat,
    pub sip: LegFormat,
    pub opus_complexity: u8,
    pub jitter: JitterConfig,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeMode {
    Relay,
    Transcode,
}
#[derive(Debug, Default, Clone, Copy)]
pub struct LegStats {
    pub lost: u64,
}
#[derive(Debug, Default, Clone, Copy)]
pub struct BridgeStats {
    pub webrtc: LegStats,
    pub sip: LegStats,
}
pub struct Bridge;
#[derive(Debug)]
pub struct PushError;
impl Bridge {
    pub fn new(cfg: BridgeConfig) -> Result<Bridge, CodecError> {
        todo!()
    }
    pub fn mode(&self) -> BridgeMode {
        todo!()
    }
    pub fn push_webrtc(&mut self, now: Instant, rtp: &[u8]) -> Result<(), PushError> {
        todo!()
    }
    pub fn push_sip(&mut self, now: Instant, rtp: &[u8]) -> Result<(), PushError> {
        todo!()
    }
    pub fn poll_sip(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        todo!()
    }
    pub fn poll_webrtc(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        todo!()
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    pub fn send_dtmf(&mut self, now: Instant, digits: &str) -> Result<(), PushError> {
        todo!()
    }
    pub fn poll_dtmf(&mut self) -> Option<char> {
        todo!()
    }
    pub fn stats(&self) -> BridgeStats {
        todo!()
    }
    pub fn poll_rtcp_sip(&mut self, now: Instant, ntp: u64, out: &mut [u8]) -> Option<usize> {
        todo!()
    }
    pub fn poll_rtcp_webrtc(&mut self, now: Instant, ntp: u64, out: &mut [u8]) -> Option<usize> {
        todo!()
    }
    pub fn handle_rtcp_sip(&mut self, now: Instant, rtcp: &[u8]) {
        todo!()
    }
    pub fn handle_rtcp_webrtc(&mut self, now: Instant, rtcp: &[u8]) {
        todo!()
    }
}
