//! `indicators`: the analyze stage's rows, and the stored days the narrate stage reads.

use std::sync::LazyLock;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use sqlx::{AssertSqlSafe, Row};

use super::copy::CopyInto;
use super::{Store, StoreError, query_error};
use crate::domain::DbSymbol;
use crate::job::analyze::{FLOAT_COLUMNS, Indicators, PricePoint, Trend, VolatilityRegime};
use crate::job::narrate::Day;

/// `INSERT .. SELECT FROM UNNEST .. ON CONFLICT DO UPDATE .. WHERE IS DISTINCT FROM` for the
/// `indicators` table, built once from the constant column list of `analyze::FLOAT_COLUMNS`
/// (identifiers only; every value is a bind parameter).
static UPSERT_INDICATORS: LazyLock<String> = LazyLock::new(|| {
    let columns = columns();
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
        "{insert}
         ON CONFLICT (symbol, trade_date) DO UPDATE SET {set}, updated_at = now()
         WHERE ({current}) IS DISTINCT FROM ({excluded})",
        insert = insert_statement()
    )
});

/// `COPY` for dates with no indicator row yet (a first history; `copy.rs`): the upsert's
/// speculative insertion cost 1.6x a plain insert there, and the plain insert from arrays more
/// than COPY.
static COPY_INDICATORS: LazyLock<CopyInto> = LazyLock::new(|| {
    let mut all = vec!["symbol", "trade_date"];
    all.extend(columns());
    CopyInto::new("indicators", &all)
});

/// The columns of the indicator statements after `symbol, trade_date`, in bind order.
fn columns() -> Vec<&'static str> {
    let floats: Vec<&'static str> = FLOAT_COLUMNS.iter().map(|c| c.name).collect();
    [
        floats.as_slice(),
        &["new_52w_high", "trend", "volatility_regime"],
    ]
    .concat()
}

/// `INSERT .. SELECT $1, * FROM UNNEST($2::date[], one array per column)`.
fn insert_statement() -> String {
    let n = FLOAT_COLUMNS.len();
    let mut casts: Vec<String> = (0..n).map(|i| format!("${}::float8[]", i + 3)).collect();
    casts.push(format!("${}::bool[]", n + 3));
    casts.push(format!("${}::text[]", n + 4));
    casts.push(format!("${}::text[]", n + 5));
    format!(
        "INSERT INTO indicators (symbol, trade_date, {})
         SELECT $1, * FROM UNNEST($2::date[], {})",
        columns().join(", "),
        casts.join(", ")
    )
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

/// A security's stored series as the analyze stage reads it ([`Store::series_to_analyze`]).
#[derive(Debug, Clone, Default)]
pub struct StoredSeries {
    /// Every stored bar, oldest first.
    pub points: Vec<PricePoint>,
    /// Yahoo's `instrumentType` (sets the periods per year of the volatility).
    pub instrument_type: Option<String>,
    /// The first stored date without an indicator row.
    pub first_missing: Option<NaiveDate>,
}

impl Store {
    /// What the analyze stage needs of one security: its whole stored series (prices as
    /// `f64`, where the indicators compute), its Yahoo instrument type, and the first stored
    /// date that has no indicator row yet.
    #[tracing::instrument(name = "db.series_to_analyze", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn series_to_analyze(&self, symbol: &DbSymbol) -> Result<StoredSeries, StoreError> {
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
            .map(|r| {
                Ok(PricePoint {
                    trade_date: r.try_get(0)?,
                    open: as_f64(r.try_get(1)?),
                    high: as_f64(r.try_get(2)?),
                    low: as_f64(r.try_get(3)?),
                    close: as_f64(r.try_get(4)?),
                    #[allow(clippy::cast_precision_loss)] // volumes are far below 2^52
                    volume: r.try_get::<i64, _>(5)? as f64,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("reading the stored series"))?;
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
        Ok(StoredSeries {
            points,
            instrument_type,
            first_missing,
        })
    }

    /// Writes the indicators `computed[i]` of `points[i]` for every point dated on or after
    /// `from`, in one statement; unchanged rows are not rewritten. Returns the rows inserted
    /// or updated.
    #[tracing::instrument(name = "db.write_indicators", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn write_indicators(
        &self,
        symbol: &DbSymbol,
        points: &[PricePoint],
        computed: &[Indicators],
        from: NaiveDate,
    ) -> Result<u64, StoreError> {
        let keep: Vec<usize> = (0..points.len().min(computed.len()))
            .filter(|&i| points[i].trade_date >= from)
            .collect();
        if keep.is_empty() {
            return Ok(0);
        }
        // None stored from `from` on (a first history): a COPY (see `COPY_INDICATORS`). The
        // run lock makes this security's rows ours alone; were one there after all, the COPY
        // fails whole.
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(query_error("writing indicators"))?;
        let none_stored: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM indicators WHERE symbol = $1 AND trade_date >= $2)",
        )
        .bind(symbol.as_str())
        .bind(from)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_error("checking for stored indicators"))?;
        if none_stored {
            let mut rows = COPY_INDICATORS.rows(keep.len());
            for &i in &keep {
                let row = &computed[i];
                rows.row();
                rows.field(&symbol.as_str())?.field(&points[i].trade_date)?;
                for column in FLOAT_COLUMNS {
                    rows.field(&(column.get)(row))?;
                }
                rows.field(&row.new_52w_high)?
                    .field(&row.trend.map(Trend::as_str))?
                    .field(&row.volatility_regime.map(VolatilityRegime::as_str))?;
            }
            return COPY_INDICATORS
                .run(&mut conn, rows, "copying indicators")
                .await;
        }
        let dates: Vec<NaiveDate> = keep.iter().map(|&i| points[i].trade_date).collect();
        let mut query = sqlx::query(AssertSqlSafe(UPSERT_INDICATORS.as_str()))
            .bind(symbol.as_str())
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
            .execute(&mut *conn)
            .await
            .map_err(query_error("upserting indicators"))?
            .rows_affected();
        Ok(written)
    }

    /// The last `days` stored trade dates of a security with their indicators, oldest first:
    /// what the narrate stage writes documents from (the days it narrates and the ones before
    /// them that it reads, `narrate::LOOKBACK_DAYS`).
    #[tracing::instrument(name = "db.days_to_narrate", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn days_to_narrate(
        &self,
        symbol: &DbSymbol,
        days: u32,
    ) -> Result<Vec<Day>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(SELECT_DAYS.as_str()))
            .bind(symbol.as_str())
            .bind(i64::from(days))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading days to narrate"))?;
        let mut days = rows
            .iter()
            .map(|row| {
                let mut indicators = Indicators::default();
                for column in FLOAT_COLUMNS {
                    *(column.slot)(&mut indicators) = row.try_get(column.name)?;
                }
                indicators.new_52w_high = row.try_get("new_52w_high")?;
                indicators.trend = row
                    .try_get::<Option<&str>, _>("trend")?
                    .and_then(Trend::parse);
                indicators.volatility_regime = row
                    .try_get::<Option<&str>, _>("volatility_regime")?
                    .and_then(VolatilityRegime::parse);
                Ok(Day {
                    trade_date: row.try_get(0)?,
                    close: row.try_get(1)?,
                    daily_return: row.try_get(2)?,
                    indicators,
                })
            })
            .collect::<Result<Vec<Day>, sqlx::Error>>()
            .map_err(query_error("reading days to narrate"))?;
        days.reverse();
        Ok(days)
    }
}
