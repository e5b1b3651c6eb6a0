//! `market_data` and `securities`: one transaction per security for its bars, and the reads
//! of stored closes (the P&L, the stored symbols).

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use sqlx::AssertSqlSafe;

use super::copy::CopyInto;
use super::{Store, StoreError, query_error};
use crate::domain::{CorporateAction, DateWindow, DbSymbol, Security};
use crate::job::validate::Series;

/// Scale of `daily_return` (NUMERIC(20, 12)).
const RETURN_SCALE: u32 = 12;

/// One security's bars, for a range with no stored bar (`copy.rs`).
static COPY_BARS: LazyLock<CopyInto> = LazyLock::new(|| {
    CopyInto::new(
        "market_data",
        &[
            "symbol",
            "trade_date",
            "open_price",
            "high_price",
            "low_price",
            "close_price",
            "adj_close",
            "volume",
            "daily_return",
            "source",
        ],
    )
});

/// One security's bars from parallel arrays (`$1` the symbol, `$10` the source).
const INSERT_BARS: &str = "INSERT INTO market_data (symbol, trade_date, open_price, high_price,
                             low_price, close_price, adj_close, volume, daily_return, source)
    SELECT $1, d, o, h, l, c, a, v, r, $10
    FROM UNNEST($2::date[], $3::numeric[], $4::numeric[], $5::numeric[], $6::numeric[],
                $7::numeric[], $8::bigint[], $9::numeric[]) AS t(d, o, h, l, c, a, v, r)";

/// [`INSERT_BARS`] over stored bars: a changed bar is overwritten, an unchanged one is not
/// rewritten.
static UPSERT_BARS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{INSERT_BARS}
         ON CONFLICT (symbol, trade_date) DO UPDATE SET
             open_price = EXCLUDED.open_price, high_price = EXCLUDED.high_price,
             low_price = EXCLUDED.low_price, close_price = EXCLUDED.close_price,
             adj_close = EXCLUDED.adj_close, volume = EXCLUDED.volume,
             daily_return = EXCLUDED.daily_return, source = EXCLUDED.source,
             updated_at = now()
         WHERE (market_data.open_price, market_data.high_price, market_data.low_price,
                market_data.close_price, market_data.adj_close, market_data.volume,
                market_data.daily_return, market_data.source)
            IS DISTINCT FROM
               (EXCLUDED.open_price, EXCLUDED.high_price, EXCLUDED.low_price,
                EXCLUDED.close_price, EXCLUDED.adj_close, EXCLUDED.volume,
                EXCLUDED.daily_return, EXCLUDED.source)"
    )
});

/// What [`Store::store_series`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Bars inserted, updated (a changed value or a fixed return) or removed.
    pub rows: u64,
    /// The corporate actions stored for the first time.
    pub new_actions: Vec<CorporateAction>,
}

/// One stored bar's closes, for the basis check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBar {
    pub trade_date: NaiveDate,
    pub close: Decimal,
    pub adj_close: Option<Decimal>,
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

