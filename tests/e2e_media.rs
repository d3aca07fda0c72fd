//! End-to-end (real Synapse): files crossing the guard are inspected before a byte reaches the
//! other side.
//!
//! One lab (labels on: alice's events carry a releasable DEU-VS label, see `tests/e2e_labels.rs`),
//! alice@hs1 and bob@hs2 in one room. Every scenario: the uploader uploads through the client
//! API, sends an `m.room.message` whose `url` (or `file.url`) is the `mxc://` URI, the other
//! side waits until it sees the event and then downloads through its own homeserver
//! (`/_matrix/client/v1/media/download/…`): the homeserver fetches the file over federation
//! through the guard. alice's files flow outbound (hs2 → guard inbound listener → hs1), bob's
//! inbound (hs1 → guard outbound → hs2).
//!
//! Groups (each runs in its own task; a failing group does not stop the others, the test fails
//! at the end naming every failed group):
//! - `clean_files_arrive`: a PNG and a PDF arrive byte-identical, both directions;
//! - `marked_files_are_refused`: a text file marked `GEHEIM`, a docx with a valid IBAN, a PDF
//!   marked `GEHEIM` (outbound) and a docx marked `GEHEIM` (inbound) are refused, the decision
//!   record names the DLP rule;
//! - `eicar_is_refused`: both directions, the record names a `yara:` rule;
//! - `zip_bomb_is_refused_with_bounded_memory`: 1 GiB of zeros in one deflated entry (about
//!   1 MB) is refused and the guard's peak RSS (`VmHWM`) stays ≤ 256 MiB;
//! - `executable_named_png_is_refused`: a PE file uploaded as `image/png`, `photo.png`;
//! - `thumbnails_are_inspected`: a thumbnail of a clean PNG arrives (an image); hs2 makes it
//!   from the original, which it fetches over federation with the *download* endpoint (Synapse
//!   never asks a remote for its thumbnails), so the guard's decision record is for that
//!   download. A PNG with `GEHEIM` in a `tEXt` chunk: neither its thumbnail nor its download
//!   arrives;
//! - `encrypted_attachments_follow_their_event`: random bytes behind an encrypted attachment
//!   (`file` with key, iv, hashes) arrive when the referencing event carries a releasable label,
//!   not when it carries none (the event arrives redacted);
//! - `unreferenced_media_is_refused`: an upload no event references.
//!
//! Decision records are read from the guard's audit log (`lab.json` `guard.audit_dir`):
//! `kind = "media"`, `data.media` = the mxc URI, `data.verdict`, `data.reason`, `data.rules`,
//! `data.sha256`, `data.events`, `data.direction`.
//!
//! Environment:
//! - `GRENZWACHT_E2E_MEDIA_UNSCANNED=1`: checks the harness alone — the lab's guard runs with
//!   `[media] allow_unscanned = true`, so every file must arrive byte-identical and no decision
//!   record is expected;
//! - `GRENZWACHT_E2E_MEDIA_GROUPS=a,b`: runs only the named groups.
#[path = "common/lab.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use grenzwacht::lab::client::{wait_until, MediaResponse, Session};
use grenzwacht::lab::guard::LAB_DEU_POLICY;
use grenzwacht::lab::LabInfo;
use serde_json::{json, Value};
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(60);
/// The event content key of security labels (`[labels] event_key`).
const LABEL_KEY: &str = "de.grenzwacht.label";
/// The guard's peak RSS the zip bomb may cause.
const RSS_LIMIT_KB: u64 = 256 * 1024;

/// Generators of the sample files. Same names as `grenzwacht::media::samples`; switching to
/// those is one `use` line.
mod gen {
    use std::io::Write;

    fn crc32(parts: &[&[u8]]) -> u32 {
        let mut c = flate2::Crc::new();
        for p in parts {
            c.update(p);
        }
        c.sum()
    }

