//! Shared test harness: a fresh PostgreSQL database per test, the fake Yahoo, and a way to run
//! the real `market-encoder` binary against both.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fake_yahoo::{FakeYahoo, Options};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// The server the suite runs against; `scripts/test.sh` exports it.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test, dropped (forcibly) when the test ends, pass or fail.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> Self {
        let admin = admin_url();
        let name = format!("me_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("cannot reach the test PostgreSQL at {admin}: {e}; run the suite with scripts/test.sh")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let url = with_database(&admin, &name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        Self { name, url, pool }
    }

    pub async fn count(&self, symbol: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM market_data WHERE symbol = $1")
            .bind(symbol)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn total_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM market_data")
            .fetch_one(&self.pool)
            .await
            .unwrap_or(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        let pool = self.pool.clone();
        // Drop cannot await; a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                pool.close().await;
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

pub fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

pub async fn fake() -> FakeYahoo {
    FakeYahoo::start(Options::default()).await.unwrap()
}

pub async fn fake_with_latency(latency: Duration) -> FakeYahoo {
    FakeYahoo::start(Options {
        latency,
        ..Options::default()
    })
    .await
    .unwrap()
}

/// `--from FROM --to TO`, for a job run's arguments (leaked: a test's few strings).
pub fn window(from: &str, to: &str) -> Vec<&'static str> {
    vec![
        "--from",
        Box::leak(from.to_owned().into_boxed_str()),
        "--to",
        Box::leak(to.to_owned().into_boxed_str()),
    ]
}

/// A securities.yaml of `n` stocks `{prefix}00`, `{prefix}01`, ... (symbol = db_symbol) with
/// this `encoding` section, for tests that need many securities.
pub fn numbered_config(dir: &Path, prefix: &str, n: usize, encoding: &str) -> PathBuf {
    let symbols: Vec<String> = (0..n).map(|i| format!("{prefix}{i:02}")).collect();
    let list: Vec<(&str, &str, &str)> = symbols
        .iter()
        .map(|s| ("stocks", s.as_str(), s.as_str()))
        .collect();
    config(dir, &list, encoding)
}

/// A securities.yaml with these (category, symbol, db_symbol) and quick retry settings.
pub fn config(dir: &Path, securities: &[(&str, &str, &str)], encoding: &str) -> PathBuf {
    config_with(dir, securities, encoding, "")
}

/// Like [`config`], followed by `extra` top-level YAML (e.g. a `features:` section).
pub fn config_with(
    dir: &Path,
    securities: &[(&str, &str, &str)],
    encoding: &str,
    extra: &str,
) -> PathBuf {
    let mut yaml = String::from("securities:\n");
    let mut categories: Vec<&str> = securities.iter().map(|s| s.0).collect();
    categories.dedup();
    for category in categories {
        yaml.push_str(&format!("  {category}:\n"));
        for (_, symbol, db) in securities.iter().filter(|s| s.0 == category) {
            yaml.push_str(&format!(
                "    - symbol: \"{symbol}\"\n      name: \"Test {symbol}\"\n      yahoo_symbol: \"{symbol}\"\n      db_symbol: \"{db}\"\n      enabled: true\n"
            ));
        }
    }
    yaml.push_str("encoding:\n");
    yaml.push_str(if encoding.is_empty() {
        "  days_back: 60\n  embedding_days: 30\n  batch_size: 4\n  max_retries: 2\n  request_timeout_secs: 2\n  requests_per_second: 100\n  retry_base_ms: 20\n  retry_max_ms: 3000\n  throttle_pause_secs: 1\n"
    } else {
        encoding
    });
    yaml.push_str(extra);
    let path = dir.join("securities.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The `{"summary": ...}` line the binary prints when stdout is not a terminal.
    pub fn summary(&self) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("{\"summary\""))
            .unwrap_or_else(|| {
                panic!(
                    "no summary line in stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            });
        serde_json::from_str::<serde_json::Value>(line).unwrap()["summary"].clone()
    }

    /// The summary's `index.documents_indexed`, the documents this run put into Chroma.
    pub fn documents_indexed(&self) -> u64 {
        self.summary()["index"]["documents_indexed"]
            .as_u64()
            .unwrap_or_else(|| {
                panic!(
                    "no index.documents_indexed in the summary:\n{}",
                    self.stdout
                )
            })
    }

    pub fn security(&self, db_symbol: &str) -> serde_json::Value {
        self.summary()["securities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["db_symbol"] == db_symbol)
            .cloned()
            .unwrap_or_else(|| panic!("{db_symbol} not in summary"))
    }
}

/// The binary with a clean environment: only what the test gives it, plus PATH.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_market-encoder"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_LEVEL", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

pub async fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(120), command(args, env).output())
        .await
        .expect("market-encoder did not finish within 120 s")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Runs the job for the securities in `config` against `db` and `yahoo`, without the embed
/// and index stages (tests of those use [`run_job_with`]).
pub async fn run_job(config: &Path, db: &TestDb, yahoo: &FakeYahoo, extra: &[&str]) -> Run {
    let mut args = vec!["--no-embeddings"];
    args.extend_from_slice(extra);
    run_job_with(config, db, yahoo, &args, &[]).await
}

/// Runs the job with extra flags and environment (e.g. CHROMA_URL, EMBEDDING_MODEL_DIR).
pub async fn run_job_with(
    config: &Path,
    db: &TestDb,
    yahoo: &FakeYahoo,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let config = config.to_str().unwrap();
    let mut args = vec!["--config", config];
    args.extend_from_slice(extra);
    let base_url = yahoo.base_url();
    let mut all_env = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("YAHOO_BASE_URL", base_url.as_str()),
    ];
    all_env.extend_from_slice(env);
    run(&args, &all_env).await
}

/// Every role of the default `features` section, under the db_symbols it expects.
pub const ROLE_SECURITIES: [(&str, &str, &str); 11] = [
    ("etfs", "QQQ", "QQQ"),
    ("etfs", "ARKK", "ARKK"),
    ("etfs", "SPY", "SPY"),
    ("etfs", "IWM", "IWM"),
    ("bonds", "HYG", "HYG"),
    ("bonds", "TLT", "TLT"),
    ("bonds", "LQD", "LQD"),
    ("commodities", "GLD", "GLD"),
    ("currencies", "DX-Y.NYB", "DXY"),
    ("crypto", "BTC-USD", "BTCUSD"),
    ("volatility", "^VIX", "VIX"),
];
