//! The JSON bodies of Chroma's v2 HTTP API, as the server (chromadb 1.5) sends and takes them.
//! Nothing outside `index` sees these types; `index` turns them into [`super::Hit`]s and
//! [`super::Collection`]s.
//!
//! Requests borrow from the caller's records (an upsert of 5,000 x 384 floats is not copied
//! before it is serialized). Responses keep every array `Option`al: Chroma fills only what the
//! request's `include` asked for and sends `null` for the rest, and any single document or
//! metadata may itself be `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Metadata;

/// `GET /api/v2/pre-flight-checks`.
#[derive(Debug, Deserialize)]
pub struct PreFlight {
    pub max_batch_size: usize,
}

/// `GET /api/v2/heartbeat`.
#[derive(Debug, Deserialize)]
pub struct Heartbeat {
    #[serde(rename = "nanosecond heartbeat")]
    pub nanosecond_heartbeat: u64,
}

/// `GET /api/v2/tenants/{tenant}/databases/{database}`.
#[derive(Debug, Deserialize)]
pub struct Database {
    pub name: String,
}

/// Chroma's error body on 4xx/5xx: `{"error": "NotFoundError", "message": "..."}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// `POST .../collections`.
#[derive(Debug, Serialize)]
pub struct CreateCollection<'a> {
    pub name: &'a str,
    pub get_or_create: bool,
    pub configuration: Configuration,
    pub metadata: BTreeMap<&'a str, &'a str>,
}

/// A collection's configuration: only the distance function matters here. A local server
/// indexes with HNSW; distributed Chroma (Cloud) reports its index as SPANN.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct Configuration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw: Option<Index>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spann: Option<Index>,
}

#[derive(Debug, Serialize, Deserialize, Default)]
pub struct Index {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
}

impl Configuration {
    /// The distance function, if the server said which.
    pub fn space(&self) -> Option<&str> {
        [&self.hnsw, &self.spann]
            .into_iter()
            .flatten()
            .find_map(|i| i.space.as_deref())
    }
}

/// The collection as Chroma returns it (only the fields this client reads).
#[derive(Debug, Deserialize)]
pub struct CollectionBody {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub configuration_json: Option<Configuration>,
    /// The collection's metadata (`null` when it has none); values may be any scalar.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST .../collections/{id}/upsert`. All arrays have one entry per record, in the same order.
#[derive(Debug, Serialize)]
pub struct Upsert<'a> {
    pub ids: Vec<&'a str>,
    pub embeddings: Vec<&'a [f32]>,
    pub documents: Vec<&'a str>,
    /// `None` for a record without metadata (Chroma stores an empty map as `null` anyway).
    pub metadatas: Vec<Option<&'a Metadata>>,
}

/// `POST .../collections/{id}/get`.
#[derive(Debug, Serialize)]
pub struct Get<'a> {
    pub ids: Vec<&'a str>,
    pub include: &'a [super::Include],
}

#[derive(Debug, Deserialize)]
pub struct GetResponse {
    pub ids: Vec<String>,
    #[serde(default)]
    pub documents: Option<Vec<Option<String>>>,
    #[serde(default)]
    pub metadatas: Option<Vec<Option<Metadata>>>,
    #[serde(default)]
    pub embeddings: Option<Vec<Option<Vec<f32>>>>,
}

/// `POST .../collections/{id}/query`.
#[derive(Debug, Serialize)]
pub struct Query<'a> {
    pub query_embeddings: &'a [Vec<f32>],
    pub n_results: u32,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<&'a serde_json::Value>,
    pub include: &'a [super::Include],
}

/// One list per query embedding, each with one entry per hit, nearest first.
#[derive(Debug, Deserialize)]
pub struct QueryResponse {
    pub ids: Vec<Vec<String>>,
    #[serde(default)]
    pub distances: Option<Vec<Vec<Option<f32>>>>,
    #[serde(default)]
    pub documents: Option<Vec<Vec<Option<String>>>>,
    #[serde(default)]
    pub metadatas: Option<Vec<Vec<Option<Metadata>>>>,
    #[serde(default)]
    pub embeddings: Option<Vec<Vec<Option<Vec<f32>>>>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::index::MetadataValue;

    #[test]
    fn query_response_with_missing_documents_and_metadata_parses() {
        let body = r#"{"ids":[["a","b"]],"embeddings":null,"documents":[["doc a",null]],
            "uris":null,"metadatas":[[{"f":1.0,"i":1,"b":true,"s":"x"},null]],
            "distances":[[0.0049628615,0.9004963]],"include":["documents","metadatas","distances"]}"#;
        let r: QueryResponse = serde_json::from_str(body).unwrap();
        assert_eq!(r.ids, vec![vec!["a".to_owned(), "b".to_owned()]]);
        let docs = r.documents.unwrap();
        assert_eq!(docs[0][1], None);
        let metas = r.metadatas.unwrap();
        let m = metas[0][0].as_ref().unwrap();
        assert_eq!(m["i"], MetadataValue::Int(1));
        assert_eq!(m["f"], MetadataValue::Float(1.0));
        assert_eq!(m["b"], MetadataValue::Bool(true));
        assert_eq!(m["s"], MetadataValue::Str("x".into()));
        assert!(metas[0][1].is_none());
    }

    #[test]
    fn collection_space_is_read_from_configuration_json() {
        let body = r#"{"id":"6e91b81b-ee40-4bd0-a23e-8a71772558d4","name":"t11",
            "configuration_json":{"hnsw":{"space":"cosine","ef_construction":100},"spann":null,
            "embedding_function":null},"schema":{},"metadata":null,"dimension":null,
            "tenant":"default_tenant","database":"default_database","log_position":0,"version":0}"#;
        let c: CollectionBody = serde_json::from_str(body).unwrap();
        assert!(c.metadata.is_none());
        assert_eq!(c.configuration_json.unwrap().space(), Some("cosine"));
        let with_metadata = r#"{"id":"x","name":"t","configuration_json":null,
            "metadata":{"embedding_model":"openai:m","created_by":"market-encoder","n":1}}"#;
        let c: CollectionBody = serde_json::from_str(with_metadata).unwrap();
        assert_eq!(c.metadata.unwrap()["embedding_model"], "openai:m");
    }
}
