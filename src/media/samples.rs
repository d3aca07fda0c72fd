//! Generated sample files for tests and benchmarks: archives (zip, tar, gzip, nested), archive
//! bombs, executable headers and test strings. Nothing here is live malware: the executables
//! are headers around a single `ret`, and the EICAR string is the anti-virus industry's inert
//! test file, assembled at run time so that this source file itself does not match it.
use std::io::Write;

use flate2::write::{DeflateEncoder, GzEncoder};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

pub mod docs;

const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;
/// General-purpose flag: the name is UTF-8.
const FLAG_UTF8: u16 = 0x0800;
/// General-purpose flag: the entry is encrypted.
const FLAG_ENCRYPTED: u16 = 0x0001;

/// One zip entry as written to the file.
#[derive(Clone)]
struct RawEntry {
    name: Vec<u8>,
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u32,
    size: u32,
    offset: u32,
}

/// A minimal zip writer: local headers, data, central directory, end record (no zip64).
#[derive(Default)]
struct ZipWriter {
    out: Vec<u8>,
    central: Vec<RawEntry>,
}

impl ZipWriter {
    /// Writes a local header and its data; returns the entry for the central directory.
    fn local(
        &mut self,
        name: &str,
        flags: u16,
        method: u16,
        crc: u32,
        size: u32,
        data: &[u8],
    ) -> RawEntry {
        let offset = self.out.len() as u32;
        let o = &mut self.out;
        o.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        o.extend_from_slice(&20u16.to_le_bytes());
        o.extend_from_slice(&flags.to_le_bytes());
        o.extend_from_slice(&method.to_le_bytes());
        o.extend_from_slice(&0u16.to_le_bytes()); // time
        o.extend_from_slice(&0x0021u16.to_le_bytes()); // date: 1980-01-01
        o.extend_from_slice(&crc.to_le_bytes());
        o.extend_from_slice(&(data.len() as u32).to_le_bytes());
        o.extend_from_slice(&size.to_le_bytes());
        o.extend_from_slice(&(name.len() as u16).to_le_bytes());
        o.extend_from_slice(&0u16.to_le_bytes()); // extra
        o.extend_from_slice(name.as_bytes());
        o.extend_from_slice(data);
        RawEntry {
            name: name.as_bytes().to_vec(),
            flags,
            method,
            crc,
            compressed: data.len() as u32,
            size,
            offset,
        }
    }

    /// Adds a deflated (or, for names ending in `/`, empty stored) entry.
    fn add(&mut self, name: &str, data: &[u8]) {
        if name.ends_with('/') {
            let e = self.local(name, FLAG_UTF8, METHOD_STORED, 0, 0, &[]);
            self.central.push(e);
        } else {
            self.deflated(name, data, &[]);
        }
    }

    /// Adds an entry holding `data` deflated, followed by `junk` inside its compressed size.
    fn deflated(&mut self, name: &str, data: &[u8], junk: &[u8]) {
        let mut crc = Crc::new();
        crc.update(data);
        let mut compressed = deflate(data);
        compressed.extend_from_slice(junk);
        let e = self.local(
            name,
            FLAG_UTF8,
            METHOD_DEFLATED,
            crc.sum(),
            data.len() as u32,
            &compressed,
        );
        self.central.push(e);
    }

