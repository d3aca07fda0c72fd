#![no_main]
//! See `grenzwacht::fuzzing::label_4774`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::label_4774(data));
