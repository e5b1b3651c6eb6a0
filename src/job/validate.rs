//! Stage 3: validate. Turns Yahoo's wire response into domain [`Bar`]s, or refuses it whole.
//!
//! Rules, in order (each is an invariant the store stage relies on):
//! 1. The response must be for the symbol asked (`meta.symbol`), else the security fails.
//! 2. The trade date of a bar is the date of its timestamp in the exchange's own time zone
//!    (`exchangeTimezoneName`, via the tz database), never the UTC date.
//! 3. A bar with a null (or NaN/Infinity) open, high, low or close is skipped; a null volume is 0.
//! 4. Prices become `Decimal`, rounded to the instrument's precision (see [`to_price`]); the
//!    checks below run on the rounded values, the ones that get stored.
//! 5. Impossible bars (a price <= 0, high < low, close outside [low, high], negative volume) are
//!    rejected with a warning.
//! 6. Two bars on one trade date (duplicate timestamps, or a live bar beside the settled one):
//!    the later timestamp wins. Output is sorted by date.
//! 7. Only dates inside the requested window are kept; so is nothing from a session still open
//!    (`currentTradingPeriod.regular` has not ended): a later run stores the settled bar.

pub mod tiingo;

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDate, Offset, Utc};
use chrono_tz::Tz;
use rust_decimal::prelude::*;
use tracing::warn;

use crate::domain::{ActionKind, CorporateAction, DateWindow, YahooSymbol};
use crate::job::fetch::wire::{ChartEnvelope, ChartResult, Events, Lenient};

/// The scale of the price columns (NUMERIC(20, 8)).
pub const PRICE_SCALE: u32 = 8;

/// One settled daily bar, exact, dated in the exchange's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub trade_date: NaiveDate,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub adj_close: Option<Decimal>,
    pub volume: i64,
}

/// What Yahoo's meta says about the instrument (stored in `securities`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstrumentMeta {
    pub currency: Option<String>,
    pub exchange_tz: Option<String>,
    pub instrument_type: Option<String>,
    pub exchange_name: Option<String>,
}

/// Counts of what validation dropped, by reason, for the run summary, the `runs` row and logs
/// (`received` is kept for messages, left out of the JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropCounts {
    #[serde(skip)]
    pub received: usize,
    /// A null open, high, low or close (Yahoo's way of saying "no session": a holiday, a halt).
    pub null: usize,
    /// A price that is not a number (`"NaN"`, `"Infinity"`) or too large for any instrument.
    pub out_of_range: usize,
    /// A price <= 0, high < low, close outside [low, high], a negative volume.
    pub impossible: usize,
    pub duplicate_dates: usize,
    pub outside_window: usize,
    pub session_open: usize,
}

impl DropCounts {
    /// The bars that were garbage rather than a gap or out of the window.
    #[must_use]
    pub fn rejected(&self) -> usize {
        self.out_of_range + self.impossible
    }

    /// Each reason: its count, a short name (the summary) and what it means (errors).
    #[must_use]
    pub fn reasons(&self) -> [(usize, &'static str, &'static str); 6] {
        [
            (self.null, "null", "with a null price"),
            (
                self.out_of_range,
                "out of range",
                "with a price out of range (not a number, or >= 1e12)",
            ),
            (
                self.impossible,
                "impossible",
                "impossible (a price <= 0, high < low, close outside [low, high], or a negative volume)",
            ),
            (
                self.duplicate_dates,
                "duplicate date",
                "on a date already seen",
            ),
            (
                self.outside_window,
                "outside the window",
                "outside the window",
            ),
            (self.session_open, "session open", "of a session still open"),
        ]
    }

    /// Bars dropped, all reasons together.
    #[must_use]
    pub fn total(&self) -> usize {
        self.reasons().iter().map(|(n, _, _)| n).sum()
    }

    /// The counts of several series added up.
    #[must_use]
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a DropCounts>) -> DropCounts {
        all.into_iter()
            .fold(DropCounts::default(), |t, d| DropCounts {
                received: t.received + d.received,
                null: t.null + d.null,
                out_of_range: t.out_of_range + d.out_of_range,
                impossible: t.impossible + d.impossible,
                duplicate_dates: t.duplicate_dates + d.duplicate_dates,
                outside_window: t.outside_window + d.outside_window,
                session_open: t.session_open + d.session_open,
            })
    }
}

