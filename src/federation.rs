//! Federation protocol knowledge: endpoint catalog, strict JSON, transactions, X-Matrix.
//!
//! The modules form the parse path of every federation request and response:
//!
//! 1. [`catalog::lookup`] maps method + raw path to a catalog [`catalog::Endpoint`] (or
//!    nothing: refuse);
//! 2. [`json::validate_with`] checks the body (size, depth, duplicate keys, top-level shape as
//!    declared by the entry's [`catalog::BodyKind`]);
//! 3. [`txn::Transaction`] (for `/send`) and [`pdu::pdus_in`] (for every other event-carrying
//!    body) give typed views ([`pdu::PduView`], [`pdu::EduView`], [`pdu::EventView`]) over the
//!    raw bytes, which are forwarded unchanged unless policy modifies them;
//! 4. [`userdata`] finds user-typed text outside events (profile, device, directory fields;
//!    to-device messages) and removes what policy refuses;
//! 5. [`request_text`] lists the text a request carries outside events (path and query
//!    parameters, non-event bodies) for the policy to judge before it is forwarded, and
//!    [`response_text`] every key, string and number of a response outside its events and
//!    user-data fields, judged before it is released;
//! 6. [`xmatrix`] parses, verifies and (re-)creates the X-Matrix request signature;
//! 7. [`e2ee`] tells well-formed Olm/Megolm ciphertext and encrypted attachments apart.
pub mod canonical;
pub mod catalog;
pub mod e2ee;
pub mod json;
pub mod mxc;
pub mod pdu;
pub mod pycanonical;
pub mod redact;
pub mod request_text;
pub mod response_text;
pub mod server_name;
pub mod txn;
pub mod userdata;
pub mod xmatrix;

pub use catalog::{
    BodyKind, Carries, Direction, Endpoint, EndpointClass, EndpointMatch, EventKind, EventSite,
    Handler, Source,
};
pub use json::{JsonError, JsonLimits, TopLevel};
pub use pdu::{pdus_in, EduView, EventError, EventView, FoundEvent, LocateError, PduView};
pub use txn::{Transaction, TxnError, TxnLimits};
pub use xmatrix::{XMatrix, XMatrixError};
