#![no_main]
//! See `grenzwacht::fuzzing::dlp_rules`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::dlp_rules(data));
