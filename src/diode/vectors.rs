//! Test vectors for the frame verifiers (`hw/FRAMES.md`, "Test vectors").
//!
//! Every vector's expected reason comes from how the generator built it — a valid frame, or a
//! valid frame with exactly one defect placed so that it is the first failing check — never
//! from running a verifier. The crafted set spells its cases out one by one (each rule of the
//! spec broken on purpose, with a name); the random set draws valid canonical-JSON payloads and
//! injects one defect of a random kind at a random place.
use std::fmt::Write as _;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::charclass;
use super::frame::{self, Reason, HEADER_LEN, MAX_DEPTH, MAX_INT, MAX_KEY, MAX_PAYLOAD};

/// One vector: the bytes, the expected answer and a name for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vector {
    pub id: u64,
    pub expected: Reason,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Errors reading or writing vector files.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Format {
        path: String,
        line: usize,
        message: String,
    },
}

/// A frame around `payload` with a valid header of `frame_type`.
fn framed(frame_type: u8, payload: &[u8]) -> Vec<u8> {
    frame::encode_raw(
        frame_type,
        0x0123_4567_89AB_CDEF,
        42,
        payload.len() as u32,
        &Sha256::digest(payload).into(),
        payload,
    )
}

/// The crafted vectors (ids from 1).
pub fn crafted() -> Vec<Vector> {
    let mut out = Vec::new();
    let mut add = |expected: Reason, name: String, bytes: Vec<u8>| {
        out.push(Vector {
            id: out.len() as u64 + 1,
            expected,
            name,
            bytes,
        })
    };
    use Reason::*;
    // Payload cases: (payload bytes, expected, name).
    let mut payloads: Vec<(Vec<u8>, Reason, String)> = Vec::new();
    let mut pl =
        |s: &str, r: Reason, name: &str| payloads.push((s.as_bytes().to_vec(), r, name.into()));
    // Valid payloads.
    pl("{}", Accept, "empty object");
    pl("{\"\":0}", Accept, "empty key");
    pl(
        "{\"a\":[1,-2,true,false,null,\"x\\\"y\\\\z\"],\"b\":{},\"c\":\"é한😀\"}",
        Accept,
        "all value kinds",
    );
    pl(
        "{\"a\":9007199254740991,\"b\":-9007199254740991}",
        Accept,
        "integer bounds",
    );
    pl("{\"a\":1,\"ab\":2,\"b\":3}", Accept, "prefix keys in order");
    pl(
        "{\"A\":1,\"a\":2,\"é\":3,\"한\":4,\"😀\":5}",
        Accept,
        "keys in code point order",
    );
    pl(
        "{\"a\":{\"b\":1},\"b\":{\"a\":1}}",
        Accept,
        "key order is per object",
    );
    pl("{\"a\":[[],{},[{}]]}", Accept, "empty containers");
    pl(
        "{\"a\":\"\u{a0} \u{2028}\u{feff}\"}",
        Accept,
        "non-control spaces and format characters",
    );
    pl(
        "{\"a\":0,\"b\":-1,\"c\":10}",
        Accept,
        "zero and small integers",
    );
    // Canonical form.
    pl(" {}", NotCanonical, "space before the object");
    pl("{} ", NotCanonical, "space after the object");
    pl("{\"a\": 1}", NotCanonical, "space after colon");
    pl("{\"a\":1 ,\"b\":2}", NotCanonical, "space before comma");
    pl("{\"a\":[1, 2]}", NotCanonical, "space in array");
    pl("{\"b\":1,\"a\":2}", NotCanonical, "keys out of order");
    pl("{\"a\":1,\"a\":2}", NotCanonical, "duplicate key");
    pl("{\"ab\":1,\"a\":2}", NotCanonical, "longer key first");
    pl(
        "{\"a\":1,\"A\":2}",
        NotCanonical,
        "lower case before upper case",
    );
    pl("{\"😀\":1,\"한\":2}", NotCanonical, "astral before BMP key");
    pl("{\"a\\\"\":1}", NotCanonical, "escape in a key");
    pl("{\"a\\\\\":1}", NotCanonical, "escaped backslash in a key");
    for e in ["/", "b", "f", "n", "r", "t", "u0041"] {
        pl(
            &format!("{{\"a\":\"\\{e}\"}}"),
            NotCanonical,
            &format!("escape \\{e}"),
        );
    }
    pl("{\"a\":01}", NotCanonical, "leading zero");
    pl("{\"a\":00}", NotCanonical, "double zero");
    pl("{\"a\":-0}", NotCanonical, "minus zero");
    pl("{\"a\":-01}", NotCanonical, "minus leading zero");
    pl("{\"a\":1.5}", NotCanonical, "fraction");
    pl("{\"a\":0.0}", NotCanonical, "zero fraction");
    pl("{\"a\":1e5}", NotCanonical, "exponent e");
    pl("{\"a\":1E5}", NotCanonical, "exponent E");
    // Limits.
    pl("{\"a\":9007199254740992}", Limit, "integer 2^53");
    pl("{\"a\":-9007199254740992}", Limit, "integer -2^53");
    pl(
        "{\"a\":123456789012345678901234567890}",
        Limit,
        "long integer",
    );
    let deep = |n: usize| format!("{}{}{}", "{\"a\":".repeat(n - 1), "{}", "}".repeat(n - 1));
    pl(&deep(MAX_DEPTH), Accept, "depth 32");
    pl(&deep(MAX_DEPTH + 1), Limit, "depth 33");
    let deep_arr = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
    pl(&deep_arr(MAX_DEPTH), Accept, "depth 32 with arrays");
    pl(&deep_arr(MAX_DEPTH + 1), Limit, "depth 33 with arrays");
    pl(
        &format!("{{\"{}\":1}}", "k".repeat(MAX_KEY)),
        Accept,
        "key of 255 bytes",
    );
    pl(
        &format!("{{\"{}\":1}}", "k".repeat(MAX_KEY + 1)),
        Limit,
        "key of 256 bytes",
    );
    pl(
        &format!("{{\"{}é\":1}}", "k".repeat(MAX_KEY - 2)),
        Accept,
        "key of 255 bytes ending in a 2-byte character",
    );
    pl(
        &format!("{{\"{}é\":1}}", "k".repeat(MAX_KEY - 1)),
        Limit,
        "2-byte character crossing 255 bytes",
    );
    pl(
        &format!("{{\"z\":1,\"{}\":1}}", "a".repeat(300)),
        Limit,
        "long key also out of order",
    );
    pl(
        &format!("{{\"a\":\"{}\"}}", "v".repeat(4000)),
        Accept,
        "long string value",
    );
    // Grammar.
    for (s, name) in [
        ("[]", "array at top level"),
        ("\"a\"", "string at top level"),
        ("12", "number at top level"),
        ("{\"", "unclosed object"),
        ("{\"a\":1", "unclosed after value"),
        ("{\"a\":[1,2}", "unclosed array"),
        ("{\"a\":\"x}", "unclosed string"),
        ("{\"a\"}", "key without value"),
        ("{\"a\":}", "colon without value"),
        ("{\"a\"1}", "missing colon"),
        ("{,}", "comma first"),
        ("{\"a\":1,}", "trailing comma in object"),
        ("{\"a\":[1,]}", "trailing comma in array"),
        ("{\"a\":[,1]}", "leading comma in array"),
        ("{\"a\":1,,\"b\":2}", "double comma"),
        ("{\"a\":tru}", "short literal"),
        ("{\"a\":truex}", "long literal"),
        ("{\"a\":nul", "unfinished literal"),
        ("{\"a\":True}", "capital literal"),
        ("{\"a\":-x}", "minus without digits"),
        ("{\"a\":-}", "lone minus"),
        ("{\"a\":+1}", "plus sign"),
        ("{\"a\":'x'}", "single quotes"),
        ("{\"a\":\"\\x\"}", "unknown escape"),
        ("{\"a\":\"\\é\"}", "escape of a non-ASCII character"),
        ("{a:1}", "unquoted key"),
        ("{}x", "byte after the object"),
        ("{}{}", "second object"),
        ("{\"a\":1]", "wrong close"),
        ("{\"a\":[1}", "wrong close in array"),
        ("{\u{a0}}", "no-break space outside strings"),
        ("{\"a\":1x}", "letter after number"),
    ] {
        pl(s, BadJson, name);
    }
    // Characters.
    for c in (0u32..0x20).chain([0x7F, 0x80, 0x85, 0x9F]) {
        let ch = char::from_u32(c).expect("scalar");
        pl(
            &format!("{{\"a\":\"{ch}\"}}"),
            BadChar,
            &format!("control U+{c:04X} in a value"),
        );
    }
    pl("{\"a\":1,\n\"b\":2}", BadChar, "newline between members");
    pl("{\"a\t\":1}", BadChar, "tab in a key");
    for c in [0x0301u32, 0x0308, 0x05B0, 0x093C, 0x20D7, 0x1D165, 0x0344] {
        let ch = char::from_u32(c).expect("scalar");
        pl(
            &format!("{{\"a\":\"e{ch}\"}}"),
            BadChar,
            &format!("combining U+{c:04X}"),
        );
    }
    for c in [
        0x212Bu32, 0x2126, 0x0340, 0x0374, 0x1161, 0x11A8, 0x0CD5, 0xF900, 0x2F800,
    ] {
        let ch = char::from_u32(c).expect("scalar");
        pl(
            &format!("{{\"a\":\"{ch}\"}}"),
            BadChar,
            &format!("NFC_QC not Yes U+{c:04X}"),
        );
    }
    pl("{\"e\u{301}\":1}", BadChar, "combining mark in a key");
    // UTF-8.
    for (bytes, name) in [
        (&[0x80u8][..], "lone continuation"),
        (&[0xBF], "lone continuation BF"),
        (&[0xC0, 0x80], "overlong C0"),
        (&[0xC1, 0xBF], "overlong C1"),
        (&[0xE0, 0x80, 0x80], "overlong E0"),
        (&[0xE0, 0x9F, 0xBF], "overlong E0 9F"),
        (&[0xED, 0xA0, 0x80], "surrogate D800"),
        (&[0xED, 0xBF, 0xBF], "surrogate DFFF"),
        (&[0xF0, 0x80, 0x80, 0x80], "overlong F0"),
        (&[0xF0, 0x8F, 0xBF, 0xBF], "overlong F0 8F"),
        (&[0xF4, 0x90, 0x80, 0x80], "above U+10FFFF"),
        (&[0xF5, 0x80, 0x80, 0x80], "lead F5"),
        (&[0xF8, 0x88, 0x80, 0x80, 0x80], "five-byte form"),
        (&[0xFE], "FE"),
        (&[0xFF], "FF"),
        (&[0xC3, 0x41], "ASCII instead of continuation"),
        (&[0xE2, 0x82, 0x41], "ASCII as third byte"),
        (&[0xF0, 0x9F, 0x98, 0x22], "quote as fourth byte"),
        (&[0xC3, 0xC3, 0xA9], "lead instead of continuation"),
    ] {
        let mut v = b"{\"a\":\"".to_vec();
        v.extend_from_slice(bytes);
        v.extend_from_slice(b"\"}");
        payloads.push((v, BadUtf8, format!("UTF-8: {name}")));
        let mut k = b"{\"".to_vec();
        k.extend_from_slice(bytes);
        k.extend_from_slice(b"\":1}");
        payloads.push((k, BadUtf8, format!("UTF-8 in a key: {name}")));
    }
    payloads.push((
        b"{\"a\":\"\xC3".to_vec(),
        BadUtf8,
        "payload ends inside a sequence".into(),
    ));
    let mut k255 = b"{\"".to_vec();
    k255.extend(std::iter::repeat_n(b'k', MAX_KEY));
    k255.extend_from_slice(&[0xC3, 0x41]);
    k255.extend_from_slice(b"\":1}");
    payloads.push((
        k255,
        BadUtf8,
        "broken sequence where a key grows past 255 bytes".into(),
    ));
    payloads.push((
        b"\xEF\xBB\xBF{}".to_vec(),
        BadJson,
        "byte order mark".into(),
    ));

    for (t, (p, r, name)) in payloads.into_iter().enumerate() {
        let ty = (t % 3) as u8 + 1;
        add(r, format!("payload: {name}"), framed(ty, &p));
    }

    // Header and frame size.
    let good = framed(1, b"{\"a\":1}");
    let with = |i: usize, v: u8| {
        let mut g = good.clone();
        g[i] = v;
        g
    };
    for (i, &b) in good[..4].iter().enumerate() {
        add(
            BadMagic,
            format!("magic byte {i} changed"),
            with(i, b ^ 0x20),
        );
    }
    add(BadMagic, "magic zero".into(), {
        let mut g = good.clone();
        g[0..4].fill(0);
        g
    });
    let mut bad_all = good.clone();
    bad_all[0] = b'X';
    bad_all[4] = 9;
    bad_all[5] = 9;
    add(
        BadMagic,
        "magic first of several bad fields".into(),
        bad_all,
    );
    for v in [0u8, 2, 0x81, 0xFF] {
        add(BadVersion, format!("version {v}"), with(4, v));
    }
    for v in [0u8, 4, 5, 0x7F, 0x81, 0xFF] {
        add(BadType, format!("type {v}"), with(5, v));
    }
    for (i, v) in [(6, 1u8), (7, 1), (6, 0x80), (7, 0xFF)] {
        add(BadFlags, format!("flags byte {i} = {v:#04x}"), with(i, v));
    }
    add(BadSession, "session 0".into(), {
        let mut g = good.clone();
        g[8..16].fill(0);
        g
    });
    add(Accept, "session 1".into(), {
        let mut g = good.clone();
        g[8..16].copy_from_slice(&1u64.to_be_bytes());
        g
    });
    add(Accept, "sequence 0 and max".into(), {
        let mut g = good.clone();
        g[16..24].fill(0xFF);
        g
    });
    for n in [0u32, 1, MAX_PAYLOAD + 1, u32::MAX, 0x8000_0000] {
        let mut g = good.clone();
        g[24..28].copy_from_slice(&n.to_be_bytes());
        add(BadLength, format!("payload length {n}"), g);
    }
    for i in 28..32 {
        add(BadReserved, format!("reserved byte {i}"), with(i, 1));
    }
    for cut in [0usize, 1, 4, 32, 63] {
        add(
            Truncated,
            format!("frame of {cut} bytes"),
            good[..cut].to_vec(),
        );
    }
    for cut in [HEADER_LEN, HEADER_LEN + 1, good.len() - 1] {
        add(
            Truncated,
            format!("payload cut to {} bytes", cut - HEADER_LEN),
            good[..cut].to_vec(),
        );
    }
    let mut long_len = good.clone();
    long_len[24..28].copy_from_slice(&100u32.to_be_bytes());
    add(Truncated, "length larger than the payload".into(), long_len);
    for extra in [&[0u8][..], b"}", b"{}", &[0xFF; 64]] {
        let mut g = good.clone();
        g.extend_from_slice(extra);
        add(
            Trailing,
            format!("{} bytes after the payload", extra.len()),
            g,
        );
    }
    let mut short_len = good.clone();
    short_len[24..28].copy_from_slice(&2u32.to_be_bytes());
    add(
        Trailing,
        "length smaller than the payload".into(),
        short_len,
    );
    // Hash.
    for i in [32usize, 33, 47, 48, 63] {
        add(
            BadHash,
            format!("hash byte {i} flipped"),
            with(i, good[i] ^ 1),
        );
    }
    let mut other = good.clone();
    let n = other.len();
    other[n - 2] = b'2';
    add(
        BadHash,
        "payload changed after hashing (still valid JSON)".into(),
        other,
    );
    let zero_hash = frame::encode_raw(1, 5, 5, 2, &[0; 32], b"{}");
    add(BadHash, "zero hash".into(), zero_hash);
    // A header defect wins over a payload defect.
    let mut both = framed(1, b"{\"a\":01}");
    both[6] = 1;
    add(BadFlags, "bad flags and a bad payload".into(), both);
    let mut both = framed(1, b"{\"a\":01}");
    both.push(0);
    add(Trailing, "trailing byte and a bad payload".into(), both);
    let mut both = framed(2, b"{\"a\":01}");
    both[40] ^= 1;
    add(NotCanonical, "bad payload and a bad hash".into(), both);
    out
}

