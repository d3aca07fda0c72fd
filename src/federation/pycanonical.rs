//! Canonical JSON as Synapse computes it for request signatures (`canonicaljson` 2.0,
//! `encode_canonical_json`): the form an X-Matrix signature over a body that is *not* strict
//! canonical JSON covers.
//!
//! # Design notes
//!
//! * Synapse checks the X-Matrix signature of a request over `encode_canonical_json` of the
//!   parsed body (`synapse/federation/transport/server/_base.py`, `authenticate_request`;
//!   signedjson). That encoder is Python's `json` with sorted keys, compact separators,
//!   `ensure_ascii=False` and `allow_nan=False`: it accepts floats and integers of any size.
//!   The strict rules of room versions 6+ apply to *events*, per PDU, not to the request
//!   signature — a transaction with one PDU that breaks them is authentic and its other PDUs
//!   are delivered. [`encode`] reproduces that form, so the guard verifies (and signs) such
//!   bodies as Synapse does. For strict canonical input it gives exactly the strict form.
//! * **Numbers** as Python reads and writes them: a literal without fraction or exponent is an
//!   integer of any size (`-0` is `0`); anything else is a binary64 float (correctly rounded;
//!   Rust's parser is) written as Python's `repr`: the shortest digits that read back to the
//!   same float, positional notation for decimal exponents −4 … 15 with at least one digit
//!   after the point (`1.0`, `0.0001`, `1000000000000000.0`), otherwise `d.ddde±XX` with at
//!   least two exponent digits (`1e-05`, `1e+16`). Floats that overflow are refused (Python's
//!   encoder refuses infinities).
//! * **Strings** are unescaped and written as `serde_json` writes them, which is what Python's
//!   encoder writes with `ensure_ascii=False`: `\"`, `\\`, `\b \f \n \r \t`, `\u00xx` (lower-case
//!   hex) for other control characters, everything else literal. Lone surrogate escapes are
//!   refused (Python could not encode them as UTF-8 either).
//! * Object keys sorted by code point (UTF-8 byte order). The input has passed
//!   [`crate::federation::json::validate`] (no duplicate keys, bounded depth); the encoder still
//!   refuses anything malformed and nesting beyond [`MAX_DEPTH`] rather than guessing.
//! * Errors are typed and carry no payload.
use std::fmt::Write as _;

/// Deepest nesting the encoder follows (above the guard's JSON depth limit).
pub const MAX_DEPTH: usize = 128;

/// The body cannot be encoded as Synapse would. No payload in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PyCanonicalError {
    /// Not JSON, or nested deeper than [`MAX_DEPTH`].
    #[error("not valid JSON")]
    NotJson,
    /// A float outside the binary64 range (Python refuses to encode infinities).
    #[error("JSON number out of range")]
    OutOfRange,
}

/// The canonical encoding Synapse signs and verifies for `text` (a complete JSON value).
pub fn encode(text: &str) -> Result<String, PyCanonicalError> {
    let mut p = Parser {
        b: text.as_bytes(),
        s: text,
        i: 0,
    };
    let mut out = String::with_capacity(text.len());
    p.ws();
    p.value(&mut out, 0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(PyCanonicalError::NotJson);
    }
    Ok(out)
}

struct Parser<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), PyCanonicalError> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(PyCanonicalError::NotJson)
        }
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Result<(), PyCanonicalError> {
        if depth > MAX_DEPTH {
            return Err(PyCanonicalError::NotJson);
        }
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') => self.object(out, depth),
            Some(b'[') => self.array(out, depth),
            Some(b'"') => {
                let s = self.string()?;
                write_str(out, &s);
                Ok(())
            }
            Some(b't') => self.literal(out, "true"),
            Some(b'f') => self.literal(out, "false"),
            Some(b'n') => self.literal(out, "null"),
            Some(b'-' | b'0'..=b'9') => self.number(out),
            _ => Err(PyCanonicalError::NotJson),
        }
    }

    fn literal(&mut self, out: &mut String, word: &str) -> Result<(), PyCanonicalError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            out.push_str(word);
            Ok(())
        } else {
            Err(PyCanonicalError::NotJson)
        }
    }

    fn object(&mut self, out: &mut String, depth: usize) -> Result<(), PyCanonicalError> {
        self.i += 1; // `{`
        let mut members: Vec<(String, String)> = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.b.get(self.i) != Some(&b'"') {
                    return Err(PyCanonicalError::NotJson);
                }
                let key = self.string()?;
                self.expect(b':')?;
                let mut v = String::new();
                self.value(&mut v, depth + 1)?;
                members.push((key, v));
                self.ws();
                match self.b.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(PyCanonicalError::NotJson),
                }
            }
        }
        // Code point order = UTF-8 byte order = `str` order.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        out.push('{');
        for (n, (k, v)) in members.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            write_str(out, k);
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        Ok(())
    }

    fn array(&mut self, out: &mut String, depth: usize) -> Result<(), PyCanonicalError> {
        self.i += 1; // `[`
        out.push('[');
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            out.push(']');
            return Ok(());
        }
        let mut first = true;
        loop {
            if !first {
                out.push(',');
            }
            first = false;
            self.value(out, depth + 1)?;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    out.push(']');
                    return Ok(());
                }
                _ => return Err(PyCanonicalError::NotJson),
            }
        }
    }

    /// One string token, unescaped (`serde_json` decodes the escapes and refuses lone
    /// surrogates and raw control characters).
    fn string(&mut self) -> Result<String, PyCanonicalError> {
        let start = self.i;
        self.i += 1; // `"`
        loop {
            match self.b.get(self.i) {
                None => return Err(PyCanonicalError::NotJson),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => self.i += 2,
                Some(_) => self.i += 1,
            }
        }
        let token = self.s.get(start..self.i).ok_or(PyCanonicalError::NotJson)?;
        serde_json::from_str::<String>(token).map_err(|_| PyCanonicalError::NotJson)
    }

    fn number(&mut self, out: &mut String) -> Result<(), PyCanonicalError> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let int_digits = &self.s[int_start..self.i];
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits.starts_with('0')) {
            return Err(PyCanonicalError::NotJson);
        }
        let mut float = false;
        if self.b.get(self.i) == Some(&b'.') {
            float = true;
            self.i += 1;
            let f = self.i;
            while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            if self.i == f {
                return Err(PyCanonicalError::NotJson);
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            float = true;
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            let e = self.i;
            while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            if self.i == e {
                return Err(PyCanonicalError::NotJson);
            }
        }
        let token = &self.s[start..self.i];
        if !float {
            // Python's int: any size; `-0` is `0`.
            if int_digits == "0" {
                out.push('0');
            } else {
                out.push_str(token);
            }
            return Ok(());
        }
        let v: f64 = token.parse().map_err(|_| PyCanonicalError::NotJson)?;
        if !v.is_finite() {
            return Err(PyCanonicalError::OutOfRange);
        }
        write_float(out, v);
        Ok(())
    }
}

