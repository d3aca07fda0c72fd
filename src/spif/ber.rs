//! A strictly bounded BER reader and DER writer for the ESS `SecurityLabel` (RFC 2634, X.841)
//! with the security category syntaxes of ACP 145(A) / SDN.801c (the syntaxes NATO SPIFs name
//! by their `rbacId` 2.16.840.1.101.2.1.8.3) and the MISSI syntax (`rbacId`
//! 2.16.840.1.101.2.1.8.1):
//!
//! ```text
//! ESSSecurityLabel ::= SET {
//!   security-policy-identifier SecurityPolicyIdentifier OPTIONAL,  -- OBJECT IDENTIFIER
//!   security-classification    SecurityClassification OPTIONAL,    -- INTEGER
//!   privacy-mark               ESSPrivacyMark OPTIONAL,            -- PrintableString | UTF8String
//!   security-categories        SecurityCategories OPTIONAL }       -- SET SIZE (1..64) OF …
//! SecurityCategory ::= SEQUENCE {
//!   type  [0] IMPLICIT OBJECT IDENTIFIER,
//!   value [1] EXPLICIT ANY DEFINED BY type }          -- a tagged open type is always explicit
//!
//! -- value by type (id-commonSecurityCategoriesSyntaxes = 2.16.840.1.101.2.1.8.3):
//! -- .0 restrictive bit map      RestrictiveTag ::= SEQUENCE { tagName OID, attributeFlags BIT STRING }
//! -- .1 enumerated permissive    EnumeratedTag  ::= SEQUENCE { tagName OID, attributeList SET OF INTEGER }
//! -- .2 permissive bit map       PermissiveTag  ::= SEQUENCE { tagName OID, attributeFlags BIT STRING }
//! -- .3 informative              InformativeTag ::= SEQUENCE { tagName OID, field FreeFormField }
//! --                             FreeFormField  ::= CHOICE { bitSetAttributes BIT STRING,
//! --                                                         securityAttributes SET OF INTEGER }
//! -- .4 enumerated restrictive   EnumeratedTag
//!
//! -- MISSI, type 2.16.840.1.101.2.1.8.1: one category for all tag sets
//! MissiSecurityCategories ::= CHOICE { lrbacInfo SEQUENCE {…},            -- refused
//!                                      prbacSecurityCategories SET OF NamedTagSet }
//! NamedTagSet ::= SEQUENCE { tagSetName OID, securityTags SEQUENCE OF SecurityTag }
//! SecurityTag ::= CHOICE {
//!   restrictivebitMap    [1] SEQUENCE { securityLevel INTEGER OPTIONAL, attributeFlags BIT STRING },
//!   enumeratedAttributes [2] SEQUENCE { securityLevel INTEGER OPTIONAL, attributeFlags SET OF INTEGER },
//!   permissivebitMap     [6] SEQUENCE { securityLevel INTEGER OPTIONAL, attributeFlags BIT STRING },
//!   freeFormField        [7] EXPLICIT CHOICE { BIT STRING, SET OF INTEGER } }
//! ```
//!
//! `tagName` is the SPIF's `securityCategoryTagSet id`; the LACVs are the numbers of the set
//! bits (bit 0 = the most significant bit of the first octet) or the enumerated INTEGERs. The
//! Open XML SPIF's tag types map one to one: `restrictive` → .0, `permissive` → .2,
//! `enumerated` + `enumType="permissive"` → .1, `enumerated` + `enumType="restrictive"` → .4,
//! `tagType7` (informative) → .3 with `tag7Encoding="bitSetAttributes"` as a bit string and
//! `"securityAttributes"` as a SET OF INTEGER. In MISSI, `enumeratedAttributes` are permissive
//! or restrictive as the SPIF's tag set says (a tag set with both is refused); the SPIF's
//! `rbacId` chooses the syntax written ([`super::SpifSet::to_ber`]); both are read.
//!
//! Design notes (fail closed):
//! - Input: definite lengths only (at most 4 length octets), single-octet tags, primitive
//!   strings, each SET element at most once, minimal INTEGERs, no trailing bytes anywhere.
//!   BER freedoms that do not change the value are accepted: any order of the SET's elements
//!   and of the categories, non-minimal length octets, trailing zero octets in a bit map.
//!   Refused: non-zero unused bits, an empty bit map or attribute list, a repeated attribute,
//!   a bit map longer than [`MAX_BITMAP_BYTES`], more than [`MAX_ATTRIBUTES`] attributes or
//!   [`MAX_SECURITY_CATEGORIES`] categories, the same (syntax, tag set) twice.
//! - A category of a type outside these syntaxes is kept as [`Syntax::Unknown`] after checking
//!   its framing; the label layer reports it as an unknown category of the policy (an invalid
//!   label). MISSI: `lrbacInfo` and `securityLevel` are refused, and so is a MISSI category next
//!   to ACP 145 ones or a second one.
//! - Output is DER: SET elements in tag order, categories sorted by their encodings, minimal
//!   lengths and INTEGERs, bit maps without trailing zero octets and with the unused bits of
//!   the last octet counted, the privacy mark as UTF8String.
use super::TagType;

