//! Corporate actions: splits and dividends, as Yahoo's chart `events` report them and as
//! `corporate_actions` stores them.

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

/// What happened on an ex-date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ActionKind {
    /// `numerator` new shares for every `denominator` old ones (10:1, or 3:2).
    Split {
        numerator: Decimal,
        denominator: Decimal,
    },
    /// A cash dividend per share, in the security's currency.
    Dividend { amount: Decimal },
}

/// One corporate action of one security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CorporateAction {
    pub ex_date: NaiveDate,
    #[serde(flatten)]
    pub kind: ActionKind,
}

impl CorporateAction {
    /// `split` or `dividend`, as stored in `corporate_actions.kind`.
    #[must_use]
    pub fn kind_str(&self) -> &'static str {
        match self.kind {
            ActionKind::Split { .. } => "split",
            ActionKind::Dividend { .. } => "dividend",
        }
    }
}

/// `split 10:1 on 2024-06-10`, `dividend 0.205 on 2020-11-06`.
impl fmt::Display for CorporateAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ActionKind::Split {
                numerator,
                denominator,
            } => write!(
                f,
                "split {}:{} on {}",
                numerator.normalize(),
                denominator.normalize(),
                self.ex_date
            ),
            ActionKind::Dividend { amount } => {
                write!(f, "dividend {} on {}", amount.normalize(), self.ex_date)
            }
        }
    }
}
