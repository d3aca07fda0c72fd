//! Federation signing keys in Synapse's `signing.key` format.
//!
//! # Design notes
//!
//! * The file holds one key per line: `ed25519 <version> <unpadded base64 of the 32-byte
//!   seed>` (signedjson `read_signing_keys`; Synapse signs with the first key). We accept
//!   padded base64 too, ignore blank lines and surrounding whitespace, and require the version
//!   to be a valid key name (`[A-Za-z0-9_]+`, which is what Synapse generates: `a_XXXX`).
//! * All cryptography is ruma's (`ruma::signatures::Ed25519KeyPair`, built on ed25519-dalek).
//!   We only wrap the 32-byte seed into the fixed RFC 8410 PKCS#8 v1 envelope ruma's
//!   constructor takes, and keep the seed (zeroized on drop) to write the file back.
//! * `Debug` never prints the seed.
use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use rand::RngCore as _;
use ruma::signatures::Ed25519KeyPair;
use ruma::CanonicalJsonObject;
use zeroize::Zeroizing;

pub mod attest;
pub mod originals;
pub mod remote;

pub use attest::{
    attest_key_query, attest_server_keys, contains_guard_key, strip_attested, AttestError,
};
pub use remote::{KeyFetcher, PduCheck, RemoteKeyError, RemoteKeys};

/// Errors of key handling.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read signing key file {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No key in the input.
    #[error("no signing key found")]
    Empty,
    /// A line is not `ed25519 <version> <base64>`.
    #[error("signing key line {line}: expected `ed25519 <version> <base64 seed>`")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// The algorithm is not ed25519.
    #[error("signing key line {line}: unsupported algorithm (only ed25519)")]
    Algorithm {
        /// 1-based line number.
        line: usize,
    },
    /// The version is not `[A-Za-z0-9_]+`.
    #[error("signing key line {line}: invalid key version (allowed: A-Z a-z 0-9 _)")]
    Version {
        /// 1-based line number (0 when not read from a file).
        line: usize,
    },
    /// The seed is not base64 of 32 bytes.
    #[error("signing key line {line}: seed is not base64 of 32 bytes")]
    Seed {
        /// 1-based line number.
        line: usize,
    },
    /// A public key is not base64 of 32 bytes.
    #[error("verify key is not base64 of 32 bytes")]
    VerifyKey,
    /// ruma refused the key.
    #[error("invalid ed25519 key: {0}")]
    Crypto(String),
    /// Signing JSON failed (e.g. a malformed `signatures` member).
    #[error("cannot sign JSON: {0}")]
    Json(String),
}

/// An ed25519 federation signing key (a server's own key, or a guard-held attestation key).
pub struct SigningKey {
    version: String,
    seed: Zeroizing<[u8; 32]>,
    pair: Ed25519KeyPair,
    /// The same key in ring, which signs raw bytes (X-Matrix headers over whole transaction
    /// bodies) faster: its SHA-512 is assembly, and Ed25519 hashes the message twice. Ed25519
    /// signatures are deterministic (RFC 8032), so both produce the same bytes (tested).
    fast: ring::signature::Ed25519KeyPair,
}

/// RFC 8410 PKCS#8 v1 `PrivateKeyInfo` prefix for an Ed25519 key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn valid_version(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl crate::federation::xmatrix::Signer for SigningKey {
    fn key_id(&self) -> String {
        SigningKey::key_id(self)
    }
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        SigningKey::sign(self, message)
    }
}

