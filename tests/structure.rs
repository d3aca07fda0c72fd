//! Structure checks over the source tree: the top-level modules form a layered graph (no two
//! modules use each other), so each can be read, tested and replaced on its own terms.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `crate::<module>` a file names outside comments and inline `mod tests` blocks.
fn uses(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut deps: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if top == "main" || top == "lib" || rel.ends_with("/tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for used in uses(&text) {
            if used != top {
                deps.entry(top.clone())
                    .or_default()
                    .entry(used)
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    assert!(
        deps.contains_key("proxy") && deps.contains_key("policy") && deps.len() >= 6,
        "the walk found the modules: {deps:?}"
    );
    // Transitive closure: a cycle of any length shows as a module reaching itself.
    let mut cycles = Vec::new();
    for start in deps.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((m, path)) = stack.pop() {
            for next in deps
                .get(&m)
                .map(|d| d.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if &next == start {
                    let mut p = path.clone();
                    p.push(next.clone());
                    cycles.push(p.join(" → "));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next, p));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules:\n{}\n(files: {:#?})",
        cycles.join("\n"),
        deps
    );
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let a = uses("use crate::policy::Permit;\n// crate::admin in a comment\nfn f() { crate::proxy::x(); }\n#[cfg(test)]\nmod tests {\n use crate::lab;\n}");
    assert_eq!(
        a.into_iter().collect::<Vec<_>>(),
        vec!["policy".to_string(), "proxy".to_string()]
    );
}
