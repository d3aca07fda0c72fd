#![no_main]
//! See `grenzwacht::fuzzing::split_message`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::split_message(data));
