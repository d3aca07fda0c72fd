//! mxc references in events (stub; owner: helper "plumbing").
