//! TOML → [`Config`] with every error collected, each with a position.
//!
//! How it works: `toml_edit::ImDocument` keeps the byte span of every key and value. Each
//! top-level table (and each element of an array of tables) is converted to an inline-table
//! value (spans of its keys and values survive) and deserialised on its own through
//! `serde_ignored`, which reports every key the target type did not consume: those are the
//! unknown keys, located through the document. A deserialisation error carries the span of the
//! offending value; the key holding it is reported, removed, and the table is deserialised
//! again, so one wrong value does not hide the next. Cross-field checks then run on the typed
//! result and locate their keys in the document the same way.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Deserializer};
use toml_edit::{ImDocument, Item, Value};

use super::{
    parse_upstream, Config, ConfigError, ConfigErrors, Location, OutboundConfig, StoreConfig,
    MIN_LEAF_VALIDITY_SECS, MIN_TXN_RETENTION_HOURS,
};
use crate::federation::server_name::ServerName;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn k(name: &str) -> Seg {
    Seg::Key(name.to_owned())
}

/// Render `prefix` + `segs` as `a.b[2].c`.
fn render(prefix: &str, segs: &[Seg]) -> String {
    let mut s = prefix.to_owned();
    for seg in segs {
        match seg {
            Seg::Key(name) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(name);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A node of the parsed document: tables hold items, arrays hold values, arrays of tables hold
/// tables.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
        }
    }

    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Value(Value::InlineTable(t)) => Some(t),
            Node::Value(_) => None,
            Node::Table(t) => Some(t),
        }
    }

    /// Children with their path step and key span (keys only).
    fn children(self) -> Vec<(Seg, Option<Range<usize>>, Node<'a>)> {
        if let Some(t) = self.table_like() {
            return t
                .iter()
                .map(|(name, v)| {
                    let key_span = t.key(name).and_then(|key| key.span());
                    (Seg::Key(name.to_owned()), key_span, Node::Item(v))
                })
                .collect();
        }
        match self {
            Node::Item(Item::ArrayOfTables(a)) => a
                .iter()
                .enumerate()
                .map(|(i, t)| (Seg::Index(i), None, Node::Table(t)))
                .collect(),
            Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (Seg::Index(i), None, Node::Value(v)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Follow `path`; returns the node and, if the last step was a key, that key's span.
    fn walk(self, path: &[Seg]) -> Option<(Node<'a>, Option<Range<usize>>)> {
        let mut cur = self;
        let mut key_span = None;
        for seg in path {
            let (_, ks, child) = cur.children().into_iter().find(|(s, _, _)| s == seg)?;
            key_span = ks;
            cur = child;
        }
        Some((cur, key_span))
    }

    /// The path to the deepest node whose key or value span contains `span`.
    fn path_to(self, span: &Range<usize>) -> Vec<Seg> {
        let contains = |outer: &Option<Range<usize>>| {
            outer
                .as_ref()
                .is_some_and(|o| o.start <= span.start && span.end <= o.end)
        };
        let mut path = Vec::new();
        let mut cur = self;
        'descend: loop {
            for (seg, key_span, child) in cur.children() {
                if contains(&child.span()) || contains(&key_span) {
                    path.push(seg);
                    cur = child;
                    continue 'descend;
                }
            }
            return path;
        }
    }
}

/// Where a key is: the key itself if the path ends in a key, else the value / table.
fn key_span(root: Node<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let (node, ks) = root.walk(path)?;
    ks.or_else(|| node.span())
}

/// Where a value is (falls back to its key).
fn value_span(root: Node<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let (node, ks) = root.walk(path)?;
    node.span().or(ks)
}

/// Error sink with position translation.
struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
    errors: Vec<(Option<usize>, ConfigError)>,
}

