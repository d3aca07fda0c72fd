//! keys (stub)
