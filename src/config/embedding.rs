//! The `embedding:` section: where the documents' vectors come from.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde_saphyr::Spanned;
use url::Url;

use crate::config::ConfigError;
use crate::config::IntSetting;
use crate::config::Section;
use crate::config::nonzero_usize;
use crate::config::yaml::Doc;
use crate::config::yaml::Fields;
use crate::config::yaml::Node;
use crate::config::yaml::line_of;
use crate::config::yaml::one_line;
use crate::config::yaml::preview;
/// The `embedding:` section: where the documents' vectors come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EmbeddingSettings {
    /// `provider: local` (the default, also when the section is absent): all-MiniLM-L6-v2
    /// in-process.
    #[default]
    Local,
    /// `provider: openai`: an OpenAI-compatible embeddings endpoint.
    OpenAi(OpenAiEndpoint),
}

/// `embedding:` with `provider: openai`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiEndpoint {
    /// The API's base URL (`base_url`, required); requests go to `{base_url}/embeddings`.
    pub base_url: Url,
    /// The model name the endpoint knows (`model`, required).
    pub model: String,
    /// The name of the environment variable that holds the API key (`api_key_env`), if the
    /// endpoint needs one. Never the key itself.
    pub api_key_env: Option<String>,
    /// Texts per request (`batch_size`, `1..=2048`, default 64).
    pub batch_size: NonZeroUsize,
    /// The vector length to ask for and check (`dimensions`, `1..=65536`), if set.
    pub dimensions: Option<NonZeroU32>,
    /// Timeout of one request (`timeout`, `1s..=600s`, default 60s).
    pub timeout: Duration,
}

pub(super) const PROVIDER: &str = "provider";
pub(super) const BASE_URL: &str = "base_url";
pub(super) const MODEL: &str = "model";
pub(super) const API_KEY_ENV: &str = "api_key_env";
pub(super) const EMBEDDING_BATCH_SIZE: IntSetting = IntSetting::new("batch_size", 1, 2048, 64);
/// No default: without the key, `dimensions` is not sent and any length is accepted.
pub(super) const DIMENSIONS: IntSetting = IntSetting::new("dimensions", 1, 65_536, 0);
pub(super) const TIMEOUT: &str = "timeout";
/// `timeout` in seconds: allowed range and default (the range of `request_timeout_secs`).
pub(super) const TIMEOUT_SECS: (u32, u32, u32) = (1, 600, 60);

/// Keys allowed in `embedding:`.
pub const EMBEDDING_KEYS: &[&str] = &[
    PROVIDER,
    BASE_URL,
    MODEL,
    API_KEY_ENV,
    EMBEDDING_BATCH_SIZE.key,
    DIMENSIONS.key,
    TIMEOUT,
];

impl Section for EmbeddingSettings {
    const KEY: &'static str = "embedding";
    const KEYS: &'static [&'static str] = EMBEDDING_KEYS;

    fn read(doc: &Doc<'_>, fields: &Fields<'_>) -> Result<Self, ConfigError> {
        let Some(node) = fields.get(PROVIDER) else {
            return read_local(doc, fields);
        };
        let field = fields.field(PROVIDER);
        match doc.text(node, &field, "a provider name")?.as_str() {
            "local" => read_local(doc, fields),
            "openai" => read_openai(doc, fields).map(EmbeddingSettings::OpenAi),
            other => Err(doc.invalid(
                node,
                &field,
                format!(
                    "{:?} is not a provider; use local (the in-process all-MiniLM-L6-v2) or openai (an OpenAI-compatible /v1/embeddings endpoint)",
                    one_line(&preview(other))
                ),
            )),
        }
    }
}

/// `provider: local` takes no settings: an endpoint's settings there are a mistake, not a no-op.
pub(super) fn read_local(
    doc: &Doc<'_>,
    fields: &Fields<'_>,
) -> Result<EmbeddingSettings, ConfigError> {
    match fields.entries.iter().find(|(key, _, _)| key != PROVIDER) {
        Some((key, line, _)) => Err(ConfigError::Invalid {
            path: doc.path.to_path_buf(),
            line: *line,
            field: fields.field(key),
            message: "only used with provider: openai; remove it or set provider: openai".into(),
        }),
        None => Ok(EmbeddingSettings::Local),
    }
}

