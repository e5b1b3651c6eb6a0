//! The generic YAML tree (every node with its line) and the helpers that read sections from
//! it with the full field path in every error.

use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{
    Budget, DuplicateKeyPolicy, Location, MessageFormatter, NonFiniteFloatPolicy, Options, Spanned,
    UserMessageFormatter,
};

use crate::config::ConfigError;
// ---------------------------------------------------------------------------------------------
// The generic YAML tree and reading helpers

/// A YAML node; every child carries its location.
#[derive(Debug)]
pub(super) enum Node {
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

/// The longest text value (a name, a model, a URL) a config may hold, in characters.
pub const MAX_TEXT_CHARS: usize = 256;

/// The largest config file read: the shipped one is 8 KB; 1 MiB holds thousands of
/// securities. Larger input is refused before parsing (bounded time and memory).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Alias events replayed in all (each `*alias` replays its anchor's events): enough for any
/// hand-written file that reuses a block, far too few for an alias bomb (a few hundred bytes
/// that expand to millions of nodes).
const MAX_REPLAYED_EVENTS: usize = 10_000;

/// Parses the whole text into a located tree. Only YAML-level problems fail here.
pub(super) fn parse_tree(text: &str) -> Result<Spanned<Node>, serde_saphyr::Error> {
    let mut budget = Budget::default();
    // A config file is a few levels deep; small limits keep hostile input from exhausting the
    // stack of the recursive tree builder.
    budget.max_depth = 24;
    budget.flow_nesting_limit = 24;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    let mut options = Options::default();
    options.budget = Some(budget);
    // Alias expansion is bounded before any tree is built (serde-saphyr replays events).
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    options.alias_limits.max_replay_stack_depth = 8;
    options.with_snippet = false;
    // `yes`/`no`/`on`/`off` stay strings; only true/false are booleans.
    options.strict_booleans = true;
    // Repeated keys reach the tree, so their error can name the field and both lines.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    // `.nan` / `.inf` reach the tree as floats (a symbol field then uses the source text).
    options.non_finite_float_policy = NonFiniteFloatPolicy::PassThrough;
    serde_saphyr::from_str_with_options(text, options)
}

pub(super) fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// 1-based line where the node is used.
pub(super) fn line_of(node: &Spanned<Node>) -> usize {
    to_usize(node.referenced.line())
}

/// `parent.key` (or `parent["odd key"]` when the key is not a plain word).
pub(super) fn join(parent: &str, key: &str) -> String {
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
pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Shortens a value shown in a message.
pub(super) fn preview(s: &str) -> String {
    pub(super) const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut short: String = s.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

/// The document being read: its path (for messages) and text (for scalar source text).
pub(super) struct Doc<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

/// The entries of one mapping, with unknown and repeated keys already rejected.
pub(super) struct Fields<'n> {
    /// Field path of the mapping itself (`""` for the top level).
    pub(super) field: String,
    /// Line of the mapping.
    pub(super) line: usize,
    /// `(key, key line, value)` in file order.
    pub(super) entries: Vec<(String, usize, &'n Spanned<Node>)>,
}

impl<'n> Fields<'n> {
    pub(super) fn get(&self, key: &str) -> Option<&'n Spanned<Node>> {
        self.get_with_line(key).map(|(_, node)| node)
    }

    pub(super) fn get_with_line(&self, key: &str) -> Option<(usize, &'n Spanned<Node>)> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|&(_, line, node)| (line, node))
    }

    pub(super) fn field(&self, key: &str) -> String {
        join(&self.field, key)
    }

    pub(super) fn required(
        &self,
        doc: &Doc<'_>,
        key: &str,
    ) -> Result<&'n Spanned<Node>, ConfigError> {
        self.get(key).ok_or_else(|| ConfigError::MissingKey {
            path: doc.path.to_path_buf(),
            line: self.line,
            field: self.field(key),
        })
    }
}

impl Doc<'_> {
    pub(super) fn syntax_error(&self, err: &serde_saphyr::Error) -> ConfigError {
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
    pub(super) fn source(&self, node: &Spanned<Node>) -> Option<&str> {
        let span = node.defined.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        self.text.get(start..start.checked_add(len)?)
    }

    /// A scalar as text; `None` for lists and mappings. `null`/empty is `""`.
    pub(super) fn scalar_text(&self, node: &Spanned<Node>) -> Option<String> {
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
    pub(super) fn describe(&self, node: &Spanned<Node>) -> String {
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

    pub(super) fn wrong_type(
        &self,
        node: &Spanned<Node>,
        field: &str,
        expected: &str,
    ) -> ConfigError {
        ConfigError::WrongType {
            path: self.path.to_path_buf(),
            line: line_of(node),
            field: field.to_owned(),
            expected: expected.to_owned(),
            found: self.describe(node),
        }
    }

    pub(super) fn invalid(
        &self,
        node: &Spanned<Node>,
        field: &str,
        message: String,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: line_of(node),
            field: field.to_owned(),
            message,
        }
    }

    /// A key as text; keys must be scalars.
    pub(super) fn key_text(
        &self,
        key: &Spanned<Node>,
        parent: &str,
    ) -> Result<String, ConfigError> {
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
    pub(super) fn fields<'n>(
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
    /// A scalar as its text (a number keeps its written form), at most [`MAX_TEXT_CHARS`].
    pub(super) fn text(
        &self,
        node: &Spanned<Node>,
        field: &str,
        what: &str,
    ) -> Result<String, ConfigError> {
        let text = self
            .scalar_text(node)
            .ok_or_else(|| self.wrong_type(node, field, &format!("{what} (text)")))?;
        self.bounded(node, field, text)
    }

    /// A YAML string (plain, quoted or an empty value), at most [`MAX_TEXT_CHARS`]. A number,
    /// boolean or `.inf` is refused with how to quote it: another YAML reader (yq, PyYAML,
    /// kubectl) would read `0700` as the number 448 or 700, `1e3` as 1000, `on` as true.
    pub(super) fn string(
        &self,
        node: &Spanned<Node>,
        field: &str,
        what: &str,
    ) -> Result<String, ConfigError> {
        match &node.value {
            Node::Str(s) => self.bounded(node, field, s.clone()),
            Node::Null => Ok(String::new()),
            Node::Bool(_) | Node::Int(_) | Node::Float(_) => {
                let written = one_line(&preview(&self.scalar_text(node).unwrap_or_default()));
                Err(self.wrong_type(
                    node,
                    field,
                    &format!("{what} as a YAML string (quote it: \"{written}\")"),
                ))
            }
            Node::Seq(_) | Node::Map(_) => {
                Err(self.wrong_type(node, field, &format!("{what} (text)")))
            }
        }
    }

    fn bounded(
        &self,
        node: &Spanned<Node>,
        field: &str,
        text: String,
    ) -> Result<String, ConfigError> {
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(self.invalid(
                node,
                field,
                format!("{chars} characters, more than the {MAX_TEXT_CHARS} a text value may have; shorten it"),
            ));
        }
        Ok(text)
    }

    pub(super) fn boolean(&self, node: &Spanned<Node>, field: &str) -> Result<bool, ConfigError> {
        match node.value {
            Node::Bool(b) => Ok(b),
            _ => Err(self.wrong_type(node, field, "true or false")),
        }
    }

    /// A whole number in `min..=max` (a quoted number is accepted too).
    pub(super) fn int_in(
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
