//! lab (stub)
