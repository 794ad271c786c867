//! Group commit: one writer task takes every request waiting in its queue
//! (up to [`MAX_GROUP`] records), stores them in one transaction, and only
//! then answers each. Concurrent single posts thus share a commit (and on
//! SQLite its fsync) instead of queueing for the database's one write lock
//! one by one; nothing is answered before it is durable.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::keys::KeyRing;
use crate::clock::Clock;
use crate::events::ValidEvent;
use crate::store::{Db, NewQuarantine, Stored};

/// Most records one group commit carries; a job larger than this (a batch
/// chunk) still goes whole, alone.
pub const MAX_GROUP: usize = 2048;
/// Jobs waiting before senders are made to wait too.
const QUEUE: usize = 16 * 1024;
/// How often uses counted without a commit to carry them (say, only 4xx
/// answers) are written anyway.
const USE_FLUSH: Duration = Duration::from_secs(1);

type Reply = oneshot::Sender<Result<Vec<Stored>, Arc<anyhow::Error>>>;

struct Job {
    events: Vec<ValidEvent>,
    quarantine: Vec<NewQuarantine>,
    reply: Reply,
}

/// The handle requests use to reach the writer.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task; it ends once every handle is dropped and the queue is drained.
    pub fn start(db: Db, clock: Clock, keys: Arc<KeyRing>) -> (Writer, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(db, clock, keys, rx));
        (Writer { tx }, task)
    }

    /// Stores events and quarantined records durably; answers each event's seq.
    pub async fn store(&self, events: Vec<ValidEvent>, quarantine: Vec<NewQuarantine>) -> Result<Vec<Stored>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { events, quarantine, reply })
            .await
            .map_err(|_| anyhow::anyhow!("the API's writer has stopped"))?;
        match answer.await {
            Ok(Ok(stored)) => Ok(stored),
            Ok(Err(e)) => Err(anyhow::anyhow!("{e:#}")),
            Err(_) => Err(anyhow::anyhow!("the API's writer stopped before committing")),
        }
    }
}

async fn run(db: Db, clock: Clock, keys: Arc<KeyRing>, mut rx: mpsc::Receiver<Job>) {
    loop {
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = tokio::time::sleep(USE_FLUSH) => {
                flush_uses(&db, &clock, &keys).await;
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut size = first.events.len() + first.quarantine.len();
        let mut jobs = vec![first];
        while size < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.events.len() + job.quarantine.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        commit(&db, &clock, &keys, jobs).await;
    }
    flush_uses(&db, &clock, &keys).await;
}

async fn commit(db: &Db, clock: &Clock, keys: &KeyRing, jobs: Vec<Job>) {
    let mut events = Vec::new();
    let mut quarantine = Vec::new();
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.reply, job.events.len()));
        events.extend(job.events);
        quarantine.extend(job.quarantine);
    }
    let uses = keys.take_uses();
    crate::metrics::get()
        .group_commit_events
        .with_label_values::<&str>(&[])
        .observe((events.len() + quarantine.len()) as f64);
    match db.ingest_api(&events, &quarantine, &uses, clock.now_ms()).await {
        Ok(stored) => {
            let mut rest = stored.as_slice();
            for (reply, n) in replies {
                let (mine, tail) = rest.split_at(n);
                rest = tail;
                // A requester that timed out and left is told nothing; its events are stored all the same.
                let _ = reply.send(Ok(mine.to_vec()));
            }
        }
        Err(e) => {
            keys.restore_uses(uses);
            tracing::error!(error = %format!("{e:#}"), records = events.len() + quarantine.len(), "API group commit failed");
            let e = Arc::new(e);
            for (reply, _) in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

async fn flush_uses(db: &Db, clock: &Clock, keys: &KeyRing) {
    let uses = keys.take_uses();
    if uses.is_empty() {
        return;
    }
    if let Err(e) = db.ingest_api(&[], &[], &uses, clock.now_ms()).await {
        tracing::warn!(error = %format!("{e:#}"), "cannot write API key uses; kept for the next commit");
        keys.restore_uses(uses);
    }
}
