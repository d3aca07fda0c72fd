//! Text hidden in image metadata.
//!
//! - PNG: `tEXt`, `zTXt` and `iTXt` chunks (compressed ones inflated with a hard limit; an
//!   XMP packet in `iTXt` is read as XML), `eXIf`;
//! - JPEG: comment segments (`COM`), EXIF (`APP1 Exif`), XMP (`APP1` with the Adobe XMP
//!   namespace, extended XMP included), IPTC (`APP13` Photoshop resources) — in every
//!   segment of the file, between the scans of a progressive image too;
//! - GIF: comment and plain-text extensions, XMP application extensions;
//! - WebP: `EXIF` and `XMP ` chunks;
//! - TIFF: the tags of the file itself, read as EXIF.
//!
//! EXIF gives every ASCII tag (ImageDescription, Artist, Copyright, Make, Software, …),
//! UserComment and the Windows XP tags (XPTitle, XPComment, XPAuthor, XPKeywords,
//! XPSubject). A structure that runs past the end of the file is malformed; EXIF of which
//! kamadak-exif parses no field is malformed too (it could hide text the guard did not read),
//! while EXIF with some broken entries gives the fields that parse.
//! Every format also gives the printable runs ([`strings`](crate::media::archive::strings)) of every other chunk, segment or
//! extension that is no image data (private PNG chunks, JPEG `APPn` segments such as ICC
//! profiles, GIF application and unknown extensions, WebP `ICCP` and private chunks) and of
//! the bytes after the end of the image (after PNG's `IEND`, JPEG's `EOI`, GIF's trailer,
//! WebP's RIFF size; a JPEG appended to a JPEG, as phones append depth maps, is read as an
//! image, a few levels deep). TIFF gives its tags only.
use std::io::Read;

use super::xml::{self, Mode};
use super::{ExtractError, Sink};

pub(super) fn text(sink: &mut Sink, b: &[u8], limit: usize) -> Result<(), ExtractError> {
    use crate::media::FileKind;
    match sink.kind() {
        FileKind::Png => png(sink, b, limit),
        FileKind::Jpeg => jpeg(sink, b, 0),
        FileKind::Gif => gif(sink, b),
        FileKind::Webp => webp(sink, b),
        FileKind::Tiff => exif(sink, b.to_vec()),
        _ => Ok(()),
    }
}

fn truncated(sink: &Sink) -> ExtractError {
    sink.malformed("truncated image structure")
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

fn inflate(sink: &Sink, data: &[u8], limit: usize) -> Result<Vec<u8>, ExtractError> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| sink.malformed("bad compressed text chunk"))?;
    if out.len() > limit {
        return Err(sink.too_large());
    }
    Ok(out)
}

fn xmp(sink: &mut Sink, packet: &[u8]) -> Result<(), ExtractError> {
    let text = String::from_utf8_lossy(packet);
    let text = text.trim_end_matches('\0');
    sink.newline()?;
    match xml::text(sink, text, Mode::Generic) {
        Ok(()) => Ok(()),
        Err(ExtractError::Malformed { .. }) => sink.piece(text),
        Err(e) => Err(e),
    }
}

