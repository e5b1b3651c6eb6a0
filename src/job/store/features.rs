//! `market_features`: the cross-asset features stage's rows and the reads behind the
//! `features` command.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use sqlx::Row;
use sqlx::types::Json;

use super::{Store, StoreError, query_error};
use crate::job::features::{FeatureRow, Panel, Plan};
use sqlx::{Postgres, Transaction};

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

/// One stored feature of one date, for the `features` command.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFeature {
    pub feature: String,
    pub value: Option<f64>,
    pub inputs: serde_json::Value,
}

/// Key of the advisory lock the features stage holds for its transaction ("mkt-feat"): the
/// shards of one job run in parallel, but their features stages one after the other, each
/// reading the closes only once it holds the lock, so the last one to run sees every shard's
/// committed prices and none can commit values computed from older closes after it.
pub const FEATURES_LOCK_KEY: i64 = 0x6d6b_742d_6665_6174;

/// The features stage's transaction ([`Store::begin_features`]): it holds the features lock
/// from its first statement to its commit; dropped uncommitted, it rolls back.
pub struct FeaturesTx {
    tx: Transaction<'static, Postgres>,
}

/// What [`FeaturesTx::read`] found: the closes to compute from and the first date to write.
#[derive(Debug)]
pub struct FeatureInputs {
    pub panel: Panel,
    /// The first calendar date to (re)compute: the run's start, or an earlier date that lacks
    /// a feature. `None` when no input has a close.
    pub from: Option<NaiveDate>,
}

impl Store {
    /// Starts the features stage: a transaction that first waits for, then holds, the
    /// features lock ([`FEATURES_LOCK_KEY`]).
    #[tracing::instrument(name = "db.begin_features", skip_all, err(Display))]
    pub async fn begin_features(&self) -> Result<FeaturesTx, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("starting the features transaction"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FEATURES_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(query_error("taking the features lock"))?;
        Ok(FeaturesTx { tx })
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
                let inputs: Json<serde_json::Value> = r.try_get(2)?;
                Ok(StoredFeature {
                    feature: r.try_get(0)?,
                    value: r.try_get(1)?,
                    inputs: inputs.0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("reading features"))
    }
}

impl FeaturesTx {
    /// The closes of `plan`'s inputs on the feature calendar from `changed_from` (or the first
    /// calendar date that lacks one of the plan's features, if earlier) to the last stored
    /// one, plus the look-back before it.
    #[tracing::instrument(name = "db.read_feature_inputs", skip_all, fields(features = plan.features.len()), err(Display))]
    pub async fn read(
        &mut self,
        plan: &Plan,
        changed_from: NaiveDate,
    ) -> Result<FeatureInputs, StoreError> {
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
        .fetch_one(&mut *self.tx)
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
        .fetch_all(&mut *self.tx)
        .await
        .map_err(query_error("reading the feature calendar"))?;
        let Some(&first) = dates.iter().min() else {
            return Ok(FeatureInputs {
                panel: Panel::new(dates),
                from: None,
            });
        };

        let closes = sqlx::query(
            "SELECT symbol, trade_date, close_price FROM market_data
             WHERE symbol = ANY($1::text[]) AND trade_date >= $2",
        )
        .bind(&symbols)
        .bind(first)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(query_error("reading the closes of the feature inputs"))?;
        let mut panel = Panel::new(dates);
        let decode_error = query_error("reading the closes of the feature inputs");
        let decoded: Result<Vec<(&str, NaiveDate, Decimal)>, sqlx::Error> = closes
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect();
        for (symbol, date, close) in decoded.map_err(decode_error)? {
            if let Some(close) = close.to_f64() {
                panel.insert(symbol, date, close);
            }
        }
        Ok(FeatureInputs {
            panel,
            from: Some(from),
        })
    }

    /// Writes `rows` (unchanged ones untouched), removes the rows of features no longer in
    /// `plan` from `from` on, and commits. Returns the rows inserted, changed or removed.
    #[tracing::instrument(name = "db.write_features", skip_all, fields(rows = rows.len()), err(Display))]
    pub async fn write(
        mut self,
        plan: &Plan,
        rows: &[FeatureRow<'_>],
        from: NaiveDate,
    ) -> Result<u64, StoreError> {
        let n = rows.len();
        let (mut row_dates, mut row_names, mut values, mut inputs) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for row in rows {
            row_dates.push(row.trade_date);
            row_names.push(row.feature);
            values.push(row.value);
            inputs.push(
                serde_json::to_value(&row.inputs)
                    .unwrap_or_else(|_| serde_json::json!({ "kind": "unrecorded" })),
            );
        }
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
        .execute(&mut *self.tx)
        .await
        .map_err(query_error("upserting features"))?
        .rows_affected();
        let removed = sqlx::query(
            "DELETE FROM market_features WHERE trade_date >= $1 AND feature <> ALL($2::text[])",
        )
        .bind(from)
        .bind(plan.names())
        .execute(&mut *self.tx)
        .await
        .map_err(query_error("removing features no longer configured"))?
        .rows_affected();
        self.tx
            .commit()
            .await
            .map_err(query_error("committing the features"))?;
        Ok(upserted + removed)
    }
}
