#![no_main]
//! See `grenzwacht::fuzzing::catalog`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::catalog(data));
