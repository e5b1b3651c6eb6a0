//! Stage: index. ChromaDB over its HTTP API v2: get-or-create a cosine collection, upsert
//! embeddings with their document and metadata, count, get, query.
//!
//! **Why a small typed client over reqwest rather than a Chroma crate.** The community `chromadb`
//! crate (2.3) still calls API v1 for `heartbeat()`/`version()` (the server answers 410), cannot
//! pass a collection `configuration` (so no cosine space), fails to parse a query result holding a
//! record without a document, and pulls reqwest 0.11 beside the crate's reqwest 0.13. The official
//! `chroma` crate works, but needs `protoc` at build time and ~255 crates (~4 min clean release
//! build on 2 cores) for the six endpoints used here. Those six are plain JSON; this module is
//! their wire types (`index/wire.rs`), retries and error messages, tested against a real server
//! (`tests/chroma.rs`) and against the official Python client (`tests/chroma_interop.py`).
//!
//! What the server does not do for us (measured against chromadb 1.5.9):
//! - it accepts any batch size and duplicate ids within one upsert: [`ChromaClient::upsert`]
//!   dedupes ids (last wins) and splits into batches of at most the advertised `max_batch_size`;
//! - `serde_json` would write a NaN as `null`: non-finite embeddings and metadata floats are
//!   refused before anything is sent, naming the record and the key;
//! - `get_or_create` with another distance returns the existing collection silently:
//!   [`ChromaClient::collection`] checks that the space is cosine.
//!
//! Upsert *merges* metadata: a key left out of a later upsert keeps its old value.
//!
//! Retries, as in `fetch` and with the same loop ([`crate::support::retry`]): a status or transport
//! failure is classified as transient (429, 5xx, timeout, connection refused or dropped) or
//! permanent (any other 4xx, never retried); backon's jittered exponential backoff says when, and
//! `Retry-After` can only lengthen a wait. Every call is idempotent (upserts with stable ids), so
//! retrying one that reached the server is safe.
//!
//! The vectors of different embedding models are not comparable: [`ChromaClient::collection_for_model`]
//! records the model in a new collection's metadata and refuses an existing one of another model.

mod record;
pub mod wire;

pub use record::{Collection, Hit, Include, Metadata, MetadataValue, Record};
use record::{check_record, dedupe, non_finite_embedding};

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use tracing::debug;
use url::Url;

pub use crate::config::env::{
    ChromaSettings, DEFAULT_CHROMA_URL, DEFAULT_COLLECTION, DEFAULT_DATABASE, DEFAULT_RETRY,
    DEFAULT_TENANT, DEFAULT_TIMEOUT, TOKEN_HEADER,
};
use crate::support::http::client_builder;
pub use crate::support::retry::Transient;
use crate::support::retry::{self, Attempt, RetryPolicy, classify_transport, retry_after};
use crate::support::text::server_message;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The metadata the collection is created with (informational).
const CREATED_BY: (&str, &str) = ("created_by", "market-encoder");
/// The collection metadata key that records which model made its vectors (see
/// [`ChromaClient::collection_for_model`]).
pub const EMBEDDING_MODEL_KEY: &str = "embedding_model";

