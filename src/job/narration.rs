//! The narrate stage's unit of work (`job::narrate` is the pure part): once every security of
//! the run is stored, each one's documents from its stored days, corporate actions and the
//! context securities' bars of the same dates, written back through the store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::OnceCell;
use tracing::{Instrument, info_span};

use super::lost::Lost;
use super::{JobOptions, SecurityOutcome, SecurityReport, millis, narrate, store_failed};
use crate::domain::{DbSymbol, Security};
use crate::job::narrate::ContextSeries;
use crate::job::store::{Store, StoreError};

/// The securities whose daily move every narrative of the same date mentions (the day's
/// cross-asset context, ARCHITECTURE.md, Narratives): `features.roles.vix` and `.dxy`, whether
/// or not the features are enabled. `None`: not told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextSymbols {
    pub vix: Option<DbSymbol>,
    pub dollar: Option<DbSymbol>,
}

/// The context securities' stored series, read by the first security of the stage that needs
/// them and shared by the others: the stage stores nothing they hold. A failed read fails that
/// security; the next one reads again.
struct Context<'a> {
    symbols: &'a ContextSymbols,
    vix: OnceCell<ContextSeries>,
    dollar: OnceCell<ContextSeries>,
}

impl<'a> Context<'a> {
    fn new(symbols: &'a ContextSymbols) -> Self {
        Self {
            symbols,
            vix: OnceCell::new(),
            dollar: OnceCell::new(),
        }
    }

    async fn markets(&self, store: &Store) -> Result<narrate::Markets<'_>, StoreError> {
        Ok(narrate::Markets {
            vix: series(store, &self.vix, self.symbols.vix.as_ref()).await?,
            dollar: series(store, &self.dollar, self.symbols.dollar.as_ref()).await?,
        })
    }
}

/// `symbol`'s stored series, read into `cell` if it is not there yet.
async fn series<'c>(
    store: &Store,
    cell: &'c OnceCell<ContextSeries>,
    symbol: Option<&DbSymbol>,
) -> Result<Option<&'c ContextSeries>, StoreError> {
    match symbol {
        Some(symbol) => cell
            .get_or_try_init(|| store.context_series(symbol))
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// The narrate stage: every security this run stored is narrated ([`narrate_security`]), a
/// few at a time. A store failure fails that security (or, if the database is gone, the run
/// through `lost`). Returns the documents written.
pub(super) async fn narrate_stage(
    store: &Store,
    options: &JobOptions,
    reports: &mut [SecurityReport],
    lost: &Lost,
) -> u64 {
    let securities: HashMap<&str, &Security> = options
        .securities
        .iter()
        .map(|s| (s.db_symbol.as_str(), s))
        .collect();
    let work: Vec<(usize, &Security, bool)> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| r.outcome == SecurityOutcome::Succeeded)
        .filter_map(|(i, r)| {
            let security = securities.get(r.db_symbol.as_str())?;
            Some((i, *security, r.rebased.is_some()))
        })
        .collect();
    let context = &Context::new(&options.context);
    let results: Vec<(usize, Duration, Result<u64, StoreError>)> = futures::stream::iter(work)
        .map(|(i, security, rebased)| async move {
            let started = Instant::now();
            if lost.token.is_cancelled() {
                return (i, started.elapsed(), Ok(0));
            }
            let written =
                narrate_security(store, security, options.embedding_days, rebased, context)
                    .instrument(info_span!("narrate", symbol = %security.db_symbol))
                    .await;
            (i, started.elapsed(), written)
        })
        .buffer_unordered(options.batch_size.max(1))
        // Boxed for the same reason as the store stream's (rust-lang/rust#102211).
        .boxed()
        .collect()
        .await;
    let mut total = 0;
    for (i, took, result) in results {
        let report = &mut reports[i];
        report.store_ms += millis(took);
        match result {
            Ok(written) => {
                report.documents_written = written;
                total += written;
            }
            Err(e) => {
                let failed = store_failed(report.clone(), store, lost, e).await;
                *report = failed;
            }
        }
    }
    total
}

/// The narrate stage for one security: documents and their metadata for its last `days`
/// stored trade dates, from the stored prices and indicators and the context securities'
/// bars of the same dates. Returns the documents inserted or changed.
async fn narrate_security(
    store: &Store,
    security: &Security,
    days: u32,
    every_documented: bool,
    context: &Context<'_>,
) -> Result<u64, StoreError> {
    // After a rebase every stored document's numbers changed, after a change of the
    // narrative its words: write them all again.
    let every_documented = every_documented
        || store
            .narrative_outdated(&security.db_symbol, narrate::NARRATIVE_VERSION)
            .await?;
    let mut days = if every_documented {
        days.max(store.documented_days(&security.db_symbol).await?)
    } else {
        days
    };
    // A document written while a context security's bar of its date was missing (it failed,
    // or another shard stores it) tells another day than a backfill would: narrate it again.
    if let Some(stale) = store
        .first_stale_context(
            &security.db_symbol,
            context.symbols.vix.as_ref(),
            context.symbols.dollar.as_ref(),
        )
        .await?
    {
        days = days.max(store.stored_days_since(&security.db_symbol, stale).await?);
    }
    // The narrated days and the ones before them that their documents read.
    let history = store
        .days_to_narrate(
            &security.db_symbol,
            days.saturating_add(narrate::LOOKBACK_DAYS),
        )
        .await?;
    let narrated = history.len().min(days as usize);
    let first = history
        .len()
        .checked_sub(narrated)
        .and_then(|i| history.get(i))
        .map(|d| d.trade_date);
    let actions = match first {
        Some(first) => {
            store
                .actions_between(&security.db_symbol, first.pred_opt(), None)
                .await?
        }
        None => Vec::new(),
    };
    let markets = match first {
        Some(_) => context.markets(store).await?,
        None => narrate::Markets::default(),
    };
    let documents = narrate::documents(
        &narrate::Subject {
            db_symbol: security.db_symbol.as_str(),
            yahoo_symbol: security.yahoo_symbol.as_str(),
            name: &security.name,
            category: security.category.as_str(),
            sector: security.sector.as_ref().map(crate::domain::Sector::as_str),
        },
        &history,
        narrated,
        &actions,
        &markets,
    );
    store.write_documents(&security.db_symbol, &documents).await
}
