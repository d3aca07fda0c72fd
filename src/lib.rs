//! grenzwacht — cross-domain guard and federation border proxy for Matrix.
//!
//! See `ARCHITECTURE.md` for the design; each module's rustdoc holds its own notes.
pub mod admin;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod diode;
pub mod fault;
pub mod federation;
pub mod fuzzing;
pub mod keys;
pub mod lab;
pub mod media;
pub mod policy;
pub mod proxy;
pub mod review;
pub mod spif;
pub mod split;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod ti;
