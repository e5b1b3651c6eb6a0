//! The job: for each selected security, fetch -> validate -> store, `batch_size` at a time, each
//! security on its own (one failing never stops the others), recorded in `runs`.
//!
//! Memory is bounded by the series in flight (at most 2 x `batch_size`), however many securities
//! are configured: a security's bars are dropped as soon as they are stored, and only its small
//! report is kept.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};
use uuid::Uuid;

use crate::config::Security;
use crate::domain::DateWindow;
use crate::fetch::{ClientOptions, FetchError, YahooClient};
use crate::settings::DatabaseSettings;
use crate::store::{RunOutcome, RunRecord, Store, StoreError};
use crate::validate::{DropCounts, Series, validate};

/// What to run.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub window: DateWindow,
    pub securities: Vec<Security>,
    pub batch_size: usize,
    /// Trade dates per security that get a narrative document (`encoding.embedding_days`).
    pub embedding_days: u32,
    pub apply_migrations: bool,
    pub client: ClientOptions,
}

/// Why the job as a whole could not run (a single security failing is not a `JobError`).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// How one security's unit of work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityOutcome {
    Succeeded,
    Failed,
    /// Not started, or its fetch was abandoned, because the run was told to stop.
    Interrupted,
}

/// One row of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityReport {
    pub db_symbol: String,
    pub yahoo_symbol: String,
    pub category: String,
    pub outcome: SecurityOutcome,
    pub rows_fetched: usize,
    pub rows_written: u64,
    /// Indicator rows inserted or updated by the analyze stage.
    pub indicators_written: u64,
    /// Narrative documents inserted or changed by the narrate stage.
    pub documents_written: u64,
    pub first_date: Option<NaiveDate>,
    pub last_date: Option<NaiveDate>,
    pub dropped: Dropped,
    pub fetch_ms: u64,
    pub store_ms: u64,
    pub error: Option<String>,
}

/// Bars left out by validation (see `validate`), for the summary.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Dropped {
    pub null: usize,
    pub impossible: usize,
    pub duplicate_dates: usize,
    pub session_open: usize,
}

impl From<DropCounts> for Dropped {
    fn from(d: DropCounts) -> Self {
        Self {
            null: d.null,
            impossible: d.impossible,
            duplicate_dates: d.duplicate_dates,
            session_open: d.session_open,
        }
    }
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
    pub rows_written: u64,
    pub elapsed_ms: u64,
    pub securities: Vec<SecurityReport>,
}

impl SecurityReport {
    fn new(security: &Security) -> Self {
        Self {
            db_symbol: security.db_symbol.to_string(),
            yahoo_symbol: security.yahoo_symbol.to_string(),
            category: security.category.to_string(),
            outcome: SecurityOutcome::Interrupted,
            rows_fetched: 0,
            rows_written: 0,
            indicators_written: 0,
            documents_written: 0,
            first_date: None,
            last_date: None,
            dropped: Dropped::default(),
            fetch_ms: 0,
            store_ms: 0,
            error: None,
        }
    }

    fn failed(mut self, error: &dyn std::fmt::Display) -> Self {
        self.outcome = SecurityOutcome::Failed;
        self.error = Some(error.to_string());
        error!(symbol = %self.db_symbol, %error, "security failed");
        self
    }
}

/// Runs the job to the end (or until `cancel`), records it in `runs`, and reports it.
pub async fn run(
    options: &JobOptions,
    database: &DatabaseSettings,
    cancel: &CancellationToken,
) -> Result<RunReport, JobError> {
    let started = Instant::now();
    // One connection per concurrent store transaction, plus one for the run's own bookkeeping.
    let pool_size = u32::try_from(options.batch_size + 1).unwrap_or(u32::MAX);
    let store = Store::connect(database, pool_size).await?;
    if options.apply_migrations {
        store.migrate().await?;
    }
    let lock = store.lock_run().await?;
    let run_id = store
        .start_run(&options.window, options.securities.len())
        .await?;
    let span = info_span!("run", %run_id, window = %options.window);
    info!(parent: &span, securities = options.securities.len(), "run started");

    let client = YahooClient::new(&options.client)?;
    // Two stages joined by a stream: up to `batch_size` fetches in flight, and up to
    // `batch_size` store transactions in flight, so that network waits overlap database writes.
    // `buffer_unordered` pulls from upstream only when it has room, so at most
    // 2 x batch_size series are in memory at once.
    let width = options.batch_size.max(1);
    let reports: Vec<SecurityReport> = futures::stream::iter(&options.securities)
        .map(|security| {
            fetch_security(&client, security, &options.window, cancel)
                .instrument(info_span!(parent: &span, "fetch", symbol = %security.db_symbol))
        })
        .buffer_unordered(width)
        .map(|fetched| {
            let symbol = fetched.report().db_symbol.clone();
            store_security(&store, fetched, options)
                .instrument(info_span!(parent: &span, "store", %symbol))
        })
        .buffer_unordered(width)
        .collect()
        .await;
    let mut reports = reports;
    // Config order, not completion order: the summary reads the same every day.
    let order: BTreeMap<&str, usize> = options
        .securities
        .iter()
        .enumerate()
        .map(|(i, s)| (s.db_symbol.as_str(), i))
        .collect();
    reports.sort_by_key(|r| {
        order
            .get(r.db_symbol.as_str())
            .copied()
            .unwrap_or(usize::MAX)
    });

    let ok = count(&reports, SecurityOutcome::Succeeded);
    let failed = count(&reports, SecurityOutcome::Failed);
    let outcome = if cancel.is_cancelled() {
        RunOutcome::Interrupted
    } else if failed == 0 {
        RunOutcome::Succeeded
    } else if ok == 0 {
        RunOutcome::Failed
    } else {
        RunOutcome::Partial
    };
    let rows_written = reports.iter().map(|r| r.rows_written).sum();
    let errors: BTreeMap<String, String> = reports
        .iter()
        .filter_map(|r| Some((r.db_symbol.clone(), r.error.clone()?)))
        .collect();
    store
        .finish_run(
            run_id,
            &RunRecord {
                outcome,
                securities_total: reports.len(),
                securities_ok: ok,
                securities_failed: failed,
                rows_written,
                details: &reports,
                errors: &errors,
            },
        )
        .await?;
    if let Err(e) = lock.release().await {
        warn!(error = %e, "could not release the run lock cleanly; it is released when the connection closes");
    }
    let report = RunReport {
        run_id,
        window: options.window.to_string(),
        outcome,
        securities_total: reports.len(),
        securities_ok: ok,
        securities_failed: failed,
        rows_written,
        elapsed_ms: millis(started.elapsed()),
        securities: reports,
    };
    info!(parent: &span, outcome = outcome.as_str(), ok, failed, rows_written, elapsed_ms = report.elapsed_ms, "run finished");
    Ok(report)
}