/// `id-commonSecurityCategoriesSyntaxes` (ACP 145(A)); the `rbacId` of SPIFs using them.
pub const ID_COMMON_SYNTAXES: &str = "2.16.840.1.101.2.1.8.3";
/// The MISSI security category syntax (`rbacId` of MISSI SPIFs) and its category `type`.
pub const ID_MISSI: &str = "2.16.840.1.101.2.1.8.1";
pub const ID_RESTRICTIVE_ATTRIBUTES: &str = "2.16.840.1.101.2.1.8.3.0";
pub const ID_ENUMERATED_PERMISSIVE_ATTRIBUTES: &str = "2.16.840.1.101.2.1.8.3.1";
pub const ID_PERMISSIVE_ATTRIBUTES: &str = "2.16.840.1.101.2.1.8.3.2";
pub const ID_INFORMATIVE_ATTRIBUTES: &str = "2.16.840.1.101.2.1.8.3.3";
pub const ID_ENUMERATED_RESTRICTIVE_ATTRIBUTES: &str = "2.16.840.1.101.2.1.8.3.4";

/// At most this many security categories (`ub-security-categories` of ACP 145).
pub const MAX_SECURITY_CATEGORIES: usize = 64;
/// At most this many octets in a bit map (LACVs 0..16383; the NATO SPIF uses up to 10000).
pub const MAX_BITMAP_BYTES: usize = 2048;
/// At most this many INTEGERs in one enumerated attribute list.
pub const MAX_ATTRIBUTES: usize = 1024;
/// Privacy marks are at most this many characters (`ub-privacy-mark-length`, X.411 / X.841).
pub const MAX_PRIVACY_MARK_CHARS: usize = 128;

/// The syntax of one security category (its `type` OID).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Syntax {
    RestrictiveBitMap,
    EnumeratedPermissive,
    PermissiveBitMap,
    /// Informative, `bitSetAttributes`.
    InformativeBits,
    /// Informative, `securityAttributes`.
    InformativeEnumerated,
    EnumeratedRestrictive,
    /// MISSI `enumeratedAttributes` [2]: permissive or restrictive as the SPIF's tag set says
    /// (only inside the MISSI category).
    MissiEnumerated,
    /// Any other type OID (dotted); the value is not decoded.
    Unknown(String),
}

impl Syntax {
    /// The category `type` OID.
    pub fn type_oid(&self) -> &str {
        match self {
            Syntax::RestrictiveBitMap => ID_RESTRICTIVE_ATTRIBUTES,
            Syntax::EnumeratedPermissive => ID_ENUMERATED_PERMISSIVE_ATTRIBUTES,
            Syntax::PermissiveBitMap => ID_PERMISSIVE_ATTRIBUTES,
            Syntax::InformativeBits | Syntax::InformativeEnumerated => ID_INFORMATIVE_ATTRIBUTES,
            Syntax::EnumeratedRestrictive => ID_ENUMERATED_RESTRICTIVE_ATTRIBUTES,
            Syntax::MissiEnumerated => ID_MISSI,
            Syntax::Unknown(o) => o,
        }
    }

    /// The SPIF tag type of the categories this syntax carries (`None` for unknown types and
    /// for [`Syntax::MissiEnumerated`], which the SPIF decides).
    pub fn tag_type(&self) -> Option<TagType> {
        Some(match self {
            Syntax::RestrictiveBitMap => TagType::Restrictive,
            Syntax::EnumeratedPermissive => TagType::EnumeratedPermissive,
            Syntax::PermissiveBitMap => TagType::Permissive,
            Syntax::InformativeBits | Syntax::InformativeEnumerated => TagType::Informative,
            Syntax::EnumeratedRestrictive => TagType::EnumeratedRestrictive,
            Syntax::MissiEnumerated | Syntax::Unknown(_) => return None,
        })
    }

    /// The syntax for a tag type; `bit_set` chooses the informative encoding.
    pub fn for_tag_type(t: TagType, bit_set: bool) -> Syntax {
        match t {
            TagType::Restrictive => Syntax::RestrictiveBitMap,
            TagType::Permissive => Syntax::PermissiveBitMap,
            TagType::EnumeratedPermissive => Syntax::EnumeratedPermissive,
            TagType::EnumeratedRestrictive => Syntax::EnumeratedRestrictive,
            TagType::Informative if bit_set => Syntax::InformativeBits,
            TagType::Informative => Syntax::InformativeEnumerated,
        }
    }

    fn is_bit_map(&self) -> bool {
        matches!(
            self,
            Syntax::RestrictiveBitMap | Syntax::PermissiveBitMap | Syntax::InformativeBits
        )
    }
}

/// One decoded security category: syntax, tag set OID (dotted), LACVs (ascending, distinct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EssCategory {
    pub syntax: Syntax,
    /// `tagName` (empty for [`Syntax::Unknown`]).
    pub tag_set: String,
    pub lacvs: Vec<u64>,
}

