//! Stage 4: store. PostgreSQL through sqlx: migrations, the run lock, the `runs` ledger, and one
//! transaction per security that upserts its bars in a single round trip.
//!
//! Queries are checked at run time, not with `query!` at compile time: see ARCHITECTURE.md
//! ("Why runtime-checked SQL"). Every statement here is exercised by the integration tests
//! against a real PostgreSQL.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::analyze::{
    self, FLOAT_COLUMNS, Indicators, PricePoint, Trend, VolatilityRegime, periods_per_year,
};
use crate::config::Security;
use crate::domain::{DateWindow, DbSymbol};
use crate::features::{self, Gap, Panel, Plan};
use crate::narrate::{self, DayFacts};
use crate::settings::DatabaseSettings;
use crate::validate::Series;

/// Migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Key of the advisory lock that keeps two runs from interleaving ("mkt-enc" in ASCII).
pub const RUN_LOCK_KEY: i64 = 0x006d_6b74_2d65_6e63;

/// Scale of `daily_return` (NUMERIC(20, 12)).
const RETURN_SCALE: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot connect to PostgreSQL at {target}: {reason}; check DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD (or DATABASE_URL) and that the server is up"
    )]
    Connect { target: String, reason: String },
    #[error(
        "cannot apply migrations to {target}: {reason}; run `market-encoder migrate` to see the failing migration"
    )]
    Migrate { target: String, reason: String },
    #[error("database error while {doing}: {reason}")]
    Query { doing: &'static str, reason: String },
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
        .map_err(|e| StoreError::Connect {
            target: target.clone(),
            reason: e.to_string(),
        })?;
    Ok((target, options))
}

fn query_error(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::Query {
        doing,
        reason: e.to_string(),
    }
}

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
    pub rows_written: u64,
    /// Rows of `market_features` written by the features stage.
    pub features_written: u64,
    pub details: &'a D,
    pub errors: &'a std::collections::BTreeMap<String, String>,
}

/// Held while a run works; dropping the connection releases the lock even if we crash.
pub struct RunLock {
    conn: PgConnection,
    key: i64,
}

