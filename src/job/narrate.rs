//! Stage 6: narrate. A deterministic plain-English document per security and trade date, for
//! people and embedding models to search ("days like today"):
//!
//! > 2024-03-01 - SPX (S&P 500 Index, indices) closed at 5,137.08, up 0.80% on the day and up
//! > 2.1% over 5 days; RSI 71 (overbought), price 4.2% above its 50-day average, 20-day
//! > volatility 11.8% annualized (calm); regime: bull, calm; new 52-week high.
//!
//! Every number is formatted from the stored value: the close exactly as stored (with thousands
//! separators), percentages and ratios rounded for reading. What is unknown (not enough
//! history) is left out, never guessed. The same inputs always give the same text.

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value};

use crate::job::analyze::{FLOAT_COLUMNS, Indicators};

/// What a document is written from: one stored bar and its indicators.
#[derive(Debug, Clone)]
pub struct DayFacts<'a> {
    pub db_symbol: &'a str,
    pub name: &'a str,
    pub category: &'a str,
    pub trade_date: NaiveDate,
    pub close: Decimal,
    pub daily_return: Option<Decimal>,
    pub indicators: &'a Indicators,
}

/// One security's document of one day, as the store writes it into `documents`.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub trade_date: NaiveDate,
    /// The narrative ([`narrate`]).
    pub text: String,
    /// The flat scalar metadata ([`metadata`]), a JSON object.
    pub metadata: Value,
}

/// The document of `facts`: its narrative and its metadata.
#[must_use]
pub fn document(facts: &DayFacts<'_>, yahoo_symbol: &str) -> Document {
    Document {
        trade_date: facts.trade_date,
        text: narrate(facts),
        metadata: Value::Object(metadata(facts, yahoo_symbol)),
    }
}

/// RSI at or above this reads "overbought", at or below [`RSI_OVERSOLD`] "oversold".
pub const RSI_OVERBOUGHT: f64 = 70.0;
pub const RSI_OVERSOLD: f64 = 30.0;
/// A volume z-score at least this far from 0 is mentioned.
pub const UNUSUAL_VOLUME_Z: f64 = 2.0;
/// A drawdown deeper than this is mentioned (as a fraction).
pub const NOTABLE_DRAWDOWN: f64 = -0.10;

/// The document for one security and day.
#[must_use]
pub fn narrate(facts: &DayFacts<'_>) -> String {
    let ind = facts.indicators;
    let mut text = format!(
        "{} - {} ({}, {}) closed at {}",
        facts.trade_date,
        facts.db_symbol,
        facts.name,
        facts.category,
        thousands(facts.close)
    );
    let day = facts.daily_return.and_then(|r| r.to_f64());
    match (day, ind.return_5d) {
        (Some(d), Some(w)) => {
            let _ = write!(
                text,
                ", {} on the day and {} over 5 days",
                movement(d, 2),
                movement(w, 1)
            );
        }
        (Some(d), None) => {
            let _ = write!(text, ", {} on the day", movement(d, 2));
        }
        (None, Some(w)) => {
            let _ = write!(text, ", {} over 5 days", movement(w, 1));
        }
        (None, None) => {}
    }

    let mut signals: Vec<String> = Vec::new();
    if let Some(rsi) = ind.rsi_14 {
        let label = if rsi >= RSI_OVERBOUGHT {
            "overbought"
        } else if rsi <= RSI_OVERSOLD {
            "oversold"
        } else {
            "neutral"
        };
        signals.push(format!("RSI {rsi:.0} ({label})"));
    }
    if let (Some(sma), Some(close)) = (ind.sma_50, facts.close.to_f64()) {
        signals.push(relative_to(close / sma - 1.0, "its 50-day average"));
    }
    if let (Some(sma), Some(close)) = (ind.sma_200, facts.close.to_f64()) {
        signals.push(relative_to(close / sma - 1.0, "its 200-day average"));
    }
    if let (Some(macd), Some(signal)) = (ind.macd, ind.macd_signal) {
        signals.push(
            if macd >= signal {
                "MACD above its signal line"
            } else {
                "MACD below its signal line"
            }
            .to_owned(),
        );
    }
    if let Some(b) = ind.bb_percent_b {
        if b > 1.0 {
            signals.push("above the upper Bollinger band".to_owned());
        } else if b < 0.0 {
            signals.push("below the lower Bollinger band".to_owned());
        }
    }
    if let Some(vol) = ind.volatility_20d {
        let regime = ind
            .volatility_regime
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        signals.push(format!(
            "20-day volatility {}% annualized{regime}",
            percent(vol, 1)
        ));
    }
    if let Some(z) = ind
        .volume_zscore_20d
        .filter(|z| z.abs() >= UNUSUAL_VOLUME_Z)
    {
        let side = if z > 0.0 { "above" } else { "below" };
        signals.push(format!(
            "volume {:.1} standard deviations {side} its 20-day average",
            z.abs()
        ));
    }
    if !signals.is_empty() {
        let _ = write!(text, "; {}", signals.join(", "));
    }
    if let (Some(trend), Some(vol)) = (ind.trend, ind.volatility_regime) {
        let _ = write!(text, "; regime: {trend}, {vol}");
    } else if let Some(trend) = ind.trend {
        let _ = write!(text, "; trend: {trend}");
    }
    if ind.new_52w_high {
        text.push_str("; new 52-week high");
    } else if let Some(dd) = ind.drawdown_252d.filter(|dd| *dd <= NOTABLE_DRAWDOWN) {
        let _ = write!(text, "; {}% below its 52-week high", percent(-dd, 1));
    }
    text.push('.');
    text
}

