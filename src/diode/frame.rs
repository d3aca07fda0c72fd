//! Diode frames, version 1 (`hw/FRAMES.md`): building them and the reference verifier.
//!
//! [`verify`] is written as the same byte-at-a-time state machine the HDL verifier
//! (`hw/rtl/frame_verifier.v`) implements — a bounded stack of containers, one previous key
//! per level, an integer accumulator — so the two can be compared line by line with the spec.
//! It returns the first failing check in the spec's order ([`Reason`]).
use sha2::{Digest, Sha256};

use super::charclass;

/// `GWDF`.
pub const MAGIC: [u8; 4] = *b"GWDF";
/// The only version.
pub const VERSION: u8 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 64;
/// Smallest payload (`{}`).
pub const MIN_PAYLOAD: u32 = 2;
/// Largest payload (2^24 bytes).
pub const MAX_PAYLOAD: u32 = 1 << 24;
/// Most open objects and arrays.
pub const MAX_DEPTH: usize = 32;
/// Longest key in bytes.
pub const MAX_KEY: usize = 255;
/// Largest integer magnitude (2^53 − 1).
pub const MAX_INT: u64 = (1 << 53) - 1;

/// The allow-listed frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Request = 1,
    Response = 2,
    Heartbeat = 3,
}

impl FrameType {
    pub fn from_u8(b: u8) -> Option<FrameType> {
        match b {
            1 => Some(FrameType::Request),
            2 => Some(FrameType::Response),
            3 => Some(FrameType::Heartbeat),
            _ => None,
        }
    }
}

/// A verifier's answer (`hw/FRAMES.md`, "Reason codes"); the discriminant is the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    Accept = 0,
    Truncated = 1,
    BadMagic = 2,
    BadVersion = 3,
    BadType = 4,
    BadFlags = 5,
    BadSession = 6,
    BadLength = 7,
    BadReserved = 8,
    Trailing = 9,
    BadUtf8 = 10,
    BadChar = 11,
    NotCanonical = 12,
    Limit = 13,
    BadJson = 14,
    BadHash = 15,
}

impl Reason {
    /// Every reason, by code.
    pub const ALL: [Reason; 16] = [
        Reason::Accept,
        Reason::Truncated,
        Reason::BadMagic,
        Reason::BadVersion,
        Reason::BadType,
        Reason::BadFlags,
        Reason::BadSession,
        Reason::BadLength,
        Reason::BadReserved,
        Reason::Trailing,
        Reason::BadUtf8,
        Reason::BadChar,
        Reason::NotCanonical,
        Reason::Limit,
        Reason::BadJson,
        Reason::BadHash,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Option<Reason> {
        Reason::ALL.get(c as usize).copied()
    }

    /// The spec's name (`BAD_HASH`, …).
    pub fn name(self) -> &'static str {
        match self {
            Reason::Accept => "ACCEPT",
            Reason::Truncated => "TRUNCATED",
            Reason::BadMagic => "BAD_MAGIC",
            Reason::BadVersion => "BAD_VERSION",
            Reason::BadType => "BAD_TYPE",
            Reason::BadFlags => "BAD_FLAGS",
            Reason::BadSession => "BAD_SESSION",
            Reason::BadLength => "BAD_LENGTH",
            Reason::BadReserved => "BAD_RESERVED",
            Reason::Trailing => "TRAILING",
            Reason::BadUtf8 => "BAD_UTF8",
            Reason::BadChar => "BAD_CHAR",
            Reason::NotCanonical => "NOT_CANONICAL",
            Reason::Limit => "LIMIT",
            Reason::BadJson => "BAD_JSON",
            Reason::BadHash => "BAD_HASH",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The fixed header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub frame_type: FrameType,
    pub session: u64,
    pub sequence: u64,
}

/// Encodes a frame (header with the payload's length and hash, then the payload). The payload
/// is not checked here: [`verify`] the result where that matters.
pub fn encode(h: &Header, payload: &[u8]) -> Vec<u8> {
    encode_raw(
        h.frame_type as u8,
        h.session,
        h.sequence,
        payload.len() as u32,
        &Sha256::digest(payload).into(),
        payload,
    )
}

/// Encodes a frame with every header field given (for test vectors).
pub fn encode_raw(
    frame_type: u8,
    session: u64,
    sequence: u64,
    payload_length: u32,
    sha256: &[u8; 32],
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_LEN + payload.len());
    f.extend_from_slice(&MAGIC);
    f.push(VERSION);
    f.push(frame_type);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&session.to_be_bytes());
    f.extend_from_slice(&sequence.to_be_bytes());
    f.extend_from_slice(&payload_length.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(sha256);
    f.extend_from_slice(payload);
    f
}

/// The header of a frame that [`verify`] accepted.
pub fn header(frame: &[u8]) -> Option<Header> {
    if frame.len() < HEADER_LEN {
        return None;
    }
    Some(Header {
        frame_type: FrameType::from_u8(frame[5])?,
        session: u64::from_be_bytes(frame[8..16].try_into().ok()?),
        sequence: u64::from_be_bytes(frame[16..24].try_into().ok()?),
    })
}

/// Verifies one frame: [`Reason::Accept`] or the first failing check (`hw/FRAMES.md`).
pub fn verify(frame: &[u8]) -> Reason {
    if frame.len() < HEADER_LEN {
        return Reason::Truncated;
    }
    if frame[0..4] != MAGIC {
        return Reason::BadMagic;
    }
    if frame[4] != VERSION {
        return Reason::BadVersion;
    }
    if FrameType::from_u8(frame[5]).is_none() {
        return Reason::BadType;
    }
    if frame[6..8] != [0, 0] {
        return Reason::BadFlags;
    }
    if frame[8..16] == [0; 8] {
        return Reason::BadSession;
    }
    let len = u32::from_be_bytes([frame[24], frame[25], frame[26], frame[27]]);
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Reason::BadLength;
    }
    if frame[28..32] != [0; 4] {
        return Reason::BadReserved;
    }
    let want = HEADER_LEN + len as usize;
    if frame.len() < want {
        return Reason::Truncated;
    }
    if frame.len() > want {
        return Reason::Trailing;
    }
    let payload = &frame[HEADER_LEN..];
    let r = check_payload(payload);
    if r != Reason::Accept {
        return r;
    }
    if Sha256::digest(payload).as_slice() != &frame[32..64] {
        return Reason::BadHash;
    }
    Reason::Accept
}

