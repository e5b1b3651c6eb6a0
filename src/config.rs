//! The securities file (`config/securities.yaml`): loading, validation, selection.
//!
//! Every error is one line that starts with `{file}:{line}:` (whenever a line is known) and
//! names the field, e.g.
//! `config/securities.yaml:14: securities.etfs[3].db_symbol: "SPX" is already used by
//! securities.indices[0] (line 5); db_symbol must be unique`.
//!
//! # How it works
//! The text is parsed by serde-saphyr into a small generic tree whose every node is a
//! [`serde_saphyr::Spanned`] (so each key and value carries its line), and the tree is then read
//! section by section. Reading the tree by hand, instead of deriving `Deserialize` for the
//! sections, is what lets every error name the full field path (`securities.etfs[3].name`):
//! serde errors carry a position but not the path, and `Spanned` fields lose their location
//! inside `#[serde(flatten)]`.
//!
//! # Adding a section
//! Write its struct with a `Default` and an `impl Section` (its `KEY`, its allowed `KEYS`, and a
//! `read` function, see [`EncodingSettings`] or [`EmbeddingSettings`]), add the key to
//! [`TOP_LEVEL_KEYS`], and add the field to [`Config`], filled in [`Config::from_yaml`] by
//! `read_section::<NewSection>(&doc, &top)?`. A section that names securities (like
//! [`FeatureSettings`]) is checked against `securities` once both are read.

use std::collections::{BTreeMap, HashMap};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{
    Budget, DuplicateKeyPolicy, Location, MessageFormatter, NonFiniteFloatPolicy, Options, Spanned,
    UserMessageFormatter,
};
use url::Url;

use crate::domain::{Category, DbSymbol, DomainError, YahooSymbol};
use crate::features::{DEFAULT_CORRELATIONS, ROLE_KEYS, Role};

/// Where the config file is looked for when neither `--config` nor the variable is set.
pub const DEFAULT_CONFIG_PATH: &str = "config/securities.yaml";
/// Environment variable naming the config file.
pub const CONFIG_ENV_VAR: &str = "MARKET_ENCODER_CONFIG";

/// Keys allowed at the top level of the file.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "securities",
    EncodingSettings::KEY,
    EmbeddingSettings::KEY,
    FeatureSettings::KEY,
];
/// Keys allowed in one security entry.
pub const SECURITY_KEYS: &[&str] = &["symbol", "name", "yahoo_symbol", "db_symbol", "enabled"];

/// One configured security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// The category (key under `securities`) the entry is listed in.
    pub category: Category,
    /// The symbol as written in the file (the default for `yahoo_symbol` and `db_symbol`).
    pub symbol: String,
    /// Human-readable name.
    pub name: String,
    /// Ticker to ask Yahoo Finance for.
    pub yahoo_symbol: YahooSymbol,
    /// Symbol stored in the database.
    pub db_symbol: DbSymbol,
    /// Whether the daily job fetches it.
    pub enabled: bool,
    /// 1-based line of the entry in the file.
    pub line: usize,
}

/// The `encoding:` section: how much to fetch and how politely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodingSettings {
    /// Days of history to fetch (`1..=36500`).
    pub days_back: u32,
    /// Days processed for embeddings by a later stage (`1..=36500`).
    pub embedding_days: u32,
    /// Securities fetched concurrently (`1..=64`).
    pub batch_size: NonZeroUsize,
    /// Retry attempts per request (`0..=10`).
    pub max_retries: u32,
    /// Timeout of one HTTP request (`request_timeout_secs`, `1..=600`).
    pub request_timeout: Duration,
    /// Global rate limit towards Yahoo (`1..=1000`).
    pub requests_per_second: NonZeroU32,
    /// First backoff delay (`retry_base_ms`, `1..=60000`).
    pub retry_base: Duration,
    /// Cap on any backoff or `Retry-After` wait (`retry_max_ms`, `retry_base_ms..=600000`).
    pub retry_max: Duration,
}

/// The `features:` section: which configured securities play which role in the cross-asset
/// features, and their windows. Formulas: `src/features.rs` and ARCHITECTURE.md.
///
/// Absent (or empty), every role takes [`Role::default_symbol`] (the shipped file's
/// db_symbols) and the correlations are [`DEFAULT_CORRELATIONS`]. `roles` overrides role by
/// role; `correlations`, when written, is the whole list. A db_symbol written in the section
/// must be configured under `securities` (enabled or not); a default one need not be, and its
/// features are then NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSettings {
    /// Whether the job computes the features (`enabled`, default true).
    pub enabled: bool,
    /// The db_symbol of every role.
    pub roles: BTreeMap<Role, DbSymbol>,
    /// Returns in the correlation windows (`correlation_days`, `5..=252`, default 30).
    pub correlation_days: u32,
    /// Returns in the dollar-strength momentum (`momentum_days`, `1..=252`, default 20).
    pub momentum_days: u32,
    /// Returns in the credit-spread differential (`spread_days`, `1..=252`, default 20).
    pub spread_days: u32,
    /// `ml_{name}_correlation`: name and the db_symbol correlated with the `btc` role, in file
    /// order.
    pub correlations: Vec<(String, DbSymbol)>,
    /// The db_symbols written in the section, with their field and line, for the check against
    /// `securities`.
    named: Vec<NamedSymbol>,
}

/// A db_symbol written in a section, where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NamedSymbol {
    field: String,
    line: usize,
    symbol: DbSymbol,
}

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

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file the config was read from (used in messages).
    pub path: PathBuf,
    /// All securities, enabled or not, in file order (categories in file order).
    pub securities: Vec<Security>,
    /// The `encoding:` section (defaults when omitted).
    pub encoding: EncodingSettings,
    /// The `embedding:` section ([`EmbeddingSettings::Local`] when omitted).
    pub embedding: EmbeddingSettings,
    /// The `features:` section (defaults when omitted).
    pub features: FeatureSettings,
}

/// Why the config could not be loaded or a selection could not be made.
///
/// Every message is one line beginning with `{path}:{line}:` whenever a line is known. Causes are
/// written into the message rather than exposed through `source()`, so that reporters which
/// print the source chain do not repeat them or spread them over several lines.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "{}: cannot read the config file: {cause}; point --config PATH or {CONFIG_ENV_VAR} at the securities file",
        path.display()
    )]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// The file is not UTF-8.
    #[error("{}:{line}: the file is not valid UTF-8; save it as UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },

    /// The YAML parser rejected the text (`line`/`column` are 0 when unknown).
    #[error("{}: invalid YAML: {message}", position(path, *line, *column))]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A key that is not allowed where it is.
    #[error("{}:{line}: {field}: unknown key; allowed keys here: {}", path.display(), allowed.join(", "))]
    UnknownKey {
        path: PathBuf,
        line: usize,
        field: String,
        allowed: &'static [&'static str],
    },

    /// A key written twice in the same mapping.
    #[error("{}:{line}: {field}: key appears twice (first on line {first_line}); keep one", path.display())]
    DuplicateKey {
        path: PathBuf,
        line: usize,
        field: String,
        first_line: usize,
    },

    /// A required key is absent (`line` is the line of the mapping that lacks it).
    #[error("{}:{line}: {field}: required key is missing", path.display())]
    MissingKey {
        path: PathBuf,
        line: usize,
        field: String,
    },

    /// A value of the wrong kind (`batch_size: five`, a category that is not a list, ...).
    #[error("{}:{line}: {field}: expected {expected}, found {found}", path.display())]
    WrongType {
        path: PathBuf,
        line: usize,
        field: String,
        expected: String,
        found: String,
    },

    /// A number outside its allowed range.
    #[error("{}:{line}: {field}: {value} is out of range; allowed: {min}..={max}", path.display())]
    OutOfRange {
        path: PathBuf,
        line: usize,
        field: String,
        value: String,
        min: u32,
        max: u32,
    },

    /// A symbol or category name that the domain rules reject.
    #[error("{}:{line}: {field}: {error}{note}", path.display())]
    InvalidValue {
        path: PathBuf,
        line: usize,
        field: String,
        error: Box<DomainError>,
        /// Extra explanation, empty or starting with `"; "`.
        note: &'static str,
    },

    /// Any other invalid value; `message` says what is wrong and what to do.
    #[error("{}:{line}: {field}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },

    /// Two entries share a `db_symbol` or a `yahoo_symbol`.
    #[error(
        "{}:{line}: {field}: {value:?} is already used by {first_entry} (line {first_line}); {key} must be unique{}",
        path.display(),
        duplicate_note(*key, *defaulted)
    )]
    Duplicate {
        path: PathBuf,
        line: usize,
        /// The field that supplied the value (`...db_symbol`, or `...symbol` when defaulted).
        field: String,
        /// Which symbol must be unique.
        key: SymbolField,
        value: String,
        /// The entry that uses the value first, e.g. `securities.indices[0]`.
        first_entry: String,
        first_line: usize,
        /// Whether the value was defaulted from `symbol`.
        defaulted: bool,
    },

    /// `securities` is absent, empty, or has no entries.
    #[error(
        "{}:{line}: securities: no securities configured; add a category with at least one entry, e.g. `stocks: [{{symbol: AAPL, name: Apple Inc.}}]`",
        path.display()
    )]
    NoSecurities { path: PathBuf, line: usize },

    /// A requested category is not in the file.
    #[error("{}: unknown category {category:?}; categories in this file: {}", path.display(), known.join(", "))]
    UnknownCategory {
        path: PathBuf,
        category: String,
        known: Vec<String>,
    },

    /// A requested symbol matches no security.
    #[error(
        "{}: no security {scope}matches {symbol:?} (compared with symbol, yahoo_symbol and db_symbol){hint}; run with --dry-run to list the configured securities",
        path.display()
    )]
    UnknownSymbol {
        path: PathBuf,
        symbol: String,
        /// Empty, or e.g. `"in categories etfs, stocks "`.
        scope: String,
        /// Empty, or a `"; ..."` suggestion.
        hint: String,
    },

    /// A requested symbol matches only disabled securities.
    #[error(
        "{}:{line}: {entry}: {symbol:?} is disabled (enabled: false); set enabled: true there to fetch it",
        path.display()
    )]
    DisabledSymbol {
        path: PathBuf,
        line: usize,
        /// The entry, e.g. `securities.commodities[3]`.
        entry: String,
        symbol: String,
    },

    /// The selection is empty.
    #[error("{}: no enabled securities selected (categories: {categories}; symbols: {symbols})", path.display())]
    NothingSelected {
        path: PathBuf,
        categories: String,
        symbols: String,
    },
}

/// The per-entry symbols that must be unique across the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolField {
    /// `yahoo_symbol`
    Yahoo,
    /// `db_symbol`
    Db,
}

impl SymbolField {
    /// The key as written in the file.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            SymbolField::Yahoo => "yahoo_symbol",
            SymbolField::Db => "db_symbol",
        }
    }
}

impl std::fmt::Display for SymbolField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

fn duplicate_note(key: SymbolField, defaulted: bool) -> &'static str {
    match (defaulted, key) {
        (false, _) => "",
        (true, SymbolField::Db) => " (db_symbol defaults to symbol; set a different db_symbol)",
        (true, SymbolField::Yahoo) => " (yahoo_symbol defaults to symbol)",
    }
}

impl ConfigError {
    /// The 1-based line the error points at, when there is one.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::NotUtf8 { line, .. }
            | Self::Syntax { line, .. }
            | Self::UnknownKey { line, .. }
            | Self::DuplicateKey { line, .. }
            | Self::MissingKey { line, .. }
            | Self::WrongType { line, .. }
            | Self::OutOfRange { line, .. }
            | Self::InvalidValue { line, .. }
            | Self::Invalid { line, .. }
            | Self::Duplicate { line, .. }
            | Self::NoSecurities { line, .. }
            | Self::DisabledSymbol { line, .. } => Some(*line).filter(|&l| l > 0),
            Self::Read { .. }
            | Self::UnknownCategory { .. }
            | Self::UnknownSymbol { .. }
            | Self::NothingSelected { .. } => None,
        }
    }
}

