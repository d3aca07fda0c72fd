//! Real handshakes over 127.0.0.1 against the configs of this module.
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring as ring_provider;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::proxy::ca::Ca;

const HOUR: Duration = Duration::from_secs(3600);

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A CA and its root store.
fn test_ca() -> (Ca, RootCertStore) {
    named_ca("tls test CA")
}

fn named_ca(name: &str) -> (Ca, RootCertStore) {
    let ca = Ca::generate(name).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    (ca, roots)
}

/// Serves one TLS handshake with `config`, then echoes 4 bytes. Returns the address and a
/// handle yielding the server-side result (Ok = handshake done and echoed).
async fn serve_once(
    config: Arc<rustls::ServerConfig>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(config).accept(tcp).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.shutdown().await?;
        Ok(())
    });
    (addr, handle)
}

/// Connects with `config` to `addr` as `name`, round-trips 4 bytes, and returns the
/// negotiated parameters.
async fn connect(
    config: Arc<ClientConfig>,
    addr: std::net::SocketAddr,
    name: &str,
) -> std::io::Result<(
    Vec<CertificateDer<'static>>,
    ProtocolVersion,
    rustls::CipherSuite,
    Option<Vec<u8>>,
)> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let mut tls = TlsConnector::from(config).connect(server_name, tcp).await?;
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"ping");
    let (_, conn) = tls.get_ref();
    Ok((
        conn.peer_certificates().unwrap().to_vec(),
        conn.protocol_version().unwrap(),
        conn.negotiated_cipher_suite().unwrap().suite(),
        conn.alpn_protocol().map(|p| p.to_vec()),
    ))
}

/// A client config with an arbitrary provider (used to play non-compliant clients).
fn client_with(provider: CryptoProvider, roots: RootCertStore, sni: bool) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_sni = sni;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Arc::new(config)
}

fn single_cert_server(ca: &Ca, name: &str) -> Arc<rustls::ServerConfig> {
    let key = ca.issue_certified_key(&names(&[name]), HOUR).unwrap();
    server_config(Arc::new(
        SniResolver::new([(name.to_string(), key)]).unwrap(),
    ))
}

#[test]
fn provider_is_restricted_to_tr_02102_2() {
    let p = provider();
    let suites: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
    use rustls::CipherSuite as C;
    assert_eq!(
        suites,
        vec![
            C::TLS13_AES_256_GCM_SHA384,
            C::TLS13_AES_128_GCM_SHA256,
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ]
    );
    let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
    assert_eq!(
        groups,
        vec![rustls::NamedGroup::secp384r1, rustls::NamedGroup::secp256r1]
    );
}

#[test]
fn host_part_strips_port_and_brackets() {
    assert_eq!(host_part("hs1.example.org:8448"), "hs1.example.org");
    assert_eq!(host_part("hs1.example.org"), "hs1.example.org");
    assert_eq!(host_part("127.0.0.1:8448"), "127.0.0.1");
    assert_eq!(host_part("[::1]:8448"), "::1");
    assert_eq!(host_part("[::1]"), "::1");
    assert_eq!(host_part("::1"), "::1");
    assert_eq!(host_part("2001:db8::2"), "2001:db8::2");
}

#[test]
fn sni_resolver_lookup_rules() {
    let (ca, _) = test_ca();
    let k1 = ca
        .issue_certified_key(&names(&["hs1.example.org"]), HOUR)
        .unwrap();
    let k2 = ca
        .issue_certified_key(&names(&["hs2.example.org"]), HOUR)
        .unwrap();
    let k3 = ca.issue_certified_key(&names(&["::1"]), HOUR).unwrap();
    let r = SniResolver::new([
        ("hs1.example.org:8448".to_string(), k1.clone()),
        ("HS2.Example.org".to_string(), k2.clone()),
        ("[::1]:8448".to_string(), k3.clone()),
    ])
    .unwrap();
    assert!(Arc::ptr_eq(&r.lookup(Some("hs2.example.org")), &k2));
    assert!(Arc::ptr_eq(&r.lookup(Some("hs2.example.org.")), &k2));
    assert!(Arc::ptr_eq(&r.lookup(Some("HS1.EXAMPLE.ORG")), &k1));
    assert!(Arc::ptr_eq(&r.lookup(Some("::1")), &k3));
    assert!(Arc::ptr_eq(&r.lookup(Some("other.example.org")), &k1));
    assert!(Arc::ptr_eq(&r.lookup(None), &k1));
    assert!(matches!(
        SniResolver::new(Vec::new()),
        Err(TlsError::NoServerCertificates)
    ));
}