impl std::fmt::Display for DropCounts {
    /// `3 with a null price, 2 with a price out of range` (only the reasons that occurred).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (n, _, reason) in self.reasons().into_iter().filter(|(n, _, _)| *n > 0) {
            write!(f, "{}{n} {reason}", if first { "" } else { ", " })?;
            first = false;
        }
        if first {
            f.write_str("none dropped")?;
        }
        Ok(())
    }
}

/// A validated series: bars sorted by date with one bar per date, all inside the window, and
/// the corporate actions Yahoo reported in it (sorted by ex-date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub meta: InstrumentMeta,
    pub bars: Vec<Bar>,
    pub actions: Vec<CorporateAction>,
    pub dropped: DropCounts,
}

/// Why a whole response is refused: the security fails with this reason, nothing is stored.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(
        "Yahoo answered the request for {asked} with data for {got}; nothing was stored for it (check yahoo_symbol)"
    )]
    SymbolMismatch { asked: String, got: String },
    #[error(
        "Yahoo answered {symbol} with HTTP 200 but no chart.result; nothing was stored for it, rerun later"
    )]
    NoResult { symbol: String },
    #[error(
        "Yahoo's chart for {symbol} has columns of different lengths ({detail}); nothing was stored for it, rerun later"
    )]
    Misaligned { symbol: String, detail: String },
    #[error(
        "Yahoo's chart for {symbol} has a timestamp outside any plausible date ({timestamp}, not within 1900-01-01..now); nothing was stored for it, rerun later"
    )]
    ImplausibleTimestamp { symbol: String, timestamp: i64 },
    #[error(
        "none of the {received} bars Yahoo sent for {symbol} over {window} is usable ({dropped}); nothing was stored for it, rerun later"
    )]
    NoUsableBar {
        symbol: String,
        window: DateWindow,
        received: usize,
        dropped: DropCounts,
    },
    #[error(
        "Yahoo sent no bars for {symbol} over {window}, which has {weekdays} weekdays (no market closes that long); nothing was stored for it, rerun later or check the symbol"
    )]
    NoBars {
        symbol: String,
        window: DateWindow,
        weekdays: u32,
    },
}

/// The longest run of weekdays a market is closed for (Chinese New Year, Golden Week): an
/// empty answer for a window with more weekdays than this is not a holiday.
pub const MAX_CLOSED_WEEKDAYS: u32 = 5;

/// The earliest timestamp a daily bar can have (1900-01-01 00:00 UTC; Yahoo's oldest series
/// start in the 1920s, before 1970, as negative timestamps).
const EARLIEST_BAR: i64 = -2_208_988_800;
/// How far past `now` a bar's timestamp may lie (a session start in a zone ahead of UTC).
const LATEST_BAR_AHEAD_SECS: i64 = 2 * 86_400;

/// One cell of a price column: absent or null, not a finite number, or a value.
enum Cell {
    Missing,
    NotFinite,
    Value(f64),
}

fn cell(column: &[Lenient], i: usize) -> Cell {
    match column.get(i).and_then(|v| v.0) {
        None => Cell::Missing,
        Some(v) if v.is_finite() => Cell::Value(v),
        Some(_) => Cell::NotFinite,
    }
}