// ---- random vectors --------------------------------------------------------------------------

/// A random allowed character (uniform over the allowed ranges, then within the range).
fn allowed_char(rng: &mut StdRng, ascii_bias: bool) -> char {
    if ascii_bias && rng.gen_bool(0.7) {
        return rng.gen_range(b'a'..=b'z') as char;
    }
    let r = charclass::ranges();
    loop {
        let (lo, hi) = r[rng.gen_range(0..r.len())];
        if let Some(c) = char::from_u32(rng.gen_range(lo..=hi)) {
            return c;
        }
    }
}

/// A random code point that is not allowed (never a surrogate).
fn disallowed_char(rng: &mut StdRng) -> char {
    loop {
        let cp = match rng.gen_range(0..4) {
            0 => rng.gen_range(0..0x20),
            1 => rng.gen_range(0x7F..0xA0),
            _ => rng.gen_range(0..=0x10FFFF),
        };
        if let Some(c) = char::from_u32(cp) {
            if !charclass::allowed(cp) {
                return c;
            }
        }
    }
}

/// Where a defect may go in a serialised payload.
#[derive(Debug, Default)]
struct Spots {
    /// Byte offsets between tokens (outside strings), including 0 and the end.
    structural: Vec<usize>,
    /// Offsets inside string values at character boundaries (after the opening quote).
    in_value: Vec<usize>,
    /// (offset of a value's first byte, its byte length, its nesting depth) for every value
    /// except the top-level object.
    values: Vec<(usize, usize, usize)>,
    /// Offsets of key openings `"` whose key follows a previous key in the same object:
    /// (offset of the previous key's opening quote, its length incl. quotes, offset of this
    /// key's opening quote, its length incl. quotes).
    key_pairs: Vec<(usize, usize, usize, usize)>,
    /// Offsets of every key's opening quote and its length incl. quotes.
    keys: Vec<(usize, usize)>,
}