fn png(sink: &mut Sink, b: &[u8], limit: usize) -> Result<(), ExtractError> {
    let mut pos = 8;
    let mut inflated = 0usize;
    while pos < b.len() {
        let header = b.get(pos..pos + 8).ok_or_else(|| truncated(sink))?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
        let data_end = (pos + 8).checked_add(len).ok_or_else(|| truncated(sink))?;
        let data = b.get(pos + 8..data_end).ok_or_else(|| truncated(sink))?;
        if b.len() < data_end + 4 {
            return Err(truncated(sink));
        }
        pos = data_end + 4;
        match &kind {
            b"tEXt" => {
                let (keyword, text) = split_nul(data).ok_or_else(|| truncated(sink))?;
                sink.piece(&latin1(keyword))?;
                sink.piece(&latin1(text))?;
            }
            b"zTXt" => {
                let (keyword, rest) = split_nul(data).ok_or_else(|| truncated(sink))?;
                let compressed = rest.get(1..).ok_or_else(|| truncated(sink))?;
                let text = inflate(sink, compressed, limit)?;
                inflated += text.len();
                if inflated > limit {
                    return Err(sink.too_large());
                }
                sink.piece(&latin1(keyword))?;
                sink.piece(&latin1(&text))?;
            }
            b"iTXt" => {
                let (keyword, rest) = split_nul(data).ok_or_else(|| truncated(sink))?;
                let flags = rest.get(..2).ok_or_else(|| truncated(sink))?;
                let (language, rest) = split_nul(&rest[2..]).ok_or_else(|| truncated(sink))?;
                let (translated, text) = split_nul(rest).ok_or_else(|| truncated(sink))?;
                let text = if flags[0] == 1 {
                    let t = inflate(sink, text, limit)?;
                    inflated += t.len();
                    if inflated > limit {
                        return Err(sink.too_large());
                    }
                    t
                } else {
                    text.to_vec()
                };
                sink.piece(&latin1(keyword))?;
                sink.piece(&String::from_utf8_lossy(language))?;
                sink.piece(&String::from_utf8_lossy(translated))?;
                if keyword == b"XML:com.adobe.xmp" {
                    xmp(sink, &text)?;
                } else {
                    sink.piece(&String::from_utf8_lossy(&text))?;
                }
            }
            b"eXIf" => exif(sink, data.to_vec())?,
            b"IEND" => return strings_piece(sink, &b[pos..]),
            // Image data and the small binary chunks of the format.
            b"IDAT" | b"fdAT" | b"IHDR" | b"PLTE" | b"tRNS" | b"acTL" | b"fcTL" => {}
            // Every other chunk, private ones included: what text it holds.
            _ => strings_piece(sink, data)?,
        }
    }
    Ok(())
}

fn strings_piece(sink: &mut Sink, b: &[u8]) -> Result<(), ExtractError> {
    sink.piece(&crate::media::archive::strings(b))
}

/// How deep images appended to an image are read as images.
const MAX_APPENDED: u8 = 4;

fn split_nul(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == 0)?;
    Some((&b[..i], &b[i + 1..]))
}

const XMP_NS: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXT_NS: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";

