//! The frame verifier card (`hw/REGISTERS.md`): a driver over its registers and a simulated
//! card that implements the same registers in software.
//!
//! [`CardDriver`] speaks only through [`RegisterBus`] (32-bit reads and writes at byte
//! offsets), so the same driver runs against a real card's register window and against
//! [`SimCard`], whose verifier is the reference verifier (`diode::frame::verify`). [`gate`]
//! puts a card between frames arriving (e.g. from the UDP link) and the side that acts on them:
//! only frames the card accepted come out.
use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::frame::{self, Reason};

pub const REG_ID: u32 = 0x000;
pub const REG_VERSION: u32 = 0x004;
pub const REG_STATUS: u32 = 0x008;
pub const REG_CONTROL: u32 = 0x00C;
pub const REG_IN_LEN: u32 = 0x010;
pub const REG_IN_DATA: u32 = 0x014;
pub const REG_IN_COMMIT: u32 = 0x018;
pub const REG_IN_FREE: u32 = 0x01C;
pub const REG_OUT_LEN: u32 = 0x020;
pub const REG_OUT_DATA: u32 = 0x024;
pub const REG_OUT_POP: u32 = 0x028;
pub const REG_OUT_FRAMES: u32 = 0x02C;
pub const REG_LAST_REJECT: u32 = 0x030;
pub const REG_LAST_REJECT_AT: u32 = 0x034;
pub const REG_COUNT0: u32 = 0x040;
pub const REG_DROPPED_OVERFLOW: u32 = 0x080;

/// `ID`: the bytes `GWDF` read as a little-endian word.
pub const CARD_ID: u32 = u32::from_le_bytes(*b"GWDF");
/// `VERSION`: frame format 1, interface 1.
pub const CARD_VERSION: u32 = 1 | (1 << 8);

pub const STATUS_ENABLED: u32 = 1;
pub const STATUS_IN_BUSY: u32 = 1 << 1;
pub const STATUS_OUT_AVAILABLE: u32 = 1 << 2;
pub const STATUS_IN_FULL: u32 = 1 << 3;
pub const STATUS_OVERFLOW: u32 = 1 << 4;

pub const CONTROL_ENABLE: u32 = 1;
pub const CONTROL_RESET: u32 = 1 << 1;
pub const CONTROL_CLEAR_COUNTERS: u32 = 1 << 2;

/// 32-bit register access at byte offsets.
pub trait RegisterBus {
    fn read32(&mut self, offset: u32) -> u32;
    fn write32(&mut self, offset: u32, value: u32);
}

/// Errors of the card driver.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("not a frame verifier card (ID {0:#010x})")]
    NotACard(u32),
    #[error("unsupported card version {0:#x}")]
    Version(u32),
    #[error("frame of {len} bytes does not fit the card's input ({free} free)")]
    Full { len: usize, free: u32 },
    #[error("the card dropped accepted frames: its output was full")]
    Overflow,
}

/// A software model of the card (`hw/REGISTERS.md`).
#[derive(Debug)]
pub struct SimCard {
    in_capacity: u32,
    out_capacity: usize,
    control: u32,
    in_full: bool,
    overflow: bool,
    writing: Option<(u32, Vec<u8>)>,
    out: VecDeque<Vec<u8>>,
    out_pos: usize,
    counts: [u32; 16],
    last_reject: u32,
    last_reject_at: u32,
    committed: u32,
    dropped_overflow: u32,
}

impl SimCard {
    /// A card whose input FIFO holds `in_capacity` bytes and whose output FIFO holds
    /// `out_capacity` frames.
    pub fn new(in_capacity: u32, out_capacity: usize) -> SimCard {
        SimCard {
            in_capacity,
            out_capacity,
            control: 0,
            in_full: false,
            overflow: false,
            writing: None,
            out: VecDeque::new(),
            out_pos: 0,
            counts: [0; 16],
            last_reject: 0,
            last_reject_at: 0,
            committed: 0,
            dropped_overflow: 0,
        }
    }

    fn in_free(&self) -> u32 {
        let used = self.writing.as_ref().map_or(0, |(_, b)| b.len() as u32);
        self.in_capacity - used
    }

    fn commit(&mut self) {
        let Some((_, bytes)) = self.writing.take() else {
            return;
        };
        if self.control & CONTROL_ENABLE == 0 {
            return;
        }
        // The only way from the input to the output: through the verifier.
        let r = frame::verify(&bytes);
        let c = &mut self.counts[r.code() as usize];
        *c = c.saturating_add(1);
        if r == Reason::Accept {
            if self.out.len() < self.out_capacity {
                self.out.push_back(bytes);
            } else {
                self.overflow = true;
                self.dropped_overflow = self.dropped_overflow.saturating_add(1);
            }
        } else {
            self.last_reject = (1 << 31) | r.code() as u32;
            self.last_reject_at = self.committed;
        }
        self.committed = self.committed.wrapping_add(1);
    }
}

