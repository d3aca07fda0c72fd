//! Trigger prefilter: where in a field can a rule's regex possibly match?
//!
//! # Design
//!
//! Running every pattern (or one `RegexSet`) over the whole text costs 100–200 MB/s on German
//! text, because patterns that start with a character class (`[A-Z][0-9]{9}`) give the regex
//! engine no literal to skip ahead with. Instead, at compile time every pattern's HIR is
//! analysed for a **required factor**: a set of byte sequences such that every match of the
//! pattern contains an occurrence of at least one of them. A factor is either
//!
//! * a **literal** (`----`, `ghp_`, `AKIA`, `@`), found with one Aho-Corasick automaton over
//!   all literal factors of two or more bytes (and the case-sensitive keywords, see
//!   [`super::Engine`]), or `memchr` for single bytes; or
//! * a **class sequence** over the base classes digit / upper / lower / other
//!   (`[A-Z][0-9]{9}` → `U D D D D D D D D D`), found in one pass that classifies 64 bytes at a
//!   time into bit masks (SSE2 on x86-64) and ANDs shifted masks.
//!
//! Factors are chosen by an estimated frequency in German text (see [`byte_prob`]). Together
//! with the pattern's maximum match length `L` (from the HIR), an occurrence `[s, e)` of a
//! factor bounds every match containing it to the window `[e - L, s + L)`. The engine runs the
//! pattern only inside the merged windows, with the whole field as look-around context
//! (`regex_automata::Input::range`), which yields exactly the matches a `find_iter` over the
//! whole field yields (argument in [`super::Engine`]'s `windowed_find`). Patterns without a
//! usable factor, with possibly empty matches, or without a bounded length fall back to the
//! whole field (the latter only when a factor occurs at all).
use regex_syntax::hir::{Class, Hir, HirKind};

/// Base byte classes of class sequences (bit flags).
pub(super) const DIGIT: u8 = 1;
pub(super) const UPPER: u8 = 2;
pub(super) const LOWER: u8 = 4;
pub(super) const OTHER: u8 = 8;

/// Longest class sequence and literal factor considered.
const MAX_SEQ: usize = 12;
const MAX_LIT: usize = 4;
/// Most literals one factor may expand to (`gh[pousr]_` → 5).
const MAX_EXPAND: usize = 16;

/// Base class of one byte.
pub(super) fn class_of(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => DIGIT,
        b'A'..=b'Z' => UPPER,
        b'a'..=b'z' => LOWER,
        _ => OTHER,
    }
}

/// Rough frequency of a byte in German chat text (sums to about 1). Only used to choose
/// between factors; a wrong estimate costs speed, never correctness.
fn byte_prob(b: u8) -> f64 {
    const LOWER_DE: [f64; 26] = [
        0.045, 0.014, 0.02, 0.035, 0.12, 0.012, 0.02, 0.035, 0.055, 0.002, 0.009, 0.025, 0.018,
        0.07, 0.018, 0.006, 0.0002, 0.05, 0.05, 0.045, 0.03, 0.006, 0.014, 0.0003, 0.0003, 0.008,
    ];
    match b {
        b'a'..=b'z' => LOWER_DE[(b - b'a') as usize],
        b'A'..=b'Z' => 0.0018,
        b'0'..=b'9' => 0.002,
        b' ' => 0.14,
        b'.' | b',' => 0.01,
        b'-' | b'\n' | b':' => 0.003,
        0x80.. => 0.004,
        _ => 0.0005,
    }
}

fn class_prob(bits: u8) -> f64 {
    let mut p = 0.0;
    for b in 0..=255u8 {
        if bits & class_of(b) != 0 {
            p += byte_prob(b);
        }
    }
    p
}

/// A set of bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn single(b: u8) -> Self {
        let mut s = ByteSet([0; 4]);
        s.insert(b);
        s
    }
    fn insert(&mut self, b: u8) {
        self.0[(b >> 6) as usize] |= 1 << (b & 63);
    }
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|b| self.0[(b >> 6) as usize] >> (b & 63) & 1 == 1)
    }
    fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    fn prob(&self) -> f64 {
        self.bytes().map(byte_prob).sum()
    }
    fn classes(&self) -> u8 {
        self.bytes().fold(0, |c, b| c | class_of(b))
    }
}

