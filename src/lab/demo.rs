//! `grenzwacht lab demo`: a scripted conversation between alice@hs1 and bob@hs2 through the
//! guard, then what the guard saw (its `grenzwacht_requests_total` counters and label
//! decisions).
//!
//! The demo starts the lab with security labels on (`LabOptions::labels`: hs1's side DEU-VS,
//! hs2's side NATO, hs2 cleared for NATO RESTRICTED releasable to DEU): a message labeled
//! VS-NfD crosses, one labeled GEHEIM arrives redacted by the label layer (`label:deny`, read
//! back from the guard's `grenzwacht_label_decisions_total`). Messages that carry a marking
//! carry the matching label, so the label layer finds them consistent and the DLP steps show
//! what the DLP rules do. A running lab without labels is reused without the label steps.
//!
//! Users are registered by shared secret, or logged in when they exist (a kept lab can run the
//! demo again). Every step is printed with its duration; the lab is stopped at the end unless
//! `keep` is set — also when a step fails, so a failed demo leaves no processes behind.
use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::json;

use super::client::{ClientError, MatrixClient, Session};
use super::{down, is_running, metrics, up, LabError, LabInfo, LabOptions};

/// How long each federated step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const ALICE_PASSWORD: &str = "lab-alice-password";
const BOB_PASSWORD: &str = "lab-bob-password";

/// Options of [`demo`].
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How to start the lab if it is not running.
    pub lab: LabOptions,
    /// Leave the lab running afterwards.
    pub keep: bool,
}

async fn step<T, Fut>(n: &mut u32, what: &str, fut: Fut) -> Result<T, LabError>
where
    Fut: Future<Output = Result<T, ClientError>>,
{
    *n += 1;
    let t0 = Instant::now();
    print!("[{n:>2}] {what} … ");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let r = fut.await;
    match &r {
        Ok(_) => println!("ok ({} ms)", t0.elapsed().as_millis()),
        Err(e) => println!("FAILED: {e}"),
    }
    Ok(r?)
}

async fn user(
    c: &MatrixClient,
    secret: &str,
    name: &str,
    password: &str,
) -> Result<Session, ClientError> {
    match c
        .register_shared_secret(secret, name, password, false)
        .await
    {
        Ok(s) => Ok(s),
        Err(e) if e.errcode() == Some("M_USER_IN_USE") => c.login(name, password).await,
        Err(e) => Err(e),
    }
}

/// The content key of security labels (`[labels] event_key` of the lab).
const LABEL_KEY: &str = crate::config::labels::DEFAULT_EVENT_KEY;

/// A DEU-VS label (JSON form) of classification `class`, releasable to DEU.
fn deu_label(class: u64) -> serde_json::Value {
    use super::guard::LAB_DEU_POLICY;
    json!({"policy": LAB_DEU_POLICY, "classification": class, "categories": [
        {"tag_set": format!("{LAB_DEU_POLICY}.1"), "type": "permissive", "lacv": 276}]})
}

/// A text message, labeled when `label` is given.
fn text(body: &str, label: Option<serde_json::Value>) -> serde_json::Value {
    let mut c = json!({"msgtype": "m.text", "body": body});
    if let Some(l) = label {
        c[LABEL_KEY] = l;
    }
    c
}

/// Whether the lab's guard runs with `[labels]`.
fn labels_on(info: &LabInfo) -> bool {
    crate::config::Config::load(info.dir.join("guard.toml")).is_ok_and(|c| c.labels.is_some())
}

/// The guard's label decisions with `outcome` (`grenzwacht_label_decisions_total`).
async fn label_decisions(info: &LabInfo, outcome: &str) -> Result<u64, ClientError> {
    let r = MatrixClient::new(&info.guard.admin_url)
        .raw("GET", "/metrics", None, None, Duration::from_secs(10))
        .await?;
    Ok(metrics::parse(&String::from_utf8_lossy(&r.body))
        .iter()
        .filter(|s| {
            s.name == crate::policy::labels::LABEL_DECISIONS_TOTAL && s.label("outcome") == outcome
        })
        .map(|s| s.value as u64)
        .sum())
}