/// What was found in the SET.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EssLabel {
    pub policy: Option<String>,
    pub classification: Option<u64>,
    pub privacy_mark: Option<String>,
    /// Empty when the label has no `security-categories`.
    pub categories: Vec<EssCategory>,
    /// The categories are (to be) carried in one MISSI category (type [`ID_MISSI`],
    /// `prbacSecurityCategories`) instead of one ACP 145 category each.
    pub missi: bool,
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

/// Reads exactly one element with tag `want` from `data` (nothing may follow).
fn read_only<'a>(data: &'a [u8], want: u8, what: &str) -> Result<&'a [u8], String> {
    let (tag, body, rest) = read_tlv(data)?;
    if tag != want {
        return Err(format!(
            "{what}: expected tag 0x{want:02x}, found 0x{tag:02x}"
        ));
    }
    if !rest.is_empty() {
        return Err(format!("{what}: trailing bytes"));
    }
    Ok(body)
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

/// Encodes a dotted OID (the body, without tag and length).
pub fn encode_oid(dotted: &str) -> Result<Vec<u8>, String> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|a| a.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("invalid OID '{dotted}'"))?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40) {
        return Err(format!("invalid OID '{dotted}'"));
    }
    let first = arcs[0]
        .checked_mul(40)
        .and_then(|v| v.checked_add(arcs[1]))
        .ok_or_else(|| format!("invalid OID '{dotted}'"))?;
    let mut out = Vec::new();
    for arc in std::iter::once(first).chain(arcs[2..].iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            groups.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    Ok(out)
}

/// A non-negative INTEGER in minimal form (X.690 8.3.2, binding for BER too), below 2^63.
fn decode_uint(v: &[u8], what: &str) -> Result<u64, String> {
    if v.is_empty() || v.len() > 8 || v[0] & 0x80 != 0 {
        return Err(format!("{what} is not a small non-negative INTEGER"));
    }
    if v.len() > 1 && v[0] == 0 && v[1] & 0x80 == 0 {
        return Err(format!("{what}: non-minimal INTEGER encoding"));
    }
    Ok(v.iter().fold(0u64, |a, &b| (a << 8) | b as u64))
}

fn encode_uint(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    let mut out = bytes[skip..].to_vec();
    if out[0] & 0x80 != 0 {
        out.insert(0, 0);
    }
    out
}

/// The set bits of a BIT STRING body (unused-bits octet first).
fn decode_bit_map(v: &[u8]) -> Result<Vec<u64>, String> {
    let (&unused, bits) = v.split_first().ok_or("empty BIT STRING")?;
    if unused > 7 || (bits.is_empty() && unused != 0) {
        return Err(format!("BIT STRING with {unused} unused bits"));
    }
    if bits.len() > MAX_BITMAP_BYTES {
        return Err(format!(
            "bit map of {} octets (limit {MAX_BITMAP_BYTES})",
            bits.len()
        ));
    }
    if let Some(&last) = bits.last() {
        if last & ((1u8 << unused) - 1) != 0 {
            return Err("BIT STRING has non-zero unused bits".into());
        }
    }
    let mut out = Vec::new();
    for (i, &b) in bits.iter().enumerate() {
        for j in 0..8 {
            if b & (0x80 >> j) != 0 {
                out.push((i * 8 + j) as u64);
            }
        }
    }
    if out.is_empty() {
        return Err("bit map with no bit set".into());
    }
    Ok(out)
}

/// DER BIT STRING body for the bits `lacvs` (named-bit list: no trailing zero bits).
fn encode_bit_map(lacvs: &[u64]) -> Result<Vec<u8>, String> {
    let max = *lacvs.iter().max().ok_or("no LACV to encode")?;
    if max >= (MAX_BITMAP_BYTES * 8) as u64 {
        return Err(format!(
            "LACV {max} does not fit a bit map of {MAX_BITMAP_BYTES} octets"
        ));
    }
    let n = (max / 8 + 1) as usize;
    let mut out = vec![0u8; n + 1];
    for &l in lacvs {
        out[1 + (l / 8) as usize] |= 0x80 >> (l % 8);
    }
    out[0] = (7 - max % 8) as u8;
    Ok(out)
}

/// The INTEGERs of a SET OF INTEGER body, ascending; a repeated value is an error.
fn decode_attributes(mut v: &[u8]) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    while !v.is_empty() {
        let (tag, body, rest) = read_tlv(v)?;
        v = rest;
        if tag != 0x02 {
            return Err(format!(
                "attribute list: expected INTEGER, found tag 0x{tag:02x}"
            ));
        }
        if out.len() >= MAX_ATTRIBUTES {
            return Err(format!("more than {MAX_ATTRIBUTES} attributes"));
        }
        out.push(decode_uint(body, "attribute")?);
    }
    if out.is_empty() {
        return Err("empty attribute list".into());
    }
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err("repeated attribute in a list".into());
    }
    Ok(out)
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let b = (n as u32).to_be_bytes();
        let skip = b.iter().take_while(|&&x| x == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&b[skip..]);
    }
    out.extend_from_slice(body);
    out
}

/// DER SET OF: the element encodings in ascending order.
fn set_of(mut elems: Vec<Vec<u8>>) -> Vec<u8> {
    elems.sort();
    tlv(0x31, &elems.concat())
}

