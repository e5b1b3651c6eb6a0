//! Hypothetical P&L: what a position opened at one stored close and closed at another would
//! have made, in exact decimals (`rust_decimal`), from the prices in PostgreSQL.
//!
//! Dates: an entry on a day with no bar (weekend, holiday, before the first stored bar) rolls
//! *forward* to the next stored trading day; an exit rolls *back* to the previous one; the
//! answer says when it did. Prices are the stored closes (split-adjusted as Yahoo quotes them);
//! dividends are not stored, so the P&L is price-only.
//!
//! - long:  `pnl = (exit - entry) x quantity`
//! - short: `pnl = (entry - exit) x quantity`
//! - `pnl_percentage = pnl / (entry x quantity) x 100`, rounded to 4 places; `pnl_amount` is
//!   exact (at most 8 price decimals times the quantity's).

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::domain::{ActionKind, CorporateAction, DbSymbol, Position, Quantity, QuantityError};
use crate::job::store::{CloseWindow, Store, StoreError};

/// Why there is no P&L to show. Display is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum PnlError {
    #[error(transparent)]
    Quantity(#[from] QuantityError),
    #[error("exit {exit} is before entry {entry}; swap them or use --position short")]
    ExitBeforeEntry { entry: NaiveDate, exit: NaiveDate },
    #[error(
        "no stored prices for {symbol}; check the symbol or run the job for it first (stored symbols: {known})"
    )]
    UnknownSymbol { symbol: DbSymbol, known: String },
    #[error(
        "no stored trading day of {symbol} between {entry} and {exit} (stored: {first} to {last}); pick dates in that range or backfill with --symbols {symbol} --from {entry} --to {exit}"
    )]
    NoData {
        symbol: DbSymbol,
        entry: NaiveDate,
        exit: NaiveDate,
        first: NaiveDate,
        last: NaiveDate,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One end of the trade: the date asked for, the trading day used, its close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leg {
    pub requested: NaiveDate,
    pub date: NaiveDate,
    pub price: Decimal,
    /// Set when `date` differs from `requested`: why.
    pub rolled: Option<String>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pnl {
    pub symbol: DbSymbol,
    pub currency: Option<String>,
    pub position: Position,
    pub quantity: Quantity,
    pub entry: Leg,
    pub exit: Leg,
    pub pnl_amount: Decimal,
    pub pnl_percentage: Decimal,
    /// Calendar days from the entry used to the exit used.
    pub holding_days: i64,
    /// Stored trading days after the entry up to and including the exit.
    pub trading_days: i64,
    /// The dividends a holder from the entry's close to the exit's close was paid: every one
    /// stored in `corporate_actions` with an ex-date after the entry day, up to the exit day.
    pub dividends: Vec<DividendPaid>,
    /// Their sum per share.
    pub dividends_per_share: Decimal,
    /// The position's dividends: received when long, owed to the lender when short.
    pub dividend_amount: Decimal,
    /// `pnl_amount` + `dividend_amount`: the total-return P&L.
    pub total_return_amount: Decimal,
    pub total_return_percentage: Decimal,
    /// Splits between entry and exit (`split 10:1 on 2024-06-10`): both closes are on the
    /// split-adjusted basis of the rebased history, so the P&L needs no correction for them.
    pub splits: Vec<String>,
}

/// One dividend between entry and exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DividendPaid {
    pub ex_date: NaiveDate,
    pub amount: Decimal,
}

/// The hypothetical P&L of `quantity` units of `symbol` held `position` from the close of
/// `entry` to the close of `exit` (rolled to stored trading days, see the module doc).
///
/// # Errors
/// [`PnlError::ExitBeforeEntry`], [`PnlError::UnknownSymbol`], [`PnlError::NoData`], or the
/// database's.
#[tracing::instrument(skip(store), fields(%symbol, %entry, %exit), err(Display))]
pub async fn calculate_hypothetical_pnl(
    store: &Store,
    symbol: &DbSymbol,
    entry: NaiveDate,
    exit: NaiveDate,
    quantity: Quantity,
    position: Position,
) -> Result<Pnl, PnlError> {
    if exit < entry {
        return Err(PnlError::ExitBeforeEntry { entry, exit });
    }
    let window = store.closes_between(symbol, entry, exit).await?;
    let actions = match (window.first, window.last) {
        (Some((from, _)), Some((to, _))) => {
            store.actions_between(symbol, Some(from), Some(to)).await?
        }
        _ => Vec::new(),
    };
    compute(
        symbol,
        entry,
        exit,
        quantity,
        position,
        (window, actions),
        || async { store.stored_symbols().await },
    )
    .await
}

async fn compute<F, Fut>(
    symbol: &DbSymbol,
    entry: NaiveDate,
    exit: NaiveDate,
    quantity: Quantity,
    position: Position,
    (window, actions): (CloseWindow, Vec<CorporateAction>),
    known: F,
) -> Result<Pnl, PnlError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Vec<String>, StoreError>>,
{
    let Some((first, last)) = window.stored_range else {
        let known = known().await?;
        return Err(PnlError::UnknownSymbol {
            symbol: symbol.clone(),
            known: if known.is_empty() {
                "none yet".to_owned()
            } else {
                known.join(", ")
            },
        });
    };
    let (Some((entry_date, entry_price)), Some((exit_date, exit_price))) =
        (window.first, window.last)
    else {
        return Err(PnlError::NoData {
            symbol: symbol.clone(),
            entry,
            exit,
            first,
            last,
        });
    };
    let leg = |requested: NaiveDate, date: NaiveDate, price: Decimal, direction: &str| Leg {
        requested,
        date,
        price,
        rolled: (date != requested)
            .then(|| format!("no stored bar on {requested}: {direction} trading day {date}")),
    };
    let per_unit = match position {
        Position::Long => exit_price - entry_price,
        Position::Short => entry_price - exit_price,
    };
    let pnl_amount = (per_unit * quantity.get()).normalize();
    let cost = entry_price * quantity.get();
    let percent = |amount: Decimal| {
        (amount * Decimal::ONE_HUNDRED / cost)
            .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
    };
    let pnl_percentage = percent(pnl_amount);
    let in_holding = |a: &&CorporateAction| a.ex_date > entry_date && a.ex_date <= exit_date;
    let dividends: Vec<DividendPaid> = actions
        .iter()
        .filter(in_holding)
        .filter_map(|a| match a.kind {
            ActionKind::Dividend { amount } => Some(DividendPaid {
                ex_date: a.ex_date,
                amount,
            }),
            ActionKind::Split { .. } => None,
        })
        .collect();
    let splits: Vec<String> = actions
        .iter()
        .filter(in_holding)
        .filter(|a| matches!(a.kind, ActionKind::Split { .. }))
        .map(ToString::to_string)
        .collect();
    let dividends_per_share: Decimal = dividends.iter().map(|d| d.amount).sum();
    let dividend_amount = match position {
        Position::Long => dividends_per_share * quantity.get(),
        Position::Short => -dividends_per_share * quantity.get(),
    }
    .normalize();
    let total_return_amount = (pnl_amount + dividend_amount).normalize();
    Ok(Pnl {
        symbol: symbol.clone(),
        currency: window.currency,
        position,
        quantity,
        entry: leg(entry, entry_date, entry_price, "the next"),
        exit: leg(exit, exit_date, exit_price, "the previous"),
        pnl_amount,
        pnl_percentage,
        holding_days: (exit_date - entry_date).num_days(),
        trading_days: window.trading_days,
        dividends_per_share: dividends_per_share.normalize(),
        dividends,
        dividend_amount,
        total_return_percentage: percent(total_return_amount),
        total_return_amount,
        splits,
    })
}

/// The answer as one JSON object (`--json`); decimals as strings, so no digit is lost.
#[must_use]
pub fn json(pnl: &Pnl) -> String {
    serde_json::to_string(pnl).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
}

/// The answer for a terminal: one line per fact.
#[must_use]
pub fn text(pnl: &Pnl) -> String {
    let currency = pnl.currency.as_deref().unwrap_or("");
    let money = |d: Decimal| {
        if currency.is_empty() {
            d.to_string()
        } else {
            format!("{d} {currency}")
        }
    };
    let leg = |name: &str, leg: &Leg| {
        let mut line = format!("{name:<6}{}  close {}", leg.date, money(leg.price));
        if let Some(why) = &leg.rolled {
            line.push_str(&format!("  ({why})"));
        }
        line
    };
    let sign = if pnl.pnl_amount > Decimal::ZERO {
        "+"
    } else {
        ""
    };
    let signed = |d: Decimal| if d > Decimal::ZERO { "+" } else { "" };
    let mut out = format!(
        "{} {} {} (hypothetical, from stored closes)\n{}\n{}\nP&L   {sign}{} ({sign}{}%) over {} calendar days, {} trading days (price only)\n",
        pnl.position,
        pnl.quantity.get(),
        pnl.symbol,
        leg("entry", &pnl.entry),
        leg("exit", &pnl.exit),
        money(pnl.pnl_amount),
        pnl.pnl_percentage,
        pnl.holding_days,
        pnl.trading_days,
    );
    if pnl.dividends.is_empty() {
        out.push_str("div   none stored between entry and exit\n");
    } else {
        let each: Vec<String> = pnl
            .dividends
            .iter()
            .map(|d| format!("{} on {}", d.amount.normalize(), d.ex_date))
            .collect();
        out.push_str(&format!(
            "div   {} per share ({}): {}{}\n",
            pnl.dividends_per_share,
            each.join(", "),
            signed(pnl.dividend_amount),
            money(pnl.dividend_amount)
        ));
    }
    out.push_str(&format!(
        "total {}{} ({}{}%) with dividends\n",
        signed(pnl.total_return_amount),
        money(pnl.total_return_amount),
        signed(pnl.total_return_percentage),
        pnl.total_return_percentage
    ));
    for split in &pnl.splits {
        out.push_str(&format!(
            "split {split}: both closes are on the split-adjusted basis of the rebased history\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn spx() -> DbSymbol {
        DbSymbol::parse("SPX").unwrap()
    }

    fn window(entry: (&str, Decimal), exit: (&str, Decimal)) -> CloseWindow {
        CloseWindow {
            stored_range: Some((d("2020-01-02"), d("2024-12-31"))),
            first: Some((d(entry.0), entry.1)),
            last: Some((d(exit.0), exit.1)),
            trading_days: 20,
            currency: Some("USD".into()),
        }
    }

    async fn run(
        entry: &str,
        exit: &str,
        quantity: Decimal,
        position: Position,
        window: CloseWindow,
    ) -> Result<Pnl, PnlError> {
        compute(
            &spx(),
            d(entry),
            d(exit),
            Quantity::new(quantity)?,
            position,
            (window, Vec::new()),
            || async { Ok(vec!["SPX".to_owned(), "SPY".to_owned()]) },
        )
        .await
    }

    #[tokio::test]
    async fn long_and_short_are_exact_and_opposite() {
        let w = window(("2024-01-02", dec!(4742.83)), ("2024-01-31", dec!(4845.65)));
        let long = run(
            "2024-01-02",
            "2024-01-31",
            dec!(100),
            Position::Long,
            w.clone(),
        )
        .await
        .unwrap();
        assert_eq!(long.pnl_amount, dec!(10282));
        assert_eq!(long.pnl_percentage, dec!(2.1679)); // 102.82 / 4742.83 = 2.16794..%
        assert_eq!(long.holding_days, 29);
        assert_eq!(long.entry.rolled, None);
        let short = run("2024-01-02", "2024-01-31", dec!(100), Position::Short, w)
            .await
            .unwrap();
        assert_eq!(short.pnl_amount, dec!(-10282));
        assert_eq!(short.pnl_percentage, dec!(-2.1679));
    }

    #[tokio::test]
    async fn fractional_quantities_keep_every_decimal() {
        let w = window(
            ("2024-01-01", dec!(42280.23437500)),
            ("2024-01-08", dec!(46970.50390625)),
        );
        let p = run("2024-01-01", "2024-01-08", dec!(0.015), Position::Long, w)
            .await
            .unwrap();
        assert_eq!(p.pnl_amount, dec!(70.35404296875));
    }

    #[tokio::test]
    async fn rolled_dates_say_so() {
        let w = window(("2024-01-02", dec!(100)), ("2024-03-28", dec!(110)));
        let p = run("2024-01-01", "2024-03-31", dec!(1), Position::Long, w)
            .await
            .unwrap();
        assert_eq!(
            p.entry.rolled.as_deref(),
            Some("no stored bar on 2024-01-01: the next trading day 2024-01-02")
        );
        assert_eq!(
            p.exit.rolled.as_deref(),
            Some("no stored bar on 2024-03-31: the previous trading day 2024-03-28")
        );
        let shown = text(&p);
        assert!(
            shown.contains("P&L   +10 USD (+10%) over 86 calendar days"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn what_cannot_be_answered_is_named() {
        assert!(matches!(
            Quantity::new(dec!(0)),
            Err(QuantityError(q)) if q == "0"
        ));
        assert!("-5".parse::<Quantity>().is_err());
        assert!("abc".parse::<Quantity>().is_err());
        assert_eq!("1e2".parse::<Quantity>().unwrap().get(), dec!(100));

        let unknown = CloseWindow {
            stored_range: None,
            first: None,
            last: None,
            trading_days: 0,
            currency: None,
        };
        let e = run("2024-01-01", "2024-02-01", dec!(1), Position::Long, unknown)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "no stored prices for SPX; check the symbol or run the job for it first (stored symbols: SPX, SPY)"
        );
        let empty = CloseWindow {
            first: None,
            last: None,
            ..window(("2024-01-02", dec!(1)), ("2024-01-02", dec!(1)))
        };
        let e = run("2025-06-07", "2025-06-08", dec!(1), Position::Long, empty)
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "no stored trading day of SPX between 2025-06-07 and 2025-06-08 (stored: 2020-01-02 to 2024-12-31)"
            ),
            "{e}"
        );
    }
}
