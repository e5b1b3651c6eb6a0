//! Yahoo blocking a whole run: the fake throttles every request after the first N (as plain
//! text, HTML, an HTML outage page with HTTP 200, an empty 200), and the run pauses, stops
//! sending within its bound, keeps what it stored, skips the rest with exit 1, and a rerun
//! after the block lifts completes.

use crate::common::{TestDb, config, fake, numbered_config, run_job};
use fake_yahoo::{Scenario, Throttling};
use serde_json::Value;

const WINDOW: [&str; 4] = ["--from", "2024-05-01", "--to", "2024-07-31"];
/// Weekdays in WINDOW.
const BARS: i64 = 66;
const SECURITIES: usize = 12;
/// Requests that get through before the block.
const THROUGH: usize = 4;
const AFTER: usize = 3;
const BATCH: usize = 2;
const MAX_PAUSES: usize = 1;

fn throttled_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    numbered_config(
        dir,
        "S",
        SECURITIES,
        &format!(
            "  batch_size: {BATCH}\n  max_retries: 2\n  requests_per_second: 100\n  retry_base_ms: 20\n  retry_max_ms: 200\n  throttle_after: {AFTER}\n  throttle_pause_secs: 1\n  throttle_max_pauses: {MAX_PAUSES}\n{extra}"
        ),
    )
}

async fn stored_securities(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(DISTINCT symbol) FROM market_data")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_run_pauses_stops_within_its_bound_keeps_its_prices_and_a_rerun_completes() {
    for kind in [
        Throttling::PlainText,
        Throttling::Html,
        Throttling::OutagePage,
        Throttling::EmptyBody,
    ] {
        let db = TestDb::new().await;
        let yahoo = fake().await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = throttled_config(dir.path(), "");
        yahoo.throttle_after(THROUGH, kind);
        let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
        assert_eq!(r.code, 1, "{kind:?}: {r:#?}");
        // The requests that got through were stored, whole.
        let ok = r.summary()["securities_ok"].as_u64().unwrap();
        assert_eq!(ok, THROUGH as u64, "{kind:?}: {r:#?}");
        assert_eq!(stored_securities(&db).await, THROUGH as i64, "{kind:?}");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM market_data")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(rows, THROUGH as i64 * BARS, "{kind:?}");
        // Within the bound: `after` throttled answers in a row (plus those already in
        // flight) pause the run, then one probe per pause; then nothing more is sent.
        let sent = yahoo.requests_total();
        let bound = THROUGH + AFTER + BATCH + MAX_PAUSES;
        assert!(sent <= bound, "{kind:?}: {sent} requests, bound {bound}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            yahoo.requests_total(),
            sent,
            "nothing is sent after the run"
        );
        let summary = r.summary();
        assert_eq!(
            summary["requests"]["requests_sent"].as_u64(),
            Some(sent as u64)
        );
        assert_eq!(
            summary["requests"]["pauses"].as_u64(),
            Some(MAX_PAUSES as u64)
        );
        // Every other security ends skipped (rate-limited), none failed.
        let skipped = (SECURITIES - THROUGH) as u64;
        assert_eq!(
            summary["securities_skipped"].as_u64(),
            Some(skipped),
            "{r:#?}"
        );
        assert_eq!(summary["securities_failed"].as_u64(), Some(0), "{r:#?}");
        for s in summary["securities"].as_array().unwrap() {
            if s["outcome"] == "skipped" {
                let e = s["error"].as_str().unwrap();
                assert!(
                    e.starts_with("skipped (rate-limited)") && e.contains("rerun after"),
                    "{e}"
                );
            } else {
                assert_eq!(s["outcome"], "succeeded", "{s}");
            }
        }
        assert!(
            r.stderr.contains(&format!(
                "market-encoder: {skipped} of {SECURITIES} securities skipped (rate-limited)"
            )) && r.stderr.contains("rerun after"),
            "{}",
            r.stderr
        );
        let (outcome, skipped_col, requests, errors): (String, i32, Value, Value) =
            sqlx::query_as("SELECT outcome, securities_skipped, requests, errors FROM runs")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!((outcome.as_str(), skipped_col), ("partial", skipped as i32));
        assert_eq!(requests["pauses"].as_u64(), Some(MAX_PAUSES as u64));
        assert!(requests["retry_at"].is_string(), "{requests}");
        assert!(
            errors["(fetch)"]
                .as_str()
                .unwrap()
                .contains("skipped (rate-limited)")
        );

        // The block lifts: the rerun fetches the rest and succeeds.
        yahoo.stop_throttling();
        let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
        assert_eq!(r.code, 0, "{kind:?}: {r:#?}");
        assert_eq!(stored_securities(&db).await, SECURITIES as i64);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_budget_bounds_a_run() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = throttled_config(dir.path(), "  max_requests: 5\n");
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert_eq!(yahoo.requests_total(), 5);
    assert_eq!(stored_securities(&db).await, 5);
    let summary = r.summary();
    assert_eq!(summary["securities_skipped"].as_u64(), Some(7));
    let skipped = r.security("S11");
    assert!(
        skipped["error"]
            .as_str()
            .unwrap()
            .contains("request budget is spent (5 requests, encoding.max_requests)"),
        "{skipped}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_security_answered_429_forever_pauses_the_run_then_is_skipped() {
    // Yahoo never throttles one symbol alone: a lone 429 stream reads as a blocked run.
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("stocks", "ZZZZ", "ZZZZ")], "");
    yahoo.set_scenario(
        "ZZZZ",
        Scenario::RateLimited {
            retry_after_secs: None,
        },
    );
    let r = run_job(&cfg, &db, &yahoo, &WINDOW).await;
    assert_eq!(r.code, 1, "{r:#?}");
    // throttle_after 3 (default), throttle_max_pauses 2 (default): 3 answers, then one probe
    // after each pause, the last of which stops the run.
    assert_eq!(yahoo.requests_for("ZZZZ"), 5, "{r:#?}");
    assert_eq!(r.security("ZZZZ")["outcome"], "skipped");
    assert!(
        r.elapsed >= std::time::Duration::from_secs(2),
        "two pauses of 1 s"
    );
}
