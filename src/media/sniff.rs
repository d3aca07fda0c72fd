//! The type of a file from its bytes: magic numbers and structure, never a declared
//! `Content-Type` or a file name.
//!
//! [`sniff`] gives one kind. Where bytes can be read as more than one kind (polyglots), it
//! decides for the more dangerous one: an executable header wins over anything found later in
//! the file, and a `#!` line makes a script. [`kinds`] lists every reading the guard
//! recognises, most dangerous first, so a caller can inspect a polyglot in each of its forms
//! (a JPEG with a zip appended, a zip whose first entry starts a PDF within 1024 bytes).
//!
//! Zip files are told apart by their central directory (entry names only) and two small
//! entries read with a hard limit: `[Content_Types].xml` (OOXML; a macro-enabled content
//! type, `vbaProject.bin`, `vbaData.xml` or an Excel 4.0 macro sheet makes
//! [`FileKind::OfficeMacro`]) and `mimetype` (OpenDocument; Basic or script libraries in the
//! package also make [`FileKind::OfficeMacro`]).
//!
//! Text is valid UTF-8 (a UTF-8 byte order mark is allowed; UTF-16 with a byte order mark is
//! decoded) without NUL and without C0 controls other than tab, line feed, carriage return,
//! form feed and escape. RTF (`{\rtf`) is text by these rules but a document format that
//! embeds objects: it is [`FileKind::Unknown`].
use std::io::{Cursor, Read};

use super::FileKind;

/// How far into a file a PDF header is accepted (as PDF readers do).
const PDF_HEADER_WINDOW: usize = 1024;
/// Largest `[Content_Types].xml` read to find macro-enabled content types.
const CONTENT_TYPES_LIMIT: u64 = 256 * 1024;
/// Largest `mimetype` entry read from an OpenDocument package.
const MIMETYPE_LIMIT: u64 = 128;

/// The kind of a file, judged from its bytes only.
pub fn sniff(bytes: &[u8]) -> FileKind {
    primary(bytes)
}

/// Every kind the bytes can be read as, most dangerous first; the first is [`sniff`]'s
/// answer. A second entry appears for polyglots: a PDF header within the first 1024 bytes of
/// a file that starts as something else, or a zip central directory at the end of a file that
/// starts as something else.
pub fn kinds(bytes: &[u8]) -> Vec<FileKind> {
    let first = primary(bytes);
    let mut all = vec![first];
    if first != FileKind::Pdf && pdf_header(bytes) {
        all.push(FileKind::Pdf);
    }
    if !is_zip_family(first) && appended_zip(bytes) {
        all.push(FileKind::Zip);
    }
    all
}

fn is_zip_family(kind: FileKind) -> bool {
    matches!(
        kind,
        FileKind::Zip
            | FileKind::Docx
            | FileKind::Xlsx
            | FileKind::Pptx
            | FileKind::OfficeMacro
            | FileKind::Odt
            | FileKind::Ods
            | FileKind::Odp
    )
}

fn primary(b: &[u8]) -> FileKind {
    if let Some(kind) = executable(b) {
        return kind;
    }
    if b.starts_with(b"#!") {
        return FileKind::Script;
    }
    if let Some(kind) = fixed_magic(b) {
        return kind;
    }
    if pdf_header(b) {
        return FileKind::Pdf;
    }
    if is_tar(b) {
        return FileKind::Tar;
    }
    // UTF-16 text with a little-endian byte order mark also looks like an MPEG frame header
    if let Some(text) = decode_text(b) {
        return text_kind(&text);
    }
    if mp3_frame(b) {
        return FileKind::Mp3;
    }
    FileKind::Unknown
}

/// Executable headers at offset 0. A bare `MZ` counts as PE: a truncated or odd DOS header
/// is still refused as an executable, not waved through as something harmless.
fn executable(b: &[u8]) -> Option<FileKind> {
    if b.starts_with(b"MZ") {
        return Some(FileKind::Pe);
    }
    if b.starts_with(b"\x7fELF") {
        return Some(FileKind::Elf);
    }
    const MACHO: &[[u8; 4]] = &[
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
        // fat (universal) binaries, 32- and 64-bit, both byte orders
        [0xca, 0xfe, 0xba, 0xbe],
        [0xca, 0xfe, 0xba, 0xbf],
        [0xbe, 0xba, 0xfe, 0xca],
        [0xbf, 0xba, 0xfe, 0xca],
    ];
    if b.len() >= 4 && MACHO.iter().any(|m| b[..4] == m[..]) {
        return Some(FileKind::MachO);
    }
    None
}

