//! The source seam: one `fetch(security, window)` for every market-data source, so that the run
//! (`job/mod.rs`) and the rebase (`history.rs`) neither know nor care where a security's bars come
//! from. Each source's fetch stage hands its wire answer to its own validate stage, and both
//! end in the same [`Series`] on the same basis (see `validate::tiingo`).

use chrono::{DateTime, Utc};

use crate::domain::{DateWindow, NotOnTiingo, Security, Source, TiingoTicker};
use crate::job::fetch::tiingo::{TiingoClient, TiingoError, TiingoOptions};
use crate::job::fetch::{ClientOptions, FetchError, YahooClient};
use crate::job::validate::tiingo::TiingoValidateError;
use crate::job::validate::{self, Series, ValidateError};

/// Why one security's series could not be fetched and validated, whichever its source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Yahoo(#[from] FetchError),
    #[error(transparent)]
    YahooAnswer(#[from] ValidateError),
    #[error(transparent)]
    Tiingo(#[from] TiingoError),
    #[error(transparent)]
    TiingoAnswer(#[from] TiingoValidateError),
    /// The config check makes these impossible; kept as errors rather than panics.
    #[error(transparent)]
    NotOnTiingo(#[from] NotOnTiingo),
    #[error(
        "{symbol} has source: tiingo but the run has no Tiingo client (TIINGO_API_KEY was not set)"
    )]
    NoTiingo { symbol: String },
}

impl SourceError {
    /// Whether the answer came but was refused (vs. the request failing).
    #[must_use]
    pub fn is_validation(&self) -> bool {
        matches!(self, Self::YahooAnswer(_) | Self::TiingoAnswer(_))
    }
}

/// The clients of every source a run uses: Yahoo's always, Tiingo's when some selected
/// security is on Tiingo.
pub struct Sources {
    yahoo: YahooClient,
    tiingo: Option<TiingoClient>,
}

impl Sources {
    /// # Errors
    /// When a client cannot be built.
    pub fn new(yahoo: &ClientOptions, tiingo: Option<&TiingoOptions>) -> Result<Self, SourceError> {
        Ok(Self {
            yahoo: YahooClient::new(yahoo)?,
            tiingo: tiingo.map(TiingoClient::new).transpose()?,
        })
    }

    /// The validated series of `security` over `window` from its source; `now` decides which
    /// session is still open (and, for Tiingo, up to which day the split factors are read).
    ///
    /// # Errors
    /// The source's fetch or validate error.
    /// The Yahoo client (its run-wide throttle's report).
    #[must_use]
    pub fn yahoo(&self) -> &YahooClient {
        &self.yahoo
    }

    pub async fn fetch(
        &self,
        security: &Security,
        window: &DateWindow,
        now: DateTime<Utc>,
    ) -> Result<Series, SourceError> {
        match security.source {
            Source::Yahoo => {
                let envelope = self.yahoo.chart(&security.yahoo_symbol, window).await?;
                Ok(validate::validate(
                    envelope,
                    &security.yahoo_symbol,
                    window,
                    now,
                )?)
            }
            Source::Tiingo => {
                let client = self.tiingo.as_ref().ok_or_else(|| SourceError::NoTiingo {
                    symbol: security.db_symbol.to_string(),
                })?;
                let ticker = TiingoTicker::from_yahoo(&security.yahoo_symbol)?;
                let rows = client.prices(&ticker, window, now.date_naive()).await?;
                Ok(validate::tiingo::validate(rows, &ticker, window, now)?)
            }
        }
    }
}