/// Checks a payload's syntax (`hw/FRAMES.md`, "Payload"): [`Reason::Accept`] or the first
/// failing check.
pub fn check_payload(payload: &[u8]) -> Reason {
    let mut utf8 = Utf8::default();
    let mut json = Json::default();
    let mut i = 0;
    while i < payload.len() {
        let b = payload[i];
        // Fast path, same answers: inside a string value, a run of printable ASCII other than
        // `"` and `\` changes nothing but the position (printable ASCII is allowed, see the
        // charclass tests), so it is skipped without decoding or table lookups.
        if utf8.need == 0 && json.state == (State::Str { escape: false }) {
            let run = payload[i..]
                .iter()
                .take_while(|&&c| (0x20..0x7F).contains(&c) && c != b'"' && c != b'\\')
                .count();
            if run > 0 {
                i += run;
                continue;
            }
        }
        i += 1;
        let cp = match utf8.push(b) {
            Err(()) => return Reason::BadUtf8,
            Ok(None) => continue,
            Ok(Some(cp)) => cp,
        };
        if !charclass::allowed(cp) {
            return Reason::BadChar;
        }
        if let Err(r) = json.push(cp) {
            return r;
        }
    }
    if utf8.need != 0 {
        return Reason::BadUtf8;
    }
    if !json.done() {
        return Reason::BadJson;
    }
    Reason::Accept
}

/// Byte-wise UTF-8 decoder that reports an error at the byte that makes a sequence invalid.
#[derive(Debug, Default)]
struct Utf8 {
    /// Continuation bytes still expected.
    need: u8,
    cp: u32,
    /// Allowed range of the next continuation byte (narrowed after E0, ED, F0, F4).
    lo: u8,
    hi: u8,
}

impl Utf8 {
    fn push(&mut self, b: u8) -> Result<Option<u32>, ()> {
        if self.need == 0 {
            let (need, cp, lo, hi) = match b {
                0x00..=0x7F => return Ok(Some(b as u32)),
                0xC2..=0xDF => (1, (b & 0x1F) as u32, 0x80, 0xBF),
                0xE0 => (2, 0, 0xA0, 0xBF),
                0xE1..=0xEC | 0xEE..=0xEF => (2, (b & 0x0F) as u32, 0x80, 0xBF),
                0xED => (2, 0x0D, 0x80, 0x9F),
                0xF0 => (3, 0, 0x90, 0xBF),
                0xF1..=0xF3 => (3, (b & 0x07) as u32, 0x80, 0xBF),
                0xF4 => (3, 0x04, 0x80, 0x8F),
                _ => return Err(()),
            };
            *self = Utf8 { need, cp, lo, hi };
            return Ok(None);
        }
        if b < self.lo || b > self.hi {
            return Err(());
        }
        self.cp = (self.cp << 6) | (b & 0x3F) as u32;
        self.need -= 1;
        self.lo = 0x80;
        self.hi = 0xBF;
        Ok((self.need == 0).then_some(self.cp))
    }
}

