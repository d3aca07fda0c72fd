#![no_main]
//! See `grenzwacht::fuzzing::redact`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::redact(data));
