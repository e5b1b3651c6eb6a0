//! The store: PostgreSQL through sqlx, and nothing else. SQL only: it reads and writes rows,
//! and never calls a compute stage (`analyze`, `narrate`, `features` hand it their results).
//! One file per table group: [`runs`] (the ledger and the run lock), [`prices`]
//! (`market_data`, `securities`), [`indicators`], [`documents`], [`features`]
//! (`market_features`).
//!
//! Queries are checked at run time, not with `query!` at compile time: see ARCHITECTURE.md
//! ("Why runtime-checked SQL"). Every statement here is exercised by the integration tests
//! against a real PostgreSQL.

mod actions;
mod copy;
mod documents;
mod features;
mod indicators;
mod prices;
mod runs;

pub use documents::PendingDocument;
pub use features::{FEATURES_LOCK_KEY, FeatureInputs, FeaturesTx, StoredFeature};
pub use indicators::StoredSeries;
pub use prices::{CloseWindow, StoredBar, Written, daily_return};
pub use runs::{RUN_LOCK_KEY, RunLock, RunOutcome, RunRecord, RunRow, RunTotals};

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::config::env::{DatabaseSettings, SettingsError};

/// Migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot connect to PostgreSQL at {target}: {cause}; check DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD (or DATABASE_URL) and that the server is up"
    )]
    Connect {
        target: String,
        /// `connection refused`, `timed out after 5 s`, `authentication failed ...`.
        cause: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "cannot connect to PostgreSQL at {target}: {source}; check DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD (or DATABASE_URL)"
    )]
    Settings {
        target: String,
        #[source]
        source: SettingsError,
    },
    #[error(
        "cannot apply migrations to {target}: {source}; run `market-encoder migrate` to see the failing migration"
    )]
    Migrate {
        target: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error(
        "lost PostgreSQL at {target} while {doing}: {cause}; start the database (or fix the network) and rerun"
    )]
    Lost {
        target: String,
        doing: String,
        cause: String,
    },
    #[error("database error while {doing}: {source}")]
    Query {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "another market-encoder run holds the run lock on {target}; this run did nothing (wait for it, or see the `runs` table)"
    )]
    Locked { target: String },
}

impl StoreError {
    /// Whether the database itself is unreachable (rather than one statement failing).
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Lost { .. })
    }

    /// Whether this failure may be the connection itself (the server gone, the network cut,
    /// no connection within the acquire timeout), rather than one statement's: the job then
    /// checks the server with [`Store::probe`].
    #[must_use]
    pub fn may_be_connection_loss(&self) -> bool {
        match self {
            Self::Query { source, .. } | Self::Connect { source, .. } => connection_level(source),
            Self::Lost { .. } => true,
            _ => false,
        }
    }
}

/// sqlx errors of the connection rather than of a statement.
fn connection_level(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// Why connecting failed, in the words an operator acts on.
fn cause(e: &sqlx::Error, connect_timeout: Duration) -> String {
    if let sqlx::Error::Io(io) = e {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (nothing listens there)".into()
            }
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::BrokenPipe => "connection reset (the server went away)".into(),
            std::io::ErrorKind::TimedOut => format!(
                "timed out after {} s (DB_CONNECT_TIMEOUT_SECS)",
                connect_timeout.as_secs()
            ),
            _ => format!("network error: {io}"),
        };
    }
    if let Some(db) = e.as_database_error() {
        return match db.code().as_deref() {
            Some("28P01" | "28000") => format!(
                "authentication failed ({}); check DB_USER/DB_PASSWORD",
                db.message()
            ),
            Some("3D000") => format!("{}; check DB_NAME", db.message()),
            Some("57P01" | "57P02" | "57P03") => {
                format!("the server is shutting down or starting ({})", db.message())
            }
            _ => db.message().to_owned(),
        };
    }
    match e {
        sqlx::Error::PoolTimedOut => {
            "no connection within the acquire timeout (DB_ACQUIRE_TIMEOUT_SECS)".to_owned()
        }
        other => crate::support::text::error_chain(other),
    }
}

/// The database target as shown (password redacted) and the options to connect with.
fn target_and_options(
    settings: &DatabaseSettings,
) -> Result<(String, PgConnectOptions), StoreError> {
    let target = settings.to_string();
    let options = settings
        .connect_options()
        .map_err(|source| StoreError::Settings {
            target: target.clone(),
            source,
        })?;
    Ok((target, options))
}

fn query_error(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { doing, source }
}

