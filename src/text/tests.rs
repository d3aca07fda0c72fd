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
