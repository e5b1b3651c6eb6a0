//! The daily job end to end: the real binary, a real PostgreSQL (a fresh database per test) and
//! the fake Yahoo replaying responses of the real shape, including its failure modes.

use std::time::Duration;

use crate::common::{TestDb, config, fake, run, run_job};
use chrono::{Datelike, NaiveDate, Weekday};
use fake_yahoo::Scenario;
use rust_decimal::Decimal;
use serde_json::Value;

const FROM: &str = "2024-05-01";
const TO: &str = "2024-07-31";
const WINDOW: [&str; 4] = ["--from", FROM, "--to", TO];

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn weekdays(from: &str, to: &str) -> i64 {
    date(from)
        .iter_days()
        .take_while(|d| *d <= date(to))
        .filter(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
        .count() as i64
}

/// Rows of `symbol` whose daily_return is not (close / previous close) - 1.
async fn wrong_returns(db: &TestDb, symbol: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT daily_return,
                    round(close_price / lag(close_price) OVER (ORDER BY trade_date) - 1, 12) AS expected
             FROM market_data WHERE symbol = $1) t
         WHERE daily_return IS DISTINCT FROM expected",
    )
    .bind(symbol)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// A body of the real shape for `symbol` over the test window, to edit and replay.
fn chart_body(symbol: &str) -> Value {
    let p1 = date(FROM)
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
        - 86_400;
    let p2 = date(TO).and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() + 2 * 86_400;
    fake_yahoo::synthetic_chart(symbol, p1, p2, fake_yahoo::Options::default().seed)
}

