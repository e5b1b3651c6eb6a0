//! The job: for each selected security, fetch -> validate -> store -> narrate, `batch_size` at a
//! time, each security on its own (one failing never stops the others), with the embed and
//! index stages following the narratives as they are written; recorded in `runs`.
//!
//! Memory is bounded by the series in flight (at most 2 x `batch_size`), however many securities
//! are configured: a security's bars are dropped as soon as they are stored, and only its small
//! report is kept.

pub mod analyze;
pub mod embed;
pub mod features;
pub mod fetch;
pub mod history;
pub mod index;
mod lost;
mod memory;
pub mod narrate;
mod narration;
mod outcome;
pub mod source;
pub mod store;
pub mod validate;

use lost::Lost;
pub use memory::{MemoryError, MemoryOptions, chroma_metadata, record};
use memory::{ModelLoad, Narrated, index_documents};
pub use narration::ContextSymbols;
use narration::narrate_stage;
pub use outcome::{FeaturesReport, IndexReport, RunReport, SecurityOutcome, SecurityReport};

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};
use uuid::Uuid;

use crate::config::env::DatabaseSettings;
use crate::domain::{
    DateWindow, DbSymbol, HistoryDays, Security, SecurityWindow, Shard, WindowReason,
};
pub use crate::job::embed::ModelSource;
use crate::job::features::{Gap, Plan};
use crate::job::fetch::tiingo::TiingoOptions;
use crate::job::fetch::{ClientOptions, FetchError};
use crate::job::source::{SourceError, Sources};
use crate::job::store::{RUN_LOCK_KEY, RunLock, RunOutcome, RunRecord, Store, StoreError};
use crate::job::validate::{DropCounts, Series};

