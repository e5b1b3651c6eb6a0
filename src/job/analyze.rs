//! Stage 5: analyze. Technical indicators and a market regime per security and trade date,
//! computed from the whole stored series (so a 60-day fetch still gets a correct 200-day
//! average).
//!
//! Prices are `Decimal` up to the store; indicators are statistics and compute in `f64` from
//! the stored decimals (this is the boundary named in ARCHITECTURE.md). A value that needs more
//! history than is stored is `None`, never a made-up number.
//!
//! The formulas follow the conventions of Python's `ta` library (and pandas), so that the test
//! suite can cross-check every value against it:
//! - SMA n: mean of the last n closes.
//! - EMA n: `ewm(span=n, adjust=False, min_periods=n)`: alpha = 2/(n+1), seeded with the first
//!   close, reported from the n-th bar on.
//! - MACD (12, 26, 9): EMA12 - EMA26; signal = EMA9 of MACD (seeded with its first value,
//!   reported from its 9th value); histogram = MACD - signal.
//! - RSI 14 (Wilder): gains and losses of close-to-close changes (the first change counts as
//!   0), each smoothed with `ewm(alpha=1/14, adjust=False, min_periods=14)`;
//!   RSI = 100 - 100 / (1 + gain/loss), 100 when there is no loss.
//! - Bollinger (20, 2): middle = SMA20, bands = middle +- 2 x population std (ddof 0) of the
//!   last 20 closes; %B = (close - lower) / (upper - lower), none when the bands touch.
//! - ATR 14: true range = max(high - low, |high - prev close|, |low - prev close|) (high - low on
//!   the first bar); ATR at bar 14 = mean of the first 14 true ranges, then
//!   ATR = (ATR_prev x 13 + TR) / 14.
//! - Realized volatility 20d: sample std (ddof 1) of the last 20 log returns x sqrt(periods per
//!   year): 365 for crypto (it trades every day), 252 otherwise.
//! - Drawdown 252d: close / max(close over the last 252 bars, fewer at the start) - 1 (<= 0).
//! - Volume z-score 20d: (volume - mean) / sample std of the last 20 volumes; none when the std
//!   is 0 (indices and FX report no volume).
//! - Return 5d: close / close five bars earlier - 1.
//! - New 52-week high: the close is the highest of the last 252 bars, with 252 bars of history.
//!
//! Regime (trend x volatility), written in ARCHITECTURE.md too:
//! - trend: `bull` when close > SMA200 and SMA50 > SMA200; `bear` when close < SMA200 and
//!   SMA50 < SMA200; `sideways` otherwise; none without 200 bars.
//! - volatility: `volatile` when the 20-day realized volatility is above 1.25 x its own median
//!   over the last 252 bars (at least 60 values), `calm` otherwise; none without enough history.
//!   Relative to the security's own history, so that crypto at 50% and a bond ETF at 8% can both
//!   be calm.

use std::fmt;

use chrono::NaiveDate;

/// One stored bar, in `f64` for statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PricePoint {
    pub trade_date: NaiveDate,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// The indicators of one security on one trade date. `None`: not enough history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Indicators {
    pub sma_20: Option<f64>,
    pub sma_50: Option<f64>,
    pub sma_200: Option<f64>,
    pub ema_12: Option<f64>,
    pub ema_26: Option<f64>,
    pub macd: Option<f64>,
    pub macd_signal: Option<f64>,
    pub macd_hist: Option<f64>,
    pub rsi_14: Option<f64>,
    pub bb_upper: Option<f64>,
    pub bb_middle: Option<f64>,
    pub bb_lower: Option<f64>,
    pub bb_percent_b: Option<f64>,
    pub atr_14: Option<f64>,
    pub volatility_20d: Option<f64>,
    pub drawdown_252d: Option<f64>,
    pub volume_zscore_20d: Option<f64>,
    pub return_5d: Option<f64>,
    pub new_52w_high: bool,
    pub trend: Option<Trend>,
    pub volatility_regime: Option<VolatilityRegime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    Bull,
    Bear,
    Sideways,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolatilityRegime {
    Calm,
    Volatile,
}

impl Trend {
    /// The stored spelling back to a trend (`None` for anything else).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Bull, Self::Bear, Self::Sideways]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bull => "bull",
            Self::Bear => "bear",
            Self::Sideways => "sideways",
        }
    }
}

impl VolatilityRegime {
    /// The stored spelling back to a regime (`None` for anything else).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Calm, Self::Volatile]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calm => "calm",
            Self::Volatile => "volatile",
        }
    }
}