/// Why talking to Chroma failed. Each message is one line naming Chroma and what to do.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("environment variable {name}: {problem}")]
    BadSetting { name: &'static str, problem: String },
    #[error("cannot build the HTTP client for Chroma: {0}")]
    Client(String),
    #[error("cannot build the HTTP client for Chroma: {0}")]
    Http(#[source] reqwest::Error),
    #[error("Chroma at {url} is unreachable ({detail}); start it or set CHROMA_URL")]
    Unreachable { url: String, detail: String },
    #[error(
        "Chroma at {url} kept failing {what} ({last}) after {attempts} attempts; check the Chroma server and rerun"
    )]
    Unavailable {
        url: String,
        what: String,
        attempts: u32,
        last: Transient,
    },
    #[error(
        "{url} does not answer like a Chroma 1.x server ({detail}); point CHROMA_URL at Chroma >= 1.0 (API v2)"
    )]
    NotChroma { url: String, detail: String },
    #[error(
        "Chroma at {url} refused {what} (HTTP {status}: {message}); check CHROMA_TOKEN, CHROMA_TENANT and CHROMA_DATABASE"
    )]
    Unauthorized {
        url: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "Chroma at {url} has no database {database:?} in tenant {tenant:?} ({message}); create it or set CHROMA_TENANT/CHROMA_DATABASE"
    )]
    NoDatabase {
        url: String,
        tenant: String,
        database: String,
        message: String,
    },
    #[error(
        "Chroma collection {collection} measures {space} distance, not cosine; delete it or set CHROMA_COLLECTION to a new name"
    )]
    WrongSpace { collection: String, space: String },
    #[error(
        "collection {collection} holds vectors of model {stored} but this run embeds with {wanted}; set CHROMA_COLLECTION to another collection or delete {collection}"
    )]
    ModelMismatch {
        collection: String,
        stored: String,
        wanted: String,
    },
    #[error(
        "Chroma at {url} has no collection {collection} in {tenant}/{database}; run the job first (it creates it) or set CHROMA_COLLECTION"
    )]
    NoCollection {
        url: String,
        tenant: String,
        database: String,
        collection: String,
    },
    #[error("record {id:?} cannot be sent to Chroma: {problem}")]
    InvalidRecord { id: String, problem: String },
    #[error("Chroma rejected {what} (HTTP {status}: {message})")]
    Rejected {
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "Chroma's answer to {what} is not what this client expects ({detail}); is the server Chroma 1.x?"
    )]
    Decode { what: String, detail: String },
}

impl IndexError {
    /// Chroma could not be reached, or kept failing with 429/5xx until the retries ran out: no
    /// record can be indexed in this run (worth its own exit code), as opposed to a request
    /// Chroma rejected or a record that is invalid.
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Unavailable { .. })
    }

    /// The HTTP status of a request Chroma rejected (4xx), if that is what this is.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Rejected { status, .. } | Self::Unauthorized { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A Chroma server (one tenant and database of it). Cheap to share by reference.
pub struct ChromaClient {
    http: reqwest::Client,
    base: Url,
    shown_url: String,
    tenant: String,
    database: String,
    timeout: Duration,
    retry: RetryPolicy,
    advertised_max_batch: usize,
    max_batch: usize,
}

