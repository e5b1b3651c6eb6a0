//! The database dying under a running job, on a PostgreSQL of the test's own (started and
//! SIGKILLed by the test, never the shared one): the run stops at the first failing statement,
//! sends no more Yahoo requests, leaves no partial series, exits 3 within seconds naming the
//! target and the cause; the next run completes and marks the orphaned row.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;

use crate::common::{command, config, fake_with_latency, numbered_config, run};
use crate::own_pg::OwnPostgres;

const SECURITIES: usize = 60;
const WINDOW: [&str; 4] = ["--from", "2024-05-01", "--to", "2024-07-31"];
const BARS: i64 = 66;

async fn stored(url: &str) -> Vec<(String, i64)> {
    let Ok(pool) = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect(url)
        .await
    else {
        return Vec::new();
    };
    let rows =
        sqlx::query_as("SELECT symbol, count(*) FROM market_data GROUP BY symbol ORDER BY symbol")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_killed_mid_run_exits_3_within_seconds_and_the_next_run_completes() {
    let mut pg = OwnPostgres::start();
    let url = pg.url();
    let yahoo = fake_with_latency(Duration::from_millis(150)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = numbered_config(
        dir.path(),
        "L",
        SECURITIES,
        "  batch_size: 2\n  max_retries: 1\n  requests_per_second: 100\n  retry_base_ms: 20\n  retry_max_ms: 200\n",
    );
    let cfg = cfg.to_str().unwrap().to_owned();
    let base = yahoo.base_url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("YAHOO_BASE_URL", base.as_str()),
    ];
    let mut args = vec!["--config", cfg.as_str(), "--no-embeddings"];
    args.extend_from_slice(&WINDOW);
    let child = command(&args, &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Let a few securities be stored, then kill the server with everything in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(&url).await.len() < 3 {
        assert!(Instant::now() < deadline, "no security stored within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests_at_kill = yahoo.requests_total();
    pg.kill();
    let killed = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the job exits after the database dies")
        .unwrap();
    let took = killed.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "exit {took:?} after the kill (target < 10 s)"
    );
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!(
            "lost PostgreSQL at postgres://postgres@127.0.0.1:{}/postgres",
            pg.port
        )) && last.contains("connection refused")
            && last.contains("the next run marks run")
            && last.contains("abandoned"),
        "{last}"
    );
    // No more Yahoo requests than those already in flight (fetch and store, batch 2 each).
    let after = yahoo.requests_total() - requests_at_kill;
    assert!(after <= 4, "{after} requests sent after the kill");

    // The server comes back: what was stored is whole, and the next run completes.
    pg.restart();
    for (symbol, bars) in stored(&url).await {
        assert_eq!(bars, BARS, "{symbol} is partial");
    }
    let mut args = vec!["--config", cfg.as_str(), "--no-embeddings"];
    args.extend_from_slice(&WINDOW);
    let r = run(&args, &env).await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(stored(&url).await.len(), SECURITIES);
    let pool = PgPoolOptions::new().connect(&url).await.unwrap();
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM runs ORDER BY started_at")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(outcomes, ["abandoned", "succeeded"]);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_at_start_is_reported_as_such_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://me:hunter2@127.0.0.1:{port}/db");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    let started = Instant::now();
    let r = run(
        &["--config", cfg.to_str().unwrap(), "--no-embeddings"],
        &[("DATABASE_URL", url.as_str())],
    )
    .await;
    assert_eq!(r.code, 3, "{r:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        r.stderr.contains(&format!("cannot connect to PostgreSQL at postgres://me:[redacted]@127.0.0.1:{port}/db: connection refused")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("hunter2"));
    // A bad timeout setting is a usage error naming the variable.
    let r = run(
        &["--config", cfg.to_str().unwrap(), "--no-embeddings"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("DB_CONNECT_TIMEOUT_SECS", "0"),
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("DB_CONNECT_TIMEOUT_SECS"), "{}", r.stderr);
}
