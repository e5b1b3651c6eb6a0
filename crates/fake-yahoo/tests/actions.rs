//! `Scenario::Actions`: splits and dividends answered as Yahoo would at the request's window end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::NaiveDate;
use fake_yahoo::{CorporateAction, FakeYahoo, Options, Scenario, actions_chart};
use serde_json::{Value, json};

/// The recorded AAPL body with a 4:1 split and a 0.205 dividend.
const AAPL: &str =
    include_str!("../fixtures/aapl_equity_1d_2020-08-31_to_2020-11-07_split_and_dividend.json");

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Unix seconds of a UTC midnight.
fn day(y: i32, m: u32, d: u32) -> i64 {
    date(y, m, d)
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

fn split(d: NaiveDate, numerator: f64, denominator: f64) -> CorporateAction {
    CorporateAction::Split {
        date: d,
        numerator,
        denominator,
    }
}

fn dividend(d: NaiveDate, amount: f64) -> CorporateAction {
    CorporateAction::Dividend { date: d, amount }
}

/// 2024-06-10 09:30 New York.
const JUN10: i64 = 1_718_026_200;
/// 2024-03-04 09:30 New York.
const MAR04: i64 = 1_709_562_600;
/// 2024-06-20 09:30 New York.
const JUN20: i64 = 1_718_890_200;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Bar {
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: u64,
    adjclose: f64,
}

struct Chart {
    raw: String,
    json: Value,
    bars: BTreeMap<i64, Bar>,
}

impl Chart {
    fn events(&self) -> &Value {
        &self.json["chart"]["result"][0]["events"]
    }
}

fn parse(raw: String) -> Chart {
    let json: Value = serde_json::from_str(&raw).unwrap();
    let result = &json["chart"]["result"][0];
    let quote = &result["indicators"]["quote"][0];
    let adj = &result["indicators"]["adjclose"][0]["adjclose"];
    let bars = result["timestamp"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .enumerate()
                .map(|(i, ts)| {
                    let f = |k: &str| quote[k][i].as_f64().unwrap();
                    let bar = Bar {
                        open: f("open"),
                        high: f("high"),
                        low: f("low"),
                        close: f("close"),
                        volume: quote["volume"][i].as_u64().unwrap(),
                        adjclose: adj[i].as_f64().unwrap(),
                    };
                    (ts.as_i64().unwrap(), bar)
                })
                .collect()
        })
        .unwrap_or_default();
    Chart { raw, json, bars }
}

async fn fetch(server: &FakeYahoo, symbol: &str, query: &str) -> Chart {
    let url = format!(
        "{}/v8/finance/chart/{symbol}?{query}&interval=1d&events=div%2Csplits&includeAdjustedClose=true",
        server.base_url()
    );
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    parse(response.text().await.unwrap())
}

async fn window(server: &FakeYahoo, symbol: &str, period1: i64, period2: i64) -> Chart {
    fetch(
        server,
        symbol,
        &format!("period1={period1}&period2={period2}"),
    )
    .await
}

/// The plain synthetic bars (the current basis) of the same window.
fn plain(symbol: &str, period1: i64, period2: i64) -> BTreeMap<i64, Bar> {
    parse(synthetic_json(symbol, period1, period2)).bars
}

fn synthetic_json(symbol: &str, period1: i64, period2: i64) -> String {
    fake_yahoo::synthetic_chart(symbol, period1, period2, 42).to_string()
}

/// `old` is `new` on a basis `r` times higher (prices rounded to cents, then f32).
fn assert_scaled(old: &Bar, new: &Bar, r: f64, what: &str) {
    for (o, n) in [
        (old.open, new.open),
        (old.high, new.high),
        (old.low, new.low),
        (old.close, new.close),
        (old.adjclose, new.adjclose),
    ] {
        assert!(
            (o - n * r).abs() <= 0.0051 + n * r * 1e-6,
            "{what}: {o} vs {n} x {r}"
        );
    }
    assert_eq!(old.volume, (new.volume as f64 / r).round() as u64, "{what}");
}

async fn server() -> FakeYahoo {
    FakeYahoo::start(Options::default()).await.unwrap()
}

