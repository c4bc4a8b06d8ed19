pub mod sip;
pub mod stun;