/// One decoded `SecurityCategory`: an ACP 145 (or unknown) category, or a MISSI one.
enum Decoded {
    One(EssCategory),
    Missi(Vec<EssCategory>),
}

fn decode_category(data: &[u8]) -> Result<Decoded, String> {
    let (tag, seq, rest) = read_tlv(data)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(format!(
            "security category: expected SEQUENCE, found tag 0x{tag:02x}"
        ));
    }
    let (tag, oid, rest) = read_tlv(seq)?;
    if tag != 0x80 {
        return Err(format!(
            "security category: expected type [0] (0x80), found tag 0x{tag:02x}"
        ));
    }
    let type_oid = decode_oid(oid).map_err(|e| format!("security category type: {e}"))?;
    let value = read_only(rest, 0xa1, "security category value [1]")?;
    let syntax = match type_oid.as_str() {
        ID_RESTRICTIVE_ATTRIBUTES => Syntax::RestrictiveBitMap,
        ID_ENUMERATED_PERMISSIVE_ATTRIBUTES => Syntax::EnumeratedPermissive,
        ID_PERMISSIVE_ATTRIBUTES => Syntax::PermissiveBitMap,
        ID_INFORMATIVE_ATTRIBUTES => Syntax::InformativeBits,
        ID_ENUMERATED_RESTRICTIVE_ATTRIBUTES => Syntax::EnumeratedRestrictive,
        ID_MISSI => return decode_missi(value).map(Decoded::Missi),
        _ => {
            // Framing only: one element inside [1].
            read_tlv(value).and_then(|(_, _, r)| {
                r.is_empty()
                    .then_some(())
                    .ok_or_else(|| "trailing bytes".to_string())
            })?;
            return Ok(Decoded::One(EssCategory {
                syntax: Syntax::Unknown(type_oid),
                tag_set: String::new(),
                lacvs: Vec::new(),
            }));
        }
    };
    let what = format!("security category {}", syntax.type_oid());
    let inner = read_only(value, 0x30, &what)?;
    let (tag, name, field) = read_tlv(inner)?;
    if tag != 0x06 {
        return Err(format!(
            "{what}: expected tagName OID, found tag 0x{tag:02x}"
        ));
    }
    let tag_set = decode_oid(name).map_err(|e| format!("{what}: tagName: {e}"))?;
    let (ftag, fbody, frest) = read_tlv(field)?;
    if !frest.is_empty() {
        return Err(format!("{what}: trailing bytes"));
    }
    let (syntax, lacvs) = match (&syntax, ftag) {
        (Syntax::InformativeBits, 0x31) => {
            (Syntax::InformativeEnumerated, decode_attributes(fbody))
        }
        (s, 0x03) if s.is_bit_map() => (syntax.clone(), decode_bit_map(fbody)),
        (Syntax::EnumeratedPermissive | Syntax::EnumeratedRestrictive, 0x31) => {
            (syntax.clone(), decode_attributes(fbody))
        }
        (s, t) => {
            let want = if s.is_bit_map() {
                "BIT STRING"
            } else {
                "SET OF INTEGER"
            };
            return Err(format!("{what}: expected {want}, found tag 0x{t:02x}"));
        }
    };
    Ok(Decoded::One(EssCategory {
        syntax,
        tag_set,
        lacvs: lacvs.map_err(|e| format!("{what}: {e}"))?,
    }))
}

