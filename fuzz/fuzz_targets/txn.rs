#![no_main]
//! See `grenzwacht::fuzzing::txn`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::txn(data));
