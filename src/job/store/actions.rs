//! `corporate_actions`: the splits and dividends Yahoo reported, each stored once; and the
//! reads behind rebasing and the dividend-aware P&L.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{Store, StoreError, query_error};
use crate::domain::{ActionKind, CorporateAction, DbSymbol};

/// Stores `actions` in the caller's transaction: new ones are inserted, a stored one whose
/// ratio or amount Yahoo now reports differently (a dividend re-adjusted by a later split) is
/// updated; returns those inserted for the first time.
pub(super) async fn insert_new(
    conn: &mut PgConnection,
    symbol: &str,
    currency: Option<&str>,
    actions: &[CorporateAction],
) -> Result<Vec<CorporateAction>, StoreError> {
    let mut inserted = Vec::new();
    for action in actions {
        let (numerator, denominator, amount) = columns(action);
        let new: Option<bool> = sqlx::query_scalar(
            "INSERT INTO corporate_actions (symbol, ex_date, kind, numerator, denominator, amount, currency)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (symbol, ex_date, kind) DO UPDATE SET
                 numerator = EXCLUDED.numerator, denominator = EXCLUDED.denominator,
                 amount = EXCLUDED.amount, currency = COALESCE(EXCLUDED.currency, corporate_actions.currency)
             WHERE (corporate_actions.numerator, corporate_actions.denominator, corporate_actions.amount)
                IS DISTINCT FROM (EXCLUDED.numerator, EXCLUDED.denominator, EXCLUDED.amount)
             RETURNING xmax = 0",
        )
        .bind(symbol)
        .bind(action.ex_date)
        .bind(action.kind_str())
        .bind(numerator)
        .bind(denominator)
        .bind(amount)
        .bind(currency)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error("storing corporate actions"))?;
        if new == Some(true) {
            inserted.push(*action);
        }
    }
    Ok(inserted)
}

fn columns(action: &CorporateAction) -> (Option<Decimal>, Option<Decimal>, Option<Decimal>) {
    match action.kind {
        ActionKind::Split {
            numerator,
            denominator,
        } => (Some(numerator), Some(denominator), None),
        ActionKind::Dividend { amount } => (None, None, Some(amount)),
    }
}

impl Store {
    /// Of `actions`, those not in `corporate_actions` yet.
    #[tracing::instrument(name = "db.unknown_actions", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn unknown_actions(
        &self,
        symbol: &DbSymbol,
        actions: &[CorporateAction],
    ) -> Result<Vec<CorporateAction>, StoreError> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        let known = self.actions_between(symbol, None, None).await?;
        Ok(actions
            .iter()
            .filter(|a| {
                !known
                    .iter()
                    .any(|k| k.ex_date == a.ex_date && k.kind_str() == a.kind_str())
            })
            .copied()
            .collect())
    }

    /// The stored actions of `symbol` with an ex-date after `after` and up to `until` (each
    /// bound optional), by ex-date.
    #[tracing::instrument(name = "db.actions_between", skip(self), err(Display))]
    pub async fn actions_between(
        &self,
        symbol: &DbSymbol,
        after: Option<NaiveDate>,
        until: Option<NaiveDate>,
    ) -> Result<Vec<CorporateAction>, StoreError> {
        let rows = sqlx::query(
            "SELECT ex_date, kind, numerator, denominator, amount FROM corporate_actions
             WHERE symbol = $1 AND ($2::date IS NULL OR ex_date > $2)
               AND ($3::date IS NULL OR ex_date <= $3)
             ORDER BY ex_date, kind",
        )
        .bind(symbol.as_str())
        .bind(after)
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading corporate actions"))?;
        let decode = |r: &PgRow| -> Result<Option<CorporateAction>, sqlx::Error> {
            let kind = match r.try_get::<&str, _>(1)? {
                "split" => match (r.try_get(2)?, r.try_get(3)?) {
                    (Some(numerator), Some(denominator)) => ActionKind::Split {
                        numerator,
                        denominator,
                    },
                    _ => return Ok(None),
                },
                _ => match r.try_get(4)? {
                    Some(amount) => ActionKind::Dividend { amount },
                    None => return Ok(None),
                },
            };
            Ok(Some(CorporateAction {
                ex_date: r.try_get(0)?,
                kind,
            }))
        };
        rows.iter()
            .filter_map(|r| decode(r).transpose())
            .collect::<Result<_, _>>()
            .map_err(query_error("reading corporate actions"))
    }
}
