#![no_main]
//! See `grenzwacht::fuzzing::label_json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::label_json(data));
