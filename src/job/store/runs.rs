//! The `runs` ledger and the run lock: a run holds its advisory lock on a connection of its
//! own for its whole length, and has one row in `runs` from start to end.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tracing::warn;
use uuid::Uuid;

use super::{Store, StoreError, query_error};
use crate::domain::DateWindow;

/// Key of the advisory lock that keeps two runs from interleaving ("mkt-enc" in ASCII).
pub const RUN_LOCK_KEY: i64 = 0x006d_6b74_2d65_6e63;

/// An advisory lock granted on this database, in `pg_locks` as `l` (a bigint key is split into
/// `classid` = its high and `objid` = its low 32 bits, with `objsubid` 1).
const HELD: &str = "l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";
/// `l` is the unsharded run's lock (`$1` = [`RUN_LOCK_KEY`]).
const UNSHARDED: &str =
    "(l.classid = ($1::int8 >> 32)::oid AND l.objid = ($1::int8 & 4294967295)::oid)";
/// `l` is a shard's run lock: its top byte is `S` ([`crate::domain::Shard::lock_key`]).
const SHARD: &str = "((l.classid::int8 >> 24) = 83)";

/// How one run ended, as recorded in `runs.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Succeeded,
    Partial,
    Failed,
    Interrupted,
}

impl RunOutcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// The end-of-run figures written to `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord<'a, D: Serialize> {
    pub outcome: RunOutcome,
    pub securities_total: usize,
    pub securities_ok: usize,
    pub securities_failed: usize,
    pub securities_skipped: usize,
    pub rows_written: u64,
    /// Rows of `market_features` written by the features stage.
    pub features_written: u64,
    pub details: &'a D,
    /// Bars dropped by validation, by reason (a JSON object).
    pub dropped: serde_json::Value,
    /// Requests sent, the budget, the throttle's pauses (a JSON object).
    pub requests: serde_json::Value,
    pub errors: &'a std::collections::BTreeMap<String, String>,
}

/// Held while a run works; dropping the connection releases the lock even if we crash.
pub struct RunLock {
    conn: PgConnection,
    key: i64,
}

impl RunLock {
    /// `SELECT 1` on the lock's connection, within 2 s: the run's heartbeat, which notices a
    /// database that died between statements within a second or two.
    pub async fn ping(&mut self) -> Result<(), StoreError> {
        let ping = sqlx::query("SELECT 1").execute(&mut self.conn);
        match tokio::time::timeout(std::time::Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(StoreError::Query {
                doing: "checking the run lock's connection",
                source,
            }),
            Err(_) => Err(StoreError::Query {
                doing: "checking the run lock's connection",
                source: sqlx::Error::Io(std::io::ErrorKind::TimedOut.into()),
            }),
        }
    }

    pub async fn release(mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut self.conn)
            .await
            .map_err(query_error("releasing the run lock"))?;
        self.conn
            .close()
            .await
            .map_err(query_error("closing the lock connection"))
    }
}

/// One row of the `runs` ledger as `GET /status` shows it (the per-security `details` left
/// out: they can be long; `errors` names every failure).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    /// `None` while the run is going (or if its process died before recording the end).
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// `running`, `succeeded`, `partial`, `failed` or `interrupted`.
    pub outcome: String,
    pub window_from: NaiveDate,
    pub window_to: NaiveDate,
    pub securities_total: i32,
    pub securities_ok: i32,
    pub securities_failed: i32,
    pub rows_written: i64,
    pub features_written: i64,
    /// `{"SPY": "message", "(features)": "...", "(index)": "..."}`: the failures only.
    pub errors: serde_json::Value,
}

/// Totals over the whole `runs` ledger, for `GET /metrics`: right across restarts and
/// whichever process (a CronJob pod, the service) did the runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTotals {
    /// Runs per outcome (`running` included), only outcomes that occur.
    pub runs: Vec<(String, i64)>,
    pub rows_written: i64,
    pub features_written: i64,
    pub securities_ok: i64,
    pub securities_failed: i64,
    /// Finished runs and their summed wall time.
    pub finished_runs: i64,
    pub finished_seconds: f64,
    /// The most recently started finished run: its wall time and when it finished.
    pub last_run_seconds: Option<f64>,
    pub last_run_finished: Option<f64>,
    /// When the last `succeeded` run finished (Unix seconds).
    pub last_success: Option<f64>,
}

