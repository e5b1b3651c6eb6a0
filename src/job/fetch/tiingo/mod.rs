//! A client for Tiingo's end-of-day prices, `GET /tiingo/daily/{ticker}/prices`: the second
//! market-data source (`source: tiingo`), for stocks and ETFs. Built like [`super::YahooClient`]:
//! it owns its `reqwest::Client` (rustls, the shared defaults), a polite global rate limit
//! (Tiingo's free tier allows 50 requests an hour and 1000 a day), a per-request timeout, and
//! the shared retry loop; *whether* to retry is decided here ([`classify_status`]).
//!
//! The token travels in the `Authorization: Token …` header, marked sensitive, never in the
//! URL: reqwest's errors and our logs show URLs, and a proxy's access log would too. A server
//! message that quotes the token has it replaced by `[redacted]`.
//!
//! The window asked for always ends today (see [`TiingoClient::prices_url`]): Tiingo's prices are
//! raw, and the split factor that puts them on Yahoo's basis (split-adjusted as of today) needs
//! every split up to today, including those after the window.

pub mod wire;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use tracing::debug;
use url::Url;

use crate::domain::{DateWindow, TiingoTicker, TiingoToken};
use crate::support::http::client_builder;
use crate::support::retry::{self, Attempt, RetryPolicy};
use crate::support::text::{error_chain, one_line};
pub use wire::PriceRow;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A prices body larger than this is not a daily series (a row is ~250 bytes; 50 years of
/// sessions is ~3 MB).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
const USER_AGENT: &str = concat!("market-encoder/", env!("CARGO_PKG_VERSION"));

/// Why fetching one security from Tiingo failed. Each message names the ticker and what to do;
/// none contains the token.
#[derive(Debug, thiserror::Error)]
pub enum TiingoError {
    #[error(
        "Tiingo has no data for {ticker} (HTTP {status}: {detail}); check the symbol, or set source: yahoo for it"
    )]
    NotFound {
        ticker: String,
        status: u16,
        detail: String,
    },
    #[error(
        "Tiingo refused the API token for {ticker} (HTTP {status}: {detail}); check TIINGO_API_KEY"
    )]
    Unauthorized {
        ticker: String,
        status: u16,
        detail: String,
    },
    #[error(
        "Tiingo rejected the request for {ticker} (HTTP {status}: {detail}); check the symbol and the date window"
    )]
    Rejected {
        ticker: String,
        status: u16,
        detail: String,
    },
    #[error(
        "Tiingo's response for {ticker} is not valid prices JSON ({detail}); nothing was stored for it, rerun later"
    )]
    Malformed { ticker: String, detail: String },
    #[error("gave up on {ticker} (Tiingo) after {attempts} attempts: {last}; rerun later")]
    GaveUp {
        ticker: String,
        attempts: u32,
        last: Transient,
    },
    #[error("cannot build the HTTP client for Tiingo")]
    Client(#[source] reqwest::Error),
    #[error("cannot send the Tiingo API token: it is not a valid header value")]
    BadToken,
    #[error("environment variable TIINGO_API_KEY is not set; set it to your Tiingo API token")]
    NoToken,
}

/// A failure worth trying again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Transient {
    #[error(
        "Tiingo is rate-limiting (HTTP 429; the free tier allows 50 requests an hour, 1000 a day); lower TIINGO_REQUESTS_PER_HOUR or fetch fewer securities from Tiingo"
    )]
    RateLimited,
    #[error("Tiingo server error (HTTP {0})")]
    Server(u16),
    #[error("no answer within {0:?} (encoding.request_timeout_secs)")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connection(String),
}

/// What to do after one attempt.
pub type Verdict = retry::Verdict<Transient>;

/// Whether a non-success HTTP status is worth retrying (the shared rule, see
/// [`retry::classify_status`]; 404, 400, 401/403 are not).
#[must_use]
pub fn classify_status(status: StatusCode, headers: &HeaderMap) -> Verdict {
    retry::classify_status(status, headers, Transient::RateLimited, Transient::Server)
}

