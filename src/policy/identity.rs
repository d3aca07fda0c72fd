//! The identity of the loaded policy.
