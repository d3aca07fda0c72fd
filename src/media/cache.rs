//! Verdict cache (stub; owner: helper "plumbing").
