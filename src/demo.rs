//! `proactive demo`: the whole pipeline on embedded defaults, with no
//! services. It writes a configuration into its folder that points every
//! channel at a file sink, imports the bundled sample of registry changes,
//! runs the engine and delivery, and shows who received what.

use std::path::Path;

use anyhow::{Context, Result};

use crate::app::App;
use crate::config::Config;
use crate::mask::mask_code;

/// The bundled sample of registry changes.
pub const SAMPLE: &str = "examples/demo-events.jsonl";
/// The demo's "now": shortly after the sample's births, so they are within their max_age.
pub const DEMO_START: &str = "2026-11-23T09:00:00+02:00";

/// How far the demo runs its virtual clock after the sample, to show the chains' later steps.
const DEMO_DAYS: i64 = 90;

/// Runs the demo in `dir` (emptied first), with definitions from `root`.
pub async fn run(dir: &Path, root: &Path) -> Result<()> {
    for needed in ["life-events", "rules", SAMPLE] {
        if !root.join(needed).exists() {
            anyhow::bail!("{} not found: run the demo from the repository's root folder", root.join(needed).display());
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let root = root.canonicalize()?;
    let config_path = dir.join("proactive.toml");
    std::fs::write(&config_path, demo_config(&dir, &root)).context("cannot write the demo configuration")?;
    let cfg = Config::load(Some(&config_path))?;
    let clock = cfg.clock();
    let app = App::open(cfg, clock).await?;

    let purposes = app.purposes();
    let sample = root.join(SAMPLE);
    let counts = crate::events::import_jsonl(&app.db, &sample, &*purposes, &app.clock, &mut |_| {}).await?;
    let engine = app.engine().run_all_due(&|| false).await?;
    let delivery = app.delivery().run_until_idle().await?;

    println!("proactive demo — the clock stands at {DEMO_START}\n");
    println!(
        "registry changes: {} stored, {} duplicates ignored, {} quarantined",
        counts.accepted, counts.duplicate, counts.quarantined
    );
    println!(
        "engine: {} cases started, {} notices and {} prefilled drafts queued",
        engine.cases, engine.notices, engine.drafts
    );
    println!(
        "delivery: {} sent, {} not sent (reason recorded), {} waiting for a retry\n",
        delivery.sent, delivery.suppressed, delivery.retried
    );

    let notices = app.db.list_notices(None, 1000).await?;
    let codes: Vec<String> = notices.iter().map(|n| n.recipient.clone()).collect();
    let names: std::collections::HashMap<String, String> = app
        .db
        .load_profiles(&codes)
        .await?
        .into_iter()
        .map(|p| (p.subject.clone(), p.display_name().unwrap_or_default()))
        .collect();
    println!("{:<18} {:<13} {:<9} {:<10} WHAT / WHERE", "RECIPIENT", "CODE", "CHANNEL", "STATE");
    for n in &notices {
        let detail = match (&n.provider_id, &n.last_error) {
            (Some(file), _) => {
                Path::new(file).strip_prefix(&dir).map(|p| p.display().to_string()).unwrap_or(file.clone())
            }
            (None, Some(reason)) => reason.clone(),
            _ => String::new(),
        };
        println!(
            "{:<18} {:<13} {:<9} {:<10} {}",
            names.get(&n.recipient).map(String::as_str).unwrap_or("?"),
            mask_code(&n.recipient),
            n.channel.as_deref().unwrap_or("-"),
            n.state,
            detail
        );
    }
    let mut groups: std::collections::BTreeMap<(String, String), (usize, String)> = Default::default();
    for o in app.db.event_outcomes().await? {
        groups.entry((o.life_situation, o.outcome)).or_insert((0, o.detail)).0 += 1;
    }
    if !groups.is_empty() {
        println!();
    }
    for ((ls, outcome), (n, example)) in groups {
        println!("{ls}: {n} event(s) {outcome}, e.g. {example}");
    }
    // The chains go on: the same clock, moved a day at a time through the
    // next three months, fires each waiting step and delivers what it makes.
    let start = app.clock.now();
    let mut later = crate::engine::BatchReport::default();
    for day in 1..=DEMO_DAYS {
        app.clock.set(start + chrono::Duration::days(day));
        later += app.engine().run_all_due(&|| false).await?;
        app.delivery().run_until_idle().await?;
    }
    let sent_now: std::collections::HashSet<String> = notices.iter().map(|n| n.notice_id.clone()).collect();
    let all = app.db.list_notices(None, 10_000).await?;
    let due: std::collections::HashMap<String, (i64, String, String)> = app
        .db
        .notices_of(None)
        .await?
        .into_iter()
        .map(|n| (n.id, (n.available_at, n.life_situation, n.step)))
        .collect();
    println!(
        "\nthe next {DEMO_DAYS} days on the virtual clock: {} waiting steps ran, {} more notices",
        later.steps, later.notices
    );
    println!("{:<10} {:<18} {:<38} {:<9} STATE", "DAY", "RECIPIENT", "LIFE SITUATION / STEP", "CHANNEL");
    let mut rows: Vec<_> = all.iter().filter(|n| !sent_now.contains(&n.notice_id)).collect();
    rows.sort_by_key(|n| due.get(&n.notice_id).map(|d| d.0));
    for n in rows {
        let (at, ls, step) = due.get(&n.notice_id).cloned().unwrap_or_default();
        println!(
            "{:<10} {:<18} {:<38} {:<9} {}",
            crate::engine::event_day(at),
            names.get(&n.recipient).map(String::as_str).unwrap_or("?"),
            format!("{ls} / {step}"),
            n.channel.as_deref().unwrap_or("-"),
            n.state
        );
    }
    let cfg_arg = config_path.strip_prefix(std::env::current_dir()?).unwrap_or(&config_path).display().to_string();
    println!("\nmessages are in {}/messages (email as .eml, e-address and SMS as JSON)", dir.display());
    println!("look further:");
    println!("  proactive --config {cfg_arg} outbox list");
    println!("  proactive --config {cfg_arg} events quarantine list");
    println!("  proactive --config {cfg_arg} cases show --subject 150394-11002");
    println!("  proactive --config {cfg_arg} events import MORE.jsonl && proactive --config {cfg_arg} process");
    app.db.close().await;
    Ok(())
}

fn demo_config(dir: &Path, root: &Path) -> String {
    let q = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    format!(
        r#"# Written by `proactive demo`; every channel writes files instead of sending.
[database]
url = {db}

[paths]
life_events = {le}
rules = {rules}
connectors = {conn}

[clock]
# The sample's births happened a few days before this moment.
start = "{DEMO_START}"
speed = 1.0

[channels.email]
kind = "file"
dir = {email}

[channels.eaddress]
kind = "file"
dir = {ea}

[channels.sms]
kind = "file"
dir = {sms}
"#,
        db = toml::Value::String(format!("sqlite://{}", dir.join("proactive.db").display())),
        le = q(&root.join("life-events")),
        rules = q(&root.join("rules")),
        conn = q(&root.join("connectors")),
        email = q(&dir.join("messages/email")),
        ea = q(&dir.join("messages/eaddress")),
        sms = q(&dir.join("messages/sms")),
    )
}
