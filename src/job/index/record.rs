//! What the index stage sends to Chroma and reads back: records with their typed metadata,
//! hits, the collection; and the checks a record passes before any request.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::IndexError;

/// A metadata value Chroma accepts. Serialized untagged: `"x"`, `1`, `1.0`, `true`. Floats always
/// carry a decimal point or exponent on the wire, so an `f64` of `1.0` stays a float in Chroma
/// (and in the Python client), and an `i64` stays an integer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetadataValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl From<&str> for MetadataValue {
    fn from(v: &str) -> Self {
        Self::Str(v.to_owned())
    }
}
impl From<String> for MetadataValue {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}
impl From<i64> for MetadataValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<i32> for MetadataValue {
    fn from(v: i32) -> Self {
        Self::Int(v.into())
    }
}
impl From<f64> for MetadataValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}
impl From<bool> for MetadataValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A record's metadata: scalar values only (Chroma rejects nested objects).
pub type Metadata = BTreeMap<String, MetadataValue>;

/// One record to upsert. `id` should be stable (`{db_symbol}:{trade_date}`) so that a rerun
/// overwrites instead of adding.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub embedding: Vec<f32>,
    pub document: String,
    pub metadata: Metadata,
}

/// What `get` and `query` return besides ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Include {
    Documents,
    Metadatas,
    Distances,
    Embeddings,
}

/// A record as Chroma returns it. A field is `None` when it was not asked for in `include`, or
/// when the record has none (a record may have no document and no metadata). `distance` is only
/// set by `query` (cosine distance: 0 for the same direction, up to 2).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub distance: Option<f32>,
    pub document: Option<String>,
    pub metadata: Option<Metadata>,
    pub embedding: Option<Vec<f32>>,
}

/// A collection handle. Record endpoints address collections by `id`, not by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub id: String,
    pub name: String,
    /// The distance function as the server reports it (always `cosine` once returned by
    /// [`ChromaClient::collection`]).
    pub space: String,
    /// The model whose vectors the collection holds, as recorded in its metadata
    /// ([`EMBEDDING_MODEL_KEY`]) when [`ChromaClient::collection_for_model`] created it; `None`
    /// for a collection created otherwise.
    pub embedding_model: Option<String>,
}

/// The records with distinct ids, the last of each id winning, in the order of those last ones.
pub(super) fn dedupe(records: &[Record]) -> Vec<&Record> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        last.insert(r.id.as_str(), i);
    }
    if last.len() == records.len() {
        return records.iter().collect();
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| &records[i]).collect()
}

pub(super) fn non_finite_embedding(embedding: &[f32]) -> Option<String> {
    if embedding.is_empty() {
        return Some("the embedding is empty".into());
    }
    embedding
        .iter()
        .position(|v| !v.is_finite())
        .map(|i| format!("embedding[{i}] is {}", embedding[i]))
}

/// What Chroma would refuse (or what JSON would silently turn into `null`), caught before any
/// request so that a bad record never leaves half a batch written.
pub(super) fn check_record(record: &Record) -> Result<(), IndexError> {
    let invalid = |problem: String| IndexError::InvalidRecord {
        id: record.id.clone(),
        problem,
    };
    if record.id.is_empty() {
        return Err(invalid("the id is empty".into()));
    }
    if let Some(problem) = non_finite_embedding(&record.embedding) {
        return Err(invalid(problem));
    }
    for (key, value) in &record.metadata {
        if let MetadataValue::Float(f) = value
            && !f.is_finite()
        {
            return Err(invalid(format!(
                "metadata {key:?} is {f}; Chroma accepts only finite numbers"
            )));
        }
        if key.is_empty() || key.starts_with('#') || key.starts_with("chroma:") {
            return Err(invalid(format!(
                "metadata key {key:?} is reserved by Chroma (empty, '#...' or 'chroma:...')"
            )));
        }
    }
    Ok(())
}
