//! Search: the market days nearest to a stored day, or to a text, in the Chroma collection the
//! job fills ("days like today"). Read-only: it never creates a collection or writes a record.
//!
//! A day query reads that day's stored vector (`{db_symbol}:{trade_date}`) and asks Chroma for
//! its nearest neighbours, leaving the day itself out; a text query embeds the text with the
//! same model as the documents (see [`crate::job::embed`]). Filters are Chroma `where` clauses on the
//! metadata the job writes (`symbol`, `category`). Distances are cosine distances (the
//! collection's space); `similarity` is `1 - distance`.

use std::fmt::Write as _;
use std::num::NonZeroU32;

use chrono::NaiveDate;
use comfy_table::{CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde_json::json;

use crate::config::{Config, ConfigError};
use crate::domain::{Category, DbSymbol, DomainError};
use crate::job::embed::{EmbedError, Embedder, EmbedderSource};
use crate::job::index::{
    ChromaClient, ChromaSettings, Collection, Include, IndexError, Metadata, MetadataValue,
};
pub use crate::read::conditions::{Condition, ConditionError};

/// The most neighbours one query may ask for: a table of more is no longer read by a person,
/// and Chroma's HNSW search slows down with large `n_results`.
pub const MAX_K: u32 = 1000;

/// What to search near.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The stored vector of this security on this trade date.
    Day { symbol: DbSymbol, date: NaiveDate },
    /// A free-text description, embedded with the documents' model.
    Text(String),
}

/// Which records may be returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Only this security (`--same-symbol`, or `--symbol` with `--text`).
    pub symbol: Option<DbSymbol>,
    /// Only this category (`--category`).
    pub category: Option<Category>,
    /// Metadata conditions (`--where`, `--from`, `--to`), all of which must hold.
    pub conditions: Vec<Condition>,
}

impl Filter {
    /// Chroma's `where`: one key as is, several under `$and` (Chroma rejects two keys at the top).
    #[must_use]
    pub fn to_where(&self) -> Option<serde_json::Value> {
        let mut clauses = Vec::new();
        if let Some(symbol) = &self.symbol {
            clauses.push(json!({ "symbol": symbol.as_str() }));
        }
        if let Some(category) = &self.category {
            clauses.push(json!({ "category": category.as_str() }));
        }
        clauses.extend(self.conditions.iter().map(Condition::to_where));
        match clauses.len() {
            0 => None,
            1 => clauses.pop(),
            _ => Some(json!({ "$and": clauses })),
        }
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(symbol) = &self.symbol {
            parts.push(format!("symbol {symbol}"));
        }
        if let Some(category) = &self.category {
            parts.push(format!("category {category}"));
        }
        parts.extend(self.conditions.iter().map(Condition::describe));
        if parts.is_empty() {
            "all securities".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Why a search found nothing to search from. Display is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("--symbol: {0}")]
    Symbol(DomainError),
    #[error(transparent)]
    Condition(#[from] ConditionError),
    #[error(
        "{symbol} on {date} is not in Chroma collection {collection}: check the symbol, pick a trading day, \
         or run the job for that date first (e.g. --symbols {symbol} --from {date} --to {date})"
    )]
    DayNotIndexed {
        symbol: DbSymbol,
        date: NaiveDate,
        collection: String,
    },
    #[error(
        "record {id} in Chroma collection {collection} has no embedding; rerun the job to re-index it"
    )]
    NoEmbedding { id: String, collection: String },
    #[error(
        "the embedding model {model} answered an empty vector for the query text; check the model (`market-encoder check`) or the embeddings endpoint"
    )]
    EmptyEmbedding { model: String },
}

/// Answers `target`: the `k` nearest records in the collection `chroma` names that pass
/// `filter`. A text is embedded with `embedder`, which must be the model that made the
/// collection's vectors. Read-only: a missing collection is an error, never created.
pub async fn ask(
    chroma: &ChromaSettings,
    embedder: &EmbedderSource,
    target: Target,
    k: NonZeroU32,
    filter: &Filter,
) -> Result<Answer, SearchError> {
    let client = ChromaClient::connect(chroma).await?;
    let collection = client.open_collection(chroma.collection()).await?;
    match target {
        Target::Day { symbol, date } => {
            near_day(&client, &collection, &symbol, date, k, filter).await
        }
        Target::Text(text) => {
            let wanted = embedder.model_id();
            if let Some(stored) = collection.embedding_model.clone()
                && stored != wanted
            {
                return Err(IndexError::ModelMismatch {
                    collection: collection.name,
                    stored,
                    wanted,
                }
                .into());
            }
            let embedder = Embedder::load(embedder).await?;
            let vector = embedder
                .embed(vec![text.clone()])
                .await?
                .pop()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| SearchError::EmptyEmbedding {
                    model: embedder.model_id(),
                })?;
            let query = serde_json::json!({ "text": text, "model": embedder.model_id() });
            near_vector(&client, &collection, vector, k, filter, None, query).await
        }
    }
}

