//! Digest authentication (placeholder).
