//! proxy::ca (stub)