/// The scalar metadata stored beside the document (in PostgreSQL and in Chroma): what a search
/// filters on. Only strings, integers, floats and booleans, as Chroma accepts; unknown values
/// are left out (a key sent as null would delete it in Chroma).
#[must_use]
pub fn metadata(facts: &DayFacts<'_>, yahoo_symbol: &str) -> Map<String, Value> {
    let ind = facts.indicators;
    let mut m = Map::new();
    m.insert("symbol".into(), facts.db_symbol.into());
    m.insert("yahoo_symbol".into(), yahoo_symbol.into());
    m.insert("name".into(), facts.name.into());
    m.insert("category".into(), facts.category.into());
    m.insert("trade_date".into(), facts.trade_date.to_string().into());
    let yyyymmdd = facts.trade_date.year() * 10_000
        + i32::try_from(facts.trade_date.month() * 100 + facts.trade_date.day()).unwrap_or(0);
    m.insert("trade_date_int".into(), yyyymmdd.into());
    let mut float = |key: &str, value: Option<f64>| {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            m.insert(key.to_owned(), v.into());
        }
    };
    float("close", facts.close.to_f64());
    float("daily_return", facts.daily_return.and_then(|r| r.to_f64()));
    for column in FLOAT_COLUMNS {
        float(column.name, (column.get)(ind));
    }
    m.insert("new_52w_high".into(), ind.new_52w_high.into());
    if let Some(trend) = ind.trend {
        m.insert("trend".into(), trend.as_str().into());
    }
    if let Some(vol) = ind.volatility_regime {
        m.insert("volatility_regime".into(), vol.as_str().into());
    }
    if let (Some(trend), Some(vol)) = (ind.trend, ind.volatility_regime) {
        m.insert("regime".into(), format!("{trend}, {vol}").into());
    }
    m
}

/// "up 0.80%", "down 1.2%", "unchanged" (when it rounds to zero at `decimals`).
fn movement(fraction: f64, decimals: usize) -> String {
    let shown = percent(fraction.abs(), decimals);
    if shown.trim_start_matches(['0', '.']).is_empty() {
        "unchanged".to_owned()
    } else if fraction > 0.0 {
        format!("up {shown}%")
    } else {
        format!("down {shown}%")
    }
}

/// "price 4.2% above its 50-day average".
fn relative_to(fraction: f64, what: &str) -> String {
    let shown = percent(fraction.abs(), 1);
    if shown.trim_start_matches(['0', '.']).is_empty() {
        format!("price at {what}")
    } else if fraction > 0.0 {
        format!("price {shown}% above {what}")
    } else {
        format!("price {shown}% below {what}")
    }
}

/// A fraction as a percentage with `decimals` places: 0.0080 -> "0.80".
fn percent(fraction: f64, decimals: usize) -> String {
    format!("{:.*}", decimals, fraction * 100.0)
}