impl<'a> Ctx<'a> {
    fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        // Spans are byte offsets on char boundaries; be defensive anyway.
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let offset = span.map(|s| s.start);
        let location = offset.map(|o| self.location(o));
        self.errors.push((
            offset,
            ConfigError {
                file: self.file.to_owned(),
                location,
                message: message.into(),
            },
        ));
    }

    /// Deserialise one table-like `item` (path `prefix`) into `T`, reporting unknown keys and
    /// every wrong value. `anchor` locates errors about the table as a whole (missing keys).
    /// Returns `None` if anything was wrong with it.
    fn section<T: DeserializeOwned>(
        &mut self,
        item: Node<'_>,
        prefix: &str,
        anchor: Option<Range<usize>>,
    ) -> Option<T> {
        let mut current: Item = match item {
            Node::Item(i) => i.clone(),
            Node::Value(v) => Item::Value(v.clone()),
            Node::Table(t) => Item::Table(t.clone()),
        };
        let mut removed: Vec<String> = Vec::new();
        let mut reported: HashSet<String> = HashSet::new();
        let mut failed = false;
        let rounds = item.children().len() + 2;
        for _ in 0..rounds {
            let value = current.clone().into_value().ok()?;
            let mut unknown: Vec<Vec<Seg>> = Vec::new();
            let result: Result<T, toml_edit::de::Error> =
                serde_ignored::deserialize(value.into_deserializer(), |p| {
                    unknown.push(ignored_path(&p))
                });
            for segs in unknown {
                let name = render(prefix, &segs);
                if reported.insert(name.clone()) {
                    let span = key_span(item, &segs).or_else(|| anchor.clone());
                    self.error(span, format!("unknown key `{name}`"));
                }
            }
            let err = match result {
                Ok(v) => return (!failed).then_some(v),
                Err(e) => e,
            };
            failed = true;
            let msg = err.message().trim().replace('\n', "; ");
            if let Some(field) = missing_field(&msg) {
                if !removed.iter().any(|r| r == field) {
                    self.error(
                        anchor,
                        format!("missing required key `{}`", render(prefix, &[k(field)])),
                    );
                }
                return None;
            }
            let segs = err.span().map(|s| item.path_to(&s)).unwrap_or_default();
            let span = err.span().or_else(|| anchor.clone());
            if segs.is_empty() {
                self.error(span, format!("invalid `{prefix}`: {msg}"));
                return None;
            }
            self.error(
                span,
                format!("invalid value for `{}`: {msg}", render(prefix, &segs)),
            );
            let Some(Seg::Key(first)) = segs.first() else {
                return None;
            };
            let table = current.as_table_like_mut()?;
            table.remove(first)?;
            removed.push(first.clone());
        }
        None
    }

    /// Deserialise an array of tables (`[[name]]`, or an inline array of inline tables).
    /// Returns the elements that parsed, and whether all did.
    fn array<T: DeserializeOwned>(
        &mut self,
        item: &Item,
        name: &str,
        anchor: Option<Range<usize>>,
    ) -> (Vec<T>, bool) {
        let mut out = Vec::new();
        let mut all_ok = true;
        match item {
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    let prefix = format!("{name}[{i}]");
                    match self.section::<T>(Node::Table(t), &prefix, t.span()) {
                        Some(v) => out.push(v),
                        None => all_ok = false,
                    }
                }
            }
            Item::Value(Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    let prefix = format!("{name}[{i}]");
                    if !v.is_inline_table() {
                        self.error(v.span(), format!("`{prefix}` must be a table"));
                        all_ok = false;
                        continue;
                    }
                    match self.section::<T>(Node::Value(v), &prefix, v.span()) {
                        Some(v) => out.push(v),
                        None => all_ok = false,
                    }
                }
            }
            _ => {
                self.error(
                    item.span().or(anchor),
                    format!("`{name}` must be an array of tables (`[[{name}]]`)"),
                );
                all_ok = false;
            }
        }
        (out, all_ok)
    }
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> Vec<Seg> {
    fn go(p: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
        match p {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                go(parent, out);
                out.push(Seg::Index(*index));
            }
            serde_ignored::Path::Map { parent, key } => {
                go(parent, out);
                out.push(Seg::Key(key.clone()));
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => go(parent, out),
        }
    }
    let mut out = Vec::new();
    go(p, &mut out);
    out
}

/// `missing field `x`` → `x`.
fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.split('`').next()
}

/// `allowed_clients`: CIDR networks; a bare address is a single host.
pub(super) fn de_ipnets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not an IP network (like \"127.0.0.1/32\") or address"
                    ))
                })
        })
        .collect()
}

