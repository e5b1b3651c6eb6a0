//! What a run reports: per security, per stage and for the whole run, as printed and as
//! recorded in `runs`.

use chrono::NaiveDate;
use serde::Serialize;
use tracing::error;
use uuid::Uuid;

use crate::domain::{Security, WindowReason};
use crate::job::fetch::ThrottleReport;
use crate::job::store::RunOutcome;
use crate::job::validate::DropCounts;

/// What the embed and index stages did in a run.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    pub documents_indexed: u64,
    pub elapsed_ms: u64,
    pub error: Option<String>,
}

/// What the features stage did in a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeaturesReport {
    /// Rows of `market_features` inserted, changed or removed.
    pub rows_written: u64,
    /// Calendar dates computed.
    pub dates: usize,
    /// Features per date.
    pub features: usize,
    /// Values that are `NULL` (inputs missing), among dates x features.
    pub null_values: usize,
    pub elapsed_ms: u64,
    pub error: Option<String>,
}

/// How one security's unit of work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityOutcome {
    Succeeded,
    Failed,
    /// Not started, or its fetch was abandoned, because the run was told to stop.
    Interrupted,
    /// Not fetched because the run stopped sending: Yahoo throttled it too often, or the
    /// request budget was spent. The next run fetches it (its window covers the gap).
    Skipped,
}

/// One row of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityReport {
    pub db_symbol: String,
    pub yahoo_symbol: String,
    pub category: String,
    /// Where its bars come from (`yahoo`, `tiingo`).
    pub source: &'static str,
    pub outcome: SecurityOutcome,
    pub rows_fetched: usize,
    pub rows_written: u64,
    /// Indicator rows inserted or updated by the analyze stage.
    pub indicators_written: u64,
    /// Narrative documents inserted or changed by the narrate stage.
    pub documents_written: u64,
    pub first_date: Option<NaiveDate>,
    pub last_date: Option<NaiveDate>,
    pub dropped: DropCounts,
    /// The window fetched for it, and why it is that one.
    pub window: String,
    pub window_reason: WindowReason,
    /// `split 10:1 on 2024-06-10, history 2019-01-02..2024-06-07 rebased (1,366 bars)`.
    pub rebased: Option<String>,
    /// Corporate actions stored for the first time.
    pub new_actions: Vec<String>,
    /// The earliest date whose stored values this run changed (for the features stage).
    #[serde(skip)]
    pub changed_from: Option<NaiveDate>,
    pub fetch_ms: u64,
    pub store_ms: u64,
    pub error: Option<String>,
}

/// The whole run, as printed and as recorded in `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: Uuid,
    pub window: String,
    pub outcome: RunOutcome,
    pub securities_total: usize,
    pub securities_ok: usize,
    pub securities_failed: usize,
    /// Not fetched: the run stopped sending (throttled, or the request budget spent).
    pub securities_skipped: usize,
    pub rows_written: u64,
    /// Bars left out by validation, by reason, over every security.
    pub dropped: DropCounts,
    /// Requests sent, the budget, the throttle's pauses and why it stopped, if it did.
    pub requests: ThrottleReport,
    pub elapsed_ms: u64,
    /// The features stage; `None` when disabled or interrupted before it.
    pub features: Option<FeaturesReport>,
    /// The embed and index stages; `None` with `--no-embeddings`.
    pub index: Option<IndexReport>,
    pub securities: Vec<SecurityReport>,
}

impl SecurityReport {
    pub(super) fn new(security: &Security) -> Self {
        Self {
            db_symbol: security.db_symbol.to_string(),
            yahoo_symbol: security.yahoo_symbol.to_string(),
            category: security.category.to_string(),
            source: security.source.as_str(),
            outcome: SecurityOutcome::Interrupted,
            rows_fetched: 0,
            rows_written: 0,
            indicators_written: 0,
            documents_written: 0,
            first_date: None,
            last_date: None,
            dropped: DropCounts::default(),
            window: String::new(),
            window_reason: WindowReason::Unknown,
            rebased: None,
            new_actions: Vec::new(),
            changed_from: None,
            fetch_ms: 0,
            store_ms: 0,
            error: None,
        }
    }

    /// Not fetched because the run stopped sending (`reason` says why and when to rerun).
    pub(super) fn skipped(mut self, reason: &dyn std::fmt::Display) -> Self {
        self.outcome = SecurityOutcome::Skipped;
        self.error = Some(reason.to_string());
        self
    }

    pub(super) fn failed(mut self, error: &dyn std::fmt::Display) -> Self {
        self.outcome = SecurityOutcome::Failed;
        self.error = Some(error.to_string());
        error!(symbol = %self.db_symbol, %error, "security failed");
        self
    }
}
