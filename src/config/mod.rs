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

use crate::config::securities::{read_file_source, read_securities};
use crate::config::yaml::Doc;
use crate::config::yaml::Fields;
use crate::config::yaml::Node;
use crate::config::yaml::line_of;
use crate::config::yaml::parse_tree;
mod embedding;
mod encoding;
pub mod env;
mod error;
mod features;
mod securities;
#[cfg(test)]
mod tests;
mod yaml;

pub use embedding::{EMBEDDING_KEYS, EmbeddingSettings, OpenAiEndpoint};
pub use encoding::{ENCODING_KEYS, EncodingSettings};
pub use error::{ConfigError, SymbolField};
pub use features::{FEATURE_KEYS, FeatureSettings};

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};

use crate::domain::Category;
use crate::domain::Security;
use crate::domain::Source;

/// Where the config file is looked for when neither `--config` nor the variable is set.
pub const DEFAULT_CONFIG_PATH: &str = "config/securities.yaml";
/// Environment variable naming the config file.
pub const CONFIG_ENV_VAR: &str = "MARKET_ENCODER_CONFIG";

/// Keys allowed at the top level of the file.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "securities",
    "source",
    EncodingSettings::KEY,
    EmbeddingSettings::KEY,
    FeatureSettings::KEY,
];
/// Keys allowed in one security entry.
pub const SECURITY_KEYS: &[&str] = &[
    "symbol",
    "name",
    "yahoo_symbol",
    "db_symbol",
    "source",
    "enabled",
    "sector",
];

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file the config was read from (used in messages).
    pub path: PathBuf,
    /// All securities, enabled or not, in file order (categories in file order).
    pub securities: Vec<Security>,
    /// The file's `source:` (default Yahoo): the source of every security that names none.
    pub source: Source,
    /// The `encoding:` section (defaults when omitted).
    pub encoding: EncodingSettings,
    /// The `embedding:` section ([`EmbeddingSettings::Local`] when omitted).
    pub embedding: EmbeddingSettings,
    /// The `features:` section (defaults when omitted).
    pub features: FeatureSettings,
}

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] / [`ConfigError::NotUtf8`] if the file cannot be read, otherwise as
    /// [`Config::from_yaml`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = read_bounded(path)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            ConfigError::NotUtf8 {
                path: path.to_path_buf(),
                line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
            }
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses and validates config text (at most [`yaml::MAX_CONFIG_BYTES`]); `path` is only used in messages and stored in
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
        let file_source = read_file_source(&doc, &top)?;
        let securities = read_securities(&doc, &top, file_source)?;
        let encoding = read_section::<EncodingSettings>(&doc, &top)?;
        let embedding = read_section::<EmbeddingSettings>(&doc, &top)?;
        let features = read_section::<FeatureSettings>(&doc, &top)?;
        features.check_configured(&doc, &securities)?;
        Ok(Config {
            path: path.to_path_buf(),
            securities,
            source: file_source.0,
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

/// For values already range-checked to be at least 1.
/// The file's bytes, refusing one larger than [`yaml::MAX_CONFIG_BYTES`] without reading it
/// all.
fn read_bounded(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read as _;
    let read_error = |cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(yaml::MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() > yaml::MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            max: yaml::MAX_CONFIG_BYTES,
        });
    }
    Ok(bytes)
}

fn nonzero_u32(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
}

/// For values already range-checked to be at least 1.
fn nonzero_usize(v: u32) -> NonZeroUsize {
    NonZeroUsize::new(usize::try_from(v).unwrap_or(usize::MAX)).unwrap_or(NonZeroUsize::MIN)
}
