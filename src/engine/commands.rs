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

/// Runs `proactive rules check|test`; exit code 1 on any error or failed case.
pub async fn rules(cfg: &Config, command: RulesCommand) -> Result<ExitCode> {
    let loaded = super::RuleSet::load(&cfg.paths.life_events, &cfg.paths.rules);
    match command {
        RulesCommand::Simulate { events, from, to, out, report, baseline } => {
            let rules = match loaded {
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
        RulesCommand::Check { format } => {
            let errors = loaded.as_ref().err().cloned().unwrap_or_default();
            if format == Format::Json {
                let out = serde_json::json!({ "ok": errors.is_empty(), "errors": errors });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if let Ok(r) = &loaded {
                let scripts: usize = r.situations.iter().map(|d| d.steps.len()).sum();
                println!(
                    "ok: {} life situations ({} steps) in {}, rules in {}",
                    r.situations.len(),
                    scripts,
                    cfg.paths.life_events.display(),
                    cfg.paths.rules.display()
                );
            } else {
                for e in &errors {
                    eprintln!("error: {e}");
                }
                eprintln!("{} errors", errors.len());
            }
            Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        RulesCommand::Test { path, format } => {
            let rules = match loaded {
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

/// Prints a subject's cases with their plans: what ran, what waits, what was dropped and why.
pub async fn show_cases(db: &Db, subject: &str) -> Result<()> {
    let (_, code) = crate::events::codes::normalize_subject(subject).map_err(|e| anyhow::anyhow!("--subject: {e}"))?;
    let cases = db.cases_of_subject(&code).await?;
    if cases.is_empty() {
        println!("no cases for {}", mask_code(&code));
        return Ok(());
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
                crate::clock::from_ms(p.due).with_timezone(&chrono_tz::Europe::Riga).format("%Y-%m-%d %H:%M"),
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
