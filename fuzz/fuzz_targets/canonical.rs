#![no_main]
//! See `grenzwacht::fuzzing::canonical`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::canonical(data));
