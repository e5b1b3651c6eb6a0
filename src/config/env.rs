//! Settings that come from the environment rather than `securities.yaml`: where the database is,
//! where Yahoo is. Credentials live in [`SecretString`]s and are only ever shown redacted.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use url::Url;

use std::time::Duration;

use reqwest::header::HeaderValue;

use crate::domain::{Shard, TiingoToken};
use crate::support::retry::RetryPolicy;

/// Yahoo's public chart host; `YAHOO_BASE_URL` overrides it (tests point it at the fake).
pub const DEFAULT_YAHOO_BASE_URL: &str = "https://query2.finance.yahoo.com";

/// Errors in environment variables. Each message names the variable and never its secret value.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "missing required environment variable {0} (set DB_HOST, DB_NAME, DB_USER and DB_PASSWORD, or DATABASE_URL)"
    )]
    Missing(&'static str),
    #[error("environment variable {name}: {value:?} is not a port number (1-65535)")]
    BadPort { name: &'static str, value: String },
    #[error(
        "environment variable DATABASE_URL is not a valid postgres:// URL ({reason}); the value is not shown because it may hold a password"
    )]
    BadDatabaseUrl { reason: String },
    #[error("environment variable {name}: {value:?} is not a valid http(s) URL ({reason})")]
    BadUrl {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("environment variable {name}: {problem}")]
    BadValue { name: &'static str, problem: String },
    #[error("environment variable {name} is not valid UTF-8")]
    NotUnicode { name: &'static str },
    #[error("{0}")]
    Shard(String),
    #[error("environment variable {name}: {problem}")]
    Chroma { name: &'static str, problem: String },
    #[error(
        "environment variable {TIINGO_KEY_VAR} is not set, and {securities} use source: tiingo; set it to your Tiingo API token (https://www.tiingo.com/account/api/token), or set source: yahoo for them"
    )]
    MissingTiingoKey { securities: String },
}

/// How to reach PostgreSQL. `Debug` and `Display` redact the password.
#[derive(Clone)]
pub struct DatabaseSettings {
    host: String,
    port: u16,
    name: String,
    user: String,
    password: Option<SecretString>,
    /// Extra connection parameters from DATABASE_URL (e.g. `sslmode=require`), kept as given.
    url: Option<SecretString>,
    /// How long one connection attempt may take (`DB_CONNECT_TIMEOUT_SECS`, 1..=300, default 5).
    pub connect_timeout: Duration,
    /// How long a statement may wait for a pooled connection, connecting included
    /// (`DB_ACQUIRE_TIMEOUT_SECS`, 1..=300, default 5).
    pub acquire_timeout: Duration,
}

/// `DB_CONNECT_TIMEOUT_SECS` / `DB_ACQUIRE_TIMEOUT_SECS` when unset.
pub const DEFAULT_DB_TIMEOUT: Duration = Duration::from_secs(5);

/// A timeout in whole seconds, `1..=300`, from `name` (`default` when unset).
fn timeout_secs(
    env: &dyn Fn(&'static str) -> EnvValue,
    name: &'static str,
    default: Duration,
) -> Result<Duration, SettingsError> {
    match env(name).into_option(name)? {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=300).contains(s))
            .map(Duration::from_secs)
            .ok_or(SettingsError::BadValue {
                name,
                problem: format!("{v:?} is not a whole number of seconds in 1..=300"),
            }),
    }
}