#[tokio::test]
async fn sni_selects_the_certificate() {
    let (ca, roots) = test_ca();
    let k1 = ca
        .issue_certified_key(&names(&["hs1.example.org"]), HOUR)
        .unwrap();
    let k2 = ca
        .issue_certified_key(&names(&["hs2.example.org"]), HOUR)
        .unwrap();
    let resolver = Arc::new(
        SniResolver::new([
            ("hs1.example.org:8448".to_string(), k1.clone()),
            ("hs2.example.org".to_string(), k2.clone()),
        ])
        .unwrap(),
    );
    let client = client_with(ring_provider::default_provider(), roots.clone(), true);
    for (name, want) in [("hs2.example.org", &k2), ("hs1.example.org", &k1)] {
        let (addr, server) = serve_once(server_config(resolver.clone())).await;
        let (certs, ..) = connect(client.clone(), addr, name).await.unwrap();
        assert_eq!(certs[0], want.cert[0], "SNI {name}");
        server.await.unwrap().unwrap();
    }
    // Without SNI the first certificate is served (the client verifies it as hs1).
    let no_sni = client_with(ring_provider::default_provider(), roots, false);
    let (addr, server) = serve_once(server_config(resolver)).await;
    let (certs, ..) = connect(no_sni, addr, "hs1.example.org").await.unwrap();
    assert_eq!(certs[0], k1.cert[0]);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls13_aes_gcm_client_works() {
    let (ca, roots) = test_ca();
    let server = single_cert_server(&ca, "hs1.example.org");
    for suite in [
        ring_provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ring_provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ] {
        let client = client_with(
            CryptoProvider {
                cipher_suites: vec![suite],
                ..ring_provider::default_provider()
            },
            roots.clone(),
            true,
        );
        let (addr, srv) = serve_once(server.clone()).await;
        let (_, version, negotiated, alpn) =
            connect(client, addr, "hs1.example.org").await.unwrap();
        assert_eq!(version, ProtocolVersion::TLSv1_3);
        assert_eq!(negotiated, suite.suite());
        assert_eq!(alpn.as_deref(), Some(ALPN_HTTP11));
        srv.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn tls12_ecdhe_ecdsa_client_works_and_server_prefers_aes256() {
    let (ca, roots) = test_ca();
    let server = single_cert_server(&ca, "hs1.example.org");
    let client = Arc::new({
        // The client prefers AES-128; the server's preference (AES-256) must win.
        let provider = CryptoProvider {
            cipher_suites: vec![
                ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ],
            ..ring_provider::default_provider()
        };
        let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        c
    });
    let (addr, srv) = serve_once(server).await;
    let (_, version, negotiated, _) = connect(client, addr, "hs1.example.org").await.unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_2);
    assert_eq!(
        negotiated,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
    srv.await.unwrap().unwrap();
}

#[tokio::test]
async fn chacha20_only_client_is_refused() {
    let (ca, roots) = test_ca();
    let server = single_cert_server(&ca, "hs1.example.org");
    let client = client_with(
        CryptoProvider {
            cipher_suites: vec![
                ring_provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ],
            ..ring_provider::default_provider()
        },
        roots,
        true,
    );
    let (addr, srv) = serve_once(server).await;
    let err = connect(client, addr, "hs1.example.org").await.unwrap_err();
    assert!(
        err.to_string().contains("HandshakeFailure"),
        "unexpected client error: {err}"
    );
    assert!(
        srv.await.unwrap().is_err(),
        "server must refuse the handshake"
    );
}

#[tokio::test]
async fn x25519_only_client_is_refused() {
    let (ca, roots) = test_ca();
    let server = single_cert_server(&ca, "hs1.example.org");
    let client = client_with(
        CryptoProvider {
            kx_groups: vec![ring_provider::kx_group::X25519],
            ..ring_provider::default_provider()
        },
        roots,
        true,
    );
    let (addr, srv) = serve_once(server).await;
    assert!(connect(client, addr, "hs1.example.org").await.is_err());
    assert!(
        srv.await.unwrap().is_err(),
        "server must refuse the handshake"
    );
}

/// A TLS 1.1 ClientHello (no supported_versions extension, legacy_version 0x0302,
/// CBC suites only), written by hand since rustls cannot play an old client. A genuine
/// TLS 1.1 client sends no signature_algorithms extension (it is TLS 1.2+); a TLS 1.2-capable
/// client capped at 1.1 may (`with_sig_algs`).
fn tls11_client_hello(with_sig_algs: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0x03, 0x02]); // client_version TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session_id
    let suites: &[u16] = &[0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut ext = Vec::new();
    // server_name "hs1.example.org"
    let host = b"hs1.example.org";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    // supported_groups: secp256r1, secp384r1
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x18]);
    // ec_point_formats: uncompressed
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    if with_sig_algs {
        // ecdsa_secp256r1_sha256, rsa_pkcs1_sha256
        ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01]);
    }
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn tls11_only_client_is_refused() {
    let (ca, _) = test_ca();
    let server = single_cert_server(&ca, "hs1.example.org");
    // (hello, expected fatal alert): handshake_failure (40) when signature_algorithms is
    // missing (rustls checks that first), protocol_version (70) otherwise.
    for (with_sig_algs, alert) in [(false, 40u8), (true, 70u8)] {
        let (addr, srv) = serve_once(server.clone()).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&tls11_client_hello(with_sig_algs))
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply))
            .await
            .expect("server must answer and close");
        // Exactly one record, a fatal alert; no ServerHello.
        assert_eq!(reply.len(), 7, "reply: {reply:02x?}");
        assert_eq!(reply[0], 0x15, "expected an alert record, got {reply:02x?}");
        assert_eq!(&reply[5..7], &[2, alert], "sig_algs={with_sig_algs}");
        assert!(srv.await.unwrap().is_err());
    }
}

