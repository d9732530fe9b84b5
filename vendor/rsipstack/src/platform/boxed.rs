//! warmline patch 6: unbounded channels whose messages travel boxed.
//!
//! tokio's unbounded channel allocates its first block of 32 slots when it is made. A
//! transaction's TU channel carries `TransactionEvent` (344 bytes) and a dialog's state
//! channel `DialogState` (304 bytes): 11 KB and 10 KB per transaction and per dialog,
//! held for their whole life, while most carry a handful of messages. Boxed, a slot is a
//! pointer (a block of 256 bytes) and each message costs one allocation of its own size.
//! Same methods as tokio's, so code that names the channel types is unchanged.

use tokio::sync::mpsc;

pub use mpsc::error::{SendError, TryRecvError};

/// Make a channel; see the module docs.
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (UnboundedSender(tx), UnboundedReceiver(rx))
}

#[derive(Debug)]
pub struct UnboundedSender<T>(mpsc::UnboundedSender<Box<T>>);

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> UnboundedSender<T> {
    pub fn send(&self, message: T) -> Result<(), SendError<T>> {
        self.0
            .send(Box::new(message))
            .map_err(|SendError(boxed)| SendError(*boxed))
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    pub fn same_channel(&self, other: &Self) -> bool {
        self.0.same_channel(&other.0)
    }

    pub async fn closed(&self) {
        self.0.closed().await
    }
}

#[derive(Debug)]
pub struct UnboundedReceiver<T>(mpsc::UnboundedReceiver<Box<T>>);

impl<T> UnboundedReceiver<T> {
    pub async fn recv(&mut self) -> Option<T> {
        self.0.recv().await.map(|boxed| *boxed)
    }

    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map(|boxed| *boxed)
    }

    pub fn poll_recv(
        &mut self,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Option<T>> {
        self.0.poll_recv(cx).map(|m| m.map(|boxed| *boxed))
    }

    pub fn close(&mut self) {
        self.0.close()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}
