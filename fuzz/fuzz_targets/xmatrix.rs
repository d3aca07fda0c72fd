#![no_main]
//! See `grenzwacht::fuzzing::xmatrix`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::xmatrix(data));
