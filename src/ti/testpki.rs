//! A throwaway brainpoolP256r1 PKI for tests and the lab: a root, an intermediate, a list
//! signer leaf, and lists signed with it. Owner: helper `ti-pki`.
//!
//! Keys are generated at run time and live only in memory. The certificates are written with a
//! small DER writer (X.509 v3; ecPublicKey on brainpoolP256r1; ecdsa-with-SHA256; extensions
//! basicConstraints, keyUsage, subjectKeyIdentifier, authorityKeyIdentifier) and signed with
//! the `ecdsa` crate over `bp256`. [`TestPkiOptions`] makes deliberately bad chains for tests
//! (a leaf without digitalSignature, an intermediate that is not a CA, other validity periods).
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use ecdsa::signature::Signer as _;
use rand::RngCore as _;
use sha2::Digest as _;

use super::jws::ALG;
use super::pki::TrustAnchors;

type SigningKey = ecdsa::SigningKey<bp256::BrainpoolP256r1>;
type Signature = bp256::r1::ecdsa::Signature;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_BRAINPOOL_P256R1: &str = "1.3.36.3.3.2.8.1.1.7";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

/// What to generate.
#[derive(Debug, Clone)]
pub struct TestPkiOptions {
    /// Validity of the root and the intermediate.
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Validity of the leaf (default: the same as the CAs).
    pub leaf_not_before: Option<SystemTime>,
    pub leaf_not_after: Option<SystemTime>,
    /// The leaf's keyUsage has digitalSignature (otherwise keyAgreement only).
    pub leaf_digital_signature: bool,
    /// The intermediate has basicConstraints cA (otherwise it is an end entity).
    pub intermediate_is_ca: bool,
    /// Prefix of the certificates' common names.
    pub name: String,
}

impl TestPkiOptions {
    pub fn new(not_before: SystemTime, not_after: SystemTime) -> TestPkiOptions {
        TestPkiOptions {
            not_before,
            not_after,
            leaf_not_before: None,
            leaf_not_after: None,
            leaf_digital_signature: true,
            intermediate_is_ca: true,
            name: "grenzwacht test".into(),
        }
    }
}

/// The files of [`TestPki::write_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPkiFiles {
    /// TSL root list (JSON, gematik's format) with the test root.
    pub tsl_roots: PathBuf,
    /// The intermediate CA certificate (DER).
    pub intermediate: PathBuf,
}

/// A root CA, an intermediate CA and a list signer, all on brainpoolP256r1.
pub struct TestPki {
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    leaf_der: Vec<u8>,
    leaf_key: SigningKey,
    root_name: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("root", &self.root_name)
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// A good PKI: every certificate valid from `not_before` to `not_after`.
    pub fn generate(not_before: SystemTime, not_after: SystemTime) -> TestPki {
        TestPki::generate_with(&TestPkiOptions::new(not_before, not_after))
    }

