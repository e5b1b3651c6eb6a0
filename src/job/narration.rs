//! The narrate stage's unit of work (`job::narrate` is the pure part): each security's documents
//! from its stored days, corporate actions and the context securities' bars of the same dates,
//! written back through the store as soon as the security and the run's context securities are
//! stored, while the others are still being fetched.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures::{Stream, StreamExt};
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

impl ContextSymbols {
    /// The context securities among `securities` (the run's): those whose reports every
    /// narrative of the run waits for.
    #[must_use]
    pub fn in_run(&self, securities: &[Security]) -> HashSet<String> {
        [self.vix.as_ref(), self.dollar.as_ref()]
            .into_iter()
            .flatten()
            .filter(|symbol| securities.iter().any(|s| &s.db_symbol == *symbol))
            .map(|symbol| symbol.as_str().to_owned())
            .collect()
    }

    /// Whether `symbol` is one of them.
    #[must_use]
    pub fn contains(&self, symbol: &DbSymbol) -> bool {
        self.vix.as_ref() == Some(symbol) || self.dollar.as_ref() == Some(symbol)
    }
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

/// The narrate stage: every security of `stored` (the price stage's reports, in the order they
/// finish) that was stored is narrated ([`narrate_security`]), a few at a time, as soon as every
/// context security of the run has reported too ([`after_context`]): a document tells the day of
/// VIX and the dollar, so it must not depend on which of them was stored first. `written` is told
/// each security's documents once they are committed (the index stage embeds them meanwhile). A
/// store failure fails that security (or, if the database is gone, the run through `lost`).
/// Returns every report of `stored`, narrated or passed through.
pub(super) async fn narrate_stage(
    store: &Store,
    options: &JobOptions,
    stored: impl Stream<Item = SecurityReport> + Send,
    lost: &Lost,
    written: &(dyn Fn(u64) + Sync),
) -> Vec<SecurityReport> {
    let securities: HashMap<&str, &Security> = options
        .securities
        .iter()
        .map(|s| (s.db_symbol.as_str(), s))
        .collect();
    let context = &Context::new(&options.context);
    let securities = &securities;
    after_context(stored, options.context.in_run(&options.securities), |r| {
        r.db_symbol.as_str()
    })
    .map(|mut report| async move {
        let Some(security) = securities.get(report.db_symbol.as_str()) else {
            return report;
        };
        if report.outcome != SecurityOutcome::Succeeded || lost.token.is_cancelled() {
            return report;
        }
        let started = Instant::now();
        let rebased = report.rebased.is_some();
        let result = narrate_security(store, security, options.embedding_days, rebased, context)
            .instrument(info_span!("narrate", symbol = %security.db_symbol))
            .await;
        report.store_ms += millis(started.elapsed());
        match result {
            Ok(documents) => {
                report.documents_written = documents;
                written(documents);
                report
            }
            Err(e) => store_failed(report, store, lost, e).await,
        }
    })
    .buffer_unordered(options.batch_size.max(1))
    // Boxed for the same reason as the store stream's (rust-lang/rust#102211).
    .boxed()
    .collect()
    .await
}

/// `stored` as it comes once every one of `context` (db symbols) has come by; before that, held
/// back. What is held is let go together, at the last context report or at the end of `stored`.
fn after_context<T>(
    stored: impl Stream<Item = T>,
    mut context: HashSet<String>,
    symbol: fn(&T) -> &str,
) -> impl Stream<Item = T> {
    let mut held = Vec::new();
    stored
        .map(Some)
        .chain(futures::stream::iter([None]))
        .flat_map(move |item| {
            let out = match item {
                Some(report) => {
                    context.remove(symbol(&report));
                    held.push(report);
                    if context.is_empty() {
                        std::mem::take(&mut held)
                    } else {
                        Vec::new()
                    }
                }
                None => std::mem::take(&mut held),
            };
            futures::stream::iter(out)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// What `after_context` lets through after each item of `input` arrives (one channel send
    /// at a time, polled to a standstill in between), and after the input closes.
    fn released(input: &[&'static str], context: &[&str]) -> Vec<Vec<&'static str>> {
        let (tx, rx) = futures::channel::mpsc::unbounded::<&'static str>();
        let mut gated = Box::pin(after_context(rx, symbols(context), |s| s));
        let mut waves = Vec::new();
        for item in input {
            tx.unbounded_send(*item).unwrap();
            waves.push(ready(&mut gated));
        }
        drop(tx);
        waves.push(ready(&mut gated));
        waves
    }

    /// Every item `stream` yields without waiting.
    fn ready<T>(stream: &mut (impl Stream<Item = T> + Unpin)) -> Vec<T> {
        let mut items = Vec::new();
        while let Some(Some(item)) = futures::FutureExt::now_or_never(stream.next()) {
            items.push(item);
        }
        items
    }

    #[test]
    fn reports_wait_for_every_context_security_then_flow() {
        let waves = released(&["SPY", "VIX", "QQQ", "DXY", "IWM"], &["VIX", "DXY"]);
        assert_eq!(
            waves,
            [
                vec![],
                vec![],
                vec![],
                vec!["SPY", "VIX", "QQQ", "DXY"],
                vec!["IWM"],
                vec![],
            ]
        );
    }

    #[test]
    fn without_context_in_the_run_nothing_waits() {
        let waves = released(&["SPY", "QQQ"], &[]);
        assert_eq!(waves, [vec!["SPY"], vec!["QQQ"], vec![]]);
    }

    #[test]
    fn what_is_held_is_let_go_when_the_reports_end() {
        // A context security that never reports (its unit was dropped): the end lets go.
        let waves = released(&["SPY", "QQQ"], &["VIX"]);
        assert_eq!(waves, [vec![], vec![], vec!["SPY", "QQQ"]]);
    }
}
