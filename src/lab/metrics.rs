//! Reading the guard's Prometheus metrics: what the guard saw, for `lab demo` and the tests.
//!
//! A small parser of the Prometheus text exposition format (samples only; `# HELP`/`# TYPE`
//! lines are skipped), enough to answer "how many requests went through the guard, per
//! direction, endpoint and status" from `grenzwacht_requests_total`.
use std::collections::BTreeMap;

/// Name of the guard's per-request counter.
pub const REQUESTS_TOTAL: &str = "grenzwacht_requests_total";

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of a label, `""` when absent.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Parses the text format; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // Skip separators.
            while matches!(chars.peek(), Some((_, ',' | ' '))) {
                chars.next();
            }
            match chars.peek() {
                Some((i, '}')) => {
                    rest = &after[i + 1..];
                    break;
                }
                None => return None,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut val = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => val.push('\n'),
                        c => val.push(c),
                    },
                    '"' => break,
                    c => val.push(c),
                }
            }
            labels.insert(key.trim().to_string(), val);
        }
    }
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// One `grenzwacht_requests_total` series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestSeries {
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Catalog endpoint id.
    pub endpoint: String,
    /// HTTP status.
    pub status: String,
    /// Count.
    pub count: u64,
}

/// The `grenzwacht_requests_total` series in `samples`, sorted.
pub fn requests(samples: &[Sample]) -> Vec<RequestSeries> {
    let mut v: Vec<RequestSeries> = samples
        .iter()
        .filter(|s| s.name == REQUESTS_TOTAL)
        .map(|s| RequestSeries {
            direction: s.label("direction").to_string(),
            endpoint: s.label("endpoint").to_string(),
            status: s.label("status").to_string(),
            count: s.value as u64,
        })
        .collect();
    v.sort();
    v
}

/// Sum of request counts matching the given filters (`None` = any).
pub fn count(
    series: &[RequestSeries],
    direction: Option<&str>,
    endpoint: Option<&str>,
    status: Option<&str>,
) -> u64 {
    series
        .iter()
        .filter(|s| direction.is_none_or(|d| s.direction == d))
        .filter(|s| endpoint.is_none_or(|e| s.endpoint == e))
        .filter(|s| status.is_none_or(|st| s.status == st))
        .map(|s| s.count)
        .sum()
}

/// The per-unit decision counter (`policy::decisions`).
pub const DECISIONS_TOTAL: &str = "grenzwacht_decisions_total";

/// Decisions per verdict and direction, summed over unit kinds, sorted by direction then
/// verdict: `(direction, verdict, count)`.
pub fn decisions_by_verdict(samples: &[Sample]) -> Vec<(String, String, u64)> {
    let mut m: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for s in samples.iter().filter(|s| s.name == DECISIONS_TOTAL) {
        *m.entry((s.label("direction").into(), s.label("verdict").into()))
            .or_default() += s.value as u64;
    }
    m.into_iter().map(|((d, v), n)| (d, v, n)).collect()
}

/// A table of [`decisions_by_verdict`] for humans.
pub fn render_decisions(rows: &[(String, String, u64)]) -> String {
    if rows.is_empty() {
        return "  (no decisions counted)\n".to_string();
    }
    let mut out = format!("  {:<9} {:<9} {:>7}\n", "direction", "verdict", "units");
    for (d, v, n) in rows {
        out.push_str(&format!("  {d:<9} {v:<9} {n:>7}\n"));
    }
    out
}

/// A table of the series for humans.
pub fn render_table(series: &[RequestSeries]) -> String {
    if series.is_empty() {
        return "  (no requests counted)\n".to_string();
    }
    let w = series
        .iter()
        .map(|s| s.endpoint.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!(
        "  {:<9} {:<w$} {:>6} {:>7}\n",
        "direction", "endpoint", "status", "count"
    );
    for s in series {
        out.push_str(&format!(
            "  {:<9} {:<w$} {:>6} {:>7}\n",
            s.direction, s.endpoint, s.status, s.count
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP grenzwacht_requests_total Federation requests handled
# TYPE grenzwacht_requests_total counter
grenzwacht_requests_total{direction="inbound",endpoint="make_join",status="200"} 1
grenzwacht_requests_total{direction="outbound",endpoint="send_transaction",status="200"} 7
grenzwacht_requests_total{endpoint="send_transaction",status="200",direction="inbound"} 3
grenzwacht_requests_total{direction="inbound",endpoint="unknown",status="404"} 2
weird{a="x\"y\\z\nq",b=""} 1.5e0 1700000000
grenzwacht_bytes_total 12
histogram_bucket{le="+Inf"} 4
broken{a="x 1
"#;

    #[test]
    fn decisions_are_summed_over_units_per_direction_and_verdict() {
        let text = r#"grenzwacht_decisions_total{direction="outbound",unit="pdu",verdict="allow"} 5
grenzwacht_decisions_total{direction="outbound",unit="edu",verdict="allow"} 2
grenzwacht_decisions_total{direction="outbound",unit="pdu",verdict="redact"} 1
grenzwacht_decisions_total{direction="inbound",unit="pdu",verdict="hold"} 3
grenzwacht_requests_total{direction="inbound",endpoint="x",status="200"} 9
"#;
        let rows = decisions_by_verdict(&parse(text));
        assert_eq!(
            rows,
            vec![
                ("inbound".into(), "hold".into(), 3),
                ("outbound".into(), "allow".into(), 7),
                ("outbound".into(), "redact".into(), 1),
            ]
        );
        let t = render_decisions(&rows);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.lines().nth(2).unwrap().contains("outbound") && t.contains(" 7"));
        assert_eq!(render_decisions(&[]), "  (no decisions counted)\n");
    }

    #[test]
    fn parses_labels_escapes_and_timestamps() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 7, "{s:#?}");
        let weird = s.iter().find(|x| x.name == "weird").unwrap();
        assert_eq!(weird.label("a"), "x\"y\\z\nq");
        assert_eq!(weird.label("b"), "");
        assert_eq!(weird.value, 1.5);
        assert_eq!(
            s.iter()
                .find(|x| x.name == "grenzwacht_bytes_total")
                .unwrap()
                .value,
            12.0
        );
        assert!(s
            .iter()
            .any(|x| x.name == "histogram_bucket" && x.label("le") == "+Inf"));
        assert!(!s.iter().any(|x| x.name == "broken"));
    }

    #[test]
    fn counts_requests_by_filter_regardless_of_label_order() {
        let r = requests(&parse(TEXT));
        assert_eq!(r.len(), 4);
        assert_eq!(
            count(&r, Some("inbound"), Some("send_transaction"), None),
            3
        );
        assert_eq!(count(&r, None, Some("send_transaction"), Some("200")), 10);
        assert_eq!(count(&r, Some("inbound"), None, None), 6);
        assert_eq!(count(&r, None, None, Some("404")), 2);
        assert_eq!(count(&r, Some("outbound"), Some("make_join"), None), 0);
        let table = render_table(&r);
        assert!(table.contains("make_join"));
        assert_eq!(table.lines().count(), 5);
    }
}
