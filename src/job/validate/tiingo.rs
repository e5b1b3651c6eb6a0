//! Validate, for Tiingo: its raw daily rows -> the same [`Series`] Yahoo's answers become, on
//! the same basis, so that store, analyze and history do not care where a bar came from.
//!
//! **The basis.** Yahoo's `close` (and open, high, low) is split-adjusted as of the request but
//! not dividend-adjusted; its volume is split-adjusted the other way; `adjclose` is split- and
//! dividend-adjusted. Tiingo's `close` is raw (as traded that day) and `adjClose` is split- and
//! dividend-adjusted as of the request. So a row dated `d` is converted with `F(d)`, the product
//! of the `splitFactor`s of the rows dated after `d` (the ex-date row of a split already
//! trades on the new basis):
//! - open, high, low, close = raw / F(d), exactly in `Decimal`, then rounded like Yahoo's (7
//!   significant digits, at least 2 decimals, at most the column's 8);
//! - volume = raw volume x F(d), rounded to a whole number;
//! - adj_close = `adjClose`, rounded the same way;
//! - a `divCash` > 0 is a dividend of divCash / F(d) (Yahoo reports split-adjusted amounts), a
//!   `splitFactor` other than 1 a split `numerator:denominator` (4 is 4:1, 1.5 is 3:2, 0.1 is
//!   1:10).
//!
//! `F(d)` needs every split up to today, so the client asks Tiingo for the window's start to
//! today and this keeps only the window's rows (and actions); the later rows only contribute
//! their split factors. The other rules are Yahoo's: a row with a missing price is skipped, an
//! impossible one rejected with a warning, one bar per date (the last), dates sorted, nothing
//! from a session still open (a row of today's New York date before 16:00 there).

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use rust_decimal::prelude::*;
use tracing::warn;

use super::{Bar, DropCounts, InstrumentMeta, PRICE_SCALE, Series, impossible};
use crate::domain::{ActionKind, CorporateAction, DateWindow, TiingoTicker};
use crate::job::fetch::tiingo::PriceRow;

/// Tiingo's daily endpoint serves US trade dates; the session closes at 16:00 New York.
const EXCHANGE_TZ: chrono_tz::Tz = chrono_tz::America::New_York;
const SESSION_END: NaiveTime = match NaiveTime::from_hms_opt(16, 0, 0) {
    Some(t) => t,
    None => NaiveTime::MIN,
};
/// Decimals a price keeps at least (Yahoo's `priceHint` of US stocks and ETFs).
const PRICE_HINT: u32 = 2;

/// Why a Tiingo answer is refused whole.
#[derive(Debug, thiserror::Error)]
pub enum TiingoValidateError {
    #[error(
        "Tiingo's splitFactor for {ticker} on {date} is {value}, not a positive number, so the prices before it cannot be put on one basis; nothing was stored for it"
    )]
    BadSplitFactor {
        ticker: String,
        date: NaiveDate,
        value: String,
    },
}

/// A row with its trade date and the split ratio of its date.
struct Dated {
    date: NaiveDate,
    row: PriceRow,
    /// (numerator, denominator) of this date's split; (1, 1) when there is none.
    split: (Decimal, Decimal),
}