impl RunLock {
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
                reason: e.to_string(),
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
                reason: e.to_string(),
            })
    }

    /// Takes the run lock `key` ([`RUN_LOCK_KEY`], or a shard's
    /// [`crate::domain::Shard::lock_key`]) on its own connection, or says another run has it.
    #[tracing::instrument(name = "db.lock", skip_all, err(Display))]
    pub async fn lock_run(&self, key: i64) -> Result<RunLock, StoreError> {
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(|e| StoreError::Connect {
                target: self.target.clone(),
                reason: e.to_string(),
            })?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .map_err(query_error("taking the run lock"))?;
        if locked {
            Ok(RunLock { conn, key })
        } else {
            let _ = conn.close().await;
            Err(StoreError::Locked {
                target: self.target.clone(),
            })
        }
    }

    /// Records a run as started; returns its id.
    #[tracing::instrument(name = "db.start_run", skip_all, err(Display))]
    pub async fn start_run(&self, window: &DateWindow, total: usize) -> Result<Uuid, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO runs (window_from, window_to, securities_total) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(window.from())
        .bind(window.to())
        .bind(i32::try_from(total).unwrap_or(i32::MAX))
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
                 details = $7, errors = $8, features_written = $9
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
        .execute(&self.pool)
        .await
        .map_err(query_error("recording the end of the run"))?;
        Ok(())
    }

    /// Stores one security's validated series in one transaction: its `securities` row, its
    /// bars (one `INSERT .. SELECT FROM UNNEST .. ON CONFLICT DO UPDATE` round trip) with daily
    /// returns, and the return of the first stored bar after the series, which a backfill may
    /// have changed. Unchanged rows are not rewritten. Returns the rows inserted or updated.
    #[tracing::instrument(name = "db.store_series", skip_all, fields(symbol = %security.db_symbol, bars = series.bars.len()), err(Display))]
    pub async fn store_series(
        &self,
        security: &Security,
        series: &Series,
    ) -> Result<u64, StoreError> {
        let symbol = security.db_symbol.as_str();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("starting a transaction"))?;

        let meta = &series.meta;
        sqlx::query(
            "INSERT INTO securities (db_symbol, yahoo_symbol, name, category, currency, exchange_tz,
                                     instrument_type, exchange_name)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (db_symbol) DO UPDATE SET
                 yahoo_symbol = EXCLUDED.yahoo_symbol, name = EXCLUDED.name,
                 category = EXCLUDED.category,
                 currency = COALESCE(EXCLUDED.currency, securities.currency),
                 exchange_tz = COALESCE(EXCLUDED.exchange_tz, securities.exchange_tz),
                 instrument_type = COALESCE(EXCLUDED.instrument_type, securities.instrument_type),
                 exchange_name = COALESCE(EXCLUDED.exchange_name, securities.exchange_name),
                 updated_at = now()
             WHERE (securities.yahoo_symbol, securities.name, securities.category,
                    securities.currency, securities.exchange_tz, securities.instrument_type,
                    securities.exchange_name)
                IS DISTINCT FROM
                   (EXCLUDED.yahoo_symbol, EXCLUDED.name, EXCLUDED.category,
                    COALESCE(EXCLUDED.currency, securities.currency),
                    COALESCE(EXCLUDED.exchange_tz, securities.exchange_tz),
                    COALESCE(EXCLUDED.instrument_type, securities.instrument_type),
                    COALESCE(EXCLUDED.exchange_name, securities.exchange_name))",
        )
        .bind(symbol)
        .bind(security.yahoo_symbol.as_str())
        .bind(&security.name)
        .bind(security.category.as_str())
        .bind(&meta.currency)
        .bind(&meta.exchange_tz)
        .bind(&meta.instrument_type)
        .bind(&meta.exchange_name)
        .execute(&mut *tx)
        .await
        .map_err(query_error("upserting the securities row"))?;

        let (Some(first), Some(last)) = (series.bars.first(), series.bars.last()) else {
            tx.commit()
                .await
                .map_err(query_error("committing the transaction"))?;
            return Ok(0);
        };

        let previous_close: Option<Decimal> = sqlx::query_scalar(
            "SELECT close_price FROM market_data
             WHERE symbol = $1 AND trade_date < $2 ORDER BY trade_date DESC LIMIT 1",
        )
        .bind(symbol)
        .bind(first.trade_date)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("reading the previous close"))?;

        let n = series.bars.len();
        let mut dates: Vec<NaiveDate> = Vec::with_capacity(n);
        let (mut open, mut high, mut low, mut close) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut adj: Vec<Option<Decimal>> = Vec::with_capacity(n);
        let mut volume: Vec<i64> = Vec::with_capacity(n);
        let mut returns: Vec<Option<Decimal>> = Vec::with_capacity(n);
        let mut prev = previous_close;
        for bar in &series.bars {
            dates.push(bar.trade_date);
            open.push(bar.open);
            high.push(bar.high);
            low.push(bar.low);
            close.push(bar.close);
            adj.push(bar.adj_close);
            volume.push(bar.volume);
            returns.push(prev.and_then(|p| daily_return(bar.close, p)));
            prev = Some(bar.close);
        }

        let written = sqlx::query(
            "INSERT INTO market_data (symbol, trade_date, open_price, high_price, low_price,
                                      close_price, adj_close, volume, daily_return)
             SELECT $1, d, o, h, l, c, a, v, r
             FROM UNNEST($2::date[], $3::numeric[], $4::numeric[], $5::numeric[], $6::numeric[],
                         $7::numeric[], $8::bigint[], $9::numeric[]) AS t(d, o, h, l, c, a, v, r)
             ON CONFLICT (symbol, trade_date) DO UPDATE SET
                 open_price = EXCLUDED.open_price, high_price = EXCLUDED.high_price,
                 low_price = EXCLUDED.low_price, close_price = EXCLUDED.close_price,
                 adj_close = EXCLUDED.adj_close, volume = EXCLUDED.volume,
                 daily_return = EXCLUDED.daily_return, updated_at = now()
             WHERE (market_data.open_price, market_data.high_price, market_data.low_price,
                    market_data.close_price, market_data.adj_close, market_data.volume,
                    market_data.daily_return)
                IS DISTINCT FROM
                   (EXCLUDED.open_price, EXCLUDED.high_price, EXCLUDED.low_price,
                    EXCLUDED.close_price, EXCLUDED.adj_close, EXCLUDED.volume,
                    EXCLUDED.daily_return)",
        )
        .bind(symbol)
        .bind(&dates)
        .bind(&open)
        .bind(&high)
        .bind(&low)
        .bind(&close)
        .bind(&adj)
        .bind(&volume)
        .bind(&returns)
        .execute(&mut *tx)
        .await
        .map_err(query_error("upserting bars"))?
        .rows_affected();

        // The first stored bar after this series: its return depends on our last close.
        let next = sqlx::query(
            "SELECT trade_date, close_price, daily_return FROM market_data
             WHERE symbol = $1 AND trade_date > $2 ORDER BY trade_date LIMIT 1",
        )
        .bind(symbol)
        .bind(last.trade_date)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("reading the next stored bar"))?;
        let mut fixed = 0;
        if let Some(row) = next {
            let date: NaiveDate = row.get(0);
            let next_close: Decimal = row.get(1);
            let stored: Option<Decimal> = row.get(2);
            let expected = daily_return(next_close, last.close);
            if stored != expected {
                fixed = sqlx::query(
                    "UPDATE market_data SET daily_return = $3, updated_at = now()
                     WHERE symbol = $1 AND trade_date = $2",
                )
                .bind(symbol)
                .bind(date)
                .bind(expected)
                .execute(&mut *tx)
                .await
                .map_err(query_error("updating the next bar's return"))?
                .rows_affected();
            }
        }

        tx.commit()
            .await
            .map_err(query_error("committing the transaction"))?;
        Ok(written + fixed)
    }
}