    /// A PKI as `opts` says.
    pub fn generate_with(opts: &TestPkiOptions) -> TestPki {
        let root_key = random_key();
        let inter_key = random_key();
        let leaf_key = random_key();
        let root_name = name(&format!("{} root CA", opts.name));
        let inter_name = name(&format!("{} intermediate CA", opts.name));
        let leaf_name = name(&format!("{} list signer", opts.name));
        let validity = (opts.not_before, opts.not_after);
        let root_der = certificate(CertSpec {
            serial: 1,
            issuer: &root_name,
            subject: &root_name,
            validity,
            subject_key: &root_key,
            issuer_key: &root_key,
            ca: Some(None),
            key_usage: KU_KEY_CERT_SIGN | KU_CRL_SIGN,
            odd: Odd::default(),
        });
        let intermediate_der = certificate(CertSpec {
            serial: 2,
            issuer: &root_name,
            subject: &inter_name,
            validity,
            subject_key: &inter_key,
            issuer_key: &root_key,
            ca: opts.intermediate_is_ca.then_some(Some(0)),
            key_usage: KU_KEY_CERT_SIGN | KU_CRL_SIGN,
            odd: Odd::default(),
        });
        let leaf_der = certificate(CertSpec {
            serial: 3,
            issuer: &inter_name,
            subject: &leaf_name,
            validity: (
                opts.leaf_not_before.unwrap_or(opts.not_before),
                opts.leaf_not_after.unwrap_or(opts.not_after),
            ),
            subject_key: &leaf_key,
            issuer_key: &inter_key,
            ca: None,
            key_usage: if opts.leaf_digital_signature {
                KU_DIGITAL_SIGNATURE
            } else {
                KU_KEY_AGREEMENT
            },
            odd: Odd::default(),
        });
        TestPki {
            root_der,
            intermediate_der,
            leaf_der,
            leaf_key,
            root_name: format!("{} root CA", opts.name),
            not_before: opts.not_before,
            not_after: opts.not_after,
        }
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }
    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf_der
    }

    /// The TSL root list (JSON text) holding this PKI's root.
    pub fn tsl_roots_json(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let ski = hex_upper(&key_id(&self.root_der_key()));
        let entry = serde_json::json!({
            "cert": b64.encode(&self.root_der),
            "cn": self.root_name,
            "name": self.root_name,
            "next": "",
            "prev": "",
            "nvb": tsl_time(self.not_before),
            "nva": tsl_time(self.not_after),
            "ski": ski,
        });
        serde_json::to_string_pretty(&serde_json::Value::Array(vec![entry]))
            .unwrap_or_else(|_| "[]".into())
    }

    /// The trust anchors of this PKI (root and intermediate), in memory.
    pub fn anchors(&self) -> TrustAnchors {
        TrustAnchors {
            roots: vec![self.root_der.clone()],
            intermediates: vec![self.intermediate_der.clone()],
        }
    }

    /// A compact JWS (`alg` BP256R1, `x5c` the leaf) over the payload's JSON.
    pub fn sign_list(&self, payload: &serde_json::Value) -> String {
        let header = serde_json::json!({
            "alg": ALG,
            "typ": "JWT",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.leaf_der)],
        });
        let payload = serde_json::to_vec(payload).unwrap_or_default();
        self.sign_raw(&header, &payload)
    }

    /// A compact JWS with the given header and payload bytes, signed by the leaf (for tests of
    /// headers the verifier refuses).
    pub fn sign_raw(&self, header: &serde_json::Value, payload: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::to_vec(header).unwrap_or_default();
        let input = format!("{}.{}", b64.encode(header), b64.encode(payload));
        let sig: Signature = self.leaf_key.sign(input.as_bytes());
        format!("{input}.{}", b64.encode(sig.to_bytes()))
    }

    /// `{"version": version, "domainList": [{"domain", "isInsurance", "telematikID"}, …]}`.
    pub fn payload(version: u64, domains: &[(&str, bool)]) -> serde_json::Value {
        let list: Vec<serde_json::Value> = domains
            .iter()
            .enumerate()
            .map(|(i, (domain, is_insurance))| {
                serde_json::json!({
                    "domain": domain,
                    "telematikID": format!("test-telematik-{i}"),
                    "isInsurance": is_insurance,
                })
            })
            .collect();
        serde_json::json!({ "version": version, "domainList": list })
    }

    /// Writes `tsl_roots.json` and `intermediate.der` into `dir` (which must exist).
    pub fn write_files(&self, dir: &Path) -> std::io::Result<TestPkiFiles> {
        let files = TestPkiFiles {
            tsl_roots: dir.join("tsl_roots.json"),
            intermediate: dir.join("intermediate.der"),
        };
        std::fs::write(&files.tsl_roots, self.tsl_roots_json())?;
        std::fs::write(&files.intermediate, &self.intermediate_der)?;
        Ok(files)
    }

    /// Saves the PKI (certificates, the signer's private key with mode 0600, the root's name
    /// and validity) to `dir`, so that a later process can sign further lists ([`Self::load`]).
    /// A test PKI only: the key is a throwaway.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("root.der"), &self.root_der)?;
        std::fs::write(dir.join("intermediate.der"), &self.intermediate_der)?;
        std::fs::write(dir.join("leaf.der"), &self.leaf_der)?;
        let key = dir.join("leaf.key");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&key)?;
            f.write_all(&self.leaf_key.to_bytes())?;
        }
        let meta = serde_json::json!({
            "root_name": self.root_name,
            "not_before": super::pki::unix_seconds(self.not_before),
            "not_after": super::pki::unix_seconds(self.not_after),
        });
        std::fs::write(dir.join("pki.json"), meta.to_string())
    }

    /// Loads a PKI [`Self::save`] wrote.
    pub fn load(dir: &Path) -> std::io::Result<TestPki> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let key = std::fs::read(dir.join("leaf.key"))?;
        let leaf_key =
            SigningKey::from_slice(&key).map_err(|_| bad("leaf.key is no brainpoolP256r1 key"))?;
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("pki.json"))?)
            .map_err(|_| bad("pki.json is not JSON"))?;
        let time = |k: &str| {
            meta[k]
                .as_i64()
                .and_then(|s| u64::try_from(s).ok())
                .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
                .ok_or_else(|| bad("pki.json lacks a time"))
        };
        Ok(TestPki {
            root_der: std::fs::read(dir.join("root.der"))?,
            intermediate_der: std::fs::read(dir.join("intermediate.der"))?,
            leaf_der: std::fs::read(dir.join("leaf.der"))?,
            leaf_key,
            root_name: meta["root_name"].as_str().unwrap_or("test").to_owned(),
            not_before: time("not_before")?,
            not_after: time("not_after")?,
        })
    }

    fn root_der_key(&self) -> Vec<u8> {
        super::pki::leaf_key(&self.root_der).unwrap_or_default()
    }
}