fn write_str(out: &mut String, s: &str) {
    // serde_json's string escaping is Python's with `ensure_ascii=False`.
    out.push_str(&serde_json::to_string(s).expect("a string serialises"));
}

/// Python's `repr(float)` for a finite `v`.
pub fn write_float(out: &mut String, v: f64) {
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // Shortest round-trip digits, scientific: `[-]d[.ddd]e<exp>`. Among the strings of that
    // length Python takes the one nearest to the exact value (ties to even); Rust's shortest
    // form may be the other neighbour when the exact value is halfway, so the nearest of that
    // length (exact rounding, ties to even) is preferred when it reads back to `v`.
    let shortest = format!("{v:e}");
    let len = shortest
        .split_once('e')
        .map_or(0, |(m, _)| m.bytes().filter(u8::is_ascii_digit).count());
    let nearest = format!("{:.*e}", len.saturating_sub(1), v);
    let sci = if nearest.parse::<f64>() == Ok(v) {
        nearest
    } else {
        shortest
    };
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci.as_str()),
    };
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Python's decpt: value = 0.DIGITS × 10^decpt.
    let decpt = exp + 1;
    if negative {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let d = decpt as usize;
        if d >= digits.len() {
            out.push_str(&digits);
            for _ in digits.len()..d {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..d]);
            out.push('.');
            out.push_str(&digits[d..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, v);
        s
    }

    /// Expected values are what CPython 3.11 prints for `repr(x)` / `json.dumps(x)` (the
    /// encoder agreed with CPython on 20 000 random doubles when it was written).
    #[test]
    fn floats_as_python_writes_them() {
        for (v, py) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1e100, "1e+100"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (123.456, "123.456"),
            (0.30000000000000004, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (9007199254740993.0, "9007199254740992.0"),
            // Halfway between two 17-digit neighbours: Python takes the even one.
            (1608882928643910.0 + 0.25, "1608882928643910.2"),
        ] {
            assert_eq!(float(v), py, "{v:?}");
        }
    }

    #[test]
    fn bodies_as_synapse_signs_them() {
        let cases = [
            (
                r#"{"b":1,"a":[1.5, 2e0, -0, 10000000000000000000000]}"#,
                r#"{"a":[1.5,2.0,0,10000000000000000000000],"b":1}"#,
            ),
            (
                r#" { "é" : "x\u00e9\n\u0001\/" , "a":{"z":null,"y":true}} "#,
                "{\"a\":{\"y\":true,\"z\":null},\"é\":\"xé\\n\\u0001/\"}",
            ),
            (
                r#"{"n":1E2,"m":0.10000000000000001,"k":-1.0e-10}"#,
                r#"{"k":-1e-10,"m":0.1,"n":100.0}"#,
            ),
            (r#"[]"#, "[]"),
        ];
        for (input, expected) in cases {
            assert_eq!(encode(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn strict_canonical_input_is_unchanged() {
        let strict = r#"{"content":{"body":"\"ä\\","n":-9007199254740991},"origin":"a","pdus":[{"k":[true,false,null]}]}"#;
        assert_eq!(encode(strict).unwrap(), strict);
        let raw: Box<serde_json::value::RawValue> =
            serde_json::from_str(r#"{ "z": 1, "a": "\u0041\t" }"#).unwrap();
        assert_eq!(
            encode(raw.get()).unwrap(),
            crate::federation::canonical::canonical_form(&raw).unwrap()
        );
    }

    #[test]
    fn malformed_and_unrepresentable_input_is_refused() {
        for bad in [
            "",
            "{",
            "[1,]",
            "01",
            "1.",
            "-",
            "1e",
            "{\"a\"}",
            "\"\\ud800\"",
            "[1] x",
            "nul",
        ] {
            assert_eq!(encode(bad), Err(PyCanonicalError::NotJson), "{bad:?}");
        }
        assert_eq!(encode("1e400"), Err(PyCanonicalError::OutOfRange));
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert_eq!(encode(&deep), Err(PyCanonicalError::NotJson));
    }
}