/// `INSERT .. SELECT FROM UNNEST .. ON CONFLICT DO UPDATE .. WHERE IS DISTINCT FROM` for the
/// `indicators` table, built once from the constant column list of `analyze::FLOAT_COLUMNS`
/// (identifiers only; every value is a bind parameter).
static UPSERT_INDICATORS: LazyLock<String> = LazyLock::new(|| {
    let floats: Vec<&str> = FLOAT_COLUMNS.iter().map(|c| c.name).collect();
    let columns = [
        floats.as_slice(),
        &["new_52w_high", "trend", "volatility_regime"],
    ]
    .concat();
    let n = floats.len();
    let mut casts: Vec<String> = (0..n).map(|i| format!("${}::float8[]", i + 3)).collect();
    casts.push(format!("${}::bool[]", n + 3));
    casts.push(format!("${}::text[]", n + 4));
    casts.push(format!("${}::text[]", n + 5));
    let list = columns.join(", ");
    let excluded = columns
        .iter()
        .map(|c| format!("EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let current = columns
        .iter()
        .map(|c| format!("indicators.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let set = columns
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO indicators (symbol, trade_date, {list})
         SELECT $1, * FROM UNNEST($2::date[], {casts})
         ON CONFLICT (symbol, trade_date) DO UPDATE SET {set}, updated_at = now()
         WHERE ({current}) IS DISTINCT FROM ({excluded})",
        casts = casts.join(", ")
    )
});

impl Store {
    /// The analyze stage for one security: its whole stored series in, indicators out. Only
    /// rows dated on or after `changed_from` are written (indicators are causal: a bar can only
    /// change those of its own date and later), plus any date that has none yet; unchanged
    /// values are not rewritten. Returns the indicator rows inserted or updated.
    #[tracing::instrument(name = "db.analyze", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn analyze_security(
        &self,
        symbol: &DbSymbol,
        changed_from: NaiveDate,
    ) -> Result<u64, StoreError> {
        let symbol = symbol.as_str();
        let rows = sqlx::query(
            "SELECT trade_date, open_price, high_price, low_price, close_price, volume
             FROM market_data WHERE symbol = $1 ORDER BY trade_date",
        )
        .bind(symbol)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading the stored series"))?;
        let as_f64 = |d: Decimal| d.to_f64().unwrap_or(f64::NAN);
        let points: Vec<PricePoint> = rows
            .iter()
            .map(|r| PricePoint {
                trade_date: r.get(0),
                open: as_f64(r.get(1)),
                high: as_f64(r.get(2)),
                low: as_f64(r.get(3)),
                close: as_f64(r.get(4)),
                #[allow(clippy::cast_precision_loss)] // volumes are far below 2^52
                volume: r.get::<i64, _>(5) as f64,
            })
            .collect();
        let instrument_type: Option<String> =
            sqlx::query_scalar("SELECT instrument_type FROM securities WHERE db_symbol = $1")
                .bind(symbol)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_error("reading the instrument type"))?
                .flatten();
        let first_missing: Option<NaiveDate> = sqlx::query_scalar(
            "SELECT min(m.trade_date) FROM market_data m
             WHERE m.symbol = $1 AND NOT EXISTS (
                 SELECT 1 FROM indicators i WHERE i.symbol = m.symbol AND i.trade_date = m.trade_date)",
        )
        .bind(symbol)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("finding dates without indicators"))?;
        let from = first_missing.map_or(changed_from, |d| d.min(changed_from));

        let computed = analyze::compute(&points, periods_per_year(instrument_type.as_deref()));
        let keep: Vec<usize> = (0..points.len())
            .filter(|&i| points[i].trade_date >= from)
            .collect();
        if keep.is_empty() {
            return Ok(0);
        }
        let dates: Vec<NaiveDate> = keep.iter().map(|&i| points[i].trade_date).collect();
        let mut query = sqlx::query(AssertSqlSafe(UPSERT_INDICATORS.as_str()))
            .bind(symbol)
            .bind(dates);
        for column in FLOAT_COLUMNS {
            let column: Vec<Option<f64>> =
                keep.iter().map(|&i| (column.get)(&computed[i])).collect();
            query = query.bind(column);
        }
        let highs: Vec<bool> = keep.iter().map(|&i| computed[i].new_52w_high).collect();
        let trends: Vec<Option<&str>> = keep
            .iter()
            .map(|&i| computed[i].trend.map(Trend::as_str))
            .collect();
        let regimes: Vec<Option<&str>> = keep
            .iter()
            .map(|&i| computed[i].volatility_regime.map(VolatilityRegime::as_str))
            .collect();
        let written = query
            .bind(highs)
            .bind(trends)
            .bind(regimes)
            .execute(&self.pool)
            .await
            .map_err(query_error("upserting indicators"))?
            .rows_affected();
        Ok(written)
    }
}

