#![allow(missing_docs, unused)]
use super::answer::Direction;
use std::net::SocketAddr;
pub struct RtpDescription<'a> {
    pub addr: SocketAddr,
    pub codecs: &'a [(u8, crate::sdp::Codec)],
    pub telephone_event: Option<u8>,
    pub direction: Direction,
    pub session_id: u64,
    pub version: u64,
    pub ptime: u8,
}
pub fn build_rtp_sdp(d: &RtpDescription<'_>) -> String {
    todo!()
}
#[derive(Debug, Clone)]
pub struct RemoteRtp {
    pub addr: SocketAddr,
    pub codecs: Vec<(u8, crate::sdp::Codec)>,
    pub telephone_event: Option<u8>,
    pub direction: Direction,
    pub ptime: Option<u8>,
}
pub fn parse_rtp_sdp(sdp: &str) -> Result<RemoteRtp, crate::sdp::Error> {
    todo!()
}