struct Gen<'a> {
    rng: &'a mut StdRng,
    out: String,
    spots: Spots,
    budget: usize,
}

impl Gen<'_> {
    fn string_body(&mut self, max: usize, escapes: bool) -> String {
        let n = self.rng.gen_range(0..=max);
        let mut s = String::new();
        for _ in 0..n {
            if escapes && self.rng.gen_bool(0.05) {
                s.push_str(if self.rng.gen_bool(0.5) {
                    "\\\""
                } else {
                    "\\\\"
                });
            } else {
                let c = allowed_char(self.rng, true);
                if c == '"' || c == '\\' {
                    continue;
                }
                s.push(c);
            }
        }
        s
    }

    fn value(&mut self, depth: usize) {
        let start = self.out.len();
        let choice = if depth >= 8 || self.budget == 0 {
            self.rng.gen_range(0..4)
        } else {
            self.rng.gen_range(0..6)
        };
        match choice {
            0 => {
                let n: i64 = match self.rng.gen_range(0..3) {
                    0 => self.rng.gen_range(-9..10),
                    1 => self.rng.gen_range(-1_000_000..1_000_000),
                    _ => self.rng.gen_range(-(MAX_INT as i64)..=MAX_INT as i64),
                };
                let _ = write!(self.out, "{n}");
            }
            1 => {
                self.out.push('"');
                // Character boundaries inside the value.
                let body = self.string_body(24, true);
                let mut at = self.out.len();
                self.spots.in_value.push(at);
                let mut chars = body.chars().peekable();
                while let Some(c) = chars.next() {
                    self.out.push(c);
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            self.out.push(n);
                        }
                    }
                    at = self.out.len();
                    self.spots.in_value.push(at);
                }
                self.out.push('"');
            }
            2 => self
                .out
                .push_str(["true", "false", "null"][self.rng.gen_range(0..3)]),
            3 => self.out.push_str(["{}", "[]"][self.rng.gen_range(0..2)]),
            4 => self.object(depth + 1),
            _ => {
                self.budget = self.budget.saturating_sub(1);
                self.out.push('[');
                self.spots.structural.push(self.out.len());
                let n = self.rng.gen_range(0..4);
                for i in 0..n {
                    if i > 0 {
                        self.out.push(',');
                        self.spots.structural.push(self.out.len());
                    }
                    self.value(depth + 1);
                    self.spots.structural.push(self.out.len());
                }
                self.out.push(']');
            }
        }
        self.spots
            .values
            .push((start, self.out.len() - start, depth));
    }

    /// An object at `depth` (the top level is 1).
    fn object(&mut self, depth: usize) {
        self.budget = self.budget.saturating_sub(1);
        let n = if depth >= 8 {
            0
        } else {
            self.rng.gen_range(0..5)
        };
        let mut keys: Vec<String> = (0..n)
            .map(|_| {
                let s = self.string_body(12, false);
                // Keys are at most 255 bytes by construction (12 characters ≤ 48 bytes).
                s
            })
            .collect();
        keys.sort();
        keys.dedup();
        self.out.push('{');
        self.spots.structural.push(self.out.len());
        let mut prev: Option<(usize, usize)> = None;
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
                self.spots.structural.push(self.out.len());
            }
            let at = self.out.len();
            let _ = write!(self.out, "\"{k}\"");
            let len = self.out.len() - at;
            self.spots.keys.push((at, len));
            if let Some((pa, pl)) = prev {
                self.spots.key_pairs.push((pa, pl, at, len));
            }
            prev = Some((at, len));
            self.spots.structural.push(self.out.len());
            self.out.push(':');
            self.spots.structural.push(self.out.len());
            self.value(depth);
            self.spots.structural.push(self.out.len());
        }
        self.out.push('}');
    }
}