/// Validates one chart response for `asked` over `window`; `now` decides which session is open
/// and which timestamps are plausible.
pub fn validate(
    envelope: ChartEnvelope,
    asked: &YahooSymbol,
    window: &DateWindow,
    now: DateTime<Utc>,
) -> Result<Series, ValidateError> {
    let Some(mut result) = envelope.chart.result.and_then(|r| r.into_iter().next()) else {
        return Err(ValidateError::NoResult {
            symbol: asked.to_string(),
        });
    };
    if !result.meta.symbol.eq_ignore_ascii_case(asked.as_str()) {
        return Err(ValidateError::SymbolMismatch {
            asked: asked.to_string(),
            got: result.meta.symbol,
        });
    }
    let zone = ExchangeZone::of(&result, asked);
    let open_session = result
        .meta
        .current_trading_period
        .as_ref()
        .and_then(|p| p.regular.as_ref())
        .filter(|regular| now.timestamp() < regular.end)
        .map(|regular| regular.start);
    let price_hint = result.meta.price_hint.unwrap_or(2);
    let meta = InstrumentMeta {
        currency: result.meta.currency.clone(),
        exchange_tz: result.meta.exchange_timezone_name.clone(),
        instrument_type: result.meta.instrument_type.clone(),
        exchange_name: result.meta.exchange_name.clone(),
    };

    let actions = actions(result.events.take(), &zone, window, asked);
    let timestamps = result.timestamp.unwrap_or_default();
    let indicators = result.indicators.unwrap_or_default();
    let quote = indicators.quote.into_iter().next().unwrap_or_default();
    let adj = indicators
        .adjclose
        .into_iter()
        .next()
        .map(|a| a.adjclose)
        .unwrap_or_default();
    aligned(asked, &timestamps, &quote)?;
    let latest = now.timestamp() + LATEST_BAR_AHEAD_SECS;
    if let Some(&timestamp) = timestamps
        .iter()
        .find(|&&ts| !(EARLIEST_BAR..=latest).contains(&ts))
    {
        return Err(ValidateError::ImplausibleTimestamp {
            symbol: asked.to_string(),
            timestamp,
        });
    }

    let mut dropped = DropCounts {
        received: timestamps.len(),
        ..DropCounts::default()
    };
    // (timestamp, bar): kept with its timestamp so that the later of two same-date bars wins.
    let mut kept: Vec<(i64, Bar)> = Vec::with_capacity(timestamps.len());
    for (i, &ts) in timestamps.iter().enumerate() {
        let Some(trade_date) = zone.date_of(ts) else {
            dropped.null += 1;
            continue;
        };
        if open_session.is_some_and(|start| ts >= start) {
            dropped.session_open += 1;
            continue;
        }
        if !window.contains(trade_date) {
            dropped.outside_window += 1;
            continue;
        }
        let cells = [
            cell(&quote.open, i),
            cell(&quote.high, i),
            cell(&quote.low, i),
            cell(&quote.close, i),
        ];
        if cells.iter().any(|c| matches!(c, Cell::NotFinite)) {
            warn!(symbol = %asked, %trade_date, "bar rejected: a price is not a number");
            dropped.out_of_range += 1;
            continue;
        }
        let [
            Cell::Value(o),
            Cell::Value(h),
            Cell::Value(l),
            Cell::Value(c),
        ] = cells
        else {
            dropped.null += 1;
            continue;
        };
        if [o, h, l, c].iter().any(|&x| x >= MAX_PRICE) {
            warn!(symbol = %asked, %trade_date, open = o, high = h, low = l, close = c, "bar rejected: a price is out of range");
            dropped.out_of_range += 1;
            continue;
        }
        let price = |x: f64| to_price(x, price_hint);
        let (Some(open), Some(high), Some(low), Some(close)) =
            (price(o), price(h), price(l), price(c))
        else {
            warn!(symbol = %asked, %trade_date, open = o, high = h, low = l, close = c, "bar rejected: a price is negative or zero");
            dropped.impossible += 1;
            continue;
        };
        let volume = quote.volume.get(i).and_then(|v| v.finite()).unwrap_or(0.0);
        if let Some(reason) = impossible(open, high, low, close, volume) {
            warn!(symbol = %asked, %trade_date, %open, %high, %low, %close, volume, "bar rejected: {reason}");
            dropped.impossible += 1;
            continue;
        }
        #[allow(clippy::cast_possible_truncation)] // checked finite, >= 0 and integral-ish above
        let volume = volume.round() as i64;
        let adj_close = adj
            .get(i)
            .and_then(|a| a.finite())
            .and_then(|a| to_price(a, price_hint));
        kept.push((
            ts,
            Bar {
                trade_date,
                open,
                high,
                low,
                close,
                adj_close,
                volume,
            },
        ));
    }

    // Sort by (date, timestamp), stable so that of two identical timestamps the later in the
    // response wins, then keep the last bar of each date.
    kept.sort_by_key(|(ts, bar)| (bar.trade_date, *ts));
    let mut bars: Vec<Bar> = Vec::with_capacity(kept.len());
    for (_, bar) in kept {
        match bars.last_mut() {
            Some(last) if last.trade_date == bar.trade_date => {
                dropped.duplicate_dates += 1;
                *last = bar;
            }
            _ => bars.push(bar),
        }
    }
    if bars.is_empty() {
        if dropped.rejected() > 0 {
            return Err(ValidateError::NoUsableBar {
                symbol: asked.to_string(),
                window: *window,
                received: dropped.received,
                dropped,
            });
        }
        // A bar of the session still open is live data, not an outage: nothing settled yet.
        let weekdays = window.weekdays();
        if weekdays > MAX_CLOSED_WEEKDAYS && dropped.session_open == 0 {
            return Err(ValidateError::NoBars {
                symbol: asked.to_string(),
                window: *window,
                weekdays,
            });
        }
    }
    Ok(Series {
        meta,
        bars,
        actions,
        dropped,
    })
}

