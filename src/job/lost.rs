//! A database lost mid-run: the first store failure that a fresh connection confirms stops
//! every security not yet stored (no more Yahoo requests) and ends the run with exit 3.

use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::job::store::{Store, StoreError};

/// The database lost mid-run: set by the first store failure that a fresh connection confirms
/// ([`Store::probe`]); every security not yet stored then stops at once.
pub(super) struct Lost {
    pub(super) token: CancellationToken,
    error: std::sync::Mutex<Option<StoreError>>,
}

impl Lost {
    pub(super) fn new() -> Self {
        Self {
            token: CancellationToken::new(),
            error: std::sync::Mutex::new(None),
        }
    }

    /// Whether `e` (met while `doing`) means the database is gone; the first such error is
    /// kept and stops the run.
    pub(super) async fn confirms(&self, store: &Store, e: &StoreError, doing: &str) -> bool {
        if self.token.is_cancelled() {
            return true;
        }
        if !e.may_be_connection_loss() {
            return false;
        }
        match store.probe(doing).await {
            Ok(()) => false,
            Err(lost) => {
                error!(error = %lost, "the database is gone: no new security starts");
                let mut slot = self
                    .error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                slot.get_or_insert(lost);
                self.token.cancel();
                true
            }
        }
    }

    pub(super) fn take(&self) -> Option<StoreError> {
        self.error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}
