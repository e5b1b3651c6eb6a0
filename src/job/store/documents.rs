//! `documents`: the narratives and their metadata, and which version of each Chroma holds
//! (`content_hash` against `indexed_hash`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sqlx::Row;

use super::{Store, StoreError, query_error};
use crate::domain::DbSymbol;
use crate::job::narrate::{ContextBar, ContextSeries, Document};

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
    /// How many stored trade dates of `symbol` lie on or after its oldest document: what the
    /// narrate stage rewrites after a rebase.
    #[tracing::instrument(name = "db.documented_days", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn documented_days(&self, symbol: &DbSymbol) -> Result<u32, StoreError> {
        let days: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM market_data m WHERE m.symbol = $1
               AND m.trade_date >= (SELECT min(trade_date) FROM documents d WHERE d.symbol = $1)",
        )
        .bind(symbol.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("counting documented days"))?;
        Ok(u32::try_from(days).unwrap_or(u32::MAX))
    }

    /// How many stored trade dates of `symbol` lie on or after `from`.
    #[tracing::instrument(name = "db.stored_days_since", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn stored_days_since(
        &self,
        symbol: &DbSymbol,
        from: NaiveDate,
    ) -> Result<u32, StoreError> {
        let days: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM market_data WHERE symbol = $1 AND trade_date >= $2",
        )
        .bind(symbol.as_str())
        .bind(from)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("counting stored days"))?;
        Ok(u32::try_from(days).unwrap_or(u32::MAX))
    }

    /// The oldest document of `symbol` whose cross-asset context is not the stored one: it
    /// has no `vix_return` (`dollar_return`) although the context security `vix` (`dollar`)
    /// now has a bar with a daily return on its date, or has one although that bar is gone.
    /// A security is not its own context. `None`: every document reads the stored context.
    #[tracing::instrument(name = "db.first_stale_context", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn first_stale_context(
        &self,
        symbol: &DbSymbol,
        vix: Option<&DbSymbol>,
        dollar: Option<&DbSymbol>,
    ) -> Result<Option<NaiveDate>, StoreError> {
        sqlx::query_scalar(
            "SELECT min(d.trade_date) FROM documents d
             LEFT JOIN market_data v ON v.symbol = $2 AND v.trade_date = d.trade_date
                                    AND v.daily_return IS NOT NULL
             LEFT JOIN market_data x ON x.symbol = $3 AND x.trade_date = d.trade_date
                                    AND x.daily_return IS NOT NULL
             WHERE d.symbol = $1
               AND (($2::text IS NOT NULL AND $2 <> $1
                     AND (d.metadata ? 'vix_return') <> (v.symbol IS NOT NULL))
                 OR ($3::text IS NOT NULL AND $3 <> $1
                     AND (d.metadata ? 'dollar_return') <> (x.symbol IS NOT NULL)))",
        )
        .bind(symbol.as_str())
        .bind(vix.map(DbSymbol::as_str))
        .bind(dollar.map(DbSymbol::as_str))
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("checking the documents' cross-asset context"))
    }

    /// Every stored bar with a daily return of the context security `symbol`: the narrate
    /// stage's cross-asset context, read once per run (2,600 rows for ten years).
    #[tracing::instrument(name = "db.context_series", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn context_series(&self, symbol: &DbSymbol) -> Result<ContextSeries, StoreError> {
        let rows = sqlx::query(
            "SELECT trade_date, close_price, daily_return FROM market_data
             WHERE symbol = $1 AND daily_return IS NOT NULL
             ORDER BY trade_date",
        )
        .bind(symbol.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading the cross-asset context"))?;
        let bars: BTreeMap<NaiveDate, ContextBar> = rows
            .iter()
            .map(|r| {
                let bar = ContextBar {
                    close: r.try_get(1)?,
                    daily_return: r.try_get(2)?,
                };
                Ok((r.try_get(0)?, bar))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("reading the cross-asset context"))?;
        Ok(ContextSeries {
            db_symbol: symbol.as_str().to_owned(),
            bars,
        })
    }

    /// Whether `symbol` has a stored document written by another version of the narrative
    /// than `version` (its metadata's `narrative_version`): then the narrate stage writes every
    /// documented day of it again.
    #[tracing::instrument(name = "db.narrative_outdated", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn narrative_outdated(
        &self,
        symbol: &DbSymbol,
        version: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM documents WHERE symbol = $1
               AND (metadata->>'narrative_version') IS DISTINCT FROM $2::bigint::text)",
        )
        .bind(symbol.as_str())
        .bind(version)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("checking the narrative version"))
    }

    /// Upserts one security's documents; an unchanged document is not rewritten (and so stays
    /// indexed). Returns the documents inserted or changed.
    #[tracing::instrument(name = "db.write_documents", skip_all, fields(symbol = %symbol, documents = documents.len()), err(Display))]
    pub async fn write_documents(
        &self,
        symbol: &DbSymbol,
        documents: &[Document],
    ) -> Result<u64, StoreError> {
        let dates: Vec<NaiveDate> = documents.iter().map(|d| d.trade_date).collect();
        let texts: Vec<&str> = documents.iter().map(|d| d.text.as_str()).collect();
        let metadata: Vec<&serde_json::Value> = documents.iter().map(|d| &d.metadata).collect();
        let written = sqlx::query(
            "INSERT INTO documents (symbol, trade_date, document, metadata)
             SELECT $1, d, doc, meta FROM UNNEST($2::date[], $3::text[], $4::jsonb[]) AS t(d, doc, meta)
             ON CONFLICT (symbol, trade_date) DO UPDATE SET
                 document = EXCLUDED.document, metadata = EXCLUDED.metadata, updated_at = now()
             WHERE (documents.document, documents.metadata)
                IS DISTINCT FROM (EXCLUDED.document, EXCLUDED.metadata)",
        )
        .bind(symbol.as_str())
        .bind(dates)
        .bind(texts)
        .bind(metadata)
        .execute(&self.pool)
        .await
        .map_err(query_error("upserting documents"))?
        .rows_affected();
        Ok(written)
    }

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
                let metadata: sqlx::types::Json<serde_json::Map<String, serde_json::Value>> =
                    r.try_get(3)?;
                Ok(PendingDocument {
                    symbol: r.try_get(0)?,
                    trade_date: r.try_get(1)?,
                    document: r.try_get(2)?,
                    metadata: metadata.0,
                    content_hash: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("reading documents to index"))
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