/// The stored symbol for `input`: the `db_symbol` of the configured security whose `symbol`,
/// `yahoo_symbol` or `db_symbol` it is (enabled or not), else `input` itself taken as a stored
/// symbol (a security since removed from the config may still be in the collection).
pub fn resolve_symbol(config: &Config, input: &str) -> Result<DbSymbol, SearchError> {
    config
        .securities
        .iter()
        .find(|s| s.symbol == input || s.yahoo_symbol == input || s.db_symbol == input)
        .map_or_else(
            || DbSymbol::parse(input).map_err(SearchError::Symbol),
            |s| Ok(s.db_symbol.clone()),
        )
}

/// `input` as one of the config's categories.
pub fn resolve_category(config: &Config, input: &str) -> Result<Category, ConfigError> {
    config
        .categories()
        .into_iter()
        .find(|c| c.as_str() == input)
        .cloned()
        .ok_or_else(|| ConfigError::UnknownCategory {
            path: config.path.clone(),
            category: input.to_owned(),
            known: config
                .categories()
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
}

/// One neighbour, nearest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neighbour {
    pub rank: usize,
    pub id: String,
    pub symbol: Option<String>,
    pub trade_date: Option<String>,
    /// Cosine distance: 0 for the same direction, up to 2.
    pub distance: f32,
    /// `1 - distance`: 1 for the same direction.
    pub similarity: f32,
    pub document: Option<String>,
    pub metadata: Metadata,
}

/// A search and what it found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub collection: String,
    /// `{"symbol", "date", "id", "document"}` for a day, `{"text"}` for a text.
    pub query: serde_json::Value,
    pub filter: Option<serde_json::Value>,
    pub k: u32,
    pub neighbours: Vec<Neighbour>,
}

/// The `k` nearest records to the stored day `{symbol}:{date}`, the day itself left out.
#[tracing::instrument(name = "search.day", skip_all, fields(%symbol, %date, k), err(Display))]
pub async fn near_day(
    chroma: &ChromaClient,
    collection: &Collection,
    symbol: &DbSymbol,
    date: NaiveDate,
    k: NonZeroU32,
    filter: &Filter,
) -> Result<Answer, SearchError> {
    let id = format!("{symbol}:{date}");
    let mut found = chroma
        .get(
            collection,
            &[id.as_str()],
            &[Include::Embeddings, Include::Documents],
        )
        .await?;
    let Some(day) = found.pop() else {
        return Err(SearchError::DayNotIndexed {
            symbol: symbol.clone(),
            date,
            collection: collection.name.clone(),
        });
    };
    let Some(vector) = day.embedding else {
        return Err(SearchError::NoEmbedding {
            id,
            collection: collection.name.clone(),
        });
    };
    let query = json!({
        "symbol": symbol.as_str(),
        "date": date.to_string(),
        "id": id,
        "document": day.document,
    });
    near_vector(chroma, collection, vector, k, filter, Some(&id), query).await
}

/// The `k` nearest records to `vector` (a query text's embedding, or a stored day's), leaving
/// out the record `exclude`.
#[tracing::instrument(name = "search.vector", skip_all, fields(k), err(Display))]
pub async fn near_vector(
    chroma: &ChromaClient,
    collection: &Collection,
    vector: Vec<f32>,
    k: NonZeroU32,
    filter: &Filter,
    exclude: Option<&str>,
    query: serde_json::Value,
) -> Result<Answer, SearchError> {
    let wanted = k.get().min(MAX_K);
    // One more than asked when the query day itself is in the collection: it is its own
    // nearest neighbour and is dropped below.
    let n_results = wanted + u32::from(exclude.is_some());
    let where_ = filter.to_where();
    let hits = chroma
        .query(
            collection,
            &[vector],
            n_results,
            where_.clone(),
            &[Include::Distances, Include::Documents, Include::Metadatas],
        )
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let neighbours = hits
        .into_iter()
        .filter(|hit| Some(hit.id.as_str()) != exclude)
        .take(wanted as usize)
        .enumerate()
        .map(|(i, hit)| {
            let metadata = hit.metadata.unwrap_or_default();
            let text = |key: &str| match metadata.get(key) {
                Some(MetadataValue::Str(s)) => Some(s.clone()),
                _ => None,
            };
            let distance = hit.distance.unwrap_or(f32::NAN);
            Neighbour {
                rank: i + 1,
                symbol: text("symbol"),
                trade_date: text("trade_date"),
                id: hit.id,
                distance,
                similarity: 1.0 - distance,
                document: hit.document,
                metadata,
            }
        })
        .collect();
    Ok(Answer {
        collection: collection.name.clone(),
        query,
        filter: where_,
        k: wanted,
        neighbours,
    })
}

