//! SIP behaviour: transactions (RFC 3261 §17), digest authentication (RFC 2617, RFC 7616 /
//! RFC 8760), the proxy account's registration, the built-in registrar, flood and scanner
//! limits, and the endpoint that ties them together.
pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod flood;
pub mod registrar;
pub mod rng;
pub mod transaction;
