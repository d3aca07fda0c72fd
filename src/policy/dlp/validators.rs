//! Check-digit and format validators that run on candidate matches.
//!
//! Every validator takes the matched text as it appears (spaces, hyphens and dots used for
//! grouping are skipped) and answers whether it is a well-formed identifier. They never
//! allocate. Algorithms and vectors: BRIEF §6.
//!
//! What each check catches (property-tested in this module):
//! * IBAN (ISO 13616, mod-97 = 1): every single-character substitution and every transposition
//!   of adjacent characters.
//! * Luhn: every single-digit substitution, and every adjacent transposition except 09 ↔ 90.
//! * Steuer-ID (ISO 7064 MOD 11,10): every single-digit substitution of the check-relevant
//!   digits (a substitution may also break the repetition rule; either way it is rejected).
//! * KVNR (letter → 01–26, weights 1,2,1,2…, cross sums, mod 10): every single-digit
//!   substitution of the eight serial digits.
//! * ICAO 9303 (weights 7,3,1, mod 10): every single-digit substitution among digit positions
//!   (weights 7, 3 and 1 are all coprime to 10).
//! * BIC: format only (4 letters, ISO country, 2 alphanumerics, optional 3-character branch);
//!   there is no check digit.
use std::fmt;
use std::str::FromStr;

/// A validator a rule can name (`validator = "iban"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Validator {
    Luhn,
    Iban,
    SteuerId,
    Kvnr,
    IcaoDocument,
    Bic,
}

impl Validator {
    pub const ALL: [Validator; 6] = [
        Validator::Luhn,
        Validator::Iban,
        Validator::SteuerId,
        Validator::Kvnr,
        Validator::IcaoDocument,
        Validator::Bic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Validator::Luhn => "luhn",
            Validator::Iban => "iban",
            Validator::SteuerId => "steuer_id",
            Validator::Kvnr => "kvnr",
            Validator::IcaoDocument => "icao_document",
            Validator::Bic => "bic",
        }
    }

    /// Run the validator on a matched text.
    pub fn check(self, text: &str) -> bool {
        match self {
            Validator::Luhn => luhn(text),
            Validator::Iban => iban(text),
            Validator::SteuerId => steuer_id(text),
            Validator::Kvnr => kvnr(text),
            Validator::IcaoDocument => icao_document(text),
            Validator::Bic => bic(text),
        }
    }
}

impl fmt::Display for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Validator {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Validator::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or(())
    }
}

/// Grouping characters people put into identifiers.
fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'/' | b'\t')
}

/// The significant bytes (ASCII alphanumerics) of `text`; `None` if anything else but
/// grouping characters occurs.
fn significant(text: &str) -> Option<impl Iterator<Item = u8> + Clone + '_> {
    let b = text.as_bytes();
    if b.iter().any(|&c| !c.is_ascii_alphanumeric() && !is_sep(c)) {
        return None;
    }
    Some(b.iter().copied().filter(|c| c.is_ascii_alphanumeric()))
}

/// Luhn (ISO/IEC 7812) over the digits of `text`; needs at least 2 digits.
pub fn luhn(text: &str) -> bool {
    let Some(sig) = significant(text) else {
        return false;
    };
    let mut sum = 0u32;
    let mut n = 0usize;
    // Walk from the right.
    let digits: Vec<u8> = sig.collect();
    for (i, &c) in digits.iter().rev().enumerate() {
        if !c.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        n += 1;
    }
    n >= 2 && sum.is_multiple_of(10)
}

/// IBAN lengths per country (ISO 13616 registry, SWIFT release 2024).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// Country codes a BIC may carry: IBAN countries plus major non-IBAN economies.
const BIC_EXTRA_COUNTRIES: &[&[u8; 2]] = &[
    b"US", b"CA", b"CN", b"JP", b"IN", b"AU", b"NZ", b"SG", b"HK", b"KR", b"ZA", b"MX", b"AR",
    b"CL", b"CO", b"ID", b"MY", b"TH", b"VN", b"PH", b"NG", b"KE", b"MA", b"TW",
];

