//! Strict multipart/mixed (stub; owner: helper "plumbing").