impl fmt::Display for Trend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for VolatilityRegime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A numeric indicator: its column name (in the `indicators` table, in Chroma's metadata and
/// in `ta`'s terms), how to read it from a row, and where to write it when loading one.
#[derive(Clone, Copy)]
pub struct FloatColumn {
    pub name: &'static str,
    pub get: fn(&Indicators) -> Option<f64>,
    pub slot: fn(&mut Indicators) -> &mut Option<f64>,
}

/// Every numeric indicator, in table order.
pub const FLOAT_COLUMNS: [FloatColumn; 18] = [
    FloatColumn {
        name: "sma_20",
        get: |r| r.sma_20,
        slot: |r| &mut r.sma_20,
    },
    FloatColumn {
        name: "sma_50",
        get: |r| r.sma_50,
        slot: |r| &mut r.sma_50,
    },
    FloatColumn {
        name: "sma_200",
        get: |r| r.sma_200,
        slot: |r| &mut r.sma_200,
    },
    FloatColumn {
        name: "ema_12",
        get: |r| r.ema_12,
        slot: |r| &mut r.ema_12,
    },
    FloatColumn {
        name: "ema_26",
        get: |r| r.ema_26,
        slot: |r| &mut r.ema_26,
    },
    FloatColumn {
        name: "macd",
        get: |r| r.macd,
        slot: |r| &mut r.macd,
    },
    FloatColumn {
        name: "macd_signal",
        get: |r| r.macd_signal,
        slot: |r| &mut r.macd_signal,
    },
    FloatColumn {
        name: "macd_hist",
        get: |r| r.macd_hist,
        slot: |r| &mut r.macd_hist,
    },
    FloatColumn {
        name: "rsi_14",
        get: |r| r.rsi_14,
        slot: |r| &mut r.rsi_14,
    },
    FloatColumn {
        name: "bb_upper",
        get: |r| r.bb_upper,
        slot: |r| &mut r.bb_upper,
    },
    FloatColumn {
        name: "bb_middle",
        get: |r| r.bb_middle,
        slot: |r| &mut r.bb_middle,
    },
    FloatColumn {
        name: "bb_lower",
        get: |r| r.bb_lower,
        slot: |r| &mut r.bb_lower,
    },
    FloatColumn {
        name: "bb_percent_b",
        get: |r| r.bb_percent_b,
        slot: |r| &mut r.bb_percent_b,
    },
    FloatColumn {
        name: "atr_14",
        get: |r| r.atr_14,
        slot: |r| &mut r.atr_14,
    },
    FloatColumn {
        name: "volatility_20d",
        get: |r| r.volatility_20d,
        slot: |r| &mut r.volatility_20d,
    },
    FloatColumn {
        name: "drawdown_252d",
        get: |r| r.drawdown_252d,
        slot: |r| &mut r.drawdown_252d,
    },
    FloatColumn {
        name: "volume_zscore_20d",
        get: |r| r.volume_zscore_20d,
        slot: |r| &mut r.volume_zscore_20d,
    },
    FloatColumn {
        name: "return_5d",
        get: |r| r.return_5d,
        slot: |r| &mut r.return_5d,
    },
];

/// Trading periods per year, for annualizing volatility.
#[must_use]
pub fn periods_per_year(instrument_type: Option<&str>) -> f64 {
    if instrument_type == Some("CRYPTOCURRENCY") {
        365.0
    } else {
        252.0
    }
}

/// Bars of history the 252-day indicators and the regime look back over.
pub const YEAR_BARS: usize = 252;
const VOL_REGIME_MIN_VALUES: usize = 60;
const VOL_REGIME_FACTOR: f64 = 1.25;

/// Indicators for every bar of `series` (sorted by date, one bar per date).
#[must_use]
pub fn compute(series: &[PricePoint], periods_per_year: f64) -> Vec<Indicators> {
    let close: Vec<f64> = series.iter().map(|p| p.close).collect();
    let n = close.len();
    let sma_20 = sma(&close, 20);
    let sma_50 = sma(&close, 50);
    let sma_200 = sma(&close, 200);
    let ema_12 = ema(&close, 12);
    let ema_26 = ema(&close, 26);
    let macd: Vec<Option<f64>> = (0..n)
        .map(|i| ema_12[i].zip(ema_26[i]).map(|(fast, slow)| fast - slow))
        .collect();
    let macd_signal = ema_of_optional(&macd, 9);
    let rsi = rsi(&close, 14);
    let atr = atr(series, 14);
    let log_returns: Vec<Option<f64>> = (0..n)
        .map(|i| (i > 0).then(|| (close[i] / close[i - 1]).ln()))
        .collect();
    let volatility: Vec<Option<f64>> = (0..n)
        .map(|i| {
            let window = trailing(&log_returns, i, 20)?;
            Some(sample_std(&window)? * periods_per_year.sqrt())
        })
        .collect();
    let volume: Vec<f64> = series.iter().map(|p| p.volume).collect();
    let regimes = volatility_regimes(&volatility);

    (0..n)
        .map(|i| {
            let bands = bollinger(&close, i, 20, 2.0);
            let year_start = (i + 1).saturating_sub(YEAR_BARS);
            let year_max = close[year_start..=i]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let sma_200_i = sma_200[i];
            let trend = sma_200_i.and_then(|long| {
                let mid = sma_50[i]?;
                Some(if close[i] > long && mid > long {
                    Trend::Bull
                } else if close[i] < long && mid < long {
                    Trend::Bear
                } else {
                    Trend::Sideways
                })
            });
            Indicators {
                sma_20: sma_20[i],
                sma_50: sma_50[i],
                sma_200: sma_200_i,
                ema_12: ema_12[i],
                ema_26: ema_26[i],
                macd: macd[i],
                macd_signal: macd_signal[i],
                macd_hist: macd[i].zip(macd_signal[i]).map(|(m, s)| m - s),
                rsi_14: rsi[i],
                bb_upper: bands.map(|b| b.upper),
                bb_middle: bands.map(|b| b.middle),
                bb_lower: bands.map(|b| b.lower),
                bb_percent_b: bands.and_then(|b| {
                    let width = b.upper - b.lower;
                    (width > 0.0).then(|| (close[i] - b.lower) / width)
                }),
                atr_14: atr[i],
                volatility_20d: volatility[i],
                drawdown_252d: Some(close[i] / year_max - 1.0),
                volume_zscore_20d: zscore(&volume, i, 20),
                return_5d: (i >= 5).then(|| close[i] / close[i - 5] - 1.0),
                new_52w_high: i + 1 >= YEAR_BARS && close[i] >= year_max,
                trend,
                volatility_regime: regimes[i],
            }
        })
        .collect()
}

fn sma(values: &[f64], n: usize) -> Vec<Option<f64>> {
    (0..values.len())
        .map(|i| (i + 1 >= n).then(|| values[i + 1 - n..=i].iter().sum::<f64>() / to_f64(n)))
        .collect()
}

/// pandas `ewm(span=n, adjust=False, min_periods=n).mean()`.
fn ema(values: &[f64], n: usize) -> Vec<Option<f64>> {
    let options: Vec<Option<f64>> = values.iter().copied().map(Some).collect();
    ewm(&options, 2.0 / (to_f64(n) + 1.0), n)
}

fn ema_of_optional(values: &[Option<f64>], n: usize) -> Vec<Option<f64>> {
    ewm(values, 2.0 / (to_f64(n) + 1.0), n)
}

/// pandas `ewm(alpha, adjust=False, min_periods).mean()` over a series whose leading values may
/// be missing: seeded with the first present value, reported once `min_periods` values were seen.
fn ewm(values: &[Option<f64>], alpha: f64, min_periods: usize) -> Vec<Option<f64>> {
    let mut state: Option<f64> = None;
    let mut seen = 0;
    values
        .iter()
        .map(|v| {
            if let Some(x) = *v {
                seen += 1;
                state = Some(state.map_or(x, |s| (1.0 - alpha) * s + alpha * x));
            }
            state.filter(|_| seen >= min_periods)
        })
        .collect()
}

fn rsi(close: &[f64], n: usize) -> Vec<Option<f64>> {
    let change = |i: usize| if i == 0 { 0.0 } else { close[i] - close[i - 1] };
    let gains: Vec<Option<f64>> = (0..close.len()).map(|i| Some(change(i).max(0.0))).collect();
    let losses: Vec<Option<f64>> = (0..close.len())
        .map(|i| Some((-change(i)).max(0.0)))
        .collect();
    let alpha = 1.0 / to_f64(n);
    let up = ewm(&gains, alpha, n);
    let down = ewm(&losses, alpha, n);
    up.iter()
        .zip(&down)
        .map(|(u, d)| {
            let (u, d) = ((*u)?, (*d)?);
            Some(if d == 0.0 {
                100.0
            } else {
                100.0 - 100.0 / (1.0 + u / d)
            })
        })
        .collect()
}

fn atr(series: &[PricePoint], n: usize) -> Vec<Option<f64>> {
    let tr: Vec<f64> = series
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let range = p.high - p.low;
            match i.checked_sub(1).map(|j| series[j].close) {
                Some(prev) => range.max((p.high - prev).abs()).max((p.low - prev).abs()),
                None => range,
            }
        })
        .collect();
    let mut out = vec![None; tr.len()];
    if tr.len() < n {
        return out;
    }
    let mut value = tr[..n].iter().sum::<f64>() / to_f64(n);
    out[n - 1] = Some(value);
    for i in n..tr.len() {
        value = (value * to_f64(n - 1) + tr[i]) / to_f64(n);
        out[i] = Some(value);
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Bands {
    upper: f64,
    middle: f64,
    lower: f64,
}

fn bollinger(close: &[f64], i: usize, n: usize, k: f64) -> Option<Bands> {
    if i + 1 < n {
        return None;
    }
    let window = &close[i + 1 - n..=i];
    let mean = window.iter().sum::<f64>() / to_f64(n);
    let var = window.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / to_f64(n);
    let std = var.sqrt();
    Some(Bands {
        upper: mean + k * std,
        middle: mean,
        lower: mean - k * std,
    })
}

/// The last `n` values up to and including `i`, if all are present.
fn trailing(values: &[Option<f64>], i: usize, n: usize) -> Option<Vec<f64>> {
    if i + 1 < n {
        return None;
    }
    values[i + 1 - n..=i].iter().copied().collect()
}

fn sample_std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let n = to_f64(values.len());
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some(var.sqrt())
}