impl Store {
    /// Takes the run lock `key` ([`RUN_LOCK_KEY`], or a shard's
    /// [`crate::domain::Shard::lock_key`]) on its own connection, or says another run has it.
    /// The unsharded run also stands back while any shard's lock is held. Holding the lock,
    /// it marks every `running` row whose lock nobody holds `abandoned` (a
    /// run killed by SIGKILL, or whose database died), and logs it.
    #[tracing::instrument(name = "db.lock", skip_all, err(Display))]
    pub async fn lock_run(&self, key: i64) -> Result<RunLock, StoreError> {
        let mut conn = self.connect_one().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .map_err(query_error("taking the run lock"))?;
        // An unsharded run (the CronJob, the service) does not start while shards of a job
        // run: it would do their work again beside them. Shards do not wait for it.
        let shards_running = locked
            && key == RUN_LOCK_KEY
            && sqlx::query_scalar::<_, bool>(AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE {HELD} AND {SHARD})"
            )))
            .fetch_one(&mut conn)
            .await
            .map_err(query_error("looking for running shards"))?;
        if !locked || shards_running {
            let _ = conn.close().await;
            return Err(StoreError::Locked {
                target: self.target.clone(),
            });
        }
        let abandoned: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE runs r SET outcome = 'abandoned', finished_at = now()
             WHERE r.outcome = 'running' AND NOT EXISTS (
                 SELECT 1 FROM pg_locks l WHERE {HELD} AND l.pid <> pg_backend_pid()
                   AND l.classid = (COALESCE(r.lock_key, $1) >> 32)::oid
                   AND l.objid = (COALESCE(r.lock_key, $1) & 4294967295)::oid)
             RETURNING r.id, r.started_at"
        )))
        .bind(RUN_LOCK_KEY)
        .fetch_all(&mut conn)
        .await
        .map_err(query_error("marking abandoned runs"))?;
        for (id, started_at) in &abandoned {
            warn!(run_id = %id, %started_at, "marked run abandoned: it was still 'running' but no process holds its lock (killed, or its database connection died)");
        }
        Ok(RunLock { conn, key })
    }

    /// Records a run as started, with the lock it holds; returns its id.
    #[tracing::instrument(name = "db.start_run", skip_all, err(Display))]
    pub async fn start_run(
        &self,
        lock: &RunLock,
        window: &DateWindow,
        total: usize,
    ) -> Result<Uuid, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO runs (window_from, window_to, securities_total, lock_key)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(window.from())
        .bind(window.to())
        .bind(i32::try_from(total).unwrap_or(i32::MAX))
        .bind(lock.key)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("recording the start of the run"))
    }

    /// Records how a run ended.
    #[tracing::instrument(name = "db.finish_run", skip_all, fields(run_id = %id), err(Display))]
    pub async fn finish_run<D: Serialize + Sync>(
        &self,
        id: Uuid,
        record: &RunRecord<'_, D>,
    ) -> Result<(), StoreError> {
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        sqlx::query(
            "UPDATE runs SET finished_at = now(), outcome = $2, securities_total = $3,
                 securities_ok = $4, securities_failed = $5, rows_written = $6,
                 details = $7, errors = $8, features_written = $9, securities_skipped = $10,
                 dropped = $11, requests = $12
             WHERE id = $1",
        )
        .bind(id)
        .bind(record.outcome.as_str())
        .bind(count(record.securities_total))
        .bind(count(record.securities_ok))
        .bind(count(record.securities_failed))
        .bind(i64::try_from(record.rows_written).unwrap_or(i64::MAX))
        .bind(Json(record.details))
        .bind(Json(record.errors))
        .bind(i64::try_from(record.features_written).unwrap_or(i64::MAX))
        .bind(count(record.securities_skipped))
        .bind(Json(&record.dropped))
        .bind(Json(&record.requests))
        .execute(&self.pool)
        .await
        .map_err(query_error("recording the end of the run"))?;
        Ok(())
    }

    /// The last `limit` runs, newest first; none before migrations ran.
    #[tracing::instrument(name = "db.recent_runs", skip(self), err(Display))]
    pub async fn recent_runs(&self, limit: u32) -> Result<Vec<RunRow>, StoreError> {
        if !self.has_runs_table().await? {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, started_at, finished_at,
                    (extract(epoch FROM finished_at - started_at) * 1000)::int8,
                    outcome, window_from, window_to, securities_total, securities_ok,
                    securities_failed, rows_written, features_written, errors
             FROM runs ORDER BY started_at DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading the runs"))?;
        rows.iter()
            .map(|r| {
                let errors: Json<serde_json::Value> = r.try_get(12)?;
                Ok(RunRow {
                    id: r.try_get(0)?,
                    started_at: r.try_get(1)?,
                    finished_at: r.try_get(2)?,
                    duration_ms: r.try_get(3)?,
                    outcome: r.try_get(4)?,
                    window_from: r.try_get(5)?,
                    window_to: r.try_get(6)?,
                    securities_total: r.try_get(7)?,
                    securities_ok: r.try_get(8)?,
                    securities_failed: r.try_get(9)?,
                    rows_written: r.try_get(10)?,
                    features_written: r.try_get(11)?,
                    errors: errors.0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("reading the runs"))
    }

    /// Totals over every recorded run; all zero before migrations ran.
    #[tracing::instrument(name = "db.run_totals", skip_all, err(Display))]
    pub async fn run_totals(&self) -> Result<RunTotals, StoreError> {
        if !self.has_runs_table().await? {
            return Ok(RunTotals::default());
        }
        let runs: Vec<(String, i64)> =
            sqlx::query_as("SELECT outcome, count(*) FROM runs GROUP BY outcome ORDER BY outcome")
                .fetch_all(&self.pool)
                .await
                .map_err(query_error("counting runs"))?;
        let row = sqlx::query(
            "SELECT coalesce(sum(rows_written), 0)::int8,
                    coalesce(sum(features_written), 0)::int8,
                    coalesce(sum(securities_ok), 0)::int8,
                    coalesce(sum(securities_failed), 0)::int8,
                    count(finished_at),
                    coalesce(sum(extract(epoch FROM finished_at - started_at)), 0)::float8,
                    (SELECT extract(epoch FROM finished_at - started_at)::float8 FROM runs
                     WHERE finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1),
                    (SELECT extract(epoch FROM finished_at)::float8 FROM runs
                     WHERE finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1),
                    (SELECT extract(epoch FROM max(finished_at))::float8 FROM runs
                     WHERE outcome = 'succeeded')
             FROM runs",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("summing the runs"))?;
        let totals = |row: PgRow| {
            Ok(RunTotals {
                runs,
                rows_written: row.try_get(0)?,
                features_written: row.try_get(1)?,
                securities_ok: row.try_get(2)?,
                securities_failed: row.try_get(3)?,
                finished_runs: row.try_get(4)?,
                finished_seconds: row.try_get(5)?,
                last_run_seconds: row.try_get(6)?,
                last_run_finished: row.try_get(7)?,
                last_success: row.try_get(8)?,
            })
        };
        totals(row).map_err(query_error("summing the runs"))
    }

    /// Whether some session (this process, a CronJob pod, anyone) holds a run lock on this
    /// database now, the unsharded run's or any shard's.
    #[tracing::instrument(name = "db.run_lock_held", skip_all, err(Display))]
    pub async fn run_lock_held(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE {HELD} AND ({UNSHARDED} OR {SHARD}))"
        )))
        .bind(RUN_LOCK_KEY)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("looking for the run lock"))
    }
}
