//! Where a security's bars come from: [`Source`] (Yahoo, the default, or Tiingo), the ticker
//! Tiingo is asked for ([`TiingoTicker`], which only exists for what Tiingo's daily endpoint
//! can serve) and Tiingo's API token ([`TiingoToken`], never shown).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::{YahooSymbol, preview};

/// The market-data source of one security (`source:` in securities.yaml, per security or for
/// the whole file; default `yahoo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Source {
    /// Yahoo Finance's chart endpoint: every kind of instrument Yahoo lists.
    #[default]
    Yahoo,
    /// Tiingo's end-of-day endpoint (`/tiingo/daily/{ticker}/prices`): stocks and ETFs.
    Tiingo,
}

/// The values `source:` accepts, for messages.
pub const SOURCE_NAMES: &str = "yahoo, tiingo";

impl Source {
    /// `yahoo` or `tiingo`, exactly (as written in the file and stored in `market_data.source`).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "yahoo" => Some(Self::Yahoo),
            "tiingo" => Some(Self::Tiingo),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yahoo => "yahoo",
            Self::Tiingo => "tiingo",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why Tiingo's daily endpoint cannot serve a symbol: one clause, for a config error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Tiingo's daily endpoint serves stocks and ETFs by their plain ticker, and {symbol:?} {reason}"
)]
pub struct NotOnTiingo {
    pub symbol: String,
    pub reason: &'static str,
}

/// A ticker Tiingo's daily endpoint can be asked for: a US-listed stock or ETF as Yahoo spells
/// it (`AAPL`, `SPY`, `BRK-B`), lowercased as Tiingo writes it. Yahoo's indices (`^GSPC`),
/// currencies (`EURUSD=X`), futures (`GC=F`), crypto pairs (`BTC-USD`) and exchange suffixes
/// (`SAP.DE`, `DX-Y.NYB`) are refused: Tiingo serves FX and crypto from other endpoints, and
/// indices not at all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TiingoTicker(String);

impl TiingoTicker {
    /// The ticker for `symbol`, or why Tiingo cannot serve it.
    ///
    /// # Errors
    /// [`NotOnTiingo`] naming the symbol and the kind of instrument it looks like.
    pub fn from_yahoo(symbol: &YahooSymbol) -> Result<Self, NotOnTiingo> {
        let text = symbol.as_str();
        let refuse = |reason| NotOnTiingo {
            symbol: preview(text),
            reason,
        };
        if text.starts_with('^') {
            return Err(refuse("is an index (^); keep it on source: yahoo"));
        }
        if text.contains('=') {
            return Err(refuse(
                "is a currency or a future (=X, =F); keep it on source: yahoo",
            ));
        }
        if text.contains('.') {
            return Err(refuse(
                "has an exchange suffix (.DE, .L, .NYB); keep it on source: yahoo",
            ));
        }
        if let Some((_, quote)) = text.rsplit_once('-')
            && quote.len() >= 3
            && quote.chars().all(|c| c.is_ascii_alphabetic())
        {
            return Err(refuse(
                "is a crypto pair (BTC-USD); keep it on source: yahoo",
            ));
        }
        if text.contains('_') || text.starts_with('-') || text.ends_with('-') {
            return Err(refuse("is not a ticker; keep it on source: yahoo"));
        }
        Ok(Self(text.to_ascii_lowercase()))
    }

    /// The ticker as Tiingo writes it (lowercase).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TiingoTicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Tiingo's API token (`TIINGO_API_KEY`): trimmed, non-empty, printable ASCII without spaces
/// (it goes into an `Authorization` header). `Debug` and `Display` print `[redacted]`; the
/// value is only reachable through [`TiingoToken::expose`], for that header.
#[derive(Clone)]
pub struct TiingoToken(SecretString);

impl TiingoToken {
    /// The token from the variable's text; `None` when it is blank or not header-safe.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic()))
            .then(|| Self(SecretString::from(text.to_owned())))
    }

    /// The token itself, for the `Authorization: Token …` header and nothing else.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for TiingoToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TiingoToken([redacted])")
    }
}

impl fmt::Display for TiingoToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticker(s: &str) -> Result<TiingoTicker, NotOnTiingo> {
        TiingoTicker::from_yahoo(&YahooSymbol::parse(s).unwrap())
    }

    #[test]
    fn stocks_and_etfs_are_tiingo_tickers() {
        for (yahoo, tiingo) in [
            ("AAPL", "aapl"),
            ("SPY", "spy"),
            ("BRK-B", "brk-b"),
            ("TLT", "tlt"),
        ] {
            assert_eq!(ticker(yahoo).unwrap().as_str(), tiingo);
        }
    }

    #[test]
    fn what_tiingo_daily_does_not_serve_is_refused_with_the_reason() {
        for (symbol, kind) in [
            ("^GSPC", "index"),
            ("^VIX", "index"),
            ("EURUSD=X", "currency"),
            ("GC=F", "future"),
            ("BTC-USD", "crypto"),
            ("ETH-EUR", "crypto"),
            ("DX-Y.NYB", "exchange suffix"),
            ("SAP.DE", "exchange suffix"),
        ] {
            let err = ticker(symbol).unwrap_err().to_string();
            assert!(err.contains(symbol) && err.contains(kind), "{err}");
            assert!(err.contains("source: yahoo"), "{err}");
        }
    }

    #[test]
    fn the_token_never_shows() {
        let token = TiingoToken::parse("  s3cret-token\n").unwrap();
        assert_eq!(token.expose(), "s3cret-token");
        assert!(!format!("{token:?} {token}").contains("s3cret"));
        assert!(TiingoToken::parse("   ").is_none());
        assert!(TiingoToken::parse("two words").is_none());
        assert_eq!(Source::parse("tiingo"), Some(Source::Tiingo));
        assert_eq!(Source::parse("Yahoo"), None);
        assert_eq!(Source::default().as_str(), "yahoo");
    }
}