fn word_of(bytes: &[u8], pos: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, b) in bytes.iter().skip(pos).take(4).enumerate() {
        w[i] = *b;
    }
    u32::from_le_bytes(w)
}

impl RegisterBus for SimCard {
    fn read32(&mut self, offset: u32) -> u32 {
        match offset {
            REG_ID => CARD_ID,
            REG_VERSION => CARD_VERSION,
            REG_STATUS => {
                (if self.control & CONTROL_ENABLE != 0 {
                    STATUS_ENABLED
                } else {
                    0
                }) | (if self.writing.is_some() {
                    STATUS_IN_BUSY
                } else {
                    0
                }) | (if self.out.is_empty() {
                    0
                } else {
                    STATUS_OUT_AVAILABLE
                }) | (if self.in_full { STATUS_IN_FULL } else { 0 })
                    | (if self.overflow { STATUS_OVERFLOW } else { 0 })
            }
            REG_CONTROL => self.control & CONTROL_ENABLE,
            REG_IN_FREE => self.in_free(),
            REG_OUT_LEN => self.out.front().map_or(0, |f| f.len() as u32),
            REG_OUT_DATA => {
                let Some(f) = self.out.front() else {
                    return 0;
                };
                let w = word_of(f, self.out_pos);
                self.out_pos = (self.out_pos + 4).min(f.len());
                w
            }
            REG_OUT_FRAMES => self.out.len() as u32,
            REG_LAST_REJECT => self.last_reject,
            REG_LAST_REJECT_AT => self.last_reject_at,
            o if (REG_COUNT0..REG_COUNT0 + 64).contains(&o) && o % 4 == 0 => {
                self.counts[((o - REG_COUNT0) / 4) as usize]
            }
            REG_DROPPED_OVERFLOW => self.dropped_overflow,
            _ => 0,
        }
    }

    fn write32(&mut self, offset: u32, value: u32) {
        match offset {
            REG_CONTROL => {
                if value & CONTROL_RESET != 0 {
                    self.writing = None;
                    self.out.clear();
                    self.out_pos = 0;
                    self.overflow = false;
                    self.in_full = false;
                    self.committed = 0;
                }
                if value & CONTROL_CLEAR_COUNTERS != 0 {
                    self.counts = [0; 16];
                    self.last_reject = 0;
                    self.last_reject_at = 0;
                    self.dropped_overflow = 0;
                }
                self.control = value & CONTROL_ENABLE;
            }
            REG_IN_LEN => {
                if self.control & CONTROL_ENABLE == 0 {
                    return;
                }
                self.writing = None; // abort a frame being written
                if value > self.in_free() {
                    self.in_full = true;
                    return;
                }
                self.in_full = false;
                self.writing = Some((value, Vec::with_capacity(value as usize)));
            }
            REG_IN_DATA => {
                if let Some((len, bytes)) = &mut self.writing {
                    let room = (*len as usize).saturating_sub(bytes.len());
                    bytes.extend_from_slice(&value.to_le_bytes()[..room.min(4)]);
                }
            }
            REG_IN_COMMIT if value & 1 == 1 => self.commit(),
            REG_OUT_POP if value & 1 == 1 => {
                self.out.pop_front();
                self.out_pos = 0;
            }
            _ => {}
        }
    }
}

/// The host side of the card.
#[derive(Debug)]
pub struct CardDriver<B: RegisterBus> {
    bus: B,
}

impl<B: RegisterBus> CardDriver<B> {
    /// Checks the card's identity and version, resets and enables it.
    pub fn open(mut bus: B) -> Result<Self, DeviceError> {
        let id = bus.read32(REG_ID);
        if id != CARD_ID {
            return Err(DeviceError::NotACard(id));
        }
        let v = bus.read32(REG_VERSION);
        if v != CARD_VERSION {
            return Err(DeviceError::Version(v));
        }
        bus.write32(REG_CONTROL, CONTROL_RESET | CONTROL_CLEAR_COUNTERS);
        bus.write32(REG_CONTROL, CONTROL_ENABLE);
        Ok(CardDriver { bus })
    }