/// The MISSI category value: `MissiSecurityCategories` with `prbacSecurityCategories`
/// (`SET OF NamedTagSet { tagSetName OID, securityTags SEQUENCE OF SecurityTag }`), each
/// `SecurityTag` one of `[1]` restrictive bit map, `[2]` enumerated attributes, `[6]` permissive
/// bit map (each `SEQUENCE { securityLevel INTEGER OPTIONAL, attributeFlags … }`) or `[7]`
/// free-form field (`TagType7Data`: BIT STRING or SET OF INTEGER). Refused: `lrbacInfo`, a
/// `securityLevel` (the label model has no place for it), a tag set or tag kind twice.
fn decode_missi(value: &[u8]) -> Result<Vec<EssCategory>, String> {
    let (tag, body, rest) = read_tlv(value)?;
    if !rest.is_empty() {
        return Err("MISSI category: trailing bytes".into());
    }
    match tag {
        0x31 => {}
        0x30 => return Err("MISSI local RBAC categories (lrbacInfo) are not supported".into()),
        t => return Err(format!("MISSI category: unexpected tag 0x{t:02x}")),
    }
    let mut out: Vec<EssCategory> = Vec::new();
    let mut named = body;
    while !named.is_empty() {
        let (tag, nts, r) = read_tlv(named)?;
        named = r;
        if tag != 0x30 {
            return Err(format!(
                "MISSI NamedTagSet: expected SEQUENCE, found tag 0x{tag:02x}"
            ));
        }
        let (tag, oid, r) = read_tlv(nts)?;
        if tag != 0x06 {
            return Err(format!(
                "MISSI NamedTagSet: expected tagSetName OID, found tag 0x{tag:02x}"
            ));
        }
        let tag_set = decode_oid(oid).map_err(|e| format!("MISSI tagSetName: {e}"))?;
        if out.iter().any(|c| c.tag_set == tag_set) {
            return Err(format!("MISSI: duplicate tag set {tag_set}"));
        }
        let mut tags = read_only(r, 0x30, "MISSI securityTags")?;
        if tags.is_empty() {
            return Err(format!("MISSI: tag set {tag_set} without security tags"));
        }
        let first = out.len();
        while !tags.is_empty() {
            let (tag, v, r) = read_tlv(tags)?;
            tags = r;
            let what = format!("MISSI security tag [{}] of {tag_set}", tag & 0x1f);
            let (syntax, lacvs) = match tag {
                0xa1 | 0xa2 | 0xa6 => {
                    let (ftag, fbody, frest) = read_tlv(v)?;
                    if ftag == 0x02 {
                        return Err(format!("{what}: securityLevel is not supported"));
                    }
                    if !frest.is_empty() {
                        return Err(format!("{what}: trailing bytes"));
                    }
                    match (tag, ftag) {
                        (0xa1, 0x03) => (Syntax::RestrictiveBitMap, decode_bit_map(fbody)),
                        (0xa6, 0x03) => (Syntax::PermissiveBitMap, decode_bit_map(fbody)),
                        (0xa2, 0x31) => (Syntax::MissiEnumerated, decode_attributes(fbody)),
                        (_, t) => return Err(format!("{what}: unexpected tag 0x{t:02x}")),
                    }
                }
                0xa7 => {
                    let (ftag, fbody, frest) = read_tlv(v)?;
                    if !frest.is_empty() {
                        return Err(format!("{what}: trailing bytes"));
                    }
                    match ftag {
                        0x03 => (Syntax::InformativeBits, decode_bit_map(fbody)),
                        0x31 => (Syntax::InformativeEnumerated, decode_attributes(fbody)),
                        t => return Err(format!("{what}: unexpected tag 0x{t:02x}")),
                    }
                }
                t => {
                    return Err(format!(
                        "MISSI: unknown security tag 0x{t:02x} in {tag_set}"
                    ))
                }
            };
            let kind = |s: &Syntax| match s {
                Syntax::InformativeEnumerated => Syntax::InformativeBits,
                s => s.clone(),
            };
            if out[first..]
                .iter()
                .any(|c| kind(&c.syntax) == kind(&syntax))
            {
                return Err(format!("{what}: the same kind of tag twice"));
            }
            if out.len() >= MAX_SECURITY_CATEGORIES {
                return Err(format!(
                    "more than {MAX_SECURITY_CATEGORIES} MISSI security tags"
                ));
            }
            out.push(EssCategory {
                syntax,
                tag_set: tag_set.clone(),
                lacvs: lacvs.map_err(|e| format!("{what}: {e}"))?,
            });
        }
    }
    if out.is_empty() {
        return Err("MISSI category without tag sets".into());
    }
    Ok(out)
}

/// The categories and whether they came in a MISSI category (which may not be mixed with
/// ACP 145 categories, and comes at most once).
fn decode_categories(mut body: &[u8]) -> Result<(Vec<EssCategory>, bool), String> {
    let mut out: Vec<EssCategory> = Vec::new();
    let (mut missi, mut acp) = (false, false);
    let mut n = 0;
    while !body.is_empty() {
        let (_, _, rest) = read_tlv(body)?;
        let one = &body[..body.len() - rest.len()];
        body = rest;
        n += 1;
        if n > MAX_SECURITY_CATEGORIES {
            return Err(format!(
                "more than {MAX_SECURITY_CATEGORIES} security categories"
            ));
        }
        let c = match decode_category(one)? {
            Decoded::Missi(cats) => {
                if missi || acp {
                    return Err("a MISSI category next to other security categories".into());
                }
                missi = true;
                out.extend(cats);
                continue;
            }
            Decoded::One(c) => c,
        };
        if matches!(c.syntax, Syntax::Unknown(_)) {
            out.push(c);
            continue;
        }
        if missi {
            return Err("a MISSI category next to other security categories".into());
        }
        acp = true;
        let same = |o: &EssCategory| match (&o.syntax, &c.syntax) {
            (Syntax::Unknown(_), _) | (_, Syntax::Unknown(_)) => false,
            (a, b) => a.tag_type() == b.tag_type() && o.tag_set == c.tag_set,
        };
        if out.iter().any(same) {
            return Err(format!(
                "duplicate security category: type {} tag set {}",
                c.syntax.type_oid(),
                c.tag_set
            ));
        }
        out.push(c);
    }
    if out.is_empty() {
        return Err("empty security categories".into());
    }
    Ok((out, missi))
}