/// Whether an `MZ` file has a valid PE header (`e_lfanew` pointing at `PE\0\0`). Both count
/// as [`FileKind::Pe`]; this tells a real PE from a bare DOS stub for callers who care.
pub fn has_pe_header(b: &[u8]) -> bool {
    if !b.starts_with(b"MZ") || b.len() < 0x40 {
        return false;
    }
    let lfanew = u32::from_le_bytes([b[0x3c], b[0x3d], b[0x3e], b[0x3f]]) as usize;
    lfanew
        .checked_add(4)
        .and_then(|end| b.get(lfanew..end))
        .is_some_and(|sig| sig == b"PE\0\0")
}

fn fixed_magic(b: &[u8]) -> Option<FileKind> {
    let starts = |m: &[u8]| b.starts_with(m);
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some(FileKind::Png);
    }
    if starts(&[0xff, 0xd8, 0xff]) {
        return Some(FileKind::Jpeg);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some(FileKind::Gif);
    }
    if b.len() >= 12 && starts(b"RIFF") {
        match &b[8..12] {
            b"WEBP" => return Some(FileKind::Webp),
            b"WAVE" => return Some(FileKind::Wav),
            _ => {}
        }
    }
    if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
        return Some(FileKind::Tiff);
    }
    if is_bmp(b) {
        return Some(FileKind::Bmp);
    }
    if starts(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return Some(FileKind::Ole);
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Some(zip_kind(b));
    }
    if starts(&[0x1f, 0x8b]) {
        return Some(FileKind::Gzip);
    }
    const OTHER_ARCHIVES: &[&[u8]] = &[
        &[0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], // 7z
        b"Rar!\x1a\x07",                       // rar 4 and 5
        b"BZh",                                // bzip2
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],             // zstd
        b"MSCF\0\0\0\0",                       // cab
        b"LZIP",                               // lzip
        &[0x04, 0x22, 0x4d, 0x18],             // lz4 frame
    ];
    if OTHER_ARCHIVES.iter().any(|m| starts(m)) {
        return Some(FileKind::OtherArchive);
    }
    if b.len() >= 12 && &b[4..8] == b"ftyp" {
        // ISO base media: video (mp4, mov, 3gp, m4a) — but HEIF/AVIF still images are no
        // kind the guard knows.
        const IMAGE_BRANDS: &[&[u8]] = &[
            b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif",
            b"avis",
        ];
        if IMAGE_BRANDS.contains(&&b[8..12]) {
            return Some(FileKind::Unknown);
        }
        return Some(FileKind::Mp4);
    }
    if starts(&[0x1a, 0x45, 0xdf, 0xa3]) {
        return Some(FileKind::Webm);
    }
    if starts(b"OggS\0") {
        return Some(FileKind::Ogg);
    }
    if starts(b"ID3")
        && b.len() >= 10
        && (2..=4).contains(&b[3])
        && b[6..10].iter().all(|c| *c < 0x80)
    {
        return Some(FileKind::Mp3);
    }
    None
}

fn is_bmp(b: &[u8]) -> bool {
    if !b.starts_with(b"BM") || b.len() < 26 {
        return false;
    }
    let dib = u32::from_le_bytes([b[14], b[15], b[16], b[17]]);
    matches!(dib, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124)
}

fn pdf_header(b: &[u8]) -> bool {
    let window = &b[..b.len().min(PDF_HEADER_WINDOW)];
    window.windows(5).any(|w| w == b"%PDF-")
}

/// A tar header at offset 0: the `ustar` magic at 257, or a v7 header whose checksum
/// (bytes 148..156, octal) matches the header.
fn is_tar(b: &[u8]) -> bool {
    if b.len() < 512 {
        return false;
    }
    let header = &b[..512];
    if &header[257..262] == b"ustar" {
        return true;
    }
    let field = &header[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|c| *c == b' ')
        .take_while(|c| (b'0'..=b'7').contains(c))
        .collect();
    if digits.is_empty() || header[0] == 0 {
        return false;
    }
    let Ok(stored) = u32::from_str_radix(std::str::from_utf8(&digits).unwrap_or("x"), 8) else {
        return false;
    };
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*c)
            }
        })
        .sum();
    sum == stored
}

/// MPEG audio at offset 0: a valid frame header (11 sync bits, version, layer, bit rate,
/// sample rate) followed by a second one where the first frame ends, or a single frame that
/// is the whole file. One header alone is too weak: one random byte string in a few thousand
/// starts like one.
fn mp3_frame(b: &[u8]) -> bool {
    let Some(first) = mpeg_frame_len(b) else {
        return false;
    };
    if first == b.len() {
        return true;
    }
    b.get(first..)
        .and_then(mpeg_frame_len)
        .is_some_and(|_| b[first + 1] & 0xfe == b[1] & 0xfe)
}