/// What to run.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub window: DateWindow,
    pub securities: Vec<Security>,
    pub batch_size: usize,
    /// Trade dates per security that get a narrative document (`encoding.embedding_days`).
    pub embedding_days: u32,
    /// History a security with no stored bar gets (`encoding.history_days`).
    pub history_days: HistoryDays,
    /// How far back a run fills the gap since a security's last bar (`max_catch_up_days`).
    pub max_catch_up_days: u32,
    /// `--from` was given: the window is a backfill, fetched as asked for every security (no
    /// catch-up, no first history).
    pub backfill: bool,
    pub apply_migrations: bool,
    pub client: ClientOptions,
    /// Tiingo's client, when some selected security has `source: tiingo` (`None` otherwise).
    pub tiingo: Option<TiingoOptions>,
    /// Where the embed and index stages send the documents; `None` with `--no-embeddings`.
    pub memory: Option<MemoryOptions>,
    /// The cross-asset features to compute after every security is stored; `None` when
    /// `features.enabled` is false.
    pub features: Option<Plan>,
    /// The shard this run is (`--shard`); `securities` already holds only its part. A sharded
    /// run takes its own run lock, so the shards of one job run in parallel.
    pub shard: Option<Shard>,
    /// The context securities whose day the narratives tell (`features.roles` vix and dxy).
    pub context: ContextSymbols,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// PostgreSQL went away mid-run: no new security was started after the first failure.
    #[error(
        "{source}; {stored} of {total} securities were stored before it, the others not (nothing partial was written, no more Yahoo requests were sent); the next run marks run {run_id} abandoned and catches up"
    )]
    Lost {
        #[source]
        source: Box<StoreError>,
        stored: usize,
        total: usize,
        run_id: Uuid,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Runs the job to the end (or until `cancel`), records it in `runs`, and reports it.
pub async fn run(
    options: &JobOptions,
    database: &DatabaseSettings,
    cancel: &CancellationToken,
) -> Result<RunReport, JobError> {
    start(options, database)
        .await?
        .finish(options, cancel)
        .await
}

/// A run that holds the run lock and has its `runs` row (outcome `running`): what [`start`]
/// returns and [`StartedRun::finish`] completes. `run` is the two in a row; `serve` answers
/// `POST /collect` between them, with the run id or why the run could not start. Dropped
/// unfinished, the lock is released when its connection closes and the row stays `running`.
pub struct StartedRun {
    store: Store,
    lock: RunLock,
    sources: Sources,
    run_id: Uuid,
    started: Instant,
}

/// Connects (with 2 x `options.batch_size` + 2 connections), applies migrations unless told not
/// to, takes the run lock ([`StoreError::Locked`] if another run holds it; orphaned `running`
/// rows become `abandoned`), builds the Yahoo client and records the run as started. Nothing is
/// fetched yet, and nothing that can fail comes after the run's row is written.
pub async fn start(
    options: &JobOptions,
    database: &DatabaseSettings,
) -> Result<StartedRun, JobError> {
    let started = Instant::now();
    // One connection per concurrent store transaction and per concurrent narration (the two
    // stages run side by side), one for the index stage and one for the run's own bookkeeping
    // and the features. Connections open only when first needed.
    let pool_size = u32::try_from(2 * options.batch_size.max(1) + 2).unwrap_or(u32::MAX);
    let store = Store::connect(database, pool_size).await?;
    if options.apply_migrations {
        store.migrate().await?;
    }
    let lock = store
        .lock_run(options.shard.map_or(RUN_LOCK_KEY, Shard::lock_key))
        .await?;
    let sources = Sources::new(&options.client, options.tiingo.as_ref())?;
    let run_id = store
        .start_run(&lock, &options.window, options.securities.len())
        .await?;
    Ok(StartedRun {
        store,
        lock,
        sources,
        run_id,
        started,
    })
}

impl StartedRun {
    /// The id of the run's row in `runs`.
    #[must_use]
    pub fn id(&self) -> Uuid {
        self.run_id
    }

    /// Runs the stages to the end (or until `cancel`: the run is then recorded `interrupted`),
    /// records the outcome, releases the lock, and reports.
    pub async fn finish(
        self,
        options: &JobOptions,
        cancel: &CancellationToken,
    ) -> Result<RunReport, JobError> {
        stages(options, cancel, self).await
    }
}

async fn stages(
    options: &JobOptions,
    cancel: &CancellationToken,
    run: StartedRun,
) -> Result<RunReport, JobError> {
    let StartedRun {
        store,
        lock,
        sources,
        run_id,
        started,
    } = run;
    let span = info_span!("run", %run_id, window = %options.window);
    info!(parent: &span, securities = options.securities.len(), max_requests = options.client.throttle.max_requests, "run started");

    // The price stages joined by a stream: up to `batch_size` fetches in flight, and up to
    // `batch_size` store transactions in flight, so that network waits overlap database writes.
    // `buffer_unordered` pulls from upstream only when it has room, so at most
    // 2 x batch_size series are in memory at once. Each stored security's report goes on to the
    // narrate stage and its documents to the index stage, which run beside it (below): by the
    // last answer from Yahoo, the other securities' documents are embedded.
    let width = options.batch_size.max(1);
    let windows = plan_windows(&store, options).await?;
    let lost = Lost::new();
    // Fetching stops for a stop signal and for a lost database alike.
    let stop = cancel.child_token();
    let stop_on_loss = {
        let (lost, stop) = (lost.token.clone(), stop.clone());
        tokio::spawn(async move {
            lost.cancelled().await;
            stop.cancel();
        })
    };
    // The model loads while the securities are fetched (see `memory::ModelLoad`).
    let model = options
        .memory
        .as_ref()
        .map(|m| ModelLoad::start(&m.embedder));
    let mut lock = lock;
    let (stored, stored_reports) = futures::channel::mpsc::unbounded();
    let prices = futures::stream::iter(fetch_order(options))
        .map(|security| {
            let planned = windows.get(security.db_symbol.as_str()).copied();
            fetch_security(&sources, security, planned, options, &stop)
                .instrument(info_span!(parent: &span, "fetch", symbol = %security.db_symbol))
        })
        .buffer_unordered(width)
        .map(|fetched| {
            let symbol = fetched.report().db_symbol.clone();
            store_security(&store, &sources, fetched, &lost)
                .instrument(info_span!(parent: &span, "store", %symbol))
        })
        .buffer_unordered(width)
        .map(Ok)
        // A boxed stream: without it rustc cannot prove the run's future `Send` through the
        // closures' higher-ranked lifetimes (rust-lang/rust#102211), and `serve` spawns it.
        .boxed()
        // Through a channel, so that the price stages never wait for the narratives; the
        // channel closes when the last security is stored.
        .forward(stored);
    let (narrated_tx, narrated_rx) = watch::channel(Narrated::default());
    // The narrate stage, then the features stage once every price is in. The narratives run
    // even when told to stop: they finish the stored securities' units of work (a rebased
    // security's documents must all be narrated again), and take a moment.
    let narrate_and_features = async {
        let reports = narrate_stage(&store, options, stored_reports, &lost, &|documents| {
            narrated_tx.send_modify(|n| n.documents += documents);
        })
        .instrument(info_span!(parent: &span, "narrate"))
        .await;
        narrated_tx.send_modify(|n| n.done = true);
        let documents: u64 = reports.iter().map(|r| r.documents_written).sum();
        info!(parent: &span, documents_written = documents, "narrated");
        // The cross-asset features, once, from the stored closes of every input (whichever
        // securities this run selected). A failure costs no prices: it is reported, the run
        // is partial, and the next run recomputes from its window. From the earliest date any
        // security's history changed (a catch-up, a first history, a rebase), so that the
        // features over rewritten closes are recomputed too.
        let features_from = reports
            .iter()
            .filter_map(|r| r.changed_from)
            .chain([options.window.from()])
            .min()
            .unwrap_or(options.window.from());
        let features = match &options.features {
            Some(plan) if !cancel.is_cancelled() && !lost.token.is_cancelled() => Some(
                compute_features(&store, plan, features_from)
                    .instrument(info_span!(parent: &span, "features"))
                    .await,
            ),
            _ => None,
        };
        (reports, features)
    };
    // Embed and index what is new or changed (and whatever an earlier run left pending), as
    // the narrate stage writes it. Chroma being down never costs prices or indicators.
    let index = async {
        let (Some(memory), Some(model)) = (&options.memory, model) else {
            return None;
        };
        let started = Instant::now();
        let result = index_documents(&store, memory, model, narrated_rx, &stop)
            .instrument(info_span!(parent: &span, "index", collection = memory.chroma.collection()))
            .await;
        let (documents_indexed, error) = match result {
            Ok(n) => (n, None),
            Err((n, e)) => {
                error!(error = %e, documents_indexed = n, "embedding/indexing stopped; the documents stay pending for the next run");
                (n, Some(e.to_string()))
            }
        };
        Some(IndexReport {
            documents_indexed,
            elapsed_ms: millis(started.elapsed()),
            error,
        })
    };
    let work = async {
        let ((), (reports, features), index) = futures::join!(
            async {
                // Only a dropped receiver fails it, and the join holds it to the end.
                let _ = prices.await;
            },
            narrate_and_features,
            index
        );
        (reports, features, index)
    };
    // The heartbeat: a database that dies between statements is noticed within a second or
    // two on the lock's own connection, not only by the next statement.
    let heartbeat = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = lock.ping().await
                && lost.confirms(&store, &e, "holding the run lock").await
            {
                break;
            }
        }
    };
    let (mut reports, features, index) = {
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => done,
            () = heartbeat => work.await,
        }
    };
    stop_on_loss.abort();
    if let Some(source) = lost.take() {
        // The row cannot be written now; the next run marks it abandoned. Do not wait for it.
        return Err(lost_run(source, &reports, run_id));
    }
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
    let features_failed = features.as_ref().is_some_and(|f| f.error.is_some());
    let index_failed = index.as_ref().is_some_and(|i| i.error.is_some());

    let ok = count(&reports, SecurityOutcome::Succeeded);
    let failed = count(&reports, SecurityOutcome::Failed);
    let skipped = count(&reports, SecurityOutcome::Skipped);
    let requests = sources.yahoo().throttle_report();
    let not_ok = failed + skipped;
    let outcome = if cancel.is_cancelled() {
        RunOutcome::Interrupted
    } else if not_ok == 0 && (index_failed || features_failed) {
        RunOutcome::Partial
    } else if not_ok == 0 {
        RunOutcome::Succeeded
    } else if ok == 0 {
        RunOutcome::Failed
    } else {
        RunOutcome::Partial
    };
    let rows_written = reports.iter().map(|r| r.rows_written).sum();
    let mut errors: BTreeMap<String, String> = reports
        .iter()
        .filter_map(|r| Some((r.db_symbol.clone(), r.error.clone()?)))
        .collect();
    if let Some(e) = features.as_ref().and_then(|f| f.error.clone()) {
        errors.insert("(features)".to_owned(), e);
    }
    if let Some(e) = index.as_ref().and_then(|i| i.error.clone()) {
        errors.insert("(index)".to_owned(), e);
    }
    if let Some(stopped) = &requests.stopped {
        errors.insert(
            "(fetch)".to_owned(),
            format!("{skipped} securities {stopped}"),
        );
    }
    let features_written = features.as_ref().map_or(0, |f| f.rows_written);
    let dropped = DropCounts::sum(reports.iter().map(|r| &r.dropped));
    let finished = store
        .finish_run(
            run_id,
            &RunRecord {
                outcome,
                securities_total: reports.len(),
                securities_ok: ok,
                securities_failed: failed,
                securities_skipped: skipped,
                rows_written,
                features_written,
                dropped: serde_json::to_value(dropped).unwrap_or_default(),
                requests: serde_json::to_value(&requests).unwrap_or_default(),
                details: &reports,
                errors: &errors,
            },
        )
        .await;
    if let Err(e) = finished {
        let lost = Lost::new();
        return Err(
            if lost
                .confirms(&store, &e, "recording the end of the run")
                .await
            {
                lost_run(lost.take().unwrap_or(e), &reports, run_id)
            } else {
                JobError::Store(e)
            },
        );
    }
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
        securities_skipped: skipped,
        rows_written,
        dropped,
        requests,
        elapsed_ms: millis(started.elapsed()),
        features,
        index,
        securities: reports,
    };
    info!(parent: &span, outcome = outcome.as_str(), ok, failed, skipped, rows_written, features_written, requests_sent = report.requests.requests_sent, max_requests = report.requests.max_requests, throttle_pauses = report.requests.pauses, elapsed_ms = report.elapsed_ms, "run finished");
    Ok(report)
}

