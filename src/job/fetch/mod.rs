//! Stage 2: fetch. A client for Yahoo's chart endpoint that owns its `reqwest::Client`, a global
//! polite rate limit, a per-request timeout, and retries.
//!
//! Retries decide *whether* apart from *when*: [`classify_status`] and [`classify_transport`] say
//! whether a failure is transient (429, 5xx, timeout, dropped connection) or permanent (404
//! delisted, 400, any other 4xx, a body that is not chart JSON); the loop in [`crate::support::retry`]
//! (shared with the Chroma and embeddings clients) says when: `backon`'s exponential backoff with
//! jitter, where a `Retry-After` header can only lengthen the wait (up to `retry_max`).
//!
//! Throttling is not retried per security: every request passes the run's [`Throttle`], which
//! pauses the whole stage when answers across securities are throttled, and stops it (the rest
//! skipped) when that does not help; see `throttle.rs`.

pub mod throttle;
pub mod tiingo;
pub mod wire;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tracing::debug;
use url::Url;

use crate::domain::{DateWindow, YahooSymbol};
use crate::support::http::client_builder;
use crate::support::retry::{self, Attempt};
pub use crate::support::retry::{RetryPolicy, retry_after};
use crate::support::text::{body_start, error_chain};
pub use throttle::{Answer, Stopped, Throttle, ThrottleReport, ThrottleSettings};
pub use wire::ChartEnvelope;

/// Yahoo answers clients without a browser-like User-Agent with 429/403 (reference README).
/// A connection attempt to Yahoo takes at most this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::config::env::DEFAULT_USER_AGENT as USER_AGENT;

/// A chart body larger than this is not a daily series (10 years of bars is ~300 KB).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Characters kept as they are in the symbol's path segment; everything else is %-encoded
/// (`^GSPC` -> `%5EGSPC`, `EURUSD=X` -> `EURUSD%3DX`).
const SYMBOL_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// Why fetching one security failed. Each message names the symbol and what to do.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "Yahoo has no data for {symbol} (HTTP {status}: {description}); check the symbol in the config or set enabled: false"
    )]
    NotFound {
        symbol: String,
        status: u16,
        description: String,
    },
    #[error(
        "Yahoo rejected the request for {symbol} (HTTP {status}: {description}); check the symbol and the date window"
    )]
    Rejected {
        symbol: String,
        status: u16,
        description: String,
    },
    #[error("Yahoo answered {symbol} with an error: {description}")]
    YahooError { symbol: String, description: String },
    #[error(
        "Yahoo's response for {symbol} is not valid chart JSON ({detail}); nothing was stored for it, rerun later"
    )]
    Malformed { symbol: String, detail: String },
    /// A throttled answer (429, or a 2xx that is empty, HTML or "Too Many Requests"); the run's
    /// [`Throttle`] decides what follows, so this never ends a security by itself.
    #[error("Yahoo throttled the request for {symbol} (HTTP {status}: {body})")]
    Throttled {
        symbol: String,
        status: u16,
        body: String,
        after: Option<Duration>,
    },
    /// The run stopped fetching before this security's turn (or between its retries).
    #[error("{symbol}: {reason}")]
    Skipped { symbol: String, reason: Stopped },
    #[error("gave up on {symbol} after {attempts} attempts: {last}; rerun later")]
    GaveUp {
        symbol: String,
        attempts: u32,
        last: Transient,
    },
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// A failure worth trying again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Transient {
    #[error("Yahoo is rate-limiting (HTTP 429); lower encoding.requests_per_second or batch_size")]
    RateLimited,
    #[error("Yahoo server error (HTTP {0})")]
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

/// Transport failures (no status): timeouts and broken connections are all transient.
#[must_use]
pub fn classify_transport(error: &reqwest::Error, timeout: Duration) -> Transient {
    if error.is_timeout() {
        Transient::Timeout(timeout)
    } else {
        Transient::Connection(error_chain(error))
    }
}