#[tokio::test]
async fn split_applies_only_once_the_window_end_is_past_it() {
    let server = server().await;
    server.set_scenario(
        "NVDA",
        Scenario::Actions(vec![split(date(2024, 6, 10), 10.0, 1.0)]),
    );
    let p1 = day(2024, 5, 1);

    // Ends Saturday 2024-06-08: the split is still to come, every bar is 10x, no events.
    let before = window(&server, "NVDA", p1, day(2024, 6, 8)).await;
    assert!(before.events().is_null(), "{}", before.events());
    assert!(!before.raw.contains("\"events\""));
    let reference = plain("NVDA", p1, day(2024, 6, 8));
    assert_eq!(before.bars.len(), reference.len());
    assert!(before.bars.len() > 20);
    for (ts, bar) in &before.bars {
        assert_scaled(bar, &reference[ts], 10.0, "before the split");
        assert_eq!(bar.adjclose, bar.close);
    }
    let meta = &before.json["chart"]["result"][0]["meta"];
    let last = before.bars.values().last().unwrap();
    assert_eq!(
        meta["regularMarketPrice"].as_f64().unwrap() as f32,
        last.close as f32
    );

    // Monday 08:00 New York, before the session: still the old basis.
    let morning = window(&server, "NVDA", p1, JUN10 - 5400).await;
    assert!(morning.events().is_null());
    assert_eq!(morning.bars, before.bars);

    // Ends after the split: the plain synthetic series, and the split event.
    let after = window(&server, "NVDA", p1, day(2024, 6, 15)).await;
    assert_eq!(after.bars, plain("NVDA", p1, day(2024, 6, 15)));
    assert!(after.bars.contains_key(&JUN10));
    for (ts, bar) in &before.bars {
        assert_eq!(&after.bars[ts], &reference[ts]);
        assert_scaled(bar, &after.bars[ts], 10.0, "same date after the split");
    }
    assert_eq!(
        after.events(),
        &json!({"splits": {JUN10.to_string(): {
            "date": JUN10, "numerator": 10, "denominator": 1, "splitRatio": "10:1"
        }}})
    );
    // Whole ratios are integers, as in Yahoo's body; no empty "dividends".
    assert!(after.raw.contains(&format!(
        r#""events":{{"splits":{{"{JUN10}":{{"date":{JUN10},"numerator":10,"denominator":1,"splitRatio":"10:1"}}}}}},"indicators""#
    )));

    // The split day's session has started (10:00 New York): the bar of that day comes with the
    // earlier ones on the new basis, and the event with it.
    let open = window(&server, "NVDA", p1, JUN10 + 1800).await;
    assert!(open.bars.contains_key(&JUN10));
    assert_eq!(open.bars, plain("NVDA", p1, JUN10 + 1800));
    assert!(open.events()["splits"][JUN10.to_string()].is_object());

    // After the split, a window that does not hold it: new basis, no events. (period1 = 06-11
    // 00:00 UTC is still 06-10 in New York, so that window would hold the split's session.)
    let later = window(&server, "NVDA", day(2024, 6, 12), day(2024, 7, 1)).await;
    assert!(later.events().is_null());
    assert!(!later.bars.contains_key(&JUN10));
    assert_eq!(later.bars, plain("NVDA", day(2024, 6, 12), day(2024, 7, 1)));
    let edge = window(&server, "NVDA", day(2024, 6, 11), day(2024, 7, 1)).await;
    assert!(edge.bars.contains_key(&JUN10));
    assert!(edge.events()["splits"][JUN10.to_string()].is_object());
}

