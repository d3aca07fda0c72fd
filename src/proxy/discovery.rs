//! proxy::discovery (stub)
