#![no_main]
//! See `grenzwacht::fuzzing::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::config(data));
