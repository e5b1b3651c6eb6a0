//! The run ledger and the locks around it: a run killed by SIGKILL leaves its row `running`,
//! and the next run marks it `abandoned`; the shards of one job compute the cross-asset
//! features one after the other and end with the features one unsharded run computes.

use std::time::Duration;

use crate::common::{ROLE_SECURITIES, TestDb, command, config_with, fake, fake_with_latency, run};
use market_encoder::job::store::FEATURES_LOCK_KEY;

const FROM: &str = "2024-05-01";
const TO: &str = "2024-07-31";

async fn outcomes(db: &TestDb) -> Vec<(String, bool)> {
    sqlx::query_as("SELECT outcome, finished_at IS NOT NULL FROM runs ORDER BY started_at")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_run_is_marked_abandoned_by_the_next_run() {
    let db = TestDb::new().await;
    let yahoo = fake_with_latency(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let securities: Vec<(String, String)> = (0..8)
        .map(|i| (format!("K{i:02}"), format!("K{i:02}")))
        .collect();
    let securities: Vec<(&str, &str, &str)> = securities
        .iter()
        .map(|(s, d)| ("stocks", s.as_str(), d.as_str()))
        .collect();
    let cfg = config_with(
        dir.path(),
        &securities,
        "  batch_size: 1\n  requests_per_second: 100\n",
        "",
    );
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("YAHOO_BASE_URL", &yahoo.base_url()),
    ];
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--no-embeddings",
        "--from",
        FROM,
        "--to",
        TO,
    ];
    let mut child = command(&args, &env).spawn().unwrap();
    // Wait for its `runs` row, then kill it the way an OOM kill or a node loss does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let running: i64 =
            sqlx::query_scalar("SELECT count(*) FROM runs WHERE outcome = 'running'")
                .fetch_one(&db.pool)
                .await
                .unwrap_or(0);
        if running == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert_eq!(outcomes(&db).await, [("running".to_owned(), false)]);

    let next = run(&args, &env).await;
    assert_eq!(next.code, 0, "{next:#?}");
    assert!(
        next.stderr.contains("marked run abandoned"),
        "the next run says so in its log: {}",
        next.stderr
    );
    assert_eq!(
        outcomes(&db).await,
        [
            ("abandoned".to_owned(), true),
            ("succeeded".to_owned(), true)
        ]
    );
    // A third run finds nothing to mark.
    let third = run(&args, &env).await;
    assert_eq!(third.code, 0, "{third:#?}");
    assert!(
        !third.stderr.contains("marked run abandoned"),
        "{}",
        third.stderr
    );
}

/// `(trade_date, feature, value)` of every stored feature, in order.
async fn features(db: &TestDb) -> Vec<(chrono::NaiveDate, String, Option<f64>)> {
    sqlx::query_as("SELECT trade_date, feature, value FROM market_features ORDER BY 1, 2")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shards_in_parallel_store_the_features_of_one_run() {
    let yahoo = fake_with_latency(Duration::from_millis(50)).await;
    let base_url = yahoo.base_url();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(
        dir.path(),
        &ROLE_SECURITIES,
        "  requests_per_second: 100\n",
        "",
    );
    let cfg = cfg.to_str().unwrap();
    let args = |shard: Option<&'static str>| {
        let mut args = vec![
            "--config",
            cfg,
            "--no-embeddings",
            "--from",
            FROM,
            "--to",
            TO,
        ];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        args
    };

    let whole = TestDb::new().await;
    let env = [
        ("DATABASE_URL", whole.url.as_str()),
        ("YAHOO_BASE_URL", base_url.as_str()),
    ];
    let one = run(&args(None), &env).await;
    assert_eq!(one.code, 0, "{one:#?}");
    let expected = features(&whole).await;
    assert!(expected.iter().filter(|(_, _, v)| v.is_some()).count() > 100);

    // Three rounds: the interleaving of the two shards differs from round to round.
    for round in 0..3 {
        let sharded = TestDb::new().await;
        let env = [
            ("DATABASE_URL", sharded.url.as_str()),
            ("YAHOO_BASE_URL", base_url.as_str()),
        ];
        let (zero, one) = (args(Some("0/2")), args(Some("1/2")));
        let (a, b) = tokio::join!(run(&zero, &env), run(&one, &env));
        assert_eq!(a.code, 0, "round {round}: {a:#?}");
        assert_eq!(b.code, 0, "round {round}: {b:#?}");
        assert_eq!(features(&sharded).await, expected, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_features_stage_waits_for_the_features_lock() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let base_url = yahoo.base_url();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(
        dir.path(),
        &ROLE_SECURITIES,
        "  requests_per_second: 100\n",
        "",
    );
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("YAHOO_BASE_URL", base_url.as_str()),
    ];
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--no-embeddings",
        "--from",
        FROM,
        "--to",
        TO,
    ];
    let m = run(&["migrate"], &env[..1]).await;
    assert_eq!(m.code, 0, "{m:#?}");
    // Another shard's features stage holds the lock.
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(FEATURES_LOCK_KEY)
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut child = command(&args, &env).spawn().unwrap();
    // Every price gets stored meanwhile; the features wait for the lock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stored: i64 = sqlx::query_scalar("SELECT count(DISTINCT symbol) FROM indicators")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if stored == ROLE_SECURITIES.len() as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prices were not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished while the features lock was held"
    );
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM market_features")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(written, 0);
    holder.rollback().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the run did not finish once the lock was free")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM market_features")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(written > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sharded_run_counts_as_a_run_in_progress() {
    let db = TestDb::new().await;
    let m = run(&["migrate"], &[("DATABASE_URL", db.url.as_str())]).await;
    assert_eq!(m.code, 0, "{m:#?}");
    let settings = market_encoder::config::env::DatabaseSettings::from_env(
        &market_encoder::config::env::EnvValue::from_pairs(&[("DATABASE_URL", db.url.as_str())]),
    )
    .unwrap();
    let store = market_encoder::job::store::Store::connect(&settings, 2)
        .await
        .unwrap();
    assert!(!store.run_lock_held().await.unwrap());
    let shard = market_encoder::domain::Shard::new(1, 4).unwrap();
    let lock = store.lock_run(shard.lock_key()).await.unwrap();
    assert!(
        store.run_lock_held().await.unwrap(),
        "/metrics and /collect see the shard"
    );
    // The unsharded run (the CronJob's, the service's) stands back while a shard runs.
    let unsharded = store
        .lock_run(market_encoder::job::store::RUN_LOCK_KEY)
        .await
        .err()
        .expect("an unsharded run must not start beside a shard");
    assert!(
        unsharded.to_string().contains("holds the run lock"),
        "{unsharded}"
    );
    lock.release().await.unwrap();
    assert!(!store.run_lock_held().await.unwrap());
    store
        .lock_run(market_encoder::job::store::RUN_LOCK_KEY)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}