    /// Writes one frame into the card (it is verified on commit).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), DeviceError> {
        let free = self.bus.read32(REG_IN_FREE);
        if frame.len() > free as usize {
            return Err(DeviceError::Full {
                len: frame.len(),
                free,
            });
        }
        self.bus.write32(REG_IN_LEN, frame.len() as u32);
        if self.bus.read32(REG_STATUS) & STATUS_IN_FULL != 0 {
            return Err(DeviceError::Full {
                len: frame.len(),
                free,
            });
        }
        for chunk in frame.chunks(4) {
            self.bus.write32(REG_IN_DATA, word_of(chunk, 0));
        }
        self.bus.write32(REG_IN_COMMIT, 1);
        if self.bus.read32(REG_STATUS) & STATUS_OVERFLOW != 0 {
            return Err(DeviceError::Overflow);
        }
        Ok(())
    }

    /// The next frame the card accepted, if any.
    pub fn receive(&mut self) -> Option<Vec<u8>> {
        let len = self.bus.read32(REG_OUT_LEN) as usize;
        if len == 0 {
            return None;
        }
        let mut f = Vec::with_capacity(len);
        while f.len() < len {
            let w = self.bus.read32(REG_OUT_DATA).to_le_bytes();
            let take = (len - f.len()).min(4);
            f.extend_from_slice(&w[..take]);
        }
        self.bus.write32(REG_OUT_POP, 1);
        Some(f)
    }

    /// Frames answered per reason code (`COUNT[0]` = accepted).
    pub fn counters(&mut self) -> [u32; 16] {
        let mut c = [0; 16];
        for (i, v) in c.iter_mut().enumerate() {
            *v = self.bus.read32(REG_COUNT0 + 4 * i as u32);
        }
        c
    }

    /// The last rejected frame's reason, if any frame was rejected.
    pub fn last_reject(&mut self) -> Option<Reason> {
        let v = self.bus.read32(REG_LAST_REJECT);
        (v & (1 << 31) != 0)
            .then(|| Reason::from_code((v & 0xF) as u8))
            .flatten()
    }
}

