//! Cross-asset features end to end: the real binary stores every role symbol from the fake
//! Yahoo, and the `ml_market_features` view is checked against the same formulas recomputed
//! independently in SQL (PostgreSQL's numeric arithmetic, `lag` and `corr`); missing inputs are
//! NULL and logged once; a rerun writes nothing; the `features` command and its exit codes.

use crate::common::{ROLE_SECURITIES, TestDb, config_with, fake, run, run_job};
use chrono::{Datelike, NaiveDate, Weekday};
use serde_json::Value;

const FROM: &str = "2024-05-01";
const TO: &str = "2024-07-31";
const WINDOW: [&str; 4] = ["--from", FROM, "--to", TO];

/// Features of the default configuration.
const EXPECTED: i64 = 14;

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

/// Runs `sql` returning (date, ours, expected) and asserts every pair agrees: both NULL or
/// within `tolerance` (relative to the expected magnitude, at least 1). Returns how many are
/// not NULL.
async fn assert_agrees(db: &TestDb, what: &str, sql: String, tolerance: f64) -> usize {
    let rows: Vec<(NaiveDate, Option<f64>, Option<f64>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        rows.len() as i64,
        weekdays(FROM, TO),
        "{what}: one row per trade date"
    );
    let mut values = 0;
    for (day, ours, expected) in rows {
        match (ours, expected) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                assert!(
                    (a - b).abs() <= tolerance * b.abs().max(1.0),
                    "{what} on {day}: ours {a}, SQL {b}"
                );
                values += 1;
            }
            _ => panic!("{what} on {day}: ours {ours:?}, SQL {expected:?}"),
        }
    }
    values
}

/// `ours` next to (a + b) / (c + d) of same-date closes (or a / b when c and d are empty).
fn ratio_sql(column: &str, numerator: &[&str], denominator: &[&str]) -> String {
    let mut joins = String::new();
    let mut alias = |symbols: &[&str], prefix: &str| -> String {
        let mut terms = Vec::new();
        for (i, s) in symbols.iter().enumerate() {
            let a = format!("{prefix}{i}");
            joins.push_str(&format!(
                " JOIN market_data {a} ON {a}.symbol = '{s}' AND {a}.trade_date = f.trade_date"
            ));
            terms.push(format!("{a}.close_price"));
        }
        format!("({})", terms.join(" + "))
    };
    let num = alias(numerator, "n");
    let den = alias(denominator, "d");
    format!(
        "SELECT f.trade_date, f.{column}, ({num} / {den})::float8 FROM ml_market_features f{joins} ORDER BY 1"
    )
}

/// `ours` next to close / close `lag` trading days earlier - 1 of `symbol` (minus the same of
/// `minus`, when given).
fn growth_sql(column: &str, symbol: &str, minus: Option<&str>, lag: usize) -> String {
    let growth = |s: &str, a: &str| {
        format!(
            "JOIN (SELECT trade_date, close_price / lag(close_price, {lag}) OVER (ORDER BY trade_date) - 1 AS g
                   FROM market_data WHERE symbol = '{s}') {a} ON {a}.trade_date = f.trade_date"
        )
    };
    let (join_b, expr) = match minus {
        Some(m) => (growth(m, "b"), "a.g - b.g"),
        None => (String::new(), "a.g"),
    };
    format!(
        "SELECT f.trade_date, f.{column}, ({expr})::float8 FROM ml_market_features f {} {join_b} ORDER BY 1",
        growth(symbol, "a")
    )
}

