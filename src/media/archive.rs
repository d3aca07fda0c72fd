//! Archives (stub; owner: helper "inspector").
