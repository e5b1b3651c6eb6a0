//! Embeddings from any OpenAI-compatible `POST {base_url}/embeddings` endpoint: OpenAI itself,
//! Ollama (`http://127.0.0.1:11434/v1`), vLLM, Hugging Face TEI, LiteLLM and most hosted APIs
//! speak this one request shape, so one small client covers them all.
//!
//! Request: `{"model", "input": [texts], "encoding_format": "float", "dimensions"?}`, with
//! `Authorization: Bearer <key>` when a key is configured. Answer:
//! `{"data": [{"embedding": [...], "index": i}, ...], "model": ...}`. The answer is checked
//! before anything is used: one vector per text, every `index` exactly once (servers may return
//! them in any order; they are put back in the order of the texts), all vectors of the same
//! length (and of `dimensions` when it is set), finite, not all zeros. Vectors are then
//! L2-normalised: the Chroma collection measures cosine distance, which does not need unit
//! vectors, but unit vectors make every provider's vectors look like sentence-transformers' (as
//! the local model's are), so dot products equal cosines and stored distances compare the same
//! way whichever provider wrote them. OpenAI's own vectors are unit already (a no-op); Ollama's,
//! TEI's and vLLM's need not be.
//!
//! Texts go in batches of `batch_size`, one request after another. Each request is retried on
//! 429, 5xx, timeouts and broken connections with the loop shared with the Yahoo and Chroma
//! clients ([`crate::support::retry`], `Retry-After` honoured); embedding the same texts again is
//! harmless. Any other status is final, with a message that says what to check (401/403: the key;
//! 404: `base_url` and `model`).
//!
//! The key is held in a [`SecretString`], sent in a header marked sensitive, and never shown:
//! [`OpenAiSettings`]' `Debug`/`Display`, the errors and the spans name only the environment
//! variable it came from, and a server message that quotes the key has it replaced by
//! `[redacted]`.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tracing::debug;
use url::Url;

use super::EmbedError;
use crate::support::http::client_builder;
use crate::support::retry::{
    self, Attempt, RetryPolicy, Transient, classify_transport, retry_after,
};

/// Texts per request when the config does not say.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// The most texts per request: OpenAI's limit on `input`.
pub const MAX_BATCH_SIZE: usize = 2048;
/// Per-request timeout when the config does not say: a local server may load the model on its
/// first request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// 5 attempts over about 8-16 s (longer when the server sends `Retry-After`, up to 30 s a wait):
/// rides out a rate limit or a server restart.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 4,
    base: Duration::from_millis(500),
    max: Duration::from_secs(30),
};
/// An answer larger than this is not embeddings of one batch (2048 texts x 3072 dimensions as
/// JSON text is about 130 MB).
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What [`OpenAiSettings::model_id`] puts before the model name.
const MODEL_ID_PREFIX: &str = "openai:";

/// Where the key comes from: the variable's name, and its value if it was set.
#[derive(Clone)]
struct ApiKey {
    var: String,
    value: Option<SecretString>,
}

/// How to reach an OpenAI-compatible embeddings endpoint. `Debug` and `Display` show the endpoint,
/// the model and the name of the key's variable, never the key.
#[derive(Clone)]
pub struct OpenAiSettings {
    base_url: Url,
    model: String,
    api_key: Option<ApiKey>,
    batch_size: NonZeroUsize,
    dimensions: Option<NonZeroU32>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl OpenAiSettings {
    /// `POST {base_url}/embeddings` with `model`; no key, [`DEFAULT_BATCH_SIZE`], no
    /// `dimensions`, [`DEFAULT_TIMEOUT`], [`DEFAULT_RETRY`].
    #[must_use]
    pub fn new(base_url: Url, model: impl Into<String>) -> Self {
        Self {
            base_url,
            model: model.into(),
            api_key: None,
            batch_size: NonZeroUsize::new(DEFAULT_BATCH_SIZE).unwrap_or(NonZeroUsize::MIN),
            dimensions: None,
            timeout: DEFAULT_TIMEOUT,
            retry: DEFAULT_RETRY,
        }
    }

    /// The key, read from the environment variable `var` (`None`: the variable is not set, which
    /// [`Self::require_api_key`] and [`OpenAiEmbedder::new`] refuse).
    #[must_use]
    pub fn with_api_key(mut self, var: impl Into<String>, value: Option<SecretString>) -> Self {
        self.api_key = Some(ApiKey {
            var: var.into(),
            value,
        });
        self
    }

    /// Texts per request, at most [`MAX_BATCH_SIZE`].
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: NonZeroUsize) -> Self {
        self.batch_size = batch_size.min(NonZeroUsize::new(MAX_BATCH_SIZE).unwrap_or(batch_size));
        self
    }