/// Parse, check and path-resolve a whole config file.
pub(super) fn parse(
    text: &str,
    file: &str,
    base: Option<&Path>,
    files: bool,
) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx {
        text,
        file,
        errors: Vec::new(),
    };
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let msg = e.message().trim().replace('\n', "; ");
            ctx.error(e.span(), format!("TOML syntax error: {msg}"));
            return Err(finish(ctx));
        }
    };
    let root_table = doc.as_table();
    let root = Node::Item(doc.as_item());

    let mut cfg = Config::default();
    let mut protected_ok = true;
    let mut outbound_ok = true;
    for (name, item) in root_table.iter() {
        let name_span = root_table.key(name).and_then(|key| key.span());
        // Errors about a whole table point at its header, or at its (dotted) key.
        let anchor = match item {
            Item::Table(t) if t.span().is_some() && !t.is_implicit() => t.span(),
            _ => name_span.clone(),
        };
        let node = Node::Item(item);
        match name {
            "log" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.log = v;
                }
            }
            "admin" => {
                if let Some(v) = ctx.section::<super::AdminConfig>(node, name, anchor.clone()) {
                    cfg.admin = v;
                    let a = &cfg.admin;
                    for (path, msg) in
                        super::admin::check(&a.principal, a.tls.as_ref(), a.metrics_auth)
                    {
                        let mut segs = vec![k("admin")];
                        segs.extend(path.iter().map(|s| match s {
                            super::admin::PathStep::Key(n) => k(n),
                            super::admin::PathStep::Index(i) => Seg::Index(*i),
                        }));
                        ctx.error(value_span(root, &segs).or_else(|| anchor.clone()), msg);
                    }
                }
            }
            "inbound" => cfg.inbound = ctx.section(node, name, anchor),
            "outbound" => {
                cfg.outbound = ctx.section(node, name, anchor);
                outbound_ok = cfg.outbound.is_some();
            }
            "discovery" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.discovery = v;
                }
            }
            "limits" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.limits = v;
                }
            }
            "admission" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.admission = v;
                }
            }
            "notices" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.notices = v;
                }
            }
            "policy" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.policy = v;
                }
            }
            "store" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.store = v;
                }
            }
            "dlp" => {
                cfg.dlp = ctx.section(node, name, anchor);
            }
            "media" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.media = v;
                }
            }
            "review" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.review = v;
                }
            }
            "protected" => {
                let (v, ok) = ctx.array(item, name, anchor);
                cfg.protected = v;
                protected_ok = ok;
            }
            "route" => {
                let (v, _) = ctx.array(item, name, anchor);
                cfg.routes = v;
            }
            "keys" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.keys = v;
                }
            }
            "rule" => {
                let (v, _) = ctx.array(item, name, anchor);
                cfg.rules = v;
            }
            "opaque" => {
                if let Some(v) = ctx.section(node, name, anchor) {
                    cfg.opaque = v;
                }
            }
            "labels" => {
                cfg.labels = ctx.section::<super::labels::LabelsConfig>(node, name, anchor.clone());
                if let Some(l) = &mut cfg.labels {
                    for (path, msg) in l.check() {
                        let mut segs = vec![k("labels")];
                        segs.extend(path.iter().map(|s| match s {
                            super::labels::PathStep::Key(n) => k(n),
                            super::labels::PathStep::Index(i) => Seg::Index(*i),
                        }));
                        ctx.error(value_span(root, &segs).or_else(|| anchor.clone()), msg);
                    }
                    if let Some(b) = base {
                        l.resolve_paths(b);
                    }
                }
            }
            "audit" => {
                cfg.audit = ctx.section::<super::audit::AuditConfig>(node, name, anchor.clone());
                if let Some(a) = &mut cfg.audit {
                    for (key, msg) in a.check() {
                        let segs: Vec<Seg> = std::iter::once("audit")
                            .chain(key.split('.'))
                            .map(k)
                            .collect();
                        ctx.error(value_span(root, &segs).or_else(|| anchor.clone()), msg);
                    }
                    if let Some(b) = base {
                        a.resolve_paths(b);
                    }
                }
            }
            "split" => {
                cfg.split = ctx.section::<super::split::SplitConfig>(node, name, anchor.clone());
                if let Some(sp) = &cfg.split {
                    for (key, msg) in sp.check() {
                        let segs: Vec<Seg> = std::iter::once("split")
                            .chain(key.split('.'))
                            .map(k)
                            .collect();
                        ctx.error(value_span(root, &segs).or_else(|| anchor.clone()), msg);
                    }
                }
            }
            "ti" => {
                cfg.ti = ctx.section::<super::ti::TiConfig>(node, name, anchor.clone());
                if let Some(t) = &mut cfg.ti {
                    for (key, msg) in t.check() {
                        let segs: Vec<Seg> = std::iter::once("ti")
                            .chain(key.split('.'))
                            .map(|s| match s.parse::<usize>() {
                                Ok(i) => Seg::Index(i),
                                Err(_) => k(s),
                            })
                            .collect();
                        ctx.error(value_span(root, &segs).or_else(|| anchor.clone()), msg);
                    }
                    if let Some(b) = base {
                        t.resolve_paths(b);
                    }
                }
            }
            other => ctx.error(name_span, format!("unknown key `{other}`")),
        }
    }

    check(&cfg, root, &mut ctx, protected_ok, outbound_ok);

    if !ctx.errors.is_empty() {
        return Err(finish(ctx));
    }
    if let Some(base) = base {
        resolve_paths(&mut cfg, base);
        // Every file the config names, checked in one pass: an operator sees all of them at
        // once, each at its line, and nothing is written.
        if files {
            check_files(&cfg, root, &mut ctx);
            if !ctx.errors.is_empty() {
                return Err(finish(ctx));
            }
        }
    }
    Ok(cfg)
}