impl Store {
    /// Stores one security's validated series in one transaction: its `securities` row, its
    /// bars (one `INSERT .. SELECT FROM UNNEST .. ON CONFLICT DO UPDATE` round trip) with daily
    /// returns, and the return of the first stored bar after the series, which a backfill may
    /// have changed. Unchanged rows are not rewritten. Returns the rows inserted or updated.
    #[tracing::instrument(name = "db.store_series", skip_all, fields(symbol = %security.db_symbol, bars = series.bars.len()), err(Display))]
    pub async fn store_series(
        &self,
        security: &Security,
        series: &Series,
        replace: Option<DateWindow>,
    ) -> Result<Written, StoreError> {
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

        let new_actions =
            super::actions::insert_new(&mut tx, symbol, meta.currency.as_deref(), &series.actions)
                .await?;
        // A rebase: the stored bars of the range that the fresh history no longer has go, with
        // their indicator rows (in the same statement: indicators have no foreign key, see
        // migrations/20261201000009) and their documents (by the foreign key's cascade).
        let mut removed = 0;
        if let Some(range) = replace {
            let dates: Vec<NaiveDate> = series.bars.iter().map(|b| b.trade_date).collect();
            let gone: i64 = sqlx::query_scalar(
                "WITH bars AS (
                     DELETE FROM market_data WHERE symbol = $1 AND trade_date BETWEEN $2 AND $3
                       AND trade_date <> ALL($4::date[]) RETURNING 1),
                 indicators AS (
                     DELETE FROM indicators WHERE symbol = $1 AND trade_date BETWEEN $2 AND $3
                       AND trade_date <> ALL($4::date[]) RETURNING 1)
                 SELECT count(*) FROM bars",
            )
            .bind(symbol)
            .bind(range.from())
            .bind(range.to())
            .bind(&dates)
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error(
                "removing bars the rebased history no longer has",
            ))?;
            removed = u64::try_from(gone).unwrap_or(0);
        }

        let (Some(first), Some(last)) = (series.bars.first(), series.bars.last()) else {
            tx.commit()
                .await
                .map_err(query_error("committing the transaction"))?;
            return Ok(Written {
                rows: removed,
                new_actions,
            });
        };

        // What the write depends on, in one round trip: the close before the series (its first
        // return); whether any bar is stored in its range; and the first stored bar after the
        // series (its return depends on our last close; the write does not touch it).
        // Bars new to the whole range (a first history, a new security) are copied in
        // (`copy.rs`: the upsert's speculative insertion cost 1.5x a plain insert there, the
        // plain insert ~1.5x COPY; README, Performance). The run lock makes this security's
        // rows ours alone; were a row there after all, the COPY fails, the transaction rolls
        // back and nothing is half-written.
        type Around = (
            Option<Decimal>,
            bool,
            Option<NaiveDate>,
            Option<Decimal>,
            Option<Decimal>,
        );
        let around: Around = sqlx::query_as(
            "SELECT (SELECT close_price FROM market_data
                     WHERE symbol = $1 AND trade_date < $2 ORDER BY trade_date DESC LIMIT 1),
                    NOT EXISTS (SELECT 1 FROM market_data
                                WHERE symbol = $1 AND trade_date BETWEEN $2 AND $3),
                    next.trade_date, next.close_price, next.daily_return
             FROM (VALUES (1)) AS one
             LEFT JOIN LATERAL (SELECT trade_date, close_price, daily_return FROM market_data
                                WHERE symbol = $1 AND trade_date > $3
                                ORDER BY trade_date LIMIT 1) AS next ON true",
        )
        .bind(symbol)
        .bind(first.trade_date)
        .bind(last.trade_date)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error("reading the bars around the series"))?;
        let (previous_close, range_empty, next_date, next_close, next_return) = around;
        let next = next_date
            .zip(next_close)
            .map(|(date, close)| (date, close, next_return));
        let returns = series.bars.iter().scan(previous_close, |prev, bar| {
            let r = prev.and_then(|p| daily_return(bar.close, p));
            *prev = Some(bar.close);
            Some(r)
        });
        let written = if range_empty {
            let mut rows = COPY_BARS.rows(series.bars.len());
            for (bar, r) in series.bars.iter().zip(returns) {
                rows.row();
                rows.field(&symbol)?
                    .field(&bar.trade_date)?
                    .field(&bar.open)?
                    .field(&bar.high)?
                    .field(&bar.low)?
                    .field(&bar.close)?
                    .field(&bar.adj_close)?
                    .field(&bar.volume)?
                    .field(&r)?
                    .field(&security.source.as_str())?;
            }
            COPY_BARS.run(&mut tx, rows, "copying bars").await?
        } else {
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
            let mut daily: Vec<Option<Decimal>> = Vec::with_capacity(n);
            for (bar, r) in series.bars.iter().zip(returns) {
                dates.push(bar.trade_date);
                open.push(bar.open);
                high.push(bar.high);
                low.push(bar.low);
                close.push(bar.close);
                adj.push(bar.adj_close);
                volume.push(bar.volume);
                daily.push(r);
            }
            sqlx::query(AssertSqlSafe(UPSERT_BARS.as_str()))
                .bind(symbol)
                .bind(&dates)
                .bind(&open)
                .bind(&high)
                .bind(&low)
                .bind(&close)
                .bind(&adj)
                .bind(&volume)
                .bind(&daily)
                .bind(security.source.as_str())
                .execute(&mut *tx)
                .await
                .map_err(query_error("upserting bars"))?
                .rows_affected()
        };

        let mut fixed = 0;
        if let Some((date, next_close, stored)) = next {
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
        Ok(Written {
            rows: written + fixed + removed,
            new_actions,
        })
    }

    /// The first and last stored trade date of each of `symbols` that has bars.
    #[tracing::instrument(name = "db.stored_ranges", skip_all, fields(symbols = symbols.len()), err(Display))]
    pub async fn stored_ranges(
        &self,
        symbols: &[&str],
    ) -> Result<HashMap<String, (NaiveDate, NaiveDate)>, StoreError> {
        // Before the first migration (a dry run against a new database) nothing is stored.
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('market_data') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("looking for the market_data table"))?;
        if !exists {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, NaiveDate, NaiveDate)> = sqlx::query_as(
            "SELECT symbol, min(trade_date), max(trade_date) FROM market_data
             WHERE symbol = ANY($1::text[]) GROUP BY symbol",
        )
        .bind(symbols)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading the stored ranges"))?;
        Ok(rows
            .into_iter()
            .map(|(symbol, first, last)| (symbol, (first, last)))
            .collect())
    }

    /// The stored closes of `symbol` from `from` to `to`, by date: what the basis check
    /// compares a fresh answer with.
    #[tracing::instrument(name = "db.stored_bars", skip(self), err(Display))]
    pub async fn stored_bars(
        &self,
        symbol: &DbSymbol,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StoredBar>, StoreError> {
        let rows: Vec<(NaiveDate, Decimal, Option<Decimal>)> = sqlx::query_as(
            "SELECT trade_date, close_price, adj_close FROM market_data
             WHERE symbol = $1 AND trade_date BETWEEN $2 AND $3 ORDER BY trade_date",
        )
        .bind(symbol.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading stored bars"))?;
        Ok(rows
            .into_iter()
            .map(|(trade_date, close, adj_close)| StoredBar {
                trade_date,
                close,
                adj_close,
            })
            .collect())
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
        type Closes = (
            Option<NaiveDate>,
            Option<NaiveDate>,
            Option<NaiveDate>,
            Option<Decimal>,
            Option<NaiveDate>,
            Option<Decimal>,
            i64,
            Option<String>,
        );
        let row: Closes = sqlx::query_as(
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
        let (first, last, first_in, first_close, last_in, last_close, days, currency) = row;
        Ok(CloseWindow {
            stored_range: first.zip(last),
            first: first_in.zip(first_close),
            last: last_in.zip(last_close),
            trading_days: (days - 1).max(0),
            currency,
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