fn jpeg(sink: &mut Sink, b: &[u8], depth: u8) -> Result<(), ExtractError> {
    let mut pos = 2;
    loop {
        // fill bytes before a marker are allowed
        while b.get(pos) == Some(&0xff) && b.get(pos + 1) == Some(&0xff) {
            pos += 1;
        }
        let marker = match b.get(pos..pos + 2) {
            Some([0xff, m]) => *m,
            _ => return Err(truncated(sink)),
        };
        match marker {
            0xd9 => {
                // After the end of the image: another image (multi-picture files, depth maps)
                // or anything else, read for its text.
                let rest = &b[pos + 2..];
                if rest.starts_with(&[0xff, 0xd8, 0xff]) && depth < MAX_APPENDED {
                    return jpeg(sink, rest, depth + 1);
                }
                return strings_piece(sink, rest);
            }
            // markers without a length
            0x01 | 0xd0..=0xd7 => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        let len = b.get(pos + 2..pos + 4).ok_or_else(|| truncated(sink))?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 {
            return Err(truncated(sink));
        }
        let data = b
            .get(pos + 4..pos + 2 + len)
            .ok_or_else(|| truncated(sink))?;
        pos += 2 + len;
        match marker {
            // start of scan: skip the entropy-coded data to the next marker (progressive
            // images have more segments, comments included, between their scans)
            0xda => loop {
                let ff = b[pos..]
                    .iter()
                    .position(|&c| c == 0xff)
                    .ok_or_else(|| truncated(sink))?;
                pos += ff;
                match b.get(pos + 1) {
                    None => return Err(truncated(sink)),
                    Some(0x00 | 0xd0..=0xd7 | 0xff) => pos += 1,
                    Some(_) => break,
                }
            },
            0xfe => sink.piece(&String::from_utf8_lossy(data))?,
            0xed => {
                if let Some(resources) = data.strip_prefix(b"Photoshop 3.0\0") {
                    iptc_resources(sink, resources)?;
                } else {
                    strings_piece(sink, data)?;
                }
            }
            0xe1 => {
                if let Some(tiff) = data.strip_prefix(b"Exif\0\0") {
                    exif(sink, tiff.to_vec())?;
                } else if let Some(packet) = data.strip_prefix(XMP_NS) {
                    xmp(sink, packet)?;
                } else if let Some(ext) = data.strip_prefix(XMP_EXT_NS) {
                    // GUID (32), full length (4), offset (4), then a piece of the packet
                    sink.piece(&String::from_utf8_lossy(ext.get(40..).unwrap_or_default()))?;
                } else {
                    strings_piece(sink, data)?;
                }
            }
            // JFIF: after its identifier, what text it holds.
            0xe0 => {
                let rest = data
                    .strip_prefix(b"JFIF\0")
                    .or_else(|| data.strip_prefix(b"JFXX\0"))
                    .unwrap_or(data);
                strings_piece(sink, rest)?;
            }
            // Other application segments (ICC profiles, maker data, …).
            0xe2..=0xec | 0xee | 0xef => strings_piece(sink, data)?,
            _ => {}
        }
    }
}

/// Photoshop image resources (`8BIM`); resource 0x0404 holds IPTC-NAA records, whose
/// application records (2:xx: caption, keywords, by-line, copyright, …) are text.
fn iptc_resources(sink: &mut Sink, mut r: &[u8]) -> Result<(), ExtractError> {
    while r.len() >= 12 && r.starts_with(b"8BIM") {
        let id = u16::from_be_bytes([r[4], r[5]]);
        // a Pascal string name, padded to an even length (length byte included)
        let name_len = usize::from(r[6]);
        let mut at = 6 + name_len + 1;
        at += at % 2;
        let size = r.get(at..at + 4).ok_or_else(|| truncated(sink))?;
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
        let data = r
            .get(at + 4..at + 4 + size)
            .ok_or_else(|| truncated(sink))?;
        if id == 0x0404 {
            iptc(sink, data)?;
        }
        let next = (at + 4 + size + (size & 1)).min(r.len());
        r = &r[next..];
    }
    Ok(())
}

fn iptc(sink: &mut Sink, mut d: &[u8]) -> Result<(), ExtractError> {
    while d.len() >= 5 && d[0] == 0x1c {
        let (record, len) = (d[1], usize::from(u16::from_be_bytes([d[3], d[4]])));
        let value = d.get(5..5 + len).ok_or_else(|| truncated(sink))?;
        // 2:00 is the record version (binary)
        if record == 2 && d[2] != 0 {
            sink.piece(&String::from_utf8_lossy(value))?;
        }
        d = &d[5 + len..];
    }
    Ok(())
}

fn gif(sink: &mut Sink, b: &[u8]) -> Result<(), ExtractError> {
    let lsd = b.get(6..13).ok_or_else(|| truncated(sink))?;
    let mut pos = 13;
    if lsd[4] & 0x80 != 0 {
        pos += 3 << ((lsd[4] & 0x07) + 1);
    }
    loop {
        match b.get(pos) {
            // the trailer: what follows it is no part of the image
            Some(0x3b) => return strings_piece(sink, &b[pos + 1..]),
            Some(0x21) => {
                let label = *b.get(pos + 1).ok_or_else(|| truncated(sink))?;
                let (data, next) = sub_blocks(sink, b, pos + 2)?;
                pos = next;
                match label {
                    0xfe => sink.piece(&latin1(data.get(1..).unwrap_or_default()))?,
                    // plain text: a 12-byte header block, then the text
                    0x01 => sink.piece(&latin1(data.get(13..).unwrap_or_default()))?,
                    0xff if data.get(1..12) == Some(b"XMP DataXMP") => {
                        xmp(sink, data.get(12..).unwrap_or_default())?
                    }
                    // graphic control (four bytes of timing and transparency, and whatever
                    // a writer adds), other application extensions (identifier and data),
                    // unknown labels
                    _ => strings_piece(sink, &data)?,
                }
            }
            Some(0x2c) => {
                let desc = b.get(pos + 1..pos + 10).ok_or_else(|| truncated(sink))?;
                pos += 10;
                if desc[8] & 0x80 != 0 {
                    pos += 3 << ((desc[8] & 0x07) + 1);
                }
                // LZW minimum code size, then the image data
                let (_, next) = sub_blocks(sink, b, pos + 1)?;
                pos = next;
            }
            _ => return Err(truncated(sink)),
        }
    }
}

/// GIF data sub-blocks from `pos`: their bytes (with each block's length byte kept for the
/// first block, so callers can see headers) and the position after the terminator.
fn sub_blocks(sink: &Sink, b: &[u8], mut pos: usize) -> Result<(Vec<u8>, usize), ExtractError> {
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let size = usize::from(*b.get(pos).ok_or_else(|| truncated(sink))?);
        if size == 0 {
            return Ok((out, pos + 1));
        }
        let block = b
            .get(pos + 1..pos + 1 + size)
            .ok_or_else(|| truncated(sink))?;
        if first {
            out.push(size as u8);
            first = false;
        }
        out.extend_from_slice(block);
        pos += 1 + size;
    }
}