/// A random valid payload with at least one string value, and where defects may go.
fn random_payload(rng: &mut StdRng) -> (String, Spots) {
    loop {
        let (p, spots) = random_payload_once(rng);
        if !spots.in_value.is_empty() {
            return (p, spots);
        }
    }
}

fn random_payload_once(rng: &mut StdRng) -> (String, Spots) {
    let mut g = Gen {
        rng,
        out: String::new(),
        spots: Spots::default(),
        budget: 12,
    };
    g.spots.structural.push(0);
    g.object(1);
    let end = g.out.len();
    g.spots.structural.push(end);
    g.spots.structural.sort_unstable();
    g.spots.structural.dedup();
    debug_assert!(end <= MAX_PAYLOAD as usize);
    (g.out, g.spots)
}

fn splice(p: &str, at: usize, len: usize, with: &[u8]) -> Vec<u8> {
    let mut v = p.as_bytes()[..at].to_vec();
    v.extend_from_slice(with);
    v.extend_from_slice(&p.as_bytes()[at + len..]);
    v
}

/// One random vector: a valid frame or one with a single defect of a random kind.
fn random_vector(rng: &mut StdRng) -> (Reason, String, Vec<u8>) {
    use Reason::*;
    let (p, spots) = random_payload(rng);
    let ty = rng.gen_range(1..=3u8);
    let session = rng.gen_range(1..=u64::MAX);
    let seq: u64 = rng.gen();
    let frame_of = |payload: &[u8]| {
        frame::encode_raw(
            ty,
            session,
            seq,
            payload.len() as u32,
            &Sha256::digest(payload).into(),
            payload,
        )
    };
    let good = frame_of(p.as_bytes());
    let pick = |rng: &mut StdRng, v: &[usize]| v[rng.gen_range(0..v.len())];
    match rng.gen_range(0..22) {
        0..=4 => (Accept, "valid".into(), good),
        5 => {
            let mut f = good;
            let i = rng.gen_range(0..4);
            f[i] ^= rng.gen_range(1..=255u8);
            (BadMagic, format!("magic byte {i}"), f)
        }
        6 => {
            let mut f = good;
            let i = rng.gen_range(4..8);
            let r = match i {
                4 => {
                    f[4] = loop {
                        let v: u8 = rng.gen();
                        if v != 1 {
                            break v;
                        }
                    };
                    BadVersion
                }
                5 => {
                    f[5] = loop {
                        let v: u8 = rng.gen();
                        if !(1..=3).contains(&v) {
                            break v;
                        }
                    };
                    BadType
                }
                _ => {
                    f[i] = rng.gen_range(1..=255);
                    BadFlags
                }
            };
            (r, format!("header byte {i}"), f)
        }
        7 => {
            let mut f = good;
            let r = if rng.gen_bool(0.3) {
                f[8..16].fill(0);
                BadSession
            } else if rng.gen_bool(0.5) {
                let n = if rng.gen_bool(0.5) {
                    rng.gen_range(0..2)
                } else {
                    rng.gen_range(MAX_PAYLOAD + 1..=u32::MAX)
                };
                f[24..28].copy_from_slice(&n.to_be_bytes());
                BadLength
            } else {
                let i = rng.gen_range(28..32);
                f[i] = rng.gen_range(1..=255);
                BadReserved
            };
            (r, "header field".into(), f)
        }
        8 => {
            let cut = rng.gen_range(0..good.len());
            (Truncated, format!("cut at {cut}"), good[..cut].to_vec())
        }
        9 => {
            let mut f = good;
            let n = rng.gen_range(1..40);
            for _ in 0..n {
                f.push(rng.gen());
            }
            (Trailing, format!("{n} trailing bytes"), f)
        }
        10 => {
            let mut f = good;
            let i = rng.gen_range(32..64);
            f[i] ^= 1 << rng.gen_range(0..8);
            (BadHash, format!("hash bit in byte {i}"), f)
        }
        11 => {
            // An invalid byte sequence at a character boundary.
            let at = pick(rng, &spots.in_value);
            let bad: &[&[u8]] = &[
                &[0x80],
                &[0xBF],
                &[0xC0, 0x80],
                &[0xC1, 0x81],
                &[0xE0, 0x80, 0x80],
                &[0xED, 0xA0, 0x80],
                &[0xF0, 0x8F, 0x80, 0x80],
                &[0xF4, 0x90, 0x80, 0x80],
                &[0xF5],
                &[0xFF],
                &[0xC3, 0x41],
                &[0xE2, 0x82],
            ];
            let b = bad[rng.gen_range(0..bad.len())];
            (
                BadUtf8,
                format!("bytes {b:02x?} at {at}"),
                frame_of(&splice(&p, at, 0, b)),
            )
        }
        12 => {
            let c = disallowed_char(rng);
            let at = if rng.gen_bool(0.5) {
                pick(rng, &spots.in_value)
            } else {
                pick(rng, &spots.structural)
            };
            let mut buf = [0u8; 4];
            let enc = c.encode_utf8(&mut buf).as_bytes().to_vec();
            (
                BadChar,
                format!("U+{:04X} at {at}", c as u32),
                frame_of(&splice(&p, at, 0, &enc)),
            )
        }
        13 => {
            let at = pick(rng, &spots.structural);
            (
                NotCanonical,
                format!("space at {at}"),
                frame_of(&splice(&p, at, 0, b" ")),
            )
        }
        14 => {
            let at = pick(rng, &spots.in_value);
            let e = [b'/', b'b', b'f', b'n', b'r', b't', b'u'][rng.gen_range(0..7)];
            (
                NotCanonical,
                format!("escape \\{} at {at}", e as char),
                frame_of(&splice(&p, at, 0, &[b'\\', e])),
            )
        }
        15 if !spots.key_pairs.is_empty() => {
            // Swap two adjacent keys' texts (the second becomes smaller), or repeat the first.
            let (pa, pl, ka, kl) = spots.key_pairs[rng.gen_range(0..spots.key_pairs.len())];
            let prev = &p[pa..pa + pl];
            let this = &p[ka..ka + kl];
            let (mut v, name) = if rng.gen_bool(0.5) {
                (splice(&p, ka, kl, prev.as_bytes()), "duplicate key")
            } else {
                let mut v = splice(&p, ka, kl, prev.as_bytes());
                let tail = v.split_off(pa);
                v.extend_from_slice(this.as_bytes());
                v.extend_from_slice(&tail[pl..]);
                (v, "keys swapped")
            };
            v.shrink_to_fit();
            (NotCanonical, name.into(), frame_of(&v))
        }
        15 | 16 => {
            let (at, len, depth) = if spots.values.is_empty() {
                (0, 0, 0)
            } else {
                spots.values[rng.gen_range(0..spots.values.len())]
            };
            if spots.values.is_empty() {
                return (Accept, "valid (no value to replace)".into(), good);
            }
            let toks: &[(&str, Reason)] = &[
                ("9007199254740992", Limit),
                ("-9007199254740993", Limit),
                ("99999999999999999999", Limit),
                ("01", NotCanonical),
                ("-0", NotCanonical),
                ("1.0", NotCanonical),
                ("2e3", NotCanonical),
                ("+1", BadJson),
                ("tru", BadJson),
                ("nul", BadJson),
                ("falsey", BadJson),
                ("-", BadJson),
                ("'x'", BadJson),
                ("\"\\q\"", BadJson),
            ];
            let (tok, r) = if rng.gen_bool(0.15) {
                // Nest until the 33rd container opens here.
                let open = MAX_DEPTH + 1 - depth;
                (format!("{}{}", "[".repeat(open), "]".repeat(open)), Limit)
            } else {
                let (t, r) = toks[rng.gen_range(0..toks.len())];
                (t.to_string(), r)
            };
            (
                r,
                format!("value replaced by {tok:.40}"),
                frame_of(&splice(&p, at, len, tok.as_bytes())),
            )
        }
        17 if !spots.keys.is_empty() => {
            let (at, len) = spots.keys[rng.gen_range(0..spots.keys.len())];
            let long = format!(
                "\"{}\"",
                "k".repeat(rng.gen_range(MAX_KEY + 1..MAX_KEY + 40))
            );
            (
                Limit,
                "long key".into(),
                frame_of(&splice(&p, at, len, long.as_bytes())),
            )
        }
        17 | 18 => {
            let at = pick(rng, &spots.structural);
            let b = [b'x', b'\'', b'+', b')', b'#', b'~', b'Z'][rng.gen_range(0..7)];
            (
                BadJson,
                format!("{} at {at}", b as char),
                frame_of(&splice(&p, at, 0, &[b])),
            )
        }
        19 => {
            // The payload cut short (at a character boundary, at least 2 bytes).
            let cands: Vec<usize> = spots
                .structural
                .iter()
                .chain(&spots.in_value)
                .copied()
                .filter(|&c| c >= 2 && c < p.len())
                .collect();
            if cands.is_empty() {
                return (Accept, "valid (too short to cut)".into(), good);
            }
            let at = pick(rng, &cands);
            (
                BadJson,
                format!("payload cut at {at}"),
                frame_of(&p.as_bytes()[..at]),
            )
        }
        _ => {
            // Hash mismatch after a valid change: one ASCII letter in a value replaced.
            let spots_letters: Vec<usize> = spots
                .in_value
                .iter()
                .copied()
                .filter(|&i| p.as_bytes().get(i).is_some_and(u8::is_ascii_lowercase))
                .collect();
            if spots_letters.is_empty() {
                return (Accept, "valid (nothing to change)".into(), good);
            }
            let i = pick(rng, &spots_letters);
            let mut f = good;
            let b = &mut f[HEADER_LEN + i];
            *b = if *b == b'z' { b'a' } else { *b + 1 };
            (
                BadHash,
                format!("payload byte {i} changed after hashing"),
                f,
            )
        }
    }
}