/// A security after the fetch stage: a validated series to store, or already finished.
enum Fetched<'a> {
    Ready {
        security: &'a Security,
        report: SecurityReport,
        series: Series,
    },
    Done(SecurityReport),
}

impl Fetched<'_> {
    fn report(&self) -> &SecurityReport {
        match self {
            Self::Ready { report, .. } | Self::Done(report) => report,
        }
    }
}

/// Fetch and validate one security. Failures end its unit of work here, with the reason.
async fn fetch_security<'a>(
    client: &YahooClient,
    security: &'a Security,
    window: &DateWindow,
    cancel: &CancellationToken,
) -> Fetched<'a> {
    let mut report = SecurityReport::new(security);
    if cancel.is_cancelled() {
        return Fetched::Done(report);
    }
    let started = Instant::now();
    // A fetch (including its backoff sleeps) is abandoned on cancellation: nothing is written.
    let fetched = tokio::select! {
        biased;
        () = cancel.cancelled() => return Fetched::Done(report),
        fetched = client.chart(&security.yahoo_symbol, window) => fetched,
    };
    report.fetch_ms = millis(started.elapsed());
    let series = match fetched {
        Ok(envelope) => validate(envelope, &security.yahoo_symbol, window, Utc::now()),
        Err(e) => return Fetched::Done(report.failed(&e)),
    };
    match series {
        Ok(series) => {
            report.rows_fetched = series.bars.len();
            report.first_date = series.bars.first().map(|b| b.trade_date);
            report.last_date = series.bars.last().map(|b| b.trade_date);
            report.dropped = series.dropped.into();
            Fetched::Ready {
                security,
                report,
                series,
            }
        }
        Err(e) => Fetched::Done(report.failed(&e)),
    }
}

/// Store one fetched series in its own transaction, then analyze the security (indicators from
/// its whole stored series) and narrate its last `embedding_days`. A series already fetched
/// when the run is told to stop is still stored: the transaction is short and commits or rolls
/// back whole.
async fn store_security(
    store: &Store,
    fetched: Fetched<'_>,
    options: &JobOptions,
) -> SecurityReport {
    let (security, mut report, series) = match fetched {
        Fetched::Done(report) => return report,
        Fetched::Ready {
            security,
            report,
            series,
        } => (security, report, series),
    };
    let started = Instant::now();
    let stored = store.store_series(security, &series).await;
    drop(series); // analyze reads the whole history from the database: free the bars first
    report.rows_written = match stored {
        Ok(written) => written,
        Err(e) => return report.failed(&e),
    };
    report.indicators_written = match store
        .analyze_security(&security.db_symbol, options.window.from())
        .await
    {
        Ok(written) => written,
        Err(e) => return report.failed(&e),
    };
    report.documents_written = match store
        .narrate_security(security, options.embedding_days)
        .await
    {
        Ok(written) => written,
        Err(e) => return report.failed(&e),
    };
    report.store_ms = millis(started.elapsed());
    report.outcome = SecurityOutcome::Succeeded;
    info!(
        rows_fetched = report.rows_fetched,
        rows_written = report.rows_written,
        indicators_written = report.indicators_written,
        documents_written = report.documents_written,
        first = report.first_date.map(tracing::field::display),
        last = report.last_date.map(tracing::field::display),
        fetch_ms = report.fetch_ms,
        store_ms = report.store_ms,
        "stored"
    );
    report
}

fn count(reports: &[SecurityReport], outcome: SecurityOutcome) -> usize {
    reports.iter().filter(|r| r.outcome == outcome).count()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