/// The answer as a table for a terminal: what was asked, then one row per neighbour.
#[must_use]
pub fn table(answer: &Answer, filter: &Filter) -> String {
    let mut out = String::new();
    let asked = match (
        answer.query.get("id").and_then(|v| v.as_str()),
        answer.query.get("text").and_then(|v| v.as_str()),
    ) {
        (Some(id), _) => format!("market day {id}"),
        (None, Some(text)) => format!("{text:?}"),
        (None, None) => "the query".to_owned(),
    };
    let _ = writeln!(
        out,
        "{} nearest to {asked} in {} ({}):",
        answer.neighbours.len(),
        answer.collection,
        filter.describe()
    );
    if let Some(document) = answer.query.get("document").and_then(|v| v.as_str()) {
        let _ = writeln!(out, "  {document}");
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "#",
        "date",
        "symbol",
        "category",
        "similarity",
        "close",
        "day",
        "regime",
    ]);
    for n in &answer.neighbours {
        let float = |key: &str| match n.metadata.get(key) {
            Some(MetadataValue::Float(v)) => Some(*v),
            Some(MetadataValue::Int(v)) => Some(*v as f64),
            _ => None,
        };
        let text = |key: &str| match n.metadata.get(key) {
            Some(MetadataValue::Str(s)) => s.clone(),
            _ => String::new(),
        };
        table.add_row(vec![
            n.rank.to_string(),
            n.trade_date.clone().unwrap_or_default(),
            n.symbol.clone().unwrap_or_else(|| n.id.clone()),
            text("category"),
            format!("{:.3}", n.similarity),
            float("close").map_or_else(String::new, |v| format!("{v:.2}")),
            float("daily_return").map_or_else(String::new, |v| format!("{:+.2}%", v * 100.0)),
            text("regime"),
        ]);
    }
    for column in [0, 4, 5, 6] {
        if let Some(c) = table.column_mut(column) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let _ = writeln!(out, "{table}");
    out
}

/// The answer as one JSON object (`--json`).
#[must_use]
pub fn json_answer(answer: &Answer) -> String {
    serde_json::to_string(answer).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> DbSymbol {
        DbSymbol::parse(s).unwrap()
    }

    #[test]
    fn filters_become_chroma_where_clauses() {
        assert_eq!(Filter::default().to_where(), None);
        let one = Filter {
            symbol: Some(sym("SPX")),
            ..Filter::default()
        };
        assert_eq!(one.to_where(), Some(json!({"symbol": "SPX"})));
        let both = Filter {
            symbol: Some(sym("SPX")),
            category: Some(Category::parse("indices").unwrap()),
            ..Filter::default()
        };
        assert_eq!(
            both.to_where(),
            Some(json!({"$and": [{"symbol": "SPX"}, {"category": "indices"}]}))
        );
        assert_eq!(both.describe(), "symbol SPX, category indices");
        let conditions = Filter {
            category: Some(Category::parse("indices").unwrap()),
            conditions: vec![
                Condition::parse("daily_return < -0.02").unwrap(),
                Condition::parse("rsi_14 < 30").unwrap(),
            ],
            ..Filter::default()
        };
        assert_eq!(
            conditions.to_where(),
            Some(
                json!({"$and": [{"category": "indices"}, {"daily_return": {"$lt": -0.02}}, {"rsi_14": {"$lt": 30.0}}]})
            )
        );
        assert_eq!(
            conditions.describe(),
            "category indices, daily_return < -0.02, rsi_14 < 30.0"
        );
    }

    fn answer() -> Answer {
        let metadata = Metadata::from([
            ("symbol".into(), "QQQ".into()),
            ("trade_date".into(), "2024-02-29".into()),
            ("category".into(), "etfs".into()),
            ("close".into(), MetadataValue::Float(439.6)),
            ("daily_return".into(), MetadataValue::Float(-0.0123)),
            ("regime".into(), "bull, calm".into()),
        ]);
        Answer {
            collection: "c".into(),
            query: json!({"id": "SPX:2024-03-01", "document": "2024-03-01 - SPX ..."}),
            filter: None,
            k: 1,
            neighbours: vec![Neighbour {
                rank: 1,
                id: "QQQ:2024-02-29".into(),
                symbol: Some("QQQ".into()),
                trade_date: Some("2024-02-29".into()),
                distance: 0.25,
                similarity: 0.75,
                document: Some("2024-02-29 - QQQ ...".into()),
                metadata,
            }],
        }
    }

    #[test]
    fn the_table_shows_the_query_and_one_row_per_neighbour() {
        let text = table(&answer(), &Filter::default());
        assert!(text.starts_with("1 nearest to market day SPX:2024-03-01 in c (all securities):"));
        assert!(text.contains("2024-03-01 - SPX ..."));
        for cell in [
            "2024-02-29",
            "QQQ",
            "etfs",
            "0.750",
            "439.60",
            "-1.23%",
            "bull, calm",
        ] {
            assert!(text.contains(cell), "{cell} missing from\n{text}");
        }
    }

    #[test]
    fn json_keeps_metadata_types() {
        let value: serde_json::Value = serde_json::from_str(&json_answer(&answer())).unwrap();
        let n = &value["neighbours"][0];
        assert_eq!(n["id"], "QQQ:2024-02-29");
        assert_eq!(n["similarity"], 0.75);
        assert_eq!(n["metadata"]["close"], 439.6);
        assert_eq!(n["metadata"]["regime"], "bull, calm");
    }
}
