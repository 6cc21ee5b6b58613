//! The anchoring worker: signs a checkpoint for every ledger that grew since
//! its last one, on a cadence and on demand. The store refuses a checkpoint
//! that does not match its own tree or is not newer, so this worker can never
//! sign history inconsistent with what it signed before and have it stored.

use std::sync::Arc;
use std::time::Duration;

use annal_chain::{Checkpoint, NoteSigner, Origin};
use annal_store::{CheckpointRequest, Store};
use tokio::sync::watch;

/// What one anchoring pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub signed: u64,
    pub failed: u64,
}

/// Signs and stores a checkpoint for every ledger with unanchored records.
/// All checkpoints of a pass are queued before any is awaited, so they ride
/// one group commit instead of one commit (and one fsync) per ledger.
pub async fn anchor_all(store: &Store, signer: &NoteSigner, log: &annal_chain::LogName) -> Pass {
    let mut pass = Pass::default();
    let ledgers = match store.ledgers() {
        Ok(l) => l,
        Err(e) => {
            log::error!("anchoring: cannot list ledgers: {e:?}");
            pass.failed += 1;
            return pass;
        }
    };
    let mut tickets = Vec::new();
    for (tenant, ledger, size) in ledgers {
        let state = match store.ledger_state(&tenant, &ledger) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                log::error!("anchoring {tenant}/{ledger}: {e:?}");
                pass.failed += 1;
                continue;
            }
        };
        if state.checkpoint_size >= state.size || size == 0 {
            continue;
        }
        let origin = Origin::new(log.clone(), tenant.clone(), ledger.clone());
        let note = Checkpoint::new(origin, state.size, state.root).sign(signer);
        let ticket = store.store_checkpoint(CheckpointRequest {
            tenant: tenant.clone(),
            ledger: ledger.clone(),
            note,
        });
        tickets.push((tenant, ledger, ticket));
    }
    for (tenant, ledger, ticket) in tickets {
        match ticket.await {
            Ok(Ok(_)) => pass.signed += 1,
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
    pass
}

/// Runs a pass every `interval` until `stop` flips.
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
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        if signing_ok {
            anchor_all(&store, &signer, &log).await;
        }
    }
    log::info!("anchoring worker stopped");
}