/// One alternative of a required factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Factor {
    /// These exact bytes.
    Lit(Vec<u8>),
    /// One byte of each class (bit flags) in a row.
    Seq(Vec<u8>),
}

/// A required factor: every match contains an occurrence of one of `alts`.
#[derive(Debug, Clone)]
pub(super) struct Req {
    pub alts: Vec<Factor>,
    /// Estimated occurrences per byte of text.
    pub cost: f64,
}

enum Item {
    Atom(ByteSet),
    Break,
    Sub(Option<Req>),
}

/// A class that matches exactly one byte, as a byte set (`None` for multi-byte classes).
fn class_atom(c: &Class) -> Option<ByteSet> {
    let mut s = ByteSet([0; 4]);
    match c {
        Class::Bytes(b) => {
            for r in b.iter() {
                for x in r.start()..=r.end() {
                    s.insert(x);
                }
            }
        }
        Class::Unicode(u) => {
            for r in u.iter() {
                if r.end() as u32 > 0x7f {
                    return None;
                }
                for x in r.start() as u8..=r.end() as u8 {
                    s.insert(x);
                }
            }
        }
    }
    Some(s)
}

/// One byte position, if `h` always matches exactly one byte.
fn single_atom(h: &Hir) -> Option<ByteSet> {
    match h.kind() {
        HirKind::Literal(l) if l.0.len() == 1 => Some(ByteSet::single(l.0[0])),
        HirKind::Class(c) => class_atom(c),
        HirKind::Capture(c) => single_atom(&c.sub),
        _ => None,
    }
}

fn flatten(h: &Hir, items: &mut Vec<Item>) {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(l) => items.extend(l.0.iter().map(|&b| Item::Atom(ByteSet::single(b)))),
        HirKind::Class(c) => match class_atom(c) {
            Some(s) => items.push(Item::Atom(s)),
            None => items.push(Item::Break),
        },
        HirKind::Capture(c) => flatten(&c.sub, items),
        HirKind::Concat(hs) => hs.iter().for_each(|h| flatten(h, items)),
        HirKind::Repetition(r) => {
            if let Some(a) = single_atom(&r.sub) {
                for _ in 0..r.min.min(MAX_SEQ as u32 + 1) {
                    items.push(Item::Atom(a));
                }
                if r.max != Some(r.min) {
                    items.push(Item::Break);
                }
            } else {
                items.push(Item::Break);
                if r.min >= 1 {
                    items.push(Item::Sub(required(&r.sub)));
                    items.push(Item::Break);
                }
            }
        }
        HirKind::Alternation(hs) => {
            items.push(Item::Break);
            let mut alts = Vec::new();
            let mut cost = 0.0;
            let mut all = true;
            for h in hs {
                match required(h) {
                    Some(r) => {
                        cost += r.cost;
                        alts.extend(r.alts);
                    }
                    None => all = false,
                }
            }
            items.push(Item::Sub(all.then_some(Req { alts, cost })));
            items.push(Item::Break);
        }
    }
}

/// The best factor inside a run of single-byte positions.
fn best_in_run(run: &[ByteSet]) -> Option<Req> {
    let mut best: Option<Req> = None;
    let mut consider = |r: Req| {
        if best.as_ref().is_none_or(|b| r.cost < b.cost) {
            best = Some(r);
        }
    };
    for i in 0..run.len() {
        // Literal expansion.
        let mut count = 1usize;
        let mut p = 1.0;
        for len in 1..=MAX_LIT.min(run.len() - i) {
            let a = &run[i + len - 1];
            count = count.saturating_mul(a.len());
            if count > MAX_EXPAND {
                break;
            }
            p *= a.prob();
            let mut lits: Vec<Vec<u8>> = vec![Vec::new()];
            for a in &run[i..i + len] {
                lits = lits
                    .iter()
                    .flat_map(|l| a.bytes().map(move |b| [l.as_slice(), &[b]].concat()))
                    .collect();
            }
            consider(Req {
                alts: lits.into_iter().map(Factor::Lit).collect(),
                cost: p,
            });
        }
        // Class sequence.
        let mut p = 1.0;
        let mut seq = Vec::new();
        for a in &run[i..run.len().min(i + MAX_SEQ)] {
            let c = a.classes();
            p *= class_prob(c);
            seq.push(c);
            consider(Req {
                alts: vec![Factor::Seq(seq.clone())],
                cost: p,
            });
        }
    }
    best
}