/// The database, as the job sees it.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    options: PgConnectOptions,
    target: String,
    connect_timeout: Duration,
}

impl Store {
    /// Connects (and checks the connection works) with room for `max_connections`.
    #[tracing::instrument(name = "db.connect", skip_all, fields(target = %settings), err(Display))]
    pub async fn connect(
        settings: &DatabaseSettings,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let (target, options) = target_and_options(settings)?;
        // One direct connection first, under the connect timeout: a refused or timed-out
        // connection is reported as what it is, at once, not as a pool timeout.
        let first = tokio::time::timeout(
            settings.connect_timeout,
            PgConnection::connect_with(&options),
        )
        .await
        .unwrap_or(Err(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())));
        match first {
            Ok(conn) => {
                let _ = conn.close().await;
            }
            Err(e) => {
                return Err(StoreError::Connect {
                    target,
                    cause: cause(&e, settings.connect_timeout),
                    source: e,
                });
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Connect {
                target: target.clone(),
                cause: cause(&e, settings.connect_timeout),
                source: e,
            })?;
        Ok(Self {
            pool,
            options,
            target,
            connect_timeout: settings.connect_timeout,
        })
    }

    /// A connection of its own (not from the pool), under the connect timeout.
    pub(super) async fn connect_one(&self) -> Result<PgConnection, StoreError> {
        let attempt = tokio::time::timeout(
            self.connect_timeout,
            PgConnection::connect_with(&self.options),
        )
        .await
        .unwrap_or(Err(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())));
        attempt.map_err(|e| StoreError::Connect {
            target: self.target.clone(),
            cause: cause(&e, self.connect_timeout),
            source: e,
        })
    }

    /// After a failure that [`StoreError::may_be_connection_loss`]: a new connection (under
    /// the connect timeout) says whether the server is gone, and why. `Ok` if it answers.
    #[tracing::instrument(name = "db.probe", skip_all, err(Display))]
    pub async fn probe(&self, doing: &str) -> Result<(), StoreError> {
        let attempt = tokio::time::timeout(self.connect_timeout, async {
            let mut conn = PgConnection::connect_with(&self.options).await?;
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            let _ = conn.close().await;
            Ok::<(), sqlx::Error>(())
        })
        .await
        .unwrap_or(Err(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())));
        attempt.map_err(|e| StoreError::Lost {
            target: self.target.clone(),
            doing: doing.to_owned(),
            cause: cause(&e, self.connect_timeout),
        })
    }

    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations (sqlx takes its own lock, so concurrent callers are safe).
    #[tracing::instrument(name = "db.migrate", skip_all, err(Display))]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migrate {
                target: self.target.clone(),
                source: e,
            })
    }
}

impl Store {
    /// Like [`Store::connect`] without connecting: the pool opens connections when first used,
    /// so a service can start (and say it is not ready) while the database is down. Each
    /// acquisition waits at most `acquire_timeout`.
    pub fn connect_lazy(
        settings: &DatabaseSettings,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let (target, options) = target_and_options(settings)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options.clone());
        Ok(Self {
            pool,
            options,
            target,
            connect_timeout: settings.connect_timeout,
        })
    }

    /// Whether the database answers now: a new connection (so the reason it fails is the
    /// server's or the network's, not a pool timeout) and `SELECT 1`.
    #[tracing::instrument(name = "db.check", skip_all, err(Display))]
    pub async fn check(&self) -> Result<(), StoreError> {
        let down = |source: sqlx::Error| StoreError::Connect {
            target: self.target.clone(),
            cause: cause(&source, self.connect_timeout),
            source,
        };
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(down)?;
        sqlx::query("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(down)?;
        let _ = conn.close().await;
        Ok(())
    }

    /// The migrations applied in the database, and those of this binary not applied yet
    /// (by version). Reads only; a database never migrated has every one pending.
    #[tracing::instrument(name = "db.migration_state", skip_all, err(Display))]
    pub async fn migration_state(&self) -> Result<(Vec<i64>, Vec<i64>), StoreError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("looking for the migrations table"))?;
        let applied: Vec<i64> = if exists {
            sqlx::query_scalar(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("listing applied migrations"))?
        } else {
            Vec::new()
        };
        let pending = MIGRATOR
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect();
        Ok((applied, pending))
    }

    /// Whether the `runs` table exists (it does once migrations ran).
    async fn has_runs_table(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar("SELECT to_regclass('runs') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("looking for the runs table"))
    }

    /// Where the store points (password redacted), for messages.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }
}
