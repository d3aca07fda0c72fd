//! The proxy: listeners, TLS, interception CA, discovery, upstreams.
//!
//! `guard` is the runtime object and `serve`; `exchange` holds the phases of one request;
//! `inbound` and `outbound` are the listeners; `upstream` is the forwarding layer (it requires
//! a `policy::Permit`).
pub mod admission;
pub mod audit_trail;
pub mod ca;
pub mod client_api;
pub mod crossing;
pub mod discovery;
pub mod exchange;
pub mod guard;
pub mod health;
pub mod hold;
pub mod inbound;
pub mod integrity;
pub mod media;
pub mod notary;
pub mod notices;
pub mod outbound;
pub mod pause;
pub mod perpdu;
pub mod replay;
pub mod rewrite;
pub mod room_labels;
pub mod rooms;
pub mod ti_gate;
pub mod tls;
pub mod txn_slots;
pub mod upstream;

pub use guard::{serve, Guard, Listeners};