/// No instrument trades at a trillion per unit: a price at or above this is garbage.
const MAX_PRICE: f64 = 1.0e12;

/// The price columns have one length, and no column is longer than `timestamp` (shorter is
/// a known Yahoo quirk: the missing tail counts as null bars).
fn aligned(
    asked: &YahooSymbol,
    timestamps: &[i64],
    quote: &crate::job::fetch::wire::Quote,
) -> Result<(), ValidateError> {
    let lengths = [
        ("open", quote.open.len()),
        ("high", quote.high.len()),
        ("low", quote.low.len()),
        ("close", quote.close.len()),
    ];
    let prices_differ = lengths.iter().any(|(_, n)| *n != lengths[0].1);
    let longer = lengths
        .iter()
        .chain([&("volume", quote.volume.len())])
        .any(|(_, n)| *n > timestamps.len());
    if prices_differ || longer {
        let detail = std::iter::once(("timestamp", timestamps.len()))
            .chain(lengths)
            .chain([("volume", quote.volume.len())])
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ValidateError::Misaligned {
            symbol: asked.to_string(),
            detail,
        });
    }
    Ok(())
}

/// The splits and dividends of `events` dated (by their inner `date`, in the exchange's zone)
/// inside `window`, sorted by ex-date. An event without a positive ratio or amount is left out
/// with a warning: it cannot be applied.
fn actions(
    events: Option<Events>,
    zone: &ExchangeZone,
    window: &DateWindow,
    asked: &YahooSymbol,
) -> Vec<CorporateAction> {
    let Some(events) = events else {
        return Vec::new();
    };
    let positive = |x: Lenient| {
        x.finite()
            .filter(|v| *v > 0.0)
            .and_then(Decimal::from_f64_retain)
            .map(|d| d.round_dp(PRICE_SCALE).normalize())
            .filter(|d| *d > Decimal::ZERO)
    };
    let mut out = Vec::new();
    for split in events.splits.unwrap_or_default().into_values() {
        let (Some(ex_date), Some(numerator), Some(denominator)) = (
            zone.date_of(split.date),
            positive(split.numerator),
            positive(split.denominator),
        ) else {
            warn!(symbol = %asked, ratio = split.split_ratio.as_deref().unwrap_or(""), "split event left out: no positive numerator and denominator");
            continue;
        };
        out.push(CorporateAction {
            ex_date,
            kind: ActionKind::Split {
                numerator,
                denominator,
            },
        });
    }
    for dividend in events.dividends.unwrap_or_default().into_values() {
        let (Some(ex_date), Some(amount)) =
            (zone.date_of(dividend.date), positive(dividend.amount))
        else {
            warn!(symbol = %asked, "dividend event left out: no positive amount");
            continue;
        };
        out.push(CorporateAction {
            ex_date,
            kind: ActionKind::Dividend { amount },
        });
    }
    out.retain(|a| window.contains(a.ex_date));
    out.sort_by_key(|a| (a.ex_date, a.kind_str()));
    out.dedup();
    out
}

/// Why a bar cannot be real, if it cannot.
fn impossible(
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: f64,
) -> Option<&'static str> {
    if high < low {
        Some("high is below low")
    } else if close < low || close > high {
        Some("close is outside [low, high]")
    } else if open <= Decimal::ZERO {
        Some("open is not positive")
    } else if !(volume.is_finite() && (0.0..9.0e18).contains(&volume)) {
        Some("volume is negative or out of range")
    } else {
        None
    }
}

/// Converts one of Yahoo's prices to an exact decimal.
///
/// Yahoo's prices are single-precision floats widened to double (681.69 arrives as
/// 681.6900024414062), good to about 7 significant digits. We keep 7 significant digits, never
/// fewer decimals than `priceHint` (Yahoo's display precision) and never more than the column's
/// scale, then drop trailing zeros: 681.6900024414062 -> 681.69, 1.1221000195 -> 1.1221.
/// `None` for a non-positive price or one too large for the column.
#[must_use]
pub fn to_price(value: f64, price_hint: u32) -> Option<Decimal> {
    if !(value.is_finite() && value > 0.0 && value < 1.0e12) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)] // log10 of a value in (0, 1e12) fits an i32
    let magnitude = value.log10().floor() as i32;
    let significant = u32::try_from((6 - magnitude).max(0)).unwrap_or(0);
    let scale = significant.max(price_hint).min(PRICE_SCALE);
    let exact = Decimal::from_f64_retain(value)?;
    let rounded = exact
        .round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
        .normalize();
    (rounded > Decimal::ZERO).then_some(rounded)
}

