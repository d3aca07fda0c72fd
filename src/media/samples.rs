//! Generated sample files (stub; owner: helper "inspector"; `docs` is helper "extract"'s).
pub mod docs;