impl SigningKey {
    /// Builds a key from its version (the part after `ed25519:`) and 32-byte seed.
    pub fn from_seed(version: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        let seed = Zeroizing::new(seed);
        if !valid_version(version) {
            return Err(KeyError::Version { line: 0 });
        }
        let mut der = Zeroizing::new([0u8; 48]);
        der[..16].copy_from_slice(&PKCS8_ED25519_PREFIX);
        der[16..].copy_from_slice(&seed[..]);
        let pair = Ed25519KeyPair::from_der(&der[..], version.to_owned())
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        let fast = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed[..])
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(Self {
            version: version.to_owned(),
            seed,
            pair,
            fast,
        })
    }

    /// Generates a new key from the OS random source.
    pub fn generate(version: &str) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut seed[..]);
        Self::from_seed(version, *seed)
    }

    /// All keys of a Synapse `signing.key` text, in file order.
    pub fn all_from_synapse_str(s: &str) -> Result<Vec<Self>, KeyError> {
        let mut keys = Vec::new();
        for (i, line) in s.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_ascii_whitespace();
            let (Some(alg), Some(version), Some(b64), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(KeyError::Syntax { line: line_no });
            };
            if alg != "ed25519" {
                return Err(KeyError::Algorithm { line: line_no });
            }
            if !valid_version(version) {
                return Err(KeyError::Version { line: line_no });
            }
            let bytes = Zeroizing::new(decode_b64(b64).ok_or(KeyError::Seed { line: line_no })?);
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::Seed { line: line_no })?;
            keys.push(Self::from_seed(version, seed)?);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(keys)
    }

    /// The first key of a Synapse `signing.key` text (the one Synapse signs with).
    pub fn from_synapse_str(s: &str) -> Result<Self, KeyError> {
        Ok(Self::all_from_synapse_str(s)?.swap_remove(0))
    }

    /// The first key of a Synapse `signing.key` file.
    pub fn from_synapse_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::from_synapse_str(&text)
    }

    /// The key as one `signing.key` line (with trailing newline). Contains the secret seed.
    pub fn to_synapse_string(&self) -> String {
        format!(
            "ed25519 {} {}\n",
            self.version,
            STANDARD_NO_PAD.encode(&self.seed[..])
        )
    }

    /// The version (key name), e.g. `a_AbCd`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The key ID, `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version)
    }

    /// The 32-byte public (verify) key.
    pub fn public_key(&self) -> [u8; 32] {
        self.pair.public_key()
    }

    /// The public key as unpadded standard base64 (as in `verify_keys`).
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.public_key())
    }

    /// Signs raw bytes; returns the 64-byte ed25519 signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let sig = self.fast.sign(message);
        sig.as_ref()
            .try_into()
            .expect("ed25519 signatures are 64 bytes")
    }

    /// Signs raw bytes; returns the signature as unpadded standard base64.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        STANDARD_NO_PAD.encode(self.sign(message))
    }

    /// Signs a JSON object per the spec's "Signing JSON" (canonical form without `signatures`
    /// and `unsigned`), adding `signatures.<server_name>.<key_id>`.
    pub fn sign_json(
        &self,
        server_name: &str,
        object: &mut CanonicalJsonObject,
    ) -> Result<(), KeyError> {
        ruma::signatures::sign_json(server_name, &self.pair, object)
            .map_err(|e| KeyError::Json(e.to_string()))
    }

    /// The ruma key pair, for ruma's event signing APIs (`hash_and_sign_event`, …).
    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