    fn finish(mut self) -> Vec<u8> {
        let start = self.out.len() as u32;
        for e in &self.central {
            let o = &mut self.out;
            o.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            o.extend_from_slice(&0x0314u16.to_le_bytes()); // made by: unix, 2.0
            o.extend_from_slice(&20u16.to_le_bytes());
            o.extend_from_slice(&e.flags.to_le_bytes());
            o.extend_from_slice(&e.method.to_le_bytes());
            o.extend_from_slice(&0u16.to_le_bytes());
            o.extend_from_slice(&0x0021u16.to_le_bytes());
            o.extend_from_slice(&e.crc.to_le_bytes());
            o.extend_from_slice(&e.compressed.to_le_bytes());
            o.extend_from_slice(&e.size.to_le_bytes());
            o.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            o.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
            o.extend_from_slice(&0o100644u32.wrapping_shl(16).to_le_bytes());
            o.extend_from_slice(&e.offset.to_le_bytes());
            o.extend_from_slice(&e.name);
        }
        let size = self.out.len() as u32 - start;
        let n = self.central.len() as u16;
        let o = &mut self.out;
        o.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        o.extend_from_slice(&[0; 4]);
        o.extend_from_slice(&n.to_le_bytes());
        o.extend_from_slice(&n.to_le_bytes());
        o.extend_from_slice(&size.to_le_bytes());
        o.extend_from_slice(&start.to_le_bytes());
        o.extend_from_slice(&0u16.to_le_bytes());
        self.out
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("deflate into memory");
    enc.finish().expect("deflate into memory")
}

/// A zip of `entries` (name, content), deflated; names ending in `/` are directories.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = ZipWriter::default();
    for (name, data) in entries {
        w.add(name, data);
    }
    w.finish()
}

/// A zip whose one entry `name` holds `content` deflated and then `junk` after the end of
/// the compressed stream, inside the entry's compressed size (`junk` empty: an ordinary
/// entry; a name ending in `/`: a directory entry that carries data).
pub fn zip_entry_with_junk(name: &str, content: &[u8], junk: &[u8]) -> Vec<u8> {
    let mut w = ZipWriter::default();
    w.deflated(name, content, junk);
    w.finish()
}

/// A zip whose one entry `name` uses compression `method` (e.g. 12 bzip2, 14 lzma, 93 zstd);
/// the data is the content as is (a reader that supports the method would find it corrupt).
pub fn zip_with_method(name: &str, method: u16, content: &[u8]) -> Vec<u8> {
    let mut w = ZipWriter::default();
    let mut crc = Crc::new();
    crc.update(content);
    let e = w.local(
        name,
        FLAG_UTF8,
        method,
        crc.sum(),
        content.len() as u32,
        content,
    );
    w.central.push(e);
    w.finish()
}

/// A zip whose one entry `name` is flagged as encrypted (traditional PKWARE encryption); the
/// "ciphertext" is random-looking filler.
pub fn zip_encrypted(name: &str) -> Vec<u8> {
    let mut w = ZipWriter::default();
    let data: Vec<u8> = (0u32..64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let e = w.local(
        name,
        FLAG_UTF8 | FLAG_ENCRYPTED,
        METHOD_STORED,
        0,
        52,
        &data,
    );
    w.central.push(e);
    w.finish()
}

/// A ustar archive of `entries` (name, content); names ending in `/` are directories.
pub fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
        } else {
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
        }
        h.set_mtime(0);
        b.append_data(&mut h, name, &data[..])
            .expect("tar into memory");
    }
    b.into_inner().expect("tar into memory")
}

/// `bytes` gzip-compressed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// A gzip of a tar of `entries` (a `.tar.gz`).
pub fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    gzip(&tar(entries))
}

/// `depth` zips inside each other (`depth` ≥ 1); the innermost holds `leaf.txt`. The file
/// itself is the outermost zip, `n.zip` the one inside zip `n`.
pub fn nested_zip(depth: u32) -> Vec<u8> {
    let mut cur = zip(&[("leaf.txt", b"innermost text\n")]);
    for n in (1..depth).rev() {
        let name = format!("{n}.zip");
        cur = zip(&[(&name, &cur)]);
    }
    cur
}

/// Deflate stream (raw, not final) of `len` zeros from a fresh compressor, ending with a sync
/// flush at a byte boundary: copies of it can be concatenated.
fn zeros_sync_chunk(len: usize) -> Vec<u8> {
    let zeros = vec![0u8; len];
    let mut c = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(len / 512 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(4096);
        }
        let status = c
            .compress_vec(&zeros[consumed..], &mut out, FlushCompress::Sync)
            .expect("deflate into memory");
        if c.total_in() as usize == len && status == Status::Ok && out.capacity() > out.len() {
            break;
        }
    }
    out
}

