//! proxy::tls (stub)