fn random_key() -> SigningKey {
    let mut rng = rand::thread_rng();
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

fn public_sec1(key: &SigningKey) -> Vec<u8> {
    key.verifying_key().to_sec1_point(false).as_bytes().to_vec()
}

/// Key identifier: the first 20 bytes of SHA-256 of the public key (RFC 7093 method 1).
fn key_id(public: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(public)[..20].to_vec()
}

const KU_DIGITAL_SIGNATURE: u8 = 0x80;
const KU_KEY_AGREEMENT: u8 = 0x08;
const KU_KEY_CERT_SIGN: u8 = 0x04;
const KU_CRL_SIGN: u8 = 0x02;

struct CertSpec<'a> {
    serial: u64,
    issuer: &'a [u8],
    subject: &'a [u8],
    validity: (SystemTime, SystemTime),
    subject_key: &'a SigningKey,
    issuer_key: &'a SigningKey,
    /// `Some(path_len)`: a CA; `None`: an end entity.
    ca: Option<Option<u8>>,
    key_usage: u8,
    /// Deviations for tests of the chain check.
    odd: Odd<'a>,
}

/// What a test certificate gets wrong on purpose.
#[derive(Default)]
struct Odd<'a> {
    /// Curve OID written in the subject public key info (default brainpoolP256r1).
    curve: Option<&'a str>,
    /// Signature algorithm OID written (default ecdsa-with-SHA256; the signature stays one).
    sig_alg: Option<&'a str>,
    /// Authority key identifier written (default: from the issuer's key).
    aki: Option<&'a [u8]>,
    /// Further extensions (DER).
    extensions: Vec<Vec<u8>>,
}

