use proptest::prelude::*;

use super::*;

const B: &str = "6e0b3f1c2d4a49e8a7f05b6c9d1e2f30";

/// An answer in Synapse's exact layout (`MultipartFileConsumer`).
fn synapse_answer(json: &str, ct: &str, disp: &str, file: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(format!("\r\n--{B}\r\nContent-Type: application/json\r\n").as_bytes());
    v.extend_from_slice(format!("\r\n{json}").as_bytes());
    v.extend_from_slice(format!("\r\n--{B}\r\n").as_bytes());
    v.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
    v.extend_from_slice(format!("Content-Disposition: {disp}\r\n\r\n").as_bytes());
    v.extend_from_slice(file);
    v.extend_from_slice(format!("\r\n--{B}--\r\n").as_bytes());
    v
}

fn ct() -> String {
    format!("multipart/mixed; boundary={B}")
}

fn err(body: &[u8]) -> MultipartError {
    parse(&ct(), body).expect_err("must be refused")
}

#[test]
fn parses_synapses_layout() {
    let file = b"\x89PNG\r\n\x1a\n\r\n--not-the-boundary\r\n";
    let body = synapse_answer("{}", "image/png", "inline; filename=cat.png", file);
    let a = parse(&ct(), &body).unwrap();
    assert_eq!(a.metadata, b"{}");
    assert_eq!(
        a.content,
        Content::Bytes {
            content_type: Some("image/png".into()),
            disposition: Some("inline; filename=cat.png".into()),
            bytes: file,
        }
    );
}

/// Bytes written by Synapse 1.163.2's `MultipartFileConsumer` (captured from the lab's venv:
/// `{}` metadata, `image/png`, `inline; filename=cat.png`, an 8-byte PNG signature).
const SYNAPSE_1_163_2: &[u8] = b"\r\n--54a7a7563c904858806964d59e782fc1\r\nContent-Type: application/json\r\n\r\n{}\r\n--54a7a7563c904858806964d59e782fc1\r\nContent-Type: image/png\r\nContent-Disposition: inline; filename=cat.png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--54a7a7563c904858806964d59e782fc1--\r\n";

#[test]
fn parses_bytes_captured_from_synapse() {
    let a = parse(
        "multipart/mixed; boundary=54a7a7563c904858806964d59e782fc1",
        SYNAPSE_1_163_2,
    )
    .unwrap();
    assert_eq!(a.metadata, b"{}");
    assert_eq!(
        a.content,
        Content::Bytes {
            content_type: Some("image/png".into()),
            disposition: Some("inline; filename=cat.png".into()),
            bytes: b"\x89PNG\r\n\x1a\n",
        }
    );
    // build writes the same layout: equal after swapping the boundary.
    let (ctype, built) = build(
        b"{}",
        "image/png",
        Some("inline; filename=cat.png"),
        b"\x89PNG\r\n\x1a\n",
    );
    let ours = ctype.strip_prefix("multipart/mixed; boundary=").unwrap();
    let swapped = String::from_utf8_lossy(&built).replace(ours, "54a7a7563c904858806964d59e782fc1");
    assert_eq!(swapped, String::from_utf8_lossy(SYNAPSE_1_163_2));
}