/// Everything the client needs: `TIINGO_*` from the environment, timeout and retries from
/// `securities.yaml`'s `encoding` section. `Debug` redacts the token.
#[derive(Debug, Clone)]
pub struct TiingoOptions {
    pub base_url: Url,
    /// `None` when `TIINGO_API_KEY` is not set: the dry run shows it, a run refuses to start.
    pub token: Option<TiingoToken>,
    pub timeout: Duration,
    pub requests_per_hour: NonZeroU32,
    pub retry: RetryPolicy,
}

/// Tiingo's daily prices endpoint. Cheap to share by reference across concurrent fetches.
pub struct TiingoClient {
    http: reqwest::Client,
    base_url: Url,
    /// The token, to replace it in any server message that quotes it.
    token: TiingoToken,
    timeout: Duration,
    limiter: Arc<DefaultDirectRateLimiter>,
    retry: RetryPolicy,
}

impl TiingoClient {
    /// # Errors
    /// [`TiingoError::Client`] if the HTTP client cannot be built, [`TiingoError::BadToken`] if
    /// the token cannot be a header value.
    pub fn new(options: &TiingoOptions) -> Result<Self, TiingoError> {
        let token = options.token.clone().ok_or(TiingoError::NoToken)?;
        let mut auth = HeaderValue::from_str(&format!("Token {}", token.expose()))
            .map_err(|_| TiingoError::BadToken)?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = client_builder(options.timeout, CONNECT_TIMEOUT)
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .build()
            .map_err(TiingoError::Client)?;
        // The hour's allowance as a burst, then one request per hour / n: a run of a few dozen
        // securities goes at once, a larger one waits rather than being refused.
        let quota = Quota::with_period(Duration::from_secs(3600) / options.requests_per_hour.get())
            .unwrap_or_else(|| Quota::per_hour(options.requests_per_hour))
            .allow_burst(options.requests_per_hour);
        Ok(Self {
            http,
            base_url: options.base_url.clone(),
            token,
            timeout: options.timeout,
            limiter: Arc::new(RateLimiter::direct(quota)),
            retry: options.retry,
        })
    }

    /// The prices URL of `ticker` from the window's first day to `today` (or the window's end,
    /// if later). The rows after the window are kept for their split factors only: Tiingo's
    /// prices are raw, and only the splits up to today put them on the basis Yahoo answers
    /// with (split-adjusted as of the request), so a backfill of an old window is stored on the
    /// same basis as yesterday's bar. The token is not in it.
    #[must_use]
    pub fn prices_url(&self, ticker: &TiingoTicker, window: &DateWindow, today: NaiveDate) -> Url {
        let mut url = self.base_url.clone();
        // A ticker is ASCII letters, digits and '-' (TiingoTicker): no encoding needed.
        let path = format!(
            "{}/tiingo/daily/{}/prices",
            url.path().trim_end_matches('/'),
            ticker.as_str()
        );
        url.set_path(&path);
        url.query_pairs_mut()
            .clear()
            .append_pair("startDate", &window.from().to_string())
            .append_pair("endDate", &window.to().max(today).to_string())
            .append_pair("format", "json")
            .append_pair("resampleFreq", "daily");
        url
    }

    /// Fetches and parses the daily rows of `ticker` from the window's start to `today`,
    /// retrying transient failures.
    #[tracing::instrument(name = "tiingo.prices", skip_all, fields(ticker = %ticker), err(Display))]
    pub async fn prices(
        &self,
        ticker: &TiingoTicker,
        window: &DateWindow,
        today: NaiveDate,
    ) -> Result<Vec<PriceRow>, TiingoError> {
        let url = self.prices_url(ticker, window, today);
        let body = retry::retry(
            &self.retry,
            "Tiingo prices request",
            |attempt| {
                let url = &url;
                async move {
                    self.limiter.until_ready().await;
                    let started = Instant::now();
                    let body = self.attempt(ticker, url).await?;
                    debug!(
                        attempt,
                        elapsed_ms = started.elapsed().as_millis(),
                        bytes = body.len(),
                        "prices received"
                    );
                    Ok(body)
                }
            },
            |last, attempts| TiingoError::GaveUp {
                ticker: ticker.to_string(),
                attempts,
                last,
            },
        )
        .await?;
        wire::parse_prices(&body).map_err(|e| TiingoError::Malformed {
            ticker: ticker.to_string(),
            detail: e.to_string(),
        })
    }

