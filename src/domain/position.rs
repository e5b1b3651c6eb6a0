//! A position in a security: its side and its size, as the `pnl` command takes them.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;

/// A quantity that is not a positive number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity {0:?} is not a positive number; give e.g. --quantity 100 or 0.5")]
pub struct QuantityError(pub String);

/// Long profits when the price rises, short when it falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Long,
    Short,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Long => "long",
            Self::Short => "short",
        })
    }
}

/// A quantity of units, strictly positive (fractions allowed: crypto, FX notionals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(Decimal);

impl Quantity {
    /// # Errors
    /// [`QuantityError`] when `value <= 0`.
    pub fn new(value: Decimal) -> Result<Self, QuantityError> {
        if value > Decimal::ZERO {
            Ok(Self(value.normalize()))
        } else {
            Err(QuantityError(value.to_string()))
        }
    }

    #[must_use]
    pub fn get(self) -> Decimal {
        self.0
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = Decimal::from_str_exact(s.trim())
            .or_else(|_| Decimal::from_scientific(s.trim()))
            .map_err(|_| QuantityError(s.to_owned()))?;
        Self::new(value)
    }
}
