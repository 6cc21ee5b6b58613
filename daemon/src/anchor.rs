//! The anchoring worker: signs a checkpoint for every ledger that grew since
//! its last one, on a cadence and on demand. The store refuses a checkpoint
//! that does not match its own tree or is not newer, so this worker can never
//! sign history inconsistent with what it signed before and have it stored.

use std::sync::Arc;
use std::time::Duration;

use annal_chain::{Checkpoint, LedgerName, NoteSigner, Origin, TenantId};
use annal_store::{CheckpointRefusal, CheckpointRequest, CheckpointStored, Store, Ticket};
use tokio::sync::watch;

/// What one anchoring pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub signed: u64,
    pub failed: u64,
}

/// Checkpoints queued before the pass waits for them: enough to share a
/// group commit, few enough to leave the write queue to appends (and never
/// to overflow it, however many ledgers grew).
const QUEUED_CHECKPOINTS_MAX: usize = 256;

/// Signs and stores a checkpoint for every ledger with unanchored records.
/// Up to `QUEUED_CHECKPOINTS_MAX` checkpoints are queued before any is
/// awaited, so they ride one group commit instead of one commit (and one
/// fsync) per ledger.
pub async fn anchor_all(store: &Store, signer: &NoteSigner, log: &annal_chain::LogName) -> Pass {
    let mut pass = Pass::default();
    let ledgers = match store.unanchored() {
        Ok(l) => l,
        Err(e) => {
            log::error!("anchoring: cannot list ledgers: {e:?}");
            pass.failed += 1;
            return pass;
        }
    };
    let mut tickets = Vec::with_capacity(QUEUED_CHECKPOINTS_MAX);
    for (tenant, ledger, state) in ledgers {
        let origin = Origin::new(log.clone(), tenant.clone(), ledger.clone());
        let note = Checkpoint::new(origin, state.size, state.root).sign(signer);
        let ticket = store.store_checkpoint(CheckpointRequest {
            tenant: tenant.clone(),
            ledger: ledger.clone(),
            note,
        });
        tickets.push((tenant, ledger, state.size, ticket));
        if tickets.len() == QUEUED_CHECKPOINTS_MAX {
            settle(&mut tickets, &mut pass).await;
        }
    }
    settle(&mut tickets, &mut pass).await;
    pass
}

type Queued = (TenantId, LedgerName, u64, Ticket<Result<CheckpointStored, CheckpointRefusal>>);

/// Waits for queued checkpoints and counts them. A checkpoint refused as not
/// newer than one of at least its size is no failure: another pass (the
/// worker's, or an operator's `anchor now`) signed that size first.
async fn settle(tickets: &mut Vec<Queued>, pass: &mut Pass) {
    for (tenant, ledger, size, ticket) in tickets.drain(..) {
        match ticket.await {
            Ok(Ok(_)) => pass.signed += 1,
            Ok(Err(CheckpointRefusal::NotNewer { last })) if last >= size => {}
            Ok(Err(refusal)) => {
                log::error!("anchoring {tenant}/{ledger}: refused: {refusal:?}");
                pass.failed += 1;
            }
            Err(e) => {
                log::error!("anchoring {tenant}/{ledger}: {e:?}");
                pass.failed += 1;
            }
        }
    }
}

/// Runs a pass every `interval` until `stop` flips, skipping it when
/// nothing was committed since a pass that left nothing behind.
/// A pass in progress finishes before the worker stops.
pub async fn run(
    store: Arc<Store>,
    signer: Arc<NoteSigner>,
    log: annal_chain::LogName,
    interval: Duration,
    signing_ok: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clean_at = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        // This pass's own checkpoints count as commits: the next pass runs
        // once more, finds nothing, and the one after it is skipped.
        let commits = store.commits();
        if signing_ok && clean_at != Some(commits) {
            let pass = anchor_all(&store, &signer, &log).await;
            clean_at = (pass.failed == 0).then_some(commits);
        }
    }
    log::info!("anchoring worker stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use annal_chain::testkit::test_signer;
    use annal_store::{AppendRequest, OpenOptions, Position};

    /// Two passes over the same grown ledgers (the worker's and an
    /// operator's `anchor now`) queue the same checkpoints; the second of
    /// each is refused as not newer, and that is no failure.
    #[tokio::test]
    async fn a_size_signed_by_another_pass_is_no_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), OpenOptions::default()).expect("open");
        let tenant = TenantId::new("acme").expect("tenant");
        let ledgers = 300;
        for i in 0..ledgers {
            let ledger = LedgerName::new(&format!("l{i}")).expect("ledger");
            let request = AppendRequest {
                tenant: tenant.clone(),
                ledger,
                position: Position::Next,
                timestamp_ms: 1,
                content_type: "application/json".into(),
                payload: b"{}".to_vec(),
                parents: Vec::new(),
                idempotency_key: None,
            };
            store.append(request).await.expect("append").expect("appended");
        }
        let signer = test_signer("annal.local", 1);
        let log = annal_chain::LogName::new("annal.local").expect("log");
        // Both passes read every ledger as unanchored before either's
        // checkpoints commit: the second queues the same sizes.
        let (a, b) = tokio::join!(anchor_all(&store, &signer, &log), anchor_all(&store, &signer, &log));
        assert_eq!((a.failed, b.failed), (0, 0));
        assert_eq!(a.signed + b.signed, ledgers);
        assert_eq!(anchor_all(&store, &signer, &log).await, Pass::default(), "nothing left to sign");
    }
}
