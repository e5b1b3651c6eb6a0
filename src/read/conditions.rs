//! Metadata conditions for `similar` (`--where "daily_return < -0.02"`, `--from/--to`): parsed
//! once into a [`Condition`] that is known to name a metadata key the job writes (see
//! `job::narrate::metadata`) with a value of that key's type, and turned into Chroma's `where`.

use chrono::{Datelike, NaiveDate};
use serde_json::{Value, json};

use crate::job::analyze::FLOAT_COLUMNS;
use crate::job::index::{Metadata, MetadataValue};

/// Metadata keys with text values (compared with `=` / `!=`).
const TEXT_KEYS: &[&str] = &[
    "symbol",
    "yahoo_symbol",
    "name",
    "category",
    "sector",
    "trade_date",
    "trend",
    "volatility_regime",
    "regime",
    "move_band",
];
/// Metadata keys with numbers, besides the indicators of `FLOAT_COLUMNS`.
const NUMBER_KEYS: &[&str] = &[
    "close",
    "daily_return",
    "trade_date_int",
    "move_sigma",
    "return_20d",
    "vix_return",
    "vix_close",
    "dollar_return",
    "narrative_version",
];
/// Metadata keys with booleans.
const BOOL_KEYS: &[&str] = &["new_52w_high", "new_52w_low"];

/// A comparison Chroma's `where` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn chroma(self) -> &'static str {
        match self {
            Op::Lt => "$lt",
            Op::Le => "$lte",
            Op::Gt => "$gt",
            Op::Ge => "$gte",
            Op::Eq => "$eq",
            Op::Ne => "$ne",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "=",
            Op::Ne => "!=",
        }
    }
}

/// One valid condition on the documents' metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    key: String,
    op: Op,
    value: Value,
}

/// Why a `--where` (or `--from/--to`) cannot be a condition; the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error(
        "--where {0:?}: write KEY OP VALUE with OP one of < <= > >= = != (e.g. \"daily_return < -0.02\", \"regime = bear, volatile\")"
    )]
    Shape(String),
    #[error("--where {given:?}: {key} is not a metadata key; known keys: {known}")]
    UnknownKey {
        given: String,
        key: String,
        known: String,
    },
    #[error("--where {given:?}: {key} holds {kind}: {problem}")]
    Value {
        given: String,
        key: String,
        kind: &'static str,
        problem: String,
    },
    #[error("--from {from} is after --to {to}")]
    Reversed { from: NaiveDate, to: NaiveDate },
}

fn known_keys() -> String {
    let mut keys: Vec<&str> = TEXT_KEYS
        .iter()
        .chain(NUMBER_KEYS)
        .chain(BOOL_KEYS)
        .copied()
        .chain(FLOAT_COLUMNS.iter().map(|c| c.name))
        .collect();
    keys.sort_unstable();
    keys.join(", ")
}

