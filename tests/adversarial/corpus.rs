//! Reading the adversarial corpus (`tests/adversarial/corpus.toml`), shared by
//! `tests/adversarial.rs` and `tests/e2e_adversarial.rs`.
#![allow(dead_code)]

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

/// Where a known gap lets the text cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gap {
    /// The rule set does not catch the case.
    Scanner,
    /// The scanner refuses the case, but what arrives still carries the text.
    Delivery,
}

/// One corpus entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub class: String,
    pub text: Option<String>,
    pub event: Option<String>,
    #[serde(default)]
    pub known_gap: bool,
    pub gap: Option<Gap>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Corpus {
    pub case: Vec<Case>,
    pub negative: Vec<Case>,
}

impl Case {
    /// The bare event (`type`, `content`, optional `state_key`): a `text` case is an
    /// `m.room.message` with that body.
    pub fn event(&self) -> Value {
        match (&self.text, &self.event) {
            (Some(t), None) => {
                json!({"type": "m.room.message", "content": {"msgtype": "m.text", "body": t}})
            }
            (None, Some(e)) => {
                let v: Value = serde_json::from_str(e)
                    .unwrap_or_else(|err| panic!("{}: event is not JSON: {err}", self.class));
                assert!(
                    v["type"].is_string() && v["content"].is_object(),
                    "{}: event needs type and content",
                    self.class
                );
                for k in v.as_object().unwrap().keys() {
                    assert!(
                        ["type", "content", "state_key"].contains(&k.as_str()),
                        "{}: unexpected event key {k}",
                        self.class
                    );
                }
                v
            }
            _ => panic!("{}: exactly one of `text` and `event`", self.class),
        }
    }

    /// The case's gap, if it is a known one.
    pub fn gap(&self) -> Option<Gap> {
        match (self.known_gap, self.gap) {
            (false, None) => None,
            (true, Some(g)) => Some(g),
            _ => panic!(
                "{}: `known_gap = true` needs `gap` (and only then)",
                self.class
            ),
        }
    }

    /// The strings of the event a user wrote (type, state key, every string and key of
    /// `content`), for checking what arrives.
    pub fn strings(&self) -> Vec<String> {
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                Value::Object(m) => {
                    for (k, x) in m {
                        out.push(k.clone());
                        walk(x, out);
                    }
                }
                _ => {}
            }
        }
        let ev = self.event();
        let mut out = vec![ev["type"].as_str().unwrap().to_string()];
        if let Some(k) = ev["state_key"].as_str() {
            out.push(k.to_string());
        }
        walk(&ev["content"], &mut out);
        out
    }
}

/// The corpus, checked: every case has exactly one of `text`/`event`, gaps are well-formed,
/// classes are unique.
pub fn load() -> Corpus {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/adversarial/corpus.toml");
    let text = std::fs::read_to_string(&path).expect("read corpus");
    let corpus: Corpus =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut seen = std::collections::HashSet::new();
    for c in corpus.case.iter().chain(&corpus.negative) {
        assert!(seen.insert(c.class.clone()), "class {} twice", c.class);
        c.event();
        c.gap();
    }
    for n in &corpus.negative {
        assert!(n.gap().is_none(), "negative {} cannot be a gap", n.class);
    }
    corpus
}