fn decode_privacy_mark(tag: u8, v: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(v).map_err(|_| "privacy mark is not UTF-8")?;
    if tag == 0x13
        && !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
    {
        return Err("privacy mark: not a PrintableString".into());
    }
    let n = s.chars().count();
    if n == 0 || n > MAX_PRIVACY_MARK_CHARS {
        return Err(format!(
            "privacy mark of {n} characters (1..{MAX_PRIVACY_MARK_CHARS})"
        ));
    }
    Ok(s.to_string())
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
    let mut seen_categories = false;
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
                out.classification = Some(decode_uint(v, "classification")?);
            }
            0x13 | 0x0c => {
                if out.privacy_mark.is_some() {
                    return Err("duplicate privacy mark".into());
                }
                out.privacy_mark = Some(decode_privacy_mark(tag, v)?);
            }
            0x31 => {
                if seen_categories {
                    return Err("duplicate security categories".into());
                }
                seen_categories = true;
                (out.categories, out.missi) = decode_categories(v)?;
            }
            t => return Err(format!("unexpected element tag 0x{t:02x} in SecurityLabel")),
        }
    }
    Ok(out)
}

/// DER encoding of one category (known syntaxes only).
fn encode_category(c: &EssCategory) -> Result<Vec<u8>, String> {
    if c.lacvs.is_empty() {
        return Err(format!("category of tag set {} without LACVs", c.tag_set));
    }
    let field = match c.syntax {
        Syntax::RestrictiveBitMap | Syntax::PermissiveBitMap | Syntax::InformativeBits => {
            tlv(0x03, &encode_bit_map(&c.lacvs)?)
        }
        Syntax::EnumeratedPermissive
        | Syntax::EnumeratedRestrictive
        | Syntax::InformativeEnumerated => {
            if c.lacvs.len() > MAX_ATTRIBUTES {
                return Err(format!("more than {MAX_ATTRIBUTES} attributes"));
            }
            set_of(
                c.lacvs
                    .iter()
                    .map(|&l| tlv(0x02, &encode_uint(l)))
                    .collect(),
            )
        }
        Syntax::MissiEnumerated | Syntax::Unknown(_) => {
            return Err(format!(
                "cannot encode category type {} as an ACP 145 category",
                c.syntax.type_oid()
            ))
        }
    };
    let inner = tlv(0x30, &[tlv(0x06, &encode_oid(&c.tag_set)?), field].concat());
    let seq = [
        tlv(0x80, &encode_oid(c.syntax.type_oid())?),
        tlv(0xa1, &inner),
    ]
    .concat();
    Ok(tlv(0x30, &seq))
}

/// DER encoding of the MISSI category holding `cats` (one `NamedTagSet` per tag set, its
/// security tags in tag order).
fn encode_missi(cats: &[EssCategory]) -> Result<Vec<u8>, String> {
    let mut by_set: std::collections::BTreeMap<&str, Vec<Vec<u8>>> =
        std::collections::BTreeMap::new();
    for c in cats {
        if c.lacvs.is_empty() {
            return Err(format!("category of tag set {} without LACVs", c.tag_set));
        }
        let attrs = || {
            set_of(
                c.lacvs
                    .iter()
                    .map(|&l| tlv(0x02, &encode_uint(l)))
                    .collect(),
            )
        };
        let tag = match c.syntax {
            Syntax::RestrictiveBitMap => tlv(0xa1, &tlv(0x03, &encode_bit_map(&c.lacvs)?)),
            Syntax::MissiEnumerated => tlv(0xa2, &attrs()),
            Syntax::PermissiveBitMap => tlv(0xa6, &tlv(0x03, &encode_bit_map(&c.lacvs)?)),
            Syntax::InformativeBits => tlv(0xa7, &tlv(0x03, &encode_bit_map(&c.lacvs)?)),
            Syntax::InformativeEnumerated => tlv(0xa7, &attrs()),
            ref s => {
                return Err(format!(
                    "category type {} has no MISSI security tag",
                    s.type_oid()
                ))
            }
        };
        by_set.entry(&c.tag_set).or_default().push(tag);
    }
    let mut named = Vec::new();
    for (tag_set, mut tags) in by_set {
        tags.sort();
        if tags.windows(2).any(|w| w[0][0] == w[1][0]) {
            return Err(format!(
                "tag set {tag_set}: the same MISSI security tag twice"
            ));
        }
        named.push(tlv(
            0x30,
            &[tlv(0x06, &encode_oid(tag_set)?), tlv(0x30, &tags.concat())].concat(),
        ));
    }
    let seq = [tlv(0x80, &encode_oid(ID_MISSI)?), tlv(0xa1, &set_of(named))].concat();
    Ok(tlv(0x30, &seq))
}

