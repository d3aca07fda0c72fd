//! The proxy: listeners, TLS, interception CA, discovery, upstreams.
pub mod ca;
pub mod discovery;
pub mod tls;