fn webp(sink: &mut Sink, b: &[u8]) -> Result<(), ExtractError> {
    let declared = b.get(4..8).ok_or_else(|| truncated(sink))?;
    let end = 8 + u32::from_le_bytes([declared[0], declared[1], declared[2], declared[3]]) as usize;
    let end = end.min(b.len());
    webp_chunks(sink, b.get(12..end).unwrap_or_default(), true)?;
    // after the RIFF container's declared end
    strings_piece(sink, &b[end..])
}

/// The chunks of a WebP file, or (not `top`) of one animation frame.
fn webp_chunks(sink: &mut Sink, b: &[u8], top: bool) -> Result<(), ExtractError> {
    let mut pos = 0;
    while pos < b.len() {
        let header = b.get(pos..pos + 8).ok_or_else(|| truncated(sink))?;
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let data = (pos + 8)
            .checked_add(len)
            .and_then(|data_end| b.get(pos + 8..data_end))
            .ok_or_else(|| truncated(sink))?;
        match &header[..4] {
            b"EXIF" => exif(
                sink,
                data.strip_prefix(b"Exif\0\0").unwrap_or(data).to_vec(),
            )?,
            b"XMP " => xmp(sink, data)?,
            // an animation frame: a 16-byte header, then the frame's own chunks
            b"ANMF" if top => webp_chunks(sink, data.get(16..).unwrap_or_default(), false)?,
            // image data
            b"VP8 " | b"VP8L" | b"ALPH" => {}
            // fixed-size headers (10 and 6 bytes): what a writer adds after them
            b"VP8X" => strings_piece(sink, data.get(10..).unwrap_or_default())?,
            b"ANIM" => strings_piece(sink, data.get(6..).unwrap_or_default())?,
            // `ICCP` and private chunks: what text they hold
            _ => strings_piece(sink, data)?,
        }
        pos += 8 + len + (len & 1);
    }
    Ok(())
}

/// Windows XP tags: UTF-16LE text in BYTE fields.
const XP_TAGS: &[u16] = &[0x9c9b, 0x9c9c, 0x9c9d, 0x9c9e, 0x9c9f];
const USER_COMMENT: u16 = 0x9286;

fn exif(sink: &mut Sink, tiff: Vec<u8>) -> Result<(), ExtractError> {
    // Camera files often carry one broken entry (a maker note with bad offsets): the fields
    // that parse are read; EXIF of which nothing parses is malformed.
    let parsed = exif::Reader::new()
        .continue_on_error(true)
        .read_raw(tiff)
        .or_else(|e| e.distill_partial_result(|_| {}))
        .ok()
        .filter(|parsed| parsed.fields().next().is_some())
        .ok_or_else(|| sink.malformed("EXIF could not be parsed"))?;
    for field in parsed.fields() {
        let number = field.tag.number();
        match &field.value {
            exif::Value::Ascii(parts) => {
                for part in parts {
                    sink.piece(&String::from_utf8_lossy(part))?;
                }
            }
            exif::Value::Undefined(data, _) if number == USER_COMMENT => {
                sink.piece(&user_comment(data))?;
            }
            exif::Value::Byte(data) if XP_TAGS.contains(&number) => {
                sink.piece(&utf16(data, u16::from_le_bytes))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// UserComment: an 8-byte character code, then the text.
fn user_comment(data: &[u8]) -> String {
    let (code, text) = data.split_at(data.len().min(8));
    if code.starts_with(b"UNICODE") {
        // the byte order is not fixed; the one with more zero high bytes wins
        let even_zeros = text.iter().step_by(2).filter(|&&c| c == 0).count();
        let odd_zeros = text.iter().skip(1).step_by(2).filter(|&&c| c == 0).count();
        if even_zeros > odd_zeros {
            utf16(text, u16::from_be_bytes)
        } else {
            utf16(text, u16::from_le_bytes)
        }
    } else {
        String::from_utf8_lossy(text)
            .trim_end_matches('\0')
            .to_string()
    }
}

fn utf16(data: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units: Vec<u16> = data.chunks_exact(2).map(|c| unit([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units)
        .trim_end_matches('\0')
        .to_string()
}
