//! A one-shot reply slot: the committer fills it after the commit returned;
//! the caller waits on it blocking ([`Ticket::wait`]) or as a `Future`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::WriteError;

#[derive(Debug)]
struct Slot<T> {
    value: Option<Result<T, WriteError>>,
    waker: Option<Waker>,
    /// A thread is (about to be) blocked in [`Ticket::wait`]. Only then does
    /// the reply signal the condvar: `notify_all` is a futex syscall even
    /// with no waiter, and async callers, the daemon's case, never block.
    blocked: bool,
}

#[derive(Debug)]
struct Shared<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

/// The committer's end. Dropping it unfilled answers `Closed`, so a waiter can
/// never hang on a committer that died.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    shared: Option<Arc<Shared<T>>>,
}

/// The outcome of a queued write, available once its transaction committed
/// (or failed). `T` is the inner `Result` of the operation.
#[derive(Debug)]
pub struct Ticket<T> {
    shared: Arc<Shared<T>>,
}

pub(crate) fn pair<T>() -> (Reply<T>, Ticket<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot { value: None, waker: None, blocked: false }),
        ready: Condvar::new(),
    });
    (Reply { shared: Some(shared.clone()) }, Ticket { shared })
}

impl<T> Reply<T> {
    pub(crate) fn send(mut self, value: Result<T, WriteError>) {
        self.fill(value);
    }

    fn fill(&mut self, value: Result<T, WriteError>) {
        let Some(shared) = self.shared.take() else { return };
        let (waker, blocked) = {
            let mut slot = shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
            slot.value = Some(value);
            (slot.waker.take(), slot.blocked)
        };
        if blocked {
            shared.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        self.fill(Err(WriteError::Closed));
    }
}

impl<T> Ticket<T> {
    /// Blocks until the outcome is known.
    pub fn wait(self) -> Result<T, WriteError> {
        let mut slot = self.shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(v) = slot.value.take() {
                return v;
            }
            // Set under the same lock the filler takes: it either sees the
            // flag and notifies, or filled the value before this check.
            slot.blocked = true;
            slot = self.shared.ready.wait(slot).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The outcome if it is known, without blocking.
    pub fn try_take(&mut self) -> Option<Result<T, WriteError>> {
        self.shared.slot.lock().unwrap_or_else(PoisonError::into_inner).value.take()
    }

    /// A ticket that is already answered (a write refused before queueing).
    pub(crate) fn ready(value: Result<T, WriteError>) -> Ticket<T> {
        let (reply, ticket) = pair();
        reply.send(value);
        ticket
    }
}

impl<T> Future for Ticket<T> {
    type Output = Result<T, WriteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> Unpin for Ticket<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn future_and_blocking_waits_see_the_reply() {
        let (reply, mut ticket) = pair::<u32>();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut ticket).poll(&mut cx).is_pending());
        reply.send(Ok(7));
        assert_eq!(Pin::new(&mut ticket).poll(&mut cx), Poll::Ready(Ok(7)));

        let (reply, ticket) = pair::<u32>();
        let waiter = std::thread::spawn(move || ticket.wait());
        reply.send(Ok(8));
        assert_eq!(waiter.join().unwrap(), Ok(8));

        // A reply dropped unanswered (a committer that died) answers Closed.
        let (reply, ticket) = pair::<u32>();
        drop(reply);
        assert_eq!(ticket.wait(), Err(WriteError::Closed));
    }
}
