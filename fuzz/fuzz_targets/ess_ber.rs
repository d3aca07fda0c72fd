#![no_main]
//! See `grenzwacht::fuzzing::ess_ber`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::ess_ber(data));