#[test]
fn parses_gos_layout_without_leading_crlf_and_with_location() {
    let body = format!(
        "--{B}\r\nContent-Type: application/json; charset=utf-8\r\n\r\n{{\"a\":1}}\r\n--{B}\r\n\
         Location: https://media.example.org/f/abc?sig=1\r\n\r\n\r\n--{B}--"
    );
    let a = parse(
        &format!("Multipart/Mixed;boundary=\"{B}\""),
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(a.metadata, br#"{"a":1}"#);
    assert_eq!(
        a.content,
        Content::Location("https://media.example.org/f/abc?sig=1".into())
    );
}

/// Ruma's writer (`ruma-federation-api` 0.16 `try_into_buf`, the conduwuit family): lower-case
/// header names, and the body ends with `CRLF--boundary` (no closing `--`).
#[test]
fn parses_rumas_layout_without_the_closing_dashes() {
    let r = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy";
    let ctype = format!("multipart/mixed; boundary={r}");
    let file = format!(
        "\r\n--{r}\r\ncontent-type: application/json\r\n\r\n{{}}\r\n--{r}\r\n\
         content-type: text/plain\r\ncontent-disposition: attachment; filename=\"a b.txt\"\r\n\r\nhi\r\n--{r}"
    );
    let a = parse(&ctype, file.as_bytes()).unwrap();
    assert_eq!(
        a.content,
        Content::Bytes {
            content_type: Some("text/plain".into()),
            disposition: Some("attachment; filename=\"a b.txt\"".into()),
            bytes: b"hi"
        }
    );
    let location = format!(
        "\r\n--{r}\r\ncontent-type: application/json\r\n\r\n{{}}\r\n--{r}\r\n\
         location: https://cdn.example.org/x\r\n\r\n\r\n--{r}"
    );
    assert_eq!(
        parse(&ctype, location.as_bytes()).unwrap().content,
        Content::Location("https://cdn.example.org/x".into())
    );
    // Ending right after the first part is refused (the end is accepted only after the
    // second), and junk after the last delimiter is still junk.
    let one = format!("\r\n--{r}\r\ncontent-type: application/json\r\n\r\n{{}}\r\n--{r}");
    assert!(matches!(
        parse(&ctype, one.as_bytes()),
        Err(MultipartError::Framing(_))
    ));
    let junk = format!("{file}x");
    assert!(matches!(
        parse(&ctype, junk.as_bytes()),
        Err(MultipartError::Framing(_))
    ));
}

#[test]
fn header_names_are_case_insensitive_and_values_trimmed() {
    let body = format!(
        "--{B}\r\ncontent-TYPE:application/json\r\n\r\n{{}}\r\n--{B}\r\n\
         CONTENT-type:  text/plain \r\n\r\nhello\r\n--{B}--\r\n\r\n \t"
    );
    let a = parse(&ct(), body.as_bytes()).unwrap();
    match a.content {
        Content::Bytes {
            content_type,
            disposition,
            bytes,
        } => {
            assert_eq!(content_type.as_deref(), Some("text/plain"));
            assert_eq!(disposition, None);
            assert_eq!(bytes, b"hello");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_file_and_file_without_headers_parse() {
    let body =
        format!("--{B}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{B}\r\n\r\n\r\n--{B}--");
    let a = parse(&ct(), body.as_bytes()).unwrap();
    assert_eq!(
        a.content,
        Content::Bytes {
            content_type: None,
            disposition: None,
            bytes: b""
        }
    );
}

#[test]
fn build_round_trips_and_is_synapses_layout() {
    let meta = br#"{"k":"v"}"#;
    let (ctype, body) = build(
        meta,
        "application/pdf",
        Some("attachment; filename=a.pdf"),
        b"%PDF-1.7",
    );
    let boundary = ctype.strip_prefix("multipart/mixed; boundary=").unwrap();
    assert_eq!(boundary.len(), 32);
    assert!(body.starts_with(
        format!("\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n").as_bytes()
    ));
    assert!(body.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()));
    let a = parse(&ctype, &body).unwrap();
    assert_eq!(a.metadata, meta);
    assert_eq!(
        a.content,
        Content::Bytes {
            content_type: Some("application/pdf".into()),
            disposition: Some("attachment; filename=a.pdf".into()),
            bytes: b"%PDF-1.7"
        }
    );
    // Two builds use different boundaries.
    let (ctype2, _) = build(meta, "application/pdf", None, b"x");
    assert_ne!(ctype, ctype2);
}

#[test]
fn build_picks_a_boundary_not_in_the_file_and_strips_control_characters() {
    // The file contains delimiters of other boundaries; whatever is chosen must not occur.
    let (ctype, body) = build(
        b"{}",
        "text/plain\r\nX-Evil: 1",
        Some(" inline\n"),
        b"\r\n--abc--\r\n",
    );
    let boundary = ctype.strip_prefix("multipart/mixed; boundary=").unwrap();
    assert_eq!(memmem::find_iter(&body, boundary.as_bytes()).count(), 3);
    let a = parse(&ctype, &body).unwrap();
    assert_eq!(
        a.content,
        Content::Bytes {
            content_type: Some("text/plainX-Evil: 1".into()),
            disposition: Some("inline".into()),
            bytes: b"\r\n--abc--\r\n"
        }
    );
}

#[test]
fn three_parts_are_refused() {
    let mut body = synapse_answer("{}", "text/plain", "inline", b"a");
    body.truncate(body.len() - format!("\r\n--{B}--\r\n").len());
    body.extend_from_slice(
        format!("\r\n--{B}\r\nContent-Type: text/plain\r\n\r\nb\r\n--{B}--\r\n").as_bytes(),
    );
    assert_eq!(err(&body), MultipartError::PartCount("more than two parts"));
}

#[test]
fn one_part_and_no_part_are_refused() {
    let body = format!("--{B}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{B}--\r\n");
    assert_eq!(
        err(body.as_bytes()),
        MultipartError::PartCount("one part, not two")
    );
    // What Synapse sends for an empty file (no write() call): the close delimiter only.
    let body = format!("\r\n--{B}--\r\n");
    assert_eq!(err(body.as_bytes()), MultipartError::PartCount("no parts"));
}

#[test]
fn wrong_order_is_refused() {
    let body = format!(
        "--{B}\r\nContent-Type: image/png\r\n\r\n\x01\x02\r\n--{B}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{B}--\r\n"
    );
    assert!(matches!(err(body.as_bytes()), MultipartError::Header(_)));
}

#[test]
fn content_type_and_boundary_errors() {
    let body = synapse_answer("{}", "text/plain", "inline", b"a");
    for (value, want) in [
        ("multipart/form-data; boundary=x", "ct"),
        ("application/json", "ct"),
        ("multipart/mixed", "boundary"),
        ("multipart/mixed; charset=utf-8; boundary=x", "ct"),
        ("multipart/mixed; boundary=a; boundary=a", "boundary"),
        ("multipart/mixed; boundary=", "boundary"),
        ("multipart/mixed; boundary=\"\"", "boundary"),
        ("multipart/mixed; boundary=\"abc ", "ct"),
        ("multipart/mixed; boundary=\"abc \"", "boundary"),
        ("multipart/mixed; boundary=a:b", "boundary"),
        ("multipart/mixed; boundary=a\u{e9}", "boundary"),
        ("multipart/mixed; boundary=\"a\\b\"", "boundary"),
    ] {
        let e = parse(value, &body).expect_err(value);
        let ok = match want {
            "ct" => matches!(e, MultipartError::ContentType(_)),
            _ => matches!(e, MultipartError::Boundary(_)),
        };
        assert!(ok, "{value}: {e:?}");
    }
    let long = "a".repeat(71);
    assert_eq!(
        parse(&format!("multipart/mixed; boundary={long}"), &body),
        Err(MultipartError::Boundary("longer than 70 characters"))
    );
    // 70 is allowed, and so are quoted bchars with inner spaces.
    let b70 = "b".repeat(70);
    let body70 = format!(
        "--{b70}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{b70}\r\n\r\nx\r\n--{b70}--"
    );
    assert!(parse(
        &format!("multipart/mixed; boundary={b70}"),
        body70.as_bytes()
    )
    .is_ok());
    let q = "a b:c?=(d)";
    let bodyq =
        format!("--{q}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{q}\r\n\r\nx\r\n--{q}--");
    assert!(parse(
        &format!("multipart/mixed; boundary=\"{q}\""),
        bodyq.as_bytes()
    )
    .is_ok());
}

#[test]
fn the_boundary_of_the_header_must_be_the_one_used() {
    let body = synapse_answer("{}", "text/plain", "inline", b"a");
    assert!(matches!(
        parse("multipart/mixed; boundary=other", &body),
        Err(MultipartError::Framing(_))
    ));
}

#[test]
fn lf_only_line_endings_are_refused() {
    let body = synapse_answer("{}", "text/plain", "inline", b"a");
    let lf: Vec<u8> = String::from_utf8(body)
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    assert!(matches!(err(&lf), MultipartError::Framing(_)));
    // A bare LF inside a header block.
    let body = format!(
        "--{B}\r\nContent-Type: application/json\nX: y\r\n\r\n{{}}\r\n--{B}\r\n\r\nx\r\n--{B}--"
    );
    assert_eq!(
        err(body.as_bytes()),
        MultipartError::Header("a bare CR or LF")
    );
}

#[test]
fn metadata_must_be_a_strict_json_object() {
    for json in ["[]", "not json", "{\"a\":1,\"a\":2}", "", "{} x"] {
        let body = synapse_answer(json, "text/plain", "inline", b"a");
        assert!(
            matches!(err(&body), MultipartError::Metadata(_)),
            "{json:?}"
        );
    }
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_METADATA_BYTES));
    assert_eq!(
        err(&synapse_answer(&big, "text/plain", "inline", b"a")),
        MultipartError::MetadataTooLarge
    );
    let body =
        format!("--{B}\r\nContent-Type: text/plain\r\n\r\n{{}}\r\n--{B}\r\n\r\nx\r\n--{B}--");
    assert!(matches!(err(body.as_bytes()), MultipartError::Header(_)));
    let body = format!("--{B}\r\n\r\n{{}}\r\n--{B}\r\n\r\nx\r\n--{B}--");
    assert_eq!(
        err(body.as_bytes()),
        MultipartError::Header("the first part has no Content-Type")
    );
}

#[test]
fn location_rules() {
    let mk = |headers: &str, body: &str| {
        format!(
            "--{B}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{B}\r\n{headers}\r\n\r\n{body}\r\n--{B}--"
        )
    };
    assert!(matches!(
        err(mk("Location: https://m.example.org/a", "bytes").as_bytes()),
        MultipartError::Location("a Location part with a body")
    ));
    assert!(matches!(
        err(mk(
            "Location: https://m.example.org/a\r\nContent-Type: image/png",
            ""
        )
        .as_bytes()),
        MultipartError::Location(_)
    ));
    for bad in [
        "/relative/path",
        "ftp://m.example.org/a",
        "https://user@m.example.org/a",
        "m.example.org/a",
        "https:///a",
    ] {
        let body = mk(&format!("Location: {bad}"), "");
        assert!(
            matches!(err(body.as_bytes()), MultipartError::Location(_)),
            "{bad}"
        );
    }
    let ok = mk("location: http://127.0.0.1:8080/a", "");
    assert_eq!(
        parse(&ct(), ok.as_bytes()).unwrap().content,
        Content::Location("http://127.0.0.1:8080/a".into())
    );
}

#[test]
fn junk_is_refused() {
    let good = synapse_answer("{}", "text/plain", "inline", b"a");
    // Preamble text.
    let mut v = b"hello\r\n".to_vec();
    v.extend_from_slice(&good);
    assert!(matches!(err(&v), MultipartError::Framing(_)));
    // Epilogue text.
    let mut v = good.clone();
    v.extend_from_slice(b"trailing");
    assert!(matches!(err(&v), MultipartError::Framing(_)));
    // Transport padding after a delimiter.
    let s = String::from_utf8(good.clone()).unwrap();
    let padded = s.replacen(&format!("--{B}\r\n"), &format!("--{B} \r\n"), 1);
    assert!(matches!(err(padded.as_bytes()), MultipartError::Framing(_)));
    // No close delimiter (truncated).
    assert!(matches!(
        err(&good[..good.len() - 8]),
        MultipartError::Framing(_)
    ));
    // Duplicate Content-Type, unknown header, folded header, empty value, no colon.
    for headers in [
        "Content-Type: text/plain\r\ncontent-type: text/html",
        "Content-Type: text/plain\r\nX-Other: 1",
        "Content-Type: text/plain\r\n continued",
        "Content-Type:   ",
        "Content-Type text/plain",
        "Content Type: text/plain",
        "Content-Type: caf\u{e9}",
    ] {
        let body = format!(
            "--{B}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{B}\r\n{headers}\r\n\r\nx\r\n--{B}--"
        );
        assert!(
            matches!(err(body.as_bytes()), MultipartError::Header(_)),
            "{headers:?}"
        );
    }
    // A part without a blank line after its headers.
    let body =
        format!("--{B}\r\nContent-Type: application/json\r\n{{}}\r\n--{B}\r\n\r\nx\r\n--{B}--");
    assert!(matches!(err(body.as_bytes()), MultipartError::Header(_)));
    // Empty body.
    assert!(matches!(err(b""), MultipartError::Framing(_)));
}

#[test]
fn errors_carry_no_answer_bytes() {
    let body = synapse_answer("{\"secret\":\"s3cr3t\"", "text/plain", "inline", b"s3cr3t");
    let e = err(&body);
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}

fn header_text() -> impl Strategy<Value = String> {
    // Visible ASCII and inner spaces, no surrounding whitespace: what build keeps as it is.
    "[!-~]([ !-~]{0,40}[!-~])?"
}

proptest! {
    #[test]
    fn parse_of_build_is_the_input(
        keys in proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,20}", 0..4),
        content_type in header_text(),
        disposition in proptest::option::of(header_text()),
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let metadata = serde_json::to_vec(&keys).unwrap();
        let (ctype, body) = build(&metadata, &content_type, disposition.as_deref(), &bytes);
        let a = parse(&ctype, &body).unwrap();
        prop_assert_eq!(a.metadata, &metadata[..]);
        prop_assert_eq!(a.content, Content::Bytes {
            content_type: Some(content_type),
            disposition,
            bytes: &bytes,
        });
    }

    #[test]
    fn a_changed_byte_outside_the_file_never_panics_and_never_passes_silently(
        at in 0usize..200,
        to in any::<u8>(),
    ) {
        let (ctype, mut body) = build(b"{}", "image/png", Some("inline"), b"0123456789");
        // Every byte but the file's: the framing, headers and metadata.
        let file_at = memmem::find(&body, b"0123456789").unwrap();
        let positions: Vec<usize> = (0..body.len())
            .filter(|i| !(file_at..file_at + 10).contains(i))
            .collect();
        let i = positions[at % positions.len()];
        prop_assume!(body[i] != to);
        let before = body[i];
        body[i] = to;
        if let Ok(a) = parse(&ctype, &body) {
            // Only changes a strict reader may accept: header-name case, whitespace in the
            // epilogue or within header values, or an equivalent JSON / header text.
            let case_only = before.eq_ignore_ascii_case(&to);
            let harmless = case_only
                || matches!((before, to), (b' ', b'\t') | (b'\n', b'\r' | b' ' | b'\t') | (b'\r', b'\n' | b' ' | b'\t'))
                || a.metadata != b"{}"
                || a.content != Content::Bytes {
                    content_type: Some("image/png".into()),
                    disposition: Some("inline".into()),
                    bytes: b"0123456789",
                };
            prop_assert!(harmless, "byte {i}: {before:#x} -> {to:#x} parsed as the original");
        }
    }

    #[test]
    fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&ct(), &body);
    }
}
