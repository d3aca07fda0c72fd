use super::*;

fn norm(s: &str) -> String {
    normalize(s).into_owned()
}

#[test]
fn invisible_and_control_characters_are_removed() {
    for zw in [
        "\u{200b}",
        "\u{200c}",
        "\u{200d}",
        "\u{ad}",
        "\u{2060}",
        "\u{feff}",
        "\u{202e}",
        "\u{2066}",
        "\u{fe0f}",
        "\u{e0047}",
        "\u{0}",
        "\u{1b}",
        "\u{7f}",
        "\u{85}",
        "\u{180e}",
        "\u{3164}",
    ] {
        assert_eq!(
            norm(&format!("GEH{zw}EIM")),
            "GEHEIM",
            "{:?}",
            zw.escape_unicode().to_string()
        );
    }
    assert_eq!(norm("a\tb\nc\rd"), "a\tb\nc\rd", "tab, LF, CR stay");
}

#[test]
fn compatibility_forms_and_marks() {
    assert_eq!(norm("ＧＥＨＥＩＭ"), "GEHEIM", "fullwidth");
    assert_eq!(norm("𝐆𝐄𝐇𝐄𝐈𝐌"), "GEHEIM", "mathematical bold");
    assert_eq!(norm("Ⓖ"), "G", "circled");
    assert_eq!(norm("G\u{301}E\u{308}HEIM"), "GEHEIM", "combining marks");
    assert_eq!(norm("FÜR"), "FUR", "precomposed umlaut loses its mark");
    assert_eq!(norm("ﬁle"), "file", "ligature");
    assert_eq!(
        norm("DE89\u{a0}3704\u{2009}0044\u{3000}0532"),
        "DE89 3704 0044 0532",
        "space separators"
    );
    assert_eq!(norm("１２３"), "123", "fullwidth digits");
    assert_eq!(norm("a\u{2028}b"), "a\nb");
}

#[test]
fn spans_map_back_to_original_bytes() {
    let src = "xx G\u{200b}E\u{ad}HＥIM yy";
    let mut v = Views::new();
    let views = v.build(src, false);
    assert_eq!(views.len(), 1);
    let at = views[0].text.find("GEHEIM").unwrap();
    let (s, e) = views[0].original(at, at + 6);
    assert_eq!(&src[s..e], "G\u{200b}E\u{ad}HＥIM");
}

#[test]
fn plain_ascii_is_its_own_view() {
    let mut v = Views::new();
    let views = v.build("Hallo Welt, alles gut.", true);
    assert_eq!(views.len(), 1);
    assert!(views[0].is_identity());
    assert_eq!(views[0].text, "Hallo Welt, alles gut.");
}

#[test]
fn html_strings_get_rendered_and_markup_views() {
    let mut v = Views::new();
    let views = v.build("a <!-- GEHEIM --> &#71;EHEIM", false);
    let kinds: Vec<_> = views.iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        vec![ViewKind::Text, ViewKind::HtmlText, ViewKind::HtmlMarkup]
    );
    assert!(views[1].text.contains("GEHEIM"));
    assert!(views[2].text.contains("GEHEIM"));
}

#[test]
fn confusable_views_only_where_something_maps() {
    let mut v = Views::new();
    let views = v.build("G\u{415}H\u{415}\u{406}\u{41c}", true);
    assert_eq!(views.len(), 2);
    assert!(views[1].confusable);
    assert_eq!(views[1].text, "GEHEIM");
    assert_eq!(
        views[1].original(0, 6),
        (0, "G\u{415}H\u{415}\u{406}\u{41c}".len())
    );
    let views = v.build("Grüße aus Köln", true);
    assert_eq!(
        views.len(),
        1,
        "German letters have no ASCII look-alike after normalisation"
    );
}

#[test]
fn enclosed_letters_and_digits_read_as_plain_ones() {
    assert_eq!(norm("🅶🅴🅷🅴🅸🅼"), "GEHEIM", "negative squared capitals");
    assert_eq!(norm("🅖🅔🅗🅔🅘🅜"), "GEHEIM", "negative circled capitals");
    assert_eq!(norm("🄖🄔🄗🄔🄘🄜"), "GEHEIM", "parenthesised capitals");
    assert_eq!(norm("⒢⒠⒣⒠⒤⒨"), "geheim", "parenthesised small letters");
    assert_eq!(norm("🄰🅉"), "AZ", "squared capitals (NFKD)");
    assert_eq!(
        norm("❶❿⓫⓴⓵⓾⓿➀➊🄋🄌"),
        "110112011001100",
        "dingbat, negative, double circled"
    );
    assert_eq!(
        norm("⑴⒇⒈⒛🄀🄊"),
        "12012009",
        "parenthesised and full-stop digits"
    );
    assert_eq!(norm("DE⑧⑨③⑦"), "DE8937", "circled digits (NFKD)");
    assert_eq!(
        norm("🆚-VERTRAULICH 🆗 🆘"),
        "VS-VERTRAULICH OK SOS",
        "squared words"
    );
    // Flags are not letters to a reader: a flag after a word keeps it a whole word.
    assert_eq!(norm("GEHEIM🇩🇪"), "GEHEIM🇩🇪");
    // The look-alike view reads regional indicators as capitals (a pair that is no flag shows
    // boxed letters); the plain view keeps them.
    let mut v = Views::new();
    let views = v.build("Einstufung 🇬🇪🇭🇪🇮🇲", true);
    assert!(
        views.iter().any(|v| v.text == "Einstufung GEHEIM"),
        "{views:?}"
    );
}