fn certificate(spec: CertSpec<'_>) -> Vec<u8> {
    let subject_pub = public_sec1(spec.subject_key);
    let issuer_pub = public_sec1(spec.issuer_key);
    let alg = der::seq(&[der::oid(spec.odd.sig_alg.unwrap_or(OID_ECDSA_SHA256))]);
    let curve = spec.odd.curve.unwrap_or(OID_BRAINPOOL_P256R1);
    let spki = der::seq(&[
        der::seq(&[der::oid(OID_EC_PUBLIC_KEY), der::oid(curve)]),
        der::bit_string(&subject_pub, 0),
    ]);
    let basic = match spec.ca {
        Some(Some(len)) => der::seq(&[der::boolean(true), der::integer(u64::from(len))]),
        Some(None) => der::seq(&[der::boolean(true)]),
        None => der::seq(&[]),
    };
    let ku = der::bit_string(
        &[spec.key_usage],
        spec.key_usage.trailing_zeros().min(7) as u8,
    );
    let aki = spec
        .odd
        .aki
        .map_or_else(|| key_id(&issuer_pub), <[u8]>::to_vec);
    let mut extensions = vec![
        der::extension("2.5.29.19", true, &basic),
        der::extension("2.5.29.15", true, &ku),
        der::extension(
            "2.5.29.14",
            false,
            &der::octet_string(&key_id(&subject_pub)),
        ),
        der::extension("2.5.29.35", false, &der::seq(&[der::tlv(0x80, &aki)])),
    ];
    extensions.extend(spec.odd.extensions.iter().cloned());
    let extensions = der::seq(&extensions);
    let tbs = der::seq(&[
        der::tlv(0xa0, &der::integer(2)),
        der::integer(spec.serial),
        alg.clone(),
        spec.issuer.to_vec(),
        der::seq(&[der::time(spec.validity.0), der::time(spec.validity.1)]),
        spec.subject.to_vec(),
        spki,
        der::tlv(0xa3, &extensions),
    ]);
    let sig: Signature = spec.issuer_key.sign(&tbs);
    der::seq(&[tbs, alg, der::bit_string(sig.to_der().as_bytes(), 0)])
}

/// `C=DE, O=grenzwacht test PKI, CN=<cn>`.
fn name(cn: &str) -> Vec<u8> {
    let rdn = |oid: &str, value: Vec<u8>| der::set(&[der::seq(&[der::oid(oid), value])]);
    der::seq(&[
        rdn("2.5.4.6", der::tlv(0x13, b"DE")),
        rdn("2.5.4.10", der::tlv(0x0c, b"grenzwacht test PKI NOT-VALID")),
        rdn("2.5.4.3", der::tlv(0x0c, cn.as_bytes())),
    ])
}

fn tsl_time(t: SystemTime) -> String {
    let s = super::pki::rfc3339(super::pki::unix_seconds(t));
    s.trim_end_matches('Z').to_owned()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The few DER encodings the certificates need.
mod der {
    use std::time::SystemTime;

    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }

    pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    pub fn set(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x31, &parts.concat())
    }

    pub fn boolean(v: bool) -> Vec<u8> {
        tlv(0x01, &[if v { 0xff } else { 0 }])
    }

    pub fn integer(v: u64) -> Vec<u8> {
        let mut bytes: Vec<u8> = v
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        if bytes.first().is_none_or(|b| b & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        tlv(0x02, &bytes)
    }

    pub fn octet_string(v: &[u8]) -> Vec<u8> {
        tlv(0x04, v)
    }

    pub fn bit_string(v: &[u8], unused_bits: u8) -> Vec<u8> {
        let mut content = vec![unused_bits];
        content.extend_from_slice(v);
        tlv(0x03, &content)
    }

    pub fn oid(dotted: &str) -> Vec<u8> {
        let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
        let mut out = Vec::new();
        let mut push = |mut v: u64| {
            let mut chunk = vec![(v & 0x7f) as u8];
            v >>= 7;
            while v > 0 {
                chunk.push(0x80 | (v & 0x7f) as u8);
                v >>= 7;
            }
            chunk.reverse();
            out.extend(chunk);
        };
        if arcs.len() >= 2 {
            push(arcs[0] * 40 + arcs[1]);
            for a in &arcs[2..] {
                push(*a);
            }
        }
        tlv(0x06, &out)
    }

    pub fn extension(oid_text: &str, critical: bool, value: &[u8]) -> Vec<u8> {
        let mut parts = vec![oid(oid_text)];
        if critical {
            parts.push(boolean(true));
        }
        parts.push(octet_string(value));
        seq(&parts)
    }

    /// UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5).
    pub fn time(t: SystemTime) -> Vec<u8> {
        let unix = super::super::pki::unix_seconds(t);
        let t = time::OffsetDateTime::from_unix_timestamp(unix)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let (y, mo, d, h, mi, s) = (
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
        );
        if (1950..2050).contains(&y) {
            let text = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
            tlv(0x17, text.as_bytes())
        } else {
            let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
            tlv(0x18, text.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests;