/// What a path in the config must be.
#[derive(Clone, Copy)]
enum Want {
    /// A file the guard reads.
    File,
    /// A directory the guard reads.
    Dir,
    /// A file or a directory (the DLP rule set).
    Any,
}

/// Reports every named file or directory that is missing or unreadable (paths already resolved
/// against the config's directory).
fn check_files(cfg: &Config, root: Node<'_>, ctx: &mut Ctx<'_>) {
    let mut named: Vec<(Vec<Seg>, &Path, Want)> = Vec::new();
    for (i, p) in cfg.protected.iter().enumerate() {
        let at = |key: &str| vec![k("protected"), Seg::Index(i), k(key)];
        named.push((at("cert"), &p.cert, Want::File));
        named.push((at("key"), &p.key, Want::File));
        // `admin_token_file` is read at each lookup (the token may be provisioned after the
        // guard starts, as the lab does), so it is not required here.
        for (key, f) in [
            ("upstream_ca", &p.upstream_ca),
            ("signing_key", &p.signing_key),
        ] {
            if let Some(f) = f {
                named.push((at(key), f, Want::File));
            }
        }
    }
    if let Some(f) = &cfg.keys.guard_key {
        named.push((vec![k("keys"), k("guard_key")], f, Want::File));
    }
    if let Some(a) = &cfg.audit {
        named.push((vec![k("audit"), k("key_file")], &a.key_file, Want::File));
        if let Some(s) = &a.syslog {
            let at = |key: &str| vec![k("audit"), k("syslog"), k(key)];
            named.push((at("ca_file"), &s.ca_file, Want::File));
            for (key, f) in [
                ("client_cert", &s.client_cert),
                ("client_key", &s.client_key),
            ] {
                if let Some(f) = f {
                    named.push((at(key), f, Want::File));
                }
            }
        }
    }
    if let Some(o) = &cfg.outbound {
        if let Some(f) = &o.proxy_secret_file {
            named.push((vec![k("outbound"), k("proxy_secret_file")], f, Want::File));
        }
        if let Some(d) = &o.interception_ca_dir {
            named.push((vec![k("outbound"), k("interception_ca_dir")], d, Want::Dir));
        }
        for (i, f) in o.roots.iter().enumerate() {
            named.push((
                vec![k("outbound"), k("roots"), Seg::Index(i)],
                f,
                Want::File,
            ));
        }
    }
    if let Some(d) = &cfg.dlp {
        named.push((vec![k("dlp"), k("policies")], &d.policies, Want::Any));
    }
    // `[ti]`: the trust anchors and secrets must be there; the list file may be written by
    // another process later and the state directory is created (neither is required here).
    if let Some(t) = &cfg.ti {
        named.push((vec![k("ti"), k("tsl_roots")], &t.tsl_roots, Want::File));
        for (i, f) in t.intermediates.iter().enumerate() {
            named.push((
                vec![k("ti"), k("intermediates"), Seg::Index(i)],
                f,
                Want::File,
            ));
        }
        for (key, f) in [("vzd_token_file", &t.vzd_token_file), ("vzd_ca", &t.vzd_ca)] {
            if let Some(f) = f {
                named.push((vec![k("ti"), k(key)], f, Want::File));
            }
        }
        for (i, h) in t.homeserver.iter().enumerate() {
            for (key, f) in [
                ("client_tls_cert", &h.client_tls_cert),
                ("client_tls_key", &h.client_tls_key),
            ] {
                if let Some(f) = f {
                    named.push((
                        vec![k("ti"), k("homeserver"), Seg::Index(i), k(key)],
                        f,
                        Want::File,
                    ));
                }
            }
        }
    }
    for (i, p) in cfg.admin.principal.iter().enumerate() {
        for (key, f) in [
            ("token_file", &p.token_file),
            ("clearance_file", &p.clearance_file),
        ] {
            if let Some(f) = f {
                named.push((
                    vec![k("admin"), k("principal"), Seg::Index(i), k(key)],
                    f,
                    Want::File,
                ));
            }
        }
    }
    if let Some(t) = &cfg.admin.tls {
        for (key, f) in [
            ("cert_file", Some(&t.cert_file)),
            ("key_file", Some(&t.key_file)),
            ("client_ca_file", t.client_ca_file.as_ref()),
        ] {
            if let Some(f) = f {
                named.push((vec![k("admin"), k("tls"), k(key)], f, Want::File));
            }
        }
    }
    if let Some(l) = &cfg.labels {
        for (i, f) in l.spifs.iter().enumerate() {
            named.push((vec![k("labels"), k("spifs"), Seg::Index(i)], f, Want::File));
        }
        for (name, side) in [("protected", &l.protected), ("remote", &l.remote)] {
            for (key, f) in [
                ("default_label_file", &side.default_label_file),
                ("clearance_file", &side.clearance_file),
            ] {
                if let Some(f) = f {
                    named.push((vec![k("labels"), k(name), k(key)], f, Want::File));
                }
            }
        }
        for (i, p) in l.peer.iter().enumerate() {
            if let Some(f) = &p.clearance_file {
                named.push((
                    vec![k("labels"), k("peer"), Seg::Index(i), k("clearance_file")],
                    f,
                    Want::File,
                ));
            }
        }
    }
    for (at, path, want) in named {
        if let Some(problem) = path_problem(path, want) {
            ctx.error(
                value_span(root, &at),
                format!("`{}` = {}: {problem}", render("", &at), path.display()),
            );
        }
    }
}

