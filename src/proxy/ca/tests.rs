use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::RootCertStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn verifier_for(ca: &Ca) -> Arc<WebPkiServerVerifier> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), tls::provider())
        .build()
        .unwrap()
}

fn verify(
    verifier: &WebPkiServerVerifier,
    key: &CertifiedKey,
    name: &str,
    at: SystemTime,
) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(
            &key.cert[0],
            &key.cert[1..],
            &name,
            &[],
            UnixTime::since_unix_epoch(at.duration_since(SystemTime::UNIX_EPOCH).unwrap()),
        )
        .map(|_| ())
}

fn pem_blocks(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn issued_leaves_verify_for_dns_and_ip_names() {
    let ca = Ca::generate("test CA").unwrap();
    let verifier = verifier_for(&ca);
    let now = SystemTime::now();
    let names: Vec<String> = ["hs1.example.org", "127.0.0.1", "[::1]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let key = ca.issue_certified_key(&names, HOUR).unwrap();
    assert_eq!(key.cert.len(), 2, "chain = leaf + CA");
    assert_eq!(&key.cert[1], ca.cert_der());
    for name in ["hs1.example.org", "HS1.example.org", "127.0.0.1", "::1"] {
        verify(&verifier, &key, name, now).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in ["hs2.example.org", "127.0.0.2", "example.org"] {
        assert!(
            verify(&verifier, &key, name, now).is_err(),
            "{name} must not verify"
        );
    }
    // notBefore is backdated for clock skew; notAfter is `validity` from now.
    verify(
        &verifier,
        &key,
        "hs1.example.org",
        now - Duration::from_secs(240),
    )
    .unwrap();
    assert!(verify(
        &verifier,
        &key,
        "hs1.example.org",
        now - Duration::from_secs(600)
    )
    .is_err());
    verify(
        &verifier,
        &key,
        "hs1.example.org",
        now + HOUR - Duration::from_secs(60),
    )
    .unwrap();
    assert!(verify(
        &verifier,
        &key,
        "hs1.example.org",
        now + HOUR + Duration::from_secs(60)
    )
    .is_err());
    // Another CA's verifier refuses it.
    let other = verifier_for(&Ca::generate("other CA").unwrap());
    assert!(verify(&other, &key, "hs1.example.org", now).is_err());
}

#[test]
fn issue_pem_returns_the_leaf_only_and_rejects_bad_names() {
    let ca = Ca::generate("test CA").unwrap();
    let (cert, key) = ca
        .issue_pem(&["hs1.example.org".to_string()], HOUR)
        .unwrap();
    assert_eq!(pem_blocks(&cert), 1);
    assert!(key.contains("-----BEGIN PRIVATE KEY-----"));
    assert!(matches!(ca.issue_pem(&[], HOUR), Err(CaError::NoNames)));
    for bad in ["*.example.org", "exa mple.org", "", "-bad-.org/x"] {
        assert!(
            matches!(
                ca.issue_pem(&[bad.to_string()], HOUR),
                Err(CaError::BadName(_))
            ),
            "{bad:?} must be refused"
        );
    }
}

#[test]
fn save_load_roundtrip_and_file_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let ca = Ca::generate("roundtrip CA").unwrap();
    ca.save(&ca_dir).unwrap();
    let mode = |p: &str| fs::metadata(ca_dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(CA_KEY_FILE), 0o600);
    assert_eq!(mode(CA_CERT_FILE), 0o644);
    assert_eq!(
        fs::metadata(&ca_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let loaded = Ca::load(&ca_dir).unwrap();
    assert_eq!(loaded.cert_der(), ca.cert_der());
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    // A leaf from the loaded CA verifies against the saved certificate.
    let key = loaded
        .issue_certified_key(&["hs1.example.org".to_string()], HOUR)
        .unwrap();
    verify(
        &verifier_for(&ca),
        &key,
        "hs1.example.org",
        SystemTime::now(),
    )
    .unwrap();
    // ... and carries an authority key identifier equal to the CA's subject key identifier.
    let ca_ski = der::cert_parts(ca.cert_der())
        .unwrap()
        .ski
        .unwrap()
        .to_vec();
    let leaf = key.cert[0].as_ref();
    assert!(
        leaf.windows(ca_ski.len()).any(|w| w == ca_ski.as_slice()),
        "leaf must carry the CA's key identifier"
    );
}

#[test]
fn load_refuses_a_key_of_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    Ca::generate("A").unwrap().save(&a).unwrap();
    Ca::generate("B").unwrap().save(&b).unwrap();
    fs::copy(b.join(CA_KEY_FILE), a.join("other.key")).unwrap();
    fs::remove_file(a.join(CA_KEY_FILE)).unwrap();
    fs::rename(a.join("other.key"), a.join(CA_KEY_FILE)).unwrap();
    assert!(matches!(Ca::load(&a), Err(CaError::KeyMismatch(_))));
    assert!(matches!(
        Ca::load(&dir.path().join("missing")),
        Err(CaError::Io { .. })
    ));
}

#[test]
fn init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let crt = InterceptionCa::init(dir.path()).unwrap();
    assert_eq!(crt, dir.path().join(CA_CERT_FILE));
    let before = (
        fs::read(dir.path().join(CA_CERT_FILE)).unwrap(),
        fs::read(dir.path().join(CA_KEY_FILE)).unwrap(),
    );
    assert!(matches!(
        InterceptionCa::init(dir.path()),
        Err(CaError::Exists(_))
    ));
    // Only one of the two files present is also refused, and nothing is written.
    fs::remove_file(dir.path().join(CA_CERT_FILE)).unwrap();
    assert!(matches!(
        InterceptionCa::init(dir.path()),
        Err(CaError::Exists(_))
    ));
    assert!(!dir.path().join(CA_CERT_FILE).exists());
    assert_eq!(fs::read(dir.path().join(CA_KEY_FILE)).unwrap(), before.1);
}

#[test]
fn leaf_cache_hits_remints_and_stays_bounded() {
    let ica = InterceptionCa::with_capacity(Ca::generate("cache CA").unwrap(), HOUR, 3);
    let a1 = ica.leaf_for("hs1.example.org:8448").unwrap();
    let a2 = ica.leaf_for("HS1.example.org").unwrap();
    assert!(Arc::ptr_eq(&a1, &a2), "second call must hit the cache");
    let ip1 = ica.leaf_for("[::1]:8448").unwrap();
    let ip2 = ica.leaf_for("0:0::1").unwrap();
    assert!(Arc::ptr_eq(&ip1, &ip2), "IP literals are canonicalised");
    assert_eq!(ica.cached_leaves(), 2);

    // With 20 min left (> a quarter of an hour) the leaf is kept; with 10 min it is re-minted.
    let now = SystemTime::now();
    let kept = ica
        .leaf_for_at("hs1.example.org", now + Duration::from_secs(40 * 60))
        .unwrap();
    assert!(Arc::ptr_eq(&kept, &a1));
    let renewed = ica
        .leaf_for_at("hs1.example.org", now + Duration::from_secs(50 * 60))
        .unwrap();
    assert!(!Arc::ptr_eq(&renewed, &a1));
    assert!(Arc::ptr_eq(
        &ica.leaf_for("hs1.example.org").unwrap(),
        &renewed
    ));

    for host in [
        "a.example.org",
        "b.example.org",
        "c.example.org",
        "d.example.org",
    ] {
        ica.leaf_for(host).unwrap();
    }
    assert_eq!(
        ica.cached_leaves(),
        3,
        "cache must stay within its capacity"
    );
    assert!(matches!(ica.leaf_for("bad host"), Err(CaError::BadName(_))));
    assert!(matches!(ica.leaf_for(":8448"), Err(CaError::BadName(_))));
}

#[tokio::test]
async fn handshake_through_resolver_for_ip_target() {
    let dir = tempfile::tempdir().unwrap();
    let crt = InterceptionCa::init(dir.path()).unwrap();
    let ica = InterceptionCa::load(dir.path(), HOUR).unwrap();
    let server = tls::server_config(ica.resolver_for("127.0.0.1:8448").unwrap());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await?;
        tls.write_all(b"pong!").await?;
        tls.shutdown().await?;
        std::io::Result::Ok(buf)
    });

    // The client trusts only ca.crt and connects to the IP literal (so sends no SNI).
    let client = tls::client_config(&[crt]).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = TlsConnector::from(client).connect(name, tcp).await.unwrap();
    tls.write_all(b"ping!").await.unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong!");
    assert_eq!(&srv.await.unwrap().unwrap(), b"ping!");
}