#[test]
fn dashes_read_as_hyphens() {
    for d in [
        "\u{2010}",
        "\u{2011}",
        "\u{2012}",
        "\u{2013}",
        "\u{2014}",
        "\u{2015}",
        "\u{2212}",
        "\u{2e3a}",
        "\u{fe58}",
        "\u{fe63}",
        "\u{ff0d}",
        "\u{30fc}",
        "\u{ff70}",
        "\u{58a}",
        "\u{2796}",
        "\u{2d7}",
        "\u{2e5d}",
        "\u{10ead}",
    ] {
        assert_eq!(
            norm(&format!("VS{d}NfD")),
            "VS-NfD",
            "{}",
            d.escape_unicode()
        );
    }
    assert_eq!(norm("GEHEIMー"), "GEHEIM-");
    // Dashes drawn as `=` or `~` are not hyphens.
    assert_eq!(norm("VS\u{30a0}NfD"), "VS\u{30a0}NfD");
    assert_eq!(norm("VS\u{301c}NfD"), "VS\u{301c}NfD");
}

#[test]
fn spans_of_enclosed_and_dash_characters_cover_the_original() {
    let src = "x 🅶🅴🅷🅴🅸🅼 VS—NfD";
    let mut v = Views::new();
    let views = v.build(src, false);
    let t = &views[0].text;
    let at = t.find("GEHEIM").unwrap();
    let (s, e) = views[0].original(at, at + 6);
    assert_eq!(&src[s..e], "🅶🅴🅷🅴🅸🅼");
    let at = t.find("VS-NfD").unwrap();
    let (s, e) = views[0].original(at, at + 6);
    assert_eq!(&src[s..e], "VS—NfD");
}

/// The decoded view of `src`, if it has one.
fn decoded(src: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut v = Views::new();
    let views = v.build(src, false);
    let d = views.iter().find(|v| v.kind == ViewKind::Decoded)?;
    // each decoded word and the original span it came from
    let spans = d
        .text
        .split(' ')
        .scan(0usize, |at, w| {
            let start = *at;
            *at += w.len() + 1;
            Some((start, w))
        })
        .filter(|(_, w)| !w.is_empty())
        .map(|(start, w)| {
            let (s, e) = d.original(start, start + w.len());
            (w.to_owned(), src[s..e].to_owned())
        })
        .collect();
    Some((d.text.clone(), spans))
}

#[test]
fn encoded_runs_are_decoded_into_a_view_of_their_own() {
    for (src, want) in [
        ("%47%45%48%45%49%4D", "GEHEIM"),
        (
            "siehe https://x.test/?q=%47EHEIM jetzt",
            "siehe https://x.test/?q=GEHEIM jetzt",
        ),
        ("R0VIRUlN", "GEHEIM"),
        ("Anhang: R0VIRUlNIQ== ok", "Anhang: GEHEIM! ok"),
        // a run glued to a word with a hyphen is decoded on its own
        ("Anhang R0VIRUlN-Zusatz", "Anhang GEHEIM-Zusatz"),
        ("47454845494D", "GEHEIM"),
        ("VlMtTmZE", "VS-NfD"),
        // URL-safe alphabet (and normalised: the umlaut loses its mark)
        ("w7xiZXI_", "uber?"),
        // what it decodes to is normalised like any text: fullwidth letters
        ("%EF%BC%A7%EF%BC%A5HEIM", "GEHEIM"),
    ] {
        let got = decoded(src).map(|d| d.0);
        if want == src {
            assert_eq!(got, None, "{src}");
        } else {
            assert_eq!(got.as_deref(), Some(want), "{src}");
        }
    }
    // Spans: a decoded word maps to the whole encoded run.
    let (_, spans) = decoded("Vermerk R0VIRUlN bitte").unwrap();
    assert!(
        spans.contains(&("GEHEIM".into(), "R0VIRUlN".into())),
        "{spans:?}"
    );
    assert!(
        spans.contains(&("bitte".into(), "bitte".into())),
        "{spans:?}"
    );
    // Words, ids, hashes and numbers that decode to no text give no view.
    for plain in [
        "Nachrichtenübermittlung Verschlusssache Geheimhaltungsgrad",
        "$9rBmuqU4Q1mI7Q9B1zXh6wqyJxpr6Nj2s0cqMqUxcI4",
        "!OGEhHVWSdvArJzumhm:matrix.org",
        "Telefon 0301234567 oder 4915112345678",
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "100% sicher, 50%ig",
    ] {
        assert_eq!(decoded(plain), None, "{plain}");
    }
    // In HTML the attribute values are decoded too (a data: URI).
    let mut v = Views::new();
    let views = v.build("<a href=\"data:text/plain;base64,R0VIRUlN\">x</a>", false);
    assert!(
        views
            .iter()
            .any(|v| v.kind == ViewKind::Decoded && v.text.contains("GEHEIM")),
        "{views:?}"
    );
}