impl Condition {
    /// Parses `KEY OP VALUE` (spaces around OP optional; a text VALUE may be quoted).
    ///
    /// # Errors
    /// [`ConditionError`] naming what is wrong and how to write it.
    pub fn parse(given: &str) -> Result<Self, ConditionError> {
        let shape = || ConditionError::Shape(given.to_owned());
        let at = given.find(['<', '>', '=', '!']).ok_or_else(shape)?;
        let (key, rest) = given.split_at(at);
        let (op, value) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
        ]
        .iter()
        .find_map(|(text, op)| rest.strip_prefix(text).map(|v| (*op, v)))
        .ok_or_else(shape)?;
        let key = key.trim();
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        if key.is_empty() || value.is_empty() {
            return Err(shape());
        }
        let bad = |kind: &'static str, problem: String| ConditionError::Value {
            given: given.to_owned(),
            key: key.to_owned(),
            kind,
            problem,
        };
        let value = if TEXT_KEYS.contains(&key) {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(bad(
                    "text",
                    format!("compare it with = or !=, not {}", op.text()),
                ));
            }
            Value::from(value)
        } else if BOOL_KEYS.contains(&key) {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(bad(
                    "true or false",
                    format!("compare it with = or !=, not {}", op.text()),
                ));
            }
            match value {
                "true" => Value::from(true),
                "false" => Value::from(false),
                other => return Err(bad("true or false", format!("{other:?} is neither"))),
            }
        } else if NUMBER_KEYS.contains(&key) || FLOAT_COLUMNS.iter().any(|c| c.name == key) {
            let number: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| {
                    bad(
                        "a number",
                        format!("{value:?} is not a number (a fraction: -0.02 for -2%)"),
                    )
                })?;
            if key == "trade_date_int" {
                Value::from(number.trunc() as i64)
            } else {
                Value::from(number)
            }
        } else {
            return Err(ConditionError::UnknownKey {
                given: given.to_owned(),
                key: key.to_owned(),
                known: known_keys(),
            });
        };
        Ok(Self {
            key: key.to_owned(),
            op,
            value,
        })
    }

    /// `--from D` / `--to D`: the trade date on or after / on or before D.
    #[must_use]
    pub fn date(op: Op, date: NaiveDate) -> Self {
        let yyyymmdd = i64::from(date.year()) * 10_000 + i64::from(date.month() * 100 + date.day());
        Self {
            key: "trade_date_int".to_owned(),
            op,
            value: Value::from(yyyymmdd),
        }
    }

    /// `--from`/`--to` as conditions, checked to be in order.
    ///
    /// # Errors
    /// [`ConditionError::Reversed`] when `from > to`.
    pub fn dates(
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<Self>, ConditionError> {
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(ConditionError::Reversed { from, to });
        }
        Ok(from
            .map(|d| Self::date(Op::Ge, d))
            .into_iter()
            .chain(to.map(|d| Self::date(Op::Le, d)))
            .collect())
    }

    /// Chroma's `{"key": {"$op": value}}`.
    #[must_use]
    pub fn to_where(&self) -> Value {
        json!({ self.key.as_str(): { self.op.chroma(): self.value } })
    }

    /// Whether a record's `metadata` meets the condition, as Chroma's `where` decides it: a
    /// record without the key never does (not even for `!=`), numbers compare as numbers
    /// whether stored as integers or floats, text and booleans only with `=` and `!=`.
    #[must_use]
    pub fn holds(&self, metadata: &Metadata) -> bool {
        use std::cmp::Ordering;
        let Some(stored) = metadata.get(&self.key) else {
            return false;
        };
        #[allow(clippy::cast_precision_loss)] // trade_date_int and counts are far below 2^52
        let ordering = match (stored, &self.value) {
            (MetadataValue::Str(s), Value::String(v)) => Some(s.as_str().cmp(v.as_str())),
            (MetadataValue::Bool(b), Value::Bool(v)) => Some(b.cmp(v)),
            (MetadataValue::Int(i), Value::Number(v)) => {
                v.as_f64().map(|v| (*i as f64).total_cmp(&v))
            }
            (MetadataValue::Float(f), Value::Number(v)) => v.as_f64().map(|v| f.total_cmp(&v)),
            _ => None,
        };
        let Some(ordering) = ordering else {
            return false;
        };
        match self.op {
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
        }
    }

    /// `daily_return < -0.02`.
    #[must_use]
    pub fn describe(&self) -> String {
        let value = match &self.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        format!("{} {} {value}", self.key, self.op.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_into_chroma_where_clauses() {
        let c = Condition::parse("daily_return < -0.02").unwrap();
        assert_eq!(c.to_where(), json!({"daily_return": {"$lt": -0.02}}));
        assert_eq!(c.describe(), "daily_return < -0.02");
        let c = Condition::parse("regime = bear, volatile").unwrap();
        assert_eq!(c.to_where(), json!({"regime": {"$eq": "bear, volatile"}}));
        let c = Condition::parse("rsi_14<=30").unwrap();
        assert_eq!(c.to_where(), json!({"rsi_14": {"$lte": 30.0}}));
        let c = Condition::parse("new_52w_high != false").unwrap();
        assert_eq!(c.to_where(), json!({"new_52w_high": {"$ne": false}}));
        let c = Condition::parse("category = 'etfs'").unwrap();
        assert_eq!(c.to_where(), json!({"category": {"$eq": "etfs"}}));
        let d = Condition::dates(
            NaiveDate::from_ymd_opt(2022, 1, 1),
            NaiveDate::from_ymd_opt(2022, 12, 31),
        )
        .unwrap();
        assert_eq!(
            d[0].to_where(),
            json!({"trade_date_int": {"$gte": 20_220_101}})
        );
        assert_eq!(
            d[1].to_where(),
            json!({"trade_date_int": {"$lte": 20_221_231}})
        );
    }

    #[test]
    fn conditions_hold_as_chroma_decides() {
        let m = Metadata::from([
            ("daily_return".into(), MetadataValue::Float(-0.025)),
            ("trade_date_int".into(), MetadataValue::Int(20_240_301)),
            ("regime".into(), "bear, volatile".into()),
            ("new_52w_high".into(), MetadataValue::Bool(false)),
        ]);
        let holds = |s: &str| Condition::parse(s).unwrap().holds(&m);
        assert!(holds("daily_return < -0.02"));
        assert!(!holds("daily_return < -0.025"));
        assert!(holds("daily_return <= -0.025"));
        assert!(!holds("daily_return > -0.02"));
        assert!(holds("daily_return >= -0.025"));
        assert!(holds("trade_date_int >= 20240301"));
        assert!(!holds("trade_date_int > 20240301"));
        assert!(holds("regime = bear, volatile"));
        assert!(!holds("regime != bear, volatile"));
        assert!(holds("new_52w_high = false"));
        assert!(holds("new_52w_high != true"));
        // A key the record lacks never holds, not even with !=.
        assert!(!holds("rsi_14 < 30"));
        assert!(!holds("rsi_14 != 30"));
        assert!(!holds("trend != bull"));
        // A value of another type than the key's never holds.
        let odd = Metadata::from([("rsi_14".into(), MetadataValue::Str("low".into()))]);
        assert!(!Condition::parse("rsi_14 < 30").unwrap().holds(&odd));
    }

    #[test]
    fn bad_conditions_say_what_to_write() {
        let e = |s: &str| Condition::parse(s).unwrap_err().to_string();
        assert!(
            e("daily_return").contains("write KEY OP VALUE"),
            "{}",
            e("daily_return")
        );
        assert!(e("< 3").contains("write KEY OP VALUE"));
        assert!(e("dialy_return < 0").contains("dialy_return is not a metadata key; known keys: "));
        assert!(e("daily_return < a lot").contains("holds a number: \"a lot\" is not a number"));
        assert!(e("regime < bear").contains("compare it with = or !=, not <"));
        assert!(e("new_52w_high = maybe").contains("\"maybe\" is neither"));
        let reversed = Condition::dates(
            NaiveDate::from_ymd_opt(2023, 1, 1),
            NaiveDate::from_ymd_opt(2022, 1, 1),
        );
        assert!(reversed.unwrap_err().to_string().contains("is after --to"));
    }
}
