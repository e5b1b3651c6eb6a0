//! End-to-end tests over loopback HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fake_yahoo::{FakeYahoo, Options, Scenario, synthetic_chart};
use serde_json::Value;

const DELISTED: &str = include_str!("../fixtures/chart-error-delisted.json");
const BAD_REQUEST: &str =
    include_str!("../fixtures/error_400_bad_request_beke_before_listing.json");

/// Unix seconds of a UTC midnight.
fn day(y: i32, m: u32, d: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

async fn server() -> FakeYahoo {
    FakeYahoo::start(Options::default()).await.unwrap()
}

fn chart_url(server: &FakeYahoo, encoded_symbol: &str, period1: i64, period2: i64) -> String {
    format!(
        "{}/v8/finance/chart/{encoded_symbol}?period1={period1}&period2={period2}\
         &interval=1d&events=div%2Csplits&includeAdjustedClose=true",
        server.base_url()
    )
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn get(url: &str) -> Reply {
    let response = reqwest::Client::new()
        .get(url)
        .header("User-Agent", "Mozilla/5.0 (test)")
        .send()
        .await
        .unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// Bars of a chart body keyed by timestamp: (open, high, low, close, volume).
fn bars(chart: &Value) -> BTreeMap<i64, (f64, f64, f64, f64, u64)> {
    let result = &chart["chart"]["result"][0];
    let quote = &result["indicators"]["quote"][0];
    let adj = &result["indicators"]["adjclose"][0]["adjclose"];
    let Some(timestamps) = result["timestamp"].as_array() else {
        return BTreeMap::new();
    };
    timestamps
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            let f = |k: &str| quote[k][i].as_f64().unwrap();
            assert_eq!(adj[i], quote["close"][i], "adjclose = close");
            let bar = (
                f("open"),
                f("high"),
                f("low"),
                f("close"),
                quote["volume"][i].as_u64().unwrap(),
            );
            (ts.as_i64().unwrap(), bar)
        })
        .collect()
}

#[tokio::test]
async fn synthetic_bars_are_deterministic_across_overlapping_windows() {
    let server = server().await;
    for symbol in ["AAPL", "%5EGSPC", "BTC-USD", "EURUSD%3DX"] {
        let a = bars(
            &get(&chart_url(
                &server,
                symbol,
                day(2021, 1, 1),
                day(2023, 1, 1),
            ))
            .await
            .json(),
        );
        let b = bars(
            &get(&chart_url(
                &server,
                symbol,
                day(2022, 6, 1),
                day(2024, 1, 1),
            ))
            .await
            .json(),
        );
        let again = bars(
            &get(&chart_url(
                &server,
                symbol,
                day(2021, 1, 1),
                day(2023, 1, 1),
            ))
            .await
            .json(),
        );
        assert_eq!(a, again, "{symbol}: reruns must be identical");
        let overlap: Vec<_> = a.keys().filter(|ts| b.contains_key(ts)).collect();
        assert!(overlap.len() > 100, "{symbol}: overlap {}", overlap.len());
        for ts in overlap {
            assert_eq!(a[ts], b[ts], "{symbol} at {ts}");
        }
    }
    // The pure function gives the same body as the server.
    let body = get(&chart_url(
        &server,
        "MSFT",
        day(2020, 1, 1),
        day(2020, 3, 1),
    ))
    .await
    .json();
    // (Both go through the same text -> Value parse: serde_json's default float parser is
    // not always correctly rounded, so an f64 straight from the generator can differ by 1 ulp.)
    let direct = synthetic_chart("MSFT", day(2020, 1, 1), day(2020, 3, 1), 42);
    let direct: Value = serde_json::from_str(&direct.to_string()).unwrap();
    assert_eq!(body, direct);
    // Another seed, other prices.
    let other = FakeYahoo::start(Options {
        seed: 7,
        ..Options::default()
    })
    .await
    .unwrap();
    let b7 = bars(
        &get(&chart_url(&other, "MSFT", day(2020, 1, 1), day(2020, 3, 1)))
            .await
            .json(),
    );
    assert_ne!(bars(&body), b7);
}

#[tokio::test]
async fn synthetic_shape_and_ohlc_consistency() {
    let server = server().await;
    for symbol in [
        "SPY", "TSLA", "%5EVIX", "DX-Y.NYB", "ETH-USD", "JPY%3DX", "CL%3DF",
    ] {
        let json = get(&chart_url(
            &server,
            symbol,
            day(2015, 1, 1),
            day(2025, 1, 1),
        ))
        .await
        .json();
        assert!(json["chart"]["error"].is_null());
        let meta = &json["chart"]["result"][0]["meta"];
        for field in [
            "currency",
            "symbol",
            "exchangeName",
            "fullExchangeName",
            "instrumentType",
            "firstTradeDate",
            "regularMarketTime",
            "hasPrePostMarketData",
            "gmtoffset",
            "timezone",
            "exchangeTimezoneName",
            "regularMarketPrice",
            "chartPreviousClose",
            "priceHint",
            "currentTradingPeriod",
            "dataGranularity",
            "range",
            "validRanges",
        ] {
            assert!(!meta[field].is_null(), "{symbol}: meta.{field}");
        }
        assert_eq!(meta["dataGranularity"], "1d");
        let all = bars(&json);
        assert!(all.len() > 2500, "{symbol}: {} bars", all.len());
        for (ts, &(o, h, l, c, _)) in &all {
            assert!(
                l > 0.0 && l <= o && l <= c && o <= h && c <= h,
                "{symbol} {ts}: {o} {h} {l} {c}"
            );
        }
        let last = all.values().last().unwrap();
        let price = meta["regularMarketPrice"].as_f64().unwrap();
        assert_eq!(
            price as f32, last.3 as f32,
            "{symbol}: regularMarketPrice is the last close"
        );
    }
    let vix = get(&chart_url(
        &server,
        "%5EVIX",
        day(2024, 1, 1),
        day(2024, 2, 1),
    ))
    .await
    .json();
    assert!(bars(&vix).values().all(|b| b.4 == 0), "^VIX has no volume");
    assert_eq!(vix["chart"]["result"][0]["meta"]["exchangeName"], "SNP");
    let spy = get(&chart_url(&server, "SPY", day(2024, 1, 1), day(2024, 2, 1)))
        .await
        .json();
    assert!(bars(&spy).values().all(|b| b.4 > 0));
    assert_eq!(spy["chart"]["result"][0]["meta"]["instrumentType"], "ETF");
}

#[tokio::test]
async fn crypto_trades_every_day_at_midnight_utc() {
    let server = server().await;
    // Sat 2024-06-01 .. Fri 2024-06-14: 14 calendar days.
    let json = get(&chart_url(
        &server,
        "BTC-USD",
        day(2024, 6, 1),
        day(2024, 6, 15),
    ))
    .await
    .json();
    let timestamps: Vec<i64> = bars(&json).keys().copied().collect();
    let expected: Vec<i64> = (0..14).map(|i| day(2024, 6, 1) + i * 86_400).collect();
    assert_eq!(timestamps, expected);
    let meta = &json["chart"]["result"][0]["meta"];
    assert_eq!(meta["instrumentType"], "CRYPTOCURRENCY");
    assert_eq!(meta["exchangeTimezoneName"], "UTC");
    assert!(meta["regularMarketPrice"].as_f64().unwrap() > 1000.0);
}

#[tokio::test]
async fn fx_bars_are_stamped_at_london_midnight() {
    let server = server().await;
    // Summer (BST): Mon 2024-07-01 .. Fri 07-05, each bar at 23:00 UTC of the previous day.
    let json = get(&chart_url(
        &server,
        "EURUSD%3DX",
        day(2024, 7, 1),
        day(2024, 7, 6),
    ))
    .await
    .json();
    let summer: Vec<i64> = bars(&json).keys().copied().collect();
    let expected: Vec<i64> = (0..5)
        .map(|i| day(2024, 7, 1) - 3600 + i * 86_400)
        .collect();
    assert_eq!(summer, expected);
    assert!(bars(&json).values().all(|b| b.4 == 0), "FX has no volume");
    let meta = &json["chart"]["result"][0]["meta"];
    assert_eq!(meta["instrumentType"], "CURRENCY");
    assert_eq!(meta["exchangeTimezoneName"], "Europe/London");
    assert_eq!(meta["priceHint"], 4);
    assert_eq!(meta["timezone"], "BST");
    assert_eq!(meta["gmtoffset"], 3600);
    // Winter (GMT): at 00:00 UTC.
    let json = get(&chart_url(
        &server,
        "EURUSD%3DX",
        day(2024, 1, 8),
        day(2024, 1, 13),
    ))
    .await
    .json();
    let winter: Vec<i64> = bars(&json).keys().copied().collect();
    let expected: Vec<i64> = (0..5).map(|i| day(2024, 1, 8) + i * 86_400).collect();
    assert_eq!(winter, expected);
}

#[tokio::test]
async fn us_bars_are_stamped_at_0930_new_york_weekdays_only() {
    let server = server().await;
    // Mon 2024-03-04 .. Fri 03-15 spans the DST change of Sun 2024-03-10.
    let json = get(&chart_url(
        &server,
        "AAPL",
        day(2024, 3, 4),
        day(2024, 3, 16),
    ))
    .await
    .json();
    let timestamps: Vec<i64> = bars(&json).keys().copied().collect();
    let est = |d: u32| day(2024, 3, d) + 14 * 3600 + 1800;
    let edt = |d: u32| day(2024, 3, d) + 13 * 3600 + 1800;
    let expected = vec![
        est(4),
        est(5),
        est(6),
        est(7),
        est(8),
        edt(11),
        edt(12),
        edt(13),
        edt(14),
        edt(15),
    ];
    assert_eq!(timestamps, expected);
    let meta = &json["chart"]["result"][0]["meta"];
    let regular = &meta["currentTradingPeriod"]["regular"];
    assert_eq!(regular["start"], edt(15));
    assert_eq!(regular["end"], edt(15) + 6 * 3600 + 1800); // 16:00 EDT
    assert_eq!(meta["regularMarketTime"], regular["end"]);
}

#[tokio::test]
async fn window_without_bars_is_an_empty_200() {
    let server = server().await;
    // Saturday noon to Sunday noon UTC.
    let reply = get(&chart_url(
        &server,
        "AAPL",
        day(2024, 3, 9) + 43_200,
        day(2024, 3, 10) + 43_200,
    ))
    .await;
    assert_eq!(reply.status, 200);
    let result = &reply.json()["chart"]["result"][0];
    assert!(result.get("timestamp").is_none());
    assert_eq!(result["meta"]["symbol"], "AAPL");
    assert_eq!(result["indicators"]["quote"][0], serde_json::json!({}));
}

#[tokio::test]
async fn bad_parameters_and_unknown_paths() {
    let server = server().await;
    let base = server.base_url();
    let reply = get(&format!(
        "{base}/v8/finance/chart/SPY?period1=1&period2=2&interval=1wk"
    ))
    .await;
    assert_eq!(reply.status, 400);
    let error = &reply.json()["chart"];
    assert!(error["result"].is_null());
    assert_eq!(error["error"]["code"], "Bad Request");
    assert!(
        error["error"]["description"]
            .as_str()
            .unwrap()
            .starts_with("Invalid input - interval=1wk")
    );
    for query in [
        "period2=2&interval=1d",
        "period1=abc&period2=2",
        "period1=5&period2=2",
    ] {
        let reply = get(&format!("{base}/v8/finance/chart/SPY?{query}")).await;
        assert_eq!(reply.status, 400, "{query}");
        assert_eq!(
            reply.json()["chart"]["error"]["code"],
            "Bad Request",
            "{query}"
        );
    }
    let reply = get(&format!("{base}/v7/finance/quote?symbols=SPY")).await;
    assert_eq!(reply.status, 404);
    let reply = get(&format!("{base}/v8/finance/chart/")).await;
    assert_eq!(reply.status, 404);
    // Only chart requests are logged.
    assert_eq!(server.request_log().len(), 4);
}

#[tokio::test]
async fn error_scenarios() {
    let server = server().await;
    let url = |symbol: &str| chart_url(&server, symbol, day(2024, 1, 1), day(2024, 2, 1));

    server.set_scenario("DEAD", Scenario::Delisted);
    let reply = get(&url("DEAD")).await;
    assert_eq!((reply.status, reply.body.as_str()), (404, DELISTED));
    assert_eq!(
        reply.header("content-type"),
        Some("application/json;charset=utf-8")
    );

    server.set_scenario("BEKE", Scenario::BadRequest);
    let reply = get(&url("BEKE")).await;
    assert_eq!((reply.status, reply.body.as_str()), (400, BAD_REQUEST));

    server.set_scenario(
        "BUSY",
        Scenario::RateLimited {
            retry_after_secs: Some(7),
        },
    );
    let reply = get(&url("BUSY")).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (429, "Too Many Requests\r\n")
    );
    assert_eq!(reply.header("retry-after"), Some("7"));
    server.set_scenario(
        "BUSY",
        Scenario::RateLimited {
            retry_after_secs: None,
        },
    );
    let reply = get(&url("BUSY")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), None);

    server.set_scenario("OOPS", Scenario::ServerError);
    let reply = get(&url("OOPS")).await;
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("Internal Server Error"));

    server.set_scenario("NULL", Scenario::ErrorIn200);
    let reply = get(&url("NULL")).await;
    assert_eq!(reply.status, 200);
    let chart = &reply.json()["chart"];
    assert!(chart["result"].is_null());
    assert_eq!(chart["error"]["code"], "Not Found");
}