    /// Asks for vectors of this length (the `dimensions` parameter of models that can shorten
    /// their vectors) and checks every vector has it.
    #[must_use]
    pub fn with_dimensions(mut self, dimensions: Option<NonZeroU32>) -> Self {
        self.dimensions = dimensions;
        self
    }

    /// Per-request timeout (default [`DEFAULT_TIMEOUT`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries of transient failures (default [`DEFAULT_RETRY`]).
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `{base_url}/embeddings`.
    #[must_use]
    pub fn endpoint(&self) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push("embeddings");
        }
        url
    }

    /// The endpoint as shown in messages and logs: without user, password or query.
    #[must_use]
    pub fn shown_endpoint(&self) -> String {
        let mut url = self.endpoint();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        url.to_string()
    }

    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// `openai:<model>`: what a Chroma collection records as the model of its vectors.
    #[must_use]
    pub fn model_id(&self) -> String {
        format!("{MODEL_ID_PREFIX}{}", self.model)
    }

    /// The name of the environment variable the key comes from, if one is configured.
    #[must_use]
    pub fn api_key_env(&self) -> Option<&str> {
        self.api_key.as_ref().map(|k| k.var.as_str())
    }

    /// Whether a key will be sent.
    #[must_use]
    pub fn has_api_key(&self) -> bool {
        self.api_key.as_ref().is_some_and(|k| k.value.is_some())
    }

    /// Fails with [`EmbedError::KeyUnset`] when a key variable is configured but was not set.
    pub fn require_api_key(&self) -> Result<(), EmbedError> {
        match &self.api_key {
            Some(ApiKey { var, value: None }) => Err(EmbedError::KeyUnset {
                var: var.clone(),
                url: self.shown_endpoint(),
            }),
            _ => Ok(()),
        }
    }

    #[must_use]
    pub fn batch_size(&self) -> usize {
        self.batch_size.get()
    }

    #[must_use]
    pub fn dimensions(&self) -> Option<u32> {
        self.dimensions.map(NonZeroU32::get)
    }

    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// `openai-compatible POST http://127.0.0.1:11434/v1/embeddings, model nomic-embed-text (batch 64,
/// dimensions 768, timeout 60s), key from $OPENAI_API_KEY (set)`: safe to print and log.
impl fmt::Display for OpenAiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "openai-compatible POST {}, model {} (batch {}",
            self.shown_endpoint(),
            self.model,
            self.batch_size
        )?;
        if let Some(d) = self.dimensions {
            write!(f, ", dimensions {d}")?;
        }
        write!(f, ", timeout {}s), ", self.timeout.as_secs())?;
        match &self.api_key {
            None => write!(f, "no key"),
            Some(ApiKey { var, value }) => write!(
                f,
                "key from ${var} ({})",
                if value.is_some() { "set" } else { "not set" }
            ),
        }
    }
}

impl fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpenAiSettings({self})")
    }
}