/// `path:line:column`, leaving out unknown parts.
fn position(path: &Path, line: usize, column: usize) -> String {
    match (line, column) {
        (0, _) => path.display().to_string(),
        (l, 0) => format!("{}:{l}", path.display()),
        (l, c) => format!("{}:{l}:{c}", path.display()),
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] / [`ConfigError::NotUtf8`] if the file cannot be read, otherwise as
    /// [`Config::from_yaml`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            ConfigError::NotUtf8 {
                path: path.to_path_buf(),
                line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
            }
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses and validates config text; `path` is only used in messages and stored in
    /// [`Config::path`].
    ///
    /// # Errors
    /// A [`ConfigError`] naming the line and field of the first problem found.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let doc = Doc { path, text };
        let root = parse_tree(text).map_err(|e| doc.syntax_error(&e))?;
        if matches!(root.value, Node::Null) {
            return Err(doc.invalid(
                &root,
                "top level",
                "the file is empty; it must define securities (and may define encoding and embedding)"
                    .into(),
            ));
        }
        let top = doc.fields(
            &root,
            "",
            "top level",
            "a mapping with the keys securities, encoding and embedding",
            TOP_LEVEL_KEYS,
        )?;
        let securities = read_securities(&doc, &top)?;
        let encoding = read_section::<EncodingSettings>(&doc, &top)?;
        let embedding = read_section::<EmbeddingSettings>(&doc, &top)?;
        let features = read_section::<FeatureSettings>(&doc, &top)?;
        features.check_configured(&doc, &securities)?;
        Ok(Config {
            path: path.to_path_buf(),
            securities,
            encoding,
            embedding,
            features,
        })
    }

    /// The categories that have securities, in file order, each once.
    #[must_use]
    pub fn categories(&self) -> Vec<&Category> {
        let mut out: Vec<&Category> = Vec::new();
        for s in &self.securities {
            if !out.contains(&&s.category) {
                out.push(&s.category);
            }
        }
        out
    }

    /// The enabled securities to process, in file order.
    ///
    /// `categories` empty means all categories; `symbols` empty means every security of those
    /// categories. A symbol matches a security's `symbol`, `yahoo_symbol` or `db_symbol`
    /// exactly (case-sensitive).
    ///
    /// # Errors
    /// [`ConfigError::UnknownCategory`], [`ConfigError::UnknownSymbol`],
    /// [`ConfigError::DisabledSymbol`] or [`ConfigError::NothingSelected`].
    pub fn select(
        &self,
        categories: &[String],
        symbols: &[String],
    ) -> Result<Vec<&Security>, ConfigError> {
        let known = self.categories();
        if let Some(unknown) = categories
            .iter()
            .find(|c| !known.iter().any(|k| k.as_str() == c.as_str()))
        {
            return Err(ConfigError::UnknownCategory {
                path: self.path.clone(),
                category: unknown.clone(),
                known: known.iter().map(ToString::to_string).collect(),
            });
        }
        let in_scope = |s: &Security| {
            categories.is_empty() || categories.iter().any(|c| s.category.as_str() == c)
        };
        let mut chosen: Vec<bool> = self
            .securities
            .iter()
            .map(|s| symbols.is_empty() && s.enabled && in_scope(s))
            .collect();
        for wanted in symbols {
            let hits: Vec<usize> = (0..self.securities.len())
                .filter(|&i| {
                    in_scope(&self.securities[i]) && matches_symbol(&self.securities[i], wanted)
                })
                .collect();
            if hits.is_empty() {
                return Err(self.unknown_symbol(wanted, categories, &in_scope));
            }
            let enabled: Vec<usize> = hits
                .iter()
                .copied()
                .filter(|&i| self.securities[i].enabled)
                .collect();
            if enabled.is_empty() {
                let first = hits[0];
                return Err(ConfigError::DisabledSymbol {
                    path: self.path.clone(),
                    line: self.securities[first].line,
                    entry: self.entry_field(first),
                    symbol: wanted.clone(),
                });
            }
            for i in enabled {
                chosen[i] = true;
            }
        }
        let selected: Vec<&Security> = self
            .securities
            .iter()
            .zip(&chosen)
            .filter_map(|(s, &c)| c.then_some(s))
            .collect();
        if selected.is_empty() {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "all".to_owned()
                } else {
                    v.join(", ")
                }
            };
            return Err(ConfigError::NothingSelected {
                path: self.path.clone(),
                categories: list(categories),
                symbols: list(symbols),
            });
        }
        Ok(selected)
    }

    /// `securities.<category>[<index within category>]` for `self.securities[index]`.
    fn entry_field(&self, index: usize) -> String {
        let category = &self.securities[index].category;
        let position = self.securities[..index]
            .iter()
            .filter(|s| &s.category == category)
            .count();
        format!("securities.{category}[{position}]")
    }

    fn unknown_symbol(
        &self,
        wanted: &str,
        categories: &[String],
        in_scope: &dyn Fn(&Security) -> bool,
    ) -> ConfigError {
        let scope = if categories.is_empty() {
            String::new()
        } else {
            format!("in categories {} ", categories.join(", "))
        };
        let elsewhere = self
            .securities
            .iter()
            .find(|s| !in_scope(s) && matches_symbol(s, wanted));
        let hint = if let Some(s) = elsewhere {
            format!(
                "; it is in category {}, which was not selected (line {})",
                s.category, s.line
            )
        } else if let Some(s) = self.securities.iter().find(|s| {
            [
                s.symbol.as_str(),
                s.yahoo_symbol.as_str(),
                s.db_symbol.as_str(),
            ]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(wanted))
        }) {
            format!(
                "; did you mean {:?} (line {})? symbols are case-sensitive",
                s.symbol, s.line
            )
        } else {
            String::new()
        };
        ConfigError::UnknownSymbol {
            path: self.path.clone(),
            symbol: wanted.to_owned(),
            scope,
            hint,
        }
    }
}

fn matches_symbol(s: &Security, wanted: &str) -> bool {
    s.symbol == wanted || s.yahoo_symbol.as_str() == wanted || s.db_symbol.as_str() == wanted
}

// ---------------------------------------------------------------------------------------------
// Sections

/// A top-level section that may be omitted (then it takes its defaults).
trait Section: Sized + Default {
    /// Its key at the top level of the file.
    const KEY: &'static str;
    /// The keys allowed inside it.
    const KEYS: &'static [&'static str];
    /// Reads the section from its mapping.
    fn read(doc: &Doc<'_>, fields: &Fields<'_>) -> Result<Self, ConfigError>;
}

/// Reads an optional section: absent or empty (`encoding:`) gives the defaults.
fn read_section<S: Section>(doc: &Doc<'_>, top: &Fields<'_>) -> Result<S, ConfigError> {
    match top.get(S::KEY) {
        None => Ok(S::default()),
        Some(node) if matches!(node.value, Node::Null) => Ok(S::default()),
        Some(node) => {
            let fields = doc.fields(node, S::KEY, S::KEY, "a mapping of settings", S::KEYS)?;
            S::read(doc, &fields)
        }
    }
}

/// An integer setting: its key, allowed range and default.
struct IntSetting {
    key: &'static str,
    min: u32,
    max: u32,
    default: u32,
}

impl IntSetting {
    const fn new(key: &'static str, min: u32, max: u32, default: u32) -> Self {
        IntSetting {
            key,
            min,
            max,
            default,
        }
    }

    /// The value (or the default when the key is absent) and the line it came from.
    fn read(
        &self,
        doc: &Doc<'_>,
        fields: &Fields<'_>,
    ) -> Result<(u32, Option<usize>), ConfigError> {
        match fields.get(self.key) {
            None => Ok((self.default, None)),
            Some(node) => {
                let field = fields.field(self.key);
                Ok((
                    doc.int_in(node, &field, self.min, self.max)?,
                    Some(line_of(node)),
                ))
            }
        }
    }
}

const DAYS_BACK: IntSetting = IntSetting::new("days_back", 1, 36_500, 60);
const EMBEDDING_DAYS: IntSetting = IntSetting::new("embedding_days", 1, 36_500, 30);
const BATCH_SIZE: IntSetting = IntSetting::new("batch_size", 1, 64, 5);
const MAX_RETRIES: IntSetting = IntSetting::new("max_retries", 0, 10, 3);
const REQUEST_TIMEOUT_SECS: IntSetting = IntSetting::new("request_timeout_secs", 1, 600, 30);
const REQUESTS_PER_SECOND: IntSetting = IntSetting::new("requests_per_second", 1, 1_000, 4);
const RETRY_BASE_MS: IntSetting = IntSetting::new("retry_base_ms", 1, 60_000, 500);
const RETRY_MAX_MS: IntSetting = IntSetting::new("retry_max_ms", 1, 600_000, 30_000);

/// Keys allowed in `encoding:`.
pub const ENCODING_KEYS: &[&str] = &[
    DAYS_BACK.key,
    EMBEDDING_DAYS.key,
    BATCH_SIZE.key,
    MAX_RETRIES.key,
    REQUEST_TIMEOUT_SECS.key,
    REQUESTS_PER_SECOND.key,
    RETRY_BASE_MS.key,
    RETRY_MAX_MS.key,
];

impl Default for EncodingSettings {
    fn default() -> Self {
        EncodingSettings {
            days_back: DAYS_BACK.default,
            embedding_days: EMBEDDING_DAYS.default,
            batch_size: nonzero_usize(BATCH_SIZE.default),
            max_retries: MAX_RETRIES.default,
            request_timeout: Duration::from_secs(u64::from(REQUEST_TIMEOUT_SECS.default)),
            requests_per_second: nonzero_u32(REQUESTS_PER_SECOND.default),
            retry_base: Duration::from_millis(u64::from(RETRY_BASE_MS.default)),
            retry_max: Duration::from_millis(u64::from(RETRY_MAX_MS.default)),
        }
    }
}

impl Section for EncodingSettings {
    const KEY: &'static str = "encoding";
    const KEYS: &'static [&'static str] = ENCODING_KEYS;

    fn read(doc: &Doc<'_>, fields: &Fields<'_>) -> Result<Self, ConfigError> {
        let (days_back, _) = DAYS_BACK.read(doc, fields)?;
        let (embedding_days, _) = EMBEDDING_DAYS.read(doc, fields)?;
        let (batch_size, _) = BATCH_SIZE.read(doc, fields)?;
        let (max_retries, _) = MAX_RETRIES.read(doc, fields)?;
        let (timeout_secs, _) = REQUEST_TIMEOUT_SECS.read(doc, fields)?;
        let (rps, _) = REQUESTS_PER_SECOND.read(doc, fields)?;
        let (base_ms, base_line) = RETRY_BASE_MS.read(doc, fields)?;
        let (max_ms, max_line) = RETRY_MAX_MS.read(doc, fields)?;
        if max_ms < base_ms {
            let (line, field, message) = match (max_line, base_line) {
                (Some(line), _) => (
                    line,
                    fields.field(RETRY_MAX_MS.key),
                    format!(
                        "{max_ms} is smaller than retry_base_ms ({base_ms}); the cap on backoff must be at least the first delay"
                    ),
                ),
                (None, base_line) => (
                    base_line.unwrap_or(fields.line),
                    fields.field(RETRY_BASE_MS.key),
                    format!(
                        "{base_ms} is larger than retry_max_ms ({max_ms}, the default); lower it or set retry_max_ms to at least {base_ms}"
                    ),
                ),
            };
            return Err(ConfigError::Invalid {
                path: doc.path.to_path_buf(),
                line,
                field,
                message,
            });
        }
        Ok(EncodingSettings {
            days_back,
            embedding_days,
            batch_size: nonzero_usize(batch_size),
            max_retries,
            request_timeout: Duration::from_secs(u64::from(timeout_secs)),
            requests_per_second: nonzero_u32(rps),
            retry_base: Duration::from_millis(u64::from(base_ms)),
            retry_max: Duration::from_millis(u64::from(max_ms)),
        })
    }
}

const FEATURES_ENABLED: &str = "enabled";
const FEATURE_ROLES: &str = "roles";
const FEATURE_CORRELATIONS: &str = "correlations";
const CORRELATION_DAYS: IntSetting = IntSetting::new("correlation_days", 5, 252, 30);
const MOMENTUM_DAYS: IntSetting = IntSetting::new("momentum_days", 1, 252, 20);
const SPREAD_DAYS: IntSetting = IntSetting::new("spread_days", 1, 252, 20);

/// Keys allowed in `features:`.
pub const FEATURE_KEYS: &[&str] = &[
    FEATURES_ENABLED,
    FEATURE_ROLES,
    CORRELATION_DAYS.key,
    MOMENTUM_DAYS.key,
    SPREAD_DAYS.key,
    FEATURE_CORRELATIONS,
];

/// Longest correlation name (the column `ml_{name}_correlation` stays well under 63 bytes).
const MAX_CORRELATION_NAME: usize = 32;