/// A security after the fetch stage: a validated series to store, or already finished.
// At most 2 x batch_size of these exist at once; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Fetched<'a> {
    Ready {
        security: &'a Security,
        report: SecurityReport,
        series: Series,
        planned: Planned,
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

/// One security's window, and the range of its stored bars it was planned from.
#[derive(Debug, Clone, Copy)]
struct Planned {
    window: SecurityWindow,
    stored: Option<(NaiveDate, NaiveDate)>,
}

/// The selected securities in the order they are fetched: the context securities (VIX, the
/// dollar) first, since every narrative waits for them, then the others in config order.
fn fetch_order(options: &JobOptions) -> impl Iterator<Item = &Security> {
    let (context, others): (Vec<&Security>, Vec<&Security>) = options
        .securities
        .iter()
        .partition(|s| options.context.contains(&s.db_symbol));
    context.into_iter().chain(others)
}

/// Each selected security's window, as a run would fetch it now (the dry run shows them).
pub async fn windows(
    store: &Store,
    options: &JobOptions,
) -> Result<BTreeMap<String, SecurityWindow>, StoreError> {
    Ok(plan_windows(store, options)
        .await?
        .into_iter()
        .map(|(symbol, planned)| (symbol.to_owned(), planned.window))
        .collect())
}

/// Every selected security's window (one query for all stored ranges): the configured one, a
/// catch-up after an outage, or a first history.
async fn plan_windows<'a>(
    store: &Store,
    options: &'a JobOptions,
) -> Result<HashMap<&'a str, Planned>, StoreError> {
    let symbols: Vec<&str> = options
        .securities
        .iter()
        .map(|s| s.db_symbol.as_str())
        .collect();
    let ranges = store.stored_ranges(&symbols).await?;
    Ok(symbols
        .into_iter()
        .map(|symbol| {
            let stored = ranges.get(symbol).copied();
            let window = if options.backfill {
                SecurityWindow {
                    window: options.window,
                    reason: WindowReason::Backfill,
                    cut_from: None,
                }
            } else {
                SecurityWindow::plan(
                    options.window,
                    stored.map(|(_, last)| last),
                    options.history_days,
                    options.max_catch_up_days,
                )
            };
            if let Some(needed) = window.cut_from {
                warn!(%symbol, needed = %needed, from = %window.window.from(), max_catch_up_days = options.max_catch_up_days, "catch-up cut by encoding.max_catch_up_days: the days before `from` stay missing (backfill them with --symbols {symbol} --from {needed})");
            }
            (symbol, Planned { window, stored })
        })
        .collect())
}