/// A client of one OpenAI-compatible embeddings endpoint and model. Cheap to share by reference.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    endpoint: Url,
    shown: String,
    model: String,
    /// The key's variable (for messages) and value (only to scrub server messages of it).
    key: Option<(String, SecretString)>,
    batch_size: usize,
    dimensions: Option<u32>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.shown)
            .field("model", &self.model)
            .field("api_key_env", &self.key.as_ref().map(|(var, _)| var))
            .field("batch_size", &self.batch_size)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    /// Builds the HTTP client (no request is made). Fails if a key variable is configured but
    /// not set, or holds something that cannot be an HTTP header.
    pub fn new(settings: &OpenAiSettings) -> Result<Self, EmbedError> {
        settings.require_api_key()?;
        let shown = settings.shown_endpoint();
        let mut headers = HeaderMap::new();
        let key = match &settings.api_key {
            Some(ApiKey {
                var,
                value: Some(value),
            }) => {
                let mut header =
                    HeaderValue::from_str(&format!("Bearer {}", value.expose_secret().trim()))
                        .map_err(|_| EmbedError::KeyInvalid { var: var.clone() })?;
                header.set_sensitive(true);
                headers.insert(AUTHORIZATION, header);
                Some((var.clone(), value.clone()))
            }
            _ => None,
        };
        let http = client_builder(settings.timeout, CONNECT_TIMEOUT)
            .user_agent(concat!("market-encoder/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()
            .map_err(|source| EmbedError::Client {
                url: shown.clone(),
                source,
            })?;
        Ok(Self {
            http,
            endpoint: settings.endpoint(),
            shown,
            model: settings.model.clone(),
            key,
            batch_size: settings.batch_size.get(),
            dimensions: settings.dimensions.map(NonZeroU32::get),
            timeout: settings.timeout,
            retry: settings.retry,
        })
    }

    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// `openai:<model>`, as [`OpenAiSettings::model_id`].
    #[must_use]
    pub fn model_id(&self) -> String {
        format!("{MODEL_ID_PREFIX}{}", self.model)
    }

    /// One unit-length vector per text, in the order of `texts`, in requests of at most
    /// `batch_size` texts. All vectors have the same length (checked across batches too).
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let mut vectors = Vec::with_capacity(texts.len());
        let mut length = None;
        for (number, batch) in texts.chunks(self.batch_size).enumerate() {
            let first = number * self.batch_size;
            let batch_vectors = self.embed_batch(batch, first).await?;
            for (i, v) in batch_vectors.iter().enumerate() {
                match length {
                    None => length = Some(v.len()),
                    Some(len) if len != v.len() => {
                        return Err(self.bad_response(format!(
                            "embedding {} has {} values, earlier ones {len}",
                            first + i,
                            v.len()
                        )));
                    }
                    Some(_) => {}
                }
            }
            vectors.extend(batch_vectors);
        }
        debug!(
            texts = texts.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded"
        );
        Ok(vectors)
    }

    /// One request (with retries) for `texts`, the batch starting at text `first`.
    #[tracing::instrument(
        name = "embed.openai",
        skip_all,
        fields(url = %self.shown, model = %self.model, texts = texts.len(), first = first),
        err(Display)
    )]
    async fn embed_batch(
        &self,
        texts: &[String],
        first: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let request = wire::EmbeddingsRequest {
            model: &self.model,
            input: texts,
            encoding_format: "float",
            dimensions: self.dimensions,
        };
        let body = serde_json::to_vec(&request)
            .map(bytes::Bytes::from)
            .map_err(|e| self.bad_response(format!("cannot serialize the request: {e}")))?;
        let answer = retry::retry(
            &self.retry,
            "embeddings request",
            |_| self.attempt(body.clone(), texts.len()),
            |last, attempts| match last {
                Transient::Connection(detail) => EmbedError::Unreachable {
                    url: self.shown.clone(),
                    detail,
                },
                last => EmbedError::Unavailable {
                    url: self.shown.clone(),
                    attempts,
                    last,
                },
            },
        )
        .await?;
        self.decode(&answer, texts.len())
    }

    async fn attempt(
        &self,
        body: bytes::Bytes,
        texts: usize,
    ) -> Result<Vec<u8>, Attempt<Transient, EmbedError>> {
        let transport = |e: reqwest::Error| Attempt::Retry {
            reason: classify_transport(&e, self.timeout),
            after: None,
        };
        let mut response = self
            .http
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let after = retry_after(response.headers());
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if answer.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Attempt::Stop(self.bad_response(format!(
                    "the answer is larger than {} MiB",
                    MAX_BODY_BYTES / (1024 * 1024)
                ))));
            }
            answer.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(answer);
        }
        let message = self.scrub(&wire::error_message(status, &answer));
        let code = status.as_u16();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(Attempt::Retry {
                reason: Transient::Status {
                    status: code,
                    message,
                },
                after,
            });
        }
        let url = self.shown.clone();
        Err(Attempt::Stop(match code {
            401 | 403 => EmbedError::Unauthorized {
                url,
                status: code,
                message,
                api_key_env: self.key.as_ref().map(|(var, _)| var.clone()),
            },
            404 => EmbedError::NotFound {
                url,
                model: self.model.clone(),
                message,
            },
            _ => EmbedError::Rejected {
                url,
                texts,
                status: code,
                message,
            },
        }))
    }

    /// The vectors of a 200 answer, in the order of the texts, checked and normalised.
    fn decode(&self, body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let response: wire::EmbeddingsResponse = serde_json::from_slice(body).map_err(|e| {
            self.bad_response(format!("not the JSON of an embeddings answer ({e})"))
        })?;
        if let Some(model) = &response.model
            && model != &self.model
        {
            debug!(requested = %self.model, answered = %model, "the server names the model differently");
        }
        if response.data.len() != expected {
            return Err(self.bad_response(format!(
                "{} embeddings for {expected} texts",
                response.data.len()
            )));
        }
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
        for item in response.data {
            let Some(slot) = slots.get_mut(item.index) else {
                return Err(self.bad_response(format!(
                    "index {} is out of range for {expected} texts",
                    item.index
                )));
            };
            if slot.is_some() {
                return Err(self.bad_response(format!("index {} appears twice", item.index)));
            }
            *slot = Some(item.embedding);
        }
        // As many items as texts and no index twice: every slot is filled.
        let mut vectors: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
        let length = vectors.first().map_or(0, Vec::len);
        for (i, v) in vectors.iter_mut().enumerate() {
            if let Some(want) = self.dimensions
                && usize::try_from(want).ok() != Some(v.len())
            {
                return Err(EmbedError::WrongDimensions {
                    url: self.shown.clone(),
                    model: self.model.clone(),
                    got: v.len(),
                    want,
                });
            }
            if v.len() != length {
                return Err(self.bad_response(format!(
                    "embedding {i} has {} values, embedding 0 has {length}",
                    v.len()
                )));
            }
            normalize(v)
                .map_err(|problem| self.bad_response(format!("embedding {i} {problem}")))?;
        }
        Ok(vectors)
    }

    fn bad_response(&self, detail: String) -> EmbedError {
        EmbedError::BadResponse {
            url: self.shown.clone(),
            detail,
        }
    }

    /// A server message with the key, should it quote it, replaced.
    fn scrub(&self, message: &str) -> String {
        match &self.key {
            Some((_, key)) if !key.expose_secret().trim().is_empty() => {
                message.replace(key.expose_secret().trim(), "[redacted]")
            }
            _ => message.to_owned(),
        }
    }
}

