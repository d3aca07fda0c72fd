//! The split appliance's crossing format: diode frames (`hw/FRAMES.md`).
//!
//! * [`charclass`]: the characters a frame payload may contain, as code point ranges shared
//!   with the HDL verifier (`hw/charclass.txt`, `hw/rtl/charclass.vh`).
//! * [`frame`]: building frames and the reference verifier.
//! * [`vectors`]: the test vector generator and the vector file format both verifiers read.
pub mod charclass;
pub mod cli;
pub mod frame;
pub mod vectors;
