//! Fault injection tests.
