//! A minimal, strictly bounded BER reader for ESS `SecurityLabel` (RFC 2634):
//!
//! ```text
//! ESSSecurityLabel ::= SET {
//!   security-policy-identifier SecurityPolicyIdentifier OPTIONAL,  -- OBJECT IDENTIFIER
//!   security-classification    SecurityClassification OPTIONAL,    -- INTEGER
//!   privacy-mark               ESSPrivacyMark OPTIONAL,            -- PrintableString | UTF8String
//!   security-categories        SecurityCategories OPTIONAL }       -- SET OF SecurityCategory
//! ```
//!
//! Design notes: only definite lengths, at most 4 length octets, single-octet tags, each
//! element at most once; anything else is an error (fail closed). The categories are only
//! detected, not decoded (the NATO/MISSI category encodings are not needed by the guard, whose
//! labels travel as XML or JSON); a caller must refuse a label that has them.

/// What was found in the SET.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EssLabel {
    pub policy: Option<String>,
    pub classification: Option<u64>,
    pub privacy_mark: Option<String>,
    pub has_categories: bool,
}

fn read_tlv(data: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, rest) = data.split_first().ok_or("truncated: missing tag")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-octet tags are not supported".into());
    }
    let (&l0, mut rest) = rest.split_first().ok_or("truncated: missing length")?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else if l0 == 0x80 {
        return Err("indefinite length is not supported".into());
    } else {
        let n = (l0 & 0x7f) as usize;
        if n > 4 || rest.len() < n {
            return Err("bad length".into());
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(format!(
            "truncated: element needs {len} bytes, {} left",
            rest.len()
        ));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Decodes an OBJECT IDENTIFIER body to dotted form.
pub fn decode_oid(body: &[u8]) -> Result<String, String> {
    if body.is_empty() || body.len() > 128 {
        return Err("bad OID length".into());
    }
    let mut arcs: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    let mut in_arc = false;
    for &b in body {
        if !in_arc && b == 0x80 {
            return Err("non-minimal OID encoding".into());
        }
        if v > (u64::MAX >> 7) {
            return Err("OID arc too large".into());
        }
        v = (v << 7) | (b & 0x7f) as u64;
        in_arc = b & 0x80 != 0;
        if !in_arc {
            arcs.push(v);
            v = 0;
        }
    }
    if in_arc {
        return Err("truncated OID".into());
    }
    let first = arcs[0];
    let (a, b) = if first < 40 {
        (0, first)
    } else if first < 80 {
        (1, first - 40)
    } else {
        (2, first - 80)
    };
    let mut s = format!("{a}.{b}");
    for x in &arcs[1..] {
        s.push_str(&format!(".{x}"));
    }
    Ok(s)
}

/// Parses an ESS SecurityLabel (the whole input must be exactly one SET).
pub fn parse_ess_security_label(data: &[u8]) -> Result<EssLabel, String> {
    let (tag, body, rest) = read_tlv(data)?;
    if tag != 0x31 {
        return Err(format!("expected SET (0x31), found tag 0x{tag:02x}"));
    }
    if !rest.is_empty() {
        return Err("trailing data after the label".into());
    }
    let mut out = EssLabel::default();
    let mut body = body;
    while !body.is_empty() {
        let (tag, v, r) = read_tlv(body)?;
        body = r;
        match tag {
            0x06 => {
                if out.policy.is_some() {
                    return Err("duplicate policy identifier".into());
                }
                out.policy = Some(decode_oid(v)?);
            }
            0x02 => {
                if out.classification.is_some() {
                    return Err("duplicate classification".into());
                }
                if v.is_empty() || v.len() > 8 || v[0] & 0x80 != 0 {
                    return Err("classification is not a small non-negative INTEGER".into());
                }
                out.classification = Some(v.iter().fold(0u64, |a, &b| (a << 8) | b as u64));
            }
            0x13 | 0x0c => {
                if out.privacy_mark.is_some() {
                    return Err("duplicate privacy mark".into());
                }
                out.privacy_mark =
                    Some(String::from_utf8(v.to_vec()).map_err(|_| "privacy mark is not UTF-8")?);
            }
            0x31 => {
                if out.has_categories {
                    return Err("duplicate security categories".into());
                }
                out.has_categories = true;
            }
            t => return Err(format!("unexpected element tag 0x{t:02x} in SecurityLabel")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_policy_classification_mark() {
        // SET { INTEGER 51, OID 1.1, UTF8String "VAGUELY SECRET" } (the conformance file).
        let mut d = vec![0x31, 0x16, 0x02, 0x01, 0x33, 0x06, 0x01, 0x29, 0x0c, 0x0e];
        d.extend_from_slice(b"VAGUELY SECRET");
        let l = parse_ess_security_label(&d).unwrap();
        assert_eq!(l.policy.as_deref(), Some("1.1"));
        assert_eq!(l.classification, Some(51));
        assert_eq!(l.privacy_mark.as_deref(), Some("VAGUELY SECRET"));
        assert!(!l.has_categories);
        assert_eq!(
            decode_oid(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x86, 0x8d, 0x1f]).unwrap(),
            "1.3.6.1.4.1.99999"
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse_ess_security_label(&[]).is_err());
        assert!(parse_ess_security_label(&[0x31]).is_err());
        assert!(parse_ess_security_label(&[0x31, 0x80, 0, 0]).is_err());
        assert!(parse_ess_security_label(&[0x31, 0x05, 0x02, 0x01]).is_err());
        assert!(
            parse_ess_security_label(&[0x31, 0x03, 0x02, 0x01, 0x80]).is_err(),
            "negative"
        );
        assert!(
            parse_ess_security_label(&[0x31, 0x02, 0x05, 0x00]).is_err(),
            "NULL not allowed"
        );
        assert!(
            parse_ess_security_label(&[0x31, 0x00, 0x00]).is_err(),
            "trailing"
        );
        assert!(parse_ess_security_label(&[0x31, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        // Every truncation of a valid label fails without panicking.
        let mut d = vec![0x31, 0x16, 0x02, 0x01, 0x33, 0x06, 0x01, 0x29, 0x0c, 0x0e];
        d.extend_from_slice(b"VAGUELY SECRET");
        for n in 0..d.len() {
            assert!(parse_ess_security_label(&d[..n]).is_err());
        }
    }
}
