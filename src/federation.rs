//! Federation protocol knowledge: endpoint catalog, strict JSON, transactions, X-Matrix.
pub mod catalog;

pub use catalog::EndpointClass;