impl DatabaseSettings {
    /// Reads `DATABASE_URL`, or else `DB_HOST`, `DB_NAME`, `DB_USER`, `DB_PASSWORD` (all required)
    /// and `DB_PORT` (default 5432). `env` looks a variable up (a closure over `std::env::var`
    /// in production, a map in tests).
    /// `DB_CONNECT_TIMEOUT_SECS` and `DB_ACQUIRE_TIMEOUT_SECS` (default 5 s each) bound how
    /// long a dead server can hold a run up.
    pub fn from_env(env: &dyn Fn(&'static str) -> EnvValue) -> Result<Self, SettingsError> {
        let mut settings = Self::target_from_env(env)?;
        settings.connect_timeout =
            timeout_secs(env, "DB_CONNECT_TIMEOUT_SECS", DEFAULT_DB_TIMEOUT)?;
        settings.acquire_timeout =
            timeout_secs(env, "DB_ACQUIRE_TIMEOUT_SECS", DEFAULT_DB_TIMEOUT)?;
        Ok(settings)
    }

    fn target_from_env(env: &dyn Fn(&'static str) -> EnvValue) -> Result<Self, SettingsError> {
        if let Some(url) = env("DATABASE_URL").into_option("DATABASE_URL")? {
            return Self::from_url(SecretString::from(url));
        }
        let required = |name: &'static str| -> Result<String, SettingsError> {
            env(name)
                .into_option(name)?
                .filter(|v| !v.is_empty())
                .ok_or(SettingsError::Missing(name))
        };
        let host = required("DB_HOST")?;
        let name = required("DB_NAME")?;
        let user = required("DB_USER")?;
        let password = SecretString::from(required("DB_PASSWORD")?);
        let port = match env("DB_PORT").into_option("DB_PORT")? {
            None => 5432,
            Some(value) => parse_port("DB_PORT", &value)?,
        };
        Ok(Self {
            host,
            port,
            name,
            user,
            password: Some(password),
            url: None,
            connect_timeout: DEFAULT_DB_TIMEOUT,
            acquire_timeout: DEFAULT_DB_TIMEOUT,
        })
    }

    fn from_url(secret: SecretString) -> Result<Self, SettingsError> {
        let url =
            Url::parse(secret.expose_secret()).map_err(|e| SettingsError::BadDatabaseUrl {
                reason: e.to_string(),
            })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(SettingsError::BadDatabaseUrl {
                reason: format!("scheme is {:?}, expected postgres", url.scheme()),
            });
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let host = url.host_str().map_or_else(|| "localhost".into(), decode);
        let name = decode(url.path().trim_start_matches('/'));
        Ok(Self {
            host,
            port: url.port().unwrap_or(5432),
            name: if name.is_empty() {
                "postgres".into()
            } else {
                name
            },
            user: decode(url.username()),
            password: url.password().map(|p| SecretString::from(decode(p))),
            url: Some(secret),
            connect_timeout: DEFAULT_DB_TIMEOUT,
            acquire_timeout: DEFAULT_DB_TIMEOUT,
        })
    }

    /// Connection options for sqlx. The only place the password is exposed.
    pub fn connect_options(&self) -> Result<PgConnectOptions, SettingsError> {
        let options = match &self.url {
            Some(url) => url
                .expose_secret()
                .parse::<PgConnectOptions>()
                .map_err(|e| SettingsError::BadDatabaseUrl {
                    reason: redact_sqlx_error(&e.to_string()),
                })?,
            None => {
                let mut o = PgConnectOptions::new_without_pgpass()
                    .host(&self.host)
                    .port(self.port)
                    .database(&self.name)
                    .username(&self.user);
                if let Some(p) = &self.password {
                    o = o.password(p.expose_secret());
                }
                o
            }
        };
        Ok(options.application_name("market-encoder"))
    }

    /// Same server, another database (tests create one database per test through this).
    #[must_use]
    pub fn with_database(&self, name: &str) -> Self {
        let mut s = self.clone();
        s.name = name.to_owned();
        if let Some(url) = &self.url
            && let Ok(mut parsed) = Url::parse(url.expose_secret())
        {
            parsed.set_path(&format!("/{name}"));
            s.url = Some(SecretString::from(parsed.to_string()));
        }
        s
    }

    #[must_use]
    pub fn database_name(&self) -> &str {
        &self.name
    }
}

/// `postgres://user:[redacted]@host:port/db`: safe to print and log.
impl fmt::Display for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_some() {
            ":[redacted]"
        } else {
            ""
        };
        let at = if self.user.is_empty() && self.password.is_none() {
            ""
        } else {
            "@"
        };
        write!(
            f,
            "postgres://{}{password}{at}{}:{}/{}",
            self.user, self.host, self.port, self.name
        )
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseSettings({self})")
    }
}