/// Security labels: a VS-NfD message crosses, a GEHEIM one arrives redacted (`label:deny`).
async fn labeled(
    info: &LabInfo,
    alice: &Session,
    bob: &Session,
    room: &str,
    n: &mut u32,
) -> Result<(), LabError> {
    println!("     security labels: hs1 DEU-VS, hs2 NATO, cleared for NATO RESTRICTED, releasable to DEU");
    let nfd = text(
        "Lagebild Nord: ruhig, keine Vorkommnisse.",
        Some(deu_label(2)),
    );
    let id = step(
        n,
        "alice says \"Lagebild Nord: …\" labeled VS-NfD, releasable to DEU",
        alice.send_event(room, "m.room.message", &nfd),
    )
    .await?;
    let seen = step(
        n,
        "bob receives it on hs2",
        bob.wait_for_event(room, &id, STEP_TIMEOUT),
    )
    .await?;
    let released = seen["content"] == nfd;
    println!(
        "     content at hs2: {} → {}",
        seen["content"]["body"],
        if released {
            "released: VS-NfD ≙ NATO RESTRICTED, for which hs2 is cleared"
        } else {
            "UNEXPECTED: not released intact"
        }
    );
    let before = label_decisions(info, "label:deny").await?;
    let geheim = text(
        "Lagebild Süd: Einzelheiten in der Anlage.",
        Some(deu_label(4)),
    );
    let id = step(
        n,
        "alice says \"Lagebild Süd: …\" labeled GEHEIM, releasable to DEU",
        alice.send_event(room, "m.room.message", &geheim),
    )
    .await?;
    let seen = step(
        n,
        "bob receives that event on hs2",
        bob.wait_for_event(room, &id, STEP_TIMEOUT),
    )
    .await?;
    let after = label_decisions(info, "label:deny").await?;
    if seen["content"] == json!({}) && after > before {
        println!(
            "     content at hs2: {} → redacted by the label layer (rule label:deny: GEHEIM ≙ NATO SECRET, above hs2's clearance; {} {{outcome=\"label:deny\"}} {before} → {after})",
            seen["content"],
            crate::policy::labels::LABEL_DECISIONS_TOTAL
        );
    } else {
        println!(
            "     content at hs2: {} → UNEXPECTED: not redacted by label:deny",
            seen["content"]
        );
    }
    Ok(())
}

