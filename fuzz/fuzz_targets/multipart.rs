#![no_main]
//! See `grenzwacht::fuzzing::multipart`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::multipart(data));
