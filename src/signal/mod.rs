//! The browser protocol (docs/protocol.md): JSON call invitations over WebSocket, sans-IO.
//! [`protocol`] parses and builds the messages, [`token`] mints and checks login tokens,
//! [`hub`] keeps the sessions (logins, kicks, reconnection) and hands call requests up.
pub mod hub;
pub mod protocol;
pub mod token;
