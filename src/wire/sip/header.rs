//! Header field names (RFC 3261 §7.3, §20) with their compact forms (§7.3.3 and the IANA
//! registry). Names compare case-insensitively; compact forms map to the full name.

use core::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident = $canonical:literal $(, $compact:literal)? ;)*) => {
        /// Dense numbers of the known names (the order of [`KNOWN`]).
        #[repr(u8)]
        #[derive(Clone, Copy)]
        enum KnownIndex {
            $( $variant, )*
        }

        /// Every known name, indexed by [`HeaderName::index`].
        const KNOWN: &[HeaderName<'static>] = &[ $( HeaderName::$variant, )* ];

        /// The canonical spellings, in the same order.
        const SPELLINGS: &[&str] = &[ $( $canonical, )* ];

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
                // one probe of a hash table built at compile time, usually one comparison
                let mut slot = name_hash(name.as_bytes());
                // bounded: the table is never full, so an empty slot ends every probe run
                for _ in 0..TABLE_SIZE {
                    let entry = NAME_TABLE[slot];
                    if entry == EMPTY {
                        break;
                    }
                    if let (Some(known), Some(spelling)) =
                        (KNOWN.get(usize::from(entry)), SPELLINGS.get(usize::from(entry)))
                        && name.eq_ignore_ascii_case(spelling)
                    {
                        return *known;
                    }
                    slot = (slot + 1) % TABLE_SIZE;
                }
                HeaderName::Other(name)
            }

            /// A dense number for a known name, [`HeaderName::OTHER_INDEX`] for `Other`
            /// (compact storage in [`super::Message`]).
            pub(crate) const fn index(&self) -> u8 {
                match self {
                    $( HeaderName::$variant => KnownIndex::$variant as u8, )*
                    HeaderName::Other(_) => Self::OTHER_INDEX,
                }
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

const TABLE_SIZE: usize = 256;
const EMPTY: u8 = u8::MAX;

/// Case-insensitive hash of a header name over its length and three of its letters.
const fn name_hash(name: &[u8]) -> usize {
    let n = name.len();
    if n == 0 {
        return 0;
    }
    let first = (name[0] | 0x20) as usize;
    let last = (name[n - 1] | 0x20) as usize;
    let mid = (name[n / 2] | 0x20) as usize;
    (n * 131 + first * 31 + last * 7 + mid * 3) % TABLE_SIZE
}

/// Open-addressing table from [`name_hash`] to the index of a known name.
static NAME_TABLE: [u8; TABLE_SIZE] = {
    let mut table = [EMPTY; TABLE_SIZE];
    let mut i = 0;
    while i < SPELLINGS.len() {
        let mut slot = name_hash(SPELLINGS[i].as_bytes());
        while table[slot] != EMPTY {
            slot = (slot + 1) % TABLE_SIZE;
        }
        table[slot] = i as u8;
        i += 1;
    }
    table
};

impl HeaderName<'_> {
    pub(crate) const OTHER_INDEX: u8 = u8::MAX;

    /// The known name with this [`HeaderName::index`].
    pub(crate) fn from_index(index: u8) -> Option<HeaderName<'static>> {
        KNOWN.get(usize::from(index)).copied()
    }

    /// The index after mapping an `Other` spelling of a known name (`Other("v")` is Via).
    pub(crate) fn canonical_index(&self) -> u8 {
        match self {
            HeaderName::Other(s) => HeaderName::new(s).index(),
            known => known.index(),
        }
    }
}

impl PartialEq for HeaderName<'_> {
    fn eq(&self, other: &HeaderName<'_>) -> bool {
        let (a, b) = (self.canonical_index(), other.canonical_index());
        a == b && (a != Self::OTHER_INDEX || self.as_str().eq_ignore_ascii_case(other.as_str()))
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
        for (i, known) in KNOWN.iter().enumerate() {
            assert_eq!(usize::from(known.index()), i);
            assert_eq!(HeaderName::new(known.as_str()).index(), known.index());
            assert_eq!(HeaderName::from_index(known.index()), Some(*known));
        }
        assert!(KNOWN.len() < usize::from(HeaderName::OTHER_INDEX));
        assert_eq!(
            HeaderName::Other("V").canonical_index(),
            HeaderName::Via.index()
        );
    }
}