/// Validates Tiingo's rows for `ticker` (asked from the window's start to today) into the
/// window's [`Series`] on Yahoo's basis; `now` decides which session is still open.
///
/// # Errors
/// [`TiingoValidateError::BadSplitFactor`] when a split factor is not a positive number.
pub fn validate(
    rows: Vec<PriceRow>,
    ticker: &TiingoTicker,
    window: &DateWindow,
    now: DateTime<Utc>,
) -> Result<Series, TiingoValidateError> {
    let mut dropped = DropCounts {
        received: rows.len(),
        ..DropCounts::default()
    };
    let mut dated: Vec<Dated> = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(date) = trade_date(&row.date) else {
            warn!(%ticker, date = %row.date, "row left out: its date is not YYYY-MM-DD...");
            dropped.null += 1;
            continue;
        };
        let split = match row.split_factor.0 {
            None => (Decimal::ONE, Decimal::ONE),
            Some(f) if f.is_finite() && f > 0.0 => ratio(f),
            Some(f) => {
                return Err(TiingoValidateError::BadSplitFactor {
                    ticker: ticker.to_string(),
                    date,
                    value: f.to_string(),
                });
            }
        };
        dated.push(Dated { date, row, split });
    }
    // One row per date, the last one of the answer (a stable sort keeps answer order).
    dated.sort_by_key(|r| r.date);
    let mut unique: Vec<Dated> = Vec::with_capacity(dated.len());
    for row in dated {
        match unique.last_mut() {
            Some(last) if last.date == row.date => {
                dropped.duplicate_dates += 1;
                *last = row;
            }
            _ => unique.push(row),
        }
    }

    // F(d) as numerator / denominator: the splits of every later row, newest first.
    let mut after = vec![(Decimal::ONE, Decimal::ONE); unique.len()];
    let mut product = (Decimal::ONE, Decimal::ONE);
    for (i, row) in unique.iter().enumerate().rev() {
        after[i] = product;
        product = (
            product.0.saturating_mul(row.split.0),
            product.1.saturating_mul(row.split.1),
        );
    }

    let local_now = now.with_timezone(&EXCHANGE_TZ);
    let open_from = if local_now.time() < SESSION_END {
        local_now.date_naive()
    } else {
        local_now.date_naive().succ_opt().unwrap_or(NaiveDate::MAX)
    };
    let mut bars = Vec::with_capacity(unique.len());
    let mut actions = Vec::new();
    for (row, (num, den)) in unique.iter().zip(after) {
        let date = row.date;
        if !window.contains(date) {
            dropped.outside_window += 1;
            continue;
        }
        if date >= open_from {
            dropped.session_open += 1;
            continue;
        }
        actions.extend(row_actions(row, num, den));
        let r = &row.row;
        let (Some(o), Some(h), Some(l), Some(c)) = (r.open.0, r.high.0, r.low.0, r.close.0) else {
            dropped.null += 1;
            continue;
        };
        let price = |raw: f64| decimal(raw).and_then(|x| rebased(x, num, den));
        let (Some(open), Some(high), Some(low), Some(close)) =
            (price(o), price(h), price(l), price(c))
        else {
            warn!(%ticker, trade_date = %date, "bar rejected: a price is negative, zero or too large");
            dropped.impossible += 1;
            continue;
        };
        let volume = r
            .volume
            .0
            .map_or(Some(Decimal::ZERO), |v| {
                decimal(v).and_then(|v| v.checked_mul(num)?.checked_div(den))
            })
            .and_then(|v| v.round().to_f64())
            .unwrap_or(-1.0);
        if let Some(reason) = impossible(open, high, low, close, volume) {
            warn!(%ticker, trade_date = %date, %open, %high, %low, %close, volume, "bar rejected: {reason}");
            dropped.impossible += 1;
            continue;
        }
        #[allow(clippy::cast_possible_truncation)] // checked finite, whole and in range above
        let volume = volume as i64;
        let adj_close = r.adj_close.0.and_then(decimal).and_then(round_price);
        bars.push(Bar {
            trade_date: date,
            open,
            high,
            low,
            close,
            adj_close,
            volume,
        });
    }
    actions.sort_by_key(|a: &CorporateAction| (a.ex_date, a.kind_str()));
    actions.dedup();
    Ok(Series {
        meta: InstrumentMeta {
            currency: None,
            exchange_tz: Some(EXCHANGE_TZ.name().to_owned()),
            instrument_type: None,
            exchange_name: None,
        },
        bars,
        actions,
        dropped,
    })
}

/// The dividend and the split of one row (in the window), on Yahoo's basis.
fn row_actions(row: &Dated, num: Decimal, den: Decimal) -> Vec<CorporateAction> {
    let mut out = Vec::new();
    if row.split != (Decimal::ONE, Decimal::ONE) {
        out.push(CorporateAction {
            ex_date: row.date,
            kind: ActionKind::Split {
                numerator: row.split.0.normalize(),
                denominator: row.split.1.normalize(),
            },
        });
    }
    if let Some(amount) = row
        .row
        .div_cash
        .0
        .filter(|v| *v > 0.0)
        .and_then(decimal)
        .and_then(|v| v.checked_mul(den)?.checked_div(num))
        .map(|v| v.round_dp(PRICE_SCALE).normalize())
        .filter(|v| *v > Decimal::ZERO)
    {
        out.push(CorporateAction {
            ex_date: row.date,
            kind: ActionKind::Dividend { amount },
        });
    }
    out
}

/// The date of `2024-01-02T00:00:00.000Z` (or a bare `2024-01-02`): Tiingo writes the trade
/// date as midnight UTC, so the date part is the exchange's date.
fn trade_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

/// The decimal Tiingo wrote: the shortest text that reads back as this float (`129.04`, not
/// 129.039999999999992042).
fn decimal(x: f64) -> Option<Decimal> {
    if !x.is_finite() {
        return None;
    }
    Decimal::from_str(&x.to_string()).ok()
}