#[tokio::test]
async fn client_config_verifies_against_given_roots_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_a, _) = named_ca("CA A");
    let (ca_b, _) = named_ca("CA B");
    let a_path = dir.path().join("a.pem");
    let b_path = dir.path().join("b.pem");
    std::fs::write(&a_path, ca_a.cert_pem()).unwrap();
    std::fs::write(&b_path, ca_b.cert_pem()).unwrap();
    let server = single_cert_server(&ca_a, "hs1.example.org");

    // Trusting only B: A's server is refused.
    let (addr, srv) = serve_once(server.clone()).await;
    let err = connect(
        client_config(std::slice::from_ref(&b_path)).unwrap(),
        addr,
        "hs1.example.org",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("UnknownIssuer"),
        "unexpected client error: {err}"
    );
    assert!(srv.await.unwrap().is_err());

    // A different CA under the same name as A (a forgery of A's issuer name) is refused too.
    let (forger, _) = named_ca("CA A");
    let forged_path = dir.path().join("forged.pem");
    std::fs::write(&forged_path, forger.cert_pem()).unwrap();
    let (addr, srv) = serve_once(server.clone()).await;
    let err = connect(
        client_config(&[forged_path]).unwrap(),
        addr,
        "hs1.example.org",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("BadSignature"),
        "unexpected client error: {err}"
    );
    assert!(srv.await.unwrap().is_err());

    // Trusting A (among others): accepted, with ALPN http/1.1 and a compliant suite.
    let (addr, srv) = serve_once(server.clone()).await;
    let (_, version, suite, alpn) = connect(
        client_config(&[b_path, a_path]).unwrap(),
        addr,
        "hs1.example.org",
    )
    .await
    .unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_3);
    assert_eq!(suite, rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
    assert_eq!(alpn.as_deref(), Some(ALPN_HTTP11));
    srv.await.unwrap().unwrap();

    // Webpki roots (no roots configured) do not contain the test CA either.
    let (addr, srv) = serve_once(server).await;
    assert!(
        connect(client_config(&[]).unwrap(), addr, "hs1.example.org")
            .await
            .is_err()
    );
    assert!(srv.await.unwrap().is_err());
}

#[test]
fn client_config_rejects_files_without_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    assert!(matches!(
        client_config(&[empty]),
        Err(TlsError::NoCertificates(_))
    ));
    assert!(matches!(
        client_config(&[dir.path().join("missing.pem")]),
        Err(TlsError::Io { .. })
    ));
}

#[test]
fn load_certified_key_checks_the_pair() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = test_ca();
    let (cert1, key1) = ca.issue_pem(&names(&["hs1.example.org"]), HOUR).unwrap();
    let (_, key2) = ca.issue_pem(&names(&["hs2.example.org"]), HOUR).unwrap();
    let chain = format!("{cert1}{}", ca.cert_pem());
    for (file, text) in [("c.pem", &chain), ("k1.pem", &key1), ("k2.pem", &key2)] {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let ok = load_certified_key(&dir.path().join("c.pem"), &dir.path().join("k1.pem")).unwrap();
    assert_eq!(ok.cert.len(), 2);
    assert_eq!(&ok.cert[1], ca.cert_der());
    let mismatch = load_certified_key(&dir.path().join("c.pem"), &dir.path().join("k2.pem"));
    assert!(
        matches!(mismatch, Err(TlsError::Rustls { .. })),
        "{mismatch:?}"
    );
    let no_key = load_certified_key(&dir.path().join("c.pem"), &dir.path().join("c.pem"));
    assert!(matches!(no_key, Err(TlsError::NoPrivateKey(_))));
}