/// A zip with one deflated entry `zeros.bin` of `uncompressed_bytes` zeros (≤ 4 GiB − 1): the
/// classic ratio bomb (1 GiB → about 1 MB). Built from one compressed MiB repeated, in well
/// under a second; the CRC and sizes in the headers are correct.
pub fn zip_bomb_ratio(uncompressed_bytes: u64) -> Vec<u8> {
    assert!(uncompressed_bytes < u64::from(u32::MAX), "no zip64 here");
    const MIB: u64 = 1 << 20;
    let chunk = zeros_sync_chunk(MIB as usize);
    let zeros = vec![0u8; MIB as usize];
    let mut data = Vec::with_capacity((uncompressed_bytes / MIB + 1) as usize * chunk.len() + 2);
    let mut crc = Crc::new();
    for _ in 0..uncompressed_bytes / MIB {
        data.extend_from_slice(&chunk);
        crc.update(&zeros);
    }
    let rest = (uncompressed_bytes % MIB) as usize;
    if rest > 0 {
        data.extend_from_slice(&zeros_sync_chunk(rest));
        crc.update(&zeros[..rest]);
    }
    // Final empty block (fixed Huffman, end of block only).
    data.extend_from_slice(&[0x03, 0x00]);
    let mut w = ZipWriter::default();
    let e = w.local(
        "zeros.bin",
        FLAG_UTF8,
        METHOD_DEFLATED,
        crc.sum(),
        uncompressed_bytes as u32,
        &data,
    );
    w.central.push(e);
    w.finish()
}

/// An overlapping-entry zip bomb: one local entry (1 MiB of zeros, deflated to about 1 KB) and
/// `n` central-directory entries (`0.bin`, `1.bin`, …) that all point at it. `n` × 1 MiB
/// uncompressed from a file of about 1 KB + 60 bytes per entry.
pub fn zip_bomb_overlapping(n: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut crc = Crc::new();
    crc.update(&zeros);
    let mut w = ZipWriter::default();
    let first = w.local(
        "0.bin",
        FLAG_UTF8,
        METHOD_DEFLATED,
        crc.sum(),
        1 << 20,
        &deflate(&zeros),
    );
    for i in 0..n {
        w.central.push(RawEntry {
            name: format!("{i}.bin").into_bytes(),
            ..first.clone()
        });
    }
    w.finish()
}

/// A minimal PE32 executable for Windows (GUI subsystem): DOS header, PE signature, COFF and
/// optional headers, one `.text` section whose code is a single `ret`. Headers only; it does
/// nothing.
pub fn pe_exe() -> Vec<u8> {
    struct Out {
        f: Vec<u8>,
        p: usize,
    }
    let mut o = Out {
        f: vec![0u8; 0x400],
        p: 0x40,
    };
    o.f[0..2].copy_from_slice(b"MZ");
    o.f[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes()); // e_lfanew
    let put = |o: &mut Out, bytes: &[u8]| {
        o.f[o.p..o.p + bytes.len()].copy_from_slice(bytes);
        o.p += bytes.len();
    };
    put(&mut o, b"PE\0\0");
    // COFF header
    put(&mut o, &0x014cu16.to_le_bytes()); // i386
    put(&mut o, &1u16.to_le_bytes()); // sections
    put(&mut o, &[0; 12]); // timestamp, symbol table, symbols
    put(&mut o, &0xe0u16.to_le_bytes()); // optional header size
    put(&mut o, &0x0102u16.to_le_bytes()); // executable, 32-bit
                                           // Optional header (PE32)
    let opt = o.p;
    put(&mut o, &0x010bu16.to_le_bytes());
    put(&mut o, &[0, 0]); // linker version
    put(&mut o, &0x200u32.to_le_bytes()); // size of code
    put(&mut o, &[0; 8]); // initialized, uninitialized data
    put(&mut o, &0x1000u32.to_le_bytes()); // entry point
    put(&mut o, &0x1000u32.to_le_bytes()); // base of code
    put(&mut o, &0x2000u32.to_le_bytes()); // base of data
    put(&mut o, &0x0040_0000u32.to_le_bytes()); // image base
    put(&mut o, &0x1000u32.to_le_bytes()); // section alignment
    put(&mut o, &0x200u32.to_le_bytes()); // file alignment
    put(&mut o, &4u16.to_le_bytes()); // OS version
    put(&mut o, &0u16.to_le_bytes());
    put(&mut o, &[0; 4]); // image version
    put(&mut o, &4u16.to_le_bytes()); // subsystem version
    put(&mut o, &0u16.to_le_bytes());
    put(&mut o, &[0; 4]); // win32 version
    put(&mut o, &0x2000u32.to_le_bytes()); // size of image
    put(&mut o, &0x200u32.to_le_bytes()); // size of headers
    put(&mut o, &[0; 4]); // checksum
    put(&mut o, &2u16.to_le_bytes()); // subsystem: GUI
    put(&mut o, &0u16.to_le_bytes()); // DLL characteristics
    for v in [0x10_0000u32, 0x1000, 0x10_0000, 0x1000, 0] {
        put(&mut o, &v.to_le_bytes()); // stack, heap reserve/commit, loader flags
    }
    put(&mut o, &16u32.to_le_bytes()); // data directories
    o.p = opt + 0xe0;
    // Section header
    put(&mut o, b".text\0\0\0");
    put(&mut o, &0x1000u32.to_le_bytes()); // virtual size
    put(&mut o, &0x1000u32.to_le_bytes()); // virtual address
    put(&mut o, &0x200u32.to_le_bytes()); // raw size
    put(&mut o, &0x200u32.to_le_bytes()); // raw pointer
    put(&mut o, &[0; 12]);
    put(&mut o, &0x6000_0020u32.to_le_bytes()); // code, execute, read
    o.f[0x200] = 0xc3; // ret
    o.f
}