async fn conversation(info: &LabInfo, labels: bool) -> Result<(), LabError> {
    let (hs1, hs2) = (info.hs1(), info.hs2());
    let c1 = MatrixClient::new(&hs1.client_url);
    let c2 = MatrixClient::new(&hs2.client_url);
    let mut n = 0;
    let alice = step(
        &mut n,
        &format!("register alice on hs1 ({})", hs1.server_name),
        user(
            &c1,
            &hs1.registration_shared_secret,
            "alice",
            ALICE_PASSWORD,
        ),
    )
    .await?;
    let bob = step(
        &mut n,
        &format!("register bob on hs2 ({})", hs2.server_name),
        user(&c2, &hs2.registration_shared_secret, "bob", BOB_PASSWORD),
    )
    .await?;
    step(
        &mut n,
        "bob sets his display name",
        bob.set_displayname("Bob (hs2)"),
    )
    .await?;
    let room = step(
        &mut n,
        "alice creates a room",
        alice.create_room(&json!({"preset": "private_chat", "name": "grenzwacht lab demo"})),
    )
    .await?;
    println!("     room {room}");
    step(
        &mut n,
        &format!("alice invites {}", bob.user_id),
        alice.invite(&room, &bob.user_id),
    )
    .await?;
    step(
        &mut n,
        "bob receives the invite (hs1 → guard → hs2)",
        bob.wait_for_invite(&room, STEP_TIMEOUT),
    )
    .await?;
    step(
        &mut n,
        "bob joins via hs1 (make_join / send_join through the guard)",
        bob.join(&room, &[&hs1.server_name]),
    )
    .await?;
    step(
        &mut n,
        "alice sees bob joined",
        alice.wait_for_member(&room, &bob.user_id, STEP_TIMEOUT),
    )
    .await?;
    let a_text = "Hallo Bob, this message crossed the guard.";
    step(
        &mut n,
        &format!("alice says {a_text:?}"),
        alice.send_text(&room, a_text),
    )
    .await?;
    step(
        &mut n,
        "bob reads it on hs2",
        bob.wait_for_text(&room, &alice.user_id, a_text, STEP_TIMEOUT),
    )
    .await?;
    let b_text = "Hi Alice, and so did this reply.";
    step(
        &mut n,
        &format!("bob replies {b_text:?}"),
        bob.send_text(&room, b_text),
    )
    .await?;
    step(
        &mut n,
        "alice reads it on hs1",
        alice.wait_for_text(&room, &bob.user_id, b_text, STEP_TIMEOUT),
    )
    .await?;
    let profile = step(
        &mut n,
        &format!("alice looks up {}'s profile (query/profile)", bob.user_id),
        alice.profile(&bob.user_id),
    )
    .await?;
    println!("     displayname: {}", profile["displayname"]);

    if labels {
        labeled(info, &alice, &bob, &room, &mut n).await?;
    }
    // A marked message carries the matching label (the label layer finds it consistent).
    let geheim = || labels.then(|| deu_label(4));
    let labeled_as = |what: &str| {
        if labels {
            format!(" (labeled {what})")
        } else {
            String::new()
        }
    };

    // The guard's shipped DLP rule set redacts the marking GEHEIM in transit.
    let secret = "Lagebericht: GEHEIM – nicht weitergeben";
    let event_id = step(
        &mut n,
        &format!("alice says {secret:?}{}", labeled_as("GEHEIM")),
        alice.send_event(&room, "m.room.message", &text(secret, geheim())),
    )
    .await?;
    let seen = step(
        &mut n,
        "bob receives that event on hs2",
        bob.wait_for_event(&room, &event_id, STEP_TIMEOUT),
    )
    .await?;
    println!(
        "     same event id {event_id}; content at hs2: {}",
        seen["content"]
    );
    println!(
        "     → redacted in transit by the guard (rule {}), the room DAG stays intact",
        super::guard::LAB_RULE_ID
    );
    let after = "Und weiter geht's: dieser Satz ist unbedenklich.";
    step(
        &mut n,
        &format!("alice says {after:?}"),
        alice.send_text(&room, after),
    )
    .await?;
    step(
        &mut n,
        "bob reads it on hs2 (the conversation goes on)",
        bob.wait_for_text(&room, &alice.user_id, after, STEP_TIMEOUT),
    )
    .await?;

    // The guard reads text as a reader sees it: a zero-width space and look-alike letters do
    // not hide the marking.
    let hidden = "Lage G\u{200b}\u{415}H\u{415}\u{406}M (zero-width space, Cyrillic look-alikes)";
    let event_id = step(
        &mut n,
        &format!(
            "alice says \"Lage G<zero-width space>\u{415}H\u{415}\u{406}M\" (Cyrillic Е, Е, І){}",
            labeled_as("GEHEIM")
        ),
        alice.send_event(&room, "m.room.message", &text(hidden, geheim())),
    )
    .await?;
    let seen = step(
        &mut n,
        "bob receives that event on hs2",
        bob.wait_for_event(&room, &event_id, STEP_TIMEOUT),
    )
    .await?;
    println!(
        "     content at hs2: {} → redacted: normalised and look-alikes mapped, it reads GEHEIM",
        seen["content"]
    );

    // German PII with check digits: a valid IBAN is redacted, a broken check digit is not.
    let iban = "Bitte an DE89370400440532013000 überweisen";
    let event_id = step(
        &mut n,
        &format!("alice says {iban:?} (valid IBAN)"),
        alice.send_text(&room, iban),
    )
    .await?;
    let seen = step(
        &mut n,
        "bob receives that event on hs2",
        bob.wait_for_event(&room, &event_id, STEP_TIMEOUT),
    )
    .await?;
    println!(
        "     content at hs2: {} → redacted (rule pii.iban, mod-97 check digits valid)",
        seen["content"]
    );
    let typo = "Bitte an DE89370400440532013001 überweisen";
    step(
        &mut n,
        &format!("alice says {typo:?} (broken check digit)"),
        alice.send_text(&room, typo),
    )
    .await?;
    step(
        &mut n,
        "bob reads it intact on hs2 (not an IBAN)",
        bob.wait_for_text(&room, &alice.user_id, typo, STEP_TIMEOUT),
    )
    .await?;

    // Opaque content: the guard cannot read ciphertext, so by default (`[opaque] release =
    // "deny"`) it does not cross. (The lab has no E2EE client: the event carries a structurally
    // well-formed Megolm message made of random bytes.)
    let ct = crate::federation::e2ee::synthetic::megolm_content(0, 4);
    let event_id = step(
        &mut n,
        "alice sends an m.room.encrypted event (Megolm ciphertext)",
        alice.send_event(&room, "m.room.encrypted", &ct),
    )
    .await?;
    let seen = step(
        &mut n,
        "bob receives that event on hs2",
        bob.wait_for_event(&room, &event_id, STEP_TIMEOUT),
    )
    .await?;
    if labels {
        println!("     content at hs2: {} → redacted (rules {} and label:unlabeled_encrypted: ciphertext crosses only with a releasable cleartext label)", seen["content"], crate::policy::opaque::RULE_UNLABELED);
    } else {
        println!("     content at hs2: {} → redacted (rule {}: opaque content crosses only by explicit policy)", seen["content"], crate::policy::opaque::RULE_ENCRYPTED);
    }

    // An inbound reply with a marking: redacted before hs1, re-signed with the attested guard key.
    let reply = "Antwort: STRENG GEHEIM";
    // NATO TOP SECRET (≙ STRENG GEHEIM), NATO context: hs1's side is cleared for it.
    let cosmic = labels.then(|| {
        use super::guard::LAB_NATO_POLICY;
        json!({"policy": LAB_NATO_POLICY, "classification": 5, "categories": [
            {"tag_set": "1.3.26.1.4.4", "type": "permissive", "lacv": 1001}]})
    });
    let event_id = step(
        &mut n,
        &format!("bob replies {reply:?}{}", labeled_as("NATO TOP SECRET")),
        bob.send_event(&room, "m.room.message", &text(reply, cosmic)),
    )
    .await?;
    let seen = step(
        &mut n,
        "alice receives that event on hs1",
        alice.wait_for_event(&room, &event_id, STEP_TIMEOUT),
    )
    .await?;
    println!("     content at hs1: {} → redacted inbound by the shipped marking rules, re-signed with the guard key", seen["content"]);

    media(&alice, &bob, &room, &mut n).await?;
    review(info, &alice, &bob, &room, &mut n).await
}

