//! Prometheus metrics of the process, served at `/metrics`.
//!
//! Counters and histograms count what this process did, at the moment the
//! store committed it (events, quarantine, delivery) or a rule ran, so that
//! Prometheus sums them over several `serve` processes on one PostgreSQL.
//! State that lives in the store (notices by state and channel, outbox depth,
//! timer backlog) is read from it at scrape time instead: every process would
//! report the same value, and a counter kept in memory would be wrong after
//! a restart.

use std::sync::LazyLock;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every counter and histogram of the process, registered once.
pub struct Metrics {
    registry: Registry,
    /// Events stored in the log, per source.
    pub events_ingested: IntCounterVec,
    /// Events that were already in the log, per source.
    pub events_duplicate: IntCounterVec,
    /// Records put in quarantine, per source.
    pub events_quarantined: IntCounterVec,
    /// Rule runs, per rule.
    pub rule_runs: IntCounterVec,
    /// Rule runs that failed (script error, limit, a result that is no decision), per rule.
    pub rule_errors: IntCounterVec,
    /// From a notice being due to its channel accepting it, per channel.
    pub delivery_latency: HistogramVec,
    /// HTTP requests answered, per route template and status.
    pub http_requests: IntCounterVec,
    /// Events per group commit of the agency API.
    pub group_commit_events: HistogramVec,
    /// Seconds per engine batch in each [`Stage`].
    pub engine_stage: HistogramVec,
}

/// A stage of an engine batch, as `proactive_engine_stage_seconds` labels it.
/// The engine evaluates one batch while the one before commits, so `Wait`
/// shows which of the two sides bounds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the batch's inputs from the store.
    Read,
    /// Running its rules.
    Evaluate,
    /// Its transaction.
    Commit,
    /// The next batch, evaluated, waiting until the one before is in.
    Wait,
    /// Opening cases ahead from birth dates and documents.
    Open,
}

impl Stage {
    /// Every stage, in the order the benches print them.
    pub const ALL: [Stage; 5] = [Stage::Read, Stage::Evaluate, Stage::Commit, Stage::Wait, Stage::Open];

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Evaluate => "evaluate",
            Stage::Commit => "commit",
            Stage::Wait => "wait",
            Stage::Open => "open",
        }
    }
}

/// Times one engine stage until dropped (or `stop_and_record`).
pub fn stage_timer(stage: Stage) -> prometheus::HistogramTimer {
    get().engine_stage.with_label_values(&[stage.label()]).start_timer()
}

/// Seconds spent so far in each stage, in the order of [`Stage::ALL`].
pub fn stage_seconds() -> Vec<(&'static str, f64)> {
    Stage::ALL
        .iter()
        .map(|s| (s.label(), get().engine_stage.with_label_values(&[s.label()]).get_sample_sum()))
        .collect()
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
    registry.register(Box::new(h.clone())).expect("metric registered once");
    h
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    Metrics {
        events_ingested: counter(&r, "proactive_events_ingested_total", "Events stored in the event log.", &["source"]),
        events_duplicate: counter(
            &r,
            "proactive_events_duplicate_total",
            "Events received again under a (source, id) already in the log.",
            &["source"],
        ),
        events_quarantined: counter(
            &r,
            "proactive_events_quarantined_total",
            "Records that did not validate and were kept in quarantine.",
            &["source"],
        ),
        rule_runs: counter(&r, "proactive_rule_runs_total", "Rule script runs.", &["rule"]),
        rule_errors: counter(&r, "proactive_rule_errors_total", "Rule script runs that failed.", &["rule"]),
        delivery_latency: histogram(
            &r,
            "proactive_delivery_latency_seconds",
            "From a notice being due (or created, if later) to its channel accepting it, on the engine's clock.",
            &["channel"],
            vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6.0 * 3600.0, 86400.0, 3.0 * 86400.0],
        ),
        http_requests: counter(&r, "proactive_http_requests_total", "HTTP requests answered.", &["route", "status"]),
        group_commit_events: histogram(
            &r,
            "proactive_api_group_commit_events",
            "Events (and quarantined records) committed together by the agency API's writer.",
            &[],
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0],
        ),
        engine_stage: histogram(
            &r,
            "proactive_engine_stage_seconds",
            "Time per engine batch in each stage: read, evaluate, commit, wait (for the batch before to commit), open (cases ahead).",
            &["stage"],
            vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0],
        ),
        registry: r,
    }
});

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Values read from the store at scrape time.
#[derive(Clone, Debug, Default)]
pub struct StoreGauges {
    /// Notices per (state, channel); channel empty before one was chosen.
    pub notices: Vec<(String, String, i64)>,
    /// Notices pending or being sent.
    pub outbox_depth: i64,
    /// Cases with a timed step waiting.
    pub timer_backlog: i64,
    /// Events the engine has not processed yet.
    pub events_pending: i64,
    /// Records held in quarantine.
    pub quarantine_held: i64,
}