impl fmt::Debug for ChromaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChromaClient")
            .field("url", &self.shown_url)
            .field("tenant", &self.tenant)
            .field("database", &self.database)
            .field("max_batch_size", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl ChromaClient {
    /// Checks that Chroma answers (`/api/v2/heartbeat`), learns its `max_batch_size`
    /// (`/api/v2/pre-flight-checks`) and that the tenant's database exists.
    #[tracing::instrument(name = "chroma.connect", skip_all, fields(url = %settings.shown_url()), err(Display))]
    pub async fn connect(settings: &ChromaSettings) -> Result<Self, IndexError> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &settings.token {
            let mut value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                IndexError::BadSetting {
                    name: "CHROMA_TOKEN",
                    problem: "not a valid HTTP header value; the value is not shown".into(),
                }
            })?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static(TOKEN_HEADER), value);
        }
        let http = client_builder(settings.timeout, CONNECT_TIMEOUT)
            .user_agent(concat!("market-encoder/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()
            .map_err(IndexError::Http)?;
        let mut client = Self {
            http,
            base: settings.url.clone(),
            shown_url: settings.shown_url(),
            tenant: settings.tenant.clone(),
            database: settings.database.clone(),
            timeout: settings.timeout,
            retry: settings.retry,
            advertised_max_batch: 1,
            max_batch: 1,
        };
        let not_chroma = |e: IndexError, url: &str| match e {
            IndexError::Rejected {
                status, message, ..
            } => IndexError::NotChroma {
                url: url.to_owned(),
                detail: format!("GET /api/v2/heartbeat: HTTP {status}: {message}"),
            },
            IndexError::Decode { detail, .. } => IndexError::NotChroma {
                url: url.to_owned(),
                detail: format!("GET /api/v2/heartbeat: {detail}"),
            },
            other => other,
        };
        let heartbeat: wire::Heartbeat = client
            .call(
                Method::GET,
                client.url(&["api", "v2", "heartbeat"])?,
                "the heartbeat",
                None,
            )
            .await
            .map_err(|e| not_chroma(e, &client.shown_url))?;
        let preflight: wire::PreFlight = client
            .call(
                Method::GET,
                client.url(&["api", "v2", "pre-flight-checks"])?,
                "the pre-flight checks",
                None,
            )
            .await?;
        client.advertised_max_batch = preflight.max_batch_size.max(1);
        client.max_batch = client.advertised_max_batch;
        let database: Result<wire::Database, _> = client
            .call(
                Method::GET,
                client.db_url(&[])?,
                "the database lookup",
                None,
            )
            .await;
        match database {
            Ok(_) => {}
            Err(IndexError::Rejected {
                status: 400 | 404,
                message,
                ..
            }) => {
                return Err(IndexError::NoDatabase {
                    url: client.shown_url.clone(),
                    tenant: client.tenant.clone(),
                    database: client.database.clone(),
                    message,
                });
            }
            Err(e) => return Err(e),
        }
        debug!(
            heartbeat_ns = heartbeat.nanosecond_heartbeat,
            max_batch_size = client.max_batch,
            "connected to Chroma"
        );
        Ok(client)
    }

    /// Lowers the batch size below the server's advertised maximum (tests use this to force
    /// several batches); it can never go above that maximum.
    #[must_use]
    pub fn with_max_batch_size(mut self, max: NonZeroUsize) -> Self {
        self.max_batch = max.get().min(self.advertised_max_batch);
        self
    }

    /// Records per upsert request.
    #[must_use]
    pub fn max_batch_size(&self) -> usize {
        self.max_batch
    }

    /// The collection `name`, created with cosine distance if it does not exist. Fails with
    /// [`IndexError::WrongSpace`] if it exists with another distance. Records no model and
    /// checks none: the job uses [`Self::collection_for_model`].
    #[tracing::instrument(name = "chroma.collection", skip_all, fields(collection = name), err(Display))]
    pub async fn collection(&self, name: &str) -> Result<Collection, IndexError> {
        self.get_or_create(name, None).await
    }

    /// As [`Self::collection`], for vectors of the embedding model `model_id`: a new collection
    /// records it in its metadata ([`EMBEDDING_MODEL_KEY`]), and an existing one that records
    /// another model is refused with [`IndexError::ModelMismatch`] (its vectors would not be
    /// comparable with this model's). An existing collection that records no model (created
    /// before this check existed, or by [`Self::collection`]) is accepted as it is.
    #[tracing::instrument(name = "chroma.collection", skip_all, fields(collection = name, model = model_id), err(Display))]
    pub async fn collection_for_model(
        &self,
        name: &str,
        model_id: &str,
    ) -> Result<Collection, IndexError> {
        let collection = self.get_or_create(name, Some(model_id)).await?;
        match &collection.embedding_model {
            Some(stored) if stored != model_id => Err(IndexError::ModelMismatch {
                collection: collection.name,
                stored: stored.clone(),
                wanted: model_id.to_owned(),
            }),
            _ => Ok(collection),
        }
    }

    /// Get-or-create with cosine distance; `model_id`, if any, goes into a new collection's
    /// metadata (Chroma keeps an existing collection's metadata as it is).
    async fn get_or_create(
        &self,
        name: &str,
        model_id: Option<&str>,
    ) -> Result<Collection, IndexError> {
        let mut metadata = BTreeMap::from([CREATED_BY]);
        if let Some(model_id) = model_id {
            metadata.insert(EMBEDDING_MODEL_KEY, model_id);
        }
        let body = wire::CreateCollection {
            name,
            get_or_create: true,
            configuration: wire::Configuration {
                hnsw: Some(wire::Index {
                    space: Some("cosine".into()),
                }),
                spann: None,
            },
            metadata,
        };
        let what = format!("the creation of collection {name}");
        let created: wire::CollectionBody = self
            .call(
                Method::POST,
                self.db_url(&["collections"])?,
                &what,
                Some(to_body(&body, &what)?),
            )
            .await?;
        cosine_collection(created)
    }

    /// Inserts or replaces `records` (by id) and returns how many distinct ids were written.
    /// Duplicate ids in `records`: the last one wins. Every record is checked before anything is
    /// sent (finite embedding values and metadata floats); then they go in batches of at most
    /// [`Self::max_batch_size`], one after another. Metadata keys are merged with what is stored.
    #[tracing::instrument(
        name = "chroma.upsert",
        skip_all,
        fields(collection = %collection.name, records = records.len()),
        err(Display)
    )]
    pub async fn upsert(
        &self,
        collection: &Collection,
        records: &[Record],
    ) -> Result<usize, IndexError> {
        let unique = dedupe(records);
        for record in &unique {
            check_record(record)?;
        }
        let what = format!("the upsert into {}", collection.name);
        let url = self.collection_url(collection, "upsert")?;
        for (number, batch) in unique.chunks(self.max_batch).enumerate() {
            let body = wire::Upsert {
                ids: batch.iter().map(|r| r.id.as_str()).collect(),
                embeddings: batch.iter().map(|r| r.embedding.as_slice()).collect(),
                documents: batch.iter().map(|r| r.document.as_str()).collect(),
                metadatas: batch
                    .iter()
                    .map(|r| (!r.metadata.is_empty()).then_some(&r.metadata))
                    .collect(),
            };
            let bytes = to_body(&body, &what)?;
            let _: IgnoredAny = self
                .call(Method::POST, url.clone(), &what, Some(bytes))
                .await?;
            debug!(batch = number, records = batch.len(), "upserted");
        }
        Ok(unique.len())
    }

    /// How many records the collection holds.
    #[tracing::instrument(name = "chroma.count", skip_all, fields(collection = %collection.name), err(Display))]
    pub async fn count(&self, collection: &Collection) -> Result<usize, IndexError> {
        let what = format!("the count of {}", collection.name);
        self.call(
            Method::GET,
            self.collection_url(collection, "count")?,
            &what,
            None,
        )
        .await
    }

    /// The records with these ids (missing ids are left out; the order is Chroma's, not the
    /// order of `ids`). `include` may not hold [`Include::Distances`].
    #[tracing::instrument(
        name = "chroma.get",
        skip_all,
        fields(collection = %collection.name, ids = ids.len()),
        err(Display)
    )]
    pub async fn get<S: AsRef<str>>(
        &self,
        collection: &Collection,
        ids: &[S],
        include: &[Include],
    ) -> Result<Vec<Hit>, IndexError> {
        if ids.is_empty() {
            // Chroma reads an empty id list as "no id filter" and returns everything.
            return Ok(Vec::new());
        }
        let what = format!("the get from {}", collection.name);
        let body = wire::Get {
            ids: ids.iter().map(AsRef::as_ref).collect(),
            include,
        };
        let response: wire::GetResponse = self
            .call(
                Method::POST,
                self.collection_url(collection, "get")?,
                &what,
                Some(to_body(&body, &what)?),
            )
            .await?;
        zip_hits(
            &what,
            response.ids,
            None,
            response.documents,
            response.metadatas,
            response.embeddings,
        )
    }

    /// The `n_results` nearest records to each of `embeddings`, nearest first: one list per
    /// query embedding. `filter` is Chroma's `where` (several keys must be combined with `$and`,
    /// e.g. `{"$and": [{"db_symbol": "AAPL"}, {"year": 2024}]}`).
    #[tracing::instrument(
        name = "chroma.query",
        skip_all,
        fields(collection = %collection.name, queries = embeddings.len(), n_results),
        err(Display)
    )]
    pub async fn query(
        &self,
        collection: &Collection,
        embeddings: &[Vec<f32>],
        n_results: u32,
        filter: Option<serde_json::Value>,
        include: &[Include],
    ) -> Result<Vec<Vec<Hit>>, IndexError> {
        for (i, embedding) in embeddings.iter().enumerate() {
            if let Some(problem) = non_finite_embedding(embedding) {
                return Err(IndexError::InvalidRecord {
                    id: format!("query embedding {i}"),
                    problem,
                });
            }
        }
        if embeddings.is_empty() {
            return Ok(Vec::new());
        }
        let what = format!("the query of {}", collection.name);
        let body = wire::Query {
            query_embeddings: embeddings,
            n_results,
            filter: filter.as_ref(),
            include,
        };
        let response: wire::QueryResponse = self
            .call(
                Method::POST,
                self.collection_url(collection, "query")?,
                &what,
                Some(to_body(&body, &what)?),
            )
            .await?;
        let queries = response.ids.len();
        let mismatch = |field: &str, n: usize| IndexError::Decode {
            what: what.clone(),
            detail: format!("{n} lists of {field} for {queries} queries"),
        };
        let mut distances = per_query(response.distances, queries, "distances", &mismatch)?;
        let mut documents = per_query(response.documents, queries, "documents", &mismatch)?;
        let mut metadatas = per_query(response.metadatas, queries, "metadatas", &mismatch)?;
        let mut vectors = per_query(response.embeddings, queries, "embeddings", &mismatch)?;
        response
            .ids
            .into_iter()
            .map(|ids| {
                zip_hits(
                    &what,
                    ids,
                    next(&mut distances),
                    next(&mut documents),
                    next(&mut metadatas),
                    next(&mut vectors),
                )
            })
            .collect()
    }

    /// The existing collection `name`, for reading: unlike [`Self::collection`] it never
    /// creates one. Fails with [`IndexError::NoCollection`] if there is none, and with
    /// [`IndexError::WrongSpace`] if it does not measure cosine distance.
    #[tracing::instrument(name = "chroma.open_collection", skip_all, fields(collection = name), err(Display))]
    pub async fn open_collection(&self, name: &str) -> Result<Collection, IndexError> {
        let what = format!("the lookup of collection {name}");
        let found: Result<wire::CollectionBody, _> = self
            .call(
                Method::GET,
                self.db_url(&["collections", name])?,
                &what,
                None,
            )
            .await;
        match found {
            Ok(body) => cosine_collection(body),
            Err(IndexError::Rejected { status: 404, .. }) => Err(IndexError::NoCollection {
                url: self.shown_url.clone(),
                tenant: self.tenant.clone(),
                database: self.database.clone(),
                collection: name.to_owned(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Deletes the collection `name` and its records. Deleting one that does not exist is not an
    /// error.
    #[tracing::instrument(name = "chroma.delete_collection", skip_all, fields(collection = name), err(Display))]
    pub async fn delete_collection(&self, name: &str) -> Result<(), IndexError> {
        let what = format!("the deletion of collection {name}");
        let deleted: Result<IgnoredAny, _> = self
            .call(
                Method::DELETE,
                self.db_url(&["collections", name])?,
                &what,
                None,
            )
            .await;
        match deleted {
            Ok(_) | Err(IndexError::Rejected { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, IndexError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| IndexError::Client(format!("{} cannot be a base URL", self.shown_url)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn db_url(&self, tail: &[&str]) -> Result<Url, IndexError> {
        let mut segments = vec![
            "api",
            "v2",
            "tenants",
            &self.tenant,
            "databases",
            &self.database,
        ];
        segments.extend_from_slice(tail);
        self.url(&segments)
    }

    fn collection_url(&self, collection: &Collection, action: &str) -> Result<Url, IndexError> {
        self.db_url(&["collections", &collection.id, action])
    }

    /// One request with retries of transient failures; the JSON answer decoded as `T`.
    #[tracing::instrument(
        name = "chroma.http",
        skip_all,
        fields(method = %method, path = url.path(), bytes = body.as_ref().map_or(0, Bytes::len)),
        // debug: the public method's span reports the error; some 4xx are expected (a 404 on
        // delete, the database lookup)
        err(level = "debug", Display)
    )]
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        what: &str,
        body: Option<Bytes>,
    ) -> Result<T, IndexError> {
        let bytes = retry::retry(
            &self.retry,
            "Chroma request",
            |_| self.attempt(&method, &url, body.clone(), what),
            |last, attempts| match last {
                Transient::Status { .. } => IndexError::Unavailable {
                    url: self.shown_url.clone(),
                    what: what.to_owned(),
                    attempts,
                    last,
                },
                Transient::Timeout(_) | Transient::Connection(_) => IndexError::Unreachable {
                    url: self.shown_url.clone(),
                    detail: last.to_string(),
                },
            },
        )
        .await?;
        serde_json::from_slice(&bytes).map_err(|e| IndexError::Decode {
            what: what.to_owned(),
            detail: e.to_string(),
        })
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<Bytes>,
        what: &str,
    ) -> Result<Bytes, Attempt<Transient, IndexError>> {
        let transport = |e: reqwest::Error| Attempt::Retry {
            reason: classify_transport(&e, self.timeout),
            after: None,
        };
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(bytes);
        }
        let message = error_message(status, &bytes);
        let status = status.as_u16();
        Err(if status == 429 || status >= 500 {
            Attempt::Retry {
                reason: Transient::Status { status, message },
                after,
            }
        } else if status == 401 || status == 403 {
            Attempt::Stop(IndexError::Unauthorized {
                url: self.shown_url.clone(),
                what: what.to_owned(),
                status,
                message,
            })
        } else {
            Attempt::Stop(IndexError::Rejected {
                what: what.to_owned(),
                status,
                message,
            })
        })
    }
}

/// The collection as the server described it, if it measures cosine distance.
fn cosine_collection(body: wire::CollectionBody) -> Result<Collection, IndexError> {
    let space = body
        .configuration_json
        .as_ref()
        .and_then(wire::Configuration::space)
        .unwrap_or("l2 (Chroma's default)")
        .to_owned();
    if space != "cosine" {
        return Err(IndexError::WrongSpace {
            collection: body.name,
            space,
        });
    }
    let embedding_model = body
        .metadata
        .as_ref()
        .and_then(|m| m.get(EMBEDDING_MODEL_KEY))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    Ok(Collection {
        id: body.id,
        name: body.name,
        space,
        embedding_model,
    })
}

/// Chroma's `{"error", "message"}` body, else the start of the body, else the status text.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    let parsed = serde_json::from_slice::<wire::ErrorBody>(body)
        .ok()
        .and_then(|parsed| parsed.message.or(parsed.error));
    server_message(status, body, parsed)
}

fn to_body<T: Serialize>(body: &T, what: &str) -> Result<Bytes, IndexError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| IndexError::Client(format!("cannot serialize {what}: {e}")))
}

fn per_query<T>(
    lists: Option<Vec<Vec<T>>>,
    queries: usize,
    field: &str,
    mismatch: &dyn Fn(&str, usize) -> IndexError,
) -> Result<Option<std::vec::IntoIter<Vec<T>>>, IndexError> {
    match lists {
        None => Ok(None),
        Some(l) if l.len() == queries => Ok(Some(l.into_iter())),
        Some(l) => Err(mismatch(field, l.len())),
    }
}

fn next<T>(lists: &mut Option<std::vec::IntoIter<Vec<T>>>) -> Option<Vec<T>> {
    lists.as_mut().and_then(Iterator::next)
}

/// Parallel arrays (one entry per id) -> hits; a present array of the wrong length is an error.
fn zip_hits(
    what: &str,
    ids: Vec<String>,
    distances: Option<Vec<Option<f32>>>,
    documents: Option<Vec<Option<String>>>,
    metadatas: Option<Vec<Option<Metadata>>>,
    embeddings: Option<Vec<Option<Vec<f32>>>>,
) -> Result<Vec<Hit>, IndexError> {
    let n = ids.len();
    let check = |field: &str, len: Option<usize>| match len {
        Some(len) if len != n => Err(IndexError::Decode {
            what: what.to_owned(),
            detail: format!("{len} {field} for {n} ids"),
        }),
        _ => Ok(()),
    };
    check("distances", distances.as_ref().map(Vec::len))?;
    check("documents", documents.as_ref().map(Vec::len))?;
    check("metadatas", metadatas.as_ref().map(Vec::len))?;
    check("embeddings", embeddings.as_ref().map(Vec::len))?;
    let mut distances = distances.map(Vec::into_iter);
    let mut documents = documents.map(Vec::into_iter);
    let mut metadatas = metadatas.map(Vec::into_iter);
    let mut embeddings = embeddings.map(Vec::into_iter);
    Ok(ids
        .into_iter()
        .map(|id| Hit {
            id,
            distance: distances.as_mut().and_then(Iterator::next).flatten(),
            document: documents.as_mut().and_then(Iterator::next).flatten(),
            metadata: metadatas.as_mut().and_then(Iterator::next).flatten(),
            embedding: embeddings.as_mut().and_then(Iterator::next).flatten(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, doc: &str) -> Record {
        Record {
            id: id.into(),
            embedding: vec![1.0, 0.0],
            document: doc.into(),
            metadata: Metadata::new(),
        }
    }

    #[test]
    fn dedupe_keeps_the_last_of_each_id() {
        let records = [
            record("a", "1"),
            record("b", "2"),
            record("a", "3"),
            record("c", "4"),
        ];
        let kept: Vec<_> = dedupe(&records)
            .iter()
            .map(|r| (r.id.as_str(), r.document.as_str()))
            .collect();
        assert_eq!(kept, [("b", "2"), ("a", "3"), ("c", "4")]);
    }

    #[test]
    fn non_finite_values_are_refused_naming_id_and_key() {
        let mut r = record("AAPL:2024-01-02", "d");
        r.metadata
            .insert("rsi_14".into(), MetadataValue::Float(f64::NAN));
        let err = check_record(&r).unwrap_err().to_string();
        assert!(
            err.contains("AAPL:2024-01-02") && err.contains("rsi_14") && err.contains("NaN"),
            "{err}"
        );
        let mut r = record("x", "d");
        r.embedding[1] = f32::INFINITY;
        let err = check_record(&r).unwrap_err().to_string();
        assert!(err.contains("embedding[1] is inf"), "{err}");
    }

    #[test]
    fn metadata_values_keep_their_json_types() {
        let m: Metadata = BTreeMap::from([
            ("b".to_owned(), true.into()),
            ("f".to_owned(), 1.0_f64.into()),
            ("i".to_owned(), 1_i64.into()),
            ("s".to_owned(), "x".into()),
        ]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"b":true,"f":1.0,"i":1,"s":"x"}"#);
        let back: Metadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn error_bodies_become_one_line() {
        let body = br#"{"error":"InvalidArgumentError","message":"Collection expecting embedding with dimension of 3, got 2"}"#;
        assert_eq!(
            error_message(StatusCode::BAD_REQUEST, body),
            "Collection expecting embedding with dimension of 3, got 2"
        );
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b""), "Bad Gateway");
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"<html>\n oops </html>"),
            "<html> oops </html>"
        );
    }
}
