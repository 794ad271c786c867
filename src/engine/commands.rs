//! The engine's commands for people: `rules check`, `rules test`,
//! `rules simulate` (see [`crate::tools::simulate`]) and `cases show`, printing for a terminal or as JSON for editors and CI.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use super::cases::StepState;
use super::rule_tests;
use crate::cli::{Format, RulesCommand};
use crate::config::Config;
use crate::mask::mask_code;
use crate::store::Db;

/// Runs `proactive rules check|test|simulate`; exit code 1 on any error or failed case.
pub async fn rules(cfg: &Config, command: RulesCommand) -> Result<ExitCode> {
    let load = || super::RuleSet::load(&cfg.paths.life_events, &cfg.paths.rules);
    match command {
        RulesCommand::Simulate { events, from, to, out, report, baseline } => {
            let rules = match load() {
                Ok(r) => Arc::new(r),
                Err(errors) => {
                    for e in &errors {
                        eprintln!("error: {e}");
                    }
                    eprintln!("the rule set does not load ({} errors); nothing was simulated", errors.len());
                    return Ok(ExitCode::FAILURE);
                }
            };
            let req = crate::tools::simulate::Request { events, from, to, out, report, baseline };
            let outcome = crate::tools::simulate::simulate(rules, &req).await?;
            crate::tools::simulate::print_summary(&outcome, &req);
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Check { path, format } => {
            let (life_events, rules_dir) = match &path {
                Some(p) => (p.join("life-events"), p.join("rules")),
                None => (cfg.paths.life_events.clone(), cfg.paths.rules.clone()),
            };
            if !life_events.is_dir() {
                anyhow::bail!(
                    "{} is not a folder; name a folder that holds life-events/ and rules/",
                    life_events.display()
                );
            }
            let opts = super::check::Options {
                max_segments: match &cfg.channels.sms {
                    crate::config::ChannelConfig::Http(g) => g.max_segments.max(1) as usize,
                    _ => crate::config::GatewayConfig::default().max_segments as usize,
                },
                draft_link: cfg.links.drafts.clone(),
            };
            let report = super::check::check(&life_events, &rules_dir, &opts);
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&report.diagnostics)?);
            } else {
                print!("{}", report.text(&life_events, &rules_dir));
            }
            Ok(if report.count(super::check::Level::Error) == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        RulesCommand::Test { path, format } => {
            let rules = match load() {
                Ok(r) => Arc::new(r),
                Err(errors) => {
                    for e in &errors {
                        eprintln!("error: {e}");
                    }
                    eprintln!("the rule set does not load ({} errors); no test ran", errors.len());
                    return Ok(ExitCode::FAILURE);
                }
            };
            let root = path.unwrap_or_else(|| cfg.paths.rules.clone());
            let files = rule_tests::find_test_files(&root);
            let results = rule_tests::run_files(rules, &files).await;
            let failed = results.iter().filter(|r| !r.passed()).count();
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for r in &results {
                    if r.passed() {
                        println!("ok      {}: {}", r.file, r.name);
                    } else {
                        println!("FAILED  {}: {}", r.file, r.name);
                        for f in &r.failures {
                            println!("          {f}");
                        }
                    }
                }
                println!("{} passed, {} failed", results.len() - failed, failed);
            }
            Ok(if failed == 0 && !results.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// Prints a subject's cases with their plans: what ran, what waits, what was
/// dropped and why; then, with the rule set, the cases still to open from
/// the person's profile (birth date, documents).
pub async fn show_cases(db: &Db, rules: Option<&super::RuleSet>, subject: &str, now_ms: i64) -> Result<()> {
    let (_, code) = crate::events::codes::normalize_subject(subject).map_err(|e| anyhow::anyhow!("--subject: {e}"))?;
    let cases = db.cases_of_subject(&code).await?;
    let opened: Vec<(String, String)> = cases.iter().map(|c| (c.life_situation.clone(), c.fact.clone())).collect();
    let waiting = match (rules, db.load_profiles(std::slice::from_ref(&code)).await?.first()) {
        (Some(r), Some(p)) => super::openings::waiting(r, p, &opened, now_ms),
        _ => Vec::new(),
    };
    if cases.is_empty() && waiting.is_empty() {
        println!("no cases for {}", mask_code(&code));
        return Ok(());
    }
    let riga = |ms: i64| crate::clock::from_ms(ms).with_timezone(&chrono_tz::Europe::Riga);
    for w in &waiting {
        println!(
            "not open yet  {} (from the {})  opens by {}, over a year before its first step: {} due {}",
            w.life_situation,
            w.on,
            riga(w.due - super::openings::HORIZON_MS + super::openings::STEP_MS).format("%Y-%m-%d"),
            w.step,
            riga(w.due).format("%Y-%m-%d %H:%M")
        );
    }
    for c in cases {
        println!(
            "case {}  {} v{}  {}  started {}{}",
            c.id,
            c.life_situation,
            c.version,
            c.state,
            super::cases::started_day(&c),
            c.closed_reason.as_deref().map(|r| format!("  ({r})")).unwrap_or_default()
        );
        let mut steps: Vec<_> = c.plan.iter().collect();
        steps.sort_by_key(|(_, p)| p.due);
        for (id, p) in steps {
            let state = match p.state {
                StepState::Pending => "waiting",
                StepState::Fired => "ran",
                StepState::Skipped => "skipped",
                StepState::Cancelled => "cancelled",
                StepState::Failed => "failed",
            };
            println!(
                "    {:<28} due {}  {:<9} {}",
                id,
                riga(p.due).format("%Y-%m-%d %H:%M"),
                state,
                p.why.as_deref().unwrap_or("")
            );
        }
        for n in db.notices_of(Some(&c.id)).await? {
            println!(
                "    notice {}  step {}  to {}  {}{}",
                n.id,
                n.step,
                mask_code(&n.recipient),
                n.state,
                n.last_error.map(|e| format!("  ({e})")).unwrap_or_default()
            );
        }
    }
    Ok(())
}