fn iban_length(country: [u8; 2]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| **c == country)
        .map(|(_, l)| *l)
}

/// IBAN: known country, the country's length, two check digits, mod-97 = 1.
pub fn iban(text: &str) -> bool {
    let Some(sig) = significant(text) else {
        return false;
    };
    let mut buf = [0u8; 34];
    let mut n = 0;
    for c in sig {
        if n == buf.len() {
            return false;
        }
        buf[n] = c.to_ascii_uppercase();
        n += 1;
    }
    if n < 15 {
        return false;
    }
    let s = &buf[..n];
    if !s[0].is_ascii_uppercase()
        || !s[1].is_ascii_uppercase()
        || !s[2].is_ascii_digit()
        || !s[3].is_ascii_digit()
    {
        return false;
    }
    if iban_length([s[0], s[1]]) != Some(n) {
        return false;
    }
    // Rearranged: BBAN, then country and check digits.
    let mut rem: u32 = 0;
    for &c in s[4..].iter().chain(&s[..4]) {
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else {
            let v = u32::from(c - b'A') + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    rem == 1
}

/// Steuer-ID (steuerliche Identifikationsnummer): 11 digits, first not 0, ISO 7064 MOD 11,10
/// check digit, and the repetition rule over the first ten digits: exactly one digit occurs
/// twice or three times (all others at most once), and a triple is not three in a row.
pub fn steuer_id(text: &str) -> bool {
    let Some(sig) = significant(text) else {
        return false;
    };
    let mut d = [0u8; 11];
    let mut n = 0;
    for c in sig {
        if n == 11 || !c.is_ascii_digit() {
            return false;
        }
        d[n] = c - b'0';
        n += 1;
    }
    if n != 11 || d[0] == 0 {
        return false;
    }
    let mut counts = [0u8; 10];
    for &x in &d[..10] {
        counts[usize::from(x)] += 1;
    }
    let repeated: Vec<u8> = counts.iter().copied().filter(|&c| c > 1).collect();
    if repeated.len() != 1 || repeated[0] > 3 {
        return false;
    }
    if repeated[0] == 3 && d[..10].windows(3).any(|w| w[0] == w[1] && w[1] == w[2]) {
        return false;
    }
    mod_11_10_check(&d[..10]) == d[10]
}

/// ISO 7064 MOD 11,10 check digit of `digits`.
pub fn mod_11_10_check(digits: &[u8]) -> u8 {
    let mut product: u8 = 10;
    for &x in digits {
        let mut sum = (x + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    let check = 11 - product;
    if check == 10 {
        0
    } else {
        check
    }
}

/// KVNR (Krankenversichertennummer, unchangeable part): a letter and nine digits, the last a
/// check digit over the letter's two-digit number (A = 01 … Z = 26) and the eight serial
/// digits, weights 1,2,1,2…, cross sums of the products, mod 10.
pub fn kvnr(text: &str) -> bool {
    let Some(mut sig) = significant(text) else {
        return false;
    };
    let Some(letter) = sig.next() else {
        return false;
    };
    if !letter.is_ascii_alphabetic() {
        return false;
    }
    let num = letter.to_ascii_uppercase() - b'A' + 1;
    let mut digits = [0u8; 10];
    digits[0] = num / 10;
    digits[1] = num % 10;
    let mut n = 2;
    let mut check = None;
    for c in sig {
        if !c.is_ascii_digit() {
            return false;
        }
        if n < 10 {
            digits[n] = c - b'0';
            n += 1;
        } else if check.is_none() {
            check = Some(c - b'0');
        } else {
            return false;
        }
    }
    let Some(check) = check else { return false };
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let p = u32::from(d) * if i % 2 == 0 { 1 } else { 2 };
            p / 10 + p % 10
        })
        .sum();
    (sum % 10) as u8 == check
}

/// ICAO 9303 character value: digits as such, A = 10 … Z = 35, `<` = 0.
fn icao_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 10),
        b'<' => Some(0),
        _ => None,
    }
}

