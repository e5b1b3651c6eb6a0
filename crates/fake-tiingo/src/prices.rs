//! The rows of one answer: fake-yahoo's synthetic history for the symbol, un-adjusted to
//! Tiingo's raw basis.

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use fake_yahoo::{CorporateAction, actions_chart_as_of, instrument_profile};
use serde::Serialize;
use serde_json::Value;

/// One row of Tiingo's answer, in the order Tiingo writes the fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceRow {
    /// `2024-01-02T00:00:00.000Z`
    pub date: String,
    pub close: f64,
    pub high: f64,
    pub low: f64,
    pub open: f64,
    pub volume: u64,
    pub adj_close: f64,
    pub adj_high: f64,
    pub adj_low: f64,
    pub adj_open: f64,
    pub adj_volume: u64,
    pub div_cash: f64,
    pub split_factor: f64,
}

/// The rows of `ticker` from `start` to `end` (inclusive, trade dates), as Tiingo would answer
/// on `today` (`None`: now): fake-yahoo's bars for the symbol (upper-cased, as fake-yahoo keys
/// its series) as known then, each price times the ratios of the splits after its date (up to
/// `today`), each volume divided by them; the dividends and splits of `actions` on the rows of
/// their ex-dates.
#[must_use]
pub fn prices(
    ticker: &str,
    start: NaiveDate,
    end: NaiveDate,
    seed: u64,
    actions: &[CorporateAction],
    today: Option<NaiveDate>,
) -> Vec<PriceRow> {
    let symbol = ticker.to_ascii_uppercase();
    let profile = instrument_profile(&symbol);
    let tz = profile.timezone;
    let now = Utc::now();
    let as_of = match today {
        Some(day) => day
            .and_hms_opt(23, 59, 59)
            .map_or(now.timestamp(), |t| t.and_utc().timestamp())
            .min(now.timestamp()),
        None => now.timestamp(),
    };
    let last = DateTime::<Utc>::from_timestamp(as_of, 0)
        .map_or(end, |t| t.with_timezone(&tz).date_naive());
    let end = end.min(last);
    if start > end {
        return Vec::new();
    }
    let midnight = |d: Option<NaiveDate>| {
        d.and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, |t| t.and_utc().timestamp())
    };
    let period1 = midnight(start.checked_sub_days(Days::new(1)));
    let period2 = midnight(end.checked_add_days(Days::new(2)));
    let chart = actions_chart_as_of(&symbol, period1, period2, seed, actions, as_of);
    let result = &chart["chart"]["result"][0];

    let session = |date: NaiveDate| {
        tz.from_local_datetime(&date.and_time(profile.bar_time))
            .earliest()
            .map_or(i64::MAX, |t| t.timestamp())
    };
    // The splits that have happened by `today`: (ex-date, ratio).
    let splits: Vec<(NaiveDate, f64)> = actions
        .iter()
        .filter_map(|a| match *a {
            CorporateAction::Split {
                date,
                numerator,
                denominator,
            } => {
                let ratio = numerator / denominator;
                (ratio.is_finite() && ratio > 0.0 && session(date) <= as_of)
                    .then_some((date, ratio))
            }
            CorporateAction::Dividend { .. } => None,
        })
        .collect();
    let local =
        |ts: i64| DateTime::<Utc>::from_timestamp(ts, 0).map(|t| t.with_timezone(&tz).date_naive());
    let (dividends, split_events) = (
        events(result, "dividends", &local),
        events(result, "splits", &local),
    );

    let decimals = i32::try_from(profile.decimals).unwrap_or(2);
    let unround = |x: f64| {
        let m = 10f64.powi(decimals);
        (x * m).round() / m
    };
    let six = |x: f64| (x * 1e6).round() / 1e6;
    let quote = &result["indicators"]["quote"][0];
    let adjclose = &result["indicators"]["adjclose"][0]["adjclose"];
    let column = |name: &str, i: usize| quote[name][i].as_f64();
    let mut rows = Vec::new();
    for (i, ts) in result["timestamp"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(date) = ts.as_i64().and_then(local) else {
            continue;
        };
        if date < start || date > end {
            continue;
        }
        let (Some(open), Some(high), Some(low), Some(close), Some(adj)) = (
            column("open", i),
            column("high", i),
            column("low", i),
            column("close", i),
            adjclose[i].as_f64(),
        ) else {
            continue;
        };
        let volume = quote["volume"][i].as_u64().unwrap_or(0);
        // The splits after this row, up to today: what the traded price was worth more.
        let ratio: f64 = splits
            .iter()
            .filter(|(ex, _)| *ex > date)
            .map(|(_, r)| r)
            .product();
        let raw = |x: f64| six(unround(x) * ratio);
        let adjusted = adj / unround(close);
        let div_cash = dividends
            .iter()
            .filter(|(ex, _)| *ex == date)
            .filter_map(|(_, e)| e["amount"].as_f64())
            .map(|a| six(a * ratio))
            .sum();
        let split_factor = split_events
            .iter()
            .find(|(ex, _)| *ex == date)
            .and_then(|(_, e)| Some(e["numerator"].as_f64()? / e["denominator"].as_f64()?))
            .unwrap_or(1.0);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let raw_volume = (volume as f64 / ratio).round() as u64;
        rows.push(PriceRow {
            date: format!("{date}T00:00:00.000Z"),
            close: raw(close),
            high: raw(high),
            low: raw(low),
            open: raw(open),
            volume: raw_volume,
            adj_close: adj,
            adj_high: six(unround(high) * adjusted),
            adj_low: six(unround(low) * adjusted),
            adj_open: six(unround(open) * adjusted),
            adj_volume: volume,
            div_cash,
            split_factor,
        });
    }
    rows
}