/// `n` random vectors from `seed` (ids from `first_id`).
pub fn random(n: usize, seed: u64, first_id: u64) -> Vec<Vector> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let (expected, name, bytes) = random_vector(&mut rng);
            Vector {
                id: first_id + i as u64,
                expected,
                name,
                bytes,
            }
        })
        .collect()
}

/// A vector file's text.
pub fn to_text(vectors: &[Vector], header: &str) -> String {
    let mut s = String::new();
    for l in header.lines() {
        let _ = writeln!(s, "# {l}");
    }
    for v in vectors {
        let _ = writeln!(
            s,
            "# {} {}: {}",
            v.id,
            v.expected,
            v.name.replace('\n', " ")
        );
        let _ = write!(s, "{} {} {}", v.id, v.expected.code(), v.bytes.len());
        for b in &v.bytes {
            let _ = write!(s, " {b:02x}");
        }
        s.push('\n');
    }
    s
}

/// Parses a vector file (names come from the comment line before each vector, if any).
pub fn parse(text: &str, path: &str) -> Result<Vec<Vector>, VectorError> {
    let mut out = Vec::new();
    let mut name = String::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |message: String| VectorError::Format {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        if let Some(c) = line.strip_prefix('#') {
            name = c.trim().to_owned();
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.split(' ');
        let mut num = |what: &str| -> Result<u64, VectorError> {
            f.next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(format!("expected {what}")))
        };
        let id = num("an id")?;
        let code = num("a reason code")?;
        let count = num("a byte count")? as usize;
        let expected = u8::try_from(code)
            .ok()
            .and_then(Reason::from_code)
            .ok_or_else(|| bad(format!("unknown reason code {code}")))?;
        let bytes = f
            .map(|h| {
                (h.len() == 2)
                    .then(|| u8::from_str_radix(h, 16).ok())
                    .flatten()
                    .ok_or_else(|| bad(format!("`{h}` is not a byte in hex")))
            })
            .collect::<Result<Vec<u8>, _>>()?;
        if bytes.len() != count {
            return Err(bad(format!("{} bytes, count says {count}", bytes.len())));
        }
        out.push(Vector {
            id,
            expected,
            name: std::mem::take(&mut name),
            bytes,
        });
    }
    Ok(out)
}