/// Everything the client needs; built from `securities.yaml` and `YAHOO_BASE_URL`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub base_url: Url,
    pub timeout: Duration,
    pub requests_per_second: NonZeroU32,
    pub retry: RetryPolicy,
    /// The User-Agent sent to Yahoo (`YAHOO_USER_AGENT`, default [`USER_AGENT`]).
    pub user_agent: String,
    /// The run-wide throttle and the request budget.
    pub throttle: ThrottleSettings,
}

/// Yahoo's chart endpoint. Cheap to share by reference across concurrent fetches.
pub struct YahooClient {
    http: reqwest::Client,
    base_url: Url,
    timeout: Duration,
    limiter: Arc<DefaultDirectRateLimiter>,
    retry: RetryPolicy,
    throttle: Throttle,
}

impl YahooClient {
    pub fn new(options: &ClientOptions) -> Result<Self, FetchError> {
        let http = client_builder(options.timeout, CONNECT_TIMEOUT)
            .user_agent(options.user_agent.as_str())
            .build()
            .map_err(FetchError::Client)?;
        Ok(Self {
            http,
            base_url: options.base_url.clone(),
            timeout: options.timeout,
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(
                options.requests_per_second,
            ))),
            retry: options.retry,
            throttle: Throttle::new(options.throttle),
        })
    }

    /// What the run-wide throttle did so far (requests sent, pauses, why it stopped).
    #[must_use]
    pub fn throttle_report(&self) -> ThrottleReport {
        self.throttle.report()
    }

    /// The chart URL for `symbol` over `window`. The window is widened by a day on each side so
    /// that exchanges whose local midnight falls on the previous UTC day (London in summer,
    /// Tokyo) are covered; `validate` keeps only bars whose exchange-local date is in the window.
    #[must_use]
    pub fn chart_url(&self, symbol: &YahooSymbol, window: &DateWindow) -> Url {
        let mut url = self.base_url.clone();
        let encoded = utf8_percent_encode(symbol.as_str(), SYMBOL_SEGMENT).to_string();
        let path = format!(
            "{}/v8/finance/chart/{encoded}",
            url.path().trim_end_matches('/')
        );
        url.set_path(&path);
        url.query_pairs_mut()
            .clear()
            .append_pair(
                "period1",
                &unix_midnight(window.from().pred_opt()).to_string(),
            )
            .append_pair(
                "period2",
                &unix_midnight(window.to().succ_opt().and_then(|d| d.succ_opt())).to_string(),
            )
            .append_pair("interval", "1d")
            .append_pair("events", "div,splits")
            .append_pair("includeAdjustedClose", "true");
        url
    }

    /// Fetches and parses the daily chart of one security, retrying transient failures. A
    /// throttled answer is retried after the run's throttle admits the next request (which
    /// may mean a run-wide pause); it counts against this security's `max_retries` only while
    /// the throttle is not engaged (a lone 429, not a run being blocked).
    #[tracing::instrument(name = "yahoo.chart", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn chart(
        &self,
        symbol: &YahooSymbol,
        window: &DateWindow,
    ) -> Result<ChartEnvelope, FetchError> {
        let url = self.chart_url(symbol, window);
        let mut own_throttled = 0u32;
        let mut waits = self.retry.backoff();
        loop {
            let body = retry::retry(
                &self.retry,
                "Yahoo chart request",
                |attempt| {
                    let url = &url;
                    async move {
                        let _admission = self.throttle.admit().await.map_err(|reason| {
                            Attempt::Stop(FetchError::Skipped {
                                symbol: symbol.to_string(),
                                reason,
                            })
                        })?;
                        self.limiter.until_ready().await;
                        let started = Instant::now();
                        let result = self.attempt(symbol, url).await;
                        self.throttle.record(match &result {
                            Ok(_)
                            | Err(Attempt::Stop(
                                FetchError::NotFound { .. } | FetchError::Rejected { .. },
                            )) => Answer::Usable,
                            Err(Attempt::Stop(FetchError::Throttled { .. })) => Answer::Throttled,
                            Err(_) => Answer::Neutral,
                        });
                        let body = result?;
                        debug!(
                            attempt,
                            elapsed_ms = started.elapsed().as_millis(),
                            bytes = body.len(),
                            "chart received"
                        );
                        Ok(body)
                    }
                },
                |last, attempts| FetchError::GaveUp {
                    symbol: symbol.to_string(),
                    attempts,
                    last,
                },
            )
            .await;
            match body {
                Ok(body) => return decode(symbol, &body),
                Err(FetchError::Throttled { after, .. }) => {
                    if !self.throttle.engaged() {
                        own_throttled += 1;
                        if own_throttled > self.retry.max_retries {
                            return Err(FetchError::GaveUp {
                                symbol: symbol.to_string(),
                                attempts: own_throttled,
                                last: Transient::RateLimited,
                            });
                        }
                    }
                    let wait = waits.next().unwrap_or(self.retry.max);
                    let wait = after.map_or(wait, |a| a.max(wait)).min(self.retry.max);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One chart request for `symbol` over `window`, no retry, outside the throttle: what
    /// `market-encoder check` shows of Yahoo (status, latency, whether it is chart JSON,
    /// whether it looks throttled). `Err` only when no answer came.
    #[tracing::instrument(name = "yahoo.probe", skip_all, fields(symbol = %symbol), err(Display))]
    pub async fn probe(
        &self,
        symbol: &YahooSymbol,
        window: &DateWindow,
    ) -> Result<Probe, Transient> {
        let started = Instant::now();
        let url = self.chart_url(symbol, window);
        let transport = |e: reqwest::Error| classify_transport(&e, self.timeout);
        let response = self.http.get(url).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport)?;
        let throttled = status == 429 || (status / 100 == 2 && throttle::looks_throttled(&body));
        let chart = if throttled {
            None
        } else {
            wire::parse_chart(&body).ok()
        };
        let result = chart
            .as_ref()
            .and_then(|c| c.chart.result.as_ref())
            .and_then(|r| r.first());
        Ok(Probe {
            status,
            elapsed: started.elapsed(),
            bytes: body.len(),
            throttled,
            is_chart: chart.is_some(),
            bars: result.map(|r| r.timestamp.as_ref().map_or(0, Vec::len)),
            yahoo_error: chart
                .as_ref()
                .and_then(|c| c.chart.error.as_ref())
                .map(|e| {
                    e.description
                        .clone()
                        .or_else(|| e.code.clone())
                        .unwrap_or_default()
                }),
            body_start: body_start(&body),
        })
    }

    async fn attempt(
        &self,
        symbol: &YahooSymbol,
        url: &Url,
    ) -> Result<Vec<u8>, Attempt<Transient, FetchError>> {
        let transport = |e: reqwest::Error| Attempt::Retry {
            reason: classify_transport(&e, self.timeout),
            after: None,
        };
        let mut response = self.http.get(url.clone()).send().await.map_err(transport)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Attempt::Stop(FetchError::Malformed {
                    symbol: symbol.to_string(),
                    detail: format!(
                        "HTTP {}, body larger than {MAX_BODY_BYTES} bytes",
                        status.as_u16()
                    ),
                }));
            }
            body.extend_from_slice(&chunk);
        }
        let throttled = status == StatusCode::TOO_MANY_REQUESTS
            || (status.is_success() && throttle::looks_throttled(&body));
        if throttled {
            return Err(Attempt::Stop(FetchError::Throttled {
                symbol: symbol.to_string(),
                status: status.as_u16(),
                body: body_start(&body),
                after: retry_after(response.headers()),
            }));
        }
        if status.is_success() {
            return Ok(body);
        }
        match classify_status(status, response.headers()) {
            Verdict::Retry { reason, after } => Err(Attempt::Retry { reason, after }),
            Verdict::Fail => {
                let description = wire::error_description(&body).unwrap_or_else(|| {
                    let reason = status.canonical_reason().unwrap_or("error");
                    if body.iter().all(u8::is_ascii_whitespace) {
                        reason.to_owned()
                    } else {
                        format!("{reason}, body: {}", body_start(&body))
                    }
                });
                let (symbol, status) = (symbol.to_string(), status.as_u16());
                Err(Attempt::Stop(if status == 404 {
                    FetchError::NotFound {
                        symbol,
                        status,
                        description,
                    }
                } else {
                    FetchError::Rejected {
                        symbol,
                        status,
                        description,
                    }
                }))
            }
        }
    }
}

