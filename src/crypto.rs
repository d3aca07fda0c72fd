//! Cryptographic policy shared by every part of the guard that speaks TLS: the federation
//! listeners and clients (`proxy::tls`), the admin listener and the review CLI (`admin::tls`),
//! and the audit log's syslog forwarder (`audit::syslog`).
//!
//! One [`tls_provider`]: *ring*, restricted to BSI TR-02102-2 — TLS 1.3 with
//! `TLS13_AES_256_GCM_SHA384` and `TLS13_AES_128_GCM_SHA256`; TLS 1.2 only with ECDHE and
//! AES-GCM (`ECDHE_ECDSA`/`ECDHE_RSA` with AES-256-GCM-SHA384 and AES-128-GCM-SHA256); key
//! exchange over P-384 and P-256 only. The order is the server's preference (AES-256 first).
//! No CBC, no ChaCha20 (not in TR-02102-2), no X25519 (not a recommended group there).
use std::sync::{Arc, OnceLock};

use rustls::crypto::{ring as ring_provider, CryptoProvider};

/// The crypto provider for all TLS in grenzwacht (see the module documentation); built once
/// and shared.
pub fn tls_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            use ring_provider::cipher_suite as cs;
            use ring_provider::kx_group;
            Arc::new(CryptoProvider {
                cipher_suites: vec![
                    // TLS 1.3 (order = server preference)
                    cs::TLS13_AES_256_GCM_SHA384,
                    cs::TLS13_AES_128_GCM_SHA256,
                    // TLS 1.2
                    cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                    cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                    cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                    cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                ],
                kx_groups: vec![kx_group::SECP384R1, kx_group::SECP256R1],
                ..ring_provider::default_provider()
            })
        })
        .clone()
}
