//! `grenzwacht ti …`. Owner: helper `ti-pki`.

/// `grenzwacht ti` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TiCommand {}
