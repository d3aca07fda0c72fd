#![no_main]
//! See `grenzwacht::fuzzing::strict_json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::strict_json(data));