/// A current desktop browser's User-Agent: Yahoo answers clients without a browser-like one
/// badly (429 or 403). `YAHOO_USER_AGENT` replaces it when Yahoo starts refusing this one.
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// The User-Agent for Yahoo: `YAHOO_USER_AGENT` (trimmed; one line of visible ASCII), or
/// [`DEFAULT_USER_AGENT`].
pub fn yahoo_user_agent(env: &dyn Fn(&'static str) -> EnvValue) -> Result<String, SettingsError> {
    let name = "YAHOO_USER_AGENT";
    match env(name).into_option(name)?.map(|v| v.trim().to_owned()) {
        None => Ok(DEFAULT_USER_AGENT.to_owned()),
        Some(v) if v.is_empty() => Ok(DEFAULT_USER_AGENT.to_owned()),
        Some(v) if v.bytes().all(|b| (0x20..0x7f).contains(&b)) => Ok(v),
        Some(_) => Err(SettingsError::BadValue {
            name,
            problem: "a User-Agent is one line of visible ASCII; the value is not shown".into(),
        }),
    }
}

/// Where Yahoo's chart API is (`YAHOO_BASE_URL`, default [`DEFAULT_YAHOO_BASE_URL`]).
pub fn yahoo_base_url(env: &dyn Fn(&'static str) -> EnvValue) -> Result<Url, SettingsError> {
    http_url(
        "YAHOO_BASE_URL",
        env("YAHOO_BASE_URL").into_option("YAHOO_BASE_URL")?,
        DEFAULT_YAHOO_BASE_URL,
    )
}

/// Tiingo's API host; `TIINGO_BASE_URL` overrides it (tests point it at the fake).
pub const DEFAULT_TIINGO_BASE_URL: &str = "https://api.tiingo.com";
/// The variable holding Tiingo's API token.
pub const TIINGO_KEY_VAR: &str = "TIINGO_API_KEY";
/// Tiingo's free tier allows 50 requests an hour (and 1000 a day): the polite default of
/// `TIINGO_REQUESTS_PER_HOUR`, which a paid plan may raise.
pub const DEFAULT_TIINGO_REQUESTS_PER_HOUR: u32 = 50;

/// Where Tiingo is and how to call it: `TIINGO_BASE_URL`, `TIINGO_API_KEY` (never shown),
/// `TIINGO_REQUESTS_PER_HOUR`. `Debug` shows the token as `[redacted]`.
#[derive(Debug, Clone)]
pub struct TiingoSettings {
    pub base_url: Url,
    /// `None` when `TIINGO_API_KEY` is unset or blank.
    pub token: Option<TiingoToken>,
    pub requests_per_hour: std::num::NonZeroU32,
}

impl TiingoSettings {
    /// Reads the three variables. A token that is not one printable word is an error naming
    /// the variable, never showing the value.
    pub fn from_env(env: &dyn Fn(&'static str) -> EnvValue) -> Result<Self, SettingsError> {
        let base_url = http_url(
            "TIINGO_BASE_URL",
            env("TIINGO_BASE_URL").into_option("TIINGO_BASE_URL")?,
            DEFAULT_TIINGO_BASE_URL,
        )?;
        let token = match secret(env, TIINGO_KEY_VAR)? {
            None => None,
            Some(value) => Some(
                TiingoToken::parse(value.expose_secret()).ok_or(SettingsError::BadValue {
                    name: TIINGO_KEY_VAR,
                    problem:
                        "a Tiingo token is one word of printable ASCII; the value is not shown"
                            .into(),
                })?,
            ),
        };
        let name = "TIINGO_REQUESTS_PER_HOUR";
        let requests_per_hour = match env(name).into_option(name)? {
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(v.trim().parse::<std::num::NonZeroU32>().map_err(|_| {
                SettingsError::BadValue {
                    name,
                    problem: format!("{v:?} is not a whole number of requests, at least 1"),
                }
            })?),
        }
        .unwrap_or(
            std::num::NonZeroU32::new(DEFAULT_TIINGO_REQUESTS_PER_HOUR)
                .unwrap_or(std::num::NonZeroU32::MIN),
        );
        Ok(Self {
            base_url,
            token,
            requests_per_hour,
        })
    }
}

/// An http(s) base URL from `value` (default `default` when unset or empty), without
/// credentials.
fn http_url(
    name: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<Url, SettingsError> {
    let value = value
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned());
    let bad = |reason: String| SettingsError::BadUrl {
        name,
        value: value.clone(),
        reason,
    };
    let url = Url::parse(&value).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials in the URL are not supported".into()));
    }
    Ok(url)
}

/// The variable that says into how many shards an Indexed Job splits the run; the pod's shard
/// is `JOB_COMPLETION_INDEX` (set by Kubernetes) of it. Set it to the Job's `completions`.
pub const SHARDS_VAR: &str = "MARKET_ENCODER_SHARDS";

/// The environment variables the one-shot job needs in production (the CronJob must provide
/// each; `tests/deploy.rs` checks it does). The database may instead come from `DATABASE_URL`.
pub const JOB_ENV: &[&str] = &[
    "MARKET_ENCODER_CONFIG",
    "DB_HOST",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "CHROMA_URL",
    "CHROMA_TOKEN",
    "EMBEDDING_MODEL_DIR",
];

/// The shard of a pod of a Kubernetes Indexed Job: `JOB_COMPLETION_INDEX` of
/// `MARKET_ENCODER_SHARDS`, or `None` when neither is set. One without the other is an error
/// (an Indexed Job without `MARKET_ENCODER_SHARDS` would run every security in every pod).
pub fn indexed_job_shard(
    env: &dyn Fn(&'static str) -> EnvValue,
) -> Result<Option<Shard>, SettingsError> {
    const INDEX: &str = "JOB_COMPLETION_INDEX";
    let index = env(INDEX).into_option(INDEX)?;
    let count = env(SHARDS_VAR).into_option(SHARDS_VAR)?;
    let (index, count) = match (index, count) {
        (None, None) => return Ok(None),
        (Some(index), Some(count)) => (index, count),
        (Some(_), None) => {
            return Err(SettingsError::Shard(format!(
                "environment variable {INDEX} is set (an Indexed Job) but {SHARDS_VAR} is not; set {SHARDS_VAR} to the Job's completions, or pass --shard i/n"
            )));
        }
        (None, Some(_)) => {
            return Err(SettingsError::Shard(format!(
                "environment variable {SHARDS_VAR} is set but {INDEX} is not (only an Indexed Job sets it); pass --shard i/n instead"
            )));
        }
    };
    format!("{}/{}", index.trim(), count.trim())
        .parse::<Shard>()
        .map(Some)
        .map_err(|e| {
            SettingsError::Shard(format!("environment variables {INDEX}/{SHARDS_VAR}: {e}"))
        })
}

// ---------------------------------------------------------------------------------------------
// Chroma

/// Where Chroma is when neither `CHROMA_URL` nor `CHROMA_HOST`/`CHROMA_PORT` say.
pub const DEFAULT_CHROMA_URL: &str = "http://127.0.0.1:8000";
pub const DEFAULT_TENANT: &str = "default_tenant";
pub const DEFAULT_DATABASE: &str = "default_database";
pub const DEFAULT_COLLECTION: &str = "sp500_market_data";
/// The header Chroma Cloud and authenticating proxies read the token from.
pub const TOKEN_HEADER: &str = "x-chroma-token";
/// Per-request timeout: a full batch of 5,461 records at dimension 384 takes a few seconds, a
/// re-upsert of unchanged records about four times longer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// 4 attempts over about 1.5-3 s: rides out a restart of the server or a proxy hiccup.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 3,
    base: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

/// How to reach Chroma. `Debug` and `Display` never show the token.
#[derive(Clone)]
pub struct ChromaSettings {
    pub(crate) url: Url,
    pub(crate) tenant: String,
    pub(crate) database: String,
    pub(crate) token: Option<SecretString>,
    pub(crate) collection: String,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
}

impl ChromaSettings {
    /// Reads `CHROMA_URL` (or `CHROMA_HOST` and `CHROMA_PORT`; default
    /// [`DEFAULT_CHROMA_URL`]), `CHROMA_TENANT`, `CHROMA_DATABASE`, `CHROMA_TOKEN` (optional, sent
    /// as the `x-chroma-token` header) and `CHROMA_COLLECTION` (default
    /// [`DEFAULT_COLLECTION`]). Empty values count as unset.
    pub fn from_env(env: &dyn Fn(&'static str) -> EnvValue) -> Result<Self, SettingsError> {
        let get = |name: &'static str| -> Result<Option<String>, SettingsError> {
            match env(name) {
                EnvValue::Absent => Ok(None),
                EnvValue::Present(v) if v.trim().is_empty() => Ok(None),
                EnvValue::Present(v) => Ok(Some(v)),
                EnvValue::NotUnicode => Err(SettingsError::Chroma {
                    name,
                    problem: "not valid UTF-8".into(),
                }),
            }
        };
        let url = if let Some(value) = get("CHROMA_URL")? {
            parse_chroma_url("CHROMA_URL", value.trim())?
        } else {
            let host = get("CHROMA_HOST")?;
            let port = match get("CHROMA_PORT")? {
                None => 8000,
                Some(v) => v
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| SettingsError::Chroma {
                        name: "CHROMA_PORT",
                        problem: format!("{v:?} is not a port number (1-65535)"),
                    })?,
            };
            match host {
                None if port == 8000 => parse_chroma_url("CHROMA_URL", DEFAULT_CHROMA_URL)?,
                host => {
                    let host = host.as_deref().map_or("127.0.0.1", str::trim);
                    let bracketed = if host.contains(':') && !host.starts_with('[') {
                        format!("[{host}]")
                    } else {
                        host.to_owned()
                    };
                    parse_chroma_url("CHROMA_HOST", &format!("http://{bracketed}:{port}"))?
                }
            }
        };
        let token = match get("CHROMA_TOKEN")? {
            None => None,
            Some(t) => {
                let t = t.trim();
                if HeaderValue::from_str(t).is_err() {
                    return Err(SettingsError::Chroma {
                        name: "CHROMA_TOKEN",
                        problem: "not a valid HTTP header value (control characters); the value is not shown".into(),
                    });
                }
                Some(SecretString::from(t.to_owned()))
            }
        };
        Ok(Self {
            url,
            tenant: get("CHROMA_TENANT")?.unwrap_or_else(|| DEFAULT_TENANT.into()),
            database: get("CHROMA_DATABASE")?.unwrap_or_else(|| DEFAULT_DATABASE.into()),
            token,
            collection: get("CHROMA_COLLECTION")?.unwrap_or_else(|| DEFAULT_COLLECTION.into()),
            timeout: DEFAULT_TIMEOUT,
            retry: DEFAULT_RETRY,
        })
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

    #[must_use]
    pub fn url(&self) -> &Url {
        &self.url
    }

    #[must_use]
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    #[must_use]
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The collection the job writes to (`CHROMA_COLLECTION`).
    #[must_use]
    pub fn collection(&self) -> &str {
        &self.collection
    }

    #[must_use]
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub(crate) fn shown_url(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_owned()
    }
}

/// `http://127.0.0.1:8000 (tenant default_tenant, database default_database, collection
/// sp500_market_data, token [redacted])`: safe to print and log.
impl fmt::Display for ChromaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (tenant {}, database {}, collection {}{})",
            self.shown_url(),
            self.tenant,
            self.database,
            self.collection,
            if self.token.is_some() {
                ", token [redacted]"
            } else {
                ""
            }
        )
    }
}

