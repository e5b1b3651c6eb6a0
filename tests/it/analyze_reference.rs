//! The analyze stage cross-checked against an independent implementation: Python's `ta`
//! library and pandas (tests/reference/indicators.py), run on the same series.
//! `scripts/test.sh` provides the Python (`REF_PYTHON`, a cached venv).

use std::fmt::Write as _;
use std::path::Path;

use market_encoder::domain::{DateWindow, YahooSymbol};
use market_encoder::job::analyze::{
    FLOAT_COLUMNS as COLUMNS, PricePoint, compute, periods_per_year,
};
use market_encoder::job::fetch::wire::parse_chart;
use market_encoder::job::validate::validate;
use rust_decimal::prelude::ToPrimitive;

/// Four years of the fake's synthetic bars for `symbol`, through the real parser and validator.
fn series(symbol: &str) -> Vec<PricePoint> {
    let window =
        DateWindow::new("2020-01-01".parse().unwrap(), "2023-12-31".parse().unwrap()).unwrap();
    let body = fake_yahoo::synthetic_chart(symbol, 1_577_750_400, 1_704_153_600, 7);
    let envelope = parse_chart(body.to_string().as_bytes()).unwrap();
    let now = "2026-01-01T00:00:00Z".parse().unwrap();
    validate(envelope, &YahooSymbol::parse(symbol).unwrap(), &window, now)
        .unwrap()
        .bars
        .iter()
        .map(|b| PricePoint {
            trade_date: b.trade_date,
            open: b.open.to_f64().unwrap(),
            high: b.high.to_f64().unwrap(),
            low: b.low.to_f64().unwrap(),
            close: b.close.to_f64().unwrap(),
            volume: b.volume.to_f64().unwrap(),
        })
        .collect()
}

fn reference(points: &[PricePoint], periods: f64, dir: &Path) -> Vec<Vec<Option<f64>>> {
    let python = std::env::var("REF_PYTHON").unwrap_or_else(|_| {
        panic!(
            "REF_PYTHON is not set: run the suite with scripts/test.sh (it provides pandas and ta)"
        )
    });
    let input = dir.join("in.csv");
    let output = dir.join("out.csv");
    let mut csv = String::from("date,open,high,low,close,volume\n");
    for p in points {
        writeln!(
            csv,
            "{},{:?},{:?},{:?},{:?},{:?}",
            p.trade_date, p.open, p.high, p.low, p.close, p.volume
        )
        .unwrap();
    }
    std::fs::write(&input, csv).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/indicators.py");
    let status = std::process::Command::new(python)
        .args([script, input.to_str().unwrap(), output.to_str().unwrap()])
        .arg(periods.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "the reference script failed");
    let text = std::fs::read_to_string(output).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    COLUMNS
        .iter()
        .map(|column| {
            let name = column.name;
            let at = header.iter().position(|h| *h == name).unwrap();
            rows.iter()
                .map(|r| r[at].parse::<f64>().ok().filter(|v| v.is_finite()))
                .collect()
        })
        .collect()
}

fn cross_check(symbol: &str, instrument_type: Option<&str>) {
    let points = series(symbol);
    assert!(points.len() > 500, "{symbol}: {} bars", points.len());
    let periods = periods_per_year(instrument_type);
    let ours = compute(&points, periods);
    let dir = tempfile::tempdir().unwrap();
    let theirs = reference(&points, periods, dir.path());
    let mut compared = 0;
    for (c, column) in COLUMNS.iter().enumerate() {
        let (name, get) = (column.name, column.get);
        for (i, row) in ours.iter().enumerate() {
            let (a, b) = (get(row), theirs[c][i]);
            match (a, b) {
                (Some(a), Some(b)) => {
                    let tolerance = 1e-9 * b.abs().max(1.0);
                    assert!(
                        (a - b).abs() <= tolerance,
                        "{symbol} {name} on {}: ours {a}, ta/pandas {b}",
                        points[i].trade_date
                    );
                    compared += 1;
                }
                (None, None) => {}
                _ => panic!(
                    "{symbol} {name} on {} (bar {i}): ours {a:?}, ta/pandas {b:?}",
                    points[i].trade_date
                ),
            }
        }
    }
    assert!(
        compared > 10_000,
        "{symbol}: only {compared} values compared"
    );
}

#[test]
fn indicators_match_ta_for_an_equity() {
    cross_check("SPY", Some("ETF"));
}

#[test]
fn indicators_match_ta_for_crypto_every_day_annualized_over_365() {
    cross_check("BTC-USD", Some("CRYPTOCURRENCY"));
}

#[test]
fn indicators_match_ta_for_fx_without_volume() {
    cross_check("EURUSD=X", Some("CURRENCY"));
}