#[test]
fn quoted_printable_base32_and_hex_dumps_are_decoded() {
    for (src, want) in [
        // quoted-printable: escapes, mixed with letters, soft line breaks
        ("Einstufung: =47=45=48=45=49=4D", "Einstufung: GEHEIM"),
        ("Einstufung: GEH=45IM", "Einstufung: GEHEIM"),
        ("Einstufung: GEH=\nEIM", "Einstufung: GEHEIM"),
        ("Einstufung: GE=\r\nHE=\r\nIM", "Einstufung: GEHEIM"),
        ("Stra=C3=9Fe", "Straße"),
        // base32: padded, unpadded, small letters with a digit
        ("Einstufung: I5CUQRKJJU======", "Einstufung: GEHEIM"),
        ("Einstufung: I5CUQRKJJU", "Einstufung: GEHEIM"),
        ("i5cuqrkjju", "GEHEIM"),
        // hex dumps
        ("Einstufung: 47 45 48 45 49 4D", "Einstufung: GEHEIM"),
        ("Einstufung: 47:45:48:45:49:4d.", "Einstufung: GEHEIM."),
        ("{0x47, 0x45, 0x48, 0x45, 0x49, 0x4D}", "{GEHEIM}"),
        ("0x47,0x45,0x48,0x45,0x49,0x4D", "GEHEIM"),
        // a last group glued to a word is not part of the dump
        ("47 45 48 45 49 4Dx", "GEHEI 4Dx"),
        // UTF-16LE in a hex dump
        ("47 00 45 00 48 00 45 00 49 00 4D 00", "GEHEIM"),
    ] {
        let got = decoded(src).map(|d| d.0);
        assert_eq!(got.as_deref(), Some(want), "{src:?}");
    }
    // Spans: the decoded word maps to the escapes, the dump or the base32 run.
    for (src, run) in [
        ("Vermerk I5CUQRKJJU====== bitte", "I5CUQRKJJU======"),
        ("Vermerk 47 45 48 45 49 4D bitte", "47 45 48 45 49 4D"),
    ] {
        let (_, spans) = decoded(src).unwrap();
        assert!(spans.contains(&("GEHEIM".into(), run.into())), "{spans:?}");
    }
    // What looks like these but is no text gives no view: shouted words, small letters
    // without a digit, dumps too short.
    for plain in [
        "VERSCHLUSSSACHE DIENSTGEBRAUCH",
        "47 45 48",
        "abcdefgh abcdefgh",
    ] {
        assert_eq!(decoded(plain), None, "{plain}");
    }
}

/// Whether a decoded view of `src` (any level) contains `want`.
fn decodes_to(src: &str, want: &str) -> bool {
    let mut v = Views::new();
    v.build(src, false)
        .iter()
        .any(|v| v.kind == ViewKind::Decoded && v.text.contains(want))
}

