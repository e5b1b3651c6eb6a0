//! Deterministic synthetic daily bars, shaped like Yahoo's `/v8/finance/chart` response.
//!
//! The price of a symbol on a given trade date is a pure function of `(seed, symbol, date)`:
//! every request walks the same series forward from [`EPOCH`], so two overlapping windows always
//! agree on the bars they share. Random numbers are drawn from a counter-based generator (a
//! splitmix64 finaliser applied to `key + n * GOLDEN`), so each day's draws are independent of
//! which days were asked for.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Offset, TimeZone, Utc, Weekday};
use chrono_tz::{OffsetName, Tz};
use serde::Serialize;

use crate::actions::{Basis, CorporateAction, Events, Request};

/// First date of every synthetic series: no bars are produced before it.
pub const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1990, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// The date at which a symbol's price trend equals [`Profile::base_price`].
const ANCHOR: NaiveDate = match NaiveDate::from_ymd_opt(2020, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

const fn hm(h: u32, m: u32) -> NaiveTime {
    match NaiveTime::from_hms_opt(h, m, 0) {
        Some(t) => t,
        None => NaiveTime::MIN,
    }
}

const MIDNIGHT: NaiveTime = hm(0, 0);
const ALMOST_MIDNIGHT: NaiveTime = hm(23, 59);

/// Ranges Yahoo lists in `meta.validRanges` for daily data.
pub(crate) const VALID_RANGES: [&str; 11] = [
    "1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max",
];

/// ETFs recognised by name; any other plain ticker is an EQUITY.
const KNOWN_ETFS: [&str; 17] = [
    "SPY", "QQQ", "IWM", "ARKK", "ARKQ", "ARKG", "HYG", "LQD", "TLT", "GLD", "SLV", "USO", "DIA",
    "VTI", "EEM", "XLK", "XLF",
];

/// Yahoo's `meta.instrumentType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstrumentType {
    Equity,
    Etf,
    Index,
    Currency,
    Cryptocurrency,
    Future,
}

impl InstrumentType {
    /// The spelling Yahoo uses in `meta.instrumentType`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentType::Equity => "EQUITY",
            InstrumentType::Etf => "ETF",
            InstrumentType::Index => "INDEX",
            InstrumentType::Currency => "CURRENCY",
            InstrumentType::Cryptocurrency => "CRYPTOCURRENCY",
            InstrumentType::Future => "FUTURE",
        }
    }
}

/// Everything the generator needs to know about an instrument. Derived from the symbol alone
/// (the seed only changes the random walk, not the profile).
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub symbol: String,
    pub instrument_type: InstrumentType,
    /// The exchange time zone (`meta.exchangeTimezoneName`); trade dates are dates in this zone.
    pub timezone: Tz,
    /// Local time each daily bar is stamped with (09:30 for US cash markets, 00:00 otherwise).
    pub bar_time: NaiveTime,
    /// Local session boundaries used for `meta.currentTradingPeriod`.
    pub pre_start: NaiveTime,
    pub regular_start: NaiveTime,
    pub regular_end: NaiveTime,
    pub post_end: NaiveTime,
    /// Crypto trades every day; everything else Monday to Friday (no holidays are modelled).
    pub trades_weekends: bool,
    pub currency: String,
    pub exchange_name: String,
    pub full_exchange_name: String,
    pub price_hint: u32,
    /// Decimals every price is rounded to before the f32 conversion Yahoo applies.
    pub decimals: u32,
    pub has_pre_post_market_data: bool,
    /// Trend level of the price on 2020-01-01.
    pub base_price: f64,
    /// Log-drift of the trend per year.
    pub annual_drift: f64,
    /// Standard deviation of the daily log return.
    pub daily_vol: f64,
    /// Mean-reversion time scale (days) of the deviation from the trend; keeps prices in a
    /// plausible band over the 36-year walk instead of drifting to 0 or infinity.
    pub mean_reversion_days: f64,
    /// Typical daily volume; 0 means the instrument reports volume 0 (FX, ^VIX, DX-Y.NYB).
    pub base_volume: u64,
}

