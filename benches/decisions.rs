//! The cost of decision records on the `/send` path: one transaction of 50 `m.room.message`
//! PDUs (~200 bytes of German text each, every tenth with a marking) judged by the shipped
//! DLP rule set.
//!
//! * `judge_only`: `Layers::pdu` for each PDU — the scans alone, what the policy costs without
//!   `check_units` or records (a lower bound of the old `decide`).
//! * `decide`: `policy::decide` — the guard's path: `check_units` over the recording wrapper,
//!   records assembled, `grenzwacht_decisions_total` counted, decision lines for the redacted
//!   PDUs (no subscriber: not written).
//! * `decide_recorded`: `policy::decide_recorded` with a sink (what an audit log takes); the
//!   PDUs carry no `event_id` and no room gate is given, so no reference hashes are computed.
//! * `decide_recorded_ids`: the same with a room gate that computes every PDU's event id
//!   (reference hash, room version 10), as the guard's gate does when records are taken.
//!
//! Run: `cargo bench --bench decisions` (or `-- --quick`).
use std::sync::Arc;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use grenzwacht::federation::catalog;
use grenzwacht::federation::pdu::PduView;
use grenzwacht::policy::dlp::layer::DlpPolicy;
use grenzwacht::policy::dlp::RuleSet;
use grenzwacht::policy::pause::RoomGate;
use grenzwacht::policy::{
    decide, decide_recorded, Direction, ExchangeCtx, Forward, Layers, Policy, Refusal, Rewrite,
    Units, Verdicts,
};
use serde_json::{json, value::RawValue};

/// A room gate with no paused rooms that computes event ids (room version 10).
struct Ids;
impl RoomGate for Ids {
    fn room(&self, _: &RawValue, room_id: Option<&str>) -> Option<String> {
        room_id.map(str::to_string)
    }
    fn is_paused(&self, _: Direction, _: &str) -> bool {
        false
    }
    fn redacted(&self, _: &RawValue, _: &str) -> Option<Box<RawValue>> {
        None
    }
    fn pause(&self, _: Direction, _: &str, _: &RawValue, _: &str) {}
    fn withheld(&self, _: Direction, _: &str, _: &'static str) {}
    fn event_id(&self, raw: &RawValue, _: Option<&str>) -> Option<String> {
        let rules = ruma::RoomVersionId::V10.rules()?;
        let obj: ruma::CanonicalJsonObject = serde_json::from_str(raw.get()).ok()?;
        ruma::signatures::reference_hash(&obj, &rules)
            .ok()
            .map(|h| format!("${h}"))
    }
}

struct Unchanged;
impl Rewrite<Forward> for Unchanged {
    fn rewrite(&self, item: Forward, _: &Verdicts) -> Result<Forward, Refusal> {
        Ok(item)
    }
}

fn bench(c: &mut Criterion) {
    let set = RuleSet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap();
    let layers = Layers::new().with("dlp", Arc::new(DlpPolicy::new(set.engine())));
    let raws: Vec<Box<RawValue>> = (0..50)
        .map(|i| {
            let body = if i % 10 == 3 {
                format!("Lagebericht {i}: GEHEIM – bitte nicht weitergeben, Treffen morgen um zehn im Raum 4.12, Unterlagen liegen bereit.")
            } else {
                format!("Nachricht {i}: Die Besprechung zur Planung findet morgen um zehn Uhr im Raum 4.12 statt, Unterlagen liegen bereit.")
            };
            RawValue::from_string(
                json!({"type": "m.room.message", "room_id": "!r:hs1.test", "sender": "@alice:hs1.test",
                       "origin_server_ts": 1_700_000_000_000u64 + i, "depth": i, "auth_events": [],
                       "prev_events": [], "hashes": {"sha256": "x"}, "signatures": {},
                       "content": {"msgtype": "m.text", "body": body}})
                .to_string(),
            )
            .unwrap()
        })
        .collect();
    let units = Units {
        pdus: raws.iter().map(|r| PduView::parse(r).unwrap()).collect(),
        pdu_pos: (0..50).collect(),
        ..Default::default()
    };
    let ctx = ExchangeCtx {
        direction: Direction::Outbound,
        endpoint: catalog::by_id("send_transaction").unwrap(),
        peer: Some("hs2.test".into()),
        protected: "hs1.test".into(),
        txn_id: Some("t".into()),
    };
    let fwd = Forward {
        method: http::Method::PUT,
        path_and_query: "/_matrix/federation/v1/send/t".into(),
        headers: http::HeaderMap::new(),
        body: Bytes::from_static(b"{}"),
    };
    let mut g = c.benchmark_group("decisions/txn_50");
    g.throughput(Throughput::Elements(50));
    g.bench_function("judge_only", |b| {
        b.iter(|| {
            for p in &units.pdus {
                black_box(layers.pdu(&ctx, p));
            }
        })
    });
    g.bench_function("decide", |b| {
        b.iter(|| black_box(decide(&layers, &ctx, &units, fwd.clone(), &Unchanged).is_ok()))
    });
    g.bench_function("decide_recorded", |b| {
        b.iter(|| {
            let mut records = Vec::with_capacity(50);
            let ok = decide_recorded(
                &layers,
                &ctx,
                &units,
                fwd.clone(),
                &Unchanged,
                Some(&mut records),
            )
            .is_ok();
            black_box((ok, records.len()))
        })
    });
    let gate = Ids;
    let with_gate = Units {
        pdus: units.pdus.clone(),
        pdu_pos: units.pdu_pos.clone(),
        rooms: Some(&gate),
        ..Default::default()
    };
    g.bench_function("decide_recorded_ids", |b| {
        b.iter(|| {
            let mut records = Vec::with_capacity(50);
            let ok = decide_recorded(
                &layers,
                &ctx,
                &with_gate,
                fwd.clone(),
                &Unchanged,
                Some(&mut records),
            )
            .is_ok();
            assert!(records[0].event_id.is_some());
            black_box((ok, records.len()))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
