//! Retries of HTTP requests, one loop shared by the clients of Yahoo (`fetch`), Chroma (`index`)
//! and the embeddings endpoint (`embed::openai`).
//!
//! *Whether* to try again is each client's decision: it classifies a failed attempt as
//! [`Attempt::Retry`] (429, 5xx, timeout, dropped connection) or [`Attempt::Stop`] (anything
//! else), with its own error types and messages. *When* is decided here, the same way for all:
//! backon's jittered exponential backoff from a [`RetryPolicy`], where a server's `Retry-After`
//! ([`retry_after`]) can only lengthen a wait, and never beyond the policy's `max`.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tracing::warn;

/// How retries are timed.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts in all).
    pub max_retries: u32,
    /// First backoff delay; doubles each time, with jitter.
    pub base: Duration,
    /// Cap on any single wait, including one asked for by `Retry-After`.
    pub max: Duration,
}

impl RetryPolicy {
    /// The waits before each retry, `max_retries` of them.
    pub(crate) fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(usize::try_from(self.max_retries).unwrap_or(usize::MAX))
            .build()
    }
}

/// `Retry-After` as seconds or as an HTTP date.
#[must_use]
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (when.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

/// What to do after a non-success status, with a client's own reason type `T`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<T> {
    /// Try again, not sooner than `after` if the server said so.
    Retry { reason: T, after: Option<Duration> },
    /// Give up now.
    Fail,
}

/// 429 (`rate_limited`) and 5xx (`server(status)`) are worth retrying, not sooner than the
/// server's `Retry-After`; any other status is not. The rule of the Yahoo and Tiingo clients.
pub fn classify_status<T>(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    rate_limited: T,
    server: impl FnOnce(u16) -> T,
) -> Verdict<T> {
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Verdict::Retry {
            reason: rate_limited,
            after: retry_after(headers),
        }
    } else if status.is_server_error() {
        Verdict::Retry {
            reason: server(status.as_u16()),
            after: retry_after(headers),
        }
    } else {
        Verdict::Fail
    }
}

/// A failure worth trying again, for clients whose messages need no more than the status and the
/// server's own words (Chroma, the embeddings endpoint; Yahoo's has its own wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Transient {
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Connection(String),
}

/// Transport failures (no status) are all transient; the detail is short enough for one line.
pub(crate) fn classify_transport(error: &reqwest::Error, timeout: Duration) -> Transient {
    if error.is_timeout() {
        return Transient::Timeout(timeout);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut innermost = error.to_string();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Transient::Connection(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => "connection reset".into(),
                std::io::ErrorKind::TimedOut => "connection timed out".into(),
                _ => io.to_string(),
            });
        }
        innermost = e.to_string();
        source = e.source();
    }
    Transient::Connection(innermost)
}

/// How one attempt failed.
pub(crate) enum Attempt<R, E> {
    /// Worth another try, not sooner than `after` if the server said so.
    Retry { reason: R, after: Option<Duration> },
    /// Not worth another try: this is the error.
    Stop(E),
}

/// Runs `attempt` (given its 1-based number) until it succeeds or stops, or until the policy's
/// retries are used up: then the error is `give_up(the last reason, attempts made)`. Waits
/// between attempts as the module doc says; `what` names the request in the log line of each
/// retry.
pub(crate) async fn retry<T, R, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: F,
    give_up: impl FnOnce(R, u32) -> E,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Attempt<R, E>>>,
    R: Display,
{
    let mut delays = policy.backoff();
    let mut number: u32 = 0;
    loop {
        number += 1;
        let (reason, after) = match attempt(number).await {
            Ok(value) => return Ok(value),
            Err(Attempt::Stop(e)) => return Err(e),
            Err(Attempt::Retry { reason, after }) => (reason, after),
        };
        let Some(backoff) = delays.next() else {
            return Err(give_up(reason, number));
        };
        let wait = after.map_or(backoff, |a| a.min(policy.max).max(backoff));
        warn!(attempt = number, error = %reason, wait_ms = wait.as_millis(), "retrying {what}");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use reqwest::header::HeaderValue;

    use super::*;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base: Duration::from_millis(1),
            max: Duration::from_millis(300),
        }
    }

    #[test]
    fn retry_after_as_seconds_or_http_date() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = (Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&headers).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[tokio::test]
    async fn retries_until_success_and_retry_after_lengthens_the_wait() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let result: Result<u32, String> = retry(
            &policy(3),
            "test",
            |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 3 {
                        Err(Attempt::Retry {
                            reason: "busy",
                            after: Some(Duration::from_millis(100)),
                        })
                    } else {
                        Ok(n)
                    }
                }
            },
            |reason, n| format!("gave up after {n}: {reason}"),
        )
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // The backoff alone would wait 1-4 ms; Retry-After makes each wait 100 ms.
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn retry_after_is_capped_by_the_policy() {
        let started = Instant::now();
        let result: Result<(), String> = retry(
            &policy(1),
            "test",
            |n| async move {
                if n == 1 {
                    Err(Attempt::Retry {
                        reason: "busy",
                        after: Some(Duration::from_secs(3600)),
                    })
                } else {
                    Ok(())
                }
            },
            |reason, _| reason.to_owned(),
        )
        .await;
        assert_eq!(result, Ok(()));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn stops_at_once_or_gives_up_after_the_retries() {
        let calls = AtomicU32::new(0);
        let stopped: Result<(), String> = retry(
            &policy(3),
            "test",
            |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Attempt::<&str, _>::Stop("denied".to_owned())) }
            },
            |reason, _| reason.to_owned(),
        )
        .await;
        assert_eq!(stopped, Err("denied".to_owned()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let gave_up: Result<(), String> = retry(
            &policy(2),
            "test",
            |_| async {
                Err(Attempt::Retry {
                    reason: "busy",
                    after: None,
                })
            },
            |reason, n| format!("{reason} after {n} attempts"),
        )
        .await;
        assert_eq!(gave_up, Err("busy after 3 attempts".to_owned()));
    }

    #[test]
    fn backoff_grows_and_stops() {
        let policy = RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(100),
            max: Duration::from_millis(250),
        };
        let delays: Vec<_> = policy.backoff().collect();
        assert_eq!(delays.len(), 3);
        // jitter adds up to one base delay on top; the cap applies before jitter
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] <= Duration::from_millis(200));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(500)));
    }
}
