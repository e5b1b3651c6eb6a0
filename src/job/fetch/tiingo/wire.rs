//! The JSON of Tiingo's `/tiingo/daily/{ticker}/prices` response, as Tiingo sends it: an array
//! of daily rows with raw (unadjusted) prices, the adjusted ones, and the day's dividend and
//! split. Nothing outside the fetch and validate stages sees these types.

use serde::Deserialize;

use crate::job::fetch::wire::Lenient;

/// One row of the answer. Prices are raw (as traded that day); `adj_*` are split- and
/// dividend-adjusted as of the request; `div_cash` is the cash dividend whose ex-date is this
/// row's date, `split_factor` is not 1 on a split's ex-date (4 for a 4:1 split).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceRow {
    /// `2024-01-02T00:00:00.000Z`: the trade date at midnight, written as UTC.
    pub date: String,
    #[serde(default)]
    pub open: Lenient,
    #[serde(default)]
    pub high: Lenient,
    #[serde(default)]
    pub low: Lenient,
    #[serde(default)]
    pub close: Lenient,
    #[serde(default)]
    pub volume: Lenient,
    #[serde(default)]
    pub adj_close: Lenient,
    #[serde(default)]
    pub div_cash: Lenient,
    #[serde(default)]
    pub split_factor: Lenient,
}

/// An error body: `{"detail": "Error: Ticker 'XXXX' not found"}`, `{"detail": "Invalid token."}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    detail: String,
}

/// Parses a prices body. The error says where the JSON went wrong, never echoes the body.
pub fn parse_prices(body: &[u8]) -> Result<Vec<PriceRow>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The `detail` of an error body, if it has one.
#[must_use]
pub fn error_detail(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|e| e.detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_row_shape() {
        let body = br#"[{"date":"2020-08-31T00:00:00.000Z","close":129.04,"high":131.0,"low":126.0,"open":127.58,"volume":225702688,"adjClose":126.6,"adjHigh":128.5,"adjLow":123.6,"adjOpen":125.2,"adjVolume":225702688,"divCash":0.0,"splitFactor":4.0}]"#;
        let rows = parse_prices(body).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].date, "2020-08-31T00:00:00.000Z");
        assert_eq!(rows[0].close, Lenient(Some(129.04)));
        assert_eq!(rows[0].split_factor, Lenient(Some(4.0)));
        assert_eq!(rows[0].div_cash, Lenient(Some(0.0)));
        assert!(parse_prices(b"[]").unwrap().is_empty());
        assert!(parse_prices(&body[..40]).is_err());
    }

    #[test]
    fn error_bodies_have_a_detail() {
        assert_eq!(
            error_detail(br#"{"detail":"Error: Ticker 'XXXX' not found"}"#).as_deref(),
            Some("Error: Ticker 'XXXX' not found")
        );
        assert_eq!(error_detail(b"<html>"), None);
    }
}