pub(super) fn read_openai(
    doc: &Doc<'_>,
    fields: &Fields<'_>,
) -> Result<OpenAiEndpoint, ConfigError> {
    let url_node = fields.required(doc, BASE_URL)?;
    let base_url = read_base_url(doc, url_node, &fields.field(BASE_URL))?;

    let model_node = fields.required(doc, MODEL)?;
    let model_field = fields.field(MODEL);
    let model = doc.text(model_node, &model_field, "a model name")?;
    if model.trim().is_empty() || model.trim() != model {
        return Err(doc.invalid(
            model_node,
            &model_field,
            "the model name is empty or has spaces around it; write the name the endpoint knows, e.g. nomic-embed-text or text-embedding-3-small".into(),
        ));
    }

    let api_key_env = match fields.get(API_KEY_ENV) {
        None => None,
        Some(node) => Some(read_env_name(doc, node, &fields.field(API_KEY_ENV))?),
    };
    let (batch_size, _) = EMBEDDING_BATCH_SIZE.read(doc, fields)?;
    let dimensions = match fields.get(DIMENSIONS.key) {
        None => None,
        Some(node) => NonZeroU32::new(doc.int_in(
            node,
            &fields.field(DIMENSIONS.key),
            DIMENSIONS.min,
            DIMENSIONS.max,
        )?),
    };
    let timeout = match fields.get(TIMEOUT) {
        None => Duration::from_secs(u64::from(TIMEOUT_SECS.2)),
        Some(node) => read_seconds(doc, node, &fields.field(TIMEOUT))?,
    };
    Ok(OpenAiEndpoint {
        base_url,
        model,
        api_key_env,
        batch_size: nonzero_usize(batch_size),
        dimensions,
        timeout,
    })
}

/// An http(s) URL without credentials, query or fragment. A URL with credentials is not echoed.
pub(super) fn read_base_url(
    doc: &Doc<'_>,
    node: &Spanned<Node>,
    field: &str,
) -> Result<Url, ConfigError> {
    let text = doc.text(node, field, "a URL such as http://127.0.0.1:11434/v1")?;
    let invalid = |message: String| doc.invalid(node, field, message);
    let url = Url::parse(text.trim()).map_err(|e| {
        invalid(format!(
            "{:?} is not a URL ({e}); write the API's base URL, e.g. http://127.0.0.1:11434/v1 or https://api.openai.com/v1",
            one_line(&preview(&text))
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not supported (the value is not shown); put the key in an environment variable and name it in api_key_env".into(),
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "{:?} is not an http(s) URL",
            one_line(&preview(&text))
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "{:?} must not have a query or fragment; requests go to {{base_url}}/embeddings",
            one_line(&preview(&text))
        )));
    }
    Ok(url)
}

/// The name of an environment variable: letters, digits and `_`, not starting with a digit. The
/// value is not echoed when it is not one: it may be the key itself, pasted in by mistake.
pub(super) fn read_env_name(
    doc: &Doc<'_>,
    node: &Spanned<Node>,
    field: &str,
) -> Result<String, ConfigError> {
    let text = doc.text(node, field, "the name of an environment variable")?;
    let valid = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(text)
    } else {
        Err(doc.invalid(
            node,
            field,
            "must be the NAME of the environment variable that holds the key (letters, digits and _), e.g. OPENAI_API_KEY, never the key itself; the value is not shown".into(),
        ))
    }
}

/// A whole number of seconds, written `60s` or `60`, in [`TIMEOUT_SECS`].
pub(super) fn read_seconds(
    doc: &Doc<'_>,
    node: &Spanned<Node>,
    field: &str,
) -> Result<Duration, ConfigError> {
    let (min, max, _) = TIMEOUT_SECS;
    let text = match &node.value {
        Node::Int(_) | Node::Str(_) => doc.scalar_text(node).unwrap_or_default(),
        _ => String::new(),
    };
    let digits = text.trim().strip_suffix('s').unwrap_or(text.trim());
    let Ok(value) = digits.trim().parse::<i128>() else {
        return Err(doc.wrong_type(
            node,
            field,
            &format!("a duration in whole seconds such as 60s ({min}s..={max}s)"),
        ));
    };
    u32::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .map(|v| Duration::from_secs(u64::from(v)))
        .ok_or_else(|| ConfigError::OutOfRange {
            path: doc.path.to_path_buf(),
            line: line_of(node),
            field: field.to_owned(),
            value: one_line(&preview(&text)),
            min,
            max,
        })
}