/// Puts a card between `input` and `output`: every frame goes through the card, only what it
/// accepted is passed on; rejected ones are counted by the card and logged here. Returns when
/// `input` closes or `output` is gone.
pub async fn gate<B: RegisterBus>(
    mut card: CardDriver<B>,
    mut input: mpsc::Receiver<Vec<u8>>,
    output: mpsc::Sender<Vec<u8>>,
) -> CardDriver<B> {
    while let Some(f) = input.recv().await {
        if let Err(e) = card.send(&f) {
            tracing::warn!("frame verifier card: {e}; frame dropped");
            continue;
        }
        let mut passed = false;
        while let Some(ok) = card.receive() {
            passed = true;
            if output.send(ok).await.is_err() {
                return card;
            }
        }
        if !passed {
            tracing::info!(reason = ?card.last_reject(), "frame verifier card rejected a frame");
        }
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diode::vectors;

    fn card() -> CardDriver<SimCard> {
        CardDriver::open(SimCard::new(frame::MAX_PAYLOAD + 64, 16)).unwrap()
    }

    /// Every crafted and 2000 random vectors through the simulated card: what comes out is
    /// exactly the vectors expected to be accepted, byte for byte and in order; the counters per
    /// reason match the expected verdicts.
    #[test]
    fn only_accepted_frames_leave_the_card_and_rejects_are_counted_by_reason() {
        let mut all = vectors::crafted();
        all.extend(vectors::random(2000, 11, 1000));
        let mut c = card();
        let mut out = Vec::new();
        let mut expected_counts = [0u32; 16];
        for v in &all {
            expected_counts[v.expected.code() as usize] += 1;
            c.send(&v.bytes).unwrap();
            while let Some(f) = c.receive() {
                out.push(f);
            }
        }
        let accepted: Vec<&Vec<u8>> = all
            .iter()
            .filter(|v| v.expected == Reason::Accept)
            .map(|v| &v.bytes)
            .collect();
        assert_eq!(out.len(), accepted.len());
        assert!(out.iter().zip(&accepted).all(|(a, b)| a == *b));
        assert_eq!(c.counters(), expected_counts);
    }

    #[test]
    fn registers_behave_as_specified() {
        let mut bus = SimCard::new(200, 1);
        assert_eq!(bus.read32(REG_ID).to_le_bytes(), *b"GWDF");
        // Disabled: nothing is taken.
        bus.write32(REG_IN_LEN, 4);
        assert_eq!(bus.read32(REG_STATUS) & STATUS_IN_BUSY, 0);
        let mut c = CardDriver::open(bus).unwrap();
        let good = frame::encode(
            &frame::Header {
                frame_type: frame::FrameType::Heartbeat,
                session: 1,
                sequence: 2,
            },
            b"{}",
        );
        // Too large for the input FIFO: refused, not cut.
        assert!(matches!(c.send(&[0u8; 300]), Err(DeviceError::Full { .. })));
        // A truncated frame is rejected and its reason is readable.
        c.send(&good[..65]).unwrap();
        assert_eq!(c.receive(), None);
        assert_eq!(c.last_reject(), Some(Reason::Truncated));
        c.send(&good).unwrap();
        // The output holds one frame: the second accepted one overflows.
        assert_eq!(c.send(&good), Err(DeviceError::Overflow));
        assert_eq!(c.receive().as_deref(), Some(&good[..]));
        assert_eq!(c.receive(), None);
        assert_eq!(c.bus.read32(REG_DROPPED_OVERFLOW), 1);
        assert_eq!(c.counters()[0], 2);
        // Reset clears the FIFOs and the latch, not the counters.
        c.bus.write32(REG_CONTROL, CONTROL_RESET | CONTROL_ENABLE);
        assert_eq!(c.bus.read32(REG_STATUS) & STATUS_OVERFLOW, 0);
        assert_eq!(c.counters()[1], 1);
        // Committing early verifies what was written.
        c.bus.write32(REG_IN_LEN, good.len() as u32);
        for chunk in good[..64].chunks(4) {
            c.bus.write32(REG_IN_DATA, word_of(chunk, 0));
        }
        c.bus.write32(REG_IN_COMMIT, 1);
        assert_eq!(c.last_reject(), Some(Reason::Truncated));
        assert!(matches!(
            CardDriver::open(NotACard),
            Err(DeviceError::NotACard(0))
        ));
    }

    struct NotACard;
    impl RegisterBus for NotACard {
        fn read32(&mut self, _: u32) -> u32 {
            0
        }
        fn write32(&mut self, _: u32, _: u32) {}
    }

    /// Frames from the UDP link through the simulated card to the receiving side: frames that
    /// fail verification (sent deliberately, each kind of defect) never reach it.
    #[tokio::test]
    async fn link_then_card_passes_only_verified_frames() {
        use crate::diode::udp::{self, LinkConfig, LinkStats};
        use std::sync::Arc;
        use tokio::sync::watch;
        let cfg = LinkConfig::default();
        let rx_sock = udp::socket("127.0.0.1:0".parse().unwrap(), None, &cfg).unwrap();
        let tx_sock = udp::socket(
            "127.0.0.1:0".parse().unwrap(),
            Some(rx_sock.local_addr().unwrap()),
            &cfg,
        )
        .unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (deliver, from_link) = mpsc::channel(1024);
        tokio::spawn(udp::run_receiver(
            rx_sock,
            cfg.clone(),
            deliver,
            Arc::new(LinkStats::default()),
            stop.clone(),
        ));
        let (to_side, mut side) = mpsc::channel(1024);
        let gate = tokio::spawn(gate(card(), from_link, to_side));
        let (frames, frames_rx) = mpsc::channel(1024);
        tokio::spawn(udp::run_sender(
            tx_sock,
            cfg,
            3,
            frames_rx,
            Arc::new(LinkStats::default()),
            stop,
        ));
        // Frames with every defect that keeps the frame self-delimiting on the link (the
        // header's length matches the bytes), and valid ones between them.
        let all: Vec<vectors::Vector> = vectors::crafted()
            .into_iter()
            .filter(|v| {
                udp::split_frames(&v.bytes).is_some_and(|f| f.len() == 1) && !v.bytes.is_empty()
            })
            .collect();
        assert!(all.iter().any(|v| v.expected != Reason::Accept));
        for v in &all {
            frames.send(v.bytes.clone()).await.unwrap();
        }
        let want: Vec<&Vec<u8>> = all
            .iter()
            .filter(|v| v.expected == Reason::Accept)
            .map(|v| &v.bytes)
            .collect();
        let mut got = Vec::new();
        while got.len() < want.len() {
            let f = tokio::time::timeout(std::time::Duration::from_secs(10), side.recv())
                .await
                .expect("accepted frames arrive")
                .unwrap();
            got.push(f);
        }
        // Nothing else follows.
        drop(frames);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(500), side.recv())
                .await
                .map_or(true, |f| f.is_none())
        );
        assert!(got.iter().zip(&want).all(|(a, b)| a == *b));
        let _ = stop_tx.send(true);
        let mut card = gate.await.unwrap();
        let rejected: u32 = card.counters()[1..].iter().sum();
        assert_eq!(rejected as usize, all.len() - want.len());
    }
}
