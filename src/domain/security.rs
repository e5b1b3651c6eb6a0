//! A configured security, as every stage after `config` sees it.

use super::{Category, DbSymbol, Sector, Source, YahooSymbol};

/// One configured security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// The category (key under `securities`) the entry is listed in.
    pub category: Category,
    /// The symbol as written in the file (the default for `yahoo_symbol` and `db_symbol`).
    pub symbol: String,
    /// Human-readable name.
    pub name: String,
    /// Its sector (`sector:`), where the config says it: a stock's or an ETF's.
    pub sector: Option<Sector>,
    /// Ticker to ask Yahoo Finance for.
    pub yahoo_symbol: YahooSymbol,
    /// Symbol stored in the database.
    pub db_symbol: DbSymbol,
    /// Where its bars come from (`source:`, per security or for the file; default Yahoo). A
    /// security on Tiingo has passed [`super::TiingoTicker::from_yahoo`].
    pub source: Source,
    /// Whether the daily job fetches it.
    pub enabled: bool,
    /// 1-based line of the entry in the file.
    pub line: usize,
}
