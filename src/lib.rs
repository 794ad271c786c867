//! `proactive`: a proactive life-event rules engine for public services.
//!
//! The state already knows when a child is born or a passport nears expiry;
//! this crate turns such registry changes into life situations and reaches
//! the right person with a notice or a prefilled application. Data flows
//! through one durable hand-over per stage, each a module here:
//!
//! ```text
//! registries ─► connectors ─► events (log) ─► engine ─► notices (outbox) ─► delivery ─► channels
//!               change feed    validated,      rhai rules   + drafts          routing,    email (SMTP),
//!               JSONL import   deduped,        per life     keyed so the      retries,    file sinks
//!                              quarantined     situation    same fact is one  receipts
//! ```
//!
//! * [`connectors`] poll a registry's change feed on a cron schedule, or diff
//!   the Enterprise Register's daily `register.csv` against the last one kept
//!   ([`connectors::snapshot`]), and hand the records to [`events`], which validates them (personal codes,
//!   real dates, the contract's fields), stores them once per
//!   `(source, external_id)` and quarantines what does not validate.
//! * [`engine`] takes pending events in batches, keeps [`profiles`](engine::profile)
//!   up to date, runs the life situations' rhai rules on compiled ASTs under
//!   sandbox limits, and commits cases, notices, drafts and the events'
//!   "processed" mark in one transaction.
//! * [`consent`] decides, per notice and at send time, who can be reached and
//!   on which channel.
//! * [`delivery`] claims due notices from the outbox, renders their templates
//!   and sends them over a channel, recording every attempt.
//! * [`store`] is the one place that speaks SQL, on SQLite or PostgreSQL.
//! * [`tools`] are for policy staff: a synthetic population and the
//!   simulation of a rule set over an event history, with its impact report.
//!
//! A stage commits its output in the same transaction in which it marks its
//! input done, so a crash anywhere loses nothing and repeats nothing a person
//! would see twice.

/// The allocator every binary of the project uses (`proactive`, the benches):
/// glibc's malloc spent a fifth of the engine's time on its own locks and
/// free lists under the batch workload; mimalloc's thread-local heaps do not.
pub type Allocator = mimalloc::MiMalloc;

pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod consent;
pub mod delivery;
pub mod demo;
pub mod engine;
pub mod events;
pub mod mask;
pub mod metrics;
pub mod serve;
pub mod store;
pub mod tools;
