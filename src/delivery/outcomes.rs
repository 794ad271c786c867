//! Group commit of delivery outcomes. Each send's outcome must be durable
//! before its worker moves on, but one transaction per outcome would make
//! the store the bottleneck (SQLite takes one writer at a time, and each
//! commit is several round trips and a sync). So the first worker to arrive
//! commits everything queued behind it in one transaction, and the others,
//! arriving while it writes, are committed together next.

use std::sync::Mutex;

use anyhow::{Result, anyhow};
use tokio::sync::oneshot;

use crate::audit::{Audit, Entry};
use crate::store::{Attempt, Db};

type Waiting = (Attempt, Entry, oneshot::Sender<Result<(), String>>);

/// The queue of outcomes waiting for the next commit.
#[derive(Default)]
pub(super) struct Outcomes {
    queue: Mutex<Vec<Waiting>>,
    /// Held by whoever is committing; fair, so every waiter gets its turn.
    writer: tokio::sync::Mutex<()>,
}

impl Outcomes {
    /// Records `attempt` with `entry`, with whatever else is waiting; returns once it is committed.
    pub(super) async fn record(&self, db: &Db, audit: &Audit, attempt: Attempt, entry: Entry) -> Result<()> {
        let (tx, mut rx) = oneshot::channel();
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push((attempt, entry, tx));
        let _turn = self.writer.lock().await;
        match rx.try_recv() {
            Ok(done) => return done.map_err(|e| anyhow!(e)),
            // The writer that took it was dropped mid-commit: the transaction rolled back,
            // and the notice waits out its lease like any interrupted send.
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err(anyhow!("the outcome's commit was interrupted; it will be retried after its lease"));
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let group = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let mut answers = Vec::with_capacity(group.len());
        let items = group
            .into_iter()
            .map(|(a, e, tx)| {
                answers.push(tx);
                (a, e)
            })
            .collect();
        let done = db.record_attempts(audit, items).await.map_err(|e| format!("{e:#}"));
        for tx in answers {
            // A waiter that went away needs no answer.
            let _ = tx.send(done.clone());
        }
        rx.try_recv().map_err(|_| anyhow!("the outcome was not in its own commit"))?.map_err(|e| anyhow!(e))
    }
}
