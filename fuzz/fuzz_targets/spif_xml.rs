#![no_main]
//! See `grenzwacht::fuzzing::spif_xml`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| grenzwacht::fuzzing::spif_xml(data));
