//! The JSON of Yahoo's `/v8/finance/chart` response, as Yahoo sends it. Nothing outside the
//! fetch and validate stages sees these types; `validate` turns them into domain bars.
//!
//! Yahoo's quirks this tolerates (see `shared/reference/README.md`): any element may be `null`,
//! arrays may be shorter than `timestamp`, `timestamp` may be missing (no bars), numbers may
//! arrive as the strings "NaN"/"Infinity", and `currency`/`firstTradeDate` may be null.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

#[derive(Debug, Deserialize)]
pub struct ChartEnvelope {
    pub chart: Chart,
}

#[derive(Debug, Deserialize)]
pub struct Chart {
    #[serde(default)]
    pub result: Option<Vec<ChartResult>>,
    #[serde(default)]
    pub error: Option<ChartError>,
}

#[derive(Debug, Deserialize)]
pub struct ChartError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChartResult {
    pub meta: Meta,
    #[serde(default)]
    pub timestamp: Option<Vec<i64>>,
    #[serde(default)]
    pub indicators: Option<Indicators>,
    /// `events=div,splits`: the dividends and splits whose ex-date is in the window.
    #[serde(default)]
    pub events: Option<Events>,
}

/// `events`: objects keyed by a timestamp; read each event's inner `date`, not its key.
#[derive(Debug, Default, Deserialize)]
pub struct Events {
    #[serde(default)]
    pub splits: Option<std::collections::BTreeMap<String, SplitEvent>>,
    #[serde(default)]
    pub dividends: Option<std::collections::BTreeMap<String, DividendEvent>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitEvent {
    pub date: i64,
    #[serde(default)]
    pub numerator: Lenient,
    #[serde(default)]
    pub denominator: Lenient,
    #[serde(default)]
    pub split_ratio: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DividendEvent {
    pub date: i64,
    #[serde(default)]
    pub amount: Lenient,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub symbol: String,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub exchange_name: Option<String>,
    #[serde(default)]
    pub instrument_type: Option<String>,
    #[serde(default)]
    pub exchange_timezone_name: Option<String>,
    #[serde(default)]
    pub gmtoffset: Option<i64>,
    #[serde(default)]
    pub price_hint: Option<u32>,
    #[serde(default)]
    pub current_trading_period: Option<TradingPeriods>,
}

#[derive(Debug, Deserialize)]
pub struct TradingPeriods {
    #[serde(default)]
    pub regular: Option<TradingPeriod>,
}

#[derive(Debug, Deserialize)]
pub struct TradingPeriod {
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct Indicators {
    #[serde(default)]
    pub quote: Vec<Quote>,
    #[serde(default)]
    pub adjclose: Vec<AdjClose>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Quote {
    #[serde(default)]
    pub open: Vec<Lenient>,
    #[serde(default)]
    pub high: Vec<Lenient>,
    #[serde(default)]
    pub low: Vec<Lenient>,
    #[serde(default)]
    pub close: Vec<Lenient>,
    #[serde(default)]
    pub volume: Vec<Lenient>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AdjClose {
    #[serde(default)]
    pub adjclose: Vec<Lenient>,
}

/// A number that may be `null`, a JSON number, or a string such as "NaN" or "Infinity".
/// `null` and strings that are not numbers become `None`; "NaN" and "Infinity" are kept as the
/// non-finite values they name, so that validation can tell garbage from a gap.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lenient(pub Option<f64>);

impl Lenient {
    /// The value if it is a finite number.
    #[must_use]
    pub fn finite(self) -> Option<f64> {
        self.0.filter(|v| v.is_finite())
    }
}

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LenientVisitor;
        impl Visitor<'_> for LenientVisitor {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, null, or a numeric string")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v)))
            }
            #[allow(clippy::cast_precision_loss)] // volumes and prices are far below 2^53
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v as f64)))
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v as f64)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient(v.trim().parse::<f64>().ok()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
        }
        deserializer.deserialize_any(LenientVisitor)
    }
}

/// Parses a chart body. The error says where the JSON went wrong, never echoes the body.
pub fn parse_chart(body: &[u8]) -> Result<ChartEnvelope, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The `chart.error` of an error body (404/400, or a 200 that carries an error), if it has one.
#[must_use]
pub fn error_description(body: &[u8]) -> Option<String> {
    let envelope: ChartEnvelope = serde_json::from_slice(body).ok()?;
    let error = envelope.chart.error?;
    error.description.or(error.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPY: &str = include_str!("../../../tests/fixtures/chart-SPY-1d.json");

    #[test]
    fn parses_the_recorded_spy_response() {
        let env = parse_chart(SPY.as_bytes()).unwrap();
        let result = &env.chart.result.unwrap()[0];
        assert_eq!(result.meta.symbol, "SPY");
        assert_eq!(
            result.meta.exchange_timezone_name.as_deref(),
            Some("America/New_York")
        );
        assert_eq!(result.timestamp.as_ref().unwrap().len(), 5);
        let q = &result.indicators.as_ref().unwrap().quote[0];
        assert_eq!(q.open[0], Lenient(Some(681.690_002_441_406_2)));
    }

    #[test]
    fn lenient_numbers() {
        let v: Vec<Lenient> =
            serde_json::from_str(r#"[1, 2.5, null, "Infinity", "3.5", "n/a"]"#).unwrap();
        assert_eq!(
            v,
            vec![
                Lenient(Some(1.0)),
                Lenient(Some(2.5)),
                Lenient(None),
                Lenient(Some(f64::INFINITY)),
                Lenient(Some(3.5)),
                Lenient(None),
            ]
        );
        assert_eq!(Lenient(Some(f64::INFINITY)).finite(), None);
        let nan: Lenient = serde_json::from_str(r#""NaN""#).unwrap();
        assert!(nan.0.is_some_and(f64::is_nan) && nan.finite().is_none());
    }

    #[test]
    fn delisted_body_has_a_description() {
        let body = br#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#;
        assert_eq!(
            error_description(body).as_deref(),
            Some("No data found, symbol may be delisted")
        );
    }

    #[test]
    fn truncated_json_is_an_error() {
        assert!(parse_chart(&SPY.as_bytes()[..100]).is_err());
    }
}
