//! Segment files: `DIR/audit-<first seq, 20 digits>.log`, one record per line.
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use super::AuditError;

/// The file name of the segment whose first record has `seq`.
pub fn name(first_seq: u64) -> String {
    format!("audit-{first_seq:020}.log")
}

/// The first seq a segment file name announces, if it is one.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment file in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub first_seq: u64,
    pub name: String,
    pub path: PathBuf,
}

/// The segment files of `dir`, oldest first. Other files are ignored.
pub fn list(dir: &Path) -> Result<Vec<SegmentFile>, AuditError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| AuditError::io(format!("reading {}", dir.display()), e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| AuditError::io(format!("reading {}", dir.display()), e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(first_seq) = parse_name(&name) {
            out.push(SegmentFile {
                first_seq,
                path: e.path(),
                name,
            });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// The last complete line of a file (without its newline) and the length of the file up to
/// and including that line's newline (bytes after it are a torn tail). `None` if no line.
pub fn last_line(path: &Path) -> Result<(Option<String>, u64), AuditError> {
    let io = |e| AuditError::io(format!("reading {}", path.display()), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut end = len;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = 64 * 1024u64;
    // Read backwards until the chunk holds the end of the last complete line and the start of
    // that line.
    loop {
        let start = len.saturating_sub(chunk);
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        buf.clear();
        (&mut f)
            .take(len - start)
            .read_to_end(&mut buf)
            .map_err(io)?;
        let last_nl = buf.iter().rposition(|&b| b == b'\n');
        match last_nl {
            None if start == 0 => return Ok((None, 0)),
            None => {}
            Some(nl) => {
                end = start + nl as u64 + 1;
                let before = &buf[..nl];
                match before.iter().rposition(|&b| b == b'\n') {
                    Some(p) => {
                        let line = String::from_utf8_lossy(&before[p + 1..]).into_owned();
                        return Ok((Some(line), end));
                    }
                    None if start == 0 => {
                        return Ok((Some(String::from_utf8_lossy(before).into_owned()), end));
                    }
                    None => {}
                }
            }
        }
        if chunk >= len {
            return Ok((None, end.min(len)));
        }
        chunk *= 4;
    }
}

/// One line of a segment as read (not verified).
#[derive(Debug, Clone)]
pub struct RawLine {
    pub segment: String,
    /// 1-based line number in the segment.
    pub line: usize,
    pub text: String,
    /// Whether the line ended with a newline (the last line of a torn file does not).
    pub complete: bool,
}

/// Reads the lines of one segment.
pub fn read_segment(s: &SegmentFile) -> Result<Vec<RawLine>, AuditError> {
    let bytes = std::fs::read(&s.path)
        .map_err(|e| AuditError::io(format!("reading {}", s.path.display()), e))?;
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let (line, complete, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], true, &rest[i + 1..]),
            None => (rest, false, &rest[rest.len()..]),
        };
        out.push(RawLine {
            segment: s.name.clone(),
            line: n,
            text: String::from_utf8_lossy(line).into_owned(),
            complete,
        });
        rest = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(name(42), "audit-00000000000000000042.log");
        assert_eq!(parse_name(&name(42)), Some(42));
        assert_eq!(parse_name("audit-42.log"), None);
        assert_eq!(parse_name("audit-0000000000000000004x.log"), None);
    }

    #[test]
    fn last_line_finds_the_last_complete_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "a\nbb\nccc").unwrap();
        assert_eq!(last_line(&p).unwrap(), (Some("bb".into()), 5));
        std::fs::write(&p, "a\nbb\n").unwrap();
        assert_eq!(last_line(&p).unwrap(), (Some("bb".into()), 5));
        std::fs::write(&p, "only").unwrap();
        assert_eq!(last_line(&p).unwrap(), (None, 0));
        let long = "x".repeat(200_000);
        std::fs::write(&p, format!("{long}\n{long}\n")).unwrap();
        assert_eq!(
            last_line(&p).unwrap(),
            (Some(long.clone()), 2 * long.len() as u64 + 2)
        );
    }
}