/// Fetch and validate one security. Failures end its unit of work here, with the reason.
async fn fetch_security<'a>(
    sources: &Sources,
    security: &'a Security,
    planned: Option<Planned>,
    options: &JobOptions,
    cancel: &CancellationToken,
) -> Fetched<'a> {
    let mut report = SecurityReport::new(security);
    if cancel.is_cancelled() {
        return Fetched::Done(report);
    }
    let planned = planned.unwrap_or(Planned {
        window: SecurityWindow {
            window: options.window,
            reason: WindowReason::Unknown,
            cut_from: None,
        },
        stored: None,
    });
    let window = &planned.window.window;
    report.window = window.to_string();
    report.window_reason = planned.window.reason;
    let started = Instant::now();
    // A fetch (including its backoff sleeps) is abandoned on cancellation: nothing is written.
    let fetched = tokio::select! {
        biased;
        () = cancel.cancelled() => return Fetched::Done(report),
        fetched = sources.fetch(security, window, Utc::now()) => fetched,
    };
    report.fetch_ms = millis(started.elapsed());
    match fetched {
        Ok(series) => {
            report.rows_fetched = series.bars.len();
            report.first_date = series.bars.first().map(|b| b.trade_date);
            report.last_date = series.bars.last().map(|b| b.trade_date);
            report.dropped = series.dropped;
            Fetched::Ready {
                security,
                report,
                series,
                planned,
            }
        }
        Err(SourceError::Yahoo(FetchError::Skipped { reason, .. })) => {
            Fetched::Done(report.skipped(&reason))
        }
        Err(e) => Fetched::Done(report.failed(&e)),
    }
}