    fn chunk(out: &mut Vec<u8>, ty: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(ty);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc32(&[ty, data]).to_be_bytes());
    }

    /// A 64×64 RGB PNG (a gradient; `seed` varies it), with a `tEXt` `Comment` chunk holding
    /// `text` if given.
    pub fn png(seed: u8, text: Option<&str>) -> Vec<u8> {
        let (w, h) = (64u32, 64u32);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        if let Some(t) = text {
            let mut d = b"Comment\0".to_vec();
            d.extend_from_slice(t.as_bytes());
            chunk(&mut out, b"tEXt", &d);
        }
        let mut raw = Vec::new();
        for y in 0..h {
            raw.push(0);
            for x in 0..w {
                raw.extend_from_slice(&[
                    (x * 4) as u8 ^ seed,
                    (y * 4) as u8,
                    ((x + y) * 2) as u8 ^ seed,
                ]);
            }
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw).unwrap();
        chunk(&mut out, b"IDAT", &z.finish().unwrap());
        chunk(&mut out, b"IEND", b"");
        out
    }

    /// A one-page PDF 1.4 showing `text` (uncompressed content stream, correct xref).
    pub fn pdf(text: &str) -> Vec<u8> {
        let escaped: String = text
            .chars()
            .flat_map(|c| match c {
                '(' | ')' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let content = format!("BT /F1 18 Tf 72 700 Td ({escaped}) Tj ET\n");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
             /Resources << /Font << /F1 5 0 R >> >> >>"
                .to_string(),
            format!(
                "<< /Length {} >>\nstream\n{content}endstream",
                content.len()
            ),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
        ];
        let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    /// A minimal Word document (OOXML) with one paragraph `text`.
    pub fn docx(text: &str) -> Vec<u8> {
        let escaped = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let types = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
        let rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>{escaped}</w:t></w:r></w:p></w:body></w:document>"#
        );
        zip_of(&[
            ("[Content_Types].xml", types.as_bytes()),
            ("_rels/.rels", rels.as_bytes()),
            ("word/document.xml", doc.as_bytes()),
        ])
    }

    /// The EICAR test file, put together from two halves at run time.
    pub fn eicar() -> Vec<u8> {
        let (a, b) = (
            "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
            "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
        );
        format!("{a}{b}").into_bytes()
    }

    /// A minimal Windows PE header (i386, no sections): `MZ`, DOS stub, `PE\0\0`, COFF header.
    pub fn pe_exe() -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[0..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        let stub = b"This program cannot be run in DOS mode.\r\r\n$";
        b[0x4e..0x4e + stub.len()].copy_from_slice(stub);
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        b[0x84..0x86].copy_from_slice(&0x014cu16.to_le_bytes()); // machine: i386
        b[0x94..0x96].copy_from_slice(&0x00e0u16.to_le_bytes()); // optional header size
        b[0x96..0x98].copy_from_slice(&0x0102u16.to_le_bytes()); // executable, 32-bit
        b[0x98..0x9a].copy_from_slice(&0x010bu16.to_le_bytes()); // PE32 magic
        b
    }

    /// A zip with one deflated entry of `uncompressed` zero bytes (1 GiB: about 1 MB).
    pub fn zip_bomb_ratio(uncompressed: usize) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("zeros.bin", opts).unwrap();
        let block = vec![0u8; 1 << 20];
        let mut left = uncompressed;
        while left > 0 {
            let n = left.min(block.len());
            z.write_all(&block[..n]).unwrap();
            left -= n;
        }
        z.finish().unwrap().into_inner()
    }
}

/// Who uploads (the other one downloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// alice@hs1: the bytes flow outbound.
    Alice,
    /// bob@hs2: the bytes flow inbound.
    Bob,
}

impl Side {
    fn direction(self) -> &'static str {
        match self {
            Side::Alice => "outbound",
            Side::Bob => "inbound",
        }
    }
}

/// What the downloader must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// The file, byte-identical; a `release` record.
    Arrives,
    /// An error, none of the file's bytes; a `refuse` record with this `reason` and, if
    /// given, a rule starting with this prefix.
    Refused {
        reason: &'static str,
        rule: Option<&'static str>,
    },
}

struct Ctx {
    info: LabInfo,
    alice: Session,
    bob: Session,
    room: String,
    /// `GRENZWACHT_E2E_MEDIA_UNSCANNED`: the guard lets everything cross uninspected.
    unscanned: bool,
}

/// One file shared in the room.
struct Shared {
    mxc: String,
    event_id: String,
    bytes: Vec<u8>,
    from: Side,
}

fn deu_releasable() -> Value {
    json!({"policy": LAB_DEU_POLICY, "classification": 2,
           "categories": [{"tag_set": format!("{LAB_DEU_POLICY}.1"), "type": "permissive", "lacv": 276}]})
}