/// The last N stored days of a security with their indicators, for the narrate stage.
static SELECT_DAYS: LazyLock<String> = LazyLock::new(|| {
    let floats: Vec<String> = FLOAT_COLUMNS
        .iter()
        .map(|c| format!("i.{}", c.name))
        .collect();
    format!(
        "SELECT m.trade_date, m.close_price, m.daily_return, {}, i.new_52w_high, i.trend, i.volatility_regime
         FROM market_data m JOIN indicators i ON i.symbol = m.symbol AND i.trade_date = m.trade_date
         WHERE m.symbol = $1 ORDER BY m.trade_date DESC LIMIT $2",
        floats.join(", ")
    )
});

impl Store {
    /// The narrate stage for one security: documents and their metadata for its last `days`
    /// stored trade dates, upserted into `documents`; an unchanged document is not rewritten
    /// (and so stays indexed). Returns the documents inserted or changed.
    #[tracing::instrument(name = "db.narrate", skip_all, fields(symbol = %security.db_symbol), err(Display))]
    pub async fn narrate_security(
        &self,
        security: &Security,
        days: u32,
    ) -> Result<u64, StoreError> {
        let symbol = security.db_symbol.as_str();
        let rows = sqlx::query(AssertSqlSafe(SELECT_DAYS.as_str()))
            .bind(symbol)
            .bind(i64::from(days))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading days to narrate"))?;
        let n = rows.len();
        let (mut dates, mut documents, mut metadata) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for row in &rows {
            let mut indicators = Indicators::default();
            for column in FLOAT_COLUMNS {
                *(column.slot)(&mut indicators) = row
                    .try_get(column.name)
                    .map_err(query_error("reading indicators"))?;
            }
            indicators.new_52w_high = row.get("new_52w_high");
            indicators.trend = row.get::<Option<&str>, _>("trend").and_then(Trend::parse);
            indicators.volatility_regime = row
                .get::<Option<&str>, _>("volatility_regime")
                .and_then(VolatilityRegime::parse);
            let facts = DayFacts {
                db_symbol: symbol,
                name: &security.name,
                category: security.category.as_str(),
                trade_date: row.get(0),
                close: row.get(1),
                daily_return: row.get(2),
                indicators: &indicators,
            };
            dates.push(facts.trade_date);
            documents.push(narrate::narrate(&facts));
            metadata.push(serde_json::Value::Object(narrate::metadata(
                &facts,
                security.yahoo_symbol.as_str(),
            )));
        }
        let written = sqlx::query(
            "INSERT INTO documents (symbol, trade_date, document, metadata)
             SELECT $1, d, doc, meta FROM UNNEST($2::date[], $3::text[], $4::jsonb[]) AS t(d, doc, meta)
             ON CONFLICT (symbol, trade_date) DO UPDATE SET
                 document = EXCLUDED.document, metadata = EXCLUDED.metadata, updated_at = now()
             WHERE (documents.document, documents.metadata)
                IS DISTINCT FROM (EXCLUDED.document, EXCLUDED.metadata)",
        )
        .bind(symbol)
        .bind(dates)
        .bind(documents)
        .bind(metadata)
        .execute(&self.pool)
        .await
        .map_err(query_error("upserting documents"))?
        .rows_affected();
        Ok(written)
    }
}

