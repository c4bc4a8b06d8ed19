//! Header field names (RFC 3261 §7.3, §20) with their compact forms (§7.3.3 and the IANA
//! registry). Names compare case-insensitively; compact forms map to the full name.

use core::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident = $canonical:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Parsed names are canonical: a compact form or any spelling of
        /// a known name becomes its variant; every other name is [`HeaderName::Other`] as
        /// received. Equality is case-insensitive and maps compact forms, also for `Other`.
        #[derive(Debug, Clone, Copy)]
        pub enum HeaderName<'a> {
            $( $(#[$doc])* $variant, )*
            /// Any other header name, as received.
            Other(&'a str),
        }

        impl<'a> HeaderName<'a> {
            /// Maps a received header name (any case, full or compact) to its variant.
            pub fn new(name: &'a str) -> HeaderName<'a> {
                if name.len() == 1 {
                    let c = name.as_bytes()[0].to_ascii_lowercase();
                    $( $( if c == $compact { return HeaderName::$variant; } )? )*
                    return HeaderName::Other(name);
                }
                $( if name.eq_ignore_ascii_case($canonical) { return HeaderName::$variant; } )*
                HeaderName::Other(name)
            }

            /// The canonical spelling (`Call-ID`, `CSeq`, `WWW-Authenticate`, ...).
            pub fn as_str(&self) -> &'a str {
                match self {
                    $( HeaderName::$variant => $canonical, )*
                    HeaderName::Other(s) => s,
                }
            }

            /// The compact form, when RFC 3261 or an extension defines one.
            pub fn compact(&self) -> Option<char> {
                match self {
                    $( $( HeaderName::$variant => Some($compact as char), )? )*
                    _ => None,
                }
            }
        }
    };
}

header_names! {
    Via = "Via", b'v';
    From = "From", b'f';
    To = "To", b't';
    CallId = "Call-ID", b'i';
    CSeq = "CSeq";
    Contact = "Contact", b'm';
    MaxForwards = "Max-Forwards";
    Expires = "Expires";
    ContentLength = "Content-Length", b'l';
    ContentType = "Content-Type", b'c';
    ContentEncoding = "Content-Encoding", b'e';
    ContentDisposition = "Content-Disposition";
    ContentLanguage = "Content-Language";
    Authorization = "Authorization";
    ProxyAuthorization = "Proxy-Authorization";
    WwwAuthenticate = "WWW-Authenticate";
    ProxyAuthenticate = "Proxy-Authenticate";
    AuthenticationInfo = "Authentication-Info";
    Allow = "Allow";
    AllowEvents = "Allow-Events", b'u';
    Accept = "Accept";
    AcceptEncoding = "Accept-Encoding";
    AcceptLanguage = "Accept-Language";
    Supported = "Supported", b'k';
    Require = "Require";
    ProxyRequire = "Proxy-Require";
    Unsupported = "Unsupported";
    UserAgent = "User-Agent";
    Server = "Server";
    Route = "Route";
    RecordRoute = "Record-Route";
    Event = "Event", b'o';
    Subject = "Subject", b's';
    Date = "Date";
    MinExpires = "Min-Expires";
    RetryAfter = "Retry-After";
    Warning = "Warning";
    Timestamp = "Timestamp";
    ReferTo = "Refer-To", b'r';
    ReferredBy = "Referred-By", b'b';
    SessionExpires = "Session-Expires", b'x';
    MinSe = "Min-SE";
    SubscriptionState = "Subscription-State";
    RSeq = "RSeq";
    RAck = "RAck";
    Path = "Path";
    Privacy = "Privacy";
    PAssertedIdentity = "P-Asserted-Identity";
    MimeVersion = "MIME-Version";
    Organization = "Organization";
    Priority = "Priority";
    ReplyTo = "Reply-To";
    InReplyTo = "In-Reply-To";
    AlertInfo = "Alert-Info";
    CallInfo = "Call-Info";
    ErrorInfo = "Error-Info";
}

impl PartialEq for HeaderName<'_> {
    fn eq(&self, other: &HeaderName<'_>) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => {
                match (HeaderName::new(a), HeaderName::new(b)) {
                    (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
                    (x, y) => core::mem::discriminant(&x) == core::mem::discriminant(&y),
                }
            }
            // an Other built by hand may still name a known header
            (HeaderName::Other(a), known) | (known, HeaderName::Other(a)) => {
                let mapped = HeaderName::new(a);
                !matches!(mapped, HeaderName::Other(_))
                    && core::mem::discriminant(&mapped) == core::mem::discriminant(known)
            }
            _ => core::mem::discriminant(self) == core::mem::discriminant(other),
        }
    }
}

impl Eq for HeaderName<'_> {}

impl fmt::Display for HeaderName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(HeaderName::new("v"), HeaderName::Via);
        assert_eq!(HeaderName::new("V"), HeaderName::Via);
        assert_eq!(HeaderName::new("i").as_str(), "Call-ID");
        assert_eq!(HeaderName::new("cseq").as_str(), "CSeq");
        assert_eq!(HeaderName::new("MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(HeaderName::new("l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::new("X-Number"), HeaderName::Other("x-number"));
        assert_ne!(HeaderName::new("X-Number"), HeaderName::Other("X-Numbers"));
        assert_eq!(HeaderName::Other("m"), HeaderName::Contact);
        assert_eq!(HeaderName::Contact, HeaderName::Other("CONTACT"));
        assert_ne!(HeaderName::To, HeaderName::From);
        assert_ne!(HeaderName::Other("q"), HeaderName::Other("z"));
        assert_eq!(HeaderName::Other("v"), HeaderName::Other("VIA"));
        assert_eq!(HeaderName::Contact.compact(), Some('m'));
        assert_eq!(HeaderName::WwwAuthenticate.to_string(), "WWW-Authenticate");
    }
}
