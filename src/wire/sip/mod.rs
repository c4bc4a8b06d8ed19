//! SIP message parsing and building (placeholder, filled by the parser work).