/// Classifies `symbol` (as Yahoo spells it) and derives its profile.
pub fn instrument_profile(symbol: &str) -> Profile {
    let upper = symbol.to_ascii_uppercase();
    let h = fnv1a(upper.as_bytes());
    // Uniform draws in [0, 1) that depend on the symbol only.
    let u = |k: u64| unit(mix(h.wrapping_add(k.wrapping_mul(GOLDEN))));
    let log_uniform = |k: u64, lo: f64, hi: f64| (lo.ln() + u(k) * (hi.ln() - lo.ln())).exp();
    let between = |k: u64, lo: f64, hi: f64| lo + u(k) * (hi - lo);

    let instrument_type = if upper.starts_with('^') || upper == "DX-Y.NYB" {
        InstrumentType::Index
    } else if upper.ends_with("-USD") {
        InstrumentType::Cryptocurrency
    } else if upper.ends_with("=X") {
        InstrumentType::Currency
    } else if upper.ends_with("=F") {
        InstrumentType::Future
    } else if KNOWN_ETFS.contains(&upper.as_str()) {
        InstrumentType::Etf
    } else {
        InstrumentType::Equity
    };

    // Defaults: a US cash market, 09:30-16:00 New York, weekdays.
    let mut p = Profile {
        symbol: symbol.to_string(),
        instrument_type,
        timezone: Tz::America__New_York,
        bar_time: hm(9, 30),
        pre_start: hm(4, 0),
        regular_start: hm(9, 30),
        regular_end: hm(16, 0),
        post_end: hm(20, 0),
        trades_weekends: false,
        currency: "USD".to_string(),
        exchange_name: "NMS".to_string(),
        full_exchange_name: "NasdaqGS".to_string(),
        price_hint: 2,
        decimals: 2,
        has_pre_post_market_data: true,
        base_price: 100.0,
        annual_drift: 0.06,
        daily_vol: 0.015,
        mean_reversion_days: 300.0,
        base_volume: 1_000_000,
    };

    match instrument_type {
        InstrumentType::Equity => {
            p.base_price = log_uniform(1, 20.0, 5000.0);
            p.daily_vol = between(2, 0.012, 0.022);
            p.base_volume = log_uniform(3, 1e5, 5e7) as u64;
        }
        InstrumentType::Etf => {
            p.exchange_name = "PCX".to_string();
            p.full_exchange_name = "NYSEArca".to_string();
            p.base_price = match upper.as_str() {
                "SPY" => 320.0,
                "QQQ" => 210.0,
                "DIA" => 285.0,
                "IWM" => 165.0,
                _ => log_uniform(1, 20.0, 600.0),
            };
            p.daily_vol = between(2, 0.008, 0.016);
            p.base_volume = log_uniform(3, 1e6, 8e7) as u64;
        }
        InstrumentType::Index => {
            p.exchange_name = "SNP".to_string();
            p.full_exchange_name = "SNP".to_string();
            p.has_pre_post_market_data = false;
            p.daily_vol = 0.011;
            p.base_volume = log_uniform(3, 2e9, 5e9) as u64;
            p.base_price = match upper.as_str() {
                "^GSPC" => 3200.0,
                "^DJI" => 28500.0,
                "^IXIC" => 9000.0,
                "^RUT" => 1650.0,
                _ => log_uniform(1, 500.0, 20000.0),
            };
            if upper == "^VIX" {
                // A fear gauge: no volume, very volatile, strongly mean-reverting, no drift.
                p.base_price = 18.0;
                p.daily_vol = 0.06;
                p.annual_drift = 0.0;
                p.mean_reversion_days = 15.0;
                p.base_volume = 0;
            } else if upper == "DX-Y.NYB" {
                p.exchange_name = "NYB".to_string();
                p.full_exchange_name = "ICE Futures".to_string();
                p.base_price = 96.0;
                p.daily_vol = 0.004;
                p.annual_drift = 0.0;
                p.base_volume = 0;
            }
        }
        InstrumentType::Cryptocurrency => {
            // 24/7, bars at 00:00 UTC.
            p.timezone = Tz::UTC;
            set_24h(&mut p);
            p.exchange_name = "CCC".to_string();
            p.full_exchange_name = "CCC".to_string();
            p.currency = upper
                .rsplit_once('-')
                .map_or("USD", |(_, quote)| quote)
                .to_string();
            p.trades_weekends = true;
            p.annual_drift = 0.05;
            p.daily_vol = between(2, 0.035, 0.05);
            p.base_price = match upper.as_str() {
                "BTC-USD" => 30000.0,
                "ETH-USD" => 2000.0,
                _ => log_uniform(1, 1.0, 500.0),
            };
            if p.base_price < 10.0 {
                p.decimals = 4;
            }
            p.base_volume = if upper == "BTC-USD" {
                25_000_000_000
            } else {
                log_uniform(3, 1e7, 1e9) as u64
            };
        }
        InstrumentType::Currency => {
            // Bars at 00:00 London time, i.e. 23:00 UTC the day before in British summer time.
            p.timezone = Tz::Europe__London;
            set_24h(&mut p);
            p.exchange_name = "CCY".to_string();
            p.full_exchange_name = "CCY".to_string();
            let pair = upper.trim_end_matches("=X");
            // "EURUSD=X" quotes USD; "JPY=X" (USD/JPY) quotes JPY.
            p.currency = match pair.len() {
                6 => pair[3..].to_string(),
                3 => pair.to_string(),
                _ => "USD".to_string(),
            };
            p.price_hint = 4;
            p.annual_drift = 0.0;
            p.mean_reversion_days = 500.0;
            p.daily_vol = between(2, 0.004, 0.007);
            p.base_volume = 0;
            p.base_price = match pair {
                "EURUSD" => 1.10,
                "GBPUSD" => 1.30,
                "AUDUSD" => 0.70,
                "NZDUSD" => 0.65,
                "JPY" | "USDJPY" => 130.0,
                "CAD" | "USDCAD" => 1.30,
                "CHF" | "USDCHF" => 0.95,
                "EURGBP" => 0.86,
                _ => log_uniform(1, 0.5, 150.0),
            };
            p.decimals = if p.base_price < 2.0 {
                6
            } else if p.base_price < 20.0 {
                5
            } else {
                4
            };
        }
        InstrumentType::Future => {
            // Futures trade nearly around the clock; Yahoo stamps their daily bars at midnight
            // New York time.
            set_24h(&mut p);
            p.exchange_name = "CME".to_string();
            p.full_exchange_name = "CME".to_string();
            p.has_pre_post_market_data = false;
            p.annual_drift = 0.02;
            p.daily_vol = between(2, 0.012, 0.02);
            p.base_price = match upper.as_str() {
                "ES=F" => 3200.0,
                "NQ=F" => 9000.0,
                "GC=F" => 1550.0,
                "SI=F" => 18.0,
                "CL=F" => 60.0,
                _ => log_uniform(1, 20.0, 5000.0),
            };
            p.base_volume = log_uniform(3, 1e4, 1e6) as u64;
        }
    }
    p
}

