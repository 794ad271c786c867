//! The engine on a manual virtual clock, as `rules test` and `rules
//! simulate` run it: the clock jumps to each due time in turn, timers fire
//! in order, and notices that come due are handed to a [`DueNotices`]
//! (which records them as sent without sending anything).

use anyhow::Result;

use super::{Engine, RuleSet};
use crate::clock::Clock;
use crate::consent::Route;
use crate::engine::profile::Profile;
use crate::store::Db;

/// What becomes of the notices due at a moment of virtual time.
pub(crate) trait DueNotices {
    /// Takes every notice that may go out by `now_ms` and marks it as sent.
    async fn take(&mut self, db: &Db, now_ms: i64) -> Result<()>;
}

/// Marks due notices as sent and remembers nothing (the rule tests read the store afterwards).
pub(crate) struct MarkSent;

impl DueNotices for MarkSent {
    async fn take(&mut self, db: &Db, now_ms: i64) -> Result<()> {
        db.mark_due_as_sent_without_sending(now_ms).await?;
        Ok(())
    }
}

/// Fires every timer due up to `until_ms`, moving the clock to each due time
/// in turn, then leaves the clock at `until_ms`.
pub(crate) async fn fire_until(
    db: &Db,
    engine: &Engine,
    clock: &Clock,
    until_ms: i64,
    due: &mut impl DueNotices,
) -> Result<()> {
    // Cases that open from a birth date are opened a horizon ahead of their
    // first step, when the clock passes; so the clock never jumps further than
    // that at once, or a step could come due unseen inside the jump.
    let stride = super::openings::HORIZON_MS - super::openings::STEP_MS - 86_400_000;
    loop {
        let timer = db.next_due_at().await?;
        let next = timer.map_or(clock.now_ms() + stride, |t| t.min(clock.now_ms() + stride));
        if next > until_ms {
            break;
        }
        if next > clock.now_ms() {
            clock.set(crate::clock::from_ms(next));
        }
        due.take(db, clock.now_ms()).await?;
        let r = engine.fire_due().await?;
        engine.run_until_idle().await?;
        if r.timers == 0 && r.cases == 0 && timer == Some(next) {
            break;
        }
    }
    if until_ms > clock.now_ms() {
        clock.set(crate::clock::from_ms(until_ms));
    }
    Ok(())
}

/// Brings virtual time to `at_ms` (firing what is due before it), ready for events arriving then.
pub(crate) async fn arrive_at(
    db: &Db,
    engine: &Engine,
    clock: &Clock,
    at_ms: i64,
    due: &mut impl DueNotices,
) -> Result<()> {
    fire_until(db, engine, clock, at_ms, due).await?;
    clock.set(crate::clock::from_ms(at_ms));
    due.take(db, clock.now_ms()).await
}

/// The route a notice of `ls`'s `step` to `recipient` would take with every channel configured.
pub(crate) fn route_notice(rules: &RuleSet, ls: &str, step: &str, recipient: &str, profile: Option<&Profile>) -> Route {
    match rules.situations.iter().find(|d| d.id == ls) {
        Some(d) => {
            let step = d.steps.iter().find(|s| s.id == step);
            let legal = step.is_some_and(|s| s.legal_effect);
            let purpose = step.map_or(d.id.as_str(), |s| d.step_purpose(s));
            crate::consent::route(recipient, profile, d, purpose, legal, &|_| true).0
        }
        None => Route::Suppress("the life situation is not in the rule set".into()),
    }
}