/// The text exposition (format 0.0.4) of the counters and of `gauges`.
pub fn render(gauges: &StoreGauges) -> String {
    // The store's gauges go in a registry of their own, built per scrape, so a
    // (state, channel) pair that no longer exists disappears instead of
    // keeping its last value.
    let scrape = Registry::new();
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        scrape.register(Box::new(g.clone())).expect("metric registered once");
        g
    };
    let notices = gauge("proactive_notices", "Notices in the store, per state and channel.", &["state", "channel"]);
    for (state, channel, n) in &gauges.notices {
        notices.with_label_values(&[state.as_str(), channel.as_str()]).set(*n);
    }
    gauge("proactive_outbox_depth", "Notices pending or being sent.", &[])
        .with_label_values::<&str>(&[])
        .set(gauges.outbox_depth);
    gauge("proactive_timer_backlog", "Cases with a timed step waiting.", &[])
        .with_label_values::<&str>(&[])
        .set(gauges.timer_backlog);
    gauge("proactive_events_pending", "Events the engine has not processed yet.", &[])
        .with_label_values::<&str>(&[])
        .set(gauges.events_pending);
    gauge("proactive_quarantine_held", "Records held in quarantine.", &[])
        .with_label_values::<&str>(&[])
        .set(gauges.quarantine_held);

    let mut families = METRICS.registry.gather();
    families.extend(scrape.gather());
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out).expect("text encoding into memory");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// Counts one ingest transaction's outcome for `source`.
pub fn count_ingest(source: &str, accepted: u64, duplicate: u64, quarantined: u64) {
    let m = get();
    if accepted > 0 {
        m.events_ingested.with_label_values(&[source]).inc_by(accepted);
    }
    if duplicate > 0 {
        m.events_duplicate.with_label_values(&[source]).inc_by(duplicate);
    }
    if quarantined > 0 {
        m.events_quarantined.with_label_values(&[source]).inc_by(quarantined);
    }
}

/// Tallies per source (events accepted, duplicate; records quarantined) and counts them.
#[derive(Default)]
pub struct IngestTally(std::collections::HashMap<String, (u64, u64, u64)>);

impl IngestTally {
    /// One event, new or already known.
    pub fn event(&mut self, source: &str, new: bool) {
        let e = self.entry(source);
        if new { e.0 += 1 } else { e.1 += 1 }
    }

    /// One record kept in quarantine.
    pub fn quarantined(&mut self, source: &str) {
        self.entry(source).2 += 1;
    }

    /// Records quarantined so far, over every source.
    pub fn quarantined_total(&self) -> usize {
        self.0.values().map(|t| t.2 as usize).sum()
    }

    fn entry(&mut self, source: &str) -> &mut (u64, u64, u64) {
        if !self.0.contains_key(source) {
            self.0.insert(source.to_string(), (0, 0, 0));
        }
        self.0.get_mut(source).expect("just inserted")
    }

    /// Adds the tallies to the counters (after the transaction committed).
    pub fn count(self) {
        for (source, (a, d, q)) in self.0 {
            count_ingest(&source, a, d, q);
        }
    }
}