impl fmt::Debug for ChromaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChromaSettings({self})")
    }
}

fn parse_chroma_url(name: &'static str, value: &str) -> Result<Url, SettingsError> {
    let url = Url::parse(value).map_err(|e| SettingsError::Chroma {
        name,
        problem: format!("{value:?} is not a valid http(s) URL ({e})"),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        // The value is not echoed: it holds credentials.
        return Err(SettingsError::Chroma {
            name,
            problem: "credentials in the URL are not supported (set CHROMA_TOKEN); the value is not shown".into(),
        });
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SettingsError::Chroma {
            name,
            problem: format!("{value:?} is not an http(s) URL"),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(SettingsError::Chroma {
            name,
            problem: format!("{value:?} must not have a query or fragment"),
        });
    }
    Ok(url)
}

// ---------------------------------------------------------------------------------------------
// The embedding model, the service's token, logging

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_HUB: &str = "https://huggingface.co";

/// `EMBEDDING_MODEL_DIR`: a local model directory, if set and not empty.
#[must_use]
pub fn model_dir(env: &dyn Fn(&'static str) -> EnvValue) -> Option<PathBuf> {
    match env("EMBEDDING_MODEL_DIR") {
        EnvValue::Present(dir) if !dir.trim().is_empty() => Some(PathBuf::from(dir)),
        _ => None,
    }
}

/// Where a model downloaded from the hub is kept: `MARKET_ENCODER_MODEL_CACHE`, or else
/// `$HOME/.cache/market-encoder/models` (relative to the working directory without a HOME).
#[must_use]
pub fn model_cache(env: &dyn Fn(&'static str) -> EnvValue) -> PathBuf {
    match env("MARKET_ENCODER_MODEL_CACHE") {
        EnvValue::Present(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match env("HOME") {
            EnvValue::Present(home) => PathBuf::from(home).join(".cache/market-encoder/models"),
            _ => PathBuf::from(".cache/market-encoder/models"),
        },
    }
}

/// The hub's base URL: `HF_ENDPOINT`, as the official Hugging Face tools read it, or
/// [`DEFAULT_HUB`].
pub fn hub_endpoint(env: &dyn Fn(&'static str) -> EnvValue) -> Result<Url, SettingsError> {
    let value = env("HF_ENDPOINT")
        .into_option("HF_ENDPOINT")?
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_HUB.to_owned());
    Url::parse(value.trim()).map_err(|e| SettingsError::BadUrl {
        name: "HF_ENDPOINT",
        value: value.clone(),
        reason: e.to_string(),
    })
}

/// A secret variable, trimmed (a mounted secret often ends in a newline); `None` when unset or
/// blank. Its value is only ever held in a [`SecretString`].
pub fn secret(
    env: &dyn Fn(&'static str) -> EnvValue,
    name: &'static str,
) -> Result<Option<SecretString>, SettingsError> {
    match env(name) {
        EnvValue::Present(value) if value.trim().is_empty() => Ok(None),
        EnvValue::Present(value) => Ok(Some(SecretString::from(value.trim().to_owned()))),
        EnvValue::Absent => Ok(None),
        EnvValue::NotUnicode => Err(SettingsError::NotUnicode { name }),
    }
}

/// `COLLECT_TOKEN`, the bearer token of `POST /collect` (`None` disables it).
pub fn collect_token(
    env: &dyn Fn(&'static str) -> EnvValue,
) -> Result<Option<SecretString>, SettingsError> {
    secret(env, "COLLECT_TOKEN")
}

/// The variable the config's `embedding.api_key_env` names. Every other variable is named by
/// a literal; this one by the config, and the lookup takes `&'static str` names, so the name
/// (a few bytes, once per run) is leaked to get one.
pub fn api_key(
    env: &dyn Fn(&'static str) -> EnvValue,
    var: &str,
) -> Result<Option<SecretString>, SettingsError> {
    let name: &'static str = Box::leak(var.to_owned().into_boxed_str());
    secret(env, name)
}

/// `RUST_LOG` and `LOG_LEVEL`, as given (the logging filter parses them).
#[must_use]
pub fn log_filter(env: &dyn Fn(&'static str) -> EnvValue) -> (Option<String>, Option<String>) {
    let get = |name| match env(name) {
        EnvValue::Present(v) => Some(v),
        _ => None,
    };
    (get("RUST_LOG"), get("LOG_LEVEL"))
}

/// One environment variable as read: absent, present, or present but not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    Absent,
    Present(String),
    NotUnicode,
}

impl EnvValue {
    /// Reads a variable of the real process environment.
    #[must_use]
    pub fn from_process(name: &str) -> Self {
        match std::env::var(name) {
            Ok(v) => Self::Present(v),
            Err(std::env::VarError::NotPresent) => Self::Absent,
            Err(std::env::VarError::NotUnicode(_)) => Self::NotUnicode,
        }
    }

    /// An environment made of these pairs only, in the shape `app::run` and the `from_env`
    /// constructors take: for tests, and for programs that embed the library with their own
    /// configuration source.
    pub fn from_pairs(pairs: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Self + use<> {
        let pairs: Vec<(&'static str, String)> =
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map_or(Self::Absent, |(_, v)| Self::Present(v.clone()))
        }
    }

    fn into_option(self, name: &'static str) -> Result<Option<String>, SettingsError> {
        match self {
            Self::Absent => Ok(None),
            Self::Present(v) => Ok(Some(v)),
            Self::NotUnicode => Err(SettingsError::NotUnicode { name }),
        }
    }
}

fn parse_port(name: &'static str, value: &str) -> Result<u16, SettingsError> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| SettingsError::BadPort {
            name,
            value: value.to_owned(),
        })
}

/// sqlx's URL parse errors do not echo the URL today; this keeps it that way if they start to.
fn redact_sqlx_error(message: &str) -> String {
    match message.find("://") {
        Some(_) => "unparsable connection URL".to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_indexed_job_gives_the_shard() {
        let env = EnvValue::from_pairs(&[("JOB_COMPLETION_INDEX", "3"), (SHARDS_VAR, "4")]);
        assert_eq!(
            indexed_job_shard(&env).unwrap(),
            Some(Shard::new(3, 4).unwrap())
        );
        assert_eq!(indexed_job_shard(&EnvValue::from_pairs(&[])).unwrap(), None);
        for (pairs, says) in [
            (
                &[("JOB_COMPLETION_INDEX", "0")][..],
                "MARKET_ENCODER_SHARDS is not",
            ),
            (&[(SHARDS_VAR, "4")][..], "JOB_COMPLETION_INDEX is not"),
            (
                &[("JOB_COMPLETION_INDEX", "4"), (SHARDS_VAR, "4")][..],
                "out of range",
            ),
            (
                &[("JOB_COMPLETION_INDEX", "0"), (SHARDS_VAR, "four")][..],
                "shard count n",
            ),
        ] {
            let e = indexed_job_shard(&EnvValue::from_pairs(pairs))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn parts_are_required_and_password_is_redacted() {
        let env = EnvValue::from_pairs(&[
            ("DB_HOST", "db.internal"),
            ("DB_NAME", "markets"),
            ("DB_USER", "encoder"),
            ("DB_PASSWORD", "hunter2-secret"),
        ]);
        let s = DatabaseSettings::from_env(&env).unwrap();
        assert_eq!(
            s.to_string(),
            "postgres://encoder:[redacted]@db.internal:5432/markets"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn missing_part_names_the_variable() {
        let env = EnvValue::from_pairs(&[("DB_HOST", "h"), ("DB_NAME", "n"), ("DB_USER", "u")]);
        let err = DatabaseSettings::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("DB_PASSWORD"), "{err}");
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn bad_port_is_reported() {
        let env = EnvValue::from_pairs(&[
            ("DB_HOST", "h"),
            ("DB_NAME", "n"),
            ("DB_USER", "u"),
            ("DB_PASSWORD", "p"),
            ("DB_PORT", "54x"),
        ]);
        let err = DatabaseSettings::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("DB_PORT") && err.contains("54x"), "{err}");
    }

    #[test]
    fn database_url_wins_and_is_redacted() {
        let env = EnvValue::from_pairs(&[(
            "DATABASE_URL",
            "postgres://me:s3cr%40t@127.0.0.1:6543/prices?sslmode=disable",
        )]);
        let s = DatabaseSettings::from_env(&env).unwrap();
        assert_eq!(
            s.to_string(),
            "postgres://me:[redacted]@127.0.0.1:6543/prices"
        );
        assert!(s.connect_options().is_ok());
        let other = s.with_database("other_db");
        assert_eq!(
            other.to_string(),
            "postgres://me:[redacted]@127.0.0.1:6543/other_db"
        );
    }

    #[test]
    fn bad_database_url_does_not_echo_it() {
        let env = EnvValue::from_pairs(&[("DATABASE_URL", "mysql://me:topsecret@host/db")]);
        let err = DatabaseSettings::from_env(&env).unwrap_err().to_string();
        assert!(!err.contains("topsecret"), "{err}");
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn tiingo_settings_default_and_never_show_the_token() {
        let t = TiingoSettings::from_env(&EnvValue::from_pairs(&[])).unwrap();
        assert_eq!(t.base_url.as_str(), "https://api.tiingo.com/");
        assert!(t.token.is_none());
        assert_eq!(t.requests_per_hour.get(), 50);
        let t = TiingoSettings::from_env(&EnvValue::from_pairs(&[
            ("TIINGO_API_KEY", " tok-123456\n"),
            ("TIINGO_BASE_URL", "http://127.0.0.1:9"),
            ("TIINGO_REQUESTS_PER_HOUR", "1000"),
        ]))
        .unwrap();
        assert_eq!(
            t.token.as_ref().map(TiingoToken::expose),
            Some("tok-123456")
        );
        assert_eq!(t.requests_per_hour.get(), 1000);
        assert!(!format!("{t:?}").contains("tok-123456"), "{t:?}");
        let err =
            TiingoSettings::from_env(&EnvValue::from_pairs(&[("TIINGO_API_KEY", "tok 123456")]))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("TIINGO_API_KEY") && !err.contains("tok 123456"),
            "{err}"
        );
        let err =
            TiingoSettings::from_env(&EnvValue::from_pairs(&[("TIINGO_REQUESTS_PER_HOUR", "0")]))
                .unwrap_err();
        assert!(
            err.to_string().contains("TIINGO_REQUESTS_PER_HOUR"),
            "{err}"
        );
    }

    #[test]
    fn yahoo_base_url_defaults_and_validates() {
        let none = EnvValue::from_pairs(&[]);
        assert_eq!(
            yahoo_base_url(&none).unwrap().as_str(),
            "https://query2.finance.yahoo.com/"
        );
        let bad = EnvValue::from_pairs(&[("YAHOO_BASE_URL", "ftp://x")]);
        assert!(
            yahoo_base_url(&bad)
                .unwrap_err()
                .to_string()
                .contains("YAHOO_BASE_URL")
        );
    }

    #[test]
    fn chroma_defaults() {
        let s = ChromaSettings::from_env(&EnvValue::from_pairs(&[])).unwrap();
        assert_eq!(s.url().as_str(), "http://127.0.0.1:8000/");
        assert_eq!(
            s.to_string(),
            "http://127.0.0.1:8000 (tenant default_tenant, database default_database, collection sp500_market_data)"
        );
    }

    #[test]
    fn chroma_host_and_port_and_token_redacted() {
        let s = ChromaSettings::from_env(&EnvValue::from_pairs(&[
            ("CHROMA_HOST", "chroma.internal"),
            ("CHROMA_PORT", "8001"),
            ("CHROMA_TOKEN", "ck-supersecret"),
            ("CHROMA_TENANT", "t"),
            ("CHROMA_DATABASE", "d"),
            ("CHROMA_COLLECTION", "c1x"),
        ]))
        .unwrap();
        assert_eq!(
            s.to_string(),
            "http://chroma.internal:8001 (tenant t, database d, collection c1x, token [redacted])"
        );
        assert!(!format!("{s:?}").contains("supersecret"));
        let v6 =
            ChromaSettings::from_env(&EnvValue::from_pairs(&[("CHROMA_HOST", "::1")])).unwrap();
        assert_eq!(v6.url().as_str(), "http://[::1]:8000/");
    }

    #[test]
    fn chroma_url_wins_and_bad_values_name_the_variable() {
        let s = ChromaSettings::from_env(&EnvValue::from_pairs(&[
            ("CHROMA_URL", "https://chroma.example.com/prefix"),
            ("CHROMA_HOST", "ignored"),
        ]))
        .unwrap();
        assert_eq!(s.url().as_str(), "https://chroma.example.com/prefix");
        let err = ChromaSettings::from_env(&EnvValue::from_pairs(&[("CHROMA_URL", "ftp://x")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CHROMA_URL") && err.contains("ftp://x"),
            "{err}"
        );
        let err = ChromaSettings::from_env(&EnvValue::from_pairs(&[(
            "CHROMA_URL",
            "http://u:hunter2@h:1",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("CHROMA_URL") && !err.contains("hunter2"),
            "{err}"
        );
        let err = ChromaSettings::from_env(&EnvValue::from_pairs(&[("CHROMA_PORT", "80a")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CHROMA_PORT") && err.contains("80a"), "{err}");
    }

    #[test]
    fn the_user_agent_is_a_browsers_unless_told() {
        let ua = yahoo_user_agent(&EnvValue::from_pairs(&[])).unwrap();
        assert!(
            ua.starts_with("Mozilla/5.0") && ua.contains("Chrome/"),
            "{ua}"
        );
        let ua = yahoo_user_agent(&EnvValue::from_pairs(&[(
            "YAHOO_USER_AGENT",
            " Mozilla/5.0 (X) \n",
        )]))
        .unwrap();
        assert_eq!(ua, "Mozilla/5.0 (X)");
        let err = yahoo_user_agent(&EnvValue::from_pairs(&[("YAHOO_USER_AGENT", "a\u{7}b")]))
            .unwrap_err();
        assert!(err.to_string().contains("YAHOO_USER_AGENT"), "{err}");
    }
}