/// The exchange's clock: a tz-database zone, or the fixed `gmtoffset` when the name is unknown.
enum ExchangeZone {
    Named(Tz),
    Fixed(FixedOffset),
}

impl ExchangeZone {
    fn of(result: &ChartResult, symbol: &YahooSymbol) -> Self {
        let meta = &result.meta;
        if let Some(tz) = meta
            .exchange_timezone_name
            .as_deref()
            .and_then(|name| Tz::from_str(name).ok())
        {
            return Self::Named(tz);
        }
        let offset = meta
            .gmtoffset
            .and_then(|s| i32::try_from(s).ok())
            .and_then(FixedOffset::east_opt)
            .unwrap_or_else(|| Utc.fix());
        warn!(
            %symbol,
            zone = meta.exchange_timezone_name.as_deref().unwrap_or("(none)"),
            offset_s = offset.local_minus_utc(),
            "unknown exchange time zone; dating bars with the fixed gmtoffset"
        );
        Self::Fixed(offset)
    }

    fn date_of(&self, ts: i64) -> Option<NaiveDate> {
        let utc = DateTime::from_timestamp(ts, 0)?;
        Some(match self {
            Self::Named(tz) => utc.with_timezone(tz).date_naive(),
            Self::Fixed(offset) => utc.with_timezone(offset).date_naive(),
        })
    }
}

