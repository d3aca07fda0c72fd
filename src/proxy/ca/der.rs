//! Just enough DER to re-load a CA certificate for signing.
//!
//! rcgen 0.13 can sign only with an `rcgen::Certificate` it built itself; turning a stored CA
//! certificate back into one needs its `x509-parser` feature (a dozen more crates). We need
//! three things from the stored certificate: the subject name (to rebuild an identical issuer
//! name), the subject public key info (to check the key file matches) and the subject key
//! identifier (so leaves carry a matching authority key identifier, which OpenSSL-based peers
//! such as Synapse use to build the chain). This module extracts exactly those, from the fixed
//! layout of RFC 5280 `TBSCertificate`, and decodes the attributes of a `Name`.
//!
//! Only definite lengths and single-byte tags are accepted; anything else is an error, never
//! a guess.

/// A parse failure; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DerError(pub(crate) &'static str);

type Res<T> = Result<T, DerError>;

/// One TLV: tag, contents, and the whole encoding (tag + length + contents).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) contents: &'a [u8],
    pub(crate) whole: &'a [u8],
}

/// Splits the first TLV off `input`.
pub(crate) fn next_tlv(input: &[u8]) -> Res<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first().ok_or(DerError("truncated: tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError("multi-byte tags are not supported"));
    }
    let (&first, rest) = rest.split_first().ok_or(DerError("truncated: length"))?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(DerError("unsupported length encoding"));
        }
        if rest.len() < n {
            return Err(DerError("truncated: long length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(DerError("truncated: contents"));
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        contents: &rest[..len],
        whole: &input[..header + len],
    };
    Ok((tlv, &rest[len..]))
}

fn expect<'a>(input: &'a [u8], tag: u8, what: &'static str) -> Res<(Tlv<'a>, &'a [u8])> {
    let (tlv, rest) = next_tlv(input)?;
    if tlv.tag != tag {
        return Err(DerError(what));
    }
    Ok((tlv, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
/// `id-ce-subjectKeyIdentifier` (2.5.29.14), encoded contents.
const OID_SKI: &[u8] = &[0x55, 0x1d, 0x0e];

/// The parts of a certificate that signing with it as issuer needs.
#[derive(Debug, Clone)]
pub(crate) struct CertParts<'a> {
    /// The subject `Name`, whole TLV.
    pub(crate) subject: &'a [u8],
    /// The `SubjectPublicKeyInfo`, whole TLV.
    pub(crate) spki: &'a [u8],
    /// The key identifier of the subjectKeyIdentifier extension, if present.
    pub(crate) ski: Option<&'a [u8]>,
}

/// Extracts subject, SPKI and SKI from a DER certificate.
pub(crate) fn cert_parts(der: &[u8]) -> Res<CertParts<'_>> {
    let (cert, _) = expect(der, SEQUENCE, "certificate is not a SEQUENCE")?;
    let (tbs, _) = expect(cert.contents, SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
    let mut rest = tbs.contents;
    // version [0] EXPLICIT, optional
    let (first, after) = next_tlv(rest)?;
    if first.tag == 0xa0 {
        rest = after;
    }
    let (_serial, rest) = expect(rest, 0x02, "serialNumber is not an INTEGER")?;
    let (_sig, rest) = expect(rest, SEQUENCE, "signature is not a SEQUENCE")?;
    let (_issuer, rest) = expect(rest, SEQUENCE, "issuer is not a SEQUENCE")?;
    let (_validity, rest) = expect(rest, SEQUENCE, "validity is not a SEQUENCE")?;
    let (subject, rest) = expect(rest, SEQUENCE, "subject is not a SEQUENCE")?;
    let (spki, mut rest) = expect(rest, SEQUENCE, "subjectPublicKeyInfo is not a SEQUENCE")?;
    let mut ski = None;
    while !rest.is_empty() {
        let (field, after) = next_tlv(rest)?;
        rest = after;
        if field.tag != 0xa3 {
            continue; // issuerUniqueID [1] / subjectUniqueID [2]
        }
        let (exts, _) = expect(field.contents, SEQUENCE, "extensions is not a SEQUENCE")?;
        let mut list = exts.contents;
        while !list.is_empty() {
            let (ext, after) = expect(list, SEQUENCE, "extension is not a SEQUENCE")?;
            list = after;
            let (oid, mut body) = expect(ext.contents, OID, "extnID is not an OID")?;
            let (maybe_critical, after) = next_tlv(body)?;
            if maybe_critical.tag == BOOLEAN {
                body = after;
            }
            let (value, _) = expect(body, OCTET_STRING, "extnValue is not an OCTET STRING")?;
            if oid.contents == OID_SKI {
                let (id, _) = expect(value.contents, OCTET_STRING, "keyIdentifier")?;
                ski = Some(id.contents);
            }
        }
    }
    Ok(CertParts {
        subject: subject.whole,
        spki: spki.whole,
        ski,
    })
}

/// One attribute of a `Name`: OID arcs, string tag, raw string bytes.
pub(crate) type Attribute<'a> = (Vec<u64>, u8, &'a [u8]);

/// Decodes a `Name` (whole TLV) into its attributes, in order. Multi-valued RDNs are refused.
pub(crate) fn name_attributes(name: &[u8]) -> Res<Vec<Attribute<'_>>> {
    let (seq, _) = expect(name, SEQUENCE, "Name is not a SEQUENCE")?;
    let mut rest = seq.contents;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (rdn, after) = expect(rest, SET, "RDN is not a SET")?;
        rest = after;
        let (atv, extra) = expect(rdn.contents, SEQUENCE, "AttributeTypeAndValue")?;
        if !extra.is_empty() {
            return Err(DerError("multi-valued RDNs are not supported"));
        }
        let (oid, value) = expect(atv.contents, OID, "attribute type is not an OID")?;
        let (value, _) = next_tlv(value)?;
        out.push((oid_arcs(oid.contents)?, value.tag, value.contents));
    }
    Ok(out)
}

/// Decodes OID contents into arcs.
pub(crate) fn oid_arcs(contents: &[u8]) -> Res<Vec<u64>> {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for (i, b) in contents.iter().enumerate() {
        if value > (u64::MAX >> 7) {
            return Err(DerError("OID arc too large"));
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i == contents.len() - 1 {
            return Err(DerError("truncated OID"));
        }
    }
    if arcs.is_empty() {
        return Err(DerError("empty OID"));
    }
    Ok(arcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_decoding() {
        assert_eq!(oid_arcs(&[0x55, 0x04, 0x03]).unwrap(), vec![2, 5, 4, 3]);
        // 1.2.840.10045.2.1 (id-ecPublicKey)
        assert_eq!(
            oid_arcs(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]).unwrap(),
            vec![1, 2, 840, 10045, 2, 1]
        );
        assert!(oid_arcs(&[0x2a, 0x86]).is_err());
        assert!(oid_arcs(&[]).is_err());
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(next_tlv(&[0x30, 0x05, 0x01]).is_err());
        assert!(next_tlv(&[0x30, 0x82, 0x01]).is_err());
        assert!(next_tlv(&[0x1f, 0x01, 0x00]).is_err());
        let (tlv, rest) = next_tlv(&[0x04, 0x01, 0xaa, 0xbb]).unwrap();
        assert_eq!(
            (tlv.tag, tlv.contents, rest),
            (0x04, &[0xaa][..], &[0xbb][..])
        );
        assert_eq!(tlv.whole, &[0x04, 0x01, 0xaa]);
    }
}