/// The length of the MPEG audio frame whose header starts `b`.
fn mpeg_frame_len(b: &[u8]) -> Option<usize> {
    if b.len() < 4 || b[0] != 0xff || b[1] & 0xe0 != 0xe0 {
        return None;
    }
    let version = (b[1] >> 3) & 0x03; // 0: 2.5, 2: 2, 3: 1
    let layer = (b[1] >> 1) & 0x03; // 1: III, 2: II, 3: I
    let bitrate_index = usize::from(b[2] >> 4);
    let rate_index = usize::from((b[2] >> 2) & 0x03);
    let padding = usize::from((b[2] >> 1) & 0x01);
    if version == 1 || layer == 0 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    const V1: [[u32; 15]; 3] = [
        [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ], // III
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ], // II
        [
            0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ], // I
    ];
    const V2: [[u32; 15]; 2] = [
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160], // II, III
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ], // I
    ];
    let bitrate = if version == 3 {
        V1[usize::from(layer) - 1][bitrate_index]
    } else {
        V2[usize::from(layer == 3)][bitrate_index]
    } as usize
        * 1000;
    let rate = match version {
        3 => [44_100, 48_000, 32_000][rate_index],
        2 => [22_050, 24_000, 16_000][rate_index],
        _ => [11_025, 12_000, 8_000][rate_index],
    };
    let len = match layer {
        3 => (12 * bitrate / rate + padding) * 4,
        1 if version != 3 => 72 * bitrate / rate + padding,
        _ => 144 * bitrate / rate + padding,
    };
    (len >= 4).then_some(len)
}

/// A zip file's central directory names what is inside (no entry is decompressed except the
/// small `[Content_Types].xml` and `mimetype`, read with a hard limit).
fn zip_kind(b: &[u8]) -> FileKind {
    let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(b)) else {
        return FileKind::Zip;
    };
    let names: Vec<String> = zip
        .file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    let lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    if has("[Content_Types].xml") {
        let macros = lower.iter().any(|n| {
            n.ends_with("vbaproject.bin")
                || n.ends_with("vbadata.xml")
                || n.contains("/macrosheets/")
                || n.starts_with("macrosheets/")
        }) || read_small(&mut zip, "[Content_Types].xml", CONTENT_TYPES_LIMIT)
            .map(|ct| {
                let ct = String::from_utf8_lossy(&ct).to_ascii_lowercase();
                ct.contains("macroenabled") || ct.contains("vbaproject")
            })
            .unwrap_or(false);
        let prefix = |p: &str| names.iter().any(|n| n.starts_with(p));
        let office = if prefix("word/") {
            Some(FileKind::Docx)
        } else if prefix("xl/") {
            Some(FileKind::Xlsx)
        } else if prefix("ppt/") {
            Some(FileKind::Pptx)
        } else {
            None
        };
        if let Some(kind) = office {
            return if macros { FileKind::OfficeMacro } else { kind };
        }
        return FileKind::Zip;
    }
    if has("mimetype") {
        let Some(mime) = read_small(&mut zip, "mimetype", MIMETYPE_LIMIT) else {
            return FileKind::Zip;
        };
        let kind = match mime.trim_ascii() {
            b"application/vnd.oasis.opendocument.text"
            | b"application/vnd.oasis.opendocument.text-template" => FileKind::Odt,
            b"application/vnd.oasis.opendocument.spreadsheet"
            | b"application/vnd.oasis.opendocument.spreadsheet-template" => FileKind::Ods,
            b"application/vnd.oasis.opendocument.presentation"
            | b"application/vnd.oasis.opendocument.presentation-template" => FileKind::Odp,
            _ => return FileKind::Zip,
        };
        let macros = lower
            .iter()
            .any(|n| n.starts_with("basic/") || n.starts_with("scripts/"));
        return if macros { FileKind::OfficeMacro } else { kind };
    }
    FileKind::Zip
}

fn read_small(zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str, limit: u64) -> Option<Vec<u8>> {
    let entry = zip.by_name(name).ok()?;
    let mut out = Vec::new();
    entry.take(limit).read_to_end(&mut out).ok()?;
    Some(out)
}

/// A zip end-of-central-directory record near the end of a file that does not start as a
/// zip (a zip appended to an image or a PDF), and the archive parses.
fn appended_zip(b: &[u8]) -> bool {
    let tail_start = b.len().saturating_sub(22 + 65_535);
    let tail = &b[tail_start..];
    tail.windows(4).any(|w| w == b"PK\x05\x06") && zip::ZipArchive::new(Cursor::new(b)).is_ok()
}

