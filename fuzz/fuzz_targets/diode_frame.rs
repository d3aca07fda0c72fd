#![no_main]
//! See `grenzwacht::fuzzing::diode_frame`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::diode_frame(data));