#[tokio::test]
async fn fractional_split_composes_with_a_later_one() {
    let server = server().await;
    let actions = vec![
        split(date(2024, 3, 4), 3.0, 2.0),
        split(date(2024, 6, 10), 2.0, 1.0),
    ];
    server.set_scenario("SHOP", Scenario::Actions(actions.clone()));
    let p1 = day(2024, 2, 1);
    let reference = plain("SHOP", p1, day(2024, 3, 2));

    // Before both: 3:2 then 2:1 = 3x.
    let early = window(&server, "SHOP", p1, day(2024, 3, 2)).await;
    assert!(early.events().is_null());
    for (ts, bar) in &early.bars {
        assert_scaled(bar, &reference[ts], 3.0, "before both splits");
    }

    // Between them: the 3:2 is in the past (and in the window), the 2:1 still to come.
    let middle = window(&server, "SHOP", p1, day(2024, 4, 1)).await;
    assert_eq!(
        middle.events(),
        &json!({"splits": {MAR04.to_string(): {
            "date": MAR04, "numerator": 3, "denominator": 2, "splitRatio": "3:2"
        }}})
    );
    let middle_reference = plain("SHOP", p1, day(2024, 4, 1));
    assert_eq!(middle.bars.len(), middle_reference.len());
    for (ts, bar) in &middle.bars {
        assert_scaled(bar, &middle_reference[ts], 2.0, "between the splits");
    }

    // After both: the plain series and both events.
    let late = window(&server, "SHOP", p1, day(2024, 7, 1)).await;
    assert_eq!(late.bars, plain("SHOP", p1, day(2024, 7, 1)));
    let splits = late.events()["splits"].as_object().unwrap();
    assert_eq!(splits.len(), 2);
    assert_eq!(splits[&JUN10.to_string()]["splitRatio"], "2:1");
    assert_eq!(splits[&MAR04.to_string()]["splitRatio"], "3:2");

    // range=max ends now: every split is in the past and in the window.
    let max = fetch(&server, "SHOP", "range=max").await;
    assert_eq!(max.events()["splits"].as_object().unwrap().len(), 2);
    assert_eq!(max.json["chart"]["result"][0]["meta"]["range"], "max");
    for (ts, bar) in &late.bars {
        assert_eq!(&max.bars[ts], bar);
    }

    // The pure function answers like the server.
    let direct = actions_chart("SHOP", p1, day(2024, 4, 1), 42, &actions).to_string();
    assert_eq!(parse(direct).json, middle.json);
}