/// Scales `v` to unit length; refuses an empty vector, non-finite values and all zeros (which
/// has no direction to compare).
fn normalize(v: &mut [f32]) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".to_owned());
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!("has a non-finite value at {i} ({})", v[i]));
    }
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return Err("is all zeros".to_owned());
    }
    for x in v.iter_mut() {
        // f64 -> f32 of a value in [-1, 1]: no overflow.
        *x = (f64::from(*x) / norm) as f32;
    }
    Ok(())
}

/// The JSON bodies. Nothing outside this module sees them.
mod wire {
    use reqwest::StatusCode;
    use serde::{Deserialize, Serialize};

    use crate::support::text::server_message;

    #[derive(Debug, Serialize)]
    pub struct EmbeddingsRequest<'a> {
        pub model: &'a str,
        pub input: &'a [String],
        pub encoding_format: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub dimensions: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    pub struct EmbeddingsResponse {
        pub data: Vec<Embedding>,
        #[serde(default)]
        pub model: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Embedding {
        pub embedding: Vec<f32>,
        pub index: usize,
    }

    /// The error bodies of the servers this speaks to: OpenAI and vLLM
    /// `{"error": {"message": ...}}`, Ollama and TEI `{"error": "..."}`, older vLLM
    /// `{"message": ...}`.
    #[derive(Debug, Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        error: Option<ErrorField>,
        #[serde(default)]
        message: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Text(String),
        Object {
            #[serde(default)]
            message: Option<String>,
        },
    }