/// Where the grammar is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Before the top-level `{`.
    #[default]
    Start,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    ObjectKey,
    /// Inside a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// A value is expected (after `:`, `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// Inside a string value; `escape` after a backslash.
    Str { escape: bool },
    /// In an integer: `minus` right after `-`, `zero` after a leading `0`.
    Num { minus: bool, zero: bool },
    /// In a literal: which one and how many characters matched.
    Lit { word: &'static [u8], at: u8 },
    /// After a value: `,` or the container's close.
    After,
    /// After the top-level `}`.
    Done,
}

/// The canonical-JSON state machine over code points.
#[derive(Debug, Default)]
struct Json {
    state: State,
    /// Open containers: `true` = object.
    stack: Vec<bool>,
    /// Per open object level: the previous key (empty `Vec` and `None` before the first).
    prev: Vec<Option<Vec<u8>>>,
    /// The key being read.
    key: Vec<u8>,
    /// Integer magnitude so far.
    int: u64,
}

impl Json {
    fn done(&self) -> bool {
        self.state == State::Done
    }

    fn open(&mut self, object: bool) -> Result<(), Reason> {
        if self.stack.len() == MAX_DEPTH {
            return Err(Reason::Limit);
        }
        self.stack.push(object);
        self.prev.push(None);
        self.state = if object {
            State::ObjectFirst
        } else {
            State::ArrayFirst
        };
        Ok(())
    }