/// Media: alice shares a PNG and a text file marked GEHEIM; bob downloads both through hs2,
/// which fetches them over federation through the guard. The PNG arrives byte-identical; the
/// marked file is refused (the guard read it: DLP on the file's text).
async fn media(alice: &Session, bob: &Session, room: &str, n: &mut u32) -> Result<(), LabError> {
    let png = crate::media::samples::docs::png(32, 32, None);
    let marked = "Lagebericht Nord\nEinstufung: GEHEIM\n".as_bytes().to_vec();
    for (file, ct, name, msgtype, released) in [
        (&png, "image/png", "karte.png", "m.image", true),
        (&marked, "text/plain", "notiz.txt", "m.file", false),
    ] {
        let mxc = step(
            n,
            &format!("alice uploads {name} on hs1"),
            alice.upload(file, ct, name),
        )
        .await?;
        let event = json!({"msgtype": msgtype, "body": name, "url": mxc,
            "info": {"mimetype": ct, "size": file.len()}});
        let event_id = step(
            n,
            &format!("alice shares {name} in the room"),
            alice.send_event(room, "m.room.message", &event),
        )
        .await?;
        step(
            n,
            "bob sees the event on hs2",
            bob.wait_for_event(room, &event_id, STEP_TIMEOUT),
        )
        .await?;
        let got = step(
            n,
            &format!("bob downloads {name} (hs2 fetches it through the guard)"),
            bob.download(&mxc),
        )
        .await?;
        let arrived = got.status == 200 && got.body[..] == file[..];
        match (arrived, released) {
            (true, true) => println!("     {name}: arrived byte-identical ({} bytes)", file.len()),
            (false, false) => println!(
                "     {name}: refused by the guard (bob gets {}; the file's text carries GEHEIM)",
                got.status
            ),
            (true, false) => println!("     {name}: UNEXPECTED: the marked file crossed"),
            (false, true) => println!("     {name}: UNEXPECTED: refused (bob gets {})", got.status),
        }
    }
    Ok(())
}