/// DER encoding of a SecurityLabel. The LACVs of each category must be distinct.
pub fn encode_ess_security_label(l: &EssLabel) -> Result<Vec<u8>, String> {
    if l.categories.len() > MAX_SECURITY_CATEGORIES {
        return Err(format!(
            "{} security categories (limit {MAX_SECURITY_CATEGORIES})",
            l.categories.len()
        ));
    }
    // DER SET: components in ascending tag order (INTEGER, OID, UTF8String, SET).
    let mut body = Vec::new();
    if let Some(c) = l.classification {
        body.extend(tlv(0x02, &encode_uint(c)));
    }
    if let Some(p) = &l.policy {
        body.extend(tlv(0x06, &encode_oid(p)?));
    }
    if let Some(pm) = &l.privacy_mark {
        let n = pm.chars().count();
        if n == 0 || n > MAX_PRIVACY_MARK_CHARS {
            return Err(format!(
                "privacy mark of {n} characters cannot be encoded (1..{MAX_PRIVACY_MARK_CHARS})"
            ));
        }
        body.extend(tlv(0x0c, pm.as_bytes()));
    }
    if !l.categories.is_empty() {
        let cats = if l.missi {
            vec![encode_missi(&l.categories)?]
        } else {
            l.categories
                .iter()
                .map(encode_category)
                .collect::<Result<Vec<_>, _>>()?
        };
        body.extend(set_of(cats));
    }
    Ok(tlv(0x31, &body))
}

impl super::SpifSet {
    /// Serialises `label` as a DER ESS `SecurityLabel` in the category syntax its SPIF's
    /// `rbacId` names: the ACP 145 syntaxes (no `rbacId`, or 2.16.840.1.101.2.1.8.3; one
    /// category per tag set and tag type, the informative encoding from the tag's
    /// `tag7Encoding`) or MISSI (2.16.840.1.101.2.1.8.1; one MISSI category, enumerated
    /// categories as `enumeratedAttributes`, refused for a tag set that has both enumerated
    /// permissive and enumerated restrictive tags). Another `rbacId` is refused for labels with
    /// categories ([`super::LabelError::Unsupported`]). The label's policy, classification and
    /// categories must exist in the SPIF.
    pub fn to_ber(&self, label: &super::Label) -> Result<Vec<u8>, super::LabelError> {
        use super::model::InformativeEncoding;
        use super::LabelError;
        let spif = self
            .get(&label.policy)
            .ok_or_else(|| LabelError::UnknownPolicy(label.policy.clone()))?;
        if spif.classification(label.classification).is_none() {
            return Err(LabelError::UnknownClassification {
                policy: spif.policy_id.clone(),
                classification: label.classification.to_string(),
            });
        }
        let missi = match spif.rbac_id.as_deref().map(str::trim) {
            _ if label.categories.is_empty() => false,
            None | Some(ID_COMMON_SYNTAXES) => false,
            Some(ID_MISSI) => true,
            Some(other) => {
                return Err(LabelError::Unsupported(format!(
                    "ESS BER categories in the syntax of rbacId {other} (the guard writes the \
                     ACP 145 syntaxes, rbacId {ID_COMMON_SYNTAXES}, and MISSI, {ID_MISSI})"
                )))
            }
        };
        let mut groups: std::collections::BTreeMap<(String, Syntax), Vec<u64>> =
            std::collections::BTreeMap::new();
        for c in &label.categories {
            let ci = spif
                .category_index(&c.tag_set, c.tag_type, c.lacv)
                .ok_or_else(|| LabelError::UnknownCategory {
                    policy: spif.policy_id.clone(),
                    category: format!("{} {} lacv {}", c.tag_set, c.tag_type, c.lacv),
                })?;
            let bit_set = spif.tag_of(ci).informative_encoding != InformativeEncoding::Enumerated;
            let mut syntax = Syntax::for_tag_type(c.tag_type, bit_set);
            if missi
                && matches!(
                    c.tag_type,
                    TagType::EnumeratedPermissive | TagType::EnumeratedRestrictive
                )
            {
                if missi_enumerated(spif, &c.tag_set) != Ok(c.tag_type) {
                    return Err(LabelError::Unsupported(format!(
                        "MISSI enumerated attributes of tag set {}: the tag set has both \
                         enumerated permissive and enumerated restrictive tags",
                        c.tag_set
                    )));
                }
                syntax = Syntax::MissiEnumerated;
            }
            groups
                .entry((c.tag_set.to_string(), syntax))
                .or_default()
                .push(c.lacv.0);
        }
        if let Some((ts, _)) = groups.keys().find(|(ts, s)| {
            *s == Syntax::InformativeBits
                && groups.contains_key(&(ts.clone(), Syntax::InformativeEnumerated))
        }) {
            return Err(LabelError::Unsupported(format!(
                "tag set {ts} has informative categories of both encodings (bitSetAttributes \
                 and securityAttributes): one security category cannot carry them"
            )));
        }
        let ess = EssLabel {
            policy: Some(label.policy.to_string()),
            classification: Some(label.classification.0),
            privacy_mark: label.privacy_mark.clone(),
            categories: groups
                .into_iter()
                .map(|((tag_set, syntax), mut lacvs)| {
                    lacvs.sort_unstable();
                    lacvs.dedup();
                    EssCategory {
                        syntax,
                        tag_set,
                        lacvs,
                    }
                })
                .collect(),
            missi,
        };
        encode_ess_security_label(&ess).map_err(LabelError::Ber)
    }

