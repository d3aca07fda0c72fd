#![no_main]
//! See `grenzwacht::fuzzing::pdu`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::pdu(data));