/// `ours` next to PostgreSQL's `corr` of the last `n` daily returns of `a` and `b` on `a`'s
/// trade dates (all US inputs share the weekday calendar in the fake), NULL with fewer.
fn corr_sql(column: &str, a: &str, b: &str, n: usize) -> String {
    format!(
        "WITH j AS (SELECT x.trade_date, x.close_price AS xc, y.close_price AS yc
                    FROM market_data x JOIN market_data y ON y.symbol = '{b}' AND y.trade_date = x.trade_date
                    WHERE x.symbol = '{a}'),
              r AS (SELECT trade_date, (xc / lag(xc) OVER w - 1)::float8 AS rx,
                           (yc / lag(yc) OVER w - 1)::float8 AS ry
                    FROM j WINDOW w AS (ORDER BY trade_date)),
              c AS (SELECT trade_date, corr(rx, ry) OVER v AS r, count(rx) OVER v AS k
                    FROM r WINDOW v AS (ORDER BY trade_date ROWS BETWEEN {} PRECEDING AND CURRENT ROW))
         SELECT f.trade_date, f.{column}, CASE WHEN c.k = {n} THEN c.r END
         FROM ml_market_features f JOIN c ON c.trade_date = f.trade_date ORDER BY 1",
        n - 1
    )
}

async fn stamp(db: &TestDb) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("SELECT max(updated_at) FROM market_features")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// The WARN events of the run's stderr (JSON lines) about `feature`.
fn warnings_about(stderr: &str, feature: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["level"] == "WARN" && e["feature"] == feature)
        .collect()
}