    /// Parses an ESS `SecurityLabel` whose policy is in the set, as [`super::Label::from_ber`]
    /// and with MISSI `enumeratedAttributes` read as the tag set's enumerated tag type
    /// (a tag set with both enumerated permissive and restrictive tags makes it invalid).
    pub fn label_from_ber(&self, data: &[u8]) -> Result<super::Label, super::LabelError> {
        super::Label::from_ber_with(data, &|policy, tag_set| {
            let spif = self
                .get(policy)
                .ok_or_else(|| super::LabelError::UnknownPolicy(policy.clone()))?;
            if spif.tag_set_index(tag_set).is_none() {
                return Err(super::LabelError::UnknownCategory {
                    policy: policy.clone(),
                    category: format!("tag set {tag_set} (MISSI enumerated attributes)"),
                });
            }
            missi_enumerated(spif, tag_set).map_err(|reason| super::LabelError::Invalid {
                policy: policy.clone(),
                reason,
            })
        })
    }
}

/// The enumerated tag type MISSI `enumeratedAttributes` of `tag_set` stand for in `spif`.
fn missi_enumerated(spif: &super::Spif, tag_set: &super::Oid) -> Result<TagType, String> {
    let ts = spif
        .tag_set_index(tag_set)
        .ok_or_else(|| format!("unknown tag set {tag_set}"))?;
    let has = |t: TagType| {
        spif.tag_sets[ts]
            .tags
            .iter()
            .any(|tag| tag.tag_type == t && !tag.categories.is_empty())
    };
    match (
        has(TagType::EnumeratedPermissive),
        has(TagType::EnumeratedRestrictive),
    ) {
        (true, false) => Ok(TagType::EnumeratedPermissive),
        (false, true) => Ok(TagType::EnumeratedRestrictive),
        (true, true) => Err(format!(
            "MISSI enumerated attributes of tag set {tag_set} are ambiguous (enumerated \
             permissive and restrictive tags)"
        )),
        (false, false) => Err(format!("tag set {tag_set} has no enumerated tags")),
    }
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
        assert!(l.categories.is_empty());
        assert_eq!(
            decode_oid(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x86, 0x8d, 0x1f]).unwrap(),
            "1.3.6.1.4.1.99999"
        );
        // DER re-encoding of the same label is byte-identical (components in tag order).
        assert_eq!(encode_ess_security_label(&l).unwrap(), d);
    }

    #[test]
    fn oid_and_integer_encodings() {
        for s in [
            "1.3.6.1.4.1.99999",
            "2.16.840.1.101.2.1.8.3.4",
            "0.9",
            "2.999.1",
        ] {
            assert_eq!(decode_oid(&encode_oid(s).unwrap()).unwrap(), s);
        }
        // X.690 8.19 example values.
        assert_eq!(
            encode_oid("2.16.840.1.101.2.1.8.3.0").unwrap(),
            [0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x08, 0x03, 0x00]
        );
        assert!(encode_oid("1.40").is_err());
        assert!(encode_oid("3.1").is_err());
        assert_eq!(encode_uint(0), [0]);
        assert_eq!(encode_uint(127), [0x7f]);
        assert_eq!(encode_uint(128), [0x00, 0x80]);
        assert_eq!(encode_uint(276), [0x01, 0x14]);
        assert!(decode_uint(&[0x00, 0x05], "x").is_err(), "non-minimal");
        assert_eq!(decode_uint(&[0x00, 0x80], "x").unwrap(), 128);
    }

    #[test]
    fn bit_maps() {
        // Bits 1 and 10: 0b0100_0000, 0b0010_0000, 5 unused bits.
        assert_eq!(encode_bit_map(&[1, 10]).unwrap(), [0x05, 0x40, 0x20]);
        assert_eq!(decode_bit_map(&[0x05, 0x40, 0x20]).unwrap(), [1, 10]);
        // BER: trailing zero octets are accepted.
        assert_eq!(decode_bit_map(&[0x00, 0x40, 0x20, 0x00]).unwrap(), [1, 10]);
        assert!(
            decode_bit_map(&[0x05, 0x40, 0x21]).is_err(),
            "unused bit set"
        );
        assert!(decode_bit_map(&[0x00, 0x00]).is_err(), "no bit set");
        assert!(decode_bit_map(&[0x08, 0x01]).is_err());
        assert!(decode_bit_map(&[0x01]).is_err());
        let mut big = vec![0u8; MAX_BITMAP_BYTES + 2];
        big[1] = 0x80;
        assert!(decode_bit_map(&big).unwrap_err().contains("limit"));
        assert!(encode_bit_map(&[(MAX_BITMAP_BYTES * 8) as u64]).is_err());
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
        assert!(
            parse_ess_security_label(&[0x31, 0x02, 0x31, 0x00]).is_err(),
            "empty categories"
        );
        assert!(
            parse_ess_security_label(&[0x31, 0x04, 0x13, 0x02, b'a', b'*']).is_err(),
            "'*' is not printable"
        );
        // Every truncation of a valid label fails without panicking.
        let mut d = vec![0x31, 0x16, 0x02, 0x01, 0x33, 0x06, 0x01, 0x29, 0x0c, 0x0e];
        d.extend_from_slice(b"VAGUELY SECRET");
        for n in 0..d.len() {
            assert!(parse_ess_security_label(&d[..n]).is_err());
        }
    }
}
