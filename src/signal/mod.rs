//! The browser protocol (docs/protocol.md): JSON call invitations over WebSocket, sans-IO.
//! [`protocol`] parses and builds the messages, [`token`] mints and checks login tokens,
//! [`hub`] keeps the sessions (logins, kicks, reconnection) and hands call requests up;
//! [`ice`] makes the STUN/TURN servers (and TURN credentials) a login gets.
pub mod hub;
pub mod ice;
pub mod protocol;
pub mod token;