/// The events of one kind in fake-yahoo's answer, with their ex-dates.
fn events<'a>(
    result: &'a Value,
    kind: &str,
    local: &dyn Fn(i64) -> Option<NaiveDate>,
) -> Vec<(NaiveDate, &'a Value)> {
    result["events"][kind]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|e| Some((local(e["date"].as_i64()?)?, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn the_history_is_fake_yahoos_on_the_raw_basis() {
        let split = CorporateAction::Split {
            date: d("2024-06-10"),
            numerator: 10.0,
            denominator: 1.0,
        };
        let dividend = CorporateAction::Dividend {
            date: d("2024-06-05"),
            amount: 0.5,
        };
        let plain = prices("NVDA", d("2024-06-03"), d("2024-06-14"), 42, &[], None);
        let acted = prices(
            "nvda",
            d("2024-06-03"),
            d("2024-06-14"),
            42,
            &[split.clone(), dividend],
            None,
        );
        assert_eq!(plain.len(), 10);
        assert_eq!(acted.len(), 10);
        for (p, a) in plain.iter().zip(&acted) {
            let before_split = a.date.as_str() < "2024-06-10";
            let expected = if before_split {
                p.close * 10.0
            } else {
                p.close
            };
            assert!((a.close - expected).abs() < 1e-6, "{p:?} {a:?}");
            let factor = if a.date.starts_with("2024-06-10") {
                10.0
            } else {
                1.0
            };
            assert_eq!(a.split_factor, factor);
        }
        let paid = acted.iter().find(|r| r.div_cash > 0.0).unwrap();
        assert_eq!(paid.date, "2024-06-05T00:00:00.000Z");
        assert!((paid.div_cash - 5.0).abs() < 1e-9, "{paid:?}");
        // As of a day before the split: no row after it, and no split yet.
        let before = prices(
            "NVDA",
            d("2024-06-03"),
            d("2024-06-14"),
            42,
            &[split],
            Some(d("2024-06-07")),
        );
        assert_eq!(before.len(), 5);
        assert!(before.iter().all(|r| r.split_factor == 1.0));
        assert!((before[0].close - plain[0].close * 10.0).abs() < 1e-6);
        assert!(prices("NVDA", d("2024-06-08"), d("2024-06-09"), 42, &[], None).is_empty());
    }
}
