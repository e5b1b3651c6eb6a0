//! Stored history stays true (issue 11): after a split or a dividend every stored bar equals
//! what a fresh backfill made afterwards would store; an outage is filled by the next daily
//! run; a new security gets a full first history; the P&L counts the dividends.

use chrono::{Datelike, Days, NaiveDate, Utc, Weekday};
use fake_yahoo::{CorporateAction as Action, FakeYahoo, Scenario};
use serde_json::Value;

use crate::common::{Run, TestDb, config, fake, run, run_job, window};

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

const SPLIT: &str = "2024-06-10";

/// Every stored bar and indicator row of `symbol`, as JSON without the bookkeeping columns.
async fn history(db: &TestDb, symbol: &str) -> (Vec<Value>, Vec<Value>) {
    let bars: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(m) - 'created_at' - 'updated_at' FROM market_data m
         WHERE symbol = $1 ORDER BY trade_date",
    )
    .bind(symbol)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let indicators: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(i) - 'updated_at' - 'created_at' FROM indicators i
         WHERE symbol = $1 ORDER BY trade_date",
    )
    .bind(symbol)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    (bars, indicators)
}

async fn actions(db: &TestDb, symbol: &str) -> Vec<(NaiveDate, String)> {
    sqlx::query_as("SELECT ex_date, kind FROM corporate_actions WHERE symbol = $1 ORDER BY 1")
        .bind(symbol)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// The store of a fresh backfill of `from..to` made after the events.
async fn fresh_backfill(yahoo: &FakeYahoo, cfg: &std::path::Path, from: &str, to: &str) -> TestDb {
    let db = TestDb::new().await;
    let r = run_job(cfg, &db, yahoo, &window(from, to)).await;
    assert_eq!(r.code, 0, "{r:#?}");
    db
}

/// Runs before and after `actions` and checks the stored history against a fresh backfill.
async fn assert_rebased_like_a_fresh_backfill(actions_: Vec<Action>, expect_kind: &str) {
    let yahoo = fake().await;
    yahoo.set_scenario("NVDA", Scenario::Actions(actions_));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("stocks", "NVDA", "NVDA")], "");
    let db = TestDb::new().await;
    // Before the event: the history on the old basis.
    let before = run_job(&cfg, &db, &yahoo, &window("2023-06-01", "2024-06-07")).await;
    assert_eq!(before.code, 0, "{before:#?}");
    assert!(before.security("NVDA")["rebased"].is_null());
    // A bar the provider no longer has (a revision removed that day), with its indicator row:
    // the rebase removes both (indicators have no foreign key to cascade from; the store does it).
    for sql in [
        "INSERT INTO market_data (symbol, trade_date, open_price, high_price, low_price, close_price)
         VALUES ('NVDA', '2023-06-03', 1, 1, 1, 1)",
        "INSERT INTO indicators (symbol, trade_date) VALUES ('NVDA', '2023-06-03')",
    ] {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }
    // A run whose window holds the event: the whole history is rebased.
    let after = run_job(&cfg, &db, &yahoo, &window("2024-05-01", "2024-07-31")).await;
    assert_eq!(after.code, 0, "{after:#?}");
    let rebased = after.security("NVDA")["rebased"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(rebased.contains(expect_kind), "{rebased}");
    assert!(
        rebased.contains("history 2023-06-01..2024-04-30 rebased"),
        "{rebased}"
    );
    let fresh = fresh_backfill(&yahoo, &cfg, "2023-06-01", "2024-07-31").await;
    let (bars, indicators) = history(&db, "NVDA").await;
    let (fresh_bars, fresh_indicators) = history(&fresh, "NVDA").await;
    assert_eq!(bars.len(), fresh_bars.len());
    for (ours, theirs) in bars.iter().zip(&fresh_bars) {
        assert_eq!(ours, theirs, "a stored bar differs from the fresh backfill");
    }
    assert_eq!(
        indicators, fresh_indicators,
        "indicators differ from the fresh backfill"
    );
    // No crash at the event: every daily return is a normal day's.
    let worst: f64 = sqlx::query_scalar(
        "SELECT max(abs(daily_return))::float8 FROM market_data WHERE symbol = 'NVDA'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(worst < 0.2, "a daily return of {worst}");
    assert_eq!(actions(&db, "NVDA").await, actions(&fresh, "NVDA").await);
    assert_eq!(actions(&db, "NVDA").await.len(), 1);
    // A third run rewrites nothing.
    let again = run_job(&cfg, &db, &yahoo, &window("2024-05-01", "2024-07-31")).await;
    assert_eq!(again.code, 0, "{again:#?}");
    assert!(again.security("NVDA")["rebased"].is_null(), "{again:#?}");
    assert_eq!(again.security("NVDA")["rows_written"], 0);
    assert_eq!(again.security("NVDA")["indicators_written"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_rebases_the_whole_history_like_a_fresh_backfill() {
    assert_rebased_like_a_fresh_backfill(
        vec![Action::Split {
            date: d(SPLIT),
            numerator: 10.0,
            denominator: 1.0,
        }],
        "split 10:1 on 2024-06-10",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dividend_rebases_the_adjusted_closes_like_a_fresh_backfill() {
    assert_rebased_like_a_fresh_backfill(
        vec![Action::Dividend {
            date: d(SPLIT),
            amount: 1.25,
        }],
        "dividend 1.25 on 2024-06-10",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_refetch_leaves_the_old_history_and_fails_the_security() {
    let yahoo = fake().await;
    let split = vec![Action::Split {
        date: d(SPLIT),
        numerator: 4.0,
        denominator: 1.0,
    }];
    yahoo.set_scenario("NVDA", Scenario::Actions(split.clone()));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[("stocks", "NVDA", "NVDA")],
        "  max_retries: 0\n",
    );
    let db = TestDb::new().await;
    let before = run_job(&cfg, &db, &yahoo, &window("2024-01-02", "2024-06-07")).await;
    assert_eq!(before.code, 0, "{before:#?}");
    let stored = history(&db, "NVDA").await;
    // The window's answer carries the split; the refetch of the whole history fails.
    yahoo.set_scenario(
        "NVDA",
        Scenario::Sequence(vec![Scenario::Actions(split), Scenario::ServerError]),
    );
    let after = run_job(&cfg, &db, &yahoo, &window("2024-05-01", "2024-07-31")).await;
    assert_eq!(after.code, 1, "{after:#?}");
    let nvda = after.security("NVDA");
    assert_eq!(nvda["outcome"], "failed");
    let error = nvda["error"].as_str().unwrap();
    assert!(
        error.contains("split 4:1 on 2024-06-10") && error.contains("stored history is unchanged"),
        "{error}"
    );
    assert_eq!(
        history(&db, "NVDA").await,
        stored,
        "the old history must stay whole"
    );
    assert!(
        actions(&db, "NVDA").await.is_empty(),
        "the split is not stored either"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dividend_outside_every_fetched_window_is_found_by_the_basis_check() {
    let yahoo = fake().await;
    let dividend = vec![Action::Dividend {
        date: d(SPLIT),
        amount: 2.5,
    }];
    yahoo.set_scenario("NVDA", Scenario::Actions(dividend.clone()));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("stocks", "NVDA", "NVDA")], "");
    let db = TestDb::new().await;
    let before = run_job(&cfg, &db, &yahoo, &window("2023-06-01", "2024-05-31")).await;
    assert_eq!(before.code, 0, "{before:#?}");
    // Run after the dividend, for a window that ends before its ex-date: Yahoo's prices are
    // adjusted, but the event is not in the answer.
    yahoo.set_scenario(
        "NVDA",
        Scenario::ActionsAsOf {
            actions: dividend,
            as_of: d("2024-07-31"),
        },
    );
    let after = run_job(&cfg, &db, &yahoo, &window("2024-04-01", "2024-06-07")).await;
    assert_eq!(after.code, 0, "{after:#?}");
    let rebased = after.security("NVDA")["rebased"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        rebased.contains("prices of 2024-04-01 and earlier changed"),
        "{rebased}"
    );
    let fresh = fresh_backfill(&yahoo, &cfg, "2023-06-01", "2024-06-07").await;
    assert_eq!(history(&db, "NVDA").await, history(&fresh, "NVDA").await);
    let again = run_job(&cfg, &db, &yahoo, &window("2024-04-01", "2024-06-07")).await;
    assert!(again.security("NVDA")["rebased"].is_null(), "{again:#?}");
}

fn weekdays(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    from.iter_days()
        .take_while(|day| *day <= to)
        .filter(|day| !matches!(day.weekday(), Weekday::Sat | Weekday::Sun))
        .collect()
}

async fn dates(db: &TestDb, symbol: &str) -> Vec<NaiveDate> {
    sqlx::query_scalar("SELECT trade_date FROM market_data WHERE symbol = $1 ORDER BY 1")
        .bind(symbol)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_run_after_an_outage_fills_every_missing_day() {
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("stocks", "AAPL", "AAPL")], "");
    let db = TestDb::new().await;
    let today = Utc::now().date_naive();
    let start = today - Days::new(300);
    let stop = today - Days::new(150); // an outage of 150 days, longer than days_back (60)
    let backfill = run_job(
        &cfg,
        &db,
        &yahoo,
        &window(&start.to_string(), &stop.to_string()),
    )
    .await;
    assert_eq!(backfill.code, 0, "{backfill:#?}");
    let daily = run_job(&cfg, &db, &yahoo, &[]).await;
    assert_eq!(daily.code, 0, "{daily:#?}");
    let aapl = daily.security("AAPL");
    assert_eq!(aapl["window_reason"], "catch_up", "{aapl}");
    let stored = dates(&db, "AAPL").await;
    let last = *stored.last().unwrap();
    assert!(
        last >= today - Days::new(4),
        "the daily run reached today: {last}"
    );
    let expected: Vec<NaiveDate> = weekdays(start, last);
    assert_eq!(
        stored, expected,
        "every weekday from the first stored one is there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_security_gets_history_enough_for_every_indicator() {
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("stocks", "MSFT", "MSFT")], "");
    let db = TestDb::new().await;
    let first = run_job(&cfg, &db, &yahoo, &[]).await;
    assert_eq!(first.code, 0, "{first:#?}");
    assert_eq!(first.security("MSFT")["window_reason"], "first_sight");
    let latest: (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT sma_200, drawdown_252d FROM indicators WHERE symbol = 'MSFT'
         ORDER BY trade_date DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        latest.0.is_some(),
        "SMA 200 is set on the latest date: {latest:?}"
    );
    let days = dates(&db, "MSFT").await;
    assert!(
        (*days.last().unwrap() - days[0]).num_days() >= 395,
        "history_days (400) of history: {} .. {}",
        days[0],
        days.last().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pnl_across_a_dividend_reports_price_only_and_total_return() {
    let yahoo = fake().await;
    yahoo.set_scenario(
        "KO",
        Scenario::Actions(vec![Action::Dividend {
            date: d("2024-03-14"),
            amount: 0.485,
        }]),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("stocks", "KO", "KO")], "");
    let db = TestDb::new().await;
    let r = run_job(&cfg, &db, &yahoo, &window("2024-01-02", "2024-06-28")).await;
    assert_eq!(r.code, 0, "{r:#?}");
    // 10 KO held from 2024-02-01 to 2024-05-01, across the ex-date, with `extra` flags.
    let pnl = |extra: &'static [&'static str]| {
        let cfg = cfg.to_str().unwrap().to_owned();
        let url = db.url.clone();
        async move {
            let mut args = vec![
                "pnl",
                "--config",
                &cfg,
                "--symbol",
                "KO",
                "--entry",
                "2024-02-01",
                "--exit",
                "2024-05-01",
                "--quantity",
                "10",
            ];
            args.extend_from_slice(extra);
            run(&args, &[("DATABASE_URL", url.as_str())]).await
        }
    };
    let out: Run = pnl(&["--json"]).await;
    assert_eq!(out.code, 0, "{out:#?}");
    let answer: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let close = |date: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, rust_decimal::Decimal>(
                "SELECT close_price FROM market_data WHERE symbol = 'KO' AND trade_date = $1::date",
            )
            .bind(date)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let dec = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    let price_only =
        (close("2024-05-01").await - close("2024-02-01").await) * rust_decimal::Decimal::TEN;
    assert_eq!(dec(&answer["pnl_amount"]), price_only.normalize());
    let amount: rust_decimal::Decimal = sqlx::query_scalar(
        "SELECT amount FROM corporate_actions WHERE symbol = 'KO' AND kind = 'dividend'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(dec(&answer["dividends_per_share"]), amount.normalize());
    assert_eq!(
        dec(&answer["dividend_amount"]),
        (amount * rust_decimal::Decimal::TEN).normalize()
    );
    assert_eq!(
        dec(&answer["total_return_amount"]),
        (price_only + amount * rust_decimal::Decimal::TEN).normalize()
    );
    // Short: the dividend is owed.
    let short = pnl(&["--position", "short"]).await;
    assert_eq!(short.code, 0, "{short:#?}");
    assert!(
        short
            .stdout
            .contains("div   0.485 per share (0.485 on 2024-03-14): -4.85"),
        "{}",
        short.stdout
    );
}
