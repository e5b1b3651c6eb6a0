//! Why a config could not be loaded: one line each, starting with `{file}:{line}:`.

use std::path::{Path, PathBuf};

use crate::domain::DomainError;

use crate::config::CONFIG_ENV_VAR;
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

    #[error(
        "{}: the config file has more than {max} bytes; a securities file is a few KB (is this the right file?)",
        path.display()
    )]
    TooLarge { path: PathBuf, max: usize },

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

pub(super) fn duplicate_note(key: SymbolField, defaulted: bool) -> &'static str {
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
            | Self::TooLarge { .. }
            | Self::UnknownCategory { .. }
            | Self::UnknownSymbol { .. }
            | Self::NothingSelected { .. } => None,
        }
    }
}

/// `path:line:column`, leaving out unknown parts.
pub(super) fn position(path: &Path, line: usize, column: usize) -> String {
    match (line, column) {
        (0, _) => path.display().to_string(),
        (l, 0) => format!("{}:{l}", path.display()),
        (l, c) => format!("{}:{l}:{c}", path.display()),
    }
}
