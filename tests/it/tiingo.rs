//! Tiingo as a second source (issue 13): a security with `source: tiingo` is fetched from the
//! fake Tiingo (fake-yahoo's synthetic history on Tiingo's raw basis) and stored on the very
//! basis the Yahoo path stores, corporate actions and rebasing included; `market_data.source`
//! says which; the token never shows; a source that cannot serve a security is a config error.

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};
use fake_tiingo::{DEFAULT_TOKEN, FakeTiingo, Options, Scenario as TiingoScenario};
use fake_yahoo::{CorporateAction as Action, FakeYahoo, Scenario};
use serde_json::Value;

use crate::common::{Run, TestDb, fake, run, window};

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

const SPLIT: &str = "2024-06-10";

fn split_and_dividend() -> Vec<Action> {
    vec![
        Action::Dividend {
            date: d("2024-05-15"),
            amount: 0.5,
        },
        Action::Split {
            date: d(SPLIT),
            numerator: 4.0,
            denominator: 1.0,
        },
    ]
}

async fn fake_tiingo() -> FakeTiingo {
    FakeTiingo::start(Options::default()).await.unwrap()
}

/// A securities.yaml of NVDA (on `source`, `None`: no key) with quick retries.
fn nvda_config(dir: &Path, file_source: Option<&str>, source: Option<&str>) -> PathBuf {
    let mut yaml = String::new();
    if let Some(s) = file_source {
        yaml.push_str(&format!("source: {s}\n"));
    }
    yaml.push_str("securities:\n  stocks:\n    - symbol: \"NVDA\"\n      name: \"NVIDIA\"\n");
    if let Some(s) = source {
        yaml.push_str(&format!("      source: {s}\n"));
    }
    yaml.push_str("encoding:\n  days_back: 60\n  embedding_days: 5\n  batch_size: 2\n  max_retries: 0\n  request_timeout_secs: 5\n  requests_per_second: 100\n  retry_base_ms: 10\n  retry_max_ms: 50\n");
    let path = dir.join("securities.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs the job (no embeddings) against both fakes, with `token` as `TIINGO_API_KEY`.
async fn run_with(
    cfg: &Path,
    db: &TestDb,
    yahoo: &FakeYahoo,
    tiingo: &FakeTiingo,
    token: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--no-embeddings"];
    args.extend_from_slice(extra);
    let (y, t) = (yahoo.base_url(), tiingo.base_url());
    let mut all = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("YAHOO_BASE_URL", y.as_str()),
        ("TIINGO_BASE_URL", t.as_str()),
        ("TIINGO_API_KEY", token),
    ];
    all.extend_from_slice(env);
    run(&args, &all).await
}

/// Every stored bar of NVDA: the prices and returns (exact), the volume, the source.
async fn bars(db: &TestDb) -> Vec<(Value, i64, String)> {
    let rows: Vec<(Value, i64, String)> = sqlx::query_as(
        "SELECT jsonb_build_array(trade_date, open_price, high_price, low_price, close_price,
                                  adj_close, daily_return), volume, source
         FROM market_data WHERE symbol = 'NVDA' ORDER BY trade_date",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows
}

async fn actions(db: &TestDb) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT jsonb_build_array(ex_date, kind, numerator, denominator, amount)
         FROM corporate_actions WHERE symbol = 'NVDA' ORDER BY ex_date, kind",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// The Tiingo store equals the Yahoo store: prices, adjusted closes and returns to the digit,
/// volumes but for the rounding of raw volumes, the same corporate actions; the source differs.
async fn assert_same_basis(yahoo_db: &TestDb, tiingo_db: &TestDb) {
    let (ours, theirs) = (bars(tiingo_db).await, bars(yahoo_db).await);
    assert!(ours.len() > 50, "{} bars", ours.len());
    assert_eq!(ours.len(), theirs.len());
    for ((t, tv, ts), (y, yv, ys)) in ours.iter().zip(&theirs) {
        assert_eq!(t, y, "a Tiingo bar differs from the Yahoo bar");
        // A raw volume is whole shares: times the split factor it can differ from fake-yahoo's
        // adjusted (synthetic) volume by less than the factor.
        assert!((tv - yv).abs() <= 10, "volume {tv} vs {yv} on {t}");
        assert_eq!((ts.as_str(), ys.as_str()), ("tiingo", "yahoo"));
    }
    assert_eq!(actions(tiingo_db).await, actions(yahoo_db).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiingo_run_stores_the_yahoo_basis_including_a_split_and_a_dividend() {
    let (yahoo, tiingo) = (fake().await, fake_tiingo().await);
    yahoo.set_scenario("NVDA", Scenario::Actions(split_and_dividend()));
    tiingo.set_scenario("NVDA", TiingoScenario::Actions(split_and_dividend()));
    let dir = tempfile::tempdir().unwrap();
    let on_yahoo = nvda_config(dir.path(), None, None);
    let sub = tempfile::tempdir().unwrap();
    let on_tiingo = nvda_config(sub.path(), None, Some("tiingo"));
    let w = window("2024-03-01", "2024-07-31");

    let yahoo_db = TestDb::new().await;
    let r = run_with(&on_yahoo, &yahoo_db, &yahoo, &tiingo, "", &w, &[]).await;
    assert_eq!(r.code, 0, "{r:#?}");
    let tiingo_db = TestDb::new().await;
    let r = run_with(
        &on_tiingo,
        &tiingo_db,
        &yahoo,
        &tiingo,
        DEFAULT_TOKEN,
        &w,
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    let nvda = r.security("NVDA");
    assert_eq!(nvda["outcome"], "succeeded");
    assert_eq!(
        nvda["source"], "tiingo",
        "the summary (and runs.details) say where from"
    );
    assert!(
        yahoo.requests_for("NVDA") == 1,
        "Yahoo is not asked for a Tiingo security"
    );

    assert_same_basis(&yahoo_db, &tiingo_db).await;
    let stored = actions(&tiingo_db).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    // The close before the split is the raw close divided by 4, not the raw one.
    let raw = &tiingo.request_log()[0];
    assert!(
        raw.query["endDate"] >= Utc::now().date_naive().to_string(),
        "{raw:?}"
    );
    assert_eq!(raw.query["startDate"], "2024-03-01");
    // The token went in the header, not in the URL.
    assert_eq!(
        raw.authorization.as_deref(),
        Some(format!("Token {DEFAULT_TOKEN}").as_str())
    );
    assert!(!raw.uri.contains(DEFAULT_TOKEN), "{}", raw.uri);

    // An identical rerun writes nothing: the conversion is deterministic.
    let again = run_with(
        &on_tiingo,
        &tiingo_db,
        &yahoo,
        &tiingo,
        DEFAULT_TOKEN,
        &w,
        &[],
    )
    .await;
    assert_eq!(again.code, 0, "{again:#?}");
    assert_eq!(again.security("NVDA")["rows_written"], 0, "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_before_a_split_is_stored_on_todays_basis() {
    // The window ends before the split: Tiingo's answer up to today carries its factor.
    let (yahoo, tiingo) = (fake().await, fake_tiingo().await);
    let today = Utc::now().date_naive();
    yahoo.set_scenario(
        "NVDA",
        Scenario::ActionsAsOf {
            actions: split_and_dividend(),
            as_of: today,
        },
    );
    tiingo.set_scenario("NVDA", TiingoScenario::Actions(split_and_dividend()));
    let dir = tempfile::tempdir().unwrap();
    let on_yahoo = nvda_config(dir.path(), None, None);
    let sub = tempfile::tempdir().unwrap();
    let on_tiingo = nvda_config(sub.path(), Some("tiingo"), None);
    let w = window("2024-03-01", "2024-05-31");
    let (yahoo_db, tiingo_db) = (TestDb::new().await, TestDb::new().await);
    let r = run_with(&on_yahoo, &yahoo_db, &yahoo, &tiingo, "", &w, &[]).await;
    assert_eq!(r.code, 0, "{r:#?}");
    let r = run_with(
        &on_tiingo,
        &tiingo_db,
        &yahoo,
        &tiingo,
        DEFAULT_TOKEN,
        &w,
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_same_basis(&yahoo_db, &tiingo_db).await;
    // Only the dividend is in the window; the split after it is not an action of the window.
    assert_eq!(actions(&tiingo_db).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_seen_on_tiingo_rebases_the_history_like_a_fresh_yahoo_backfill() {
    let (yahoo, tiingo) = (fake().await, fake_tiingo().await);
    let split = vec![Action::Split {
        date: d(SPLIT),
        numerator: 10.0,
        denominator: 1.0,
    }];
    let dir = tempfile::tempdir().unwrap();
    let on_tiingo = nvda_config(dir.path(), None, Some("tiingo"));
    let db = TestDb::new().await;
    // Before the split (Tiingo's "today" is 2024-06-07): the history on the old basis.
    tiingo.set_scenario(
        "NVDA",
        TiingoScenario::ActionsAsOf {
            actions: split.clone(),
            as_of: d("2024-06-07"),
        },
    );
    let before = run_with(
        &on_tiingo,
        &db,
        &yahoo,
        &tiingo,
        DEFAULT_TOKEN,
        &window("2023-06-01", "2024-06-07"),
        &[],
    )
    .await;
    assert_eq!(before.code, 0, "{before:#?}");
    // After it: the run's answer carries the split, the whole history is rebased from Tiingo.
    tiingo.set_scenario("NVDA", TiingoScenario::Actions(split.clone()));
    let after = run_with(
        &on_tiingo,
        &db,
        &yahoo,
        &tiingo,
        DEFAULT_TOKEN,
        &window("2024-05-01", "2024-07-31"),
        &[],
    )
    .await;
    assert_eq!(after.code, 0, "{after:#?}");
    let rebased = after.security("NVDA")["rebased"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        rebased.contains("split 10:1 on 2024-06-10")
            && rebased.contains("history 2023-06-01..2024-04-30 rebased"),
        "{rebased}"
    );
    assert_eq!(yahoo.requests_for("NVDA"), 0, "the refetch goes to Tiingo");
    // What a fresh Yahoo backfill made after the split stores.
    yahoo.set_scenario("NVDA", Scenario::Actions(split));
    let fresh = TestDb::new().await;
    let sub = tempfile::tempdir().unwrap();
    let on_yahoo = nvda_config(sub.path(), None, None);
    let r = run_with(
        &on_yahoo,
        &fresh,
        &yahoo,
        &tiingo,
        "",
        &window("2023-06-01", "2024-07-31"),
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_same_basis(&fresh, &db).await;
}

/// Neither the token nor any part of it in what the binary printed.
fn assert_no_token(r: &Run, token: &str) {
    assert!(
        !r.stdout.contains(token) && !r.stderr.contains(token),
        "the token leaked: {r:#?}"
    );
    let fragment = &token[token.len() - 10..];
    assert!(
        !r.stdout.contains(fragment) && !r.stderr.contains(fragment),
        "part of the token leaked: {r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_never_appears_in_any_output() {
    let (yahoo, tiingo) = (fake().await, fake_tiingo().await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = nvda_config(dir.path(), None, Some("tiingo"));
    let db = TestDb::new().await;
    let debug = [("RUST_LOG", "debug")];
    let w = window("2024-03-01", "2024-03-29");

    // The dry run shows the source and where the key comes from, not the key.
    let dry = run_with(
        &cfg,
        &db,
        &yahoo,
        &tiingo,
        DEFAULT_TOKEN,
        &["--dry-run"],
        &debug,
    )
    .await;
    assert_eq!(dry.code, 0, "{dry:#?}");
    assert!(
        dry.stdout.contains("tiingo:") && dry.stdout.contains("key from $TIINGO_API_KEY"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("-> NVDA     tiingo NVIDIA  ["),
        "{}",
        dry.stdout
    );
    assert_no_token(&dry, DEFAULT_TOKEN);

    // A successful run, logging at debug (reqwest and hyper included).
    let ok = run_with(&cfg, &db, &yahoo, &tiingo, DEFAULT_TOKEN, &w, &debug).await;
    assert_eq!(ok.code, 0, "{ok:#?}");
    assert_no_token(&ok, DEFAULT_TOKEN);

    // A wrong token: 401, the security fails naming the variable, and neither token shows.
    let wrong = "wrong-token-abcdefghijklmnop";
    let refused = run_with(&cfg, &db, &yahoo, &tiingo, wrong, &w, &debug).await;
    assert_eq!(refused.code, 1, "{refused:#?}");
    let error = refused.security("NVDA")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("HTTP 401") && error.contains("TIINGO_API_KEY"),
        "{error}"
    );
    assert_no_token(&refused, wrong);
    assert_no_token(&refused, DEFAULT_TOKEN);

    // A server message that quotes the token has it replaced.
    tiingo.set_scenario(
        "NVDA",
        TiingoScenario::Body {
            status: 403,
            body: format!(r#"{{"detail":"token {DEFAULT_TOKEN} is disabled"}}"#),
        },
    );
    let quoted = run_with(&cfg, &db, &yahoo, &tiingo, DEFAULT_TOKEN, &w, &debug).await;
    assert_eq!(quoted.code, 1, "{quoted:#?}");
    assert!(
        quoted.security("NVDA")["error"]
            .as_str()
            .unwrap()
            .contains("token [redacted] is disabled"),
        "{quoted:#?}"
    );
    assert_no_token(&quoted, DEFAULT_TOKEN);

    // An unknown ticker and rate limiting: one line each, no token.
    tiingo.set_scenario("NVDA", TiingoScenario::NotFound);
    let missing = run_with(&cfg, &db, &yahoo, &tiingo, DEFAULT_TOKEN, &w, &debug).await;
    assert_eq!(missing.code, 1, "{missing:#?}");
    let error = missing.security("NVDA")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("Tiingo has no data for nvda") && error.contains("Ticker 'NVDA' not found"),
        "{error}"
    );
    assert_no_token(&missing, DEFAULT_TOKEN);
    tiingo.set_scenario(
        "NVDA",
        TiingoScenario::RateLimited {
            retry_after_secs: None,
        },
    );
    let limited = run_with(&cfg, &db, &yahoo, &tiingo, DEFAULT_TOKEN, &w, &debug).await;
    assert_eq!(limited.code, 1, "{limited:#?}");
    let error = limited.security("NVDA")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("HTTP 429") && error.contains("TIINGO_REQUESTS_PER_HOUR"),
        "{error}"
    );
    assert_no_token(&limited, DEFAULT_TOKEN);
    // Every request carried the token in its header only.
    for request in tiingo.request_log() {
        assert!(!request.uri.contains("token"), "{request:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_answer_stores_nothing_and_succeeds() {
    let (yahoo, tiingo) = (fake().await, fake_tiingo().await);
    tiingo.set_scenario("NVDA", TiingoScenario::Empty);
    let dir = tempfile::tempdir().unwrap();
    let cfg = nvda_config(dir.path(), None, Some("tiingo"));
    let db = TestDb::new().await;
    let r = run_with(
        &cfg,
        &db,
        &yahoo,
        &tiingo,
        DEFAULT_TOKEN,
        &window("2024-03-01", "2024-03-29"),
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.security("NVDA")["rows_fetched"], 0);
    assert_eq!(db.count("NVDA").await, 0);
}

/// A dry run of this securities.yaml, with these variables (no database needed).
async fn dry_run(yaml: &str, env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("securities.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut all = vec![("DATABASE_URL", "postgres://u@127.0.0.1:9/db")];
    all.extend_from_slice(env);
    run(
        &[
            "--config",
            path.to_str().unwrap(),
            "--dry-run",
            "--no-embeddings",
        ],
        &all,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_cannot_serve_a_security_is_a_config_error() {
    let key = [("TIINGO_API_KEY", DEFAULT_TOKEN)];
    // Per security.
    let r = dry_run(
        "securities:\n  indices:\n    - symbol: \"^GSPC\"\n      name: \"S&P 500\"\n      db_symbol: SPX\n      source: tiingo\n",
        &key,
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    let line = r.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("securities.yaml:6: securities.indices[0].source:")
            && line.contains("\"^GSPC\" is an index")
            && line.contains("source: yahoo"),
        "{line}"
    );
    // For the whole file: the entry is named, and where the default came from.
    let r = dry_run(
        "source: tiingo\nsecurities:\n  etfs:\n    - {symbol: SPY, name: SPDR}\n  crypto:\n    - {symbol: BTC-USD, name: Bitcoin, db_symbol: BTCUSD}\n",
        &key,
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    let line = r.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("securities.crypto[0].source:")
            && line.contains("crypto pair")
            && line.contains("source: tiingo on line 1"),
        "{line}"
    );
    // An unknown source name.
    let r = dry_run(
        "securities:\n  etfs:\n    - {symbol: SPY, name: SPDR, source: bloomberg}\n",
        &key,
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("allowed: yahoo, tiingo"), "{}", r.stderr);
    // A Tiingo security without TIINGO_API_KEY: the dry run shows the plan, then exits 2
    // naming the variable; a run exits 2 before doing anything.
    let yaml = "securities:\n  etfs:\n    - {symbol: SPY, name: SPDR, source: tiingo}\n    - {symbol: QQQ, name: Invesco}\n";
    let r = dry_run(yaml, &[]).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stdout.contains("(not set)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("-> SPY      tiingo SPDR  [")
            && r.stdout.contains("-> QQQ      yahoo  Invesco  ["),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("TIINGO_API_KEY is not set") && r.stderr.contains("(SPY)"),
        "{}",
        r.stderr
    );
    // A config on Yahoo only needs no key.
    let r = dry_run(
        "securities:\n  etfs:\n    - {symbol: SPY, name: SPDR}\n",
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(!r.stdout.contains("tiingo:"), "{}", r.stdout);
}

/// `check` with a security on Tiingo: one prices request with the token (never shown); a
/// wrong token fails the tiingo line with exit 1, a missing one with exit 2; Yahoo is not
/// asked for a security that is not on it.
#[tokio::test(flavor = "multi_thread")]
async fn check_asks_tiingo_for_a_tiingo_security_and_never_shows_the_token() {
    let db = TestDb::new().await;
    let (yahoo, tiingo) = (fake().await, fake_tiingo().await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = nvda_config(dir.path(), None, Some("tiingo"));
    let (y, t) = (yahoo.base_url(), tiingo.base_url());
    let check = |token: Option<&'static str>| {
        let cfg = cfg.to_str().unwrap().to_owned();
        let (db, y, t) = (db.url.clone(), y.clone(), t.clone());
        async move {
            let mut env = vec![
                ("DATABASE_URL", db.as_str()),
                ("YAHOO_BASE_URL", y.as_str()),
                ("TIINGO_BASE_URL", t.as_str()),
            ];
            if let Some(token) = token {
                env.push(("TIINGO_API_KEY", token));
            }
            run(&["--config", &cfg, "check", "--no-embeddings"], &env).await
        }
    };
    let r = check(Some(DEFAULT_TOKEN)).await;
    assert_eq!(r.code, 0, "{r:#?}");
    let line = |r: &Run, name: &str| {
        r.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} line: {}", r.stdout))
            .to_owned()
    };
    assert!(
        line(&r, "tiingo").starts_with("ok ") && line(&r, "tiingo").contains("nvda"),
        "{}",
        r.stdout
    );
    assert!(line(&r, "yahoo").contains("not checked"), "{}", r.stdout);
    assert_eq!(yahoo.requests_for("NVDA"), 0);
    assert_no_token(&r, DEFAULT_TOKEN);
    let wrong = "wrong-token-0123456789abcdef";
    let r = check(Some(wrong)).await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        line(&r, "tiingo").starts_with("FAIL") && line(&r, "tiingo").contains("401"),
        "{}",
        r.stdout
    );
    assert_no_token(&r, wrong);
    let r = check(None).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        line(&r, "tiingo").contains("TIINGO_API_KEY"),
        "{}",
        r.stdout
    );
}