/// A CA made by `openssl req -x509` (OpenSSL 3.0: P-256, subject `C=DE` as PrintableString,
/// `O`, `CN` as UTF8String, SHA-1 subject key identifier, valid until 2126). Test-only key.
const OPENSSL_CA_CRT: &str = "-----BEGIN CERTIFICATE-----
MIIB2TCCAYCgAwIBAgIUKyM7XIc4ra7yAkf992AeeW3h1FYwCgYIKoZIzj0EAwIw
ODELMAkGA1UEBhMCREUxFDASBgNVBAoMC0V4YW1wbGUgT3JnMRMwEQYDVQQDDApG
aXh0dXJlIENBMCAXDTI2MTEyODA1NDkwMloYDzIxMjYxMTA0MDU0OTAyWjA4MQsw
CQYDVQQGEwJERTEUMBIGA1UECgwLRXhhbXBsZSBPcmcxEzARBgNVBAMMCkZpeHR1
cmUgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATe2hWqa1vxWoJqxbsyYvEb
GVbf4q+7yCBV2HwFvT9r5nmIH8f1KTPndDjULjSq2I8gUXJN2XhF3ARkb8A0xn6t
o2YwZDAdBgNVHQ4EFgQUbaDQPEDhyKdR9YZs+UgbzZxftpkwHwYDVR0jBBgwFoAU
baDQPEDhyKdR9YZs+UgbzZxftpkwEgYDVR0TAQH/BAgwBgEB/wIBADAOBgNVHQ8B
Af8EBAMCAQYwCgYIKoZIzj0EAwIDRwAwRAIgK7uAiKv41pauzBW2+/7ozQvegmbK
zjYpOesxwgvJR94CIH4YOnvKHtcc7IfiD1AQmPhzKiQPbBI4Mr2+JJ2ol3eq
-----END CERTIFICATE-----
";
const OPENSSL_CA_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgbc6q/8nQkjpmxiiG
oL5l/Ran5HgMjfydd0VXyi+KdSyhRANCAATe2hWqa1vxWoJqxbsyYvEbGVbf4q+7
yCBV2HwFvT9r5nmIH8f1KTPndDjULjSq2I8gUXJN2XhF3ARkb8A0xn6t
-----END PRIVATE KEY-----
";

#[test]
fn loads_an_openssl_made_ca() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(CA_CERT_FILE), OPENSSL_CA_CRT).unwrap();
    fs::write(dir.path().join(CA_KEY_FILE), OPENSSL_CA_KEY).unwrap();
    let ca = Ca::load(dir.path()).unwrap();
    let key = ca
        .issue_certified_key(&["hs1.example.org".to_string()], HOUR)
        .unwrap();
    verify(
        &verifier_for(&ca),
        &key,
        "hs1.example.org",
        SystemTime::now(),
    )
    .unwrap();
    // The leaf's issuer name is byte-identical to the CA's subject, and its authority key
    // identifier is the CA's (SHA-1) subject key identifier.
    let ca_parts = der::cert_parts(ca.cert_der()).unwrap();
    let ski = ca_parts.ski.unwrap();
    assert_eq!(ski[..4], [0x6d, 0xa0, 0xd0, 0x3c]);
    let leaf = key.cert[0].as_ref();
    assert!(leaf.windows(ski.len()).any(|w| w == ski));
    assert!(leaf
        .windows(ca_parts.subject.len())
        .any(|w| w == ca_parts.subject));
}