/// A narrative document not yet in Chroma in its current version.
#[derive(Debug, Clone)]
pub struct PendingDocument {
    pub symbol: String,
    pub trade_date: NaiveDate,
    pub document: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub content_hash: String,
}

impl PendingDocument {
    /// The stable Chroma id: `{db_symbol}:{trade_date}`.
    #[must_use]
    pub fn id(&self) -> String {
        format!("{}:{}", self.symbol, self.trade_date)
    }
}

impl Store {
    /// Up to `limit` documents whose current version is not in Chroma, after `after` in
    /// (symbol, trade_date) order, so that paging always moves forward.
    #[tracing::instrument(name = "db.pending_documents", skip_all, err(Display))]
    pub async fn pending_documents(
        &self,
        after: Option<(&str, NaiveDate)>,
        limit: usize,
    ) -> Result<Vec<PendingDocument>, StoreError> {
        let rows = sqlx::query(
            "SELECT symbol, trade_date, document, metadata, content_hash FROM documents
             WHERE indexed_hash IS DISTINCT FROM content_hash
               AND ($1::text IS NULL OR (symbol, trade_date) > ($1, $2::date))
             ORDER BY symbol, trade_date LIMIT $3",
        )
        .bind(after.map(|(s, _)| s))
        .bind(after.map(|(_, d)| d))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading documents to index"))?;
        rows.iter()
            .map(|r| {
                let metadata: sqlx::types::Json<serde_json::Map<String, serde_json::Value>> = r
                    .try_get(3)
                    .map_err(query_error("reading document metadata"))?;
                Ok(PendingDocument {
                    symbol: r.get(0),
                    trade_date: r.get(1),
                    document: r.get(2),
                    metadata: metadata.0,
                    content_hash: r.get(4),
                })
            })
            .collect()
    }

    /// Records that these documents, in the version of their hash, are in Chroma. A document
    /// changed since it was read keeps its pending state.
    #[tracing::instrument(name = "db.mark_indexed", skip_all, fields(documents = documents.len()), err(Display))]
    pub async fn mark_indexed(&self, documents: &[PendingDocument]) -> Result<u64, StoreError> {
        let symbols: Vec<&str> = documents.iter().map(|d| d.symbol.as_str()).collect();
        let dates: Vec<NaiveDate> = documents.iter().map(|d| d.trade_date).collect();
        let hashes: Vec<&str> = documents.iter().map(|d| d.content_hash.as_str()).collect();
        let marked = sqlx::query(
            "UPDATE documents d SET indexed_hash = t.h, indexed_at = now()
             FROM UNNEST($1::text[], $2::date[], $3::text[]) AS t(s, dt, h)
             WHERE d.symbol = t.s AND d.trade_date = t.dt AND d.content_hash = t.h",
        )
        .bind(symbols)
        .bind(dates)
        .bind(hashes)
        .execute(&self.pool)
        .await
        .map_err(query_error("recording indexed documents"))?
        .rows_affected();
        Ok(marked)
    }

