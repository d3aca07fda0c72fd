use super::*;

fn unix(text: &str) -> Option<i64> {
    parse_at(text).ok().map(unix_seconds)
}

#[test]
fn at_accepts_rfc3339_and_dates() {
    assert_eq!(unix("2026-06-01T00:00:00Z"), Some(1_780_272_000));
    assert_eq!(unix("2026-06-01"), Some(1_780_272_000));
    assert_eq!(unix("2026-06-01T02:00:00+02:00"), Some(1_780_272_000));
    assert_eq!(unix("2026-05-31T22:30:00-01:30"), Some(1_780_272_000));
    assert_eq!(unix("2026-06-01t00:00:00.250z"), Some(1_780_272_000));
    assert_eq!(unix("2028-02-01T00:00:00Z"), Some(1_832_976_000));
    assert_eq!(unix("1969-12-31T23:59:59Z"), Some(-1));
}

#[test]
fn at_refuses_other_text() {
    for bad in [
        "",
        "now",
        "2026-06-01T00:00:00",
        "2026-6-1",
        "2026-02-30",
        "2026-06-01T24:00:00Z",
        "2026-06-01T00:00Z",
        "2026-06-01T00:00:00.Z",
        "2026-06-01T00:00:00+0200",
        "1780272000",
    ] {
        assert!(parse_at(bad).is_err(), "{bad}");
    }
}