/// A stored decimal with thousands separators and exactly its stored digits: 5137.08 ->
/// "5,137.08", 1.0823 -> "1.0823", 107000.5 -> "107,000.5".
#[must_use]
pub fn thousands(value: Decimal) -> String {
    let text = value.normalize().to_string();
    let (sign, unsigned) = text
        .strip_prefix('-')
        .map_or(("", text.as_str()), |rest| ("-", rest));
    let (int, frac) = unsigned
        .split_once('.')
        .map_or((unsigned, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::job::analyze::{Trend, VolatilityRegime};

    fn full() -> Indicators {
        Indicators {
            sma_50: Some(4_929.98),
            sma_200: Some(4_600.0),
            macd: Some(50.0),
            macd_signal: Some(40.0),
            rsi_14: Some(71.2),
            volatility_20d: Some(0.118),
            return_5d: Some(0.021),
            bb_percent_b: Some(0.9),
            drawdown_252d: Some(0.0),
            new_52w_high: true,
            trend: Some(Trend::Bull),
            volatility_regime: Some(VolatilityRegime::Calm),
            ..Indicators::default()
        }
    }

    fn facts(ind: &Indicators) -> DayFacts<'_> {
        DayFacts {
            db_symbol: "SPX",
            name: "S&P 500 Index",
            category: "indices",
            trade_date: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            close: dec!(5137.08),
            daily_return: Some(dec!(0.008012)),
            indicators: ind,
        }
    }

    #[test]
    fn the_issue_example() {
        let ind = full();
        assert_eq!(
            narrate(&facts(&ind)),
            "2024-03-01 - SPX (S&P 500 Index, indices) closed at 5,137.08, up 0.80% on the day and up 2.1% over 5 days; \
             RSI 71 (overbought), price 4.2% above its 50-day average, price 11.7% above its 200-day average, \
             MACD above its signal line, 20-day volatility 11.8% annualized (calm); regime: bull, calm; new 52-week high."
        );
    }

    #[test]
    fn unknowns_are_left_out() {
        let ind = Indicators::default();
        let mut f = facts(&ind);
        f.daily_return = None;
        assert_eq!(
            narrate(&f),
            "2024-03-01 - SPX (S&P 500 Index, indices) closed at 5,137.08."
        );
    }

    #[test]
    fn falls_drawdowns_and_volume_spikes() {
        let ind = Indicators {
            rsi_14: Some(24.6),
            drawdown_252d: Some(-0.153),
            volume_zscore_20d: Some(-2.44),
            bb_percent_b: Some(-0.1),
            return_5d: Some(-0.0004),
            ..Indicators::default()
        };
        let mut f = facts(&ind);
        f.daily_return = Some(dec!(-0.0234));
        assert_eq!(
            narrate(&f),
            "2024-03-01 - SPX (S&P 500 Index, indices) closed at 5,137.08, down 2.34% on the day and unchanged over 5 days; \
             RSI 25 (oversold), below the lower Bollinger band, volume 2.4 standard deviations below its 20-day average; \
             15.3% below its 52-week high."
        );
    }

    #[test]
    fn closes_are_shown_exactly_as_stored() {
        assert_eq!(thousands(dec!(5137.08)), "5,137.08");
        assert_eq!(thousands(dec!(1.08230000)), "1.0823");
        assert_eq!(thousands(dec!(107000.50)), "107,000.5");
        assert_eq!(thousands(dec!(999)), "999");
        assert_eq!(thousands(dec!(1000)), "1,000");
        assert_eq!(thousands(dec!(1234567.891)), "1,234,567.891");
    }

    #[test]
    fn metadata_is_flat_scalars_without_unknowns() {
        let ind = full();
        let m = metadata(&facts(&ind), "^GSPC");
        assert_eq!(m["symbol"], "SPX");
        assert_eq!(m["trade_date"], "2024-03-01");
        assert_eq!(m["trade_date_int"], 20_240_301);
        assert_eq!(m["regime"], "bull, calm");
        assert_eq!(m["rsi_14"], 71.2);
        assert!(!m.contains_key("atr_14"), "unknown values are left out");
        assert!(
            m.values()
                .all(|v| v.is_string() || v.is_number() || v.is_boolean())
        );
    }

    #[test]
    fn the_same_facts_give_the_same_text() {
        let ind = full();
        assert_eq!(narrate(&facts(&ind)), narrate(&facts(&ind)));
    }
}