    /// The first and last stored closes of `symbol` from `from` to `to` (inclusive), how many
    /// trading days lie after the first up to the last, its whole stored range (`None`: no
    /// bar at all), and its currency.
    #[tracing::instrument(name = "db.closes_between", skip(self), err(Display))]
    pub async fn closes_between(
        &self,
        symbol: &DbSymbol,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<CloseWindow, StoreError> {
        let row = sqlx::query(
            "WITH span AS (SELECT min(trade_date) AS first, max(trade_date) AS last
                           FROM market_data WHERE symbol = $1),
                  inside AS (SELECT trade_date, close_price FROM market_data
                             WHERE symbol = $1 AND trade_date BETWEEN $2 AND $3)
             SELECT span.first, span.last,
                    (SELECT trade_date FROM inside ORDER BY trade_date LIMIT 1),
                    (SELECT close_price FROM inside ORDER BY trade_date LIMIT 1),
                    (SELECT trade_date FROM inside ORDER BY trade_date DESC LIMIT 1),
                    (SELECT close_price FROM inside ORDER BY trade_date DESC LIMIT 1),
                    (SELECT count(*) FROM inside) AS days,
                    (SELECT currency FROM securities WHERE db_symbol = $1)
             FROM span",
        )
        .bind(symbol.as_str())
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("reading closes"))?;
        let pair = |d: Option<NaiveDate>, p: Option<Decimal>| d.zip(p);
        let days: i64 = row.get(6);
        let (first, last): (Option<NaiveDate>, Option<NaiveDate>) = (row.get(0), row.get(1));
        Ok(CloseWindow {
            stored_range: first.zip(last),
            first: pair(row.get(2), row.get(3)),
            last: pair(row.get(4), row.get(5)),
            trading_days: (days - 1).max(0),
            currency: row.get(7),
        })
    }

    /// Every symbol with stored prices, sorted.
    #[tracing::instrument(name = "db.stored_symbols", skip_all, err(Display))]
    pub async fn stored_symbols(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT db_symbol FROM securities ORDER BY db_symbol")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("listing stored symbols"))
    }

    /// How many documents are recorded as indexed (in some version).
    #[tracing::instrument(name = "db.indexed_documents", skip_all, err(Display))]
    pub async fn indexed_documents(&self) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM documents WHERE indexed_hash IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(query_error("counting indexed documents"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Marks every document pending again, so the next embed and index stage rewrites them all
    /// (the collection lost records, or is a new one). Returns how many were marked.
    #[tracing::instrument(name = "db.forget_indexed", skip_all, err(Display))]
    pub async fn forget_indexed(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE documents SET indexed_hash = NULL, indexed_at = NULL WHERE indexed_hash IS NOT NULL",
        )
        .execute(&self.pool)
        .await
        .map_err(query_error("marking documents pending"))?
        .rows_affected())
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
        let down = |e: sqlx::Error| StoreError::Connect {
            target: self.target.clone(),
            reason: e.to_string(),
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
                let errors: Json<serde_json::Value> =
                    r.try_get(12).map_err(query_error("reading run errors"))?;
                Ok(RunRow {
                    id: r.get(0),
                    started_at: r.get(1),
                    finished_at: r.get(2),
                    duration_ms: r.get(3),
                    outcome: r.get(4),
                    window_from: r.get(5),
                    window_to: r.get(6),
                    securities_total: r.get(7),
                    securities_ok: r.get(8),
                    securities_failed: r.get(9),
                    rows_written: r.get(10),
                    features_written: r.get(11),
                    errors: errors.0,
                })
            })
            .collect()
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
        Ok(RunTotals {
            runs,
            rows_written: row.get(0),
            features_written: row.get(1),
            securities_ok: row.get(2),
            securities_failed: row.get(3),
            finished_runs: row.get(4),
            finished_seconds: row.get(5),
            last_run_seconds: row.get(6),
            last_run_finished: row.get(7),
            last_success: row.get(8),
        })
    }

    /// Whether some session (this process, a CronJob pod, anyone) holds the run lock on this
    /// database now: the advisory lock in `pg_locks` (key split into `classid` = high and
    /// `objid` = low 32 bits, `objsubid` 1 for a bigint key).
    #[tracing::instrument(name = "db.run_lock_held", skip_all, err(Display))]
    pub async fn run_lock_held(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (
                 SELECT 1 FROM pg_locks
                 WHERE locktype = 'advisory' AND granted AND objsubid = 1
                   AND classid = ($1::int8 >> 32)::oid
                   AND objid = ($1::int8 & 4294967295)::oid
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        )
        .bind(RUN_LOCK_KEY)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("looking for the run lock"))
    }
}