/// Store one fetched series in its own transaction (after a rebase of the whole stored
/// history when Yahoo's basis changed, see [`history`]), then analyze the security (indicators
/// from its whole stored series); the narrate stage runs once every security is stored. A
/// series already fetched when the run is told to stop is still stored: the transaction is
/// short and commits or rolls back whole.
async fn store_security(
    store: &Store,
    sources: &Sources,
    fetched: Fetched<'_>,
    lost: &Lost,
) -> SecurityReport {
    let (security, mut report, series, planned) = match fetched {
        Fetched::Done(report) => return report,
        Fetched::Ready {
            security,
            report,
            series,
            planned,
        } => (security, report, series, planned),
    };
    let started = Instant::now();
    let window = planned.window.window;
    let (series, replace) = match history::rebase(
        store,
        sources,
        security,
        &series,
        planned.window.window,
        planned.stored,
    )
    .await
    {
        Ok(Some(history::Rebased { cause, full, range })) => {
            let before = window.from().pred_opt().unwrap_or(window.from());
            let shown = DateWindow::new(range.from(), before).unwrap_or(range);
            let bars = full
                .bars
                .iter()
                .filter(|b| b.trade_date < window.from())
                .count();
            let line = format!(
                "{cause}, history {shown} rebased ({} bars)",
                narrate::thousands(rust_decimal::Decimal::from(bars))
            );
            info!(symbol = %security.db_symbol, "{line}");
            report.rows_fetched = full.bars.len();
            report.first_date = full.bars.first().map(|b| b.trade_date);
            report.rebased = Some(line);
            (full, Some(range))
        }
        Ok(None) => (series, None),
        Err(history::RebaseError::Fetch {
            source: SourceError::Yahoo(FetchError::Skipped { reason, .. }),
            ..
        }) => return report.skipped(&reason),
        Err(history::RebaseError::Store(e)) => return store_failed(report, store, lost, e).await,
        Err(e) => return report.failed(&e),
    };
    if lost.token.is_cancelled() {
        return report; // not started: the database is gone
    }
    let stored = store.store_series(security, &series, replace).await;
    drop(series); // analyze reads the whole history from the database: free the bars first
    match stored {
        Ok(written) => {
            report.rows_written = written.rows;
            report.new_actions = written
                .new_actions
                .iter()
                .map(ToString::to_string)
                .collect();
        }
        Err(e) => return store_failed(report, store, lost, e).await,
    }
    let changed_from = replace.map_or(window.from(), |range| range.from());
    report.changed_from = Some(changed_from);
    report.indicators_written =
        match analyze_security(store, &security.db_symbol, changed_from).await {
            Ok(written) => written,
            Err(e) => return store_failed(report, store, lost, e).await,
        };
    report.store_ms = millis(started.elapsed());
    report.outcome = SecurityOutcome::Succeeded;
    info!(
        rows_fetched = report.rows_fetched,
        rows_written = report.rows_written,
        indicators_written = report.indicators_written,
        first = report.first_date.map(tracing::field::display),
        last = report.last_date.map(tracing::field::display),
        window = %report.window,
        window_reason = report.window_reason.as_str(),
        fetch_ms = report.fetch_ms,
        store_ms = report.store_ms,
        "stored"
    );
    report
}