async fn features_command(db: &TestDb, args: &[&str]) -> crate::common::Run {
    let mut all = vec!["features"];
    all.extend_from_slice(args);
    run(&all, &[("DATABASE_URL", db.url.as_str())]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn features_match_an_independent_sql_computation_and_a_rerun_writes_none() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    // No features section: the defaults, whose roles are exactly these db_symbols.
    let cfg = config_with(dir.path(), &ROLE_SECURITIES, "", "");
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 0, "{r:#?}");
    let dates = weekdays(FROM, TO);
    let summary = r.summary();
    assert_eq!(summary["features"]["dates"], dates);
    assert_eq!(summary["features"]["features"], EXPECTED);
    assert_eq!(summary["features"]["rows_written"], dates * EXPECTED);
    assert!(summary["features"]["error"].is_null());
    let (outcome, features_written): (String, i64) =
        sqlx::query_as("SELECT outcome, features_written FROM runs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (outcome.as_str(), features_written),
        ("succeeded", dates * EXPECTED)
    );

    // One view row per weekday (the calendar: BTC's weekends are not dates), every feature
    // expected on each.
    let (rows, expected): (i64, i64) =
        sqlx::query_as("SELECT count(*), min(features_expected)::int8 FROM ml_market_features")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((rows, expected), (dates, EXPECTED));

    let exact = 1e-12;
    let ratios = [
        (
            "ml_risk_on_ratio",
            ratio_sql("ml_risk_on_ratio", &["QQQ", "HYG"], &["VIX", "TLT"]),
        ),
        (
            "ml_innovation_premium",
            ratio_sql("ml_innovation_premium", &["ARKK"], &["QQQ"]),
        ),
        (
            "ml_tech_leadership",
            ratio_sql("ml_tech_leadership", &["QQQ"], &["SPY"]),
        ),
        (
            "ml_market_breadth",
            ratio_sql("ml_market_breadth", &["SPY"], &["IWM"]),
        ),
        (
            "ml_vix_fear_index",
            "SELECT f.trade_date, f.ml_vix_fear_index, v.close_price::float8 FROM ml_market_features f
             JOIN market_data v ON v.symbol = 'VIX' AND v.trade_date = f.trade_date ORDER BY 1"
                .to_owned(),
        ),
    ];
    for (what, sql) in ratios {
        let values = assert_agrees(&db, what, sql, exact).await;
        assert_eq!(values as i64, dates, "{what}: a value on every date");
    }
    // 20-return windows: NULL on the first 20 dates, a value on every later one.
    let credit = growth_sql("ml_credit_spreads", "HYG", Some("LQD"), 20);
    assert_eq!(
        assert_agrees(&db, "ml_credit_spreads", credit, 1e-10).await as i64,
        dates - 20
    );
    let dollar = growth_sql("ml_dollar_strength", "DXY", None, 20);
    assert_eq!(
        assert_agrees(&db, "ml_dollar_strength", dollar, 1e-10).await as i64,
        dates - 20
    );
    // 30-return correlations: NULL on the first 30 dates.
    let correlations = [
        ("ml_flight_to_quality", "GLD", "TLT"),
        ("ml_nasdaq_correlation", "QQQ", "BTCUSD"),
        ("ml_arkk_correlation", "ARKK", "BTCUSD"),
        ("ml_gold_correlation", "GLD", "BTCUSD"),
        ("ml_sp500_correlation", "SPY", "BTCUSD"),
        ("ml_treasuries_correlation", "TLT", "BTCUSD"),
        ("ml_dollar_correlation", "DXY", "BTCUSD"),
    ];
    for (column, a, b) in correlations {
        let values = assert_agrees(&db, column, corr_sql(column, a, b, 30), 1e-9).await;
        assert_eq!(values as i64, dates - 30, "{column}");
    }

    // What each value was computed from is stored with it.
    let (inputs, short): (Value, Value) = sqlx::query_as(
        "SELECT (SELECT inputs FROM market_features WHERE feature = 'ml_risk_on_ratio'
                 ORDER BY trade_date DESC LIMIT 1),
                (SELECT inputs FROM market_features WHERE feature = 'ml_nasdaq_correlation'
                 ORDER BY trade_date LIMIT 1)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(inputs["kind"], "closes");
    let symbols: Vec<&str> = inputs["closes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["QQQ", "HYG", "VIX", "TLT"]);
    assert_eq!(short["kind"], "short_history");
    assert_eq!(short["needed"], 31);
    // Short history on a first run is logged once per feature, not once per date.
    let warned = warnings_about(&r.stderr, "ml_nasdaq_correlation");
    assert_eq!(warned.len(), 1, "{}", r.stderr);

    // An identical rerun writes no feature row.
    let before = stamp(&db).await;
    let again = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(again.code, 0, "{again:#?}");
    assert_eq!(again.summary()["features"]["rows_written"], 0);
    assert_eq!(
        stamp(&db).await,
        before,
        "an identical rerun rewrote features"
    );

    // The command: the latest date by default, as a table and as JSON.
    let latest: NaiveDate = sqlx::query_scalar("SELECT max(trade_date) FROM ml_market_features")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(latest, date(TO));
    let table = features_command(&db, &[]).await;
    assert_eq!(table.code, 0, "{table:#?}");
    assert!(
        table
            .stdout
            .contains(&format!("cross-asset features for {TO}")),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("14 of 14 features present"),
        "{}",
        table.stdout
    );
    for line in ["ml_risk_on_ratio", "QQQ ", "GLD, TLT: 30 returns"] {
        assert!(table.stdout.contains(line), "{line}: {}", table.stdout);
    }
    let json = features_command(&db, &["--json"]).await;
    assert_eq!(json.code, 0, "{json:#?}");
    let out: Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(out["date"], TO);
    assert_eq!(
        (out["present"].clone(), out["expected"].clone()),
        (14.into(), 14.into())
    );
    let stored: f64 =
        sqlx::query_scalar("SELECT ml_risk_on_ratio FROM ml_market_features WHERE trade_date = $1")
            .bind(latest)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(out["features"]["ml_risk_on_ratio"].as_f64(), Some(stored));
    assert_eq!(out["features"].as_object().unwrap().len(), 14);

    // An early date: only the same-date features have values.
    let early = features_command(&db, &["--date", FROM, "--json"]).await;
    assert_eq!(early.code, 0, "{early:#?}");
    let out: Value = serde_json::from_str(early.stdout.trim()).unwrap();
    assert_eq!(
        (out["present"].clone(), out["expected"].clone()),
        (5.into(), 14.into())
    );
    assert!(out["features"]["ml_nasdaq_correlation"].is_null());
    // A date with no features (a Saturday) says so and how to get them.
    let saturday = features_command(&db, &["--date", "2024-05-04"]).await;
    assert_eq!(saturday.code, 2, "{saturday:#?}");
    assert!(
        saturday
            .stderr
            .contains("no cross-asset features for 2024-05-04")
            && saturday.stderr.contains(&format!("latest: {TO}")),
        "{}",
        saturday.stderr
    );

    // Fewer correlations configured: the others' rows go for the dates recomputed.
    let cfg = config_with(
        dir.path(),
        &ROLE_SECURITIES,
        "",
        "features:\n  correlations:\n    nasdaq: QQQ\n    russell: IWM\n",
    );
    let fewer = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(fewer.code, 0, "{fewer:#?}");
    let (expected, russell, arkk): (i32, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT features_expected, (ml_features ->> 'ml_russell_correlation')::float8,
                ml_arkk_correlation
         FROM ml_market_features WHERE trade_date = $1",
    )
    .bind(latest)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(expected, 10);
    assert!(russell.is_some());
    assert!(arkk.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_input_is_null_and_logged_once() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    // VIX is not configured: the default vix role has no closes.
    let securities: Vec<(&str, &str, &str)> = ROLE_SECURITIES
        .iter()
        .copied()
        .filter(|s| s.2 != "VIX")
        .collect();
    let cfg = config_with(dir.path(), &securities, "", "");
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 0, "{r:#?}");

    let (risk_on, fear, tech, rows): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(ml_risk_on_ratio), count(ml_vix_fear_index), count(ml_tech_leadership),
                count(*)
         FROM ml_market_features",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let dates = weekdays(FROM, TO);
    assert_eq!((risk_on, fear, tech, rows), (0, 0, dates, dates));
    let inputs: Value = sqlx::query_scalar(
        "SELECT inputs FROM market_features WHERE feature = 'ml_risk_on_ratio' LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        inputs,
        serde_json::json!({"kind": "missing", "missing": ["VIX"]})
    );

    for feature in ["ml_risk_on_ratio", "ml_vix_fear_index"] {
        let warned = warnings_about(&r.stderr, feature);
        assert_eq!(warned.len(), 1, "{feature}: {}", r.stderr);
        let message = warned[0]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{feature} is NULL on {dates} of {dates} dates"))
                && message.contains("no close for VIX"),
            "{message}"
        );
        assert_eq!(warned[0]["missing"], "VIX");
    }
    assert!(warnings_about(&r.stderr, "ml_tech_leadership").is_empty());

    let table = features_command(&db, &[]).await;
    assert_eq!(table.code, 0, "{table:#?}");
    assert!(
        table.stdout.contains("12 of 14 features present"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("no close for VIX"),
        "{}",
        table.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_features_command_needs_stored_features_and_a_database() {
    // A database the job never ran against: exit 2 and what to do.
    let db = TestDb::new().await;
    let r = features_command(&db, &[]).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains("no cross-asset features stored in") && r.stderr.contains("run the job"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    // Migrated but empty: the same.
    let m = run(&["migrate"], &[("DATABASE_URL", db.url.as_str())]).await;
    assert_eq!(m.code, 0, "{m:#?}");
    let r = features_command(&db, &["--json"]).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stdout.is_empty());
    // The database down: exit 3.
    let r = run(
        &["features"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere")],
    )
    .await;
    assert_eq!(r.code, 3, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_features_stage_costs_no_prices_and_makes_the_run_partial() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let m = run(&["migrate"], &[("DATABASE_URL", db.url.as_str())]).await;
    assert_eq!(m.code, 0, "{m:#?}");
    sqlx::query("ALTER TABLE market_features RENAME TO market_features_elsewhere")
        .execute(&db.pool)
        .await
        .unwrap();
    let cfg = config_with(
        dir.path(),
        &[("etfs", "SPY", "SPY"), ("etfs", "QQQ", "QQQ")],
        "",
        "",
    );
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert_eq!(db.count("SPY").await, weekdays(FROM, TO));
    assert_eq!(db.count("QQQ").await, weekdays(FROM, TO));
    assert_eq!(r.summary()["securities_ok"], 2);
    let error = r.summary()["features"]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("market_features"), "{error}");
    assert!(
        r.stderr.contains("cross-asset features failed"),
        "{}",
        r.stderr
    );
    let (outcome, errors): (String, Value) = sqlx::query_as("SELECT outcome, errors FROM runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(outcome, "partial");
    assert_eq!(errors["(features)"].as_str(), Some(error.as_str()));
}