/// Decodes a public (verify) key from base64 (padded or not) to its 32 bytes.
pub fn decode_verify_key(b64: &str) -> Result<[u8; 32], KeyError> {
    decode_b64(b64)
        .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
        .ok_or(KeyError::VerifyKey)
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    if s.ends_with('=') {
        STANDARD.decode(s).ok()
    } else {
        STANDARD_NO_PAD.decode(s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 test vector 1: seed and public key.
    const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUB_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SIG_EMPTY_HEX: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn seed() -> [u8; 32] {
        hex(SEED_HEX).try_into().unwrap()
    }

    #[test]
    fn rfc8032_vector() {
        let k = SigningKey::from_seed("a_test", seed()).unwrap();
        assert_eq!(k.public_key().to_vec(), hex(PUB_HEX));
        assert_eq!(k.sign(b"").to_vec(), hex(SIG_EMPTY_HEX));
        assert_eq!(k.key_id(), "ed25519:a_test");
    }

    /// The fast signer (ring) and ruma's key pair (used by ruma's JSON/event signing) are the
    /// same key: identical signatures over short and long messages.
    #[test]
    fn fast_signer_matches_ruma_key_pair() {
        use ruma::signatures::KeyPair as _;
        let k = SigningKey::from_seed("a_test", seed()).unwrap();
        for len in [0usize, 1, 127, 128, 4096, 100_000] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            assert_eq!(
                k.sign(&msg).to_vec(),
                k.key_pair().sign(&msg).as_bytes().to_vec(),
                "len {len}"
            );
        }
    }

    #[test]
    fn synapse_format_round_trip() {
        let line = format!("ed25519 a_AbCd {}\n", STANDARD_NO_PAD.encode(seed()));
        let k = SigningKey::from_synapse_str(&line).unwrap();
        assert_eq!(k.version(), "a_AbCd");
        assert_eq!(k.to_synapse_string(), line);
        assert_eq!(k.public_key_base64(), STANDARD_NO_PAD.encode(hex(PUB_HEX)));
        // Padded base64, extra whitespace, blank lines and a second key.
        let other = SigningKey::generate("b_2").unwrap();
        let text = format!(
            "\n  ed25519   a_AbCd   {}  \n\n{}",
            STANDARD.encode(seed()),
            other.to_synapse_string()
        );
        let all = SigningKey::all_from_synapse_str(&text).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].public_key(), k.public_key());
        assert_eq!(all[1].public_key(), other.public_key());
        assert_eq!(
            SigningKey::from_synapse_str(&text).unwrap().version(),
            "a_AbCd"
        );
    }

    #[test]
    fn file_round_trip_and_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let k = SigningKey::generate("a_file").unwrap();
        std::fs::write(&path, k.to_synapse_string()).unwrap();
        let back = SigningKey::from_synapse_file(&path).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        assert_eq!(back.sign(b"x"), k.sign(b"x"));
        let e = SigningKey::from_synapse_file(dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, KeyError::Io { .. }));
        assert!(e.to_string().contains("missing"));
    }

    #[test]
    fn generated_keys_differ() {
        let a = SigningKey::generate("a").unwrap();
        let b = SigningKey::generate("a").unwrap();
        assert_ne!(a.public_key(), b.public_key());
    }

    #[test]
    fn typed_errors() {
        let b64 = STANDARD_NO_PAD.encode(seed());
        assert!(matches!(
            SigningKey::from_synapse_str(""),
            Err(KeyError::Empty)
        ));
        assert!(matches!(
            SigningKey::from_synapse_str("\n \n"),
            Err(KeyError::Empty)
        ));
        assert!(matches!(
            SigningKey::from_synapse_str("ed25519 a_1\n"),
            Err(KeyError::Syntax { line: 1 })
        ));
        assert!(matches!(
            SigningKey::from_synapse_str(&format!("\ned25519 a_1 {b64} extra")),
            Err(KeyError::Syntax { line: 2 })
        ));
        assert!(matches!(
            SigningKey::from_synapse_str(&format!("rsa a_1 {b64}")),
            Err(KeyError::Algorithm { line: 1 })
        ));
        assert!(matches!(
            SigningKey::from_synapse_str(&format!("ed25519 a:1 {b64}")),
            Err(KeyError::Version { line: 1 })
        ));
        assert!(matches!(
            SigningKey::from_synapse_str("ed25519 a_1 AAAA"),
            Err(KeyError::Seed { line: 1 })
        ));
        assert!(matches!(
            SigningKey::from_synapse_str("ed25519 a_1 not*base64"),
            Err(KeyError::Seed { line: 1 })
        ));
        assert!(matches!(
            SigningKey::from_seed("", seed()),
            Err(KeyError::Version { .. })
        ));
    }

    #[test]
    fn debug_hides_the_seed() {
        let k = SigningKey::from_seed("a_test", seed()).unwrap();
        let d = format!("{k:?}");
        assert!(d.contains("ed25519:a_test"));
        assert!(!d.contains(&STANDARD_NO_PAD.encode(seed())));
        assert!(!d.contains(SEED_HEX));
    }

    #[test]
    fn sign_json_verifies_with_ruma() {
        let k = SigningKey::from_seed("a_test", seed()).unwrap();
        let mut obj: CanonicalJsonObject =
            serde_json::from_str(r#"{"b":1,"a":"Grüße","unsigned":{"x":1}}"#).unwrap();
        k.sign_json("example.org", &mut obj).unwrap();
        let mut keys = std::collections::BTreeMap::new();
        let mut set = std::collections::BTreeMap::new();
        set.insert(
            k.key_id(),
            ruma::serde::Base64::new(k.public_key().to_vec()),
        );
        keys.insert("example.org".to_owned(), set);
        ruma::signatures::verify_json(&keys, &obj).unwrap();
        obj.insert("b".into(), ruma::CanonicalJsonValue::Integer(2u8.into()));
        assert!(ruma::signatures::verify_json(&keys, &obj).is_err());
    }

    #[test]
    fn verify_key_decoding() {
        let k = SigningKey::from_seed("a_test", seed()).unwrap();
        assert_eq!(
            decode_verify_key(&k.public_key_base64()).unwrap(),
            k.public_key()
        );
        assert_eq!(
            decode_verify_key(&STANDARD.encode(k.public_key())).unwrap(),
            k.public_key()
        );
        assert!(matches!(
            decode_verify_key("AAAA"),
            Err(KeyError::VerifyKey)
        ));
    }
}