    fn close(&mut self) {
        self.stack.pop();
        self.prev.pop();
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::After
        };
    }

    /// A value starts with `c` (state `Value` or `ArrayFirst`).
    fn value(&mut self, c: u32) -> Result<(), Reason> {
        match c {
            0x7B => self.open(true),
            0x5B => self.open(false),
            0x22 => {
                self.state = State::Str { escape: false };
                Ok(())
            }
            0x2D => {
                self.int = 0;
                self.state = State::Num {
                    minus: true,
                    zero: false,
                };
                Ok(())
            }
            0x30 => {
                self.int = 0;
                self.state = State::Num {
                    minus: false,
                    zero: true,
                };
                Ok(())
            }
            0x31..=0x39 => {
                self.int = (c - 0x30) as u64;
                self.state = State::Num {
                    minus: false,
                    zero: false,
                };
                Ok(())
            }
            0x74 => self.literal(b"true"),
            0x66 => self.literal(b"false"),
            0x6E => self.literal(b"null"),
            _ => Err(Reason::BadJson),
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Reason> {
        self.state = State::Lit { word, at: 1 };
        Ok(())
    }

    /// After a value: `,` or the close of the current container.
    fn after(&mut self, c: u32) -> Result<(), Reason> {
        let object = *self.stack.last().expect("inside a container");
        match (c, object) {
            (0x2C, true) => self.state = State::ObjectKey,
            (0x2C, false) => self.state = State::Value,
            (0x7D, true) | (0x5D, false) => self.close(),
            _ => return Err(Reason::BadJson),
        }
        Ok(())
    }

    fn push(&mut self, c: u32) -> Result<(), Reason> {
        // Whitespace outside strings: a space (controls never get here).
        let in_string = matches!(self.state, State::Str { .. } | State::Key);
        if c == 0x20 && !in_string {
            return Err(Reason::NotCanonical);
        }
        match self.state {
            State::Start => match c {
                0x7B => self.open(true),
                _ => Err(Reason::BadJson),
            },
            State::ObjectFirst | State::ObjectKey => match c {
                0x22 => {
                    self.key.clear();
                    self.state = State::Key;
                    Ok(())
                }
                0x7D if self.state == State::ObjectFirst => {
                    self.close();
                    Ok(())
                }
                _ => Err(Reason::BadJson),
            },
            State::Key => match c {
                0x5C => Err(Reason::NotCanonical),
                0x22 => {
                    let slot = self.prev.last_mut().expect("inside an object");
                    if slot.as_ref().is_some_and(|p| self.key <= *p) {
                        return Err(Reason::NotCanonical);
                    }
                    *slot = Some(std::mem::take(&mut self.key));
                    self.state = State::Colon;
                    Ok(())
                }
                _ => {
                    let mut buf = [0u8; 4];
                    let ch = char::from_u32(c).expect("decoded scalar value");
                    for &b in ch.encode_utf8(&mut buf).as_bytes() {
                        if self.key.len() == MAX_KEY {
                            return Err(Reason::Limit);
                        }
                        self.key.push(b);
                    }
                    Ok(())
                }
            },
            State::Colon => match c {
                0x3A => {
                    self.state = State::Value;
                    Ok(())
                }
                _ => Err(Reason::BadJson),
            },
            State::Value => self.value(c),
            State::ArrayFirst => match c {
                0x5D => {
                    self.close();
                    Ok(())
                }
                _ => self.value(c),
            },
            State::Str { escape: false } => {
                match c {
                    0x5C => self.state = State::Str { escape: true },
                    0x22 => self.state = State::After,
                    _ => {}
                }
                Ok(())
            }
            State::Str { escape: true } => match c {
                0x22 | 0x5C => {
                    self.state = State::Str { escape: false };
                    Ok(())
                }
                // `/ b f n r t u`: valid JSON escapes, but not the canonical spelling.
                0x2F | 0x62 | 0x66 | 0x6E | 0x72 | 0x74 | 0x75 => Err(Reason::NotCanonical),
                _ => Err(Reason::BadJson),
            },
            State::Num { minus, zero } => match c {
                0x30..=0x39 if minus => {
                    if c == 0x30 {
                        return Err(Reason::NotCanonical); // -0
                    }
                    self.int = (c - 0x30) as u64;
                    self.state = State::Num {
                        minus: false,
                        zero: false,
                    };
                    Ok(())
                }
                0x30..=0x39 if zero => Err(Reason::NotCanonical), // leading zero
                0x30..=0x39 => {
                    self.int = self.int * 10 + (c - 0x30) as u64;
                    if self.int > MAX_INT {
                        return Err(Reason::Limit);
                    }
                    Ok(())
                }
                _ if minus => Err(Reason::BadJson),
                0x2E | 0x65 | 0x45 => Err(Reason::NotCanonical),
                _ => self.after(c),
            },
            State::Lit { word, at } => {
                if (at as usize) < word.len() {
                    if c == word[at as usize] as u32 {
                        self.state = State::Lit { word, at: at + 1 };
                        Ok(())
                    } else {
                        Err(Reason::BadJson)
                    }
                } else {
                    self.after(c)
                }
            }
            State::After => self.after(c),
            State::Done => Err(Reason::BadJson),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Header {
        Header {
            frame_type: FrameType::Request,
            session: 7,
            sequence: 1,
        }
    }

    fn p(s: &str) -> Reason {
        check_payload(s.as_bytes())
    }

    #[test]
    fn a_well_formed_frame_is_accepted_and_its_header_read() {
        let payload = br#"{"a":[1,-2,true,false,null,"x\"y\\z"],"b":{},"c":"\u00e9"}"#;
        // `\u00e9` is written as itself in canonical JSON: this payload must be refused.
        assert_eq!(check_payload(payload), Reason::NotCanonical);
        let payload = "{\"a\":[1,-2,true,false,null,\"x\\\"y\\\\z\"],\"b\":{},\"c\":\"é한😀\"}";
        let f = encode(&h(), payload.as_bytes());
        assert_eq!(verify(&f), Reason::Accept);
        assert_eq!(header(&f), Some(h()));
    }

    #[test]
    fn header_checks_in_field_order() {
        let f = encode(&h(), b"{}");
        assert_eq!(verify(&f[..63]), Reason::Truncated);
        let mut g = f.clone();
        g[0] = b'X';
        g[4] = 9; // also a bad version: the magic comes first
        assert_eq!(verify(&g), Reason::BadMagic);
        let set = |i: usize, v: u8| {
            let mut g = f.clone();
            g[i] = v;
            verify(&g)
        };
        assert_eq!(set(4, 2), Reason::BadVersion);
        assert_eq!(set(5, 0), Reason::BadType);
        assert_eq!(set(5, 4), Reason::BadType);
        assert_eq!(set(7, 1), Reason::BadFlags);
        assert_eq!(set(15, 0), Reason::BadSession);
        assert_eq!(set(27, 1), Reason::BadLength);
        assert_eq!(set(24, 2), Reason::BadLength);
        assert_eq!(set(31, 1), Reason::BadReserved);
        assert_eq!(set(40, 0), Reason::BadHash);
        let mut long = f.clone();
        long.push(b'}');
        assert_eq!(verify(&long), Reason::Trailing);
        assert_eq!(verify(&f[..65]), Reason::Truncated);
    }

    #[test]
    fn payload_rules_follow_the_spec() {
        use Reason::*;
        for (s, r) in [
            ("{}", Accept),
            ("{\"\":0}", Accept),
            ("{\"a\":9007199254740991}", Accept),
            ("{\"a\":-9007199254740991}", Accept),
            ("{\"a\":9007199254740992}", Limit),
            ("{\"a\":-9007199254740992}", Limit),
            ("{\"a\":01}", NotCanonical),
            ("{\"a\":-0}", NotCanonical),
            ("{\"a\":1.5}", NotCanonical),
            ("{\"a\":1e5}", NotCanonical),
            ("{\"a\":-x}", BadJson),
            ("{\"a\":-}", BadJson),
            ("{\"a\":+1}", BadJson),
            ("{\"a\":1 }", NotCanonical),
            (" {}", NotCanonical),
            ("{} ", NotCanonical),
            ("{}x", BadJson),
            ("{}{}", BadJson),
            ("[]", BadJson),
            ("{\"b\":1,\"a\":2}", NotCanonical),
            ("{\"a\":1,\"a\":2}", NotCanonical),
            ("{\"a\":1,\"ab\":2}", Accept),
            ("{\"ab\":1,\"a\":2}", NotCanonical),
            ("{\"a\":{\"b\":1},\"b\":{\"a\":1}}", Accept),
            ("{\"a\\\"\":1}", NotCanonical),
            ("{\"a\":\"\\n\"}", NotCanonical),
            ("{\"a\":\"\\u0041\"}", NotCanonical),
            ("{\"a\":\"\\/\"}", NotCanonical),
            ("{\"a\":\"\\x\"}", BadJson),
            ("{\"a\":\"\t\"}", BadChar),
            ("{\"a\":\"e\u{301}\"}", BadChar),
            ("{\"a\":\"\u{212B}\"}", BadChar),
            ("{\"a\":tru}", BadJson),
            ("{\"a\":nul", BadJson),
            ("{\"a\":truex}", BadJson),
            ("{\"a\":[1,]}", BadJson),
            ("{\"a\":1,}", BadJson),
            ("{,}", BadJson),
            ("{\"a\"}", BadJson),
            ("{\"a\":[]}", Accept),
            ("{", BadJson),
            ("{\"a\":\"é\"}", Accept),
            ("{\u{a0}}", BadJson),
        ] {
            assert_eq!(p(s), r, "{s:?}");
        }
        // Depth: 32 open containers are fine, the 33rd is LIMIT.
        let deep = |n: usize| format!("{}{}{}", "{\"a\":".repeat(n - 1), "{}", "}".repeat(n - 1));
        assert_eq!(p(&deep(32)), Accept);
        assert_eq!(p(&deep(33)), Limit);
        // Key length: 255 bytes fine, 256 LIMIT (even when also out of order).
        assert_eq!(p(&format!("{{\"{}\":1}}", "k".repeat(255))), Accept);
        assert_eq!(p(&format!("{{\"{}\":1}}", "k".repeat(256))), Limit);
        assert_eq!(p(&format!("{{\"z\":1,\"{}\":1}}", "a".repeat(300))), Limit);
    }

    #[test]
    fn utf8_errors_are_reported_at_the_offending_byte() {
        use Reason::*;
        let b = |bytes: &[u8]| {
            let mut v = b"{\"a\":\"".to_vec();
            v.extend_from_slice(bytes);
            v.extend_from_slice(b"\"}");
            check_payload(&v)
        };
        assert_eq!(b(&[0xC3, 0xA9]), Accept);
        for bad in [
            &[0x80][..],
            &[0xC0, 0x80],
            &[0xC1, 0xBF],
            &[0xE0, 0x80, 0x80],
            &[0xED, 0xA0, 0x80],
            &[0xF0, 0x80, 0x80, 0x80],
            &[0xF4, 0x90, 0x80, 0x80],
            &[0xF5, 0x80, 0x80, 0x80],
            &[0xFF],
            &[0xC3, 0x41],
        ] {
            assert_eq!(b(bad), BadUtf8, "{bad:x?}");
        }
        // Ending inside a sequence.
        assert_eq!(check_payload(b"{\"a\":\"\xC3"), BadUtf8);
        // A key's length counts whole code points: a two-byte character as the 256th byte is
        // LIMIT, but an invalid sequence there is BAD_UTF8 (judged at its bad byte first).
        let key = |tail: &[u8]| {
            let mut v = b"{\"".to_vec();
            v.extend(std::iter::repeat_n(b'k', 255));
            v.extend_from_slice(tail);
            v.extend_from_slice(b"\":1}");
            check_payload(&v)
        };
        assert_eq!(key(&[0xC3, 0xA9]), Limit);
        assert_eq!(key(&[0xC3, 0x41]), BadUtf8);
    }
}