/// What one probe request got back (see [`YahooClient::probe`]).
#[derive(Debug, Clone)]
pub struct Probe {
    pub status: u16,
    pub elapsed: Duration,
    pub bytes: usize,
    /// A 429, or a 2xx that is empty, HTML or says Too Many Requests.
    pub throttled: bool,
    /// The body is chart JSON.
    pub is_chart: bool,
    /// Bars in the answer, if it is chart JSON with a result.
    pub bars: Option<usize>,
    /// Yahoo's `chart.error`, if the answer carries one.
    pub yahoo_error: Option<String>,
    /// The first 200 bytes of the body, on one line.
    pub body_start: String,
}

fn decode(symbol: &YahooSymbol, body: &[u8]) -> Result<ChartEnvelope, FetchError> {
    let envelope = wire::parse_chart(body).map_err(|e| FetchError::Malformed {
        symbol: symbol.to_string(),
        detail: if body.first() == Some(&b'{') {
            format!("HTTP 200, {e}")
        } else {
            format!("HTTP 200, body starts: {}", body_start(body))
        },
    })?;
    if envelope.chart.result.is_none()
        && let Some(error) = &envelope.chart.error
    {
        return Err(FetchError::YahooError {
            symbol: symbol.to_string(),
            description: error
                .description
                .clone()
                .or_else(|| error.code.clone())
                .unwrap_or_else(|| "unspecified error".into()),
        });
    }
    Ok(envelope)
}