fn zscore(values: &[f64], i: usize, n: usize) -> Option<f64> {
    if i + 1 < n {
        return None;
    }
    let window = &values[i + 1 - n..=i];
    let std = sample_std(window)?;
    if std <= 0.0 || !std.is_finite() {
        return None;
    }
    let mean = window.iter().sum::<f64>() / to_f64(n);
    Some((values[i] - mean) / std)
}

/// The volatility regime of every bar: volatile when its 20-day volatility is above
/// [`VOL_REGIME_FACTOR`] times the median of the volatilities of the last [`YEAR_BARS`] bars
/// (itself included; at least [`VOL_REGIME_MIN_VALUES`] of them), calm otherwise.
///
/// The window is kept sorted as it slides (one binary search and one shift of at most a year of
/// values per bar), so the median is read off, not recomputed by a sort of the whole year per
/// bar, which was a third of the job's CPU in a backfill.
fn volatility_regimes(volatility: &[Option<f64>]) -> Vec<Option<VolatilityRegime>> {
    let mut window: Vec<f64> = Vec::with_capacity(YEAR_BARS + 1);
    let position = |window: &[f64], x: f64| window.partition_point(|v| v.total_cmp(&x).is_lt());
    volatility
        .iter()
        .enumerate()
        .map(|(i, today)| {
            if let Some(x) = *today {
                let at = position(&window, x);
                window.insert(at, x);
            }
            if let Some(Some(out)) = i.checked_sub(YEAR_BARS).map(|j| volatility[j]) {
                let at = position(&window, out);
                window.remove(at);
            }
            let today = (*today)?;
            if window.len() < VOL_REGIME_MIN_VALUES {
                return None;
            }
            let median = sorted_median(&window)?;
            Some(if today > VOL_REGIME_FACTOR * median {
                VolatilityRegime::Volatile
            } else {
                VolatilityRegime::Calm
            })
        })
        .collect()
}