#[tokio::test]
async fn dividend_lowers_earlier_adjcloses_once_past() {
    let server = server().await;
    server.set_scenario(
        "KO",
        Scenario::Actions(vec![dividend(date(2024, 6, 20), 0.5)]),
    );
    let p1 = day(2024, 6, 1);

    // Ends at midnight UTC of the ex-date: not yet, adjclose == close, no events.
    let before = window(&server, "KO", p1, day(2024, 6, 20)).await;
    assert!(before.events().is_null());
    assert_eq!(before.bars, plain("KO", p1, day(2024, 6, 20)));

    let after = window(&server, "KO", p1, day(2024, 7, 1)).await;
    let reference = plain("KO", p1, day(2024, 7, 1));
    let last_before = after.bars.range(..JUN20).next_back().unwrap().1.close;
    let factor = 1.0 - 0.5 / last_before;
    for (ts, bar) in &after.bars {
        let plain_bar = reference[ts];
        // Only adjclose moves; close, OHLC and volume are those of the plain series.
        assert_eq!(
            Bar {
                adjclose: plain_bar.adjclose,
                ..*bar
            },
            plain_bar
        );
        if *ts < JUN20 {
            assert!(
                (bar.adjclose - bar.close * factor).abs() < bar.close * 1e-6,
                "{ts}: {} vs {} x {factor}",
                bar.adjclose,
                bar.close
            );
            assert!(bar.adjclose < bar.close);
            assert_eq!(bar.close, before.bars[ts].close, "close never moves");
        } else {
            assert_eq!(bar.adjclose, bar.close, "{ts}");
        }
    }

    // The event has the recorded body's shape: keyed by the session start, inner date, amount.
    assert_eq!(
        after.events(),
        &json!({"dividends": {JUN20.to_string(): {"amount": 0.5, "date": JUN20}}})
    );
    assert!(after.raw.contains(&format!(
        r#""events":{{"dividends":{{"{JUN20}":{{"amount":0.5,"date":{JUN20}}}}}}},"indicators""#
    )));
    let aapl: Value = serde_json::from_str(AAPL).unwrap();
    let recorded = &aapl["chart"]["result"][0]["events"];
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, inner)| {
                let fields: Vec<_> = inner.as_object().unwrap().keys().cloned().collect();
                assert_eq!(k, &inner["date"].to_string(), "key = inner date");
                fields
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&recorded["dividends"]),
        keys(&after.events()["dividends"])
    );
    assert!(AAPL.contains(r#""events":{"dividends":{"1604673000":{"amount":0.205,"date":1604673000}},"splits":{"1598880600":{"date":1598880600,"numerator":4,"denominator":1,"splitRatio":"4:1"}}},"indicators""#));

    // A window starting on the ex-date (06-21 00:00 UTC is 06-20 in New York), so without
    // earlier bars: the event only.
    let later = window(&server, "KO", day(2024, 6, 21), day(2024, 7, 1)).await;
    assert_eq!(later.bars.keys().next(), Some(&JUN20));
    assert!(later.events()["dividends"].is_object());
    assert!(later.bars.values().all(|b| b.adjclose == b.close));
}

#[tokio::test]
async fn overlapping_windows_with_the_same_end_agree() {
    let server = server().await;
    // A past fractional split, a dividend, and a split still to come for a 2024-07-01 end.
    server.set_scenario(
        "ACME",
        Scenario::Actions(vec![
            split(date(2024, 3, 4), 3.0, 2.0),
            dividend(date(2024, 6, 20), 0.5),
            split(date(2024, 9, 3), 2.0, 1.0),
        ]),
    );
    let end = day(2024, 7, 1);
    let long = window(&server, "ACME", day(2024, 1, 1), end).await;
    let short = window(&server, "ACME", day(2024, 5, 15), end).await;
    let shared: Vec<_> = short.bars.keys().collect();
    assert!(shared.len() > 25);
    for ts in shared {
        assert_eq!(long.bars[ts], short.bars[ts], "{ts}");
    }
    // Both on the pre-2:1 basis: twice the plain prices, and the dividend reported on it too.
    let reference = plain("ACME", day(2024, 5, 15), end);
    for (ts, bar) in &short.bars {
        let unadjusted = Bar {
            adjclose: bar.close,
            ..*bar
        };
        assert_scaled(&unadjusted, &reference[ts], 2.0, "before the 2:1");
    }
    assert_eq!(
        short.events(),
        &json!({"dividends": {JUN20.to_string(): {"amount": 1.0, "date": JUN20}}})
    );
    assert_eq!(long.events()["dividends"], short.events()["dividends"]);
    assert_eq!(
        long.events()["splits"][MAR04.to_string()]["splitRatio"],
        "3:2"
    );
    // The dividend's factor is the same on either basis (up to rounding).
    let ratio = |c: &Chart| {
        let b = c.bars.range(..JUN20).next_back().unwrap().1;
        b.adjclose / b.close
    };
    let after_all = window(&server, "ACME", day(2024, 5, 15), day(2024, 10, 1)).await;
    assert!((ratio(&short) - ratio(&after_all)).abs() < 1e-5);
}

#[tokio::test]
async fn actions_in_a_sequence_and_other_time_zones() {
    let server = server().await;
    server.set_scenario(
        "NVDA",
        Scenario::Sequence(vec![
            Scenario::ServerError,
            Scenario::Actions(vec![split(date(2024, 6, 10), 10.0, 1.0)]),
        ]),
    );
    let url = format!(
        "{}/v8/finance/chart/NVDA?period1={}&period2={}&interval=1d",
        server.base_url(),
        day(2024, 6, 1),
        day(2024, 6, 15)
    );
    assert_eq!(reqwest::get(&url).await.unwrap().status().as_u16(), 500);
    let chart = window(&server, "NVDA", day(2024, 6, 1), day(2024, 6, 15)).await;
    assert!(chart.events()["splits"][JUN10.to_string()].is_object());

    // EURUSD=X trades from London midnight (23:00 UTC the day before in summer): the event is
    // keyed by that instant, and a window starting at midnight UTC of the date still holds it.
    let london = 1_718_838_000; // 2024-06-19 23:00 UTC
    server.set_scenario(
        "EURUSD=X",
        Scenario::Actions(vec![dividend(date(2024, 6, 20), 0.001)]),
    );
    let fx = window(&server, "EURUSD%3DX", day(2024, 6, 20), day(2024, 6, 22)).await;
    assert!(fx.bars.contains_key(&london));
    assert_eq!(
        fx.events(),
        &json!({"dividends": {london.to_string(): {"amount": 0.001, "date": london}}})
    );

    // Nothing happens for a symbol without the scenario.
    let other = window(&server, "AMD", day(2024, 6, 1), day(2024, 6, 15)).await;
    assert!(other.events().is_null());
    assert_eq!(
        other.json,
        parse(synthetic_json("AMD", day(2024, 6, 1), day(2024, 6, 15))).json
    );
}