impl Default for FeatureSettings {
    fn default() -> Self {
        // The defaults are constants that parse (a unit test holds every role to it).
        FeatureSettings {
            enabled: true,
            roles: Role::ALL
                .into_iter()
                .filter_map(|r| Some((r, DbSymbol::parse(r.default_symbol()).ok()?)))
                .collect(),
            correlation_days: CORRELATION_DAYS.default,
            momentum_days: MOMENTUM_DAYS.default,
            spread_days: SPREAD_DAYS.default,
            correlations: DEFAULT_CORRELATIONS
                .iter()
                .filter_map(|(name, s)| Some(((*name).to_owned(), DbSymbol::parse(s).ok()?)))
                .collect(),
            named: Vec::new(),
        }
    }
}

impl FeatureSettings {
    /// The db_symbol that plays `role`.
    #[must_use]
    pub fn symbol(&self, role: Role) -> Option<&DbSymbol> {
        self.roles.get(&role)
    }

    /// Every db_symbol written in the section must be a configured security's.
    fn check_configured(&self, doc: &Doc<'_>, securities: &[Security]) -> Result<(), ConfigError> {
        for named in &self.named {
            if securities.iter().any(|s| s.db_symbol == named.symbol) {
                continue;
            }
            let wanted = named.symbol.as_str();
            let hint = securities
                .iter()
                .find(|s| {
                    s.symbol == wanted
                        || s.yahoo_symbol.as_str() == wanted
                        || s.db_symbol.as_str().eq_ignore_ascii_case(wanted)
                })
                .map(|s| {
                    format!(
                        "; did you mean {:?}, the db_symbol of the security on line {}?",
                        s.db_symbol.as_str(),
                        s.line
                    )
                })
                .unwrap_or_default();
            return Err(ConfigError::Invalid {
                path: doc.path.to_path_buf(),
                line: named.line,
                field: named.field.clone(),
                message: format!(
                    "{wanted:?} is not the db_symbol of any security in this file{hint}; features name securities by db_symbol"
                ),
            });
        }
        Ok(())
    }

    fn read_roles(
        &mut self,
        doc: &Doc<'_>,
        node: &Spanned<Node>,
        field: &str,
    ) -> Result<(), ConfigError> {
        let roles = doc.fields(
            node,
            field,
            field,
            "a mapping of role to db_symbol, e.g. `vix: VIX`",
            ROLE_KEYS,
        )?;
        for (key, _, value) in &roles.entries {
            let field = roles.field(key);
            let symbol = named_symbol(doc, value, &field)?;
            if let Some(role) = Role::parse(key) {
                self.roles.insert(role, symbol.clone());
            }
            self.named.push(NamedSymbol {
                field,
                line: line_of(value),
                symbol,
            });
        }
        Ok(())
    }

    fn read_correlations(
        &mut self,
        doc: &Doc<'_>,
        node: &Spanned<Node>,
        field: &str,
    ) -> Result<(), ConfigError> {
        let Node::Map(pairs) = &node.value else {
            return Err(doc.wrong_type(
                node,
                field,
                "a mapping of name to db_symbol, e.g. `nasdaq: QQQ`",
            ));
        };
        self.correlations.clear();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (key, value) in pairs {
            let name = doc.key_text(key, field)?;
            let name_field = join(field, &name);
            if let Some(&first_line) = seen.get(&name) {
                return Err(ConfigError::DuplicateKey {
                    path: doc.path.to_path_buf(),
                    line: line_of(key),
                    field: name_field,
                    first_line,
                });
            }
            seen.insert(name.clone(), line_of(key));
            let valid = name.len() <= MAX_CORRELATION_NAME
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(doc.invalid(
                    key,
                    &name_field,
                    format!(
                        "{:?} is not a correlation name: use 1..={MAX_CORRELATION_NAME} characters of a-z 0-9 _ starting with a letter (the feature is ml_{{name}}_correlation)",
                        preview(&name)
                    ),
                ));
            }
            let symbol = named_symbol(doc, value, &name_field)?;
            self.named.push(NamedSymbol {
                field: name_field,
                line: line_of(value),
                symbol: symbol.clone(),
            });
            self.correlations.push((name, symbol));
        }
        Ok(())
    }
}

/// A db_symbol value of a section.
fn named_symbol(doc: &Doc<'_>, node: &Spanned<Node>, field: &str) -> Result<DbSymbol, ConfigError> {
    let text = doc.text(node, field, "a db_symbol")?;
    DbSymbol::parse(&text).map_err(|error| ConfigError::InvalidValue {
        path: doc.path.to_path_buf(),
        line: line_of(node),
        field: field.to_owned(),
        error: Box::new(error),
        note: "",
    })
}

impl Section for FeatureSettings {
    const KEY: &'static str = "features";
    const KEYS: &'static [&'static str] = FEATURE_KEYS;

    fn read(doc: &Doc<'_>, fields: &Fields<'_>) -> Result<Self, ConfigError> {
        let mut settings = FeatureSettings::default();
        if let Some(node) = fields.get(FEATURES_ENABLED) {
            settings.enabled = doc.boolean(node, &fields.field(FEATURES_ENABLED))?;
        }
        if let Some(node) = fields.get(FEATURE_ROLES)
            && !matches!(node.value, Node::Null)
        {
            settings.read_roles(doc, node, &fields.field(FEATURE_ROLES))?;
        }
        (settings.correlation_days, _) = CORRELATION_DAYS.read(doc, fields)?;
        (settings.momentum_days, _) = MOMENTUM_DAYS.read(doc, fields)?;
        (settings.spread_days, _) = SPREAD_DAYS.read(doc, fields)?;
        if let Some(node) = fields.get(FEATURE_CORRELATIONS)
            && !matches!(node.value, Node::Null)
        {
            settings.read_correlations(doc, node, &fields.field(FEATURE_CORRELATIONS))?;
        }
        Ok(settings)
    }
}

/// For values already range-checked to be at least 1.
fn nonzero_u32(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
}

/// For values already range-checked to be at least 1.
fn nonzero_usize(v: u32) -> NonZeroUsize {
    NonZeroUsize::new(usize::try_from(v).unwrap_or(usize::MAX)).unwrap_or(NonZeroUsize::MIN)
}

