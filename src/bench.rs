//! bench (stub)