/// A required factor of `h` (every match of `h` contains one of its alternatives), the
/// rarest one found; `None` if there is none (`h` can match without any fixed byte class
/// sequence, e.g. the empty string).
pub(super) fn required(h: &Hir) -> Option<Req> {
    let mut items = Vec::new();
    flatten(h, &mut items);
    let mut best: Option<Req> = None;
    let mut consider = |r: Option<Req>| {
        if let Some(r) = r {
            if best.as_ref().is_none_or(|b| r.cost < b.cost) {
                best = Some(r);
            }
        }
    };
    let mut run: Vec<ByteSet> = Vec::new();
    for it in items.into_iter().chain(std::iter::once(Item::Break)) {
        match it {
            Item::Atom(a) => run.push(a),
            Item::Break => {
                consider(best_in_run(&run));
                run.clear();
            }
            Item::Sub(r) => consider(r),
        }
    }
    best
}

/// Where a trigger occurred: every occurrence `[s, e)` in `lo_end ..` / `.. hi_start` (runs of
/// consecutive occurrences are kept as one hit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub trig: u32,
    /// End of the first occurrence.
    pub lo_end: usize,
    /// Start of the last occurrence.
    pub hi_start: usize,
}

/// The compiled triggers of all patterns.
#[derive(Debug)]
pub(super) struct Triggers {
    /// Class sequences (trigger ids `0..seqs.len()`).
    seqs: Vec<Vec<u8>>,
    /// Multi-byte literals (trigger ids follow the sequences); the engine searches them
    /// together with its case-sensitive keywords.
    lits: Vec<Vec<u8>>,
    /// Single bytes (trigger ids follow the literals).
    bytes: Vec<u8>,
    /// Per sequence: (class bits, shift) per element, rarest adjacent pair first.
    seq_combos: Vec<Vec<(usize, u32)>>,
    /// Distinct adjacent class pairs (first, second) checked once per block as a gate.
    pairs: Vec<(usize, usize)>,
    /// Per sequence: index into `pairs` of its rarest pair (`usize::MAX` for length 1).
    seq_pair: Vec<usize>,
}

/// Builds [`Triggers`] while assigning trigger ids to factors.
#[derive(Default)]
pub(super) struct TriggersBuilder {
    seqs: Vec<Vec<u8>>,
    lits: Vec<Vec<u8>>,
    bytes: Vec<u8>,
    /// Per added factor: (kind 0 seq / 1 lit / 2 byte, index).
    refs: Vec<(u8, usize)>,
}

impl TriggersBuilder {
    /// Register a factor; returns a provisional reference resolved by [`Self::build`].
    pub fn add(&mut self, f: &Factor) -> usize {
        let r = match f {
            Factor::Seq(s) => (0, pos_or_push(&mut self.seqs, s.clone())),
            Factor::Lit(l) if l.len() == 1 => (2, pos_or_push(&mut self.bytes, l[0])),
            Factor::Lit(l) => (1, pos_or_push(&mut self.lits, l.clone())),
        };
        self.refs.push(r);
        self.refs.len() - 1
    }

