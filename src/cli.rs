//! The command line: a thin layer that parses arguments, loads the
//! configuration and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::app::{App, load_rules};
use crate::config::Config;
use crate::mask::mask_code;

/// A proactive life-event rules engine for public services.
#[derive(Parser, Debug)]
#[command(name = "proactive", version, about)]
pub struct Cli {
    /// Configuration file (default: PROACTIVE_CONFIG, else embedded defaults).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs a birth from registry change to delivered message in ./proactive-demo, with no services needed.
    Demo {
        /// Folder for the demo's store, configuration and messages (emptied first).
        #[arg(long, default_value = "proactive-demo")]
        dir: PathBuf,
    },
    /// Runs connectors, engine, delivery and the HTTP listener until Ctrl-C or SIGTERM.
    Serve {
        /// Address to listen on (default: http.listen of the configuration).
        #[arg(long)]
        listen: Option<String>,
        /// Run on a virtual clock from this time (RFC 3339), e.g. to rehearse months in minutes.
        #[arg(long)]
        clock_start: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// Virtual seconds per real second with --clock-start (86400: a day a second).
        #[arg(long)]
        clock_speed: Option<f64>,
        /// Stages to run (comma-separated); the HTTP listener always runs.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "connectors,engine,delivery")]
        stages: Vec<crate::serve::Stage>,
    },
    /// Creates or updates the database schema.
    Migrate,
    /// Processes every pending event and due notice once, then exits.
    Process,
    /// The event log and its quarantine.
    Events {
        /// Subcommand.
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Life-situation rules: check that they load, run their tests.
    Rules {
        /// Subcommand.
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Cases: what a life situation is doing for a subject.
    Cases {
        /// Subcommand.
        #[command(subcommand)]
        command: CasesCommand,
    },
    /// The outbox of notices.
    Outbox {
        /// Subcommand.
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Why a notice was or was not sent, in plain words: one notice, or every notice to or about a subject.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["id", "notice", "subject"])))]
    Explain {
        /// Notice id (from `outbox list` or `cases show`); the same as --notice.
        #[arg(value_name = "NOTICE_ID")]
        id: Option<String>,
        /// Notice id (from `outbox list` or `cases show`).
        #[arg(long, value_name = "ID")]
        notice: Option<String>,
        /// Personal code or registration number: every notice to or about them, and their consent changes.
        #[arg(long)]
        subject: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: TextFormat,
    },
    /// The audit log: check its chains, export the records of processing.
    Audit {
        /// Subcommand.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Retention of personal data, per purpose as the definitions declare it.
    Retention {
        /// Subcommand.
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// API keys of the agency (and staff) API.
    Keys {
        /// Subcommand.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Citizen bearer tokens for the citizen API (tests and the demo; in production the state login's).
    Token {
        /// Subcommand.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Synthetic data to try rules on.
    Gen {
        /// Subcommand.
        #[command(subcommand)]
        command: GenCommand,
    },
}

/// `proactive gen …`
#[derive(Subcommand, Debug)]
pub enum GenCommand {
    /// Writes a synthetic population's registry history as change records (JSONL, what `events import` reads).
    Population {
        /// People at the start (newborns of the following year come on top).
        #[arg(long)]
        people: usize,
        /// The same seed gives the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The day the backfill reaches; the events of the following year come after it.
        #[arg(long, default_value = "2026-12-01")]
        start: chrono::NaiveDate,
    },
}

/// `proactive token …`
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Prints a signed bearer token for a person (HMAC-SHA-256 with the key `http.token_secret_env` names).
    Issue {
        /// The person's personal code.
        #[arg(long)]
        subject: String,
        /// How long it is valid, in minutes (at most a day).
        #[arg(long, default_value_t = 60)]
        ttl_minutes: u64,
    },
}

/// `proactive keys …`
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Creates a key and prints it once on standard output (only its SHA-256 is kept).
    Create {
        /// What the key may do.
        #[arg(long, value_enum)]
        role: crate::api::keys::Role,
        /// The agency the key is for (agency keys).
        #[arg(long, required_if_eq("role", "agency"), conflicts_with = "name")]
        agency: Option<String>,
        /// Who the key is for (staff keys).
        #[arg(long, required_if_eq("role", "staff"))]
        name: Option<String>,
        /// Sources it may send events for, comma-separated (agency keys).
        #[arg(long, value_delimiter = ',')]
        sources: Vec<String>,
        /// Event types it may send, comma-separated (agency keys).
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
    },
    /// Revokes a key by its id (from `list`); a running server refuses it within a second.
    Revoke {
        /// The key's id: the 12 hex digits after `pk_`.
        id: String,
    },
    /// Lists keys with their scopes and use counts (never a key itself).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// `proactive rules …`
#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Compiles every rule, validates every definition, renders every template with its sample data and checks
    /// completeness, SMS length and jargon; errors name file, line and column; exit code 1 on any error.
    Check {
        /// A folder holding `life-events/` and `rules/` (default: the configured paths).
        path: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Runs the YAML test cases beside the rules (`rules/**/*.test.yaml`).
    Test {
        /// A test file or folder (default: the rules folder).
        path: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Runs an event history through virtual time with the rules, sending nothing, and reports what they would send.
    Simulate {
        /// Change records (JSONL), e.g. from `proactive gen population`.
        #[arg(long)]
        events: PathBuf,
        /// First simulated day (default: the start day of a generated file, else a year before its last event).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Last simulated day (default: a year after --from).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Writes every notice, suppression, cancellation and skipped step as JSONL here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Writes the impact report to DIR/index.html.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// A folder with `life-events/` and `rules/` to compare with: who would gain or lose a notice.
        #[arg(long, value_name = "DIR")]
        baseline: Option<PathBuf>,
    },
}

/// `proactive cases …`
#[derive(Subcommand, Debug)]
pub enum CasesCommand {
    /// Shows a subject's cases: their steps, when each is due, what happened and why.
    Show {
        /// Personal code or registration number.
        #[arg(long)]
        subject: String,
    },
    /// Cancels an open case: its waiting steps and queued notices, with the reason recorded and audited.
    Cancel {
        /// Case id (from `cases show`).
        id: String,
        /// Why, in words that will be read back to the person.
        #[arg(long)]
        reason: String,
        /// Who cancels it (default: the USER environment variable).
        #[arg(long)]
        by: Option<String>,
    },
}

/// `proactive audit …`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walks every chain and names the first broken record of each (edited, deleted, reordered); exit code 1 if any.
    Verify {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: TextFormat,
    },
    /// Writes the records of processing for one purpose over whole days (Riga time), persons as pseudonyms.
    Export {
        /// The purpose (a life situation's id or another declared purpose).
        #[arg(long)]
        purpose: String,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day, YYYY-MM-DD (included).
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: crate::audit::export::ExportFormat,
        /// The file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `proactive retention …`
#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Erases the personal data of notices (and their drafts) past their purpose's retention_days.
    Run {
        /// Count what would be erased, erase nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `proactive events …`
#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Loads change records from a JSONL file (one Change plus its "source" a line).
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Records that did not validate.
    Quarantine {
        /// Subcommand.
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Diffs a register.csv snapshot against the last one kept and stores the changes as events.
    ImportSnapshot {
        /// The file.
        file: PathBuf,
        /// The snapshot source whose connector definition (limits, events) applies.
        #[arg(long, default_value = "ur")]
        source: String,
        /// The day the file describes, YYYY-MM-DD (default: the day it was last modified).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
    /// Register snapshots: what was applied, what is held back and why.
    Snapshot {
        /// Subcommand.
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

/// `proactive events snapshot …`
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Lists snapshots, newest first, with their state and why one was held back.
    List {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Applies a held-back snapshot once an operator has checked it.
    Approve {
        /// Snapshot id (from `list`).
        id: i64,
    },
}

/// `proactive events quarantine …`
#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// Lists held records with their errors.
    List {
        /// Include records already released by a retry.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Validates held records again and stores those that now pass.
    Retry {
        /// Record ids (from `list`); none means every held record.
        ids: Vec<i64>,
    },
}

/// `proactive outbox …`
#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// Lists notices with their state and channel.
    List {
        /// Only notices in this state (pending, sending, sent, dead, suppressed, cancelled, shadow).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 200)]
        limit: i64,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Puts dead-lettered notices back in the queue (after the cause was fixed).
    Replay {
        /// Notice ids to replay.
        ids: Vec<String>,
        /// Replay every dead notice.
        #[arg(long, conflicts_with = "ids")]
        all_dead: bool,
    },
}

/// Output formats of commands that speak to people.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum TextFormat {
    /// Sentences for people.
    Text,
    /// One JSON document for tools.
    Json,
}

/// Output formats of listing commands.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document for tools.
    Json,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo reports what it found itself; serve is a daemon whose log is its voice.
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        Command::Demo { .. } => "error",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROACTIVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A virtual clock resumes where the store's latest record left it, not at
/// its configured start, so a command run between rehearsal sessions sees
/// the rehearsal's today.
async fn resume_clock(cfg: &Config, clock: &crate::clock::Clock, db: &crate::store::Db) -> Result<()> {
    if cfg.clock.start.is_some()
        && let Some(last) = db.last_seen_ms().await?
    {
        clock.set(crate::clock::from_ms(last));
    }
    Ok(())
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Demo { dir } = &cli.command {
        crate::demo::run(dir, &std::env::current_dir()?).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Command::Serve { clock_start, clock_speed, .. } = &cli.command {
        if clock_start.is_some() {
            cfg.clock.start = *clock_start;
        }
        if clock_speed.is_some() {
            cfg.clock.speed = *clock_speed;
        }
        if cfg.clock.speed.is_some() && cfg.clock.start.is_none() {
            anyhow::bail!("--clock-speed (clock.speed) needs --clock-start (clock.start)");
        }
    }
    let clock = cfg.clock();
    match cli.command {
        Command::Demo { .. } => unreachable!("handled above"),
        Command::Migrate => {
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            println!("schema of the {} database is up to date", db.kind());
        }
        Command::Serve { listen, stages, .. } => {
            let listen = listen.unwrap_or_else(|| cfg.http.listen.clone());
            let app = App::open(cfg, clock).await?;
            crate::serve::serve(app, &listen, &stages).await?;
        }
        Command::Process => {
            let app = App::open(cfg, clock).await?;
            let e = app.engine().run_all_due(&|| false).await?;
            let d = app.delivery().run_until_idle().await?;
            println!(
                "engine: {} events, {} cases, {} timers fired, {} notices, {} drafts, {} rule errors",
                e.events, e.cases, e.timers, e.notices, e.drafts, e.errors
            );
            println!("delivery: {} sent, {} suppressed, {} to retry, {} dead", d.sent, d.suppressed, d.retried, d.dead);
        }
        Command::Events { command: EventsCommand::Import { file } } => {
            let app = App::open(cfg, clock).await?;
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(format!("importing {}", file.display()));
            let purposes = app.purposes();
            let counts = crate::events::import_jsonl(&app.db, &file, &*purposes, &app.clock, &mut |n| {
                bar.set_message(format!("{n} lines read"));
                bar.tick();
            })
            .await?;
            bar.finish_and_clear();
            println!(
                "{}: {} accepted, {} duplicates, {} quarantined",
                file.display(),
                counts.accepted,
                counts.duplicate,
                counts.quarantined
            );
            if counts.quarantined > 0 {
                println!("see them with: proactive events quarantine list");
            }
        }
        Command::Events { command: EventsCommand::ImportSnapshot { file, source, date } } => {
            let app = App::open(cfg, clock).await?;
            return crate::connectors::snapshot::commands::import(&app, &file, &source, date).await;
        }
        Command::Events { command: EventsCommand::Snapshot { command } } => {
            use crate::connectors::snapshot::commands;
            match command {
                SnapshotCommand::List { source, format } => {
                    let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
                    commands::list(&db, source.as_deref(), format == Format::Json).await?;
                }
                SnapshotCommand::Approve { id } => {
                    let app = App::open(cfg, clock).await?;
                    return commands::approve_command(&app, id).await;
                }
            }
        }
        Command::Events { command: EventsCommand::Quarantine { command } } => {
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            match command {
                QuarantineCommand::List { all, format } => {
                    let rows = db.quarantine_list(!all).await?;
                    if format == Format::Json {
                        println!("{}", serde_json::to_string_pretty(&rows)?);
                    } else if rows.is_empty() {
                        println!("quarantine is empty");
                    } else {
                        println!("{:>5}  {:<8}  {:<9}  {:<40}  ERROR", "ID", "SOURCE", "STATE", "WHERE");
                        for r in rows {
                            println!("{:>5}  {:<8}  {:<9}  {:<40}  {}", r.id, r.source, r.state, r.location, r.error);
                        }
                    }
                }
                QuarantineCommand::Retry { ids } => {
                    let rules = load_rules(&cfg)?;
                    let declared = move |p: &str| rules.declares_purpose(p);
                    let ids = (!ids.is_empty()).then_some(ids);
                    let r = crate::events::retry_quarantine(&db, ids.as_deref(), &declared, clock.now_ms()).await?;
                    println!(
                        "{} released into the event log ({} already there), {} still held",
                        r.released, r.duplicate, r.still_held
                    );
                    if r.still_held > 0 {
                        return Ok(ExitCode::from(2));
                    }
                }
            }
        }
        Command::Token { command: TokenCommand::Issue { subject, ttl_minutes } } => {
            if ttl_minutes == 0 || ttl_minutes > crate::api::token::MAX_TTL_MINUTES {
                anyhow::bail!("--ttl-minutes: between 1 and {}", crate::api::token::MAX_TTL_MINUTES);
            }
            let key = crate::api::token::token_key(&cfg.http)?;
            // Wall-clock time, not the engine's clock: a login session lives in real time.
            let expires = chrono::Utc::now() + chrono::Duration::minutes(ttl_minutes as i64);
            println!("{}", crate::api::token::issue(&key, &subject, expires.timestamp())?);
            eprintln!("citizen token for {} valid until {}", crate::mask::mask_code(&subject), expires.to_rfc3339());
        }
        Command::Keys { command } => {
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            return keys_command(&db, command, clock.now_ms()).await;
        }
        Command::Rules { command } => return crate::engine::commands::rules(&cfg, command).await,
        Command::Gen { command: GenCommand::Population { people, seed, out, start } } => {
            let rules = load_rules(&cfg)?;
            let mut purposes: Vec<String> =
                rules.situations.iter().flat_map(|d| d.purposes.iter().map(|p| p.id.clone())).collect();
            purposes.sort();
            purposes.dedup();
            let spec = crate::tools::population::PopulationSpec { people, seed, start, purposes };
            match out {
                Some(path) => {
                    let file =
                        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    let bar = indicatif::ProgressBar::new(people as u64);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} people ({eta} left)")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    bar.set_message(format!("writing {}", path.display()));
                    let lines =
                        crate::tools::population::write_jsonl(&spec, &mut w, &mut |n| bar.set_position(n as u64))?;
                    std::io::Write::flush(&mut w)?;
                    bar.finish_and_clear();
                    println!(
                        "{}: {people} people, {lines} change records (seed {seed}, start {start})",
                        path.display()
                    );
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::new(stdout.lock());
                    crate::tools::population::write_jsonl(&spec, &mut w, &mut |_| {})?;
                    std::io::Write::flush(&mut w)?;
                }
            }
        }
        Command::Explain { id, notice, subject, format } => {
            let notice = notice.or(id);
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            // The definitions give names and legal bases; a notice is explained without them too.
            let rules = load_rules(&cfg).ok();
            let json = format == TextFormat::Json;
            match (notice, subject) {
                (Some(id), _) => match crate::audit::explain::explain_notice(&db, rules.as_ref(), &id, None).await? {
                    Some(e) if json => println!("{}", serde_json::to_string_pretty(&e)?),
                    Some(e) => print!("{}", e.text()),
                    None => {
                        eprintln!("no notice {id}");
                        return Ok(ExitCode::from(2));
                    }
                },
                (None, Some(code)) => {
                    let audit = crate::audit::Audit::from_config(&cfg.audit)?;
                    let e = crate::audit::explain::explain_subject(&db, rules.as_ref(), &audit, &code).await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&e)?);
                    } else {
                        print!("{}", e.text());
                    }
                }
                (None, None) => anyhow::bail!("name a notice id or --subject CODE"),
            }
        }
        Command::Audit { command: AuditCommand::Verify { format } } => {
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            return crate::audit::commands::verify_command(&db, format == TextFormat::Json).await;
        }
        Command::Audit { command: AuditCommand::Export { purpose, from, to, format, out } } => {
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            let rules = load_rules(&cfg).ok();
            if rules.is_none() {
                eprintln!("warning: the definitions do not load; legal bases are left empty");
            }
            let n = match &out {
                Some(path) => {
                    let file =
                        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    let n =
                        crate::audit::export::export(&db, rules.as_ref(), &purpose, from, to, format, &mut w).await?;
                    std::io::Write::flush(&mut w)?;
                    n
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::new(stdout.lock());
                    let n =
                        crate::audit::export::export(&db, rules.as_ref(), &purpose, from, to, format, &mut w).await?;
                    std::io::Write::flush(&mut w)?;
                    n
                }
            };
            eprintln!("{n} records of processing for \"{purpose}\" from {from} to {to}");
        }
        Command::Retention { command: RetentionCommand::Run { dry_run } } => {
            let app = App::open(cfg, clock).await?;
            let report =
                crate::audit::retention::run(&app.db, &app.rules, &app.audit, app.clock.now_ms(), dry_run).await?;
            if report.is_empty() {
                println!("no purpose declares retention_days; nothing to erase");
            }
            let verb = if dry_run { "would erase" } else { "erased" };
            for (purpose, e) in report {
                println!(
                    "{purpose}: {verb} {} notices and {} drafts made before {} ({} days)",
                    e.notices,
                    e.drafts,
                    crate::engine::event_day(e.cutoff),
                    e.retention_days
                );
            }
        }
        Command::Cases { command: CasesCommand::Cancel { id, reason, by } } => {
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            resume_clock(&cfg, &clock, &db).await?;
            let audit = crate::audit::Audit::from_config(&cfg.audit)?;
            let by = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "an operator".into());
            let c = crate::audit::commands::cancel_case(&db, &audit, &id, &reason, &by, clock.now_ms()).await?;
            println!(
                "case {} cancelled: {} waiting steps and {} queued notices withdrawn; recorded in the audit log",
                c.case_id, c.steps, c.notices
            );
        }
        Command::Cases { command: CasesCommand::Show { subject } } => {
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            resume_clock(&cfg, &clock, &db).await?;
            let rules = crate::app::load_rules(&cfg).ok();
            crate::engine::commands::show_cases(&db, rules.as_ref(), &subject, clock.now_ms()).await?;
        }
        Command::Outbox { command: OutboxCommand::Replay { ids, all_dead } } => {
            if ids.is_empty() && !all_dead {
                anyhow::bail!("name the notices to replay, or say --all-dead");
            }
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            let want = (!all_dead).then_some(ids.as_slice());
            let replayed = db.replay_dead(want, clock.now_ms()).await?;
            for id in want.unwrap_or_default().iter().filter(|i| !replayed.contains(i)) {
                eprintln!("not replayed: {id} is not a dead notice");
            }
            println!("{} dead notices queued again", replayed.len());
            if want.is_some_and(|w| w.len() != replayed.len()) {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Outbox { command: OutboxCommand::List { state, limit, format } } => {
            let db = crate::store::Db::open(&cfg.database.url, cfg.database.max_connections).await?;
            let rows = db.list_notices(state.as_deref(), limit).await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&rows).context("cannot write JSON")?);
            } else {
                println!(
                    "{:<36}  {:<10}  {:<12}  {:<9}  {:<8}  DETAIL",
                    "NOTICE", "SITUATION", "RECIPIENT", "STATE", "CHANNEL"
                );
                for r in rows {
                    println!(
                        "{:<36}  {:<10}  {:<12}  {:<9}  {:<8}  {}",
                        r.notice_id,
                        r.life_situation,
                        mask_code(&r.recipient),
                        r.state,
                        r.channel.as_deref().unwrap_or("-"),
                        outbox_detail(&r)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `outbox list` says of a notice beyond its state: the error, or where the message is.
fn outbox_detail(r: &crate::store::DeliveryRow) -> String {
    if let Some(e) = &r.last_error {
        return e.clone();
    }
    let mut parts: Vec<String> = r.provider_id.iter().cloned().collect();
    if let Some(s) = &r.served_on {
        parts.push(format!("served {s}"));
    }
    if let Some(s) = r.receipt.as_deref().filter(|s| *s != "accepted") {
        parts.push(s.to_string());
    }
    parts.join(", ")
}

async fn keys_command(db: &crate::store::Db, command: KeysCommand, now_ms: i64) -> Result<ExitCode> {
    match command {
        KeysCommand::Create { role, agency, name, sources, types } => {
            let owner = agency.or(name).unwrap_or_default();
            let (key, row) = crate::api::keys::create(db, role, &owner, &sources, &types, now_ms).await?;
            println!("{key}");
            eprintln!(
                "key {} ({} key of {}{}) created: it is shown only this once; store it now",
                row.id,
                row.role,
                row.owner,
                if row.sources.is_empty() {
                    String::new()
                } else {
                    format!("; sources {}; types {}", row.sources.join(","), row.types.join(","))
                }
            );
        }
        KeysCommand::Revoke { id } => {
            if !db.revoke_api_key(&id, now_ms).await? {
                eprintln!("no key {id} that is not revoked already");
                return Ok(ExitCode::from(2));
            }
            println!("key {id} revoked");
        }
        KeysCommand::List { format } => {
            let keys = db.api_keys().await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("no keys");
            } else {
                println!(
                    "{:<12}  {:<6}  {:<16}  {:<8}  {:>8}  {:<20}  SCOPE",
                    "ID", "ROLE", "OWNER", "STATE", "USES", "LAST USED"
                );
                for k in keys {
                    let last = k
                        .last_used_at
                        .map(|t| crate::clock::from_ms(t).format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".into());
                    let scope = if k.sources.is_empty() {
                        "-".to_string()
                    } else {
                        format!("{} / {}", k.sources.join(","), k.types.join(","))
                    };
                    let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                    println!(
                        "{:<12}  {:<6}  {:<16}  {:<8}  {:>8}  {:<20}  {scope}",
                        k.id, k.role, k.owner, state, k.uses, last
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
