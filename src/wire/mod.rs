pub mod rtcp;
pub mod rtp;
pub mod sip;
pub mod stun;