fn path_problem(path: &Path, want: Want) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("does not exist".into()),
        Err(e) => return Some(e.to_string()),
    };
    match want {
        Want::File if !meta.is_file() => return Some("is not a file".into()),
        Want::Dir if !meta.is_dir() => return Some("is not a directory".into()),
        _ => {}
    }
    let readable = if meta.is_dir() {
        std::fs::read_dir(path).map(|_| ())
    } else {
        std::fs::File::open(path).map(|_| ())
    };
    readable.err().map(|e| format!("cannot be read: {e}"))
}

fn finish(ctx: Ctx<'_>) -> ConfigErrors {
    let mut errors = ctx.errors;
    // Positioned errors first, in file order; the sort is stable.
    errors.sort_by_key(|(offset, _)| offset.unwrap_or(usize::MAX));
    ConfigErrors {
        errors: errors.into_iter().map(|(_, e)| e).collect(),
    }
}

/// Cross-field checks.
fn check(cfg: &Config, root: Node<'_>, ctx: &mut Ctx<'_>, protected_ok: bool, outbound_ok: bool) {
    // The TI origin check is only as good as the X-Matrix signature behind it.
    if let (Some(_), Some(i)) = (&cfg.ti, &cfg.inbound) {
        if !i.verify_signatures {
            ctx.error(
                value_span(root, &[k("inbound"), k("verify_signatures")]),
                "`[ti]` needs `inbound.verify_signatures = true`: the federation list is checked against the signed X-Matrix origin".to_string(),
            );
        }
    }
    // [[ti.homeserver]] names protected servers.
    if let (Some(t), true) = (&cfg.ti, protected_ok) {
        for (i, h) in t.homeserver.iter().enumerate() {
            if !cfg
                .protected
                .iter()
                .any(|p| p.server_name.eq_ignore_ascii_case(&h.server_name))
            {
                ctx.error(
                    value_span(
                        root,
                        &[k("ti"), k("homeserver"), Seg::Index(i), k("server_name")],
                    ),
                    format!(
                        "`ti.homeserver[{i}].server_name` `{}` is not a [[protected]] server_name",
                        h.server_name
                    ),
                );
            }
        }
    }
    // [[protected]]
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, p) in cfg.protected.iter().enumerate() {
        let at = |key: &str| vec![k("protected"), Seg::Index(i), k(key)];
        if let Err(e) = ServerName::parse(&p.server_name) {
            ctx.error(
                value_span(root, &at("server_name")),
                format!("invalid value for `protected[{i}].server_name`: {e}"),
            );
        }
        if let Some(first) = seen.insert(p.server_name.to_ascii_lowercase(), i) {
            ctx.error(
                value_span(root, &at("server_name")),
                format!(
                    "duplicate protected server_name `{}` (also in `protected[{first}]`)",
                    p.server_name
                ),
            );
        }
        let low = cfg
            .split
            .as_ref()
            .is_some_and(|s| s.half == super::split::HalfName::Low);
        if low {
            // The LOW half never reaches a HIGH server, and never holds its keys: a
            // compromised LOW half must not be able to speak as one.
            for (key, set) in [
                ("upstream", !p.upstream.is_empty()),
                ("signing_key", p.signing_key.is_some()),
                ("admin_api", p.admin_api.is_some()),
                ("admin_token_file", p.admin_token_file.is_some()),
            ] {
                if set {
                    ctx.error(
                        value_span(root, &at(key)),
                        format!("`protected[{i}].{key}` is not allowed on the LOW half of a split appliance (it never reaches the protected server and holds none of its keys)"),
                    );
                }
            }
        } else if p.upstream.is_empty() {
            ctx.error(
                key_span(root, &[k("protected"), Seg::Index(i)]),
                format!("missing required key `protected[{i}].upstream`"),
            );
        } else if let Err(e) = parse_upstream(&p.upstream) {
            ctx.error(
                value_span(root, &at("upstream")),
                format!("invalid value for `protected[{i}].upstream`: {e}"),
            );
        }
        if let Some(a) = &p.admin_api {
            if let Err(e) = parse_upstream(a) {
                ctx.error(
                    value_span(root, &at("admin_api")),
                    format!("invalid value for `protected[{i}].admin_api`: {e}"),
                );
            }
        }
        if p.admin_api.is_some() != p.admin_token_file.is_some() {
            ctx.error(
                key_span(
                    root,
                    &at(if p.admin_api.is_some() {
                        "admin_api"
                    } else {
                        "admin_token_file"
                    }),
                ),
                format!("`protected[{i}].admin_api` and `admin_token_file` go together"),
            );
        }
    }
    if cfg.inbound.as_ref().is_some_and(|i| i.verify_signatures)
        && cfg.outbound.is_none()
        && outbound_ok
    {
        ctx.error(
            key_span(root, &[k("inbound")]),
            "`[inbound] verify_signatures` (default true) needs `[outbound]` to fetch remote keys; configure `[outbound]` or set `verify_signatures = false`",
        );
    }
    if cfg.keys.notary_name.is_some() && cfg.keys.guard_key.is_none() {
        ctx.error(
            value_span(root, &[k("keys"), k("notary_name")]),
            "`[keys] notary_name` needs `[keys] guard_key` (the notary signs with it)",
        );
    }
    if let Some(n) = &cfg.keys.notary_name {
        if let Err(e) = ruma::ServerName::parse(n) {
            ctx.error(
                value_span(root, &[k("keys"), k("notary_name")]),
                format!("invalid value for `keys.notary_name`: {e}"),
            );
        }
    }
    // PDUs enter the protected side in inbound requests (and in responses to outbound
    // requests, where `[outbound]` exists and keys can be fetched).
    if cfg.keys.verify_pdus && cfg.inbound.is_some() && cfg.outbound.is_none() && outbound_ok {
        let at = key_span(root, &[k("keys")]).or_else(|| key_span(root, &[k("inbound")]));
        ctx.error(
            at,
            "`[keys] verify_pdus` (default true) needs `[outbound]` to fetch the keys of the servers that signed PDUs; configure `[outbound]` or set `verify_pdus = false`",
        );
    }
    if let Some(sp) = &cfg.split {
        let anchor = key_span(root, &[k("split")]);
        match sp.half {
            super::split::HalfName::High => {
                if cfg.inbound.is_some() {
                    ctx.error(
                        key_span(root, &[k("inbound")]).or_else(|| anchor.clone()),
                        "`[inbound]` is not allowed on the HIGH half: remote servers reach the LOW half",
                    );
                }
            }
            super::split::HalfName::Low => {
                if cfg.inbound.is_none() {
                    ctx.error(
                        anchor.clone(),
                        "the LOW half needs `[inbound]`: remote servers reach the protected servers through it",
                    );
                }
                if let Some(o) = &cfg.outbound {
                    if o.connect_listen.is_some() || o.proxy_listen.is_some() {
                        ctx.error(
                            key_span(root, &[k("outbound")]).or_else(|| anchor.clone()),
                            "`[outbound]` listeners are not allowed on the LOW half: the protected servers send through the HIGH half",
                        );
                    }
                }
            }
        }
        if cfg.keys.notary_name.is_some() {
            ctx.error(
                value_span(root, &[k("keys"), k("notary_name")]).or_else(|| anchor.clone()),
                "`[keys] notary_name` is not supported on a split appliance",
            );
        }
        if cfg.ti.is_some() {
            ctx.error(
                key_span(root, &[k("ti")]).or_else(|| anchor.clone()),
                "`[ti]` is not supported on a split appliance",
            );
        }
    }
    if cfg.inbound.is_some() && cfg.protected.is_empty() && protected_ok {
        ctx.error(
            key_span(root, &[k("inbound")]),
            "`[inbound]` needs at least one `[[protected]]` server",
        );
    }

    // [[rule]]: each rule must compile on its own (and ids must be unique).
    let mut rule_ids: HashMap<&str, usize> = HashMap::new();
    for (i, r) in cfg.rules.iter().enumerate() {
        let at = |key: &str| vec![k("rule"), Seg::Index(i), k(key)];
        if let Some(first) = rule_ids.insert(r.id.as_str(), i) {
            ctx.error(
                value_span(root, &at("id")),
                format!("duplicate rule id `{}` (also in `rule[{first}]`)", r.id),
            );
        }
        if let Some(e) = r.problem() {
            let key = if r.regex.is_some() { "regex" } else { "id" };
            ctx.error(
                value_span(root, &at(key)),
                format!("invalid `rule[{i}]`: {e}"),
            );
        }
    }

    // [[route]]
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let at = |key: &str| vec![k("route"), Seg::Index(i), k(key)];
        if let Err(e) = ServerName::parse(&r.server_name) {
            ctx.error(
                value_span(root, &at("server_name")),
                format!("invalid value for `route[{i}].server_name`: {e}"),
            );
        }
        if let Some(first) = seen.insert(r.server_name.to_ascii_lowercase(), i) {
            ctx.error(
                value_span(root, &at("server_name")),
                format!(
                    "duplicate route server_name `{}` (also in `route[{first}]`)",
                    r.server_name
                ),
            );
        }
        if let Some(name) = &r.tls_name {
            if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                ctx.error(
                    value_span(root, &at("tls_name")),
                    format!(
                        "invalid value for `route[{i}].tls_name`: `{name}` is not a DNS name or IP address"
                    ),
                );
            }
        }
    }

    if cfg.limits.decision_timeout_ms == 0 {
        let path = [k("limits"), k("decision_timeout_ms")];
        ctx.error(
            value_span(root, &path),
            "`limits.decision_timeout_ms` must be greater than 0".to_string(),
        );
    }
    // [admission] (also against [limits])
    for (key, msg) in cfg.admission.check(cfg.limits.max_request_body) {
        let path = [k("admission"), k(key)];
        ctx.error(
            value_span(root, &path).or_else(|| key_span(root, &[k("admission")])),
            msg,
        );
    }
    // [notices] (also against [[protected]]: notices need the homeserver's admin API)
    for (key, msg) in cfg.notices.check() {
        let path = [k("notices"), k(key)];
        ctx.error(
            value_span(root, &path).or_else(|| key_span(root, &[k("notices")])),
            msg,
        );
    }
    if cfg.notices.enabled {
        for (i, p) in cfg.protected.iter().enumerate() {
            if p.admin_api.is_none() || p.admin_token_file.is_none() {
                ctx.error(
                    key_span(root, &[k("protected"), Seg::Index(i)])
                        .or_else(|| key_span(root, &[k("notices")])),
                    format!(
                        "`notices.enabled` needs `protected[{i}].admin_api` and `admin_token_file` (notices go through the homeserver's admin API)"
                    ),
                );
            }
        }
    }
    // [review]
    for (key, msg) in cfg.review.check() {
        let path = [k("review"), k(key)];
        ctx.error(
            value_span(root, &path).or_else(|| key_span(root, &[k("review")])),
            msg,
        );
    }
    // [opaque] (also against [labels], wherever it is in the file)
    for (key, index, msg) in cfg.opaque.check(key_span(root, &[k("labels")]).is_some()) {
        let mut path = vec![k("opaque"), k(key)];
        path.extend(index.map(Seg::Index));
        ctx.error(
            value_span(root, &path).or_else(|| key_span(root, &[k("opaque")])),
            msg,
        );
    }
    // [labels] marking_detector reads the DLP rule set
    if let Some(l) = cfg
        .labels
        .as_ref()
        .filter(|l| l.marking_detector.uses_dlp())
    {
        if cfg.dlp.is_none() {
            ctx.error(
                value_span(root, &[k("labels"), k("marking_detector")]),
                format!("`labels.marking_detector = \"{}\"` needs `[dlp] policies` (the rules with a `classification`)", if l.marking_detector.uses_spif() { "both" } else { "dlp" }),
            );
        }
    }

    // [outbound]
    if let (Some(o), true) = (&cfg.outbound, outbound_ok) {
        check_outbound(o, root, ctx);
    }

    // [store]
    check_store(&cfg.store, root, ctx);

    // [policy]
    let p = &cfg.policy;
    for (list, names) in [
        ("allow_servers", &p.allow_servers),
        ("deny_servers", &p.deny_servers),
    ] {
        for (j, name) in names.iter().enumerate() {
            if let Err(e) = ServerName::parse(name) {
                ctx.error(
                    value_span(root, &[k("policy"), k(list), Seg::Index(j)]),
                    format!("invalid value for `policy.{list}[{j}]`: {e}"),
                );
            }
        }
    }
    let allowed: HashSet<String> = p
        .allow_servers
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    for (j, name) in p.deny_servers.iter().enumerate() {
        if allowed.contains(&name.to_ascii_lowercase()) {
            ctx.error(
                value_span(root, &[k("policy"), k("deny_servers"), Seg::Index(j)]),
                format!(
                    "server `{name}` is in both `policy.allow_servers` and `policy.deny_servers`"
                ),
            );
        }
    }
}

