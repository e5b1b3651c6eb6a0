//! The job's PostgreSQL connections set `TCP_NODELAY` (the patched sqlx-core in `vendor/`):
//! without it, rustls's handshake flights and every statement sent in more than one write wait
//! for the server's delayed ACK, at least 40 ms on Linux, twice per TLS connection (issue 12:
//! a third of the backfill's time). Remove the patch and this test fails.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::common;

/// The Linux minimum delayed-ACK time (`TCP_DELACK_MIN`): what an unpatched TLS connection
/// waits at least twice.
const DELAYED_ACK: Duration = Duration::from_millis(40);

#[tokio::test]
async fn tls_connections_do_not_wait_for_delayed_acks() {
    let url = common::admin_url();
    let mut probe = PgConnection::connect(&url).await.unwrap();
    let tls: bool = sqlx::query_scalar(
        "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
    )
    .fetch_one(&mut probe)
    .await
    .unwrap();
    probe.close().await.unwrap();
    if !tls {
        // A server without TLS (e.g. one scripts/lib.sh started) has no handshake to stall.
        eprintln!("skipped: the test PostgreSQL offers no TLS");
        return;
    }
    // The fastest of several connections: load on the machine can slow every one of them,
    // but none that waits for a delayed ACK twice can come in under one.
    let mut fastest = Duration::MAX;
    for _ in 0..8 {
        let started = Instant::now();
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
        fastest = fastest.min(started.elapsed());
        conn.close().await.unwrap();
    }
    assert!(
        fastest < DELAYED_ACK,
        "the fastest of 8 TLS connections took {fastest:?}: at least one delayed ACK ({DELAYED_ACK:?}); is TCP_NODELAY set (vendor/README.md)?"
    );
}