    /// The triggers and a map from provisional references to trigger ids.
    pub fn build(self) -> (Triggers, Vec<u32>) {
        let (ns, nl) = (self.seqs.len(), self.lits.len());
        let ids = self
            .refs
            .iter()
            .map(|&(k, i)| match k {
                0 => i as u32,
                1 => (ns + i) as u32,
                _ => (ns + nl + i) as u32,
            })
            .collect();
        // Check the rarest adjacent pair first, then the rest from rare to common: most
        // blocks are rejected after two ANDs.
        let seq_combos: Vec<Vec<(usize, u32)>> = self
            .seqs
            .iter()
            .map(|s| {
                let k = s.len();
                let mut combos: Vec<(usize, u32)> = s
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| (c as usize, (k - 1 - i) as u32))
                    .collect();
                let p = |c: usize| class_prob(c as u8);
                combos.sort_by(|a, b| p(a.0).total_cmp(&p(b.0)));
                if k >= 2 {
                    let pair = (0..k - 1)
                        .min_by(|&i, &j| {
                            (p(s[i] as usize) * p(s[i + 1] as usize))
                                .total_cmp(&(p(s[j] as usize) * p(s[j + 1] as usize)))
                        })
                        .expect("k >= 2");
                    let first = [
                        (s[pair] as usize, (k - 1 - pair) as u32),
                        (s[pair + 1] as usize, (k - 2 - pair) as u32),
                    ];
                    combos.retain(|c| !first.contains(c));
                    combos.splice(0..0, first);
                }
                combos
            })
            .collect();
        let mut pairs = Vec::new();
        let seq_pair = seq_combos
            .iter()
            .map(|c: &Vec<(usize, u32)>| {
                // The first two combos are the rarest pair: (first element, shift s+1),
                // (second element, shift s).
                if c.len() < 2 {
                    usize::MAX
                } else {
                    pos_or_push(&mut pairs, (c[0].0, c[1].0))
                }
            })
            .collect();
        (
            Triggers {
                seqs: self.seqs,
                seq_combos,
                pairs,
                seq_pair,
                lits: self.lits,
                bytes: self.bytes,
            },
            ids,
        )
    }
}

fn pos_or_push<T: PartialEq>(v: &mut Vec<T>, x: T) -> usize {
    match v.iter().position(|y| *y == x) {
        Some(i) => i,
        None => {
            v.push(x);
            v.len() - 1
        }
    }
}

impl Triggers {
    pub fn count(&self) -> usize {
        self.seqs.len() + self.lits.len() + self.bytes.len()
    }

    /// The literal triggers; literal `i` has trigger id `lit_base() + i`.
    pub fn lits(&self) -> &[Vec<u8>] {
        &self.lits
    }

    pub fn lit_base(&self) -> u32 {
        self.seqs.len() as u32
    }

    /// Find every occurrence of the class-sequence and single-byte triggers in `text`
    /// (literal triggers are the caller's); `want[id]` says which triggers matter.
    pub fn scan(&self, text: &[u8], want: &[bool], hits: &mut Vec<Hit>, last: &mut Vec<usize>) {
        if want[..self.seqs.len()].iter().any(|w| *w) {
            self.scan_seqs(text, want, hits, last);
        }
        let base = self.seqs.len() + self.lits.len();
        for (i, &b) in self.bytes.iter().enumerate() {
            let trig = (base + i) as u32;
            if want[trig as usize] {
                hits.extend(memchr::memchr_iter(b, text).map(|p| Hit {
                    trig,
                    lo_end: p + 1,
                    hi_start: p,
                }));
            }
        }
    }