fn check_outbound(o: &OutboundConfig, root: Node<'_>, ctx: &mut Ctx<'_>) {
    let at = |key: &str| vec![k("outbound"), k(key)];
    if o.connect_listen.is_some() && o.interception_ca_dir.is_none() {
        ctx.error(
            key_span(root, &at("connect_listen")),
            "`outbound.connect_listen` requires `outbound.interception_ca_dir` \
             (create one with `grenzwacht ca init --dir DIR`)",
        );
    }
    match (&o.proxy_secret, &o.proxy_secret_file) {
        (Some(_), Some(_)) => ctx.error(
            key_span(root, &at("proxy_secret_file")),
            "set only one of `outbound.proxy_secret` and `outbound.proxy_secret_file`",
        ),
        (None, None) if o.proxy_listen.is_some() => ctx.error(
            key_span(root, &at("proxy_listen")),
            "`outbound.proxy_listen` requires `outbound.proxy_secret` or \
             `outbound.proxy_secret_file`",
        ),
        // CONNECT clients authenticate with the same secret (Basic, any user name), unless the
        // operator says otherwise: without it any process among `allowed_clients` can use the
        // guard's outbound path.
        (None, None) if o.connect_listen.is_some() && !o.allow_unauthenticated_connect => ctx
            .error(
                key_span(root, &at("connect_listen")),
                "`outbound.connect_listen` requires `outbound.proxy_secret` or \
             `outbound.proxy_secret_file` (CONNECT clients send it as Basic credentials: \
             `https_proxy=http://guard:SECRET@host:port`); set \
             `allow_unauthenticated_connect = true` to run without",
            ),
        (Some(s), None) if s.trim().is_empty() => ctx.error(
            value_span(root, &at("proxy_secret")),
            "`outbound.proxy_secret` must not be empty",
        ),
        _ => {}
    }
    let listener = if o.connect_listen.is_some() {
        Some("connect_listen")
    } else if o.proxy_listen.is_some() {
        Some("proxy_listen")
    } else {
        None
    };
    if let (Some(listener), true) = (listener, o.allowed_clients.is_empty()) {
        let span = key_span(root, &at("allowed_clients")).or_else(|| key_span(root, &at(listener)));
        ctx.error(
            span,
            format!(
                "`outbound.{listener}` requires a non-empty `outbound.allowed_clients` \
                 (e.g. [\"127.0.0.1/32\"])"
            ),
        );
    }
    if o.leaf_validity_secs < MIN_LEAF_VALIDITY_SECS {
        ctx.error(
            value_span(root, &at("leaf_validity_secs")),
            format!(
                "`outbound.leaf_validity_secs` must be at least {MIN_LEAF_VALIDITY_SECS}, got {}",
                o.leaf_validity_secs
            ),
        );
    }
    for (name, v) in [
        ("connect_timeout_ms", o.connect_timeout_ms),
        ("first_byte_timeout_ms", o.first_byte_timeout_ms),
        ("request_timeout_ms", o.request_timeout_ms),
    ] {
        if v == 0 {
            ctx.error(
                value_span(root, &at(name)),
                format!("`outbound.{name}` must be greater than 0"),
            );
        }
    }
}