/// Sessions of markets that trade (almost) around the clock: bars at local midnight, the regular
/// period runs 00:00-23:59, pre and post market are empty (as in Yahoo's BTC-USD/EURUSD=X meta).
fn set_24h(p: &mut Profile) {
    p.bar_time = MIDNIGHT;
    p.pre_start = MIDNIGHT;
    p.regular_start = MIDNIGHT;
    p.regular_end = ALMOST_MIDNIGHT;
    p.post_end = ALMOST_MIDNIGHT;
    p.has_pre_post_market_data = false;
}

// ---------------------------------------------------------------------------------------------
// Random numbers

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function: a good 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Uniform in [0, 1) from the top 53 bits.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Counter-based stream: independent draws addressed by (day, slot).
struct DayRng {
    key: u64,
}

impl DayRng {
    /// Draws per day; each normal uses two.
    const SLOTS: u64 = 16;

    fn new(seed: u64, symbol: &str) -> Self {
        DayRng {
            key: mix(seed ^ mix(fnv1a(symbol.as_bytes()))),
        }
    }

    fn raw(&self, day: u64, slot: u64) -> u64 {
        let n = day.wrapping_mul(Self::SLOTS).wrapping_add(slot);
        mix(self.key.wrapping_add(n.wrapping_mul(GOLDEN)))
    }

    /// Standard normal number `k` (0..8) of `day`, by Box-Muller.
    fn normal(&self, day: u64, k: u64) -> f64 {
        let u1 = 1.0 - unit(self.raw(day, 2 * k)); // (0, 1]: ln is finite
        let u2 = unit(self.raw(day, 2 * k + 1));
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

// ---------------------------------------------------------------------------------------------
// Bars

/// One daily bar, prices rounded to the instrument's decimals but not yet squeezed through f32
/// (689.43, as `meta.regularMarketPrice` shows it; the quote arrays get 689.4299926757812, see
/// [`as_yahoo_float`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bar {
    pub date: NaiveDate,
    pub timestamp: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
}

pub(crate) struct Series {
    pub bars: Vec<Bar>,
    /// Rounded close of the last trading day before the first bar (for `chartPreviousClose`).
    pub previous_close: Option<f64>,
    /// Rounded close of the last trading day before the window's end, even when the window has
    /// no bars (for `regularMarketPrice` of an empty result).
    pub last_close: Option<f64>,
}

pub(crate) fn round_to(x: f64, decimals: u32) -> f64 {
    let m = 10f64.powi(decimals as i32);
    let tick = 1.0 / m;
    ((x * m).round() / m).max(tick)
}

/// Yahoo stores prices as f32; JSON then shows the f64 nearest to that f32.
pub(crate) fn as_yahoo_float(x: f64) -> f64 {
    f64::from(x as f32)
}

/// Unix time of `time` local on `date` in `tz` (the earlier instant when ambiguous; skipped
/// local times, which never happen for the times used here, are shifted by an hour).
pub(crate) fn local_ts(tz: Tz, date: NaiveDate, time: NaiveTime) -> i64 {
    let naive = date.and_time(time);
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })
        .map_or_else(|| naive.and_utc().timestamp(), |dt| dt.timestamp())
}

