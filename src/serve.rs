//! `proactive serve`: connectors, engine, delivery and the HTTP listener in
//! one process until Ctrl-C or SIGTERM. On a stop signal each stage finishes
//! the batch it is in (committed) or drops it (rolled back, redone by the
//! next start); nothing half-done is left visible.
//!
//! Several processes may share one database. Delivery claims notices row by
//! row; a connector's polling and rule evaluation are each done by one
//! process at a time, the one holding its lease (`leases` table), and taken
//! over by another when the holder stops renewing it.

use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;

use crate::app::App;
use crate::connectors::{self, SourceKind, feed::FeedPoller, snapshot::SnapshotPoller};

/// A stage `serve` can run; the HTTP listener (health, readiness, callbacks, API) always runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Polling the registries' feeds and snapshots.
    Connectors,
    /// Rule evaluation and timers.
    Engine,
    /// Sending the outbox.
    Delivery,
}

/// Runs the given stages until a stop signal.
pub async fn serve(app: App, listen: &str, stages: &[Stage]) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let holder = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let ttl = Duration::from_secs(app.cfg.engine.lease_secs.max(1) as u64);
    tracing::info!(process = %holder, ?stages, "serving");

    let sources = connectors::load_sources(&app.cfg.paths.connectors)
        .map_err(|e| anyhow::anyhow!("connector definitions do not load:\n  {}", e.join("\n  ")))?;
    for def in sources.into_iter().filter(|d| d.enabled && stages.contains(&Stage::Connectors)) {
        let (db, clock, purposes, stop) = (app.db.clone(), app.clock.clone(), app.purposes(), stop_rx.clone());
        let lease = Lease { db: db.clone(), name: format!("connector:{}", def.source), holder: holder.clone(), ttl };
        tracing::info!(source = %def.source, kind = ?def.kind, "connector started");
        let poller = std::sync::Arc::new(match def.kind {
            SourceKind::ChangeFeed => Poller::Feed(FeedPoller::new(def)?),
            SourceKind::Snapshot => Poller::Snapshot(SnapshotPoller::new(def)?),
        });
        tasks.spawn(async move {
            lease
                .run(stop, |child| {
                    let (poller, db, clock, purposes) = (poller.clone(), db.clone(), clock.clone(), purposes.clone());
                    async move {
                        match &*poller {
                            Poller::Feed(p) => p.run(db, clock, purposes, child).await,
                            Poller::Snapshot(p) => p.run(db, clock, purposes, child).await,
                        }
                    }
                })
                .await
        });
    }

    // One live rule set for every stage: a reload (SIGHUP) swaps it whole,
    // after it has been compiled and checked; a broken set never replaces it.
    let live = crate::engine::LiveRules::from(app.rules.clone());
    let engine = crate::engine::Engine::new(app.db.clone(), live.clone(), app.clock.clone(), app.cfg.engine.batch_size)
        .with_backlog_batch(app.cfg.engine.backlog_batch_size)
        .with_audit(app.audit.clone());
    let idle = Duration::from_millis(app.cfg.engine.poll_interval_ms);
    if stages.contains(&Stage::Engine) {
        let stop = stop_rx.clone();
        let lease = Lease { db: app.db.clone(), name: "engine".into(), holder: holder.clone(), ttl };
        let (db, clock, max_due) = (app.db.clone(), app.clock.clone(), app.cfg.engine.max_due_notices);
        tasks.spawn(async move {
            lease
                .run(stop, |child| {
                    let (engine, db, clock) = (engine.clone(), db.clone(), clock.clone());
                    async move {
                        let behind = Backlog { db, clock, max: max_due, deep: Default::default() };
                        let deep = behind.deep.clone();
                        let halt = child.clone();
                        // Between batches too: a long backlog of events stops when delivery falls behind.
                        let halt = move || *halt.borrow() || deep.load(std::sync::atomic::Ordering::Relaxed);
                        let deep = behind.deep.clone();
                        let stage = stage_loop("engine", child, idle, || async {
                            if deep.load(std::sync::atomic::Ordering::Relaxed) {
                                return Ok(false);
                            }
                            engine.run_all_due(&halt).await.map(|_| false)
                        });
                        tokio::select! {
                            _ = stage => {}
                            _ = behind.watch() => {}
                        }
                    }
                })
                .await
        });
    }
    #[cfg(unix)]
    {
        let (cfg, live, mut stop) = (app.cfg.clone(), live.clone(), stop_rx.clone());
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => reload(&cfg, &live),
                    _ = stop.changed() => return,
                }
            }
        });
    }

    let delivery = crate::delivery::Delivery::new(
        app.db.clone(),
        live.clone(),
        app.channels.clone(),
        app.clock.clone(),
        app.cfg.delivery.clone(),
        app.cfg.links.drafts.clone(),
    )
    .with_audit(app.audit.clone());
    let idle = Duration::from_millis(app.cfg.delivery.poll_interval_ms);
    if stages.contains(&Stage::Delivery) {
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            stage_loop("delivery", stop, idle, || async { delivery.run_round().await.map(|r| r.claimed > 0) }).await
        });
    }

    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, "HTTP listener up");
    let api = crate::api::start(app.clone());
    let mut stop = stop_rx.clone();
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        if let Err(e) = axum::serve(listener, api.router).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
        // The router is gone: the writer commits what is still queued, and the keys' last uses.
        let _ = api.writer.await;
    });

    shutdown_signal().await;
    let grace = Duration::from_secs(app.cfg.http.shutdown_grace_secs);
    tracing::info!(grace_secs = grace.as_secs(), "stopping: no new claims; finishing the batches in flight");
    let _ = stop_tx.send(true);
    let finished = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "grace period over: stopping anyway; what is still claimed is retaken when its lease lapses"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    app.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Loads `life-events/` and `rules/` again and puts them in force if they
