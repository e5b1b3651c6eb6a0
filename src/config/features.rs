//! The `features:` section: which configured securities play which role in the
//! cross-asset features, and their windows.

use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};

use crate::domain::DbSymbol;
use crate::domain::{DEFAULT_CORRELATIONS, ROLE_KEYS, Role, Security};

use crate::config::ConfigError;
use crate::config::IntSetting;
use crate::config::Section;
use crate::config::yaml::Doc;
use crate::config::yaml::Fields;
use crate::config::yaml::Node;
use crate::config::yaml::join;
use crate::config::yaml::line_of;
use crate::config::yaml::preview;
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
pub(super) struct NamedSymbol {
    pub(super) field: String,
    pub(super) line: usize,
    pub(super) symbol: DbSymbol,
}

pub(super) const FEATURES_ENABLED: &str = "enabled";
pub(super) const FEATURE_ROLES: &str = "roles";
pub(super) const FEATURE_CORRELATIONS: &str = "correlations";
pub(super) const CORRELATION_DAYS: IntSetting = IntSetting::new("correlation_days", 5, 252, 30);
pub(super) const MOMENTUM_DAYS: IntSetting = IntSetting::new("momentum_days", 1, 252, 20);
pub(super) const SPREAD_DAYS: IntSetting = IntSetting::new("spread_days", 1, 252, 20);

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
pub(super) const MAX_CORRELATION_NAME: usize = 32;

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
    pub(super) fn check_configured(
        &self,
        doc: &Doc<'_>,
        securities: &[Security],
    ) -> Result<(), ConfigError> {
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

    pub(super) fn read_roles(
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

    pub(super) fn read_correlations(
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
pub(super) fn named_symbol(
    doc: &Doc<'_>,
    node: &Spanned<Node>,
    field: &str,
) -> Result<DbSymbol, ConfigError> {
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
