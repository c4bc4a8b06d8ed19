//! The browser protocol (docs/protocol.md): JSON call invitations over WebSocket, sans-IO.
//! [`protocol`] parses and builds the messages, [`token`] mints and checks login tokens,
//! [`hub`] keeps the sessions (logins, kicks, reconnection) and hands call requests up;
//! [`ice`] makes the STUN/TURN servers (and TURN credentials) a login gets; [`sip_ws`]
//! speaks SIP over WebSocket (RFC 7118) to JsSIP/SIP.js clients as app users.
pub mod hub;
pub mod ice;
pub mod protocol;
pub mod sip_ws;
pub mod token;
