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
mod documents;
mod features;
mod indicators;
mod prices;
mod runs;

pub use documents::PendingDocument;
pub use features::{FEATURES_LOCK_KEY, FeatureInputs, FeaturesTx, StoredFeature};
pub use indicators::{StoredDay, StoredSeries};
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
        "cannot connect to PostgreSQL at {target}: {source}; check DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD (or DATABASE_URL) and that the server is up"
    )]
    Connect {
        target: String,
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
        matches!(self, Self::Connect { .. })
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
}

impl Store {
    /// Connects (and checks the connection works) with room for `max_connections`.
    #[tracing::instrument(name = "db.connect", skip_all, fields(target = %settings), err(Display))]
    pub async fn connect(
        settings: &DatabaseSettings,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let (target, options) = target_and_options(settings)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Connect {
                target: target.clone(),
                source: e,
            })?;
        Ok(Self {
            pool,
            options,
            target,
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
        })
    }

    /// Whether the database answers now: a new connection (so the reason it fails is the
    /// server's or the network's, not a pool timeout) and `SELECT 1`.
    #[tracing::instrument(name = "db.check", skip_all, err(Display))]
    pub async fn check(&self) -> Result<(), StoreError> {
        let down = |source: sqlx::Error| StoreError::Connect {
            target: self.target.clone(),
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