    async fn attempt(
        &self,
        ticker: &TiingoTicker,
        url: &Url,
    ) -> Result<Vec<u8>, Attempt<Transient, TiingoError>> {
        let transport = |e: reqwest::Error| Attempt::Retry {
            reason: if e.is_timeout() {
                Transient::Timeout(self.timeout)
            } else {
                Transient::Connection(self.redact(&error_chain(&e.without_url())))
            },
            after: None,
        };
        let mut response = self.http.get(url.clone()).send().await.map_err(transport)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Attempt::Stop(TiingoError::Malformed {
                    ticker: ticker.to_string(),
                    detail: format!("body larger than {MAX_BODY_BYTES} bytes"),
                }));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        match classify_status(status, response.headers()) {
            Verdict::Retry { reason, after } => Err(Attempt::Retry { reason, after }),
            Verdict::Fail => {
                let detail = self.redact(&wire::error_detail(&body).map_or_else(
                    || status.canonical_reason().unwrap_or("error").to_owned(),
                    |d| one_line(&d),
                ));
                let (ticker, status) = (ticker.to_string(), status.as_u16());
                Err(Attempt::Stop(match status {
                    404 => TiingoError::NotFound {
                        ticker,
                        status,
                        detail,
                    },
                    401 | 403 => TiingoError::Unauthorized {
                        ticker,
                        status,
                        detail,
                    },
                    _ => TiingoError::Rejected {
                        ticker,
                        status,
                        detail,
                    },
                }))
            }
        }
    }

    /// `text` with the token replaced, should a server or a library quote it.
    fn redact(&self, text: &str) -> String {
        text.replace(self.token.expose(), "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> TiingoClient {
        TiingoClient::new(&TiingoOptions {
            base_url: Url::parse("http://127.0.0.1:9/prefix/").unwrap(),
            token: TiingoToken::parse("tok-abc123"),
            timeout: Duration::from_secs(1),
            requests_per_hour: NonZeroU32::new(50).unwrap(),
            retry: RetryPolicy {
                max_retries: 0,
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
        })
        .unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn the_url_asks_up_to_today_and_never_holds_the_token() {
        let window = DateWindow::new(d("2024-01-02"), d("2024-03-29")).unwrap();
        let ticker =
            TiingoTicker::from_yahoo(&crate::domain::YahooSymbol::parse("BRK-B").unwrap()).unwrap();
        let url = client().prices_url(&ticker, &window, d("2026-11-21"));
        assert_eq!(url.path(), "/prefix/tiingo/daily/brk-b/prices");
        assert_eq!(
            url.query(),
            Some("startDate=2024-01-02&endDate=2026-11-21&format=json&resampleFreq=daily")
        );
        assert!(!url.as_str().contains("tok-abc123"));
        // A window ending after "today" (clock skew) keeps its end.
        let url = client().prices_url(&ticker, &window, d("2024-01-05"));
        assert!(url.query().unwrap().contains("endDate=2024-03-29"), "{url}");
    }

    #[test]
    fn statuses_are_classified_and_messages_redacted() {
        let headers = HeaderMap::new();
        assert_eq!(
            classify_status(StatusCode::NOT_FOUND, &headers),
            Verdict::Fail
        );
        assert_eq!(
            classify_status(StatusCode::UNAUTHORIZED, &headers),
            Verdict::Fail
        );
        assert_eq!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, &headers),
            Verdict::Retry {
                reason: Transient::RateLimited,
                after: None
            }
        );
        assert_eq!(
            client().redact("bad token tok-abc123 given"),
            "bad token [redacted] given"
        );
    }
}