fn days_since_epoch(date: NaiveDate) -> i64 {
    (date - EPOCH).num_days()
}

/// Date of unix time `ts` in `tz` (ts must be within chrono's range; callers clamp).
pub(crate) fn local_date(tz: Tz, ts: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp(ts, 0).map_or(EPOCH, |dt| dt.with_timezone(&tz).date_naive())
}

fn is_trading_day(profile: &Profile, date: NaiveDate) -> bool {
    profile.trades_weekends || !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Generates the bars of `profile` for the window `[period1, period2)`, none later than `now`.
///
/// A trading day is included when its trade date (in the exchange time zone) lies in
/// `[local date of period1, local date of period2)`, or when its bar timestamp lies in
/// `[period1, period2)` (so a request ending at midnight UTC still gets the New York session that
/// started at 14:30 UTC that day, as Yahoo does). Callers clamp the periods to sane values.
pub(crate) fn generate(
    profile: &Profile,
    seed: u64,
    period1: i64,
    period2: i64,
    now: i64,
) -> Series {
    let tz = profile.timezone;
    let first_date = local_date(tz, period1);
    let end_date = local_date(tz, period2); // exclusive by date
    // Bars selected by timestamp can be one local day outside the date window.
    let scan_from = days_since_epoch(first_date).saturating_sub(1).max(0);
    let scan_to = days_since_epoch(end_date)
        .saturating_add(1)
        .min(days_since_epoch(local_date(tz, now)));

    let rng = DayRng::new(seed, &profile.symbol);
    let vol = profile.daily_vol;
    let phi = 1.0 - 1.0 / profile.mean_reversion_days;
    let ln_base = profile.base_price.ln();
    let anchor = days_since_epoch(ANCHOR) as f64;
    let trend = |day: i64| ln_base + profile.annual_drift * (day as f64 - anchor) / 365.25;
    let twenty_four_hours = profile.bar_time == MIDNIGHT;
    // Overnight gap between the previous (calendar) day's close and today's open.
    let gap_vol = if twenty_four_hours {
        vol * 0.1
    } else {
        vol * 0.35
    };

    let mut series = Series {
        bars: Vec::new(),
        previous_close: None,
        last_close: None,
    };
    let mut deviation = 0.0; // log deviation from the trend: an AR(1) / Ornstein-Uhlenbeck walk
    let mut prev_close_raw = trend(0).exp();
    let mut date = EPOCH;
    for day in 0..=scan_to {
        let d = day as u64; // day >= 0
        deviation = phi * deviation + vol * rng.normal(d, 0);
        let close_raw = (trend(day) + deviation).exp();
        if day < scan_from {
            // Well before the window: only remember the close for chartPreviousClose.
            if is_trading_day(profile, date) {
                series.previous_close = Some(close_raw);
            }
        } else if is_trading_day(profile, date) {
            let ts = local_ts(tz, date, profile.bar_time);
            let in_dates = date >= first_date && date < end_date;
            let in_times = ts >= period1 && ts < period2;
            if ts <= now && (in_dates || in_times) {
                let open_raw = prev_close_raw * (gap_vol * rng.normal(d, 1)).exp();
                let spread = vol * 0.6;
                let high_raw = open_raw.max(close_raw) * (spread * rng.normal(d, 2).abs()).exp();
                let low_raw = open_raw.min(close_raw) * (-spread * rng.normal(d, 3).abs()).exp();
                let dp = profile.decimals;
                let (open, close) = (round_to(open_raw, dp), round_to(close_raw, dp));
                // Rounding can reorder values that were close together; restore the invariant
                // low <= open, close <= high (round_to already guarantees > 0).
                let high = round_to(high_raw, dp).max(open).max(close);
                let low = round_to(low_raw, dp).min(open).min(close);
                let volume = if profile.base_volume == 0 {
                    0
                } else {
                    // Busier on big moves.
                    let move_factor = 1.0 + 0.2 * ((close_raw / open_raw).ln().abs() / vol);
                    (profile.base_volume as f64 * (0.35 * rng.normal(d, 4)).exp() * move_factor)
                        .round() as u64
                };
                series.bars.push(Bar {
                    date,
                    timestamp: ts,
                    open,
                    high,
                    low,
                    close,
                    volume,
                });
                series.last_close = Some(close);
            } else if series.bars.is_empty() && date < first_date && ts < period1 {
                series.previous_close = Some(close_raw);
            }
        }
        prev_close_raw = close_raw;
        date = date.checked_add_days(Days::new(1)).unwrap_or(date);
    }
    series.previous_close = series.previous_close.map(|c| round_to(c, profile.decimals));
    if series.bars.is_empty() {
        series.last_close = series.previous_close;
    }
    series
}

// ---------------------------------------------------------------------------------------------
// Response shape (field order as Yahoo sends it)

#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChartEnvelope {
    pub chart: Chart,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Chart {
    pub result: Option<Vec<ChartResult>>,
    pub error: Option<ChartError>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChartError {
    pub code: String,
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChartResult {
    pub meta: Meta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Vec<i64>>,
    /// Splits and dividends in the window; absent when there are none, like Yahoo's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Events>,
    pub indicators: Indicators,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    pub currency: String,
    pub symbol: String,
    pub exchange_name: String,
    pub full_exchange_name: String,
    pub instrument_type: &'static str,
    pub first_trade_date: i64,
    pub regular_market_time: i64,
    pub has_pre_post_market_data: bool,
    pub gmtoffset: i32,
    pub timezone: String,
    pub exchange_timezone_name: &'static str,
    pub regular_market_price: f64,
    pub chart_previous_close: f64,
    pub price_hint: u32,
    pub current_trading_period: CurrentTradingPeriod,
    pub data_granularity: &'static str,
    pub range: String,
    pub valid_ranges: Vec<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct CurrentTradingPeriod {
    pub pre: TradingPeriod,
    pub regular: TradingPeriod,
    pub post: TradingPeriod,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct TradingPeriod {
    pub timezone: String,
    pub start: i64,
    pub end: i64,
    pub gmtoffset: i32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Indicators {
    pub quote: Vec<Quote>,
    pub adjclose: Vec<AdjClose>,
}

/// Empty (`{}`) in a result without bars, like Yahoo's.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Quote {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<Vec<u64>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct AdjClose {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjclose: Option<Vec<f64>>,
}

impl ChartEnvelope {
    /// `{"chart":{"result":null,"error":{"code":..,"description":..}}}`
    pub(crate) fn error(code: &str, description: impl Into<String>) -> Self {
        ChartEnvelope {
            chart: Chart {
                result: None,
                error: Some(ChartError {
                    code: code.to_string(),
                    description: description.into(),
                }),
            },
        }
    }

    /// Drops the bars, keeping the meta: Yahoo's 200 answer for a window without data.
    pub(crate) fn make_empty(&mut self) {
        for result in self.chart.result.iter_mut().flatten() {
            result.timestamp = None;
            result.indicators = Indicators {
                quote: vec![Quote::default()],
                adjclose: vec![AdjClose::default()],
            };
        }
    }

    pub(crate) fn set_symbol(&mut self, symbol: &str) {
        for result in self.chart.result.iter_mut().flatten() {
            result.meta.symbol = symbol.to_string();
        }
    }

    pub(crate) fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail (no maps with non-string keys).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Timezone abbreviation ("EST", "BST", "UTC") and UTC offset in seconds at `ts`.
fn zone_at(tz: Tz, ts: i64) -> (String, i32) {
    match DateTime::<Utc>::from_timestamp(ts, 0) {
        Some(utc) => {
            let offset = tz.offset_from_utc_datetime(&utc.naive_utc());
            (
                offset.abbreviation().unwrap_or("UTC").to_string(),
                offset.fix().local_minus_utc(),
            )
        }
        None => ("UTC".to_string(), 0),
    }
}

fn trading_period(tz: Tz, date: NaiveDate, start: NaiveTime, end: NaiveTime) -> TradingPeriod {
    let start = local_ts(tz, date, start);
    let (timezone, gmtoffset) = zone_at(tz, start);
    TradingPeriod {
        timezone,
        start,
        end: local_ts(tz, date, end),
        gmtoffset,
    }
}

/// Earliest unix time accepted as a period (a little before [`EPOCH`]); later clamps keep every
/// timestamp inside chrono's range.
fn min_period() -> i64 {
    local_ts(Tz::UTC, EPOCH, MIDNIGHT) - 2 * 86_400
}

/// The synthetic chart for `[period1, period2)` as of `now`, with `actions` applied as Yahoo would
/// answer at the window's end (see [`crate::actions`]). `range` is echoed in `meta.range`.
pub(crate) fn build_chart(
    symbol: &str,
    period1: i64,
    period2: i64,
    seed: u64,
    now: i64,
    range: &str,
    actions: &[CorporateAction],
) -> ChartEnvelope {
    build_chart_as_of(symbol, period1, period2, seed, now, range, actions, None)
}

/// [`build_chart`], with the actions applied as known at `as_of` (unix seconds) instead of at
/// the window's end: what a backfill of an older window gets once later events happened.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_chart_as_of(
    symbol: &str,
    period1: i64,
    period2: i64,
    seed: u64,
    now: i64,
    range: &str,
    actions: &[CorporateAction],
    as_of: Option<i64>,
) -> ChartEnvelope {
    let profile = instrument_profile(symbol);
    let tz = profile.timezone;
    // Nothing exists before the epoch or after now: clamping keeps the work bounded (and the
    // timestamps valid) whatever the client sends.
    let lo = min_period();
    let hi = now.max(lo) + 2 * 86_400;
    let p2 = period2.clamp(lo, hi);
    let p1 = period1.clamp(lo, hi).min(p2);
    let series = generate(&profile, seed, p1, p2, now);

    // Yahoo reports gmtoffset/timezone "at request time"; we take the end of the window (capped
    // at now) as the request time so the answer stays a function of its inputs.
    let request_time = p2.min(now);
    let (timezone, gmtoffset) = zone_at(tz, request_time);

    let basis = Basis::new(
        &Request {
            profile: &profile,
            seed,
            period1: p1,
            period2: p2,
            as_of: as_of.map_or(request_time, |t| t.min(now)),
            now,
        },
        actions,
    );
    let bars: Vec<Bar> = series.bars.iter().map(|b| basis.bar(b)).collect();
    let previous_close = series.previous_close.map(|c| basis.price(c));
    let last_close = series.last_close.map(|c| basis.price(c));

    let first_day = (0..7u64)
        .filter_map(|i| EPOCH.checked_add_days(Days::new(i)))
        .find(|d| is_trading_day(&profile, *d))
        .unwrap_or(EPOCH);
    let last_date = bars
        .last()
        .map_or_else(|| local_date(tz, request_time), |b| b.date);
    let regular = trading_period(tz, last_date, profile.regular_start, profile.regular_end);
    let fallback_price = round_to(profile.base_price, profile.decimals);
    let regular_market_price = last_close.unwrap_or(fallback_price);
    let chart_previous_close = previous_close
        .or_else(|| bars.first().map(|b| b.open))
        .unwrap_or(regular_market_price);

    let meta = Meta {
        currency: profile.currency.clone(),
        symbol: symbol.to_string(),
        exchange_name: profile.exchange_name.clone(),
        full_exchange_name: profile.full_exchange_name.clone(),
        instrument_type: profile.instrument_type.as_str(),
        first_trade_date: local_ts(tz, first_day, profile.bar_time),
        regular_market_time: regular.end.min(now),
        has_pre_post_market_data: profile.has_pre_post_market_data,
        gmtoffset,
        timezone,
        exchange_timezone_name: tz.name(),
        regular_market_price,
        chart_previous_close,
        price_hint: profile.price_hint,
        current_trading_period: CurrentTradingPeriod {
            pre: trading_period(tz, last_date, profile.pre_start, profile.regular_start),
            post: trading_period(tz, last_date, profile.regular_end, profile.post_end),
            regular,
        },
        data_granularity: "1d",
        range: range.to_string(),
        valid_ranges: VALID_RANGES.to_vec(),
    };

    let mut envelope = ChartEnvelope {
        chart: Chart {
            result: Some(vec![ChartResult {
                meta,
                timestamp: Some(bars.iter().map(|b| b.timestamp).collect()),
                events: basis.events.clone(),
                indicators: Indicators {
                    quote: vec![Quote {
                        open: Some(yahoo_floats(&bars, |b| b.open)),
                        high: Some(yahoo_floats(&bars, |b| b.high)),
                        low: Some(yahoo_floats(&bars, |b| b.low)),
                        close: Some(yahoo_floats(&bars, |b| b.close)),
                        volume: Some(bars.iter().map(|b| b.volume).collect()),
                    }],
                    // Split-adjusted like close (same basis), dividend-adjusted on top.
                    adjclose: vec![AdjClose {
                        adjclose: Some(yahoo_floats(&bars, |b| {
                            b.close * basis.dividend_factor(b.date)
                        })),
                    }],
                },
            }]),
            error: None,
        },
    };
    if bars.is_empty() {
        envelope.make_empty();
    }
    envelope
}

/// One price per bar, in Yahoo's f32-then-f64 form.
fn yahoo_floats(bars: &[Bar], price: impl Fn(&Bar) -> f64) -> Vec<f64> {
    bars.iter().map(|b| as_yahoo_float(price(b))).collect()
}

/// The body [`crate::Scenario::Synthetic`] returns for `[period1, period2)` (unix seconds), as
/// of the current time (no bars are invented after now).
pub fn synthetic_chart(symbol: &str, period1: i64, period2: i64, seed: u64) -> serde_json::Value {
    let now = Utc::now().timestamp();
    serde_json::to_value(build_chart(symbol, period1, period2, seed, now, "", &[]))
        .unwrap_or(serde_json::Value::Null)
}

/// The body [`crate::Scenario::Actions`] returns for `[period1, period2)` (unix seconds), as of
/// the current time: the synthetic series with `actions` applied as Yahoo would answer at
/// `min(period2, now)`.
pub fn actions_chart(
    symbol: &str,
    period1: i64,
    period2: i64,
    seed: u64,
    actions: &[CorporateAction],
) -> serde_json::Value {
    let now = Utc::now().timestamp();
    serde_json::to_value(build_chart(
        symbol, period1, period2, seed, now, "", actions,
    ))
    .unwrap_or(serde_json::Value::Null)
}

/// [`actions_chart`] answered as known at `as_of` (unix seconds, capped at now) whatever the
/// window, like [`crate::Scenario::ActionsAsOf`]: the body another fake (fake-tiingo) derives
/// its own answers from, so that both serve the same synthetic history.
pub fn actions_chart_as_of(
    symbol: &str,
    period1: i64,
    period2: i64,
    seed: u64,
    actions: &[CorporateAction],
    as_of: i64,
) -> serde_json::Value {
    let now = Utc::now().timestamp();
    serde_json::to_value(build_chart_as_of(
        symbol,
        period1,
        period2,
        seed,
        now,
        "",
        actions,
        Some(as_of),
    ))
    .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ts(y: i32, m: u32, d: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    }

    const NOW: i64 = 1_900_000_000; // 2030

    fn bars(symbol: &str, p1: i64, p2: i64, seed: u64) -> Vec<Bar> {
        generate(&instrument_profile(symbol), seed, p1, p2, NOW).bars
    }

    #[test]
    fn profiles_classify_symbols() {
        let cases = [
            ("^GSPC", InstrumentType::Index, "America/New_York"),
            ("DX-Y.NYB", InstrumentType::Index, "America/New_York"),
            ("BTC-USD", InstrumentType::Cryptocurrency, "UTC"),
            ("EURUSD=X", InstrumentType::Currency, "Europe/London"),
            ("CL=F", InstrumentType::Future, "America/New_York"),
            ("SPY", InstrumentType::Etf, "America/New_York"),
            ("AAPL", InstrumentType::Equity, "America/New_York"),
            ("BRK-B", InstrumentType::Equity, "America/New_York"),
        ];
        for (symbol, kind, tz) in cases {
            let p = instrument_profile(symbol);
            assert_eq!(p.instrument_type, kind, "{symbol}");
            assert_eq!(p.timezone.name(), tz, "{symbol}");
        }
        assert_eq!(instrument_profile("^VIX").base_volume, 0);
        assert_eq!(instrument_profile("DX-Y.NYB").base_volume, 0);
        assert!(instrument_profile("^GSPC").base_volume > 1_000_000_000);
        assert_eq!(instrument_profile("EURUSD=X").price_hint, 4);
        assert_eq!(instrument_profile("JPY=X").currency, "JPY");
        assert_eq!(instrument_profile("^GSPC").exchange_name, "SNP");
    }

    #[test]
    fn overlapping_windows_agree() {
        for symbol in ["AAPL", "^GSPC", "BTC-USD", "EURUSD=X", "GC=F"] {
            let a = bars(symbol, ts(2019, 1, 1), ts(2021, 1, 1), 42);
            let b = bars(symbol, ts(2020, 6, 1), ts(2022, 1, 1), 42);
            let overlap: Vec<_> = a.iter().filter(|x| x.timestamp >= ts(2020, 6, 1)).collect();
            assert!(overlap.len() > 100, "{symbol}");
            for bar in overlap {
                let other = b.iter().find(|y| y.date == bar.date).unwrap();
                assert_eq!(bar, other, "{symbol}");
            }
            let c = bars(symbol, ts(2020, 6, 1), ts(2022, 1, 1), 43);
            assert_ne!(b, c, "seed must matter for {symbol}");
        }
    }

    #[test]
    fn ohlc_is_consistent_over_the_whole_history() {
        for symbol in [
            "AAPL", "TLT", "^VIX", "BTC-USD", "DOGE-USD", "EURUSD=X", "JPY=X", "CL=F",
        ] {
            let all = bars(symbol, 0, ts(2026, 1, 1), 7);
            assert!(all.len() > 9000, "{symbol}: {}", all.len());
            for b in &all {
                assert!(b.low > 0.0, "{symbol} {b:?}");
                assert!(b.low <= b.open && b.low <= b.close, "{symbol} {b:?}");
                assert!(b.high >= b.open && b.high >= b.close, "{symbol} {b:?}");
                assert!(b.close.is_finite() && b.high < 1e7, "{symbol} {b:?}");
            }
        }
    }

    #[test]
    fn prices_look_like_yahoo_floats() {
        let b = &bars("SPY", ts(2024, 3, 1), ts(2024, 3, 8), 42)[0];
        assert_eq!(b.close, (b.close * 100.0).round() / 100.0);
        let chart = build_chart("SPY", ts(2024, 3, 1), ts(2024, 3, 8), 42, NOW, "", &[]);
        let json: serde_json::Value = serde_json::from_str(&chart.to_json()).unwrap();
        let close = json["chart"]["result"][0]["indicators"]["quote"][0]["close"][0]
            .as_f64()
            .unwrap();
        assert_eq!(close, f64::from(b.close as f32));
    }

    #[test]
    fn no_bars_before_epoch_or_after_now() {
        assert!(bars("AAPL", ts(1980, 1, 1), ts(1989, 12, 31), 42).is_empty());
        let first = &bars("AAPL", ts(1980, 1, 1), ts(1990, 1, 10), 42)[0];
        assert_eq!(first.date, NaiveDate::from_ymd_opt(1990, 1, 1).unwrap());
        let now = ts(2024, 3, 6) + 12 * 3600; // 07:00 New York: today's session not open yet
        let recent = generate(
            &instrument_profile("AAPL"),
            42,
            ts(2024, 3, 1),
            ts(2024, 3, 20),
            now,
        );
        assert_eq!(
            recent.bars.last().unwrap().date,
            NaiveDate::from_ymd_opt(2024, 3, 5).unwrap()
        );
    }

    #[test]
    fn window_is_by_trade_date_with_period2_exclusive() {
        // Midnight-UTC window for New York: Mon 2024-03-04 .. Fri 2024-03-08 (period2 = Sat 00:00 UTC).
        let b = bars("AAPL", ts(2024, 3, 4), ts(2024, 3, 9), 42);
        let dates: Vec<_> = b.iter().map(|b| b.date.day()).collect();
        assert_eq!(dates, vec![4, 5, 6, 7, 8]);
        // 2024-03-04 09:30 EST = 14:30 UTC.
        assert_eq!(b[0].timestamp, ts(2024, 3, 4) + 14 * 3600 + 1800);
    }

    #[test]
    fn empty_window_keeps_meta() {
        // Saturday noon to Sunday noon UTC: no session in New York.
        let (sat, sun) = (ts(2024, 3, 9) + 43_200, ts(2024, 3, 10) + 43_200);
        let v = build_chart("AAPL", sat, sun, 42, NOW, "", &[]);
        let json: serde_json::Value = serde_json::from_str(&v.to_json()).unwrap();
        let result = &json["chart"]["result"][0];
        assert!(result.get("timestamp").is_none());
        assert_eq!(result["meta"]["symbol"], "AAPL");
        assert_eq!(result["indicators"]["quote"][0], serde_json::json!({}));
    }
}