/// A store failure ends the security; if the database is gone it ends the run too (the
/// security's transaction rolled back: it reads "not done", and the run exits 3).
async fn store_failed(
    report: SecurityReport,
    store: &Store,
    lost: &Lost,
    e: StoreError,
) -> SecurityReport {
    let doing = format!("storing {}", report.db_symbol);
    if lost.confirms(store, &e, &doing).await {
        report
    } else {
        report.failed(&e)
    }
}

/// The analyze stage for one security: its whole stored series in, indicators out. Only rows
/// dated on or after `changed_from` are written (indicators are causal: a bar can only change
/// those of its own date and later), plus any date that has none yet; unchanged values are not
/// rewritten. Returns the indicator rows inserted or updated.
async fn analyze_security(
    store: &Store,
    symbol: &DbSymbol,
    changed_from: NaiveDate,
) -> Result<u64, StoreError> {
    let stored = store.series_to_analyze(symbol).await?;
    let from = stored
        .first_missing
        .map_or(changed_from, |d| d.min(changed_from));
    let computed = analyze::compute(
        &stored.points,
        analyze::periods_per_year(stored.instrument_type.as_deref()),
    );
    store
        .write_indicators(symbol, &stored.points, &computed, from)
        .await
}

/// What the features stage wrote.
#[derive(Debug, Clone, Default)]
struct FeaturesWritten {
    /// Rows inserted, changed or removed.
    rows_written: u64,
    /// Calendar dates computed.
    dates: usize,
    /// Features per date.
    features: usize,
    /// Values computed as `NULL`.
    null_values: usize,
    /// The `NULL`s of each feature, for one warning each.
    gaps: Vec<Gap>,
}

/// Every feature of `plan` on every calendar date from `changed_from` (or the first calendar
/// date that lacks one of them, if earlier) to the last stored one, from the stored closes plus
/// the look-back before it; read, computed and written in one transaction that holds the
/// features lock, so parallel shards compute one after the other, each from every price
/// committed before it started (see [`store::FEATURES_LOCK_KEY`]).
async fn store_features(
    store: &Store,
    plan: &Plan,
    changed_from: NaiveDate,
) -> Result<FeaturesWritten, StoreError> {
    let mut tx = store.begin_features().await?;
    let inputs = tx.read(plan, changed_from).await?;
    let Some(from) = inputs.from else {
        return Ok(FeaturesWritten {
            features: plan.features.len(),
            ..FeaturesWritten::default()
        });
    };
    let computed = features::compute(plan, &inputs.panel, from);
    let null_values = computed.rows.iter().filter(|r| r.value.is_none()).count();
    let rows_written = tx.write(plan, &computed.rows, from).await?;
    Ok(FeaturesWritten {
        rows_written,
        dates: inputs.panel.dates().iter().filter(|d| **d >= from).count(),
        features: plan.features.len(),
        null_values,
        gaps: computed.gaps,
    })
}

/// The features stage: computes and stores the features, logs one warning per feature that has
/// `NULL`s (naming the missing inputs), and reports; an error ends up in the report.
async fn compute_features(store: &Store, plan: &Plan, from: NaiveDate) -> FeaturesReport {
    let started = Instant::now();
    let mut report = FeaturesReport {
        features: plan.features.len(),
        ..FeaturesReport::default()
    };
    match store_features(store, plan, from).await {
        Ok(written) => {
            for gap in &written.gaps {
                let missing: Vec<&str> = gap.missing.iter().map(String::as_str).collect();
                warn!(
                    feature = %gap.feature,
                    missing = %missing.join(","),
                    null_dates = gap.null_dates,
                    dates = gap.dates,
                    "{gap}"
                );
            }
            report.rows_written = written.rows_written;
            report.dates = written.dates;
            report.null_values = written.null_values;
            info!(
                rows_written = written.rows_written,
                dates = written.dates,
                features = written.features,
                null_values = written.null_values,
                "features stored"
            );
        }
        Err(e) => {
            error!(error = %e, "cross-asset features failed; prices are stored and the next run recomputes them");
            report.error = Some(e.to_string());
        }
    }
    report.elapsed_ms = millis(started.elapsed());
    report
}

/// The run ended by a lost database (`source`): how far it got, for the exit-3 line.
fn lost_run(source: StoreError, reports: &[SecurityReport], run_id: Uuid) -> JobError {
    JobError::Lost {
        source: Box::new(source),
        stored: count(reports, SecurityOutcome::Succeeded),
        total: reports.len(),
        run_id,
    }
}

fn count(reports: &[SecurityReport], outcome: SecurityOutcome) -> usize {
    reports.iter().filter(|r| r.outcome == outcome).count()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