    /// The server's own message, else the start of the body, else the status text; one line.
    pub fn error_message(status: StatusCode, body: &[u8]) -> String {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            let message = match parsed.error {
                Some(ErrorField::Text(t)) => Some(t),
                Some(ErrorField::Object { message }) => message,
                None => None,
            }
            .or(parsed.message);
            return server_message(status, body, message);
        }
        server_message(status, body, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OpenAiSettings {
        OpenAiSettings::new(
            Url::parse("http://127.0.0.1:11434/v1").unwrap(),
            "nomic-embed-text",
        )
    }

    #[test]
    fn the_endpoint_is_under_the_base_url() {
        assert_eq!(
            settings().endpoint().as_str(),
            "http://127.0.0.1:11434/v1/embeddings"
        );
        let trailing = OpenAiSettings::new(Url::parse("https://api.openai.com/v1/").unwrap(), "m");
        assert_eq!(
            trailing.endpoint().as_str(),
            "https://api.openai.com/v1/embeddings"
        );
        let with_user = OpenAiSettings::new(Url::parse("http://me:pw@host/v1?x=1").unwrap(), "m");
        assert_eq!(with_user.shown_endpoint(), "http://host/v1/embeddings");
    }

    #[test]
    fn the_key_is_never_shown() {
        let s = settings()
            .with_api_key(
                "OPENAI_API_KEY",
                Some(SecretString::from("sk-do-not-print")),
            )
            .with_dimensions(NonZeroU32::new(768));
        for shown in [s.to_string(), format!("{s:?}")] {
            assert!(!shown.contains("do-not-print"), "{shown}");
        }
        assert_eq!(
            s.to_string(),
            "openai-compatible POST http://127.0.0.1:11434/v1/embeddings, model nomic-embed-text (batch 64, dimensions 768, timeout 60s), key from $OPENAI_API_KEY (set)"
        );
        let embedder = OpenAiEmbedder::new(&s).unwrap();
        assert!(!format!("{embedder:?}").contains("do-not-print"));
        assert_eq!(
            embedder.scrub("Incorrect API key provided: sk-do-not-print."),
            "Incorrect API key provided: [redacted]."
        );
        let unset = settings().with_api_key("OPENAI_API_KEY", None);
        assert!(
            unset
                .to_string()
                .ends_with("key from $OPENAI_API_KEY (not set)")
        );
        assert!(settings().to_string().ends_with("no key"));
    }

    #[test]
    fn an_unset_or_unusable_key_is_refused_naming_the_variable() {
        let err = OpenAiEmbedder::new(&settings().with_api_key("MY_KEY", None)).unwrap_err();
        assert!(matches!(err, EmbedError::KeyUnset { .. }), "{err}");
        assert!(err.to_string().contains("MY_KEY"), "{err}");
        let err = OpenAiEmbedder::new(
            &settings().with_api_key("MY_KEY", Some(SecretString::from("bad\nkey"))),
        )
        .unwrap_err();
        assert!(matches!(err, EmbedError::KeyInvalid { .. }), "{err}");
        assert!(!err.to_string().contains("bad"), "{err}");
    }

    #[test]
    fn batch_size_is_capped() {
        let s = settings().with_batch_size(NonZeroUsize::new(10_000).unwrap());
        assert_eq!(s.batch_size(), MAX_BATCH_SIZE);
    }

    #[test]
    fn vectors_are_normalised_and_bad_ones_refused() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v).unwrap();
        assert!(
            (v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7,
            "{v:?}"
        );
        assert_eq!(normalize(&mut []), Err("is empty".to_owned()));
        assert_eq!(normalize(&mut [0.0, 0.0]), Err("is all zeros".to_owned()));
        assert!(
            normalize(&mut [1.0, f32::NAN])
                .unwrap_err()
                .contains("non-finite")
        );
    }

    #[test]
    fn error_bodies_of_each_server_family_are_read() {
        let read = |body: &str| wire::error_message(StatusCode::BAD_REQUEST, body.as_bytes());
        assert_eq!(
            read(r#"{"error":{"message":"Incorrect API key","type":"invalid_request_error"}}"#),
            "Incorrect API key"
        );
        assert_eq!(
            read(r#"{"error":"model \"x\" not found, try pulling it first"}"#),
            r#"model "x" not found, try pulling it first"#
        );
        assert_eq!(
            read(r#"{"object":"error","message":"too long","type":"BadRequestError"}"#),
            "too long"
        );
        assert_eq!(read("<html>\n nope </html>"), "<html> nope </html>");
        assert_eq!(read(""), "Bad Request");
    }
}