impl Ctx {
    fn sides(&self, from: Side) -> (&Session, &Session) {
        match from {
            Side::Alice => (&self.alice, &self.bob),
            Side::Bob => (&self.bob, &self.alice),
        }
    }

    /// Uploads `bytes`; returns the mxc URI.
    async fn upload(&self, from: Side, bytes: &[u8], content_type: &str, name: &str) -> String {
        let (up, _) = self.sides(from);
        up.upload(bytes, content_type, name)
            .await
            .unwrap_or_else(|e| panic!("upload {name}: {e}"))
    }

    /// Sends `content` (alice's with a releasable label unless `label` is false) and waits until
    /// the other side sees the event; returns the event id and the content as seen there.
    async fn send_and_wait(&self, from: Side, mut content: Value, label: bool) -> (String, Value) {
        let (up, down) = self.sides(from);
        if from == Side::Alice && label {
            content[LABEL_KEY] = deu_releasable();
        }
        let event_id = up
            .send_event(&self.room, "m.room.message", &content)
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        let seen = common::wait_event(down, &self.room, &event_id, WAIT).await;
        (event_id, seen["content"].clone())
    }

    /// Uploads `bytes` and shares it in an `m.room.message` of `msgtype` with `url`.
    async fn share(
        &self,
        from: Side,
        bytes: Vec<u8>,
        content_type: &str,
        name: &str,
        msgtype: &str,
    ) -> Shared {
        let mxc = self.upload(from, &bytes, content_type, name).await;
        let content = json!({
            "msgtype": msgtype, "body": name, "url": mxc,
            "info": {"mimetype": content_type, "size": bytes.len()}
        });
        let (event_id, seen) = self.send_and_wait(from, content, true).await;
        assert_eq!(
            seen["url"],
            mxc.as_str(),
            "{name}: the event arrives intact"
        );
        Shared {
            mxc,
            event_id,
            bytes,
            from,
        }
    }

    /// The downloader fetches the file through its homeserver.
    async fn download(&self, s: &Shared) -> MediaResponse {
        let (_, down) = self.sides(s.from);
        down.download(&s.mxc)
            .await
            .unwrap_or_else(|e| panic!("download {}: {e}", s.mxc))
    }

    /// Downloads and checks the answer and the guard's decision record against `want`.
    async fn check(&self, s: &Shared, want: Want, what: &str) {
        let got = self.download(s).await;
        self.check_answer(s, &got, want, what);
        self.check_record(s, want, what).await;
    }

    fn check_answer(&self, s: &Shared, got: &MediaResponse, want: Want, what: &str) {
        match (want, self.unscanned) {
            (Want::Arrives, _) | (_, true) => {
                assert_eq!(
                    got.status,
                    200,
                    "{what} ({}): must arrive: {} {:?}",
                    s.mxc,
                    got.status,
                    String::from_utf8_lossy(&got.body[..got.body.len().min(300)])
                );
                assert!(
                    got.body[..] == s.bytes[..],
                    "{what}: must arrive byte-identical ({} bytes sent, {} received)",
                    s.bytes.len(),
                    got.body.len()
                );
            }
            (Want::Refused { .. }, false) => {
                assert!(
                    !(200..300).contains(&got.status),
                    "{what} ({}): must be refused, got {} with {} bytes",
                    s.mxc,
                    got.status,
                    got.body.len()
                );
                let probe = &s.bytes[..s.bytes.len().min(64)];
                assert!(
                    probe.len() < 16 || !got.body.windows(probe.len()).any(|w| w == probe),
                    "{what}: the refusal carries none of the file's bytes"
                );
            }
        }
    }