#[tokio::test]
async fn body_scenario_replays_exactly() {
    let server = server().await;
    let recorded = r#"{"chart":{"result":null,"error":{"code":"X","description":"y"}}}"#;
    server.set_scenario(
        "REC",
        Scenario::Body {
            status: 418,
            body: recorded.to_string(),
            headers: vec![("X-Test".into(), "1".into())],
        },
    );
    let reply = get(&chart_url(&server, "REC", 0, 1)).await;
    assert_eq!((reply.status, reply.body.as_str()), (418, recorded));
    assert_eq!(reply.header("x-test"), Some("1"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/json;charset=utf-8")
    );

    server.set_scenario(
        "REC",
        Scenario::Body {
            status: 200,
            body: "hi".into(),
            headers: vec![("Content-Type".into(), "text/plain".into())],
        },
    );
    let reply = get(&chart_url(&server, "REC", 0, 1)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "hi"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
}

#[tokio::test]
async fn data_scenarios() {
    let server = server().await;
    let url = |symbol: &str| chart_url(&server, symbol, day(2024, 1, 1), day(2024, 2, 1));

    server.set_scenario("MSFT", Scenario::WrongSymbol("AAPL".into()));
    let reply = get(&url("MSFT")).await;
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["chart"]["result"][0]["meta"]["symbol"], "AAPL");
    assert!(bars(&json).len() > 15);

    server.set_scenario("^VXAPL", Scenario::Empty);
    let reply = get(&url("%5EVXAPL")).await;
    assert_eq!(reply.status, 200);
    let result = &reply.json()["chart"]["result"][0];
    assert!(result.get("timestamp").is_none());
    assert_eq!(result["meta"]["symbol"], "^VXAPL");
    assert_eq!(result["indicators"]["quote"], serde_json::json!([{}]));

    server.set_scenario("BAD", Scenario::Malformed);
    let reply = get(&url("BAD")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(reply.body.len(), 100);
    assert!(reply.body.starts_with(r#"{"chart":{"result":[{"meta":"#));
    assert!(serde_json::from_str::<Value>(&reply.body).is_err());
}

#[tokio::test]
async fn drop_connection_breaks_the_body() {
    let server = server().await;
    server.set_scenario("CUT", Scenario::DropConnection);
    let response = reqwest::get(chart_url(&server, "CUT", day(2024, 1, 1), day(2024, 2, 1)))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.bytes().await.is_err(), "the body must fail");
    // The server is still fine afterwards.
    assert_eq!(
        get(&chart_url(&server, "OK", day(2024, 1, 1), day(2024, 2, 1)))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn hang_triggers_client_timeouts() {
    let server = server().await;
    server.set_scenario("SLOW", Scenario::Hang(Duration::from_millis(600)));
    let url = chart_url(&server, "SLOW", day(2024, 1, 1), day(2024, 2, 1));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = client.get(&url).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let started = Instant::now();
    let reply = get(&url).await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(!bars(&reply.json()).is_empty());
}

#[tokio::test]
async fn sequence_progresses_and_repeats_its_last_element() {
    let server = server().await;
    server.set_scenario(
        "FLAKY",
        Scenario::Sequence(vec![
            Scenario::RateLimited {
                retry_after_secs: Some(1),
            },
            Scenario::ServerError,
            Scenario::Synthetic,
        ]),
    );
    let url = chart_url(&server, "FLAKY", day(2024, 1, 1), day(2024, 2, 1));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&url).await.status);
    }
    assert_eq!(statuses, [429, 500, 200, 200, 200]);
    // Setting a scenario again restarts it.
    server.set_scenario(
        "FLAKY",
        Scenario::Sequence(vec![Scenario::ServerError, Scenario::Delisted]),
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(get(&url).await.status);
    }
    assert_eq!(statuses, [500, 404, 404]);
    assert_eq!(server.requests_for("FLAKY"), 8);
}

#[tokio::test]
async fn request_log_decodes_symbols() {
    let server = server().await;
    get(&chart_url(
        &server,
        "%5EGSPC",
        day(2024, 1, 1),
        day(2024, 1, 5),
    ))
    .await;
    get(&chart_url(
        &server,
        "EURUSD%3DX",
        day(2024, 1, 1),
        day(2024, 1, 5),
    ))
    .await;
    get(&chart_url(
        &server,
        "EURUSD=X",
        day(2024, 1, 1),
        day(2024, 1, 5),
    ))
    .await;
    assert_eq!(server.requests_for("^GSPC"), 1);
    assert_eq!(server.requests_for("%5EGSPC"), 0);
    assert_eq!(server.requests_for("EURUSD=X"), 2);
    assert_eq!(server.requests_for("SPY"), 0);

    let log = server.request_log();
    assert_eq!(log.len(), 3);
    let first = &log[0];
    assert_eq!(first.symbol, "^GSPC");
    assert_eq!(first.raw_path, "/v8/finance/chart/%5EGSPC");
    assert_eq!(first.query["period1"], day(2024, 1, 1).to_string());
    assert_eq!(first.query["interval"], "1d");
    assert_eq!(first.query["events"], "div,splits");
    assert_eq!(first.query["includeAdjustedClose"], "true");
    assert_eq!(first.user_agent.as_deref(), Some("Mozilla/5.0 (test)"));
    assert_eq!(log[1].raw_path, "/v8/finance/chart/EURUSD%3DX");
    assert_eq!(log[2].symbol, "EURUSD=X");

    // Scenarios are keyed by the decoded symbol too, and a request is logged before it is
    // answered whatever the scenario.
    server.set_scenario("^GSPC", Scenario::Delisted);
    assert_eq!(get(&chart_url(&server, "%5EGSPC", 0, 1)).await.status, 404);
    assert_eq!(server.requests_for("^GSPC"), 2);
}

#[tokio::test]
async fn latency_is_applied_concurrently() {
    let latency = Duration::from_millis(200);
    let server = FakeYahoo::start(Options {
        latency,
        ..Options::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let requests = (0..10).map(|i| {
        let client = client.clone();
        let url = chart_url(
            &server,
            &format!("SYM{i}"),
            day(2024, 1, 1),
            day(2024, 2, 1),
        );
        tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    });
    let mut statuses = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        statuses.push(request.await.unwrap());
    }
    let elapsed = started.elapsed();
    assert_eq!(statuses, vec![200; 10]);
    assert!(elapsed >= latency, "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(1000),
        "requests were serialised: {elapsed:?}"
    );
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let server = FakeYahoo::start(Options {
        latency: Duration::from_secs(30),
        ..Options::default()
    })
    .await
    .unwrap();
    let url = chart_url(&server, "SPY", day(2024, 1, 1), day(2024, 2, 1));
    // A request waiting out its latency does not hold the shutdown up.
    let pending = tokio::spawn(reqwest::get(url.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let _ = pending.await;
    assert!(
        reqwest::get(&url).await.is_err(),
        "connection must be refused"
    );

    let second = self::server().await;
    let url = chart_url(&second, "SPY", day(2024, 1, 1), day(2024, 2, 1));
    assert_eq!(get(&url).await.status, 200);
    drop(second);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new();
    assert!(
        fresh.get(&url).send().await.is_err(),
        "connection must be refused"
    );
}

/// `throttle_after(n)` lets exactly the first `n` requests through however many arrive at once.
/// A request's position is taken when it is recorded: it used to be read back a few lines later,
/// when a request recorded meanwhile on another thread could push it past `n` and throttle it
/// too (seen once in 15 runs of tests/it/throttle.rs on a loaded machine; this test hits that
/// window only rarely, the fix holds by construction).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttle_after_n_lets_exactly_n_through_under_concurrency() {
    const THROUGH: usize = 8;
    const SENT: usize = 48;
    for _ in 0..5 {
        let s = server().await;
        s.throttle_after(THROUGH, fake_yahoo::Throttling::PlainText);
        let url = chart_url(&s, "SPY", day(2024, 5, 1), day(2024, 6, 1));
        let replies = join_statuses((0..SENT).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await.status })
        }))
        .await;
        let ok = replies.iter().filter(|&&status| status == 200).count();
        assert_eq!(ok, THROUGH, "{replies:?}");
        assert_eq!(s.requests_total(), SENT);
    }
}

async fn join_statuses(handles: impl Iterator<Item = tokio::task::JoinHandle<u16>>) -> Vec<u16> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}