fn check_store(s: &StoreConfig, root: Node<'_>, ctx: &mut Ctx<'_>) {
    let at = |key: &str| vec![k("store"), k(key)];
    if s.path.as_os_str().is_empty() {
        ctx.error(
            value_span(root, &at("path")),
            "`store.path` must not be empty",
        );
    } else if s.path.file_name().is_none() || s.path.to_string_lossy().ends_with('/') {
        ctx.error(
            value_span(root, &at("path")),
            "`store.path` must name a file, not a directory",
        );
    }
    if s.txn_retention_hours < MIN_TXN_RETENTION_HOURS {
        ctx.error(
            value_span(root, &at("txn_retention_hours")),
            format!(
                "`store.txn_retention_hours` must be at least {MIN_TXN_RETENTION_HOURS}, got {}",
                s.txn_retention_hours
            ),
        );
    }
}

fn resolve_paths(cfg: &mut Config, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    for p in &mut cfg.protected {
        fix(&mut p.cert);
        fix(&mut p.key);
        p.upstream_ca.as_mut().map(fix);
        p.signing_key.as_mut().map(fix);
        p.admin_token_file.as_mut().map(fix);
    }
    cfg.keys.guard_key.as_mut().map(fix);
    if let Some(o) = &mut cfg.outbound {
        o.proxy_secret_file.as_mut().map(fix);
        o.interception_ca_dir.as_mut().map(fix);
        o.roots.iter_mut().for_each(fix);
    }
    fix(&mut cfg.store.path);
    super::admin::resolve_paths(&mut cfg.admin.principal, cfg.admin.tls.as_mut(), base);
    if let Some(d) = cfg.dlp.as_mut() {
        fix(&mut d.policies);
    }
}
