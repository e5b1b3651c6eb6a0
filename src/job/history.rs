//! Keeping stored history true when the source's changes: the rebase decision and the basis
//! check. Whatever a security's source, its series arrives on Yahoo's basis (`validate::tiingo`
//! converts Tiingo's raw prices), so the rules below hold for every source; the refetch of a
//! rebase goes to the security's own source ([`Sources::fetch`]).
//!
//! Yahoo's `close` is split-adjusted and its `adjclose` dividend-adjusted *as of the request*,
//! so when a split or a dividend happens every earlier bar changes, including the stored ones
//! that a daily run does not fetch again. A security is **rebased** (its whole stored range
//! fetched again and rewritten in one transaction) when
//! - the answer reports a split or dividend not stored yet, and stored bars exist before the
//!   fetched window; or
//! - the **basis check** finds a stored bar that Yahoo now answers differently beyond rounding
//!   (an event whose ex-date fell outside every window the job fetched, e.g. during an outage),
//!   among the fetched bars older than the last [`SETTLING_SESSIONS`] (recent bars may still be
//!   corrected by Yahoo and are simply overwritten).

use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::domain::{CorporateAction, DateWindow, Security};
use crate::job::source::{SourceError, Sources};
use crate::job::store::{Store, StoreError, StoredBar};
use crate::job::validate::{Bar, Series};

/// The most recent fetched sessions that the basis check leaves out.
pub const SETTLING_SESSIONS: usize = 5;

/// Relative difference of a close or an adjusted close beyond which a stored bar is taken to be
/// on another basis: prices are kept to 7 significant digits (`validate::to_price`), so an
/// unchanged bar differs by less than 1e-6; the smallest dividend moves adjusted closes by more
/// than 1e-5.
pub const BASIS_TOLERANCE: f64 = 1e-5;

/// Why a security's history is rebased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebaseCause {
    /// Corporate actions seen for the first time.
    Actions(Vec<CorporateAction>),
    /// The stored bar of this date differs from Yahoo's answer for it.
    Basis(NaiveDate),
}

impl std::fmt::Display for RebaseCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Actions(actions) => {
                let shown: Vec<String> = actions.iter().map(ToString::to_string).collect();
                f.write_str(&shown.join(", "))
            }
            Self::Basis(date) => write!(
                f,
                "the source's prices of {date} and earlier changed (a split or dividend outside the fetched window)"
            ),
        }
    }
}

/// The first stored bar, among `fresh`'s dates older than its last [`SETTLING_SESSIONS`],
/// whose close or adjusted close Yahoo now answers differently.
#[must_use]
pub fn basis_changed(stored: &[StoredBar], fresh: &[Bar]) -> Option<NaiveDate> {
    let settled = fresh.len().saturating_sub(SETTLING_SESSIONS);
    let fresh = &fresh[..settled];
    let differs = |a: Decimal, b: Decimal| {
        let (Ok(a), Ok(b)) = (f64::try_from(a), f64::try_from(b)) else {
            return a != b;
        };
        (a - b).abs() > BASIS_TOLERANCE * b.abs().max(f64::MIN_POSITIVE)
    };
    stored.iter().find_map(|s| {
        let bar = fresh
            .binary_search_by_key(&s.trade_date, |b| b.trade_date)
            .ok()
            .map(|i| &fresh[i])?;
        let adj_differs = match (s.adj_close, bar.adj_close) {
            (Some(a), Some(b)) => differs(a, b),
            _ => false,
        };
        (differs(s.close, bar.close) || adj_differs).then_some(s.trade_date)
    })
}

/// A whole stored history fetched again, and why.
pub struct Rebased {
    pub cause: RebaseCause,
    pub full: Series,
    pub range: DateWindow,
}

/// Why a rebase failed: the refetch of the whole history, or the store's check.
#[derive(Debug, thiserror::Error)]
pub enum RebaseError {
    #[error(
        "{cause}: fetching the whole history {range} to rebase it failed ({source}); the stored history is unchanged, the next run tries again"
    )]
    Fetch {
        cause: RebaseCause,
        range: DateWindow,
        #[source]
        source: SourceError,
    },
    #[error(
        "{cause}: the whole history {range} could not be validated ({source}); the stored history is unchanged"
    )]
    Validate {
        cause: RebaseCause,
        range: DateWindow,
        #[source]
        source: SourceError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `series` shows that the stored history is on another basis ([`history`]); if so,
/// the whole stored range fetched again (up to the window's end), with its cause.
pub async fn rebase(
    store: &Store,
    sources: &Sources,
    security: &Security,
    series: &Series,
    window: DateWindow,
    stored: Option<(NaiveDate, NaiveDate)>,
) -> Result<Option<Rebased>, RebaseError> {
    let Some((first_stored, _)) = stored.filter(|(first, _)| *first < window.from()) else {
        return Ok(None); // nothing stored before the window: the fetch rewrites all there is
    };
    let symbol = &security.db_symbol;
    let unknown = store.unknown_actions(symbol, &series.actions).await?;
    let cause = if unknown.is_empty() {
        let stored = store
            .stored_bars(symbol, window.from(), window.to())
            .await?;
        match basis_changed(&stored, &series.bars) {
            Some(date) => RebaseCause::Basis(date),
            None => return Ok(None),
        }
    } else {
        RebaseCause::Actions(unknown)
    };
    let range = DateWindow::new(first_stored, window.to()).unwrap_or(window);
    match sources.fetch(security, &range, Utc::now()).await {
        Ok(full) => Ok(Some(Rebased { cause, full, range })),
        Err(source) if source.is_validation() => Err(RebaseError::Validate {
            cause,
            range,
            source,
        }),
        Err(source) => Err(RebaseError::Fetch {
            cause,
            range,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 6, day).unwrap()
    }

    fn bar(day: u32, close: Decimal, adj: Decimal) -> Bar {
        Bar {
            trade_date: d(day),
            open: close,
            high: close,
            low: close,
            close,
            adj_close: Some(adj),
            volume: 0,
        }
    }

    fn stored(day: u32, close: Decimal, adj: Decimal) -> StoredBar {
        StoredBar {
            trade_date: d(day),
            close,
            adj_close: Some(adj),
        }
    }

    #[test]
    fn the_basis_check_sees_a_split_and_a_dividend_but_not_rounding() {
        let fresh: Vec<Bar> = (1..=10).map(|i| bar(i, dec!(12.5), dec!(12.4))).collect();
        let same: Vec<StoredBar> = (1..=10)
            .map(|i| stored(i, dec!(12.5), dec!(12.4)))
            .collect();
        assert_eq!(basis_changed(&same, &fresh), None);
        // Rounding-level noise is no change.
        let noisy = vec![stored(2, dec!(12.500001), dec!(12.4))];
        assert_eq!(basis_changed(&noisy, &fresh), None);
        // A 10:1 split: the stored close is ten times Yahoo's.
        let split = vec![
            stored(1, dec!(12.5), dec!(12.4)),
            stored(3, dec!(125), dec!(124)),
        ];
        assert_eq!(basis_changed(&split, &fresh), Some(d(3)));
        // A dividend: only the adjusted close moved.
        let dividend = vec![stored(4, dec!(12.5), dec!(12.45))];
        assert_eq!(basis_changed(&dividend, &fresh), Some(d(4)));
        // The last sessions may still be corrected: not a basis change.
        let recent = vec![stored(8, dec!(13), dec!(13))];
        assert_eq!(basis_changed(&recent, &fresh), None);
    }
}