    fn scan_seqs(&self, text: &[u8], want: &[bool], hits: &mut Vec<Hit>, last: &mut Vec<usize>) {
        last.clear();
        last.resize(self.seqs.len(), usize::MAX);
        let mut prev = [0u64; 16];
        let mut prev_pair = [false; 64];
        let all_gated = self.seq_pair.iter().all(|&p| p < 64);
        let mut base = 0;
        let mut tail = [0u8; 64];
        while base < text.len() {
            let n = (text.len() - base).min(64);
            let block: &[u8; 64] = if n == 64 {
                text[base..base + 64].try_into().expect("64 bytes")
            } else {
                tail.fill(0);
                tail[..n].copy_from_slice(&text[base..]);
                &tail
            };
            let (d, u, l) = classify64(block);
            let valid = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            let o = !(d | u | l) & valid;
            // Every union of base classes, indexed by class bits.
            let singles = [d, u, l, o];
            let mut cur = [0u64; 16];
            for bits in 1..16 {
                cur[bits] = cur[bits & (bits - 1)] | singles[bits.trailing_zeros() as usize];
            }
            // Gate: where does each distinct rarest pair end (this block or the previous)?
            let mut pair_any = [false; 64];
            let mut any = false;
            for (pi, &(a, b)) in self.pairs.iter().enumerate().take(64) {
                let pm = ((cur[a] << 1) | (prev[a] >> 63)) & cur[b];
                let hit = pm != 0 || prev_pair[pi];
                prev_pair[pi] = pm != 0;
                pair_any[pi] = hit;
                any |= hit;
            }
            if !any && all_gated {
                prev = cur;
                base += 64;
                continue;
            }
            for (si, combos) in self.seq_combos.iter().enumerate() {
                if !want[si] {
                    continue;
                }
                let sp = self.seq_pair[si];
                if sp < 64 && !pair_any[sp] {
                    continue;
                }
                let k = combos.len();
                let mut m = valid;
                for &(c, sh) in combos {
                    m &= if sh == 0 {
                        cur[c]
                    } else {
                        (cur[c] << sh) | (prev[c] >> (64 - sh))
                    };
                    if m == 0 {
                        break;
                    }
                }
                while m != 0 {
                    let p = base + m.trailing_zeros() as usize;
                    m &= m - 1;
                    let (start, end) = (p + 1 - k, p + 1);
                    let li = last[si];
                    if li != usize::MAX && hits[li].hi_start + 1 == start {
                        hits[li].hi_start = start;
                    } else {
                        last[si] = hits.len();
                        hits.push(Hit {
                            trig: si as u32,
                            lo_end: end,
                            hi_start: start,
                        });
                    }
                }
            }
            prev = cur;
            base += 64;
        }
    }
}

/// Digit, upper-case and lower-case ASCII bit masks of 64 bytes (bit `i` = byte `i`).
#[cfg(target_arch = "x86_64")]
pub(super) fn classify64(block: &[u8; 64]) -> (u64, u64, u64) {
    use std::arch::x86_64::*;
    let (mut d, mut u, mut l) = (0u64, 0u64, 0u64);
    // SAFETY: SSE2 is part of the x86-64 baseline; the loads read 4 × 16 bytes inside `block`.
    unsafe {
        let range = |v: __m128i, lo: u8, n: u8| {
            // (v - lo) < n, unsigned: shift into the signed range and compare.
            let x = _mm_add_epi8(v, _mm_set1_epi8(0x80u8.wrapping_sub(lo) as i8));
            _mm_movemask_epi8(_mm_cmplt_epi8(
                x,
                _mm_set1_epi8(0x80u8.wrapping_add(n) as i8),
            )) as u16 as u64
        };
        for i in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i) as *const __m128i);
            d |= range(v, b'0', 10) << (16 * i);
            u |= range(v, b'A', 26) << (16 * i);
            l |= range(v, b'a', 26) << (16 * i);
        }
    }
    (d, u, l)
}

/// Digit, upper-case and lower-case ASCII bit masks of 64 bytes (bit `i` = byte `i`).
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn classify64(block: &[u8; 64]) -> (u64, u64, u64) {
    classify64_scalar(block)
}