fn replay(body: &Value) -> Scenario {
    Scenario::Body {
        status: 200,
        body: body.to_string(),
        headers: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stores_every_kind_of_instrument_dated_in_its_exchange_zone() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            ("etfs", "SPY", "SPY"),
            ("indices", "^GSPC", "SPX"),
            ("currencies", "EURUSD=X", "EURUSD"),
            ("crypto", "BTC-USD", "BTCUSD"),
        ],
        "",
    );
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 0, "{r:#?}");

    let weekdays = weekdays(FROM, TO);
    assert_eq!(db.count("SPY").await, weekdays);
    assert_eq!(db.count("SPX").await, weekdays);
    // FX bars are stamped 00:00 London = 23:00 UTC the day before in summer: dated by UTC
    // they would fall on Sundays and miss Fridays. Dated in London they are weekdays.
    assert_eq!(db.count("EURUSD").await, weekdays);
    let fx_weekend: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM market_data WHERE symbol = 'EURUSD' AND extract(isodow FROM trade_date) > 5",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(fx_weekend, 0);
    // Crypto trades every day.
    assert_eq!(
        db.count("BTCUSD").await,
        (date(TO) - date(FROM)).num_days() + 1
    );

    let outside: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM market_data WHERE trade_date < $1 OR trade_date > $2",
    )
    .bind(date(FROM))
    .bind(date(TO))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(outside, 0);
    for symbol in ["SPY", "SPX", "EURUSD", "BTCUSD"] {
        assert_eq!(wrong_returns(&db, symbol).await, 0, "{symbol}");
    }
    let first_return: Option<Decimal> = sqlx::query_scalar(
        "SELECT daily_return FROM market_data WHERE symbol = 'SPY' ORDER BY trade_date LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(first_return, None, "the first bar ever has no return");

    // FX keeps its decimals; prices are exact decimals, not float noise.
    let max_scale: i32 = sqlx::query_scalar(
        "SELECT max(min_scale(close_price))::int FROM market_data WHERE symbol = 'SPY'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        max_scale <= 2,
        "SPY prices carry float noise: scale {max_scale}"
    );
    let fx_scale: i32 = sqlx::query_scalar(
        "SELECT max(min_scale(close_price))::int FROM market_data WHERE symbol = 'EURUSD'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(fx_scale >= 4, "EURUSD lost precision: scale {fx_scale}");

    let meta: (String, String, String) = sqlx::query_as(
        "SELECT category, exchange_tz, instrument_type FROM securities WHERE db_symbol = 'EURUSD'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        meta,
        (
            "currencies".to_owned(),
            "Europe/London".to_owned(),
            "CURRENCY".to_owned()
        )
    );

    let (outcome, ok, failed, written): (String, i32, i32, i64) =
        sqlx::query_as("SELECT outcome, securities_ok, securities_failed, rows_written FROM runs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((outcome.as_str(), ok, failed), ("succeeded", 4, 0));
    assert_eq!(written, db.total_rows().await);
    assert_eq!(r.summary()["rows_written"], written);

    // Every request carried a browser-like User-Agent and the encoded symbol.
    let log = yahoo.request_log();
    assert!(log.iter().all(|q| {
        q.user_agent
            .as_deref()
            .unwrap_or("")
            .starts_with("Mozilla/5.0")
    }));
    assert!(log.iter().any(|q| q.raw_path.ends_with("/%5EGSPC")));
    assert!(
        log.iter()
            .all(|q| q.query.get("interval").map(String::as_str) == Some("1d"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_changes_nothing_and_a_correction_is_applied() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    let first = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(first.code, 0, "{first:#?}");
    let rows = db.count("SPY").await;
    let stamp = |db: &TestDb| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
                "SELECT max(updated_at) FROM market_data",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let before = stamp(&db).await;

    let again = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(again.code, 0, "{again:#?}");
    assert_eq!(again.summary()["rows_written"], 0);
    assert_eq!(db.count("SPY").await, rows);
    assert_eq!(stamp(&db).await, before, "an identical rerun rewrote rows");

    // Yahoo corrects one close (keeping the bar consistent): that bar and the return of the
    // bar after it change, nothing else.
    let mut body = chart_body("SPY");
    let quote = &mut body["chart"]["result"][0]["indicators"]["quote"][0];
    let i = 10;
    let high = quote["high"][i].as_f64().unwrap();
    quote["close"][i] = Value::from(high);
    let corrected_date: NaiveDate = {
        let ts = body["chart"]["result"][0]["timestamp"][i].as_i64().unwrap();
        chrono::DateTime::from_timestamp(ts, 0)
            .unwrap()
            .with_timezone(&chrono_tz::America::New_York)
            .date_naive()
    };
    yahoo.set_scenario("SPY", replay(&body));
    let corrected = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(corrected.code, 0, "{corrected:#?}");
    assert_eq!(corrected.summary()["rows_written"], 2);
    let close: Decimal = sqlx::query_scalar(
        "SELECT close_price FROM market_data WHERE symbol = 'SPY' AND trade_date = $1",
    )
    .bind(corrected_date)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let high_price: Decimal = sqlx::query_scalar(
        "SELECT high_price FROM market_data WHERE symbol = 'SPY' AND trade_date = $1",
    )
    .bind(corrected_date)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(close, high_price);
    assert_eq!(wrong_returns(&db, "SPY").await, 0);
    assert_eq!(db.count("SPY").await, rows);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_before_stored_data_fixes_the_next_return() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "QQQ", "QQQ")], "");
    let late = run_job(&cfg, &db, &yahoo, &["--from", "2024-06-01", "--to", TO]).await;
    assert_eq!(late.code, 0, "{late:#?}");
    let early = run_job(&cfg, &db, &yahoo, &["--from", FROM, "--to", "2024-05-31"]).await;
    assert_eq!(early.code, 0, "{early:#?}");
    assert_eq!(db.count("QQQ").await, weekdays(FROM, TO));
    assert_eq!(wrong_returns(&db, "QQQ").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn nulls_are_skipped_and_duplicate_timestamps_resolved() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("stocks", "AAPL", "AAPL")], "");
    let mut body = chart_body("AAPL");
    let result = &mut body["chart"]["result"][0];
    let n = result["timestamp"].as_array().unwrap().len();
    // Bar 5: all null (a halted day). Bar 8: sent twice with the same timestamp, the second
    // one with another close; the later one wins.
    for field in ["open", "high", "low", "close", "volume"] {
        result["indicators"]["quote"][0][field][5] = Value::Null;
    }
    let ts8 = result["timestamp"][8].clone();
    let quote = result["indicators"]["quote"][0].clone();
    let low8 = quote["low"][8].as_f64().unwrap();
    {
        let ts = result["timestamp"].as_array_mut().unwrap();
        ts.push(ts8.clone());
    }
    for field in ["open", "high", "low", "volume"] {
        let v = quote[field][8].clone();
        result["indicators"]["quote"][0][field]
            .as_array_mut()
            .unwrap()
            .push(v);
    }
    result["indicators"]["quote"][0]["close"]
        .as_array_mut()
        .unwrap()
        .push(Value::from(low8));
    let adj = result["indicators"]["adjclose"][0]["adjclose"]
        .as_array_mut()
        .unwrap();
    adj.push(Value::from(low8));
    yahoo.set_scenario("AAPL", replay(&body));

    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(
        db.count("AAPL").await,
        (n - 1) as i64 - outside_window(&body)
    );
    let sec = r.security("AAPL");
    assert_eq!(sec["dropped"]["null"], 1);
    assert_eq!(sec["dropped"]["duplicate_dates"], 1);
    let date8 = chrono::DateTime::from_timestamp(ts8.as_i64().unwrap(), 0)
        .unwrap()
        .with_timezone(&chrono_tz::America::New_York)
        .date_naive();
    let (close, low): (Decimal, Decimal) = sqlx::query_as(
        "SELECT close_price, low_price FROM market_data WHERE symbol = 'AAPL' AND trade_date = $1",
    )
    .bind(date8)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(close, low, "the later of two duplicate bars must win");
}

/// Bars of a synthetic body whose New York date is outside the test window.
fn outside_window(body: &Value) -> i64 {
    body["chart"]["result"][0]["timestamp"]
        .as_array()
        .unwrap()
        .iter()
        .take(
            body["chart"]["result"][0]["timestamp"]
                .as_array()
                .unwrap()
                .len(),
        )
        .filter(|t| {
            let d = chrono::DateTime::from_timestamp(t.as_i64().unwrap(), 0)
                .unwrap()
                .with_timezone(&chrono_tz::America::New_York)
                .date_naive();
            d < date(FROM) || d > date(TO)
        })
        .count() as i64
}

struct FailureCase {
    scenario: Scenario,
    message: &'static str,
    requests: usize,
}

/// One failing security next to a healthy one: exit 1, the healthy one stored, nothing at all
/// stored for the failing one, the right number of requests (no retry on permanent errors),
/// and a `runs` row that names the failure.
async fn assert_fails_alone(case: FailureCase) {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[("etfs", "SPY", "SPY"), ("stocks", "ZZZZ", "ZZZZ")],
        "",
    );
    yahoo.set_scenario("ZZZZ", case.scenario.clone());
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 1, "{:?}: {r:#?}", case.scenario);
    assert_eq!(db.count("SPY").await, weekdays(FROM, TO));
    assert_eq!(db.count("ZZZZ").await, 0, "{:?}", case.scenario);
    assert_eq!(
        yahoo.requests_for("ZZZZ"),
        case.requests,
        "{:?}",
        case.scenario
    );
    let error = r.security("ZZZZ")["error"].as_str().unwrap().to_owned();
    assert!(error.contains(case.message), "{:?}: {error}", case.scenario);
    assert!(error.contains("ZZZZ"), "{error}");
    assert!(
        r.stderr.contains("1 of 2 securities failed (ZZZZ)"),
        "{}",
        r.stderr
    );
    let (outcome, errors): (String, Value) = sqlx::query_as("SELECT outcome, errors FROM runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(outcome, "partial");
    assert_eq!(errors["ZZZZ"].as_str(), Some(error.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delisted_symbol_fails_fast() {
    assert_fails_alone(FailureCase {
        scenario: Scenario::Delisted,
        message: "No data found, symbol may be delisted",
        requests: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_request_is_not_retried() {
    assert_fails_alone(FailureCase {
        scenario: Scenario::BadRequest,
        message: "Data doesn't exist",
        requests: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_writes_nothing() {
    assert_fails_alone(FailureCase {
        scenario: Scenario::Malformed,
        message: "not valid chart JSON",
        requests: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_for_another_symbol_writes_nothing() {
    assert_fails_alone(FailureCase {
        scenario: Scenario::WrongSymbol("QQQ".into()),
        message: "with data for QQQ",
        requests: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_inside_a_200_fails_that_security() {
    assert_fails_alone(FailureCase {
        scenario: Scenario::ErrorIn200,
        message: "Yahoo answered ZZZZ with an error",
        requests: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_is_retried_then_given_up() {
    // request_timeout_secs is 2 in the test config, max_retries 2: three attempts.
    assert_fails_alone(FailureCase {
        scenario: Scenario::Hang(Duration::from_secs(10)),
        message: "gave up on ZZZZ after 3 attempts: no answer within 2s",
        requests: 3,
    })
    .await;
}

/// A body of the real shape for ZZZZ over the test window, edited by `edit`.
fn edited(edit: impl FnOnce(&mut Value)) -> Scenario {
    let mut body = chart_body("ZZZZ");
    edit(&mut body);
    replay(&body)
}

/// Every element of the four price columns set to `value`.
fn every_price(value: Value) -> Scenario {
    edited(|b| {
        let quote = &mut b["chart"]["result"][0]["indicators"]["quote"][0];
        for column in ["open", "high", "low", "close"] {
            for v in quote[column].as_array_mut().unwrap() {
                *v = value.clone();
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200_without_a_usable_result_fails_with_what_was_wrong() {
    let cases = [
        (
            replay(&serde_json::json!({"chart": {"result": null, "error": null}})),
            "HTTP 200 but no chart.result",
        ),
        (
            edited(|b| {
                b["chart"]["result"][0]["indicators"]["quote"][0]["high"]
                    .as_array_mut()
                    .unwrap()
                    .pop();
            }),
            "columns of different lengths",
        ),
        (
            edited(|b| b["chart"]["result"][0]["timestamp"][3] = 99_999_999_999i64.into()),
            "timestamp outside any plausible date (99999999999",
        ),
        (every_price(1e308.into()), "with a price out of range"),
        (every_price((-5.0).into()), "impossible (a price <= 0"),
        (every_price("NaN".into()), "with a price out of range"),
        (
            Scenario::Body {
                status: 200,
                body: "garbage, not JSON\n".into(),
                headers: vec![("content-type".into(), "text/plain".into())],
            },
            "HTTP 200, body starts: garbage, not JSON",
        ),
    ];
    for (scenario, message) in cases {
        assert_fails_alone(FailureCase {
            scenario,
            message,
            requests: 1,
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejection_that_is_not_json_shows_its_status_and_body() {
    assert_fails_alone(FailureCase {
        scenario: Scenario::Body {
            status: 403,
            body: "<html><body>Forbidden by the edge</body></html>".into(),
            headers: vec![("content-type".into(), "text/html".into())],
        },
        message: "HTTP 403: Forbidden, body: <html><body>Forbidden by the edge",
        requests: 1,
    })
    .await;
}

async fn assert_recovers(scenario: Scenario, min_elapsed: Duration) {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    yahoo.set_scenario(
        "SPY",
        Scenario::Sequence(vec![scenario.clone(), Scenario::Synthetic]),
    );
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 0, "{scenario:?}: {r:#?}");
    assert_eq!(yahoo.requests_for("SPY"), 2, "{scenario:?}");
    assert_eq!(db.count("SPY").await, weekdays(FROM, TO));
    let fetch_ms = r.security("SPY")["fetch_ms"].as_u64().unwrap();
    assert!(
        Duration::from_millis(fetch_ms) >= min_elapsed,
        "{scenario:?}: retried after {fetch_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_honoured_then_succeeds() {
    assert_recovers(
        Scenario::RateLimited {
            retry_after_secs: Some(1),
        },
        Duration::from_secs(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_is_retried_then_succeeds() {
    assert_recovers(Scenario::ServerError, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_is_retried_then_succeeds() {
    assert_recovers(Scenario::DropConnection, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_bars_over_a_holiday_is_not_an_error_but_over_months_it_is() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("indices", "^VXAPL", "VXAPL")], "");
    yahoo.set_scenario("^VXAPL", Scenario::Empty);
    // Christmas Day to the Sunday after: one weekday, a holiday.
    let holiday = ["--from", "2024-12-25", "--to", "2024-12-29"];
    let r = run_job(&cfg, &db, &yahoo, &holiday).await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(db.count("VXAPL").await, 0);
    assert_eq!(r.security("VXAPL")["outcome"], "succeeded");
    // Three months of weekdays with no bar is not a holiday: the security fails.
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert_eq!(r.security("VXAPL")["outcome"], "failed");
    let error = r.security("VXAPL")["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("no bars for ^VXAPL over 2024-05-01..2024-07-31, which has 66 weekdays"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_is_locked_out() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    // Migrate first so the lock holder below is the only difference.
    let m = run(&["migrate"], &[("DATABASE_URL", db.url.as_str())]).await;
    assert_eq!(m.code, 0, "{m:#?}");
    let mut holder = db.pool.acquire().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(market_encoder::job::store::RUN_LOCK_KEY)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert!(locked);
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 4, "{r:#?}");
    assert!(
        r.stderr
            .contains("another market-encoder run holds the run lock"),
        "{}",
        r.stderr
    );
    assert_eq!(yahoo.requests_for("SPY"), 0);
    assert_eq!(db.count("SPY").await, 0);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_stores_only_its_securities_under_its_own_lock() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    // Sorted by db_symbol: AAPL IWM QQQ SPY -> shard 0/2 = AAPL QQQ, 1/2 = IWM SPY.
    let cfg = config(
        dir.path(),
        &[
            ("etfs", "SPY", "SPY"),
            ("etfs", "QQQ", "QQQ"),
            ("etfs", "IWM", "IWM"),
            ("stocks", "AAPL", "AAPL"),
        ],
        "",
    );
    let m = run(&["migrate"], &[("DATABASE_URL", db.url.as_str())]).await;
    assert_eq!(m.code, 0, "{m:#?}");
    // Another run of shard 0/2 and an unsharded run hold their locks: shard 1/2 still runs.
    let mut holder = db.pool.acquire().await.unwrap();
    for key in [
        market_encoder::job::store::RUN_LOCK_KEY,
        market_encoder::domain::Shard::new(0, 2).unwrap().lock_key(),
    ] {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *holder)
            .await
            .unwrap();
        assert!(locked);
    }
    let mut args = WINDOW.to_vec();
    args.extend(["--shard", "1/2"]);
    let one = run_job(&cfg, &db, &yahoo, &args).await;
    assert_eq!(one.code, 0, "{one:#?}");
    for (symbol, stored) in [
        ("IWM", true),
        ("SPY", true),
        ("AAPL", false),
        ("QQQ", false),
    ] {
        assert_eq!(db.count(symbol).await > 0, stored, "{symbol}");
    }
    let mut args = WINDOW.to_vec();
    args.extend(["--shard", "0/2"]);
    let zero = run_job(&cfg, &db, &yahoo, &args).await;
    assert_eq!(zero.code, 4, "{zero:#?}");
    assert_eq!(yahoo.requests_for("AAPL"), 0);
    // A pooled connection keeps its session locks: release them before it goes back.
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *holder)
        .await
        .unwrap();
    drop(holder);
    let zero = run_job(&cfg, &db, &yahoo, &args).await;
    assert_eq!(zero.code, 0, "{zero:#?}");
    for symbol in ["AAPL", "QQQ"] {
        assert!(db.count(symbol).await > 0, "{symbol}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_new_work_and_records_the_run_as_interrupted() {
    let db = TestDb::new().await;
    let yahoo = crate::common::fake_with_latency(Duration::from_millis(700)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::numbered_config(
        dir.path(),
        "T",
        12,
        "  batch_size: 2\n  max_retries: 0\n  requests_per_second: 100\n",
    );
    let child = crate::common::command(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--from",
            FROM,
            "--to",
            TO,
        ],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("YAHOO_BASE_URL", yahoo.base_url().as_str()),
        ],
    )
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("did not exit promptly after SIGTERM")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (outcome, ok, finished): (String, i32, bool) =
        sqlx::query_as("SELECT outcome, securities_ok, finished_at IS NOT NULL FROM runs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(outcome, "interrupted");
    assert!(finished);
    assert!(ok > 0 && ok < 12, "{ok} securities finished");
    // Whatever was stored is whole: each stored symbol has its full window.
    let partial: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT symbol FROM market_data GROUP BY symbol HAVING count(*) <> $1) t",
    )
    .bind(weekdays(FROM, TO))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(partial, 0);
    let stored: i64 = sqlx::query_scalar("SELECT count(DISTINCT symbol) FROM market_data")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, i64::from(ok));
}

#[tokio::test(flavor = "multi_thread")]
async fn indicators_use_the_whole_stored_history_and_reruns_write_none() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    let backfill = run_job(
        &cfg,
        &db,
        &yahoo,
        &["--from", "2023-01-02", "--to", "2024-04-30"],
    )
    .await;
    assert_eq!(backfill.code, 0, "{backfill:#?}");
    // A short daily-style window after the backfill: its 200-day averages need the backfill.
    let daily = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(daily.code, 0, "{daily:#?}");
    let total = db.count("SPY").await;
    let with_indicators: i64 =
        sqlx::query_scalar("SELECT count(*) FROM indicators WHERE symbol = 'SPY'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        with_indicators, total,
        "every stored bar has its indicator row"
    );

    // SMA 200 on the last day, against PostgreSQL's own average of the last 200 closes.
    let (ours, sql): (f64, f64) = sqlx::query_as(
        "SELECT i.sma_200,
                (SELECT avg(close_price)::float8 FROM (SELECT close_price FROM market_data
                  WHERE symbol = 'SPY' ORDER BY trade_date DESC LIMIT 200) t)
         FROM indicators i WHERE i.symbol = 'SPY' ORDER BY i.trade_date DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        (ours - sql).abs() < 1e-9 * sql,
        "sma_200 {ours} vs SQL {sql}"
    );
    let first_sma_200: Option<f64> = sqlx::query_scalar(
        "SELECT sma_200 FROM indicators WHERE symbol = 'SPY' ORDER BY trade_date LIMIT 1 OFFSET 198",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        first_sma_200.is_none(),
        "the 199th bar has no 200-day average"
    );
    let regimes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM indicators WHERE symbol = 'SPY' AND trend IS NOT NULL AND volatility_regime IS NOT NULL",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(regimes > 0);

    // Narratives: each run writes the last embedding_days (30 in the test config) stored
    // days; documents of earlier runs stay (the backfill's 30 + these 30). All are pending for
    // the index stage, and each quotes the stored close exactly.
    let total_docs: i64 = sqlx::query_scalar("SELECT count(*) FROM documents")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(total_docs, 60);
    let docs: Vec<(String, Decimal, Value, bool)> = sqlx::query_as(
        "SELECT d.document, m.close_price, d.metadata, d.indexed_hash IS NULL
         FROM market_data m LEFT JOIN documents d USING (symbol, trade_date)
         WHERE m.symbol = 'SPY' AND m.trade_date >= $1
         ORDER BY m.trade_date DESC LIMIT 30",
    )
    .bind(date(FROM))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(docs.len(), 30);
    let last_date: NaiveDate =
        sqlx::query_scalar("SELECT max(trade_date) FROM market_data WHERE symbol = 'SPY'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    for (document, close, metadata, pending) in &docs {
        let quoted = market_encoder::job::narrate::thousands(*close);
        assert!(
            ["higher", "lower", "unchanged"]
                .iter()
                .any(|way| document.contains(&format!(" closed {way} at {quoted}, "))),
            "{document}"
        );
        // Words first ("An up day in a bull market. ... SPY rose, ..."), then the date and
        // every number.
        assert!(document.contains(". SPY "), "{document}");
        assert!(
            document.contains(&format!(
                " On {} it closed ",
                metadata["trade_date"].as_str().unwrap()
            )),
            "{document}"
        );
        assert_eq!(
            metadata["narrative_version"],
            market_encoder::job::narrate::NARRATIVE_VERSION
        );
        assert_eq!(metadata["symbol"], "SPY");
        assert!(
            metadata
                .as_object()
                .unwrap()
                .values()
                .all(|v| !v.is_object() && !v.is_array() && !v.is_null())
        );
        assert!(pending);
    }
    assert_eq!(docs[0].2["trade_date"], last_date.to_string());

    let again = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(again.code, 0, "{again:#?}");
    assert_eq!(again.security("SPY")["indicators_written"], 0);
    assert_eq!(again.security("SPY")["documents_written"], 0);

    // A document written by another version of the narrative, even one older than the
    // window, is narrated again by the next run (with every documented day of its security),
    // and so becomes pending for the index stage.
    let oldest: NaiveDate =
        sqlx::query_scalar("SELECT min(trade_date) FROM documents WHERE symbol = 'SPY'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    sqlx::query(
        "UPDATE documents SET document = 'old words', metadata = metadata || '{\"narrative_version\": 1}'
         WHERE symbol = 'SPY' AND trade_date = $1",
    )
    .bind(oldest)
    .execute(&db.pool)
    .await
    .unwrap();
    // Every stored day since the oldest document is narrated again, as after a rebase: the
    // outdated document, and the days between the backfill's documents and the daily run's,
    // which had none.
    let undocumented: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM market_data m WHERE m.symbol = 'SPY' AND m.trade_date >= $1
           AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.symbol = m.symbol AND d.trade_date = m.trade_date)",
    )
    .bind(oldest)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let renarrated = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(renarrated.code, 0, "{renarrated:#?}");
    assert_eq!(
        renarrated.security("SPY")["documents_written"],
        1 + undocumented
    );
    let outdated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM documents WHERE (metadata->>'narrative_version')::bigint IS DISTINCT FROM $1",
    )
    .bind(market_encoder::job::narrate::NARRATIVE_VERSION)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(outdated, 0);
    let (document, version): (String, Value) = sqlx::query_as(
        "SELECT document, metadata->'narrative_version' FROM documents WHERE symbol = 'SPY' AND trade_date = $1",
    )
    .bind(oldest)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // Narrated again in this version's words ("An up day in a bull market. ... SPY rose, ...").
    assert!(document.contains(". SPY "), "{document}");
    assert_eq!(version, market_encoder::job::narrate::NARRATIVE_VERSION);
}

/// SPY's documents of `db`, by date: text and metadata.
async fn spy_documents(db: &TestDb) -> Vec<(NaiveDate, String, Value)> {
    sqlx::query_as(
        "SELECT trade_date, document, metadata FROM documents WHERE symbol = 'SPY' ORDER BY trade_date",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// The narratives are written as the securities are stored, but every one waits for the
/// context securities of the run: VIX last in the config and slow to answer, SPY's documents
/// still tell VIX's day, the same as when VIX answers at once.
#[tokio::test(flavor = "multi_thread")]
async fn every_narrative_waits_for_the_context_securities_however_late_they_answer() {
    let securities = [("etfs", "SPY", "SPY"), ("volatility", "^VIX", "VIX")];
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &securities, "");
    let yahoo = fake().await;
    let prompt_db = TestDb::new().await;
    let prompt = run_job(&cfg, &prompt_db, &yahoo, &WINDOW).await;
    assert_eq!(prompt.code, 0, "{prompt:#?}");

    // The first attempt times out (request_timeout_secs is 2 in the test config), the retry
    // answers: VIX is stored ~2 s after SPY.
    yahoo.set_scenario(
        "^VIX",
        Scenario::Sequence(vec![
            Scenario::Hang(Duration::from_secs(10)),
            Scenario::Synthetic,
        ]),
    );
    let late_db = TestDb::new().await;
    let late = run_job(&cfg, &late_db, &yahoo, &WINDOW).await;
    assert_eq!(late.code, 0, "{late:#?}");
    let documents = spy_documents(&late_db).await;
    assert_eq!(documents.len(), 30);
    assert!(
        documents.iter().all(|d| d.2.get("vix_return").is_some()),
        "SPY was narrated before VIX was stored: {:?}",
        documents[0].2
    );
    assert_eq!(documents, spy_documents(&prompt_db).await);
}

/// Stored history must equal a fresh backfill: a document narrated while the context VIX bar
/// of its date was missing (VIX failed that run) is narrated again once the bar is stored, even
/// a day older than the run's `embedding_days`, and then reads as the backfill's.
#[tokio::test(flavor = "multi_thread")]
async fn a_narrative_written_without_the_vix_bar_is_narrated_again_when_it_arrives() {
    let securities = [("etfs", "SPY", "SPY"), ("volatility", "^VIX", "VIX")];
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &securities, "");

    // A: VIX fails on the first run; SPY's documents have no context.
    let db = TestDb::new().await;
    let yahoo = fake().await;
    yahoo.set_scenario("^VIX", Scenario::Delisted);
    let first = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(first.security("VIX")["outcome"], "failed", "{first:#?}");
    assert_eq!(first.security("SPY")["outcome"], "succeeded", "{first:#?}");
    let without = spy_documents(&db).await;
    assert_eq!(without.len(), 30);
    for (_, text, metadata) in &without {
        assert!(!text.contains("VIX"), "{text}");
        assert!(metadata.get("vix_return").is_none(), "{metadata}");
    }
    // The next run, a month later, stores VIX: its last 30 days cover only part of the first
    // run's documents, the others are narrated again because their context changed.
    yahoo.set_scenario("^VIX", Scenario::Synthetic);
    let later = run_job(&cfg, &db, &yahoo, &["--from", FROM, "--to", "2024-08-30"]).await;
    assert_eq!(later.code, 0, "{later:#?}");
    let after = spy_documents(&db).await;
    let oldest = without[0].0;
    // (The words tell VIX's move only when it is news; the metadata records it every day.)
    let renarrated = after.iter().find(|d| d.0 == oldest).unwrap();
    assert!(renarrated.2.get("vix_return").is_some(), "{}", renarrated.2);

    // B: a fresh backfill of the first window, VIX answering: the same documents.
    let fresh_db = TestDb::new().await;
    let fresh = run_job(&cfg, &fresh_db, &yahoo, &WINDOW).await;
    assert_eq!(fresh.code, 0, "{fresh:#?}");
    let backfilled = spy_documents(&fresh_db).await;
    assert_eq!(backfilled.len(), 30);
    for doc in &backfilled {
        let stored = after.iter().find(|d| d.0 == doc.0).unwrap();
        assert_eq!(stored, doc, "stored history differs from a fresh backfill");
    }
    // ...and a run that finds every context in place narrates nothing again.
    let again = run_job(&cfg, &db, &yahoo, &["--from", FROM, "--to", "2024-08-30"]).await;
    assert_eq!(again.security("SPY")["documents_written"], 0, "{again:#?}");
}