const PROVIDER: &str = "provider";
const BASE_URL: &str = "base_url";
const MODEL: &str = "model";
const API_KEY_ENV: &str = "api_key_env";
const EMBEDDING_BATCH_SIZE: IntSetting = IntSetting::new("batch_size", 1, 2048, 64);
/// No default: without the key, `dimensions` is not sent and any length is accepted.
const DIMENSIONS: IntSetting = IntSetting::new("dimensions", 1, 65_536, 0);
const TIMEOUT: &str = "timeout";
/// `timeout` in seconds: allowed range and default (the range of `request_timeout_secs`).
const TIMEOUT_SECS: (u32, u32, u32) = (1, 600, 60);

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
fn read_local(doc: &Doc<'_>, fields: &Fields<'_>) -> Result<EmbeddingSettings, ConfigError> {
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

fn read_openai(doc: &Doc<'_>, fields: &Fields<'_>) -> Result<OpenAiEndpoint, ConfigError> {
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
fn read_base_url(doc: &Doc<'_>, node: &Spanned<Node>, field: &str) -> Result<Url, ConfigError> {
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
fn read_env_name(doc: &Doc<'_>, node: &Spanned<Node>, field: &str) -> Result<String, ConfigError> {
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
fn read_seconds(doc: &Doc<'_>, node: &Spanned<Node>, field: &str) -> Result<Duration, ConfigError> {
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

// ---------------------------------------------------------------------------------------------
// Securities

/// Where one of an entry's unique symbols came from, for duplicate messages.
struct SymbolOrigin {
    /// `...yahoo_symbol` / `...db_symbol`, or `...symbol` when defaulted.
    field: String,
    line: usize,
    defaulted: bool,
}

/// Where an entry's unique symbols came from.
struct Origin {
    /// e.g. `securities.etfs[3]`
    entry: String,
    yahoo: SymbolOrigin,
    db: SymbolOrigin,
}

impl Origin {
    fn of(&self, key: SymbolField) -> &SymbolOrigin {
        match key {
            SymbolField::Yahoo => &self.yahoo,
            SymbolField::Db => &self.db,
        }
    }
}

fn read_securities(doc: &Doc<'_>, top: &Fields<'_>) -> Result<Vec<Security>, ConfigError> {
    let Some((key_line, node)) = top.get_with_line("securities") else {
        return Err(ConfigError::MissingKey {
            path: doc.path.to_path_buf(),
            line: top.line,
            field: "securities".into(),
        });
    };
    let no_securities = || ConfigError::NoSecurities {
        path: doc.path.to_path_buf(),
        line: key_line,
    };
    let pairs = match &node.value {
        Node::Null => return Err(no_securities()),
        Node::Map(pairs) => pairs,
        _ => {
            return Err(doc.wrong_type(
                node,
                "securities",
                "a mapping of category name to a list of securities",
            ));
        }
    };
    let mut securities = Vec::new();
    let mut origins = Vec::new();
    let mut seen_categories: HashMap<String, usize> = HashMap::new();
    for (key, value) in pairs {
        let name = doc.key_text(key, "securities")?;
        let field = join("securities", &name);
        if let Some(&first_line) = seen_categories.get(&name) {
            return Err(ConfigError::DuplicateKey {
                path: doc.path.to_path_buf(),
                line: line_of(key),
                field,
                first_line,
            });
        }
        seen_categories.insert(name.clone(), line_of(key));
        let category = Category::parse(&name).map_err(|error| ConfigError::InvalidValue {
            path: doc.path.to_path_buf(),
            line: line_of(key),
            field: field.clone(),
            error: Box::new(error),
            note: "; category keys are lowercase, like etfs or us_stocks",
        })?;
        let entries = match &value.value {
            Node::Seq(entries) if !entries.is_empty() => entries,
            Node::Seq(_) | Node::Null => {
                return Err(doc.invalid(
                    key,
                    &field,
                    "the category has no securities; add entries (`- symbol: ...`) or remove the key"
                        .into(),
                ));
            }
            _ => {
                return Err(doc.wrong_type(
                    value,
                    &field,
                    "a list of securities (entries starting with `- symbol:`)",
                ));
            }
        };
        for (index, entry) in entries.iter().enumerate() {
            let entry_field = format!("{field}[{index}]");
            let (security, origin) = read_security(doc, &category, entry, entry_field)?;
            securities.push(security);
            origins.push(origin);
        }
    }
    if securities.is_empty() {
        return Err(no_securities());
    }
    check_unique(doc, &securities, &origins)?;
    Ok(securities)
}

fn read_security(
    doc: &Doc<'_>,
    category: &Category,
    node: &Spanned<Node>,
    field: String,
) -> Result<(Security, Origin), ConfigError> {
    let fields = doc.fields(
        node,
        &field,
        &field,
        "a security: a mapping with at least symbol and name",
        SECURITY_KEYS,
    )?;

    let symbol_node = fields.required(doc, "symbol")?;
    let symbol_field = fields.field("symbol");
    let symbol = doc.text(symbol_node, &symbol_field, "a symbol")?;
    if symbol.trim().is_empty() || symbol.trim() != symbol {
        let error = if symbol.trim().is_empty() {
            DomainError::Empty { kind: "symbol" }
        } else {
            DomainError::Whitespace {
                kind: "symbol",
                value: symbol.clone(),
            }
        };
        return Err(ConfigError::InvalidValue {
            path: doc.path.to_path_buf(),
            line: line_of(symbol_node),
            field: symbol_field,
            error: Box::new(error),
            note: "",
        });
    }
    let symbol_line = line_of(symbol_node);

    let name_node = fields.required(doc, "name")?;
    let name_field = fields.field("name");
    let name = doc.text(name_node, &name_field, "a name")?;
    if name.trim().is_empty() {
        return Err(doc.invalid(
            name_node,
            &name_field,
            "name is empty; give the security a human-readable name".into(),
        ));
    }

    let symbol_at = (symbol.as_str(), symbol_line);
    let (yahoo_symbol, yahoo) = symbol_value(
        doc,
        &fields,
        SymbolField::Yahoo,
        symbol_at,
        YahooSymbol::parse,
    )?;
    let (db_symbol, db) = symbol_value(doc, &fields, SymbolField::Db, symbol_at, DbSymbol::parse)?;

    let enabled = match fields.get("enabled") {
        None => true,
        Some(n) => doc.boolean(n, &fields.field("enabled"))?,
    };

    let security = Security {
        category: category.clone(),
        symbol,
        name,
        yahoo_symbol,
        db_symbol,
        enabled,
        line: fields.line,
    };
    let origin = Origin {
        entry: field,
        yahoo,
        db,
    };
    Ok((security, origin))
}

/// Reads `key` with `parse`, defaulting to `symbol` (text, line) when the key is absent.
fn symbol_value<T>(
    doc: &Doc<'_>,
    fields: &Fields<'_>,
    key: SymbolField,
    (symbol, symbol_line): (&str, usize),
    parse: fn(&str) -> Result<T, DomainError>,
) -> Result<(T, SymbolOrigin), ConfigError> {
    let invalid = |field: &str, line: usize, error: DomainError, note: &'static str| {
        ConfigError::InvalidValue {
            path: doc.path.to_path_buf(),
            line,
            field: field.to_owned(),
            error: Box::new(error),
            note,
        }
    };
    Ok(match fields.get(key.key()) {
        Some(node) => {
            let field = fields.field(key.key());
            let text = doc.text(node, &field, "a symbol")?;
            let value = parse(&text).map_err(|e| invalid(&field, line_of(node), e, ""))?;
            let origin = SymbolOrigin {
                field,
                line: line_of(node),
                defaulted: false,
            };
            (value, origin)
        }
        None => {
            let field = fields.field("symbol");
            let note = match key {
                SymbolField::Yahoo => {
                    "; yahoo_symbol defaults to symbol, so set yahoo_symbol explicitly"
                }
                SymbolField::Db => "; db_symbol defaults to symbol, so set db_symbol explicitly",
            };
            let value = parse(symbol).map_err(|e| invalid(&field, symbol_line, e, note))?;
            let origin = SymbolOrigin {
                field,
                line: symbol_line,
                defaulted: true,
            };
            (value, origin)
        }
    })
}

fn check_unique(
    doc: &Doc<'_>,
    securities: &[Security],
    origins: &[Origin],
) -> Result<(), ConfigError> {
    let mut seen: HashMap<(SymbolField, &str), usize> = HashMap::new();
    for (i, s) in securities.iter().enumerate() {
        for (key, value) in [
            (SymbolField::Yahoo, s.yahoo_symbol.as_str()),
            (SymbolField::Db, s.db_symbol.as_str()),
        ] {
            if let Some(&first) = seen.get(&(key, value)) {
                let here = origins[i].of(key);
                return Err(ConfigError::Duplicate {
                    path: doc.path.to_path_buf(),
                    line: here.line,
                    field: here.field.clone(),
                    key,
                    value: value.to_owned(),
                    first_entry: origins[first].entry.clone(),
                    first_line: origins[first].of(key).line,
                    defaulted: here.defaulted,
                });
            }
            seen.insert((key, value), i);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The generic YAML tree and reading helpers

/// A YAML node; every child carries its location.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;

        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Node, E> {
                i128::try_from(v)
                    .map(Node::Int)
                    .map_err(|_| E::custom("integer is too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
                Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(Node::Map(pairs))
            }
        }

        deserializer.deserialize_any(NodeVisitor)
    }
}

/// Parses the whole text into a located tree. Only YAML-level problems fail here.
fn parse_tree(text: &str) -> Result<Spanned<Node>, serde_saphyr::Error> {
    let mut budget = Budget::default();
    // A config file is a few levels deep; small limits keep hostile input from exhausting the
    // stack of the recursive tree builder.
    budget.max_depth = 24;
    budget.flow_nesting_limit = 24;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    // `yes`/`no`/`on`/`off` stay strings; only true/false are booleans.
    options.strict_booleans = true;
    // Repeated keys reach the tree, so their error can name the field and both lines.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    // `.nan` / `.inf` reach the tree as floats (a symbol field then uses the source text).
    options.non_finite_float_policy = NonFiniteFloatPolicy::PassThrough;
    serde_saphyr::from_str_with_options(text, options)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// 1-based line where the node is used.
fn line_of(node: &Spanned<Node>) -> usize {
    to_usize(node.referenced.line())
}

/// `parent.key` (or `parent["odd key"]` when the key is not a plain word).
fn join(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (true, false) => format!("[{key:?}]"),
        (false, true) => format!("{parent}.{key}"),
        (false, false) => format!("{parent}[{key:?}]"),
    }
}

/// Replaces control characters so a message stays on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Shortens a value shown in a message.
fn preview(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut short: String = s.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

/// The document being read: its path (for messages) and text (for scalar source text).
struct Doc<'a> {
    path: &'a Path,
    text: &'a str,
}

/// The entries of one mapping, with unknown and repeated keys already rejected.
struct Fields<'n> {
    /// Field path of the mapping itself (`""` for the top level).
    field: String,
    /// Line of the mapping.
    line: usize,
    /// `(key, key line, value)` in file order.
    entries: Vec<(String, usize, &'n Spanned<Node>)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Spanned<Node>> {
        self.get_with_line(key).map(|(_, node)| node)
    }

    fn get_with_line(&self, key: &str) -> Option<(usize, &'n Spanned<Node>)> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|&(_, line, node)| (line, node))
    }

    fn field(&self, key: &str) -> String {
        join(&self.field, key)
    }

    fn required(&self, doc: &Doc<'_>, key: &str) -> Result<&'n Spanned<Node>, ConfigError> {
        self.get(key).ok_or_else(|| ConfigError::MissingKey {
            path: doc.path.to_path_buf(),
            line: self.line,
            field: self.field(key),
        })
    }
}

impl Doc<'_> {
    fn syntax_error(&self, err: &serde_saphyr::Error) -> ConfigError {
        let mut inner = err.without_snippet();
        while let serde_saphyr::Error::AliasError { error, .. } = inner {
            inner = error.without_snippet();
        }
        let message = one_line(&UserMessageFormatter.format_message(inner));
        let (line, column) = err
            .location()
            .filter(|l| *l != Location::UNKNOWN)
            .map_or((0, 0), |l| (to_usize(l.line()), to_usize(l.column())));
        ConfigError::Syntax {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    /// The text the scalar was written with (for scalars that did not resolve to a string).
    fn source(&self, node: &Spanned<Node>) -> Option<&str> {
        let span = node.defined.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        self.text.get(start..start.checked_add(len)?)
    }

    /// A scalar as text; `None` for lists and mappings. `null`/empty is `""`.
    fn scalar_text(&self, node: &Spanned<Node>) -> Option<String> {
        let fallback = match &node.value {
            Node::Str(s) => return Some(s.clone()),
            Node::Null => return Some(String::new()),
            Node::Bool(b) => b.to_string(),
            Node::Int(i) => i.to_string(),
            Node::Float(f) => f.to_string(),
            Node::Seq(_) | Node::Map(_) => return None,
        };
        Some(self.source(node).map_or(fallback, str::to_owned))
    }

    /// How a value is described after "found".
    fn describe(&self, node: &Spanned<Node>) -> String {
        match &node.value {
            Node::Null => "nothing (an empty value)".into(),
            Node::Str(s) => format!("{:?}", preview(s)),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a mapping".into(),
            Node::Bool(_) | Node::Int(_) | Node::Float(_) => {
                one_line(&preview(&self.scalar_text(node).unwrap_or_default()))
            }
        }
    }

    fn wrong_type(&self, node: &Spanned<Node>, field: &str, expected: &str) -> ConfigError {
        ConfigError::WrongType {
            path: self.path.to_path_buf(),
            line: line_of(node),
            field: field.to_owned(),
            expected: expected.to_owned(),
            found: self.describe(node),
        }
    }

    fn invalid(&self, node: &Spanned<Node>, field: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: line_of(node),
            field: field.to_owned(),
            message,
        }
    }

    /// A key as text; keys must be scalars.
    fn key_text(&self, key: &Spanned<Node>, parent: &str) -> Result<String, ConfigError> {
        self.scalar_text(key).ok_or_else(|| {
            let field = if parent.is_empty() {
                "top level"
            } else {
                parent
            };
            self.wrong_type(key, field, "a plain key name")
        })
    }

    /// Checks that `node` is a mapping whose keys are all in `allowed` and appear once.
    fn fields<'n>(
        &self,
        node: &'n Spanned<Node>,
        field: &str,
        label: &str,
        expected: &str,
        allowed: &'static [&'static str],
    ) -> Result<Fields<'n>, ConfigError> {
        let Node::Map(pairs) = &node.value else {
            return Err(self.wrong_type(node, label, expected));
        };
        let mut entries: Vec<(String, usize, &'n Spanned<Node>)> = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let name = self.key_text(key, field)?;
            if !allowed.contains(&name.as_str()) {
                return Err(ConfigError::UnknownKey {
                    path: self.path.to_path_buf(),
                    line: line_of(key),
                    field: join(field, &name),
                    allowed,
                });
            }
            if let Some((_, first_line, _)) = entries.iter().find(|(k, _, _)| *k == name) {
                return Err(ConfigError::DuplicateKey {
                    path: self.path.to_path_buf(),
                    line: line_of(key),
                    field: join(field, &name),
                    first_line: *first_line,
                });
            }
            entries.push((name, line_of(key), value));
        }
        Ok(Fields {
            field: field.to_owned(),
            line: line_of(node),
            entries,
        })
    }

    /// A text field (any scalar; numbers keep their written form).
    fn text(&self, node: &Spanned<Node>, field: &str, what: &str) -> Result<String, ConfigError> {
        self.scalar_text(node)
            .ok_or_else(|| self.wrong_type(node, field, &format!("{what} (text)")))
    }

    fn boolean(&self, node: &Spanned<Node>, field: &str) -> Result<bool, ConfigError> {
        match node.value {
            Node::Bool(b) => Ok(b),
            _ => Err(self.wrong_type(node, field, "true or false")),
        }
    }

    /// A whole number in `min..=max` (a quoted number is accepted too).
    fn int_in(
        &self,
        node: &Spanned<Node>,
        field: &str,
        min: u32,
        max: u32,
    ) -> Result<u32, ConfigError> {
        let value = match &node.value {
            Node::Int(i) => Some(*i),
            Node::Str(s) => s.trim().parse::<i128>().ok(),
            _ => None,
        };
        let Some(value) = value else {
            return Err(self.wrong_type(node, field, &format!("a whole number in {min}..={max}")));
        };
        u32::try_from(value)
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| ConfigError::OutOfRange {
                path: self.path.to_path_buf(),
                line: line_of(node),
                field: field.to_owned(),
                value: one_line(&preview(
                    &self.scalar_text(node).unwrap_or_else(|| value.to_string()),
                )),
                min,
                max,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "config/securities.yaml";

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(yaml, Path::new(P))
    }

    fn err(yaml: &str) -> String {
        let e = parse(yaml).unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "message spans lines: {msg}");
        assert!(
            msg.starts_with(P),
            "message does not start with the path: {msg}"
        );
        msg
    }

    const MINIMAL: &str = "securities:\n  stocks:\n    - symbol: AAPL\n      name: Apple Inc.\n";

    // ---- the shipped file ------------------------------------------------------------------

    fn shipped() -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        Config::load(&path).unwrap()
    }

    #[test]
    fn shipped_config_parses_with_expected_securities() {
        let cfg = shipped();
        let cats: Vec<&str> = cfg.categories().iter().map(|c| c.as_str()).collect();
        assert_eq!(
            cats,
            [
                "indices",
                "etfs",
                "stocks",
                "crypto",
                "bonds",
                "commodities",
                "currencies",
                "volatility"
            ]
        );
        let expected: &[(&str, &str, &str, &str, bool)] = &[
            ("indices", "^GSPC", "^GSPC", "SPX", true),
            ("indices", "^IXIC", "^IXIC", "IXIC", true),
            ("indices", "^DJI", "^DJI", "DJI", true),
            ("indices", "^RUT", "^RUT", "RUT", true),
            ("etfs", "SPY", "SPY", "SPY", true),
            ("etfs", "QQQ", "QQQ", "QQQ", true),
            ("etfs", "IWM", "IWM", "IWM", true),
            ("etfs", "ARKK", "ARKK", "ARKK", true),
            ("etfs", "ARKQ", "ARKQ", "ARKQ", true),
            ("etfs", "ARKG", "ARKG", "ARKG", true),
            ("stocks", "AAPL", "AAPL", "AAPL", true),
            ("stocks", "MSFT", "MSFT", "MSFT", true),
            ("stocks", "NVDA", "NVDA", "NVDA", true),
            ("stocks", "AMZN", "AMZN", "AMZN", true),
            ("stocks", "GOOGL", "GOOGL", "GOOGL", true),
            ("crypto", "BTC-USD", "BTC-USD", "BTCUSD", true),
            ("crypto", "ETH-USD", "ETH-USD", "ETHUSD", true),
            ("bonds", "TLT", "TLT", "TLT", true),
            ("bonds", "LQD", "LQD", "LQD", true),
            ("bonds", "HYG", "HYG", "HYG", true),
            ("bonds", "^TNX", "^TNX", "TNX", true),
            ("commodities", "GLD", "GLD", "GLD", true),
            ("commodities", "SLV", "SLV", "SLV", true),
            ("commodities", "USO", "USO", "USO", true),
            ("commodities", "GC=F", "GC=F", "GC", false),
            ("currencies", "EURUSD=X", "EURUSD=X", "EURUSD", true),
            ("currencies", "GBPUSD=X", "GBPUSD=X", "GBPUSD", true),
            ("currencies", "JPY=X", "JPY=X", "USDJPY", true),
            ("currencies", "DX-Y.NYB", "DX-Y.NYB", "DXY", true),
            ("volatility", "^VIX", "^VIX", "VIX", true),
        ];
        let actual: Vec<(&str, &str, &str, &str, bool)> = cfg
            .securities
            .iter()
            .map(|s| {
                (
                    s.category.as_str(),
                    s.symbol.as_str(),
                    s.yahoo_symbol.as_str(),
                    s.db_symbol.as_str(),
                    s.enabled,
                )
            })
            .collect();
        assert_eq!(actual, expected);

        let names: HashMap<&str, &str> = cfg
            .securities
            .iter()
            .map(|s| (s.symbol.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(names["^GSPC"], "S&P 500 Index");
        assert_eq!(names["^TNX"], "CBOE 10-Year Treasury Yield");
        assert_eq!(names["DX-Y.NYB"], "US Dollar Index");
        assert_eq!(names["JPY=X"], "USD/JPY");

        assert_eq!(cfg.encoding, EncodingSettings::default());
        assert_eq!(cfg.embedding, EmbeddingSettings::Local);
        assert_eq!(cfg.encoding.days_back, 60);
        assert_eq!(cfg.encoding.embedding_days, 30);
        assert_eq!(cfg.encoding.batch_size.get(), 5);
        assert_eq!(cfg.encoding.max_retries, 3);
        assert_eq!(cfg.encoding.request_timeout, Duration::from_secs(30));
        assert_eq!(cfg.encoding.requests_per_second.get(), 4);
        assert_eq!(cfg.encoding.retry_base, Duration::from_millis(500));
        assert_eq!(cfg.encoding.retry_max, Duration::from_secs(30));
    }

    #[test]
    fn shipped_config_lines_point_at_the_entries() {
        let cfg = shipped();
        let text = std::fs::read_to_string(&cfg.path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for s in &cfg.securities {
            let line = lines[s.line - 1];
            assert!(
                line.contains(&format!("symbol: \"{}\"", s.symbol)),
                "line {} is {line:?}, expected the entry of {}",
                s.line,
                s.symbol
            );
        }
    }

    #[test]
    fn shipped_config_selects_all_but_the_disabled_future() {
        let cfg = shipped();
        let all = cfg.select(&[], &[]).unwrap();
        assert_eq!(all.len(), cfg.securities.len() - 1);
        assert!(all.iter().all(|s| s.symbol != "GC=F"));
    }

    #[test]
    fn shipped_config_writes_out_the_feature_defaults() {
        let cfg = shipped();
        let defaults = FeatureSettings::default();
        let f = &cfg.features;
        assert!(f.enabled);
        assert_eq!(f.roles, defaults.roles);
        assert_eq!(f.correlations, defaults.correlations);
        assert_eq!(
            (f.correlation_days, f.momentum_days, f.spread_days),
            (30, 20, 20)
        );
        // Every default role names a configured, enabled security of the shipped file.
        for role in Role::ALL {
            let symbol = f.symbol(role).unwrap();
            assert!(
                cfg.securities
                    .iter()
                    .any(|s| s.enabled && &s.db_symbol == symbol),
                "{role:?} -> {symbol}"
            );
        }
    }

    // ---- the features section ----------------------------------------------------------------

    /// Securities with these db_symbols (one category), then `features`.
    fn with_features(symbols: &[&str], features: &str) -> String {
        let mut yaml = String::from("securities:\n  etfs:\n");
        for s in symbols {
            yaml.push_str(&format!("    - {{symbol: {s}, name: {s}}}\n"));
        }
        yaml.push_str("features:\n");
        yaml.push_str(features);
        yaml
    }

    #[test]
    fn feature_defaults_cover_every_role_and_need_no_securities() {
        let d = FeatureSettings::default();
        assert_eq!(d.roles.len(), Role::ALL.len());
        for role in Role::ALL {
            assert_eq!(d.symbol(role).unwrap().as_str(), role.default_symbol());
        }
        assert_eq!(d.correlations.len(), DEFAULT_CORRELATIONS.len());
        // Absent or empty, the defaults apply, though AAPL plays no role.
        assert_eq!(parse(MINIMAL).unwrap().features, d);
        assert_eq!(parse(&format!("{MINIMAL}features:\n")).unwrap().features, d);
    }

    #[test]
    fn feature_roles_override_one_by_one_and_correlations_replace_the_list() {
        let cfg = parse(&with_features(
            &["SPY", "QQQ", "IBIT"],
            "  enabled: false\n  roles:\n    btc: IBIT\n    qqq: QQQ\n  correlation_days: 60\n  momentum_days: 5\n  spread_days: 1\n  correlations:\n    sp500: SPY\n    tech_2: QQQ\n",
        ))
        .unwrap();
        let f = cfg.features;
        assert!(!f.enabled);
        assert_eq!(f.symbol(Role::Btc).unwrap().as_str(), "IBIT");
        assert_eq!(f.symbol(Role::Qqq).unwrap().as_str(), "QQQ");
        assert_eq!(f.symbol(Role::Vix).unwrap().as_str(), "VIX"); // default kept
        assert_eq!(
            (f.correlation_days, f.momentum_days, f.spread_days),
            (60, 5, 1)
        );
        let names: Vec<(&str, &str)> = f
            .correlations
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        assert_eq!(names, [("sp500", "SPY"), ("tech_2", "QQQ")]);
        let none = parse(&with_features(&["SPY"], "  correlations: {}\n")).unwrap();
        assert!(none.features.correlations.is_empty());
    }

    #[test]
    fn a_feature_symbol_must_be_a_configured_db_symbol() {
        assert_eq!(
            err(&with_features(
                &["SPY", "QQQ"],
                "  roles:\n    qqq: QQQ\n    vix: VIXX\n"
            )),
            "config/securities.yaml:8: features.roles.vix: \"VIXX\" is not the db_symbol of any security in this file; features name securities by db_symbol"
        );
        // A Yahoo symbol or a case slip gets a hint with the line of the security.
        let yaml = "securities:\n  volatility:\n    - symbol: \"^VIX\"\n      name: VIX\n      db_symbol: VIX\nfeatures:\n  roles:\n    vix: \"^VIX\"\n";
        assert_eq!(
            err(yaml),
            "config/securities.yaml:8: features.roles.vix: \"^VIX\" is not the db_symbol of any security in this file; did you mean \"VIX\", the db_symbol of the security on line 3?; features name securities by db_symbol"
        );
        assert_eq!(
            err(&with_features(
                &["SPY"],
                "  correlations:\n    nasdaq: qqq\n"
            )),
            "config/securities.yaml:6: features.correlations.nasdaq: \"qqq\" is not the db_symbol of any security in this file; features name securities by db_symbol"
        );
        // A disabled security may play a role (its stored closes still count).
        assert!(parse("securities:\n  etfs:\n    - {symbol: QQQ, name: Q, enabled: false}\n    - {symbol: SPY, name: S}\nfeatures:\n  roles:\n    qqq: QQQ\n").is_ok());
    }

    #[test]
    fn feature_section_errors_name_line_and_field() {
        assert_eq!(
            err(&with_features(&["SPY"], "  roles:\n    nasdaq: SPY\n")),
            "config/securities.yaml:6: features.roles.nasdaq: unknown key; allowed keys here: qqq, hyg, vix, tlt, arkk, spy, iwm, lqd, gld, dxy, btc"
        );
        assert_eq!(
            err(&with_features(&["SPY"], "  windows: 3\n")),
            "config/securities.yaml:5: features.windows: unknown key; allowed keys here: enabled, roles, correlation_days, momentum_days, spread_days, correlations"
        );
        assert_eq!(
            err(&with_features(&["SPY"], "  correlation_days: 2\n")),
            "config/securities.yaml:5: features.correlation_days: 2 is out of range; allowed: 5..=252"
        );
        assert_eq!(
            err(&with_features(&["SPY"], "  enabled: yes\n")),
            "config/securities.yaml:5: features.enabled: expected true or false, found \"yes\""
        );
        assert_eq!(
            err(&with_features(&["SPY"], "  correlations:\n    S&P: SPY\n")),
            "config/securities.yaml:6: features.correlations[\"S&P\"]: \"S&P\" is not a correlation name: use 1..=32 characters of a-z 0-9 _ starting with a letter (the feature is ml_{name}_correlation)"
        );
        assert_eq!(
            err(&with_features(
                &["SPY"],
                "  correlations:\n    a: SPY\n    a: SPY\n"
            )),
            "config/securities.yaml:7: features.correlations.a: key appears twice (first on line 6); keep one"
        );
        assert_eq!(
            err(&with_features(&["SPY"], "  correlations: [SPY]\n")),
            "config/securities.yaml:5: features.correlations: expected a mapping of name to db_symbol, e.g. `nasdaq: QQQ`, found a list"
        );
        assert_eq!(
            err(&with_features(&["SPY"], "  roles:\n    spy: \"S P Y\"\n")),
            "config/securities.yaml:6: features.roles.spy: symbol \"S P Y\" has a character outside A-Z a-z 0-9 ^ = . - _ (found ' ' at position 2)"
        );
    }

    // ---- successful parsing ----------------------------------------------------------------

    #[test]
    fn defaults_apply_and_encoding_may_be_omitted() {
        let cfg = parse(MINIMAL).unwrap();
        assert_eq!(cfg.path, Path::new(P));
        assert_eq!(cfg.encoding, EncodingSettings::default());
        let s = &cfg.securities[0];
        assert_eq!(s.category.as_str(), "stocks");
        assert_eq!(s.symbol, "AAPL");
        assert_eq!(s.name, "Apple Inc.");
        assert_eq!(s.yahoo_symbol.as_str(), "AAPL");
        assert_eq!(s.db_symbol.as_str(), "AAPL");
        assert!(s.enabled);
        assert_eq!(s.line, 3);

        let empty_section = parse(&format!("{MINIMAL}encoding:\n")).unwrap();
        assert_eq!(empty_section.encoding, EncodingSettings::default());
    }

    #[test]
    fn encoding_values_are_read() {
        let cfg = parse(&format!(
            "{MINIMAL}encoding:\n  days_back: 365\n  embedding_days: 10\n  batch_size: 64\n  max_retries: 0\n  \
             request_timeout_secs: 600\n  requests_per_second: 1000\n  retry_base_ms: \"100\"\n  retry_max_ms: 100\n"
        ))
        .unwrap();
        let e = cfg.encoding;
        assert_eq!(
            (
                e.days_back,
                e.embedding_days,
                e.batch_size.get(),
                e.max_retries
            ),
            (365, 10, 64, 0)
        );
        assert_eq!(e.request_timeout, Duration::from_secs(600));
        assert_eq!(e.requests_per_second.get(), 1000);
        assert_eq!(
            (e.retry_base, e.retry_max),
            (Duration::from_millis(100), Duration::from_millis(100))
        );
    }

    #[test]
    fn categories_keep_file_order_and_any_name() {
        let cfg = parse(
            "securities:\n  zeta: [{symbol: Z, name: z}]\n  alpha_2: [{symbol: A, name: a}]\n  zeta_b: [{symbol: B, name: b}]\n",
        )
        .unwrap();
        let cats: Vec<&str> = cfg.categories().iter().map(|c| c.as_str()).collect();
        assert_eq!(cats, ["zeta", "alpha_2", "zeta_b"]);
    }

    #[test]
    fn unquoted_numbers_keep_their_written_form_in_text_fields() {
        let cfg = parse(
            "securities:\n  hk:\n    - symbol: 0700\n      name: 1.50\n      db_symbol: 1e3\n",
        )
        .unwrap();
        let s = &cfg.securities[0];
        assert_eq!(
            (s.symbol.as_str(), s.name.as_str(), s.db_symbol.as_str()),
            ("0700", "1.50", "1e3")
        );
    }

    #[test]
    fn crlf_and_bom_files_parse_with_correct_lines() {
        let text = "\u{feff}# c\r\nsecurities:\r\n  etfs:\r\n    - symbol: SPY\r\n      name: SPDR\r\n\r\n    - symbol: QQQ\r\n      name: Invesco\r\n";
        let cfg = parse(text).unwrap();
        let got: Vec<(&str, &str, usize)> = cfg
            .securities
            .iter()
            .map(|s| (s.symbol.as_str(), s.name.as_str(), s.line))
            .collect();
        assert_eq!(got, [("SPY", "SPDR", 4), ("QQQ", "Invesco", 7)]);
        assert_eq!(
            err("securities:\r\n  etfs:\r\n    - symbol: SPY\r\n      nam: x\r\n"),
            "config/securities.yaml:4: securities.etfs[0].nam: unknown key; allowed keys here: symbol, name, yahoo_symbol, db_symbol, enabled"
        );
    }

    #[test]
    fn aliases_are_resolved() {
        let cfg = parse(
            "securities:\n  a:\n    - {symbol: SPY, name: &n Broad market ETF}\n  b:\n    - symbol: QQQ\n      name: *n\n",
        )
        .unwrap();
        assert_eq!(cfg.securities[1].name, "Broad market ETF");
        assert_eq!(cfg.securities[1].line, 5);
        // a scalar alias in a symbol field keeps the anchored text, not the alias token
        let cfg = parse("securities:\n  a:\n    - {symbol: &s 1.50, name: x, db_symbol: A}\n    - {symbol: B, yahoo_symbol: *s, name: y}\n")
            .unwrap_err();
        assert!(
            cfg.to_string()
                .contains(r#""1.50" is already used by securities.a[0] (line 3)"#),
            "{cfg}"
        );
    }

    // ---- error messages --------------------------------------------------------------------

    #[test]
    fn missing_file_names_the_path_and_how_to_point_elsewhere() {
        let e = Config::load(Path::new("/nonexistent/dir/securities.yaml")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("/nonexistent/dir/securities.yaml: cannot read the config file: "),
            "{msg}"
        );
        assert!(
            msg.contains("--config PATH") && msg.contains("MARKET_ENCODER_CONFIG"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert!(e.line().is_none());
    }

    #[test]
    fn non_utf8_file_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        std::fs::write(&path, b"securities:\n  x: \xff\n").unwrap();
        let msg = Config::load(&path).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}:2: the file is not valid UTF-8; save it as UTF-8",
                path.display()
            )
        );
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        std::fs::write(&path, MINIMAL).unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.path, path);
        assert_eq!(cfg.securities.len(), 1);
    }

    #[test]
    fn yaml_syntax_error_has_line_and_column() {
        let msg = err("securities:\n  etfs: [\n    {symbol: SPY, name: x}\n");
        assert!(msg.starts_with("config/securities.yaml:"), "{msg}");
        assert!(msg.contains(": invalid YAML: "), "{msg}");
        let e = parse("securities:\n  etfs:\n    - symbol: SPY\n   name: x\n").unwrap_err();
        assert_eq!(e.line(), Some(4), "{e}");
        assert!(
            e.to_string().starts_with("config/securities.yaml:4:"),
            "{e}"
        );
        let msg = err("a: 'unterminated\n");
        assert!(msg.contains("invalid YAML"), "{msg}");
    }

    #[test]
    fn unknown_keys_name_line_field_and_allowed_keys() {
        assert_eq!(
            err(&format!("{MINIMAL}encodign:\n  days_back: 5\n")),
            "config/securities.yaml:5: encodign: unknown key; allowed keys here: securities, encoding, embedding, features"
        );
        assert_eq!(
            err(
                "securities:\n  etfs:\n    - symbol: SPY\n      name: x\n    - symbol: QQQ\n      name: y\n      dbsymbol: Q\n"
            ),
            "config/securities.yaml:7: securities.etfs[1].dbsymbol: unknown key; allowed keys here: symbol, name, yahoo_symbol, db_symbol, enabled"
        );
        assert_eq!(
            err(&format!(
                "{MINIMAL}encoding:\n  days_back: 5\n  batchsize: 3\n"
            )),
            "config/securities.yaml:7: encoding.batchsize: unknown key; allowed keys here: days_back, embedding_days, batch_size, max_retries, request_timeout_secs, requests_per_second, retry_base_ms, retry_max_ms"
        );
    }

    #[test]
    fn repeated_keys_name_both_lines() {
        assert_eq!(
            err("securities:\n  etfs:\n    - symbol: SPY\n      name: x\n      name: y\n"),
            "config/securities.yaml:5: securities.etfs[0].name: key appears twice (first on line 4); keep one"
        );
        assert_eq!(
            err(
                "securities:\n  etfs:\n    - {symbol: SPY, name: x}\n  etfs:\n    - {symbol: QQQ, name: y}\n"
            ),
            "config/securities.yaml:4: securities.etfs: key appears twice (first on line 2); keep one"
        );
    }

    #[test]
    fn missing_required_fields_name_the_entry_line() {
        assert_eq!(
            err(
                "securities:\n  etfs:\n    - symbol: SPY\n      name: x\n\n    - symbol: QQQ\n      enabled: true\n"
            ),
            "config/securities.yaml:6: securities.etfs[1].name: required key is missing"
        );
        assert_eq!(
            err("securities:\n  stocks:\n    - name: Apple\n"),
            "config/securities.yaml:3: securities.stocks[0].symbol: required key is missing"
        );
        assert_eq!(
            err("encoding:\n  days_back: 5\n"),
            "config/securities.yaml:1: securities: required key is missing"
        );
    }

    #[test]
    fn duplicate_db_symbol_names_both_places() {
        let yaml = "# shipped config\n\
                    securities:\n  \
                      indices:\n    \
                        - symbol: \"^GSPC\"\n      \
                          db_symbol: \"SPX\"\n      \
                          name: \"S&P 500\"\n  \
                      etfs:\n    \
                        - {symbol: SPY, name: a}\n    \
                        - {symbol: QQQ, name: b}\n    \
                        - {symbol: IWM, name: c}\n    \
                        - symbol: FOO\n      \
                          name: d\n      \
                          yahoo_symbol: FOO\n      \
                          db_symbol: SPX\n";
        assert_eq!(
            err(yaml),
            r#"config/securities.yaml:14: securities.etfs[3].db_symbol: "SPX" is already used by securities.indices[0] (line 5); db_symbol must be unique"#
        );
    }

    #[test]
    fn duplicate_db_symbol_from_default_points_at_symbol() {
        assert_eq!(
            err(
                "securities:\n  a:\n    - {symbol: X, name: x, yahoo_symbol: X1, db_symbol: SPY}\n  b:\n    - symbol: SPY\n      name: y\n"
            ),
            r#"config/securities.yaml:5: securities.b[0].symbol: "SPY" is already used by securities.a[0] (line 3); db_symbol must be unique (db_symbol defaults to symbol; set a different db_symbol)"#
        );
    }

    #[test]
    fn duplicate_yahoo_symbol_names_both_places() {
        assert_eq!(
            err(
                "securities:\n  etfs:\n    - symbol: SPY\n      name: a\n  more:\n    - symbol: SPY2\n      name: b\n      yahoo_symbol: SPY\n"
            ),
            r#"config/securities.yaml:8: securities.more[0].yahoo_symbol: "SPY" is already used by securities.etfs[0] (line 3); yahoo_symbol must be unique"#
        );
    }

    #[test]
    fn empty_and_invalid_symbols_name_the_field() {
        assert_eq!(
            err(
                "securities:\n  stocks:\n    - {symbol: AAPL, name: a}\n    - symbol: \"\"\n      name: b\n"
            ),
            "config/securities.yaml:4: securities.stocks[1].symbol: symbol is empty"
        );
        assert_eq!(
            err(
                "securities:\n  stocks:\n    - {symbol: AAPL, name: a}\n    - symbol: SPY\n      name: b\n      yahoo_symbol: S P Y\n"
            ),
            r#"config/securities.yaml:6: securities.stocks[1].yahoo_symbol: symbol "S P Y" has a character outside A-Z a-z 0-9 ^ = . - _ (found ' ' at position 2)"#
        );
        assert_eq!(
            err("securities:\n  stocks:\n    - symbol: S&P\n      name: b\n"),
            r#"config/securities.yaml:3: securities.stocks[0].symbol: symbol "S&P" has a character outside A-Z a-z 0-9 ^ = . - _ (found '&' at position 2); yahoo_symbol defaults to symbol, so set yahoo_symbol explicitly"#
        );
        assert_eq!(
            err(
                "securities:\n  stocks:\n    - symbol: S&P\n      yahoo_symbol: SP\n      name: b\n"
            ),
            r#"config/securities.yaml:3: securities.stocks[0].symbol: symbol "S&P" has a character outside A-Z a-z 0-9 ^ = . - _ (found '&' at position 2); db_symbol defaults to symbol, so set db_symbol explicitly"#
        );
        let long = "A".repeat(33);
        assert_eq!(
            err(&format!(
                "securities:\n  stocks:\n    - {{symbol: A, name: b, db_symbol: {long}}}\n"
            )),
            format!(
                r#"config/securities.yaml:3: securities.stocks[0].db_symbol: symbol "{long}" is 33 characters long; at most 32 are allowed"#
            )
        );
        assert_eq!(
            err("securities:\n  stocks:\n    - symbol: [A, B]\n      name: b\n"),
            "config/securities.yaml:3: securities.stocks[0].symbol: expected a symbol (text), found a list"
        );
        assert_eq!(
            err("securities:\n  stocks:\n    - symbol: A\n      name: \"  \"\n"),
            "config/securities.yaml:4: securities.stocks[0].name: name is empty; give the security a human-readable name"
        );
    }

    #[test]
    fn bad_numbers_say_the_allowed_range() {
        let enc = |body: &str| err(&format!("{MINIMAL}encoding:\n{body}"));
        assert_eq!(
            enc("  batch_size: five\n"),
            r#"config/securities.yaml:6: encoding.batch_size: expected a whole number in 1..=64, found "five""#
        );
        assert_eq!(
            enc("  max_retries: -1\n"),
            "config/securities.yaml:6: encoding.max_retries: -1 is out of range; allowed: 0..=10"
        );
        assert_eq!(
            enc("  days_back: 0\n"),
            "config/securities.yaml:6: encoding.days_back: 0 is out of range; allowed: 1..=36500"
        );
        assert_eq!(
            enc("  days_back: 60\n  batch_size: 65\n"),
            "config/securities.yaml:7: encoding.batch_size: 65 is out of range; allowed: 1..=64"
        );
        assert_eq!(
            enc("  requests_per_second: 2.5\n"),
            "config/securities.yaml:6: encoding.requests_per_second: expected a whole number in 1..=1000, found 2.5"
        );
        assert_eq!(
            enc("  request_timeout_secs: 99999999999999999999999\n"),
            "config/securities.yaml:6: encoding.request_timeout_secs: expected a whole number in 1..=600, found 99999999999999999999999"
        );
        assert_eq!(
            enc("  retry_max_ms:\n"),
            "config/securities.yaml:6: encoding.retry_max_ms: expected a whole number in 1..=600000, found nothing (an empty value)"
        );
        assert_eq!(
            enc("  retry_base_ms: 1000\n  retry_max_ms: 999\n"),
            "config/securities.yaml:7: encoding.retry_max_ms: 999 is smaller than retry_base_ms (1000); the cap on backoff must be at least the first delay"
        );
        assert_eq!(
            enc("  retry_base_ms: 40000\n"),
            "config/securities.yaml:6: encoding.retry_base_ms: 40000 is larger than retry_max_ms (30000, the default); lower it or set retry_max_ms to at least 40000"
        );
        assert_eq!(
            err(&format!("{MINIMAL}encoding: 5\n")),
            "config/securities.yaml:5: encoding: expected a mapping of settings, found 5"
        );
    }

    #[test]
    fn enabled_must_be_a_boolean() {
        assert_eq!(
            err("securities:\n  etfs:\n    - symbol: SPY\n      name: x\n      enabled: yes\n"),
            r#"config/securities.yaml:5: securities.etfs[0].enabled: expected true or false, found "yes""#
        );
    }

    #[test]
    fn empty_securities_is_an_error() {
        let expected = "config/securities.yaml:1: securities: no securities configured; add a category with at least one entry, e.g. `stocks: [{symbol: AAPL, name: Apple Inc.}]`";
        assert_eq!(err("securities:\n"), expected);
        assert_eq!(err("securities: {}\n"), expected);
        assert_eq!(
            err(""),
            "config/securities.yaml:1: top level: the file is empty; it must define securities (and may define encoding and embedding)"
        );
        assert_eq!(
            err("- a\n- b\n"),
            "config/securities.yaml:1: top level: expected a mapping with the keys securities, encoding and embedding, found a list"
        );
        assert_eq!(
            err("securities:\n  - symbol: SPY\n"),
            "config/securities.yaml:2: securities: expected a mapping of category name to a list of securities, found a list"
        );
    }

    #[test]
    fn category_must_be_a_non_empty_list() {
        assert_eq!(
            err("securities:\n  etfs:\n    symbol: SPY\n    name: x\n"),
            "config/securities.yaml:3: securities.etfs: expected a list of securities (entries starting with `- symbol:`), found a mapping"
        );
        assert_eq!(
            err("securities:\n  etfs: SPY\n"),
            r#"config/securities.yaml:2: securities.etfs: expected a list of securities (entries starting with `- symbol:`), found "SPY""#
        );
        assert_eq!(
            err("securities:\n  stocks: [{symbol: A, name: a}]\n  etfs: []\n"),
            "config/securities.yaml:3: securities.etfs: the category has no securities; add entries (`- symbol: ...`) or remove the key"
        );
        assert_eq!(
            err("securities:\n  stocks: [{symbol: A, name: a}]\n  etfs:\n"),
            "config/securities.yaml:3: securities.etfs: the category has no securities; add entries (`- symbol: ...`) or remove the key"
        );
        assert_eq!(
            err("securities:\n  etfs:\n    - SPY\n"),
            r#"config/securities.yaml:3: securities.etfs[0]: expected a security: a mapping with at least symbol and name, found "SPY""#
        );
    }

    #[test]
    fn invalid_category_key_is_named() {
        assert_eq!(
            err("securities:\n  US Stocks:\n    - {symbol: A, name: a}\n"),
            r#"config/securities.yaml:2: securities["US Stocks"]: category "US Stocks" has a character outside a-z 0-9 _ (found 'U' at position 1); category keys are lowercase, like etfs or us_stocks"#
        );
        assert_eq!(
            err("securities:\n  Stocks:\n    - {symbol: A, name: a}\n"),
            r#"config/securities.yaml:2: securities.Stocks: category "Stocks" has a character outside a-z 0-9 _ (found 'S' at position 1); category keys are lowercase, like etfs or us_stocks"#
        );
        assert_eq!(
            err("securities:\n  [a, b]: [{symbol: A, name: a}]\n"),
            "config/securities.yaml:2: securities: expected a plain key name, found a list"
        );
    }

    // ---- embedding -------------------------------------------------------------------------

    fn openai(cfg: &Config) -> &OpenAiEndpoint {
        match &cfg.embedding {
            EmbeddingSettings::OpenAi(endpoint) => endpoint,
            EmbeddingSettings::Local => panic!("expected provider openai, got local"),
        }
    }

    /// `MINIMAL` (4 lines) followed by an `embedding:` section (line 5) with this body.
    fn embedding(body: &str) -> Result<Config, ConfigError> {
        parse(&format!("{MINIMAL}embedding:\n{body}"))
    }

    fn embedding_err(body: &str) -> String {
        err(&format!("{MINIMAL}embedding:\n{body}"))
    }

    const OPENAI: &str =
        "  provider: openai\n  base_url: http://127.0.0.1:11434/v1\n  model: nomic-embed-text\n";

    #[test]
    fn embedding_defaults_to_the_local_model() {
        assert_eq!(parse(MINIMAL).unwrap().embedding, EmbeddingSettings::Local);
        assert_eq!(embedding("").unwrap().embedding, EmbeddingSettings::Local);
        assert_eq!(
            embedding("  provider: local\n").unwrap().embedding,
            EmbeddingSettings::Local
        );
    }

    #[test]
    fn openai_section_is_read() {
        let cfg = embedding(
            "  provider: openai\n  base_url: https://api.openai.com/v1/\n  model: text-embedding-3-small\n  \
             api_key_env: OPENAI_API_KEY\n  batch_size: 2048\n  dimensions: 512\n  timeout: 90s\n",
        )
        .unwrap();
        assert_eq!(
            openai(&cfg),
            &OpenAiEndpoint {
                base_url: Url::parse("https://api.openai.com/v1/").unwrap(),
                model: "text-embedding-3-small".into(),
                api_key_env: Some("OPENAI_API_KEY".into()),
                batch_size: NonZeroUsize::new(2048).unwrap(),
                dimensions: NonZeroU32::new(512),
                timeout: Duration::from_secs(90),
            }
        );
        // The encoding section may come before or after; `timeout` may omit the unit.
        let cfg = parse(&format!(
            "embedding:\n{OPENAI}  timeout: 5\n{MINIMAL}encoding:\n  days_back: 5\n"
        ))
        .unwrap();
        assert_eq!(openai(&cfg).timeout, Duration::from_secs(5));
        assert_eq!(cfg.encoding.days_back, 5);
    }

    #[test]
    fn openai_defaults_match_the_client() {
        let cfg = embedding(OPENAI).unwrap();
        let e = openai(&cfg);
        assert_eq!(e.base_url.as_str(), "http://127.0.0.1:11434/v1");
        assert_eq!(e.model, "nomic-embed-text");
        assert_eq!(e.api_key_env, None);
        assert_eq!(e.dimensions, None);
        assert_eq!(e.batch_size.get(), crate::embed::openai::DEFAULT_BATCH_SIZE);
        assert_eq!(e.timeout, crate::embed::openai::DEFAULT_TIMEOUT);
        assert_eq!(
            usize::try_from(EMBEDDING_BATCH_SIZE.max).unwrap(),
            crate::embed::openai::MAX_BATCH_SIZE
        );
    }

    #[test]
    fn shipped_config_example_of_the_openai_provider_parses() {
        // The commented example in the shipped file, uncommented, is a valid section.
        let text = shipped_text();
        let example: Vec<String> = text
            .lines()
            .skip_while(|l| *l != "# embedding:")
            .take_while(|l| l.starts_with("# ") && !l.starts_with("# A Chroma"))
            .map(|l| l.trim_start_matches("# ").to_owned())
            .collect();
        assert!(
            example.len() > 5,
            "no commented embedding example in the shipped config"
        );
        let cfg = parse(&format!("{MINIMAL}{}\n", example.join("\n"))).unwrap();
        let e = openai(&cfg);
        assert_eq!(e.model, "nomic-embed-text");
        assert_eq!(e.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(e.dimensions, NonZeroU32::new(768));
    }

    fn shipped_text() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH))
            .unwrap()
    }

    #[test]
    fn embedding_errors_name_line_and_field() {
        assert_eq!(
            embedding_err(&format!("{OPENAI}  modle: x\n")),
            "config/securities.yaml:9: embedding.modle: unknown key; allowed keys here: provider, base_url, model, api_key_env, batch_size, dimensions, timeout"
        );
        assert_eq!(
            embedding_err("  provider: openai\n  base_url: http://h/v1\n"),
            "config/securities.yaml:6: embedding.model: required key is missing"
        );
        assert_eq!(
            embedding_err("  provider: openai\n  model: m\n"),
            "config/securities.yaml:6: embedding.base_url: required key is missing"
        );
        assert_eq!(
            embedding_err("  provider: cohere\n"),
            r#"config/securities.yaml:6: embedding.provider: "cohere" is not a provider; use local (the in-process all-MiniLM-L6-v2) or openai (an OpenAI-compatible /v1/embeddings endpoint)"#
        );
        assert_eq!(
            embedding_err("  provider: local\n  model: nomic-embed-text\n"),
            "config/securities.yaml:7: embedding.model: only used with provider: openai; remove it or set provider: openai"
        );
        assert_eq!(
            embedding_err("  base_url: http://h/v1\n"),
            "config/securities.yaml:6: embedding.base_url: only used with provider: openai; remove it or set provider: openai"
        );
        assert_eq!(
            embedding_err(&format!("{OPENAI}  batch_size: 4096\n")),
            "config/securities.yaml:9: embedding.batch_size: 4096 is out of range; allowed: 1..=2048"
        );
        assert_eq!(
            embedding_err(&format!("{OPENAI}  dimensions: 768x\n")),
            r#"config/securities.yaml:9: embedding.dimensions: expected a whole number in 1..=65536, found "768x""#
        );
        assert_eq!(
            embedding_err(&format!("{OPENAI}  timeout: 1m\n")),
            r#"config/securities.yaml:9: embedding.timeout: expected a duration in whole seconds such as 60s (1s..=600s), found "1m""#
        );
        assert_eq!(
            embedding_err(&format!("{OPENAI}  timeout: 0s\n")),
            "config/securities.yaml:9: embedding.timeout: 0s is out of range; allowed: 1..=600"
        );
        assert_eq!(
            embedding_err(&format!("{OPENAI}  timeout: 601\n")),
            "config/securities.yaml:9: embedding.timeout: 601 is out of range; allowed: 1..=600"
        );
        assert_eq!(
            embedding_err(&format!("{OPENAI}  timeout: [1]\n")),
            "config/securities.yaml:9: embedding.timeout: expected a duration in whole seconds such as 60s (1s..=600s), found a list"
        );
        assert_eq!(
            embedding_err("  provider: openai\n  base_url: ftp://h/v1\n  model: m\n"),
            r#"config/securities.yaml:7: embedding.base_url: "ftp://h/v1" is not an http(s) URL"#
        );
        assert_eq!(
            embedding_err("  provider: openai\n  base_url: localhost:11434\n  model: m\n"),
            r#"config/securities.yaml:7: embedding.base_url: "localhost:11434" is not an http(s) URL"#
        );
        assert_eq!(
            embedding_err("  provider: openai\n  base_url: not a url\n  model: m\n"),
            r#"config/securities.yaml:7: embedding.base_url: "not a url" is not a URL (relative URL without a base); write the API's base URL, e.g. http://127.0.0.1:11434/v1 or https://api.openai.com/v1"#
        );
        assert_eq!(
            embedding_err("  provider: openai\n  base_url: http://h/v1?key=1\n  model: m\n"),
            r#"config/securities.yaml:7: embedding.base_url: "http://h/v1?key=1" must not have a query or fragment; requests go to {base_url}/embeddings"#
        );
        assert_eq!(
            embedding_err(&format!("{OPENAI}  model: x\n")),
            "config/securities.yaml:9: embedding.model: key appears twice (first on line 8); keep one"
        );
        assert_eq!(
            embedding_err("  provider: openai\n  base_url: http://h/v1\n  model: \" m\"\n"),
            "config/securities.yaml:8: embedding.model: the model name is empty or has spaces around it; write the name the endpoint knows, e.g. nomic-embed-text or text-embedding-3-small"
        );
        assert_eq!(
            err(&format!("{MINIMAL}embedding: openai\n")),
            r#"config/securities.yaml:5: embedding: expected a mapping of settings, found "openai""#
        );
    }

    #[test]
    fn secrets_in_the_embedding_section_are_not_echoed() {
        let msg = embedding_err(
            "  provider: openai\n  base_url: https://user:hunter2@api.example.com/v1\n  model: m\n",
        );
        assert_eq!(
            msg,
            "config/securities.yaml:7: embedding.base_url: credentials in the URL are not supported (the value is not shown); put the key in an environment variable and name it in api_key_env"
        );
        let msg = embedding_err(&format!("{OPENAI}  api_key_env: sk-proj-abc123\n"));
        assert_eq!(
            msg,
            "config/securities.yaml:9: embedding.api_key_env: must be the NAME of the environment variable that holds the key (letters, digits and _), e.g. OPENAI_API_KEY, never the key itself; the value is not shown"
        );
        for name in ["OPENAI_API_KEY", "_K", "key2"] {
            let cfg = embedding(&format!("{OPENAI}  api_key_env: {name}\n")).unwrap();
            assert_eq!(openai(&cfg).api_key_env.as_deref(), Some(name));
        }
        for bad in ["2KEY", "A-B", "\"\"", "A B"] {
            let msg = embedding_err(&format!("{OPENAI}  api_key_env: {bad}\n"));
            assert!(msg.contains("the value is not shown"), "{bad}: {msg}");
        }
    }

    // ---- select ----------------------------------------------------------------------------

    const SELECT: &str = "securities:\n  indices:\n    - {symbol: \"^GSPC\", name: S&P 500, db_symbol: SPX}\n  \
                          etfs:\n    - {symbol: SPY, name: SPDR}\n    - {symbol: QQQ, name: Invesco}\n  \
                          commodities:\n    - {symbol: GLD, name: Gold ETF}\n    - {symbol: GC=F, name: Gold Futures, db_symbol: GC, enabled: false}\n";

    fn syms(v: &[&Security]) -> Vec<String> {
        v.iter().map(|s| s.symbol.clone()).collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn select_filters_by_category_and_symbol() {
        let cfg = parse(SELECT).unwrap();
        assert_eq!(
            syms(&cfg.select(&[], &[]).unwrap()),
            ["^GSPC", "SPY", "QQQ", "GLD"]
        );
        assert_eq!(
            syms(&cfg.select(&strings(&["etfs"]), &[]).unwrap()),
            ["SPY", "QQQ"]
        );
        assert_eq!(
            syms(&cfg.select(&strings(&["etfs", "indices"]), &[]).unwrap()),
            ["^GSPC", "SPY", "QQQ"]
        );
        // symbol, yahoo_symbol or db_symbol; result in file order
        assert_eq!(
            syms(&cfg.select(&[], &strings(&["QQQ", "SPX"])).unwrap()),
            ["^GSPC", "QQQ"]
        );
        assert_eq!(
            syms(&cfg.select(&[], &strings(&["^GSPC", "SPX"])).unwrap()),
            ["^GSPC"]
        );
        assert_eq!(
            syms(
                &cfg.select(&strings(&["commodities"]), &strings(&["GLD"]))
                    .unwrap()
            ),
            ["GLD"]
        );
    }

    #[test]
    fn select_errors() {
        let cfg = parse(SELECT).unwrap();
        assert_eq!(
            cfg.select(&strings(&["bonds"]), &[])
                .unwrap_err()
                .to_string(),
            r#"config/securities.yaml: unknown category "bonds"; categories in this file: indices, etfs, commodities"#
        );
        assert_eq!(
            cfg.select(&[], &strings(&["XYZ"])).unwrap_err().to_string(),
            r#"config/securities.yaml: no security matches "XYZ" (compared with symbol, yahoo_symbol and db_symbol); run with --dry-run to list the configured securities"#
        );
        assert_eq!(
            cfg.select(&[], &strings(&["spy"])).unwrap_err().to_string(),
            r#"config/securities.yaml: no security matches "spy" (compared with symbol, yahoo_symbol and db_symbol); did you mean "SPY" (line 5)? symbols are case-sensitive; run with --dry-run to list the configured securities"#
        );
        assert_eq!(
            cfg.select(&strings(&["etfs"]), &strings(&["GLD"]))
                .unwrap_err()
                .to_string(),
            r#"config/securities.yaml: no security in categories etfs matches "GLD" (compared with symbol, yahoo_symbol and db_symbol); it is in category commodities, which was not selected (line 8); run with --dry-run to list the configured securities"#
        );
        let e = cfg.select(&[], &strings(&["GC"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"config/securities.yaml:9: securities.commodities[1]: "GC" is disabled (enabled: false); set enabled: true there to fetch it"#
        );
        assert_eq!(e.line(), Some(9));

        let all_disabled = parse(
            "securities:\n  a:\n    - {symbol: X, name: x, enabled: false}\n  b:\n    - {symbol: Y, name: y}\n",
        )
        .unwrap();
        assert_eq!(
            all_disabled
                .select(&strings(&["a"]), &[])
                .unwrap_err()
                .to_string(),
            "config/securities.yaml: no enabled securities selected (categories: a; symbols: all)"
        );
    }

    // ---- properties ------------------------------------------------------------------------

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        struct GenEntry {
            base: String,
            name: String,
            yahoo: Option<String>,
            db: Option<String>,
            enabled: Option<bool>,
            flow: bool,
            quote: bool,
            name_first: bool,
            blank_before: bool,
        }

        #[derive(Debug, Clone)]
        struct GenConfig {
            categories: Vec<(String, Vec<GenEntry>)>,
            encoding: Option<Vec<Option<u32>>>,
            encoding_first: bool,
        }

        const SETTINGS: [&IntSetting; 8] = [
            &DAYS_BACK,
            &EMBEDDING_DAYS,
            &BATCH_SIZE,
            &MAX_RETRIES,
            &REQUEST_TIMEOUT_SECS,
            &REQUESTS_PER_SECOND,
            &RETRY_BASE_MS,
            &RETRY_MAX_MS,
        ];

        fn entry() -> impl Strategy<Value = GenEntry> {
            (
                "[A-Za-z0-9^=.-]{1,20}",
                "[A-Za-z0-9][A-Za-z0-9 &.,()'$/+:#-]{0,30}",
                prop::option::of("[A-Za-z0-9^=.-]{1,20}"),
                prop::option::of("[A-Za-z0-9^=.-]{1,20}"),
                prop::option::of(any::<bool>()),
                any::<[bool; 4]>(),
            )
                .prop_map(
                    |(base, name, yahoo, db, enabled, [flow, quote, name_first, blank_before])| {
                        GenEntry {
                            base,
                            name,
                            yahoo,
                            db,
                            enabled,
                            flow,
                            quote,
                            name_first,
                            blank_before,
                        }
                    },
                )
        }

        fn encoding() -> impl Strategy<Value = Vec<Option<u32>>> {
            let values: Vec<BoxedStrategy<Option<u32>>> = SETTINGS
                .iter()
                .map(|s| prop::option::of(s.min..=s.max).boxed())
                .collect();
            values.prop_map(|mut v| {
                // keep retry_max >= retry_base whatever is set
                let base = v[6].unwrap_or(RETRY_BASE_MS.default);
                let max = v[7].unwrap_or(RETRY_MAX_MS.default);
                if max < base {
                    v[7] = Some(base);
                }
                v
            })
        }

        fn config() -> impl Strategy<Value = GenConfig> {
            (
                prop::collection::btree_map(
                    "[a-z][a-z0-9_]{0,12}",
                    prop::collection::vec(entry(), 1..5),
                    1..5,
                ),
                prop::option::of(encoding()),
                any::<bool>(),
            )
                .prop_map(|(cats, encoding, encoding_first)| GenConfig {
                    categories: cats.into_iter().collect(),
                    encoding,
                    encoding_first,
                })
        }

        fn scalar(s: &str, quote: bool) -> String {
            if quote {
                serde_json::to_string(s).unwrap()
            } else {
                s.to_owned()
            }
        }

        /// Renders the config; returns the text and the expected result.
        fn render(g: &GenConfig) -> (String, Vec<Security>, EncodingSettings) {
            let mut lines: Vec<String> = vec!["# generated".into()];
            let mut expected = Vec::new();
            let mut k = 0usize;
            let mut encoding = EncodingSettings::default();
            let mut render_encoding = |lines: &mut Vec<String>| {
                if let Some(values) = &g.encoding {
                    lines.push("encoding:".into());
                    for (setting, value) in SETTINGS.iter().zip(values) {
                        if let Some(v) = value {
                            lines.push(format!("  {}: {v}   # comment", setting.key));
                        }
                    }
                    let get = |i: usize| values[i].unwrap_or(SETTINGS[i].default);
                    encoding = EncodingSettings {
                        days_back: get(0),
                        embedding_days: get(1),
                        batch_size: nonzero_usize(get(2)),
                        max_retries: get(3),
                        request_timeout: Duration::from_secs(u64::from(get(4))),
                        requests_per_second: nonzero_u32(get(5)),
                        retry_base: Duration::from_millis(u64::from(get(6))),
                        retry_max: Duration::from_millis(u64::from(get(7))),
                    };
                }
            };
            if g.encoding_first {
                render_encoding(&mut lines);
            }
            lines.push("securities:".into());
            for (cat, entries) in &g.categories {
                lines.push(format!("  {cat}:"));
                for e in entries {
                    k += 1;
                    let symbol = format!("{}_{k}", e.base);
                    let yahoo = e.yahoo.as_ref().map(|y| format!("{y}_{k}_y"));
                    let db = e.db.as_ref().map(|d| format!("{d}_{k}_d"));
                    let mut fields = vec![
                        ("symbol", scalar(&symbol, e.quote)),
                        ("name", scalar(&e.name, true)),
                    ];
                    if e.name_first {
                        fields.swap(0, 1);
                    }
                    if let Some(y) = &yahoo {
                        fields.push(("yahoo_symbol", scalar(y, e.quote)));
                    }
                    if let Some(d) = &db {
                        fields.push(("db_symbol", scalar(d, e.quote)));
                    }
                    if let Some(en) = e.enabled {
                        fields.push(("enabled", en.to_string()));
                    }
                    if e.blank_before {
                        lines.push(String::new());
                        lines.push("    # a comment".into());
                    }
                    let line = lines.len() + 1;
                    if e.flow {
                        let body: Vec<String> =
                            fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                        lines.push(format!("    - {{{}}}", body.join(", ")));
                    } else {
                        for (i, (k, v)) in fields.iter().enumerate() {
                            let lead = if i == 0 { "    - " } else { "      " };
                            lines.push(format!("{lead}{k}: {v}"));
                        }
                    }
                    expected.push(Security {
                        category: Category::parse(cat).unwrap(),
                        symbol: symbol.clone(),
                        name: e.name.clone(),
                        yahoo_symbol: YahooSymbol::parse(yahoo.as_deref().unwrap_or(&symbol))
                            .unwrap(),
                        db_symbol: DbSymbol::parse(db.as_deref().unwrap_or(&symbol)).unwrap(),
                        enabled: e.enabled.unwrap_or(true),
                        line,
                    });
                }
            }
            if !g.encoding_first {
                render_encoding(&mut lines);
            }
            (lines.join("\n") + "\n", expected, encoding)
        }

        fn assert_one_line_error(e: &ConfigError) -> Result<(), TestCaseError> {
            let msg = e.to_string();
            prop_assert!(
                !msg.contains('\n') && !msg.contains('\r'),
                "multi-line: {msg:?}"
            );
            prop_assert!(msg.starts_with(P), "no path prefix: {msg}");
            if let Some(line) = e.line() {
                prop_assert!(
                    msg.starts_with(&format!("{P}:{line}:")),
                    "line not in prefix: {msg}"
                );
            }
            Ok(())
        }

        /// Fragments that tend to break YAML in interesting ways.
        const FRAGMENTS: &[&str] = &[
            ":",
            "-",
            " ",
            "  ",
            "\n",
            "'",
            "\"",
            "[",
            "]",
            "{",
            "}",
            ",",
            "&a ",
            "*a",
            "!!str ",
            "#",
            "0",
            "-1",
            "true",
            "~",
            "? ",
            "|",
            ">",
            "\t",
            "\u{feff}",
            "é",
            "---\n",
            "...\n",
            "<<: ",
            "enabled: ",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn generated_configs_round_trip(g in config()) {
                let (text, expected, encoding) = render(&g);
                let cfg = match parse(&text) {
                    Ok(cfg) => cfg,
                    Err(e) => return Err(TestCaseError::fail(format!("{e}\n---\n{text}"))),
                };
                prop_assert_eq!(&cfg.securities, &expected, "{}", text);
                prop_assert_eq!(&cfg.encoding, &encoding);
                let cats: Vec<&str> = g.categories.iter().map(|(c, _)| c.as_str()).collect();
                let got: Vec<&str> = cfg.categories().iter().map(|c| c.as_str()).collect();
                prop_assert_eq!(got, cats);
                let enabled = expected.iter().filter(|s| s.enabled).count();
                match cfg.select(&[], &[]) {
                    Ok(sel) => prop_assert_eq!(sel.len(), enabled),
                    Err(e) => {
                        prop_assert_eq!(enabled, 0);
                        assert_one_line_error(&e)?;
                    }
                }
            }

            #[test]
            fn arbitrary_text_never_panics(text in any::<String>()) {
                if let Err(e) = parse(&text) {
                    assert_one_line_error(&e)?;
                }
            }

            #[test]
            fn yaml_like_text_never_panics(text in "([a-z_]{1,8}: ?|- |  |\\[|\\]|\\{|\\}|, |\"|'|&a |\\*a |[0-9.-]{1,4}|true|\n|#){0,60}") {
                if let Err(e) = parse(&text) {
                    assert_one_line_error(&e)?;
                }
            }

            #[test]
            fn mutated_shipped_config_never_panics(
                edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..6, prop::sample::select(FRAGMENTS)), 1..4)
            ) {
                let mut text = std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH),
                ).unwrap();
                for (at, remove, insert) in edits {
                    let chars: Vec<char> = text.chars().collect();
                    let start = at.index(chars.len());
                    let end = (start + remove).min(chars.len());
                    text = chars[..start].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect();
                }
                match parse(&text) {
                    Ok(cfg) => prop_assert!(!cfg.securities.is_empty()),
                    Err(e) => assert_one_line_error(&e)?,
                }
            }
        }
    }
}
