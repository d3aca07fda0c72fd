//! Generated documents and images (stub; owner: helper "extract").