/// check; otherwise logs every error and keeps the running set.
pub fn reload(cfg: &crate::config::Config, live: &crate::engine::LiveRules) {
    match crate::app::load_rules(cfg) {
        Ok(rules) => {
            let n = rules.situations.len();
            live.set(std::sync::Arc::new(rules));
            tracing::info!(life_situations = n, "rule set reloaded");
        }
        Err(e) => tracing::error!(error = %format!("{e:#}"), "rule set NOT reloaded; the running set stays"),
    }
}

/// A connector of either kind.
enum Poller {
    Feed(FeedPoller),
    Snapshot(SnapshotPoller),
}

/// Backpressure: evaluation waits while delivery is this far behind, so a
/// stalled gateway does not pile up notices without end. The outbox is
/// counted every two seconds, not per batch.
struct Backlog {
    db: crate::store::Db,
    clock: crate::clock::Clock,
    max: i64,
    deep: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Backlog {
    /// Keeps `deep` true while more than `max` notices are due; never returns.
    async fn watch(&self) {
        use std::sync::atomic::Ordering;
        loop {
            match self.db.due_notice_count(self.clock.now_ms()).await {
                Ok(due) => {
                    let deep = due > self.max;
                    let was = self.deep.swap(deep, Ordering::Relaxed);
                    if deep && !was {
                        tracing::warn!(due, max = self.max, "delivery is behind; evaluation waits for it to catch up");
                    } else if was && !deep {
                        tracing::info!(due, "delivery has caught up; evaluation goes on");
                    }
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot count the outbox"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Singleton work's lease: this process does the work only while it holds it.
struct Lease {
    db: crate::store::Db,
    name: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// Runs `work` (with its own stop signal) whenever this process holds
    /// the lease, renewing it a third of its time; stops the work when the
    /// lease cannot be renewed (another process may take over), and on
    /// `stop` gives it up at once so another process need not wait it out.
    async fn run<F, Fut>(&self, mut stop: watch::Receiver<bool>, work: F)
    where
        F: Fn(watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let ttl_ms = self.ttl.as_millis() as i64;
        let take = || self.db.take_lease(&self.name, &self.holder, chrono::Utc::now().timestamp_millis(), ttl_ms);
        let mut waiting_said = false;
        loop {
            if *stop.borrow() {
                return;
            }
            match take().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, process = %self.holder, "lease taken; running");
                    waiting_said = false;
                    let (child_tx, child_rx) = watch::channel(false);
                    let fut = work(child_rx);
                    tokio::pin!(fut);
                    // Renewed beside the work, not instead of it: while a renewal
                    // waits for the database the work must still be polled, for on
                    // SQLite what the renewal waits for may be the work's own open
                    // transaction (a branch of `select!` would leave it unpolled,
                    // and both would wait out the busy timeout).
                    let renewing = async {
                        let mut renew = tokio::time::interval(self.ttl / 3);
                        renew.tick().await;
                        loop {
                            renew.tick().await;
                            if !take().await.unwrap_or(false) {
                                return;
                            }
                        }
                    };
                    tokio::pin!(renewing);
                    tokio::select! {
                        _ = &mut fut => {}
                        _ = &mut renewing => {
                            tracing::warn!(lease = %self.name, "lease lost (not renewed in time); stopping this work");
                            let _ = child_tx.send(true);
                            (&mut fut).await;
                        }
                        _ = stop.changed() => {
                            let _ = child_tx.send(true);
                            (&mut fut).await;
                            let _ = self.db.release_lease(&self.name, &self.holder).await;
                            return;
                        }
                    }
                }
                Ok(false) => {
                    if !waiting_said {
                        tracing::info!(lease = %self.name, "another process holds the lease; standing by");
                        waiting_said = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %format!("{e:#}"), "cannot take the lease; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.ttl / 3) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Runs `step` until told to stop; sleeps `idle` when it found no work and
/// backs off after an error (the database may be restarting).
async fn stage_loop<F, Fut>(name: &'static str, mut stop: watch::Receiver<bool>, idle: Duration, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let result = step().await;
        if result.is_ok() && failures > 0 {
            tracing::warn!(stage = name, failures, "stage recovered; going on");
            failures = 0;
        }
        let wait = match result {
            Ok(true) => continue,
            Ok(false) => idle,
            Err(e) => {
                failures += 1;
                tracing::error!(stage = name, error = %format!("{e:#}"), failures, "stage failed; retrying");
                Duration::from_millis(200u64 << failures.min(8))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::watch;

    use super::Lease;
    use crate::store::Db;

    /// The renewal falls due while the work holds SQLite's write lock: the
    /// work must go on and commit, so the renewal gets the lock and the work
    /// is never told to stop. (A renewal that starved the work would wait out
    /// the 30 s busy timeout, lose the lease and stop it.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_waiting_for_the_works_transaction_does_not_starve_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("l.db").display()), 4).await.unwrap();
        let lease =
            Lease { db: db.clone(), name: "engine".into(), holder: "me".into(), ttl: Duration::from_millis(300) };
        let (stop_tx, stop_rx) = watch::channel(false);
        let (runs, told_to_stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let work = |child: watch::Receiver<bool>| {
            let (db, runs, told, stop_tx) = (db.clone(), runs.clone(), told_to_stop.clone(), stop_tx.clone());
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) > 0 {
                    return;
                }
                let Db::Sqlite(pool, _) = &db else { unreachable!() };
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("INSERT INTO leases (name, holder, until_at) VALUES ('other', 'x', 0)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                // Longer than a renewal's period, with the write lock held.
                tokio::time::sleep(Duration::from_millis(700)).await;
                tx.commit().await.unwrap();
                if *child.borrow() {
                    told.fetch_add(1, Ordering::SeqCst);
                }
                let _ = stop_tx.send(true);
            }
        };
        lease.run(stop_rx, work).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(told_to_stop.load(Ordering::SeqCst), 0, "the work was stopped: its lease was not renewed");
        let holders = db.leases().await.unwrap();
        assert!(holders.iter().any(|(name, holder, _)| name == "other" && holder == "x"), "the work committed");
    }
}