/// The median of values sorted by `f64::total_cmp`.
fn sorted_median(sorted: &[f64]) -> Option<f64> {
    let mid = sorted.len() / 2;
    let upper = *sorted.get(mid)?;
    if sorted.len().is_multiple_of(2) {
        Some(f64::midpoint(sorted[mid - 1], upper))
    } else {
        Some(upper)
    }
}

#[allow(clippy::cast_precision_loss)] // window lengths are tiny
fn to_f64(n: usize) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sliding sorted window gives what sorting each bar's year gives.
    #[test]
    fn sliding_regimes_are_the_regimes_of_each_year_sorted() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let volatility: Vec<Option<f64>> = (0..900)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Leading gaps as in a real series, then few distinct values, so ties are common.
                (i >= 20 && !state.is_multiple_of(97))
                    .then(|| f64::from(u32::try_from(state % 40).unwrap()) / 100.0)
            })
            .collect();
        let expected: Vec<Option<VolatilityRegime>> = (0..volatility.len())
            .map(|i| {
                let today = volatility[i]?;
                let start = (i + 1).saturating_sub(YEAR_BARS);
                let mut year: Vec<f64> = volatility[start..=i].iter().flatten().copied().collect();
                if year.len() < VOL_REGIME_MIN_VALUES {
                    return None;
                }
                year.sort_by(f64::total_cmp);
                let mid = year.len() / 2;
                let median = if year.len().is_multiple_of(2) {
                    (year[mid - 1] + year[mid]) / 2.0
                } else {
                    year[mid]
                };
                Some(if today > VOL_REGIME_FACTOR * median {
                    VolatilityRegime::Volatile
                } else {
                    VolatilityRegime::Calm
                })
            })
            .collect();
        assert_eq!(volatility_regimes(&volatility), expected);
        assert!(expected.contains(&Some(VolatilityRegime::Volatile)));
        assert!(expected.contains(&Some(VolatilityRegime::Calm)));
    }

    fn points(closes: &[f64]) -> Vec<PricePoint> {
        let start = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        closes
            .iter()
            .enumerate()
            .map(|(i, &c)| PricePoint {
                trade_date: start + chrono::Duration::days(i64::try_from(i).unwrap()),
                open: c,
                high: c + 1.0,
                low: c - 1.0,
                close: c,
                volume: 1000.0 + to_f64(i % 7) * 10.0,
            })
            .collect()
    }

    fn close_to(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn sma_and_ema_by_hand() {
        let s = sma(&[1.0, 2.0, 3.0, 4.0], 3);
        assert_eq!(s, vec![None, None, Some(2.0), Some(3.0)]);
        // span 3: alpha 0.5; seeded with 1: 1, 1.5, 2.25, 3.125; reported from the 3rd value
        let e = ema(&[1.0, 2.0, 3.0, 4.0], 3);
        assert_eq!(e, vec![None, None, Some(2.25), Some(3.125)]);
    }

    #[test]
    fn rsi_is_100_without_losses_and_50_when_balanced() {
        let up: Vec<f64> = (0..30).map(f64::from).collect();
        assert!(close_to(rsi(&up, 14)[29], 100.0));
        let zigzag: Vec<f64> = (0..200)
            .map(|i| if i % 2 == 0 { 10.0 } else { 11.0 })
            .collect();
        let r = rsi(&zigzag, 14)[199].unwrap();
        assert!((r - 50.0).abs() < 2.0, "{r}");
    }

    #[test]
    fn atr_of_a_constant_range_is_that_range() {
        let flat = points(&[100.0; 30]);
        let a = atr(&flat, 14);
        assert_eq!(a[12], None);
        assert!(close_to(a[13], 2.0) && close_to(a[29], 2.0));
    }

    #[test]
    fn short_history_gives_none_not_made_up_numbers() {
        let rows = compute(&points(&[100.0, 101.0, 102.0]), 252.0);
        assert!(
            rows.iter()
                .all(|r| r.sma_20.is_none() && r.rsi_14.is_none() && r.trend.is_none())
        );
        assert!(close_to(rows[2].drawdown_252d, 0.0));
        assert!(!rows[2].new_52w_high, "needs a year of history");
    }

    #[test]
    fn a_long_rise_is_a_bull_trend_with_new_highs() {
        let closes: Vec<f64> = (0..300).map(|i| 100.0 * 1.001f64.powi(i)).collect();
        let rows = compute(&points(&closes), 252.0);
        let last = rows.last().unwrap();
        assert_eq!(last.trend, Some(Trend::Bull));
        assert!(last.new_52w_high);
        assert!(close_to(last.drawdown_252d, 0.0));
        // constant log returns: zero volatility
        assert!(last.volatility_20d.unwrap() < 1e-9);
        let falling: Vec<f64> = closes.iter().rev().copied().collect();
        assert_eq!(
            compute(&points(&falling), 252.0).last().unwrap().trend,
            Some(Trend::Bear)
        );
    }

    #[test]
    fn volume_zscore_is_none_without_volume() {
        let mut pts = points(&[100.0; 40]);
        for p in &mut pts {
            p.volume = 0.0;
        }
        assert!(
            compute(&pts, 252.0)
                .iter()
                .all(|r| r.volume_zscore_20d.is_none())
        );
    }

    #[test]
    fn a_volatility_spike_is_volatile() {
        // a calm year, then a week of large swings
        let mut closes: Vec<f64> = (0..280)
            .map(|i| 100.0 + if i % 2 == 0 { 0.2 } else { -0.2 })
            .collect();
        closes.extend((0..20).map(|i| if i % 2 == 0 { 110.0 } else { 90.0 }));
        let rows = compute(&points(&closes), 252.0);
        assert_eq!(rows[250].volatility_regime, Some(VolatilityRegime::Calm));
        assert_eq!(
            rows.last().unwrap().volatility_regime,
            Some(VolatilityRegime::Volatile)
        );
    }
}