/// Writes `crafted.vec` and `random.vec` (`n` random vectors from `seed`) into `dir`.
pub fn write(dir: &Path, n: usize, seed: u64) -> Result<(usize, usize), VectorError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| VectorError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let c = crafted();
    let first = c.len() as u64 + 1;
    let r = random(n, seed, first);
    let head = "grenzwacht diode frame test vectors (hw/FRAMES.md): <id> <expected code> <byte count> <bytes>";
    let cp = dir.join("crafted.vec");
    std::fs::write(&cp, to_text(&c, head)).map_err(io(&cp))?;
    let rp = dir.join("random.vec");
    std::fs::write(&rp, to_text(&r, &format!("{head}\nrandom, seed {seed}"))).map_err(io(&rp))?;
    Ok((c.len(), r.len()))
}

/// Every vector of every `*.vec` file in `dir`, in file name order.
pub fn read_dir(dir: &Path) -> Result<Vec<Vector>, VectorError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| VectorError::Io { path, source }
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "vec"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(io(&f))?;
        out.extend(parse(&text, &f.display().to_string())?);
    }
    Ok(out)
}

/// Runs `verify` over `vectors`: the ones whose answer differs from the expected one.
pub fn disagreements(
    vectors: &[Vector],
    verify: impl Fn(&[u8]) -> Reason,
) -> Vec<(&Vector, Reason)> {
    vectors
        .iter()
        .filter_map(|v| {
            let got = verify(&v.bytes);
            (got != v.expected).then_some((v, got))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference verifier answers every crafted and random vector as its construction
    /// says — both sides of the agreement the HDL verifier must also reach.
    #[test]
    fn the_reference_verifier_matches_every_expected_verdict() {
        let c = crafted();
        assert!(c.len() >= 200, "{} crafted vectors", c.len());
        let r = random(3000, 7, 10_000);
        for set in [&c, &r] {
            let bad = disagreements(set, frame::verify);
            assert!(
                bad.is_empty(),
                "{} disagreements, e.g. {:?}",
                bad.len(),
                bad.iter()
                    .take(5)
                    .map(|(v, got)| format!(
                        "{} {} expected {} got {got}",
                        v.id, v.name, v.expected
                    ))
                    .collect::<Vec<_>>()
            );
        }
        // Every reason occurs in each set.
        for reason in Reason::ALL {
            assert!(
                c.iter().any(|v| v.expected == reason),
                "crafted lacks {reason}"
            );
            assert!(
                r.iter().any(|v| v.expected == reason),
                "random lacks {reason}"
            );
        }
    }

    #[test]
    fn vector_files_round_trip_and_bad_lines_are_refused() {
        let v = random(50, 1, 1);
        let text = to_text(&v, "test");
        let back = parse(&text, "t.vec").unwrap();
        assert_eq!(back.len(), v.len());
        for (a, b) in v.iter().zip(&back) {
            assert_eq!((a.id, a.expected, &a.bytes), (b.id, b.expected, &b.bytes));
        }
        for bad in ["1 0 2 7b", "1 99 0", "1 0 1 7", "x 0 0", "1 0 1 zz"] {
            assert!(parse(bad, "t.vec").is_err(), "{bad}");
        }
    }

    #[test]
    fn random_vectors_are_reproducible_from_the_seed() {
        assert_eq!(random(20, 9, 1), random(20, 9, 1));
        assert_ne!(random(20, 9, 1), random(20, 10, 1));
    }
}