/// What the store relies on of every validated series, for the property tests of each
/// source's validation: one bar per date, in order, inside the window, prices positive and
/// consistent, volume >= 0, prices within the column's scale.
#[cfg(test)]
pub(crate) fn store_invariants(
    series: &Series,
    window: &DateWindow,
) -> Result<(), proptest::test_runner::TestCaseError> {
    for pair in series.bars.windows(2) {
        proptest::prop_assert!(pair[0].trade_date < pair[1].trade_date);
    }
    for b in &series.bars {
        proptest::prop_assert!(window.contains(b.trade_date));
        proptest::prop_assert!(b.low > Decimal::ZERO && b.open > Decimal::ZERO);
        proptest::prop_assert!(b.low <= b.high && b.low <= b.close && b.close <= b.high);
        proptest::prop_assert!(b.volume >= 0);
        proptest::prop_assert!(b.close.scale() <= PRICE_SCALE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::job::fetch::wire::parse_chart;

    fn fixture(name: &str) -> ChartEnvelope {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        parse_chart(&std::fs::read(path).unwrap()).unwrap()
    }

    fn window(from: &str, to: &str) -> DateWindow {
        DateWindow::new(from.parse().unwrap(), to.parse().unwrap()).unwrap()
    }

    fn sym(s: &str) -> YahooSymbol {
        YahooSymbol::parse(s).unwrap()
    }

    fn later() -> DateTime<Utc> {
        "2026-11-21T06:30:00Z".parse().unwrap()
    }

    #[test]
    fn spy_recording_becomes_exact_bars() {
        let s = validate(
            fixture("chart-SPY-1d.json"),
            &sym("SPY"),
            &window("2026-02-01", "2026-02-28"),
            later(),
        )
        .unwrap();
        assert_eq!(s.bars.len(), 5);
        let first = &s.bars[0];
        // 1770993000 = 2026-02-13 09:30 New York
        assert_eq!(
            first.trade_date,
            NaiveDate::from_ymd_opt(2026, 2, 13).unwrap()
        );
        assert_eq!(first.open, dec!(681.69));
        assert_eq!(first.close, dec!(681.75));
        assert_eq!(first.high, dec!(686.28));
        assert_eq!(first.low, dec!(677.52));
        assert_eq!(first.volume, 96_267_500);
        assert_eq!(s.bars[1].close, dec!(682.85));
        assert_eq!(s.meta.exchange_tz.as_deref(), Some("America/New_York"));
        assert_eq!(s.meta.instrument_type.as_deref(), Some("ETF"));
        assert!(s.bars.windows(2).all(|w| w[0].trade_date < w[1].trade_date));
    }

    #[test]
    fn null_bar_is_skipped() {
        let s = validate(
            fixture("yahoo/wsu_de_equity_1d_2023-08-04_to_2023-08-09_null_bar.json"),
            &sym("WSU.DE"),
            &window("2023-08-01", "2023-08-31"),
            later(),
        )
        .unwrap();
        assert_eq!(s.bars.len(), 2);
        assert_eq!(s.dropped.null, 1);
        assert!(
            s.bars
                .iter()
                .all(|b| b.trade_date != NaiveDate::from_ymd_opt(2023, 8, 7).unwrap())
        );
    }

    #[test]
    fn fx_is_dated_in_london_and_keeps_six_digits() {
        let s = validate(
            fixture("yahoo/eurusd_fx_1d_2020-01-01_to_2020-01-03.json"),
            &sym("EURUSD=X"),
            &window("2020-01-01", "2020-01-03"),
            later(),
        )
        .unwrap();
        assert!(!s.bars.is_empty());
        assert!(s.bars.iter().all(|b| b.volume == 0));
        // Quotes of ~1.12 keep their 4-6 decimals, not a display rounding to 2.
        assert!(s.bars.iter().all(|b| b.close.scale() >= 4), "{:?}", s.bars);
    }

    #[test]
    fn live_last_bar_on_the_same_date_replaces_the_settled_one() {
        let s = validate(
            fixture("yahoo/gspc_index_1d_2023-01-03_to_2024-02-29_live_last_bar.json"),
            &sym("^GSPC"),
            &window("2023-01-01", "2024-03-01"),
            later(),
        )
        .unwrap();
        let dates: Vec<_> = s.bars.iter().map(|b| b.trade_date).collect();
        let mut dedup = dates.clone();
        dedup.dedup();
        assert_eq!(dates, dedup);
        assert_eq!(
            s.bars.last().unwrap().trade_date,
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
    }

    #[test]
    fn open_session_bar_is_held_back() {
        // "now" inside the recorded session of 2024-02-29: its bar is not settled yet.
        let during: DateTime<Utc> = "2024-02-29T18:46:31Z".parse().unwrap();
        let s = validate(
            fixture("yahoo/gspc_index_range1d_live_bar.json"),
            &sym("^GSPC"),
            &window("2024-02-01", "2024-03-01"),
            during,
        )
        .unwrap();
        assert!(s.bars.is_empty());
        assert_eq!(s.dropped.session_open, 1);
    }

    #[test]
    fn crypto_counts_every_day() {
        let s = validate(
            fixture("yahoo/btc_usd_crypto_1d_2020-01-01_to_2020-01-03.json"),
            &sym("BTC-USD"),
            &window("2020-01-01", "2020-01-03"),
            later(),
        )
        .unwrap();
        assert_eq!(
            s.bars.first().unwrap().trade_date,
            NaiveDate::from_ymd_opt(2020, 1, 1).unwrap()
        );
    }

    #[test]
    fn wrong_symbol_is_refused() {
        let err = validate(
            fixture("chart-SPY-1d.json"),
            &sym("QQQ"),
            &window("2026-02-01", "2026-02-28"),
            later(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("QQQ") && err.to_string().contains("SPY"));
    }

    #[test]
    fn empty_result_is_no_bars() {
        let s = validate(
            fixture("yahoo/vxapl_index_1d_empty_result_no_timestamp.json"),
            &sym("^VXAPL"),
            &window("2020-01-01", "2020-01-03"),
            later(),
        )
        .unwrap();
        assert!(s.bars.is_empty());
    }

    /// A one-security chart body with these columns (timestamps: 2024-01-02.. at 09:30 NY).
    fn body(quote: &str, timestamps: &str) -> ChartEnvelope {
        let text = format!(
            r#"{{"chart":{{"result":[{{"meta":{{"symbol":"X","exchangeTimezoneName":"America/New_York","priceHint":2}},
            "timestamp":{timestamps},"indicators":{{"quote":[{quote}]}}}}],"error":null}}}}"#
        );
        parse_chart(text.as_bytes()).unwrap()
    }

    const THREE_DAYS: &str = "[1704205800,1704292200,1704378600]";

    fn refused(envelope: ChartEnvelope, from: &str, to: &str) -> String {
        validate(envelope, &sym("X"), &window(from, to), later())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_200_without_a_result_is_refused() {
        let none = parse_chart(br#"{"chart":{"result":null,"error":null}}"#).unwrap();
        let e = refused(none, "2024-01-01", "2024-01-31");
        assert!(e.contains("no chart.result") && e.contains('X'), "{e}");
        let empty = parse_chart(br#"{"chart":{"result":[],"error":null}}"#).unwrap();
        assert!(refused(empty, "2024-01-01", "2024-01-31").contains("no chart.result"));
    }

    #[test]
    fn misaligned_columns_are_refused() {
        let e = refused(
            body(
                r#"{"open":[10,10,10],"high":[11,11],"low":[9,9,9],"close":[10,10,10],"volume":[1,1,1]}"#,
                THREE_DAYS,
            ),
            "2024-01-01",
            "2024-01-31",
        );
        assert!(
            e.contains("different lengths") && e.contains("high 2"),
            "{e}"
        );
        let longer = refused(
            body(
                r#"{"open":[10,10,10,10],"high":[11,11,11,11],"low":[9,9,9,9],"close":[10,10,10,10]}"#,
                THREE_DAYS,
            ),
            "2024-01-01",
            "2024-01-31",
        );
        assert!(longer.contains("timestamp 3, open 4"), "{longer}");
        // Shorter than `timestamp`, all alike: Yahoo's known quirk; the tail is null bars.
        let s = validate(
            body(
                r#"{"open":[10,10],"high":[11,11],"low":[9,9],"close":[10,10]}"#,
                THREE_DAYS,
            ),
            &sym("X"),
            &window("2024-01-01", "2024-01-31"),
            later(),
        )
        .unwrap();
        assert_eq!((s.bars.len(), s.dropped.null), (2, 1));
    }

    #[test]
    fn implausible_timestamps_are_refused() {
        let quote = r#"{"open":[10,10],"high":[11,11],"low":[9,9],"close":[10,10]}"#;
        for stamps in ["[1704205800,99999999999]", "[-9999999999,1704205800]"] {
            let e = refused(body(quote, stamps), "2024-01-01", "2024-01-31");
            assert!(e.contains("plausible date"), "{e}");
        }
    }

    #[test]
    fn garbage_prices_everywhere_are_refused_with_the_reason() {
        let cases = [
            (
                r#"{"open":[1e308,1e308,1e308],"high":[1e308,1e308,1e308],"low":[1e308,1e308,1e308],"close":[1e308,1e308,1e308]}"#,
                "3 with a price out of range",
            ),
            (
                r#"{"open":[-5,-5,-5],"high":[-4,-4,-4],"low":[-6,-6,-6],"close":[-5,-5,-5]}"#,
                "3 impossible",
            ),
            (
                r#"{"open":["NaN","NaN","NaN"],"high":["Infinity",1,1],"low":[1,1,1],"close":[1,"NaN",1]}"#,
                "3 with a price out of range",
            ),
        ];
        for (quote, reason) in cases {
            let e = refused(body(quote, THREE_DAYS), "2024-01-01", "2024-01-31");
            assert!(
                e.contains("none of the 3 bars") && e.contains(reason),
                "{e}"
            );
        }
    }

    #[test]
    fn no_bars_is_a_holiday_only_for_a_short_window() {
        let empty = || fixture("yahoo/vxapl_index_1d_empty_result_no_timestamp.json");
        let asked = sym("^VXAPL");
        // Christmas Day; a weekend; Christmas Eve to Boxing Day.
        for (from, to) in [
            ("2024-12-25", "2024-12-25"),
            ("2024-12-28", "2024-12-29"),
            ("2024-12-24", "2024-12-26"),
        ] {
            let s = validate(empty(), &asked, &window(from, to), later()).unwrap();
            assert!(s.bars.is_empty(), "{from}..{to}");
        }
        let e = validate(
            empty(),
            &asked,
            &window("2024-01-02", "2024-03-29"),
            later(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no bars") && e.contains("64 weekdays"), "{e}");
        // All-null bars (no session on any of them) read the same as no bars.
        let nulls = r#"{"open":[null,null,null],"high":[null,null,null],"low":[null,null,null],"close":[null,null,null]}"#;
        assert!(refused(body(nulls, THREE_DAYS), "2024-01-01", "2024-01-31").contains("no bars"));
    }

    #[test]
    fn impossible_bars_are_rejected() {
        let body = br#"{"chart":{"result":[{"meta":{"symbol":"X","exchangeTimezoneName":"America/New_York","priceHint":2},
            "timestamp":[1704205800,1704292200,1704378600,1704465000],
            "indicators":{"quote":[{"open":[10,10,10,-1],"high":[11,9,11,11],"low":[9,10,9,9],"close":[10.5,9.5,12,10],"volume":[1,1,1,1]}]}}],"error":null}}"#;
        let s = validate(
            parse_chart(body).unwrap(),
            &sym("X"),
            &window("2024-01-01", "2024-01-31"),
            later(),
        )
        .unwrap();
        assert_eq!(s.bars.len(), 1);
        assert_eq!(s.dropped.impossible, 3);
    }

    #[test]
    fn prices_round_to_seven_significant_digits() {
        assert_eq!(to_price(681.690_002_441_406_2, 2), Some(dec!(681.69)));
        assert_eq!(to_price(3_824.139_892_578_125, 2), Some(dec!(3824.14)));
        assert_eq!(to_price(1.122_100_019_454_956, 4), Some(dec!(1.1221)));
        assert_eq!(to_price(107_000.117_187_5, 2), Some(dec!(107000.12)));
        assert_eq!(to_price(0.000_012_345_678, 2), Some(dec!(0.00001235)));
        assert_eq!(to_price(-1.0, 2), None);
        assert_eq!(to_price(0.0, 2), None);
        assert_eq!(to_price(f64::NAN, 2), None);
    }

    fn number() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0.01f64..5_000.0).prop_map(serde_json::Value::from),
            1 => Just(serde_json::Value::Null),
            1 => (-100.0f64..0.0).prop_map(serde_json::Value::from),
            1 => Just(serde_json::Value::from("NaN")),
            1 => Just(serde_json::Value::from(0)),
        ]
    }

    proptest::proptest! {
        /// Any response of Yahoo's shape, however broken its values, either is refused whole or
        /// yields bars that satisfy everything the store relies on.
        #[test]
        fn validated_bars_always_satisfy_the_store_invariants(
            stamps in proptest::collection::vec(1_577_836_800i64..1_735_689_600, 0..60),
            columns in proptest::collection::vec(proptest::collection::vec(number(), 0..60), 6),
            zone in proptest::sample::select(vec!["America/New_York", "Europe/London", "Asia/Tokyo", "UTC", "Mars/Olympus"]),
            from_day in 0i64..1_800,
            len in 0i64..400,
            hint in proptest::option::of(0u32..6),
        ) {
            // Price columns of one length, no longer than `timestamp` (else refused whole, see
            // `misaligned_columns_are_refused`); volume and adjclose as generated.
            let n = columns[..4].iter().map(Vec::len).min().unwrap_or(0).min(stamps.len());
            let field = |i: usize| {
                let len = if i < 4 { n } else { columns[i].len().min(stamps.len()) };
                serde_json::Value::from(columns[i][..len].to_vec())
            };
            let body = serde_json::json!({"chart": {"result": [{
                "meta": {"symbol": "SYM", "exchangeTimezoneName": zone, "gmtoffset": 3600, "priceHint": hint},
                "timestamp": stamps,
                "indicators": {"quote": [{"open": field(0), "high": field(1), "low": field(2), "close": field(3), "volume": field(4)}],
                               "adjclose": [{"adjclose": field(5)}]}
            }], "error": null}});
            let from = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + chrono::Duration::days(from_day);
            let window = DateWindow::new(from, from + chrono::Duration::days(len)).unwrap();
            let envelope = parse_chart(body.to_string().as_bytes()).unwrap();
            let series = match validate(envelope, &sym("SYM"), &window, later()) {
                Ok(series) => series,
                // Refused whole: only when nothing usable is left.
                Err(ValidateError::NoUsableBar { .. } | ValidateError::NoBars { .. }) => return Ok(()),
                Err(e) => return Err(proptest::test_runner::TestCaseError::fail(e.to_string())),
            };
            proptest::prop_assert!(series.bars.len() <= stamps.len());
            store_invariants(&series, &window)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            if let Ok(envelope) = parse_chart(&bytes) {
                let _ = validate(envelope, &sym("SYM"), &window("2020-01-01", "2020-12-31"), later());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn rounding_is_close_and_within_scale(x in 0.0001f64..2_000_000.0, hint in 0u32..6) {
            let d = to_price(x, hint).unwrap();
            proptest::prop_assert!(d.scale() <= PRICE_SCALE);
            let back = d.to_f64().unwrap();
            proptest::prop_assert!(((back - x) / x).abs() < 1e-5, "{x} -> {d}");
        }

        #[test]
        fn f32_prices_round_trip_to_their_quote(cents in 1u32..100_000_000u32) {
            // A quote with 2 decimals, sent as Yahoo does (via f32), comes back as the quote
            // whenever f32 can tell it apart from its neighbours (below ~100,000).
            let quote = Decimal::new(i64::from(cents), 2);
            #[allow(clippy::cast_possible_truncation)]
            let sent = f64::from(quote.to_f64().unwrap() as f32);
            if quote < dec!(100000) {
                proptest::prop_assert_eq!(to_price(sent, 2).unwrap(), quote.normalize());
            }
        }
    }
}