/// A minimal ELF64 executable for x86-64: ELF header and one loadable segment whose code is a
/// single `ret`.
pub fn elf() -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // executable
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&0x40_0078u64.to_le_bytes()); // entry
    f.extend_from_slice(&64u64.to_le_bytes()); // program headers
    f.extend_from_slice(&0u64.to_le_bytes()); // section headers
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&64u16.to_le_bytes());
    f.extend_from_slice(&56u16.to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    f.extend_from_slice(&64u16.to_le_bytes());
    f.extend_from_slice(&[0; 4]);
    // PT_LOAD, read + execute, the whole file at 0x400000
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&5u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes());
    f.extend_from_slice(&0x40_0000u64.to_le_bytes());
    f.extend_from_slice(&0x40_0000u64.to_le_bytes());
    f.extend_from_slice(&121u64.to_le_bytes());
    f.extend_from_slice(&121u64.to_le_bytes());
    f.extend_from_slice(&0x1000u64.to_le_bytes());
    f.push(0xc3); // ret
    f
}

/// The 68-byte EICAR anti-virus test file (inert; every scanner reports it by design).
pub fn eicar() -> Vec<u8> {
    let halves = [
        r"X5O!P%@AP[4\PZX54(P^)7CC)7}",
        "$EICAR-STANDARD-ANTIVIRUS",
        "-TEST-FILE!$H+H*",
    ];
    halves.concat().into_bytes()
}

/// A shell script with a `#!` line.
pub fn script() -> Vec<u8> {
    b"#!/bin/sh\necho \"hello from a script\"\n".to_vec()
}

/// Deterministic plain text of about `len` bytes (German office prose, with line breaks).
pub fn text(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "Besprechung",
        "Termin",
        "Bericht",
        "Anlage",
        "Projekt",
        "Abstimmung",
        "bitte",
        "morgen",
        "Rückmeldung",
        "Entwurf",
        "Haushalt",
        "Vorlage",
        "Referat",
        "Sitzung",
        "Ergebnis",
        "Protokoll",
        "und",
        "der",
        "die",
        "das",
        "zur",
        "mit",
        "für",
        "über",
        "Kenntnisnahme",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut col = 0;
    while s.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let w = WORDS[(state >> 33) as usize % WORDS.len()];
        s.push_str(w);
        col += w.len() + 1;
        if col > 72 {
            s.push_str(".\n");
            col = 0;
        } else {
            s.push(' ');
        }
    }
    s.truncate(s.floor_char_boundary(len));
    s.into_bytes()
}
