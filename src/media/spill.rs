//! Spill buffer (stub; owner: helper "plumbing").