/// A security's stored closes between two dates, for the P&L (see [`Store::closes_between`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseWindow {
    /// First and last stored trade date of the security, `None` if it has no bar.
    pub stored_range: Option<(NaiveDate, NaiveDate)>,
    /// The first stored bar in the window: date and close.
    pub first: Option<(NaiveDate, Decimal)>,
    /// The last stored bar in the window: date and close.
    pub last: Option<(NaiveDate, Decimal)>,
    /// Stored bars in the window after the first one.
    pub trading_days: i64,
    pub currency: Option<String>,
}

/// The feature calendar as a CTE named `calendar`: the dates on which an input of `$1` (the
/// inputs less the `btc` role) that is not crypto by Yahoo's instrument type has a close.
macro_rules! calendar_cte {
    () => {
        "WITH calendar AS (
             SELECT DISTINCT m.trade_date FROM market_data m
             LEFT JOIN securities s ON s.db_symbol = m.symbol
             WHERE m.symbol = ANY($1::text[])
               AND s.instrument_type IS DISTINCT FROM 'CRYPTOCURRENCY') "
    };
}

/// What the features stage wrote.
#[derive(Debug, Clone, Default)]
pub struct FeaturesWritten {
    /// Rows inserted, changed or removed.
    pub rows_written: u64,
    /// Calendar dates computed.
    pub dates: usize,
    /// Features per date.
    pub features: usize,
    /// Values computed as `NULL`.
    pub null_values: usize,
    /// The `NULL`s of each feature, for one warning each.
    pub gaps: Vec<Gap>,
}

/// One stored feature of one date, for the `features` command.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFeature {
    pub feature: String,
    pub value: Option<f64>,
    pub inputs: serde_json::Value,
}

impl Store {
    /// The features stage: every feature of `plan` on every calendar date from `changed_from`
    /// (or the first calendar date that lacks one of them, if earlier) to the last stored one,
    /// from the stored closes plus the look-back before it; written in one transaction,
    /// unchanged rows untouched, rows of features no longer in the plan removed for those
    /// dates. Features are causal like indicators, so later dates are recomputed too.
    #[tracing::instrument(name = "db.features", skip_all, fields(features = plan.features.len()), err(Display))]
    pub async fn compute_features(
        &self,
        plan: &Plan,
        changed_from: NaiveDate,
    ) -> Result<FeaturesWritten, StoreError> {
        let symbols = plan.symbols();
        let calendar_symbols: Vec<&str> = symbols
            .iter()
            .map(String::as_str)
            .filter(|s| !plan.calendar_exclude.iter().any(|x| x == s))
            .collect();
        let names = plan.names();
        let first_missing: Option<NaiveDate> = sqlx::query_scalar(concat!(
            calendar_cte!(),
            "SELECT min(c.trade_date) FROM calendar c CROSS JOIN UNNEST($2::text[]) AS f(name)
             WHERE NOT EXISTS (SELECT 1 FROM market_features x
                               WHERE x.trade_date = c.trade_date AND x.feature = f.name)"
        ))
        .bind(&calendar_symbols)
        .bind(&names)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("finding dates without features"))?;
        let from = first_missing.map_or(changed_from, |d| d.min(changed_from));