/// The text of a file if it is text: UTF-8 (with or without a byte order mark) or UTF-16
/// with a byte order mark, without NUL and without C0 controls other than tab, line feed,
/// carriage return, form feed and escape.
pub fn decode_text(b: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let text: Cow<'_, str> = if let Some(rest) = b.strip_prefix(b"\xef\xbb\xbf") {
        Cow::Borrowed(std::str::from_utf8(rest).ok()?)
    } else if let Some(rest) = b.strip_prefix(b"\xff\xfe") {
        Cow::Owned(utf16(rest, u16::from_le_bytes)?)
    } else if let Some(rest) = b.strip_prefix(b"\xfe\xff") {
        Cow::Owned(utf16(rest, u16::from_be_bytes)?)
    } else {
        Cow::Borrowed(std::str::from_utf8(b).ok()?)
    };
    let clean = text.chars().all(|c| {
        !c.is_ascii_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c' | '\x1b' | '\x7f')
    });
    clean.then_some(text)
}

fn utf16(b: &[u8], unit: fn([u8; 2]) -> u16) -> Option<String> {
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = b.chunks_exact(2).map(|c| unit([c[0], c[1]])).collect();
    String::from_utf16(&units).ok()
}

/// Tags whose presence at the start of a document makes browsers treat it as HTML (the
/// WHATWG MIME sniffing list).
const HTML_TAGS: &[&str] = &[
    "!doctype html",
    "html",
    "head",
    "script",
    "iframe",
    "h1",
    "div",
    "font",
    "table",
    "a",
    "style",
    "title",
    "b",
    "body",
    "br",
    "p",
];

fn text_kind(text: &str) -> FileKind {
    let t = text.trim_start();
    // RTF is a document format that embeds objects, not plain text
    if t.starts_with("{\\rtf") {
        return FileKind::Unknown;
    }
    if (t.starts_with('{') || t.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
    {
        return FileKind::Json;
    }
    if !t.starts_with('<') {
        return FileKind::Text;
    }
    if html_start(t) {
        return FileKind::Html;
    }
    let after_prolog = skip_prolog(t);
    if let Some(rest) = after_prolog {
        if html_start(rest) {
            return FileKind::Html;
        }
        if let Some(name) = element_name(rest) {
            let local = name.rsplit(':').next().unwrap_or(name);
            if local.eq_ignore_ascii_case("svg") {
                return FileKind::Svg;
            }
            if local.eq_ignore_ascii_case("html") {
                return FileKind::Html;
            }
            return FileKind::Xml;
        }
    }
    if t.starts_with("<?xml") {
        return FileKind::Xml;
    }
    FileKind::Text
}

fn html_start(t: &str) -> bool {
    let Some(rest) = t.strip_prefix('<') else {
        return false;
    };
    HTML_TAGS.iter().any(|tag| {
        rest.len() > tag.len()
            && rest.as_bytes()[..tag.len()].eq_ignore_ascii_case(tag.as_bytes())
            && matches!(
                rest.as_bytes()[tag.len()],
                b' ' | b'>' | b'\t' | b'\n' | b'\r' | b'/'
            )
    })
}

/// Skips an XML declaration, processing instructions, comments, a doctype and whitespace;
/// returns the rest from the root element's `<`.
fn skip_prolog(mut t: &str) -> Option<&str> {
    loop {
        t = t.trim_start();
        if let Some(rest) = t.strip_prefix("<?") {
            t = &rest[rest.find("?>")? + 2..];
        } else if let Some(rest) = t.strip_prefix("<!--") {
            t = &rest[rest.find("-->")? + 3..];
        } else if t.len() >= 9 && t[..9].eq_ignore_ascii_case("<!doctype") {
            if html_start(t) {
                return Some(t);
            }
            t = skip_doctype(&t[9..])?;
        } else {
            return Some(t);
        }
    }
}

/// Skips a doctype body (after `<!DOCTYPE`), including an internal subset in `[...]`.
fn skip_doctype(t: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (i, c) in t.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '>' if depth == 0 => return Some(&t[i + 1..]),
            _ => {}
        }
    }
    None
}

fn element_name(t: &str) -> Option<&str> {
    let rest = t.strip_prefix('<')?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    let name = &rest[..end];
    let first = name.chars().next()?;
    (first.is_alphabetic() || first == '_').then_some(name)
}

#[cfg(test)]
mod tests;