/// ICAO 9303 check digit (weights 7, 3, 1 repeating, mod 10) of `data`.
pub fn icao_check_digit(data: &str) -> Option<u8> {
    let mut sum = 0u32;
    for (i, c) in data.bytes().enumerate() {
        sum += icao_value(c)? * [7, 3, 1][i % 3];
    }
    Some((sum % 10) as u8)
}

/// German ID card (Personalausweis) or passport document number with its check digit: nine
/// alphanumerics and the ICAO 9303 check digit as the tenth character.
pub fn icao_document(text: &str) -> bool {
    let Some(sig) = significant(text) else {
        return false;
    };
    let mut buf = [0u8; 10];
    let mut n = 0;
    for c in sig {
        if n == 10 {
            return false;
        }
        buf[n] = c;
        n += 1;
    }
    if n != 10 || !buf[9].is_ascii_digit() {
        return false;
    }
    let Ok(data) = std::str::from_utf8(&buf[..9]) else {
        return false;
    };
    icao_check_digit(data) == Some(buf[9] - b'0')
}

/// BIC (ISO 9362) format: 4 letters (institution), a known ISO country code, 2 alphanumerics
/// (location), optionally 3 alphanumerics (branch). Upper case only.
pub fn bic(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 8 && b.len() != 11 {
        return false;
    }
    if !b[..4].iter().all(u8::is_ascii_uppercase) {
        return false;
    }
    let country = [b[4], b[5]];
    let known =
        iban_length(country).is_some() || BIC_EXTRA_COUNTRIES.iter().any(|c| **c == country);
    if !known {
        return false;
    }
    b[6..]
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iban_vectors() {
        assert!(iban("DE89370400440532013000"));
        assert!(iban("DE89 3704 0044 0532 0130 00"));
        assert!(iban("GB82WEST12345698765432"));
        assert!(iban("NL91ABNA0417164300"));
        assert!(!iban("DE88370400440532013000"), "wrong check digits");
        assert!(!iban("DE8937040044053201300"), "too short for DE");
        assert!(!iban("XX89370400440532013000"), "unknown country");
        assert!(!iban("DE89_370400440532013000"));
    }

    #[test]
    fn steuer_id_vectors() {
        assert!(steuer_id("86095742719"));
        assert!(steuer_id("65929970489"));
        assert!(steuer_id("86 095 742 719"));
        // Valid MOD 11,10 check digit but every digit once: repetition rule.
        assert_eq!(mod_11_10_check(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0]), 3);
        assert!(!steuer_id("12345678903"));
        assert!(!steuer_id("86095742718"), "wrong check digit");
        assert!(!steuer_id("06095742719"), "leading zero");
        assert!(!steuer_id("8609574271"), "too short");
    }

    #[test]
    fn steuer_id_triple_in_a_row() {
        // Build a number with a digit three times in a row and a correct check digit.
        let body = [1, 1, 1, 2, 3, 4, 5, 6, 7, 8];
        let check = mod_11_10_check(&body);
        let s: String = body
            .iter()
            .chain(std::iter::once(&check))
            .map(|d| char::from(b'0' + d))
            .collect();
        assert!(!steuer_id(&s));
        // The same digits not in a row are fine.
        let body = [1, 2, 1, 3, 1, 4, 5, 6, 7, 8];
        let check = mod_11_10_check(&body);
        let s: String = body
            .iter()
            .chain(std::iter::once(&check))
            .map(|d| char::from(b'0' + d))
            .collect();
        assert!(steuer_id(&s));
    }

    #[test]
    fn kvnr_vectors() {
        assert!(kvnr("A000500015"));
        assert!(kvnr("a000500015"));
        assert!(!kvnr("A000500016"));
        assert!(!kvnr("B000500015"));
        assert!(!kvnr("A00050001"));
        assert!(!kvnr("1000500015"));
    }

    #[test]
    fn icao_vectors() {
        assert_eq!(icao_check_digit("T22000129"), Some(3));
        assert!(icao_document("T220001293"));
        assert!(!icao_document("T220001294"));
        assert!(!icao_document("T22000129"));
        // ICAO 9303 part 3 example passport number.
        assert_eq!(icao_check_digit("L898902C3"), Some(6));
    }

    #[test]
    fn luhn_vectors() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("79927398713"));
        assert!(!luhn("79927398710"));
        assert!(!luhn("4111111111111112"));
        assert!(!luhn("7"));
    }

    #[test]
    fn bic_format() {
        assert!(bic("COBADEFFXXX"));
        assert!(bic("DEUTDEFF"));
        assert!(bic("MARKDEF1100"));
        assert!(!bic("COBADEFF12"));
        assert!(!bic("VERTRAULICH"), "RA is no country");
        assert!(!bic("cobadeff"));
        assert!(!bic("CO1ADEFF"));
    }

    #[test]
    fn names_round_trip() {
        for v in Validator::ALL {
            assert_eq!(v.as_str().parse::<Validator>(), Ok(v));
        }
        assert!("mod97".parse::<Validator>().is_err());
    }

    fn change_digit(s: &str, pos: usize, delta: u8) -> String {
        let mut b = s.as_bytes().to_vec();
        let d = b[pos] - b'0';
        b[pos] = b'0' + (d + delta) % 10;
        String::from_utf8(b).unwrap()
    }

    proptest! {
        /// mod-97 catches every single-digit substitution anywhere in the IBAN.
        #[test]
        fn iban_single_digit_change(pos in 2usize..22, delta in 1u8..10) {
            prop_assert!(!iban(&change_digit("DE89370400440532013000", pos, delta)));
        }

        /// Random valid IBANs (we compute the check digits) and a change of one BBAN digit.
        #[test]
        fn iban_random_change(bban in proptest::collection::vec(0u8..10, 18), pos in 0usize..18, delta in 1u8..10) {
            let bban: String = bban.iter().map(|d| char::from(b'0' + d)).collect();
            let mut rem = 0u32;
            for c in format!("{bban}DE00").bytes() {
                rem = if c.is_ascii_digit() { (rem * 10 + u32::from(c - b'0')) % 97 } else { (rem * 100 + u32::from(c - b'A') + 10) % 97 };
            }
            let check = 98 - rem;
            let valid = format!("DE{check:02}{bban}");
            prop_assert!(iban(&valid));
            prop_assert!(!iban(&change_digit(&valid, 4 + pos, delta)));
        }

        /// Luhn catches every single-digit substitution.
        #[test]
        fn luhn_single_digit_change(body in proptest::collection::vec(0u8..10, 15), pos in 0usize..16, delta in 1u8..10) {
            let mut s: String = body.iter().map(|d| char::from(b'0' + d)).collect();
            let check = (0..10u8).find(|c| luhn(&format!("{s}{c}"))).unwrap();
            s.push(char::from(b'0' + check));
            prop_assert!(luhn(&s));
            prop_assert!(!luhn(&change_digit(&s, pos, delta)));
        }

        /// MOD 11,10 catches every single-digit substitution; a changed number is rejected by the
        /// check digit or the repetition rule.
        #[test]
        fn steuer_id_single_digit_change(pos in 0usize..11, delta in 1u8..10, which in 0usize..2) {
            let valid = ["86095742719", "65929970489"][which];
            prop_assert!(!steuer_id(&change_digit(valid, pos, delta)));
        }

        /// KVNR: every single-digit substitution of the serial digits or the check digit.
        #[test]
        fn kvnr_single_digit_change(serial in proptest::collection::vec(0u8..10, 8), letter in 0u8..26, pos in 0usize..9, delta in 1u8..10) {
            let head = format!("{}{}", char::from(b'A' + letter), serial.iter().map(|d| char::from(b'0' + d)).collect::<String>());
            let check = (0..10u8).find(|c| kvnr(&format!("{head}{c}"))).unwrap();
            let valid = format!("{head}{check}");
            prop_assert!(kvnr(&valid));
            prop_assert!(!kvnr(&change_digit(&valid, 1 + pos, delta)));
        }

        /// ICAO 9303: every single-digit substitution of a digit position or the check digit.
        #[test]
        fn icao_single_digit_change(pos in 1usize..10, delta in 1u8..10) {
            prop_assert!(!icao_document(&change_digit("T220001293", pos, delta)));
        }
    }
}