    /// The guard's `media` decision records of `mxc` (waits until one exists).
    async fn records(&self, mxc: &str, what: &str) -> Vec<Value> {
        let dir = self.info.guard.audit_dir.clone();
        let mxc = mxc.to_string();
        wait_until(&format!("a media decision record of {what}"), WAIT, || {
            let (dir, mxc) = (dir.clone(), mxc.clone());
            async move {
                let filter = grenzwacht::audit::query::Filter {
                    limit: 1_000_000,
                    ..Default::default()
                };
                let all = grenzwacht::audit::query::search(&dir, &filter).unwrap_or_default();
                let mine: Vec<Value> = all
                    .into_iter()
                    .filter(|r| r["kind"] == "media" && r["data"]["media"] == mxc.as_str())
                    .collect();
                Ok((!mine.is_empty()).then_some(mine))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    async fn check_record(&self, s: &Shared, want: Want, what: &str) {
        if self.unscanned {
            return;
        }
        let records = self.records(&s.mxc, what).await;
        let data: Vec<&Value> = records.iter().map(|r| &r["data"]).collect();
        match want {
            Want::Arrives => {
                let sha = hex(&sha2::Sha256::digest(&s.bytes));
                let d = data
                    .iter()
                    .find(|d| d["verdict"] == "release")
                    .unwrap_or_else(|| panic!("{what}: no release record: {data:?}"));
                assert_eq!(d["sha256"], sha.as_str(), "{what}: {d}");
                assert_eq!(d["direction"], s.from.direction(), "{what}: {d}");
                assert!(
                    d["events"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|e| e == s.event_id.as_str())),
                    "{what}: the record names the referencing event {}: {d}",
                    s.event_id
                );
                assert!(
                    !data.iter().any(|d| d["verdict"] == "refuse"),
                    "{what}: also refused: {data:?}"
                );
            }
            Want::Refused { reason, rule } => {
                let d = data
                    .iter()
                    .find(|d| d["verdict"] == "refuse")
                    .unwrap_or_else(|| panic!("{what}: no refuse record: {data:?}"));
                assert_eq!(d["reason"], reason, "{what}: {d}");
                assert_eq!(d["direction"], s.from.direction(), "{what}: {d}");
                if let Some(prefix) = rule {
                    let rules: Vec<&str> = d["rules"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|r| r["rule"].as_str()).collect())
                        .unwrap_or_default();
                    assert!(
                        rules.iter().any(|r| r.starts_with(prefix)),
                        "{what}: a rule starting with {prefix:?} is named: {d}"
                    );
                }
                assert!(
                    !data.iter().any(|d| d["verdict"] == "release"),
                    "{what}: also released: {data:?}"
                );
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn clean_files_arrive(ctx: Arc<Ctx>) {
    for from in [Side::Alice, Side::Bob] {
        let seed = if from == Side::Alice { 1 } else { 2 };
        let png = ctx
            .share(
                from,
                gen::png(seed, None),
                "image/png",
                "lage.png",
                "m.image",
            )
            .await;
        ctx.check(&png, Want::Arrives, &format!("PNG from {from:?}"))
            .await;
        let pdf = ctx
            .share(
                from,
                gen::pdf(&format!("Lagebericht {seed}: alles ruhig")),
                "application/pdf",
                "bericht.pdf",
                "m.file",
            )
            .await;
        ctx.check(&pdf, Want::Arrives, &format!("PDF from {from:?}"))
            .await;
    }
}

async fn marked_files_are_refused(ctx: Arc<Ctx>) {
    let geheim = Want::Refused {
        reason: "dlp",
        rule: Some("dlp:marking.geheim"),
    };
    let iban = Want::Refused {
        reason: "dlp",
        rule: Some("dlp:pii.iban"),
    };
    let cases = [
        (
            Side::Alice,
            b"Lagebericht\nEinstufung: GEHEIM\nInhalt folgt.\n".to_vec(),
            "text/plain",
            "notiz.txt",
            geheim,
            "text file marked GEHEIM",
        ),
        (
            Side::Alice,
            gen::docx("Bitte überweise an DE89 3704 0044 0532 0130 00, danke!"),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "rechnung.docx",
            iban,
            "docx with an IBAN",
        ),
        (
            Side::Alice,
            gen::pdf("Einstufung: GEHEIM"),
            "application/pdf",
            "vermerk.pdf",
            geheim,
            "PDF marked GEHEIM",
        ),
        (
            Side::Bob,
            gen::docx("Einstufung: GEHEIM"),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "memo.docx",
            geheim,
            "docx marked GEHEIM (inbound)",
        ),
    ];
    for (from, bytes, ct, name, want, what) in cases {
        let s = ctx.share(from, bytes, ct, name, "m.file").await;
        ctx.check(&s, want, what).await;
    }
}

async fn eicar_is_refused(ctx: Arc<Ctx>) {
    for from in [Side::Bob, Side::Alice] {
        let s = ctx
            .share(from, gen::eicar(), "text/plain", "test.txt", "m.file")
            .await;
        ctx.check(
            &s,
            Want::Refused {
                reason: "yara",
                rule: Some("yara:"),
            },
            &format!("EICAR from {from:?}"),
        )
        .await;
    }
}

/// `(VmRSS, VmHWM)` of `pid` in kB.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn guard_pid(info: &LabInfo) -> u32 {
    grenzwacht::lab::process::PidFile::load(&info.dir)
        .expect("pids.json")
        .expect("a running lab")
        .processes
        .iter()
        .find(|r| r.name == "guard")
        .expect("the guard in pids.json")
        .pid
}

async fn zip_bomb_is_refused_with_bounded_memory(ctx: Arc<Ctx>) {
    let bomb = tokio::task::spawn_blocking(|| gen::zip_bomb_ratio(1 << 30))
        .await
        .unwrap();
    eprintln!("zip bomb: 1 GiB of zeros in {} bytes", bomb.len());
    let pid = guard_pid(&ctx.info);
    let (rss0, hwm0) = rss_kb(pid);
    let s = ctx
        .share(Side::Bob, bomb, "application/zip", "daten.zip", "m.file")
        .await;
    ctx.check(
        &s,
        Want::Refused {
            reason: "archive_limit",
            rule: None,
        },
        "zip bomb",
    )
    .await;
    let (rss1, hwm1) = rss_kb(pid);
    eprintln!(
        "guard memory (kB): before VmRSS {rss0} VmHWM {hwm0}; after VmRSS {rss1} VmHWM {hwm1}"
    );
    assert!(
        hwm1 <= RSS_LIMIT_KB,
        "the guard's peak RSS {hwm1} kB exceeds {RSS_LIMIT_KB} kB"
    );
}

async fn executable_named_png_is_refused(ctx: Arc<Ctx>) {
    for from in [Side::Bob, Side::Alice] {
        let s = ctx
            .share(from, gen::pe_exe(), "image/png", "photo.png", "m.image")
            .await;
        ctx.check(
            &s,
            Want::Refused {
                reason: "type_not_allowed",
                rule: None,
            },
            &format!("PE as photo.png from {from:?}"),
        )
        .await;
    }
}

async fn thumbnails_are_inspected(ctx: Arc<Ctx>) {
    // A clean PNG: its thumbnail arrives (an image made by hs2 from the original it fetched).
    let clean = ctx
        .share(
            Side::Alice,
            gen::png(3, None),
            "image/png",
            "karte.png",
            "m.image",
        )
        .await;
    let t = ctx
        .bob
        .thumbnail(&clean.mxc, 32, 32, "scale")
        .await
        .expect("thumbnail request");
    assert_eq!(
        t.status,
        200,
        "thumbnail of a clean PNG: {:?}",
        String::from_utf8_lossy(&t.body[..t.body.len().min(300)])
    );
    let ct = t.content_type.clone().unwrap_or_default();
    assert!(ct.starts_with("image/"), "thumbnail content type {ct:?}");
    assert!(
        t.body.starts_with(b"\x89PNG") || t.body.starts_with(b"\xff\xd8\xff"),
        "thumbnail is a PNG or JPEG"
    );
    // The original crossed the guard for it, with a decision.
    ctx.check_record(&clean, Want::Arrives, "original behind a thumbnail")
        .await;

    // GEHEIM in a tEXt chunk: the thumbnail request (hs2 must fetch the original) and the
    // download are refused.
    let marked = ctx
        .share(
            Side::Alice,
            gen::png(4, Some("Einstufung: GEHEIM")),
            "image/png",
            "skizze.png",
            "m.image",
        )
        .await;
    let want = Want::Refused {
        reason: "dlp",
        rule: Some("dlp:marking.geheim"),
    };
    let t = ctx
        .bob
        .thumbnail(&marked.mxc, 32, 32, "scale")
        .await
        .expect("thumbnail request");
    if ctx.unscanned {
        assert_eq!(t.status, 200, "thumbnail crosses uninspected");
    } else {
        assert!(
            !(200..300).contains(&t.status),
            "thumbnail of a PNG whose metadata is marked GEHEIM: {}",
            t.status
        );
    }
    ctx.check(&marked, want, "PNG with GEHEIM in a tEXt chunk")
        .await;
}

async fn encrypted_attachments_follow_their_event(ctx: Arc<Ctx>) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for labeled in [true, false] {
        // AES-CTR ciphertext is indistinguishable from random bytes for the guard.
        let bytes: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        let mxc = ctx
            .upload(
                Side::Alice,
                &bytes,
                "application/octet-stream",
                "anhang.bin",
            )
            .await;
        let key: [u8; 32] = rand::random();
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&rand::random::<[u8; 8]>());
        let content = json!({
            "msgtype": "m.file", "body": "anhang.bin",
            "info": {"mimetype": "application/octet-stream", "size": bytes.len()},
            "file": {
                "url": mxc, "v": "v2", "iv": b64.encode(iv),
                "key": {"kty": "oct", "key_ops": ["encrypt", "decrypt"], "alg": "A256CTR",
                        "k": b64url.encode(key), "ext": true},
                "hashes": {"sha256": b64.encode(sha2::Sha256::digest(&bytes))}
            }
        });
        let (event_id, seen) = ctx.send_and_wait(Side::Alice, content, labeled).await;
        let s = Shared {
            mxc,
            event_id,
            bytes,
            from: Side::Alice,
        };
        if labeled {
            assert_eq!(
                seen["file"]["url"],
                s.mxc.as_str(),
                "labeled attachment event arrives intact: {seen}"
            );
            ctx.check(&s, Want::Arrives, "encrypted attachment, releasable label")
                .await;
        } else {
            assert_eq!(
                seen,
                json!({}),
                "unlabeled encrypted attachment event arrives redacted"
            );
            ctx.check(
                &s,
                Want::Refused {
                    reason: "event_not_released",
                    rule: None,
                },
                "encrypted attachment of an unlabeled event",
            )
            .await;
        }
    }
}

async fn unreferenced_media_is_refused(ctx: Arc<Ctx>) {
    for from in [Side::Alice, Side::Bob] {
        let bytes = gen::png(5 + from as u8, None);
        let mxc = ctx.upload(from, &bytes, "image/png", "lose.png").await;
        let s = Shared {
            mxc,
            event_id: String::new(),
            bytes,
            from,
        };
        ctx.check(
            &s,
            Want::Refused {
                reason: "unreferenced",
                rule: None,
            },
            &format!("upload no event references, from {from:?}"),
        )
        .await;
    }
}

macro_rules! run_groups {
    ($ctx:expr, $($group:ident),* $(,)?) => {{
        let only: Option<Vec<String>> = std::env::var("GRENZWACHT_E2E_MEDIA_GROUPS")
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
        let mut failed: Vec<&str> = Vec::new();
        $(
            let name = stringify!($group);
            if only.as_ref().is_none_or(|o| o.iter().any(|g| g == name)) {
                eprintln!("--- media group {name}");
                if tokio::spawn($group($ctx.clone())).await.is_err() {
                    failed.push(name);
                }
            }
        )*
        failed
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_crosses_only_after_inspection() {
    let unscanned = std::env::var("GRENZWACHT_E2E_MEDIA_UNSCANNED").is_ok_and(|v| v == "1");
    let lab = common::e2e_lab_with("media", |o| {
        o.labels = true;
        o.media_allow_unscanned = unscanned;
    })
    .await;
    // The lab stops when `lab` (its remaining fields) goes out of scope.
    let common::E2eLab {
        info, alice, bob, ..
    } = lab;
    let room = alice
        .create_room(&json!({"preset": "private_chat", "name": "Dateien"}))
        .await
        .expect("create room");
    alice.invite(&room, &bob.user_id).await.expect("invite");
    bob.wait_for_invite(&room, WAIT).await.expect("invite seen");
    bob.join(&room, &[&info.hs1().server_name])
        .await
        .expect("bob joins");
    alice
        .wait_for_member(&room, &bob.user_id, WAIT)
        .await
        .expect("alice sees bob");
    let ctx = Arc::new(Ctx {
        info,
        alice,
        bob,
        room,
        unscanned,
    });
    let failed = run_groups!(
        ctx,
        clean_files_arrive,
        marked_files_are_refused,
        eicar_is_refused,
        zip_bomb_is_refused_with_bounded_memory,
        executable_named_png_is_refused,
        thumbnails_are_inspected,
        encrypted_attachments_follow_their_event,
        unreferenced_media_is_refused,
    );
    assert!(failed.is_empty(), "failed media groups: {failed:?}");
}