/// A raw price divided by the split factor `num / den` after its date, rounded.
fn rebased(raw: Decimal, num: Decimal, den: Decimal) -> Option<Decimal> {
    round_price(raw.checked_mul(den)?.checked_div(num)?)
}

/// [`super::to_price`]'s rounding, on a decimal: 7 significant digits, at least
/// [`PRICE_HINT`] decimals, at most [`PRICE_SCALE`]; `None` unless in (0, 1e12).
fn round_price(x: Decimal) -> Option<Decimal> {
    let value = x.to_f64()?;
    if !(value > 0.0 && value < 1.0e12) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)] // log10 of a value in (0, 1e12) fits an i32
    let magnitude = value.log10().floor() as i32;
    let significant = u32::try_from((6 - magnitude).max(0)).unwrap_or(0);
    let scale = significant.clamp(PRICE_HINT, PRICE_SCALE);
    let rounded = x
        .round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
        .normalize();
    (rounded > Decimal::ZERO).then_some(rounded)
}

/// A split factor as the smallest ratio `numerator / denominator` (denominator up to 1000)
/// that it is, to 1e-5 relative: 4 -> 4/1, 1.5 -> 3/2, 0.1 -> 1/10, 0.333333 -> 1/3.
fn ratio(factor: f64) -> (Decimal, Decimal) {
    for den in 1..=1000u32 {
        let scaled = factor * f64::from(den);
        let num = scaled.round();
        if num >= 1.0
            && (scaled - num).abs() <= 1e-5 * scaled
            && let Some(n) = Decimal::from_f64(num)
        {
            return (n, Decimal::from(den));
        }
    }
    (
        decimal(factor).unwrap_or(Decimal::ONE).normalize(),
        Decimal::ONE,
    )
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::domain::YahooSymbol;
    use crate::job::fetch::tiingo::wire::parse_prices;

    fn rows(json: serde_json::Value) -> Vec<PriceRow> {
        parse_prices(json.to_string().as_bytes()).unwrap()
    }

    fn row(date: &str, close: f64, div: f64, split: f64) -> serde_json::Value {
        serde_json::json!({"date": format!("{date}T00:00:00.000Z"), "open": close, "high": close * 1.01,
            "low": close * 0.99, "close": close, "volume": 1000, "adjClose": close / 2.0,
            "adjHigh": 0, "adjLow": 0, "adjOpen": 0, "adjVolume": 0, "divCash": div, "splitFactor": split})
    }

    fn window(from: &str, to: &str) -> DateWindow {
        DateWindow::new(from.parse().unwrap(), to.parse().unwrap()).unwrap()
    }

    fn ticker() -> TiingoTicker {
        TiingoTicker::from_yahoo(&YahooSymbol::parse("NVDA").unwrap()).unwrap()
    }

    fn later() -> DateTime<Utc> {
        "2026-11-21T06:30:00Z".parse().unwrap()
    }

    #[test]
    fn raw_prices_are_divided_by_the_later_splits_and_volumes_multiplied() {
        // A dividend of 2 on the old basis, a 4:1 split on 06-10, a 2:1 split after the window.
        let json = serde_json::json!([
            row("2024-06-06", 400.0, 0.0, 1.0),
            row("2024-06-07", 404.0, 2.0, 1.0),
            row("2024-06-10", 101.5, 0.0, 4.0),
            row("2024-06-11", 102.25, 0.0, 1.0),
            row("2024-07-01", 52.0, 0.0, 2.0),
        ]);
        let s = validate(
            rows(json),
            &ticker(),
            &window("2024-06-01", "2024-06-30"),
            later(),
        )
        .unwrap();
        let closes: Vec<Decimal> = s.bars.iter().map(|b| b.close).collect();
        assert_eq!(
            closes,
            vec![dec!(50), dec!(50.5), dec!(50.75), dec!(51.125)]
        );
        let volumes: Vec<i64> = s.bars.iter().map(|b| b.volume).collect();
        assert_eq!(volumes, vec![8000, 8000, 2000, 2000]);
        assert_eq!(s.bars[0].high, dec!(50.5));
        assert_eq!(
            s.bars[0].adj_close,
            Some(dec!(200)),
            "adjClose is taken as it is"
        );
        assert_eq!(
            s.actions,
            vec![
                CorporateAction {
                    ex_date: "2024-06-07".parse().unwrap(),
                    kind: ActionKind::Dividend { amount: dec!(0.25) },
                },
                CorporateAction {
                    ex_date: "2024-06-10".parse().unwrap(),
                    kind: ActionKind::Split {
                        numerator: dec!(4),
                        denominator: dec!(1),
                    },
                },
            ],
            "the split after the window is not an action of the window"
        );
        assert_eq!(s.dropped.outside_window, 1);
        assert_eq!(s.meta.exchange_tz.as_deref(), Some("America/New_York"));
    }

    #[test]
    fn fractional_and_reverse_splits_keep_their_ratio() {
        assert_eq!(ratio(4.0), (dec!(4), dec!(1)));
        assert_eq!(ratio(1.5), (dec!(3), dec!(2)));
        assert_eq!(ratio(0.1), (dec!(1), dec!(10)));
        assert_eq!(ratio(1.0 / 3.0), (dec!(1), dec!(3)));
        assert_eq!(ratio(0.333_333), (dec!(1), dec!(3)));
        // 3:2 on 06-10: the bar before is worth 2/3 of its raw price.
        let json = serde_json::json!([
            row("2024-06-07", 150.0, 0.0, 1.0),
            row("2024-06-10", 100.0, 0.0, 1.5)
        ]);
        let s = validate(
            rows(json),
            &ticker(),
            &window("2024-06-01", "2024-06-30"),
            later(),
        )
        .unwrap();
        assert_eq!(s.bars[0].close, dec!(100));
        assert_eq!(s.bars[0].volume, 1500);
    }

    #[test]
    fn rounding_is_yahoos() {
        assert_eq!(round_price(dec!(681.6900024414062)), Some(dec!(681.69)));
        assert_eq!(round_price(dec!(154.32125)), Some(dec!(154.3213)));
        assert_eq!(round_price(dec!(0.000012345678)), Some(dec!(0.00001235)));
        assert_eq!(round_price(dec!(12.5)), Some(dec!(12.5)));
        assert_eq!(round_price(Decimal::ZERO), None);
        assert_eq!(decimal(129.04), Some(dec!(129.04)));
    }

    #[test]
    fn open_sessions_missing_prices_and_duplicates_follow_yahoos_rules() {
        let mut missing = row("2024-06-05", 10.0, 0.0, 1.0);
        missing["close"] = serde_json::Value::Null;
        let json = serde_json::json!([
            missing,
            row("2024-06-06", 10.0, 0.0, 1.0),
            row("2024-06-06", 11.0, 0.0, 1.0),
            row("2024-06-07", 12.0, 0.0, 1.0),
        ]);
        // 2024-06-07 10:00 New York: that session is still open.
        let during: DateTime<Utc> = "2024-06-07T14:00:00Z".parse().unwrap();
        let s = validate(
            rows(json),
            &ticker(),
            &window("2024-06-01", "2024-06-30"),
            during,
        )
        .unwrap();
        assert_eq!(s.bars.len(), 1);
        assert_eq!(s.bars[0].close, dec!(11));
        assert_eq!(
            (
                s.dropped.null,
                s.dropped.duplicate_dates,
                s.dropped.session_open
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn a_split_factor_that_is_not_positive_refuses_the_answer() {
        let json = serde_json::json!([row("2024-06-06", 10.0, 0.0, 0.0)]);
        let err = validate(
            rows(json),
            &ticker(),
            &window("2024-06-01", "2024-06-30"),
            later(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nvda") && err.contains("2024-06-06"), "{err}");
        assert!(
            validate(
                Vec::new(),
                &ticker(),
                &window("2024-06-01", "2024-06-30"),
                later()
            )
            .unwrap()
            .bars
            .is_empty()
        );
    }

    proptest::proptest! {
        /// Whatever the rows, the bars satisfy what the store relies on.
        #[test]
        fn validated_bars_always_satisfy_the_store_invariants(
            days in proptest::collection::vec((0i64..60, 0.01f64..5_000.0, 0.5f64..2.0, proptest::sample::select(vec![1.0, 1.0, 1.0, 2.0, 0.5, 1.5])), 0..40),
        ) {
            let start: NaiveDate = "2024-01-01".parse().unwrap();
            let json: Vec<serde_json::Value> = days.iter().map(|(day, close, spread, split)| {
                let date = (start + chrono::Duration::days(*day)).to_string();
                let mut r = row(&date, *close, 0.0, *split);
                r["high"] = serde_json::json!(close * spread);
                r
            }).collect();
            let w = window("2024-01-10", "2024-02-10");
            let series = validate(rows(serde_json::Value::from(json)), &ticker(), &w, later()).unwrap();
            crate::job::validate::store_invariants(&series, &w)?;
        }
    }
}