/// Portable reference of [`classify64`].
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(super) fn classify64_scalar(block: &[u8; 64]) -> (u64, u64, u64) {
    let (mut d, mut u, mut l) = (0u64, 0u64, 0u64);
    for (i, &b) in block.iter().enumerate() {
        let c = class_of(b);
        d |= u64::from(c == DIGIT) << i;
        u |= u64::from(c == UPPER) << i;
        l |= u64::from(c == LOWER) << i;
    }
    (d, u, l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hir(p: &str) -> Hir {
        regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(p)
            .unwrap()
    }

    #[test]
    fn factors_of_shipped_shapes() {
        let r = required(&hir(r"(?-u:\b)[A-Z][0-9]{9}(?-u:\b)")).unwrap();
        assert_eq!(
            r.alts,
            vec![Factor::Seq([vec![UPPER], vec![DIGIT; 9]].concat())]
        );
        let r = required(&hir(
            r"(?-u:\b)[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}",
        ))
        .unwrap();
        assert_eq!(r.alts, vec![Factor::Lit(b"@".to_vec())]);
        let r = required(&hir(
            r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})",
        ))
        .unwrap();
        assert!(
            r.alts.contains(&Factor::Lit(b"ghp_".to_vec())),
            "{:?}",
            r.alts
        );
        assert!(r.alts.len() == 6, "{:?}", r.alts);
        // Optional parts are never required.
        assert!(required(&hir("a*")).is_none());
        assert!(required(&hir("(?:ab)?c?")).is_none());
        assert!(required(&hir("x|[a-z]*")).is_none());
        // Case-insensitive literals expand.
        let r = required(&hir("(?i)zq")).unwrap();
        assert_eq!(r.alts.len(), 4);
    }

    #[test]
    fn simd_classification_matches_scalar() {
        let mut block = [0u8; 64];
        for start in (0..=255usize).step_by(7) {
            for (i, b) in block.iter_mut().enumerate() {
                *b = ((start + i * 13) % 256) as u8;
            }
            assert_eq!(classify64(&block), classify64_scalar(&block));
        }
        for b in 0..=255u8 {
            let block = [b; 64];
            assert_eq!(classify64(&block), classify64_scalar(&block), "byte {b}");
        }
    }

    #[test]
    fn sequence_hits_cross_blocks_and_merge_runs() {
        let mut tb = TriggersBuilder::default();
        tb.add(&Factor::Seq(vec![UPPER, DIGIT, DIGIT]));
        let (t, _) = tb.build();
        let mut text = vec![b'x'; 200];
        text[62..68].copy_from_slice(b"A12345");
        text[150..153].copy_from_slice(b"B99");
        let (mut hits, mut last) = (Vec::new(), Vec::new());
        t.scan(&text, &[true], &mut hits, &mut last);
        assert_eq!(
            hits,
            vec![
                Hit {
                    trig: 0,
                    lo_end: 65,
                    hi_start: 62
                },
                Hit {
                    trig: 0,
                    lo_end: 153,
                    hi_start: 150
                }
            ]
        );
        // Every offset across a block boundary (the gate pair may end in the previous block).
        for (seq, sample) in [
            ([vec![UPPER], vec![DIGIT; 9]].concat(), &b"A123456789"[..]),
            // The rarest pair (digits) leads: it can end a block before the sequence does.
            (
                vec![DIGIT, DIGIT, LOWER, LOWER, LOWER, LOWER],
                &b"12abcd"[..],
            ),
        ] {
            let mut tb = TriggersBuilder::default();
            tb.add(&Factor::Seq(seq));
            let (t, _) = tb.build();
            for start in 40..140 {
                let mut text = vec![b'.'; 220];
                text[start..start + sample.len()].copy_from_slice(sample);
                hits.clear();
                t.scan(&text, &[true], &mut hits, &mut last);
                assert_eq!(
                    hits,
                    vec![Hit {
                        trig: 0,
                        lo_end: start + sample.len(),
                        hi_start: start
                    }],
                    "start {start}"
                );
            }
        }
        // A run of occurrences is one hit.
        let mut tb = TriggersBuilder::default();
        tb.add(&Factor::Seq(vec![DIGIT, DIGIT]));
        let (t, _) = tb.build();
        hits.clear();
        t.scan(b"ab 123456 c 77", &[true], &mut hits, &mut last);
        assert_eq!(
            hits,
            vec![
                Hit {
                    trig: 0,
                    lo_end: 5,
                    hi_start: 7
                },
                Hit {
                    trig: 0,
                    lo_end: 14,
                    hi_start: 12
                }
            ]
        );
    }
}