#[test]
fn runs_after_an_equals_sign_glued_to_words_or_wrapped_into_lines_are_decoded() {
    use base64::Engine as _;
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let hex = |t: &str| t.bytes().map(|c| format!("{c:02x}")).collect::<String>();
    let wrap = |t: &str, width: usize, brk: &str| {
        t.as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(brk)
    };
    // the marking crosses a line of 57 bytes (76 base64 characters) or 30 (60 hex digits)
    let long = format!("{}GEHEIM und nur im Hausnetz", "x".repeat(54));
    let wrapped = [
        wrap(&b64(&long), 76, "\n"),
        wrap(&b64(&long), 76, "\r\n"),
        wrap(&b64(&long), 64, "\n"),
        wrap(&hex(&format!("{}GEHEIM ende", "y".repeat(27))), 60, "\n"),
        // quoted-printable soft line breaks inside base64 (75 characters a line)
        wrap(&b64(&long), 75, "=\n"),
    ];
    for src in &wrapped {
        assert!(decodes_to(src, "GEHEIM"), "{src:?}");
    }
    for src in [
        // an `=` before a run is no quoted-printable escape when the run decodes
        "https://ablage.example/?d=47454845494D",
        "Einstufung=47 45 48 45 49 4D",
        "https://ablage.example/?q=eCBHRUhFSU0=",
        // base32 tried before base64 where the run has base32's alphabet
        "Einstufung: MFZW6ICHIVEEKSKNEA======",
        // hex dumps as tools write them
        "47 45 48  45 49 4D",
        "47-45-48-45-49-4D",
        "47\t45\t48\t45\t49\t4D",
        "4745 4845 494D",
        "47 45 48 45 49 4D 00x",
        "0x47454845494D",
        // UTF-16 without its last zero byte
        "470045004800450049004D",
        "RwBFAEgARQBJAE0=",
        // runs glued to a path or a name
        "https://ablage.example/d/47454845494D",
        "ID-47454845494D",
        "Bericht_R0VIRUlN_final",
    ] {
        assert!(decodes_to(src, "GEHEIM"), "{src:?}");
    }
    // Two padded base64 strings on two lines are two runs, not a quoted-printable block.
    assert!(decodes_to("SGFsbG8gV2VsdA==\nR0VIRUlN", "GEHEIM"));
    assert!(decodes_to("SGFsbG8=\nR0VIRUlN", "GEHEIM"));
}

#[test]
fn escapes_utf16_and_nested_encodings_are_decoded() {
    let decoded_views = |src: &str| -> Vec<String> {
        let mut v = Views::new();
        v.build(src, false)
            .iter()
            .filter(|v| v.kind == ViewKind::Decoded)
            .map(|v| v.text.clone())
            .collect()
    };
    for (src, want) in [
        (r"Einstufung \u0047\u0045HEIM", "Einstufung GEHEIM"),
        (r"Einstufung \x47\x45\x48\x45\x49\x4d", "Einstufung GEHEIM"),
        // UTF-16LE inside base64
        ("RwBFAEgARQBJAE0A", "GEHEIM"),
        // base64 inside percent escapes, base64 inside base64
        ("%52%30%56%49%52%55%6C%4E", "GEHEIM"),
        ("UjBWSVJVbE4=", "GEHEIM"),
    ] {
        let got = decoded_views(src);
        assert!(got.iter().any(|t| t == want), "{src}: {got:?}");
    }
    // escapes of control characters are decoded, and normalisation removes those
    assert_eq!(decoded_views(r"Pfad C:\x00\x01"), ["Pfad C:"]);
    assert_eq!(decoded_views(r"\u0000\u0007"), [""]);
    // a stray byte or an invalid sequence does not hide the rest
    for (src, want) in [
        ("GEH%00EIM", "GEHEIM"),
        ("%FF%47%45%48%45%49%4D", "GEHEIM"),
        (r"\x00\x47\x45\x48\x45\x49\x4d", "GEHEIM"),
        (r"\uD800\u0047\u0045HEIM", "GEHEIM"),
        ("0047454845494D", "GEHEIM"),
        ("00 47 45 48 45 49 4D", "GEHEIM"),
        ("AEdFSEVJTQ==", "GEHEIM"),
        // stray bytes at either end of a hex or base64 run
        ("0000000047454845494D0000", "GEHEIM"),
        ("AAAAAEdFSEVJTQAA", "GEHEIM"),
        ("00 00 00 00 00 00 47 45 48 45 49 4D", "GEHEIM"),
    ] {
        let got = decoded_views(src);
        assert!(got.iter().any(|t| t == want), "{src}: {got:?}");
    }
    // the levels end
    let mut deep = "GEHEIM".to_owned();
    for _ in 0..6 {
        deep = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, deep);
    }
    assert!(decoded_views(&deep).len() <= crate::text::decoded::MAX_LEVELS);
}

proptest::proptest! {
    /// Strings made of the characters the decoders look for: building the views never
    /// panics, every view byte maps into the string, and the decoded levels end.
    #[test]
    fn decoding_any_mix_of_encodings_is_safe(
        src in "[%=\\\\xu0-9a-fA-FIJQRSTUVWXYZ \n\r:,+/_-]{0,200}",
    ) {
        let mut v = Views::new();
        let views = v.build(&src, true);
        let decoded = views.iter().filter(|v| v.kind == ViewKind::Decoded).count();
        proptest::prop_assert!(decoded <= crate::text::decoded::MAX_LEVELS * 4);
        for view in views {
            for at in 0..view.text.len() {
                let (s, e) = view.original(at, at + 1);
                proptest::prop_assert!(s <= e && e <= src.len(), "{view:?}");
            }
        }
    }
}
