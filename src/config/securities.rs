//! The `securities:` section: every security, its symbols and their uniqueness.

use std::collections::HashMap;

use serde_saphyr::Spanned;

use crate::domain::Security;
use crate::domain::{
    Category, DbSymbol, DomainError, SOURCE_NAMES, Sector, Source, TiingoTicker, YahooSymbol,
};

use crate::config::ConfigError;
use crate::config::SECURITY_KEYS;
use crate::config::SymbolField;
use crate::config::yaml::Doc;
use crate::config::yaml::Fields;
use crate::config::yaml::Node;
use crate::config::yaml::join;
use crate::config::yaml::line_of;
// ---------------------------------------------------------------------------------------------
// Securities

/// Where one of an entry's unique symbols came from, for duplicate messages.
pub(super) struct SymbolOrigin {
    /// `...yahoo_symbol` / `...db_symbol`, or `...symbol` when defaulted.
    pub(super) field: String,
    pub(super) line: usize,
    pub(super) defaulted: bool,
}

/// Where an entry's unique symbols came from.
pub(super) struct Origin {
    /// e.g. `securities.etfs[3]`
    pub(super) entry: String,
    pub(super) yahoo: SymbolOrigin,
    pub(super) db: SymbolOrigin,
}

impl Origin {
    pub(super) fn of(&self, key: SymbolField) -> &SymbolOrigin {
        match key {
            SymbolField::Yahoo => &self.yahoo,
            SymbolField::Db => &self.db,
        }
    }
}

/// The file's `source:` (the default of every security), and its line when written.
pub(super) fn read_file_source(
    doc: &Doc<'_>,
    top: &Fields<'_>,
) -> Result<(Source, Option<usize>), ConfigError> {
    match top.get("source") {
        None => Ok((Source::default(), None)),
        Some(node) => Ok((read_source(doc, node, "source")?, Some(line_of(node)))),
    }
}

/// A `source:` value: `yahoo` or `tiingo`.
fn read_source(doc: &Doc<'_>, node: &Spanned<Node>, field: &str) -> Result<Source, ConfigError> {
    let text = doc.text(node, field, "a source name")?;
    Source::parse(&text).ok_or_else(|| {
        doc.invalid(
            node,
            field,
            format!(
                "unknown source {:?}; allowed: {SOURCE_NAMES} (default yahoo)",
                crate::domain::preview(&text)
            ),
        )
    })
}

pub(super) fn read_securities(
    doc: &Doc<'_>,
    top: &Fields<'_>,
    file_source: (Source, Option<usize>),
) -> Result<Vec<Security>, ConfigError> {
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
            let (security, origin) =
                read_security(doc, &category, entry, entry_field, file_source)?;
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

pub(super) fn read_security(
    doc: &Doc<'_>,
    category: &Category,
    node: &Spanned<Node>,
    field: String,
    (file_source, file_source_line): (Source, Option<usize>),
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
    let symbol = doc.string(symbol_node, &symbol_field, "a symbol")?;
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
    let name = doc.string(name_node, &name_field, "a name")?;
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

    let sector = match fields.get("sector") {
        None => None,
        Some(node) => {
            let field = fields.field("sector");
            let text = doc.string(node, &field, "a sector name")?;
            Some(
                Sector::parse(&text).map_err(|error| ConfigError::InvalidValue {
                    path: doc.path.to_path_buf(),
                    line: line_of(node),
                    field,
                    error: Box::new(error),
                    note: "; sectors are lowercase, like technology or consumer_discretionary",
                })?,
            )
        }
    };

    let enabled = match fields.get("enabled") {
        None => true,
        Some(n) => doc.boolean(n, &fields.field("enabled"))?,
    };

    let source = match fields.get("source") {
        Some(n) => read_source(doc, n, &fields.field("source"))?,
        None => file_source,
    };
    if source == Source::Tiingo
        && let Err(refused) = TiingoTicker::from_yahoo(&yahoo_symbol)
    {
        let (line, inherited) = match (fields.get("source"), file_source_line) {
            (Some(n), _) => (line_of(n), String::new()),
            (None, Some(top)) => (
                fields.line,
                format!(" (the file's source: tiingo on line {top} applies to this entry)"),
            ),
            (None, None) => (fields.line, String::new()),
        };
        return Err(ConfigError::Invalid {
            path: doc.path.to_path_buf(),
            line,
            field: fields.field("source"),
            message: format!("{refused}{inherited}"),
        });
    }

    let security = Security {
        category: category.clone(),
        symbol,
        name,
        sector,
        yahoo_symbol,
        db_symbol,
        source,
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
pub(super) fn symbol_value<T>(
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
            let text = doc.string(node, &field, "a symbol")?;
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

pub(super) fn check_unique(
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