fn unix_midnight(date: Option<NaiveDate>) -> i64 {
    date.and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |dt| dt.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    use super::*;

    #[test]
    fn statuses_are_classified() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            classify_status(StatusCode::NOT_FOUND, &headers),
            Verdict::Fail
        );
        assert_eq!(
            classify_status(StatusCode::BAD_REQUEST, &headers),
            Verdict::Fail
        );
        assert_eq!(
            classify_status(StatusCode::FORBIDDEN, &headers),
            Verdict::Fail
        );
        assert_eq!(
            classify_status(StatusCode::BAD_GATEWAY, &headers),
            Verdict::Retry {
                reason: Transient::Server(502),
                after: None
            }
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, &headers),
            Verdict::Retry {
                reason: Transient::RateLimited,
                after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn symbols_are_percent_encoded_in_the_path() {
        let client = YahooClient::new(&ClientOptions {
            base_url: Url::parse("http://127.0.0.1:9/prefix/").unwrap(),
            timeout: Duration::from_secs(1),
            requests_per_second: NonZeroU32::new(1).unwrap(),
            retry: RetryPolicy {
                max_retries: 0,
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            user_agent: USER_AGENT.to_owned(),
            throttle: ThrottleSettings {
                after: 3,
                pause: Duration::from_secs(1),
                max_pauses: 0,
                max_requests: 1,
            },
        })
        .unwrap();
        let window = DateWindow::new(
            NaiveDate::from_ymd_opt(2024, 1, 2).unwrap(),
            NaiveDate::from_ymd_opt(2024, 3, 29).unwrap(),
        )
        .unwrap();
        let url = client.chart_url(&YahooSymbol::parse("^GSPC").unwrap(), &window);
        assert_eq!(url.path(), "/prefix/v8/finance/chart/%5EGSPC");
        let fx = client.chart_url(&YahooSymbol::parse("EURUSD=X").unwrap(), &window);
        assert!(fx.path().ends_with("/EURUSD%3DX"), "{fx}");
        let q = url.query().unwrap();
        // one day either side of the window: 2024-01-01 and 2024-03-31, 00:00 UTC
        assert!(q.contains("period1=1704067200"), "{q}");
        assert!(q.contains("period2=1711843200"), "{q}");
        assert!(q.contains("interval=1d") && q.contains("includeAdjustedClose=true"));
    }
}