        let dates: Vec<NaiveDate> = sqlx::query_scalar(concat!(
            calendar_cte!(),
            "(SELECT trade_date FROM calendar WHERE trade_date < $2 ORDER BY trade_date DESC LIMIT $3)
             UNION ALL (SELECT trade_date FROM calendar WHERE trade_date >= $2)"
        ))
        .bind(&calendar_symbols)
        .bind(from)
        .bind(i64::try_from(plan.lookback()).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading the feature calendar"))?;
        let Some(&first) = dates.iter().min() else {
            return Ok(FeaturesWritten {
                features: names.len(),
                ..FeaturesWritten::default()
            });
        };

        let closes = sqlx::query(
            "SELECT symbol, trade_date, close_price FROM market_data
             WHERE symbol = ANY($1::text[]) AND trade_date >= $2",
        )
        .bind(&symbols)
        .bind(first)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading the closes of the feature inputs"))?;
        let mut panel = Panel::new(dates);
        for row in &closes {
            let close: Decimal = row.get(2);
            if let Some(close) = close.to_f64() {
                panel.insert(row.get::<&str, _>(0), row.get(1), close);
            }
        }
        drop(closes);

        let computed = features::compute(plan, &panel, from);
        let n = computed.rows.len();
        let (mut row_dates, mut row_names, mut values, mut inputs) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for row in &computed.rows {
            row_dates.push(row.trade_date);
            row_names.push(row.feature);
            values.push(row.value);
            inputs.push(
                serde_json::to_value(&row.inputs)
                    .unwrap_or_else(|_| serde_json::json!({ "kind": "unrecorded" })),
            );
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("starting a transaction"))?;
        let upserted = sqlx::query(
            "INSERT INTO market_features (trade_date, feature, value, inputs)
             SELECT * FROM UNNEST($1::date[], $2::text[], $3::float8[], $4::jsonb[])
             ON CONFLICT (trade_date, feature) DO UPDATE SET
                 value = EXCLUDED.value, inputs = EXCLUDED.inputs, updated_at = now()
             WHERE (market_features.value, market_features.inputs)
                IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.inputs)",
        )
        .bind(&row_dates)
        .bind(&row_names)
        .bind(&values)
        .bind(&inputs)
        .execute(&mut *tx)
        .await
        .map_err(query_error("upserting features"))?
        .rows_affected();
        let removed = sqlx::query(
            "DELETE FROM market_features WHERE trade_date >= $1 AND feature <> ALL($2::text[])",
        )
        .bind(from)
        .bind(&names)
        .execute(&mut *tx)
        .await
        .map_err(query_error("removing features no longer configured"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(query_error("committing the transaction"))?;
        Ok(FeaturesWritten {
            rows_written: upserted + removed,
            dates: panel.dates().iter().filter(|d| **d >= from).count(),
            features: names.len(),
            null_values: values.iter().filter(|v| v.is_none()).count(),
            gaps: computed.gaps,
        })
    }

    /// The latest date with stored features; `None` when there are none (or no
    /// `market_features` table: the job has never run against this database).
    #[tracing::instrument(name = "db.latest_feature_date", skip_all, err(Display))]
    pub async fn latest_feature_date(&self) -> Result<Option<NaiveDate>, StoreError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('market_features') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("looking for the market_features table"))?;
        if !exists {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT max(trade_date) FROM market_features")
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("reading the latest feature date"))
    }

    /// The stored features of `date`.
    #[tracing::instrument(name = "db.features_on", skip_all, fields(%date), err(Display))]
    pub async fn features_on(&self, date: NaiveDate) -> Result<Vec<StoredFeature>, StoreError> {
        let rows =
            sqlx::query("SELECT feature, value, inputs FROM market_features WHERE trade_date = $1")
                .bind(date)
                .fetch_all(&self.pool)
                .await
                .map_err(query_error("reading features"))?;
        rows.iter()
            .map(|r| {
                let inputs: Json<serde_json::Value> = r
                    .try_get(2)
                    .map_err(query_error("reading feature inputs"))?;
                Ok(StoredFeature {
                    feature: r.get(0),
                    value: r.get(1),
                    inputs: inputs.0,
                })
            })
            .collect()
    }

    /// Where the store points (password redacted), for messages.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// (close / previous close) - 1, rounded half away from zero to the column's 12 decimals.
#[must_use]
pub fn daily_return(close: Decimal, previous_close: Decimal) -> Option<Decimal> {
    if previous_close <= Decimal::ZERO {
        return None;
    }
    close.checked_div(previous_close).map(|ratio| {
        (ratio - Decimal::ONE)
            .round_dp_with_strategy(RETURN_SCALE, RoundingStrategy::MidpointAwayFromZero)
    })
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn daily_return_is_exact_to_twelve_places() {
        assert_eq!(daily_return(dec!(110), dec!(100)), Some(dec!(0.1)));
        assert_eq!(
            daily_return(dec!(682.85), dec!(681.75)),
            Some(dec!(0.001613494683))
        );
        assert_eq!(daily_return(dec!(1), dec!(0)), None);
    }
}