/// A call to the guard's admin API as the lab's reviewer (`lab.json` `guard.review_tokens`).
async fn admin_call(
    info: &LabInfo,
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ClientError> {
    let failed = |message: String| ClientError::Transport {
        method: method.to_string(),
        url: format!("{}{path}", info.guard.admin_url),
        message,
    };
    let token = info
        .guard
        .review_tokens
        .get("lab-reviewer")
        .ok_or_else(|| failed("no lab-reviewer token in lab.json".into()))?;
    let target = crate::admin::client::Target::new(&info.guard.admin_url, None, None, Some(token))
        .map_err(|e| failed(e.to_string()))?;
    let (status, body) = target
        .call(method.clone(), path, body)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        return Err(failed(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    serde_json::from_slice(&body).map_err(|e| failed(e.to_string()))
}

/// Waits until the event is held and returns its hold id.
async fn held(info: &LabInfo, event_id: &str) -> Result<i64, ClientError> {
    super::client::wait_until("the event in the review queue", STEP_TIMEOUT, || async {
        let list = admin_call(info, http::Method::GET, "/_grenzwacht/v1/holds", None).await?;
        let events = list["holds"].as_array().cloned().unwrap_or_default();
        Ok(events
            .iter()
            .find(|e| e["event_id"] == event_id)
            .and_then(|e| e["id"].as_i64()))
    })
    .await
}

/// Held for review: the shipped rule set holds VS-VERTRAULICH; a reviewer releases one message
/// (hs2 gets it unchanged, then the message that waited behind it) and rejects another (hs2
/// gets it redacted).
async fn review(
    info: &LabInfo,
    alice: &Session,
    bob: &Session,
    room: &str,
    n: &mut u32,
) -> Result<(), LabError> {
    let vs = "Lagebild VS-VERTRAULICH: Übung am Donnerstag";
    let held_id = step(n, &format!("alice says {vs:?}"), alice.send_text(room, vs)).await?;
    let hold = step(
        n,
        "the guard holds it for review (admin API: GET /_grenzwacht/v1/holds)",
        held(info, &held_id),
    )
    .await?;
    println!("     hold #{hold}: hs2 has not got it; the room waits towards hs2");
    let later = "Nachtrag: Treffpunkt Haupteingang";
    step(
        n,
        &format!("alice says {later:?} (waits behind the held message)"),
        alice.send_text(room, later),
    )
    .await?;
    step(
        n,
        &format!("reviewer lab-reviewer releases hold #{hold} (reason given)"),
        admin_call(
            info,
            http::Method::POST,
            &format!("/_grenzwacht/v1/holds/{hold}/release"),
            Some(json!({"reason": "Übungslage, freigegeben"})),
        ),
    )
    .await?;
    let seen = step(
        n,
        "bob receives the released message on hs2",
        bob.wait_for_event(room, &held_id, STEP_TIMEOUT),
    )
    .await?;
    println!(
        "     same event id, full content: {}",
        seen["content"]["body"]
    );
    step(
        n,
        "bob receives the message that waited behind it",
        bob.wait_for_text(room, &alice.user_id, later, STEP_TIMEOUT),
    )
    .await?;

    let vs2 = "VS-VERTRAULICH: Personalliste Lagezentrum";
    let rejected_id = step(
        n,
        &format!("alice says {vs2:?}"),
        alice.send_text(room, vs2),
    )
    .await?;
    let hold = step(n, "the guard holds it for review", held(info, &rejected_id)).await?;
    step(
        n,
        &format!("reviewer lab-reviewer rejects hold #{hold}"),
        admin_call(
            info,
            http::Method::POST,
            &format!("/_grenzwacht/v1/holds/{hold}/reject"),
            Some(json!({"reason": "Personaldaten verlassen das Netz nicht"})),
        ),
    )
    .await?;
    let seen = step(
        n,
        "bob receives it on hs2",
        bob.wait_for_event(room, &rejected_id, STEP_TIMEOUT),
    )
    .await?;
    println!(
        "     content at hs2: {} → redacted after the reviewer's rejection",
        seen["content"]
    );
    Ok(())
}

async fn print_guard_view(info: &LabInfo) -> Result<(), LabError> {
    let admin = MatrixClient::new(&info.guard.admin_url);
    let r = admin
        .raw("GET", "/metrics", None, None, Duration::from_secs(10))
        .await?;
    let samples = metrics::parse(&String::from_utf8_lossy(&r.body));
    let series = metrics::requests(&samples);
    println!(
        "\nWhat the guard saw ({}/metrics, {}):",
        info.guard.admin_url,
        metrics::REQUESTS_TOTAL
    );
    print!("{}", metrics::render_table(&series));
    println!(
        "  total: {} inbound, {} outbound",
        metrics::count(&series, Some("inbound"), None, None),
        metrics::count(&series, Some("outbound"), None, None)
    );
    println!(
        "\nDecisions by verdict ({}, every PDU, event, EDU, to-device message and field):",
        metrics::DECISIONS_TOTAL
    );
    print!(
        "{}",
        metrics::render_decisions(&metrics::decisions_by_verdict(&samples))
    );
    let mut label_rows: Vec<(&str, &str, u64)> = samples
        .iter()
        .filter(|s| s.name == crate::policy::labels::LABEL_DECISIONS_TOTAL)
        .map(|s| (s.label("direction"), s.label("outcome"), s.value as u64))
        .collect();
    if !label_rows.is_empty() {
        label_rows.sort();
        println!(
            "\nLabel decisions ({}):",
            crate::policy::labels::LABEL_DECISIONS_TOTAL
        );
        for (direction, outcome, count) in label_rows {
            println!("  {direction:<9} {outcome:<26} {count:>6}");
        }
    }
    let key = crate::audit::verify::PublicKey::from_file(&info.guard.audit_public_key).ok();
    match crate::audit::verify::verify(&info.guard.audit_dir, key.as_ref(), None) {
        Ok(crate::audit::verify::Outcome::Intact(s)) => println!(
            "\nAudit log {}: {} records in {} segment(s), {} signed checkpoints, chain intact \
             (grenzwacht audit verify {} --key {})",
            info.guard.audit_dir.display(),
            s.records,
            s.segments,
            s.checkpoints,
            info.guard.audit_dir.display(),
            info.guard.audit_public_key.display()
        ),
        Ok(crate::audit::verify::Outcome::Bad(b)) => {
            println!(
                "\nAudit log {}: BROKEN: {b:?}",
                info.guard.audit_dir.display()
            )
        }
        Err(e) => println!("\nAudit log {}: {e}", info.guard.audit_dir.display()),
    }
    Ok(())
}

/// Runs the demo (starting the lab unless one is running in the directory).
pub async fn demo(opts: DemoOptions) -> Result<(), LabError> {
    let dir = std::path::absolute(&opts.lab.dir).map_err(|source| LabError::Io {
        path: opts.lab.dir.clone(),
        source,
    })?;
    let info = if is_running(&dir)? {
        let info = LabInfo::load(&dir)?;
        println!("using the running lab in {}", dir.display());
        info
    } else {
        println!(
            "starting the lab in {} (outbound: {}) …",
            dir.display(),
            opts.lab.outbound
        );
        let t0 = Instant::now();
        let mut lab = opts.lab.clone();
        lab.labels = true;
        let info = up(lab).await?;
        println!("lab up in {:.1} s", t0.elapsed().as_secs_f64());
        info
    };
    println!(
        "hs1 (protected) {}  ⇄  guard  ⇄  hs2 (remote) {}\n",
        info.hs1().server_name,
        info.hs2().server_name
    );
    let labels = labels_on(&info);
    if !labels {
        println!("(labels are off in this lab: the label steps are left out; `lab up --labels` or a fresh lab turns them on)");
    }
    let result = conversation(&info, labels).await;
    let view = print_guard_view(&info).await;
    if opts.keep {
        println!(
            "\nlab kept running: grenzwacht lab down --dir {}",
            dir.display()
        );
    } else {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || down(&d))
            .await
            .map_err(|e| LabError::StopFailed(e.to_string()))??;
        println!("\nlab stopped (logs and configs stay in {})", dir.display());
    }
    result?;
    view
}
