//! The split appliance's crossing format: diode frames (`hw/FRAMES.md`).
//!
//! * [`charclass`]: the characters a frame payload may contain, as code point ranges shared
//!   with the HDL verifier (`hw/charclass.txt`, `hw/rtl/charclass.vh`).
//! * [`frame`]: building frames and the reference verifier.
//! * [`vectors`]: the test vector generator and the vector file format both verifiers read.
//! * [`udp`]: the one-way UDP link with RaptorQ forward error correction.
//! * [`tcp`]: the TCP link (frames back to back, nothing written back) and the in-process one.
//! * [`device`]: the frame verifier card (`hw/REGISTERS.md`): driver, simulated card, and the
//!   gate that lets only verified frames through.
pub mod charclass;
pub mod cli;
pub mod device;
pub mod frame;
pub mod tcp;
pub mod udp;
pub mod vectors;
