//! What every benchmark does the same way: read its size, measure the
//! process's peak memory.

#![allow(dead_code)]

use anyhow::{Context, Result};

/// Resets the process's peak RSS to its current RSS (Linux ≥ 4.0); false if it could not.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident set size (`VmHWM`), in MB.
pub fn peak_rss_mb() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kb / 1024.0)
}

/// The size of a run: the first numeric argument (after `cargo bench --bench
/// NAME --`), else the environment variable `var`, else `default`; `_` may
/// group digits. `what` names the unit in errors.
pub fn size_wanted(var: &str, default: usize, what: &str) -> Result<usize> {
    // cargo bench passes `--bench` (and any filter) to a harness-less target; skip flags.
    if let Some(a) = std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        return a.replace('_', "").parse().with_context(|| format!("the argument {a:?} is not a number of {what}"));
    }
    match std::env::var(var) {
        Ok(v) => v.replace('_', "").parse().with_context(|| format!("{var}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The shipped library of life situations, as a bench runs it.
pub fn shipped_rules() -> Result<std::sync::Arc<proactive::engine::RuleSet>> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rules = proactive::engine::RuleSet::load(&root.join("life-events"), &root.join("rules"))
        .map_err(|e| anyhow::anyhow!("the shipped library does not load: {}", e.join("; ")))?;
    Ok(std::sync::Arc::new(rules))
}

/// The engine's time per stage since `since` (an earlier
/// `proactive::metrics::stage_seconds()`), as `read=A evaluate=B …` in
/// seconds: which stage bounds a phase, without a profiler.
pub fn stages_since(since: &[(&'static str, f64)]) -> String {
    let now = proactive::metrics::stage_seconds();
    now.iter().zip(since).map(|((name, t), (_, t0))| format!("{name}={:.1}", t - t0)).collect::<Vec<_>>().join(" ")
}
