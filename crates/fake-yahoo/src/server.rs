//! The HTTP server: routing, request log, per-symbol scenarios and latency.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use percent_encoding::percent_decode_str;
use tokio::sync::watch;

use crate::actions::CorporateAction;
use crate::serving::Serving;
use crate::synthetic::{ChartEnvelope, VALID_RANGES, build_chart_as_of};

/// Exact body of Yahoo's 404 for an unknown or delisted symbol.
const DELISTED_BODY: &str = include_str!("../fixtures/chart-error-delisted.json");
/// Exact body of a recorded Yahoo 400 (a window before the symbol's listing).
const BAD_REQUEST_BODY: &str =
    include_str!("../fixtures/error_400_bad_request_beke_before_listing.json");
/// What Yahoo's API answers for paths it does not know.
const NOT_FOUND_BODY: &str = r#"{"finance":{"result":null,"error":{"code":"Not Found","description":"HTTP 404 Not Found"}}}"#;
const SERVER_ERROR_BODY: &str = "<html><head><title>500 Internal Server Error</title></head>\
<body><h1>Internal Server Error</h1><p>fake-yahoo: simulated server error</p></body></html>\n";

/// The content type Yahoo sends with chart JSON.
const JSON: &str = "application/json;charset=utf-8";
const CHART_PREFIX: &str = "/v8/finance/chart/";
/// How many bytes of a real-shaped body [`Scenario::Malformed`] sends.
const MALFORMED_LEN: usize = 100;

/// Server settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on; port 0 picks a free port (see [`FakeYahoo::addr`]).
    pub bind: SocketAddr,
    /// Delay added before every response (concurrent requests wait concurrently).
    pub latency: Duration,
    /// Seed of the synthetic price series.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            seed: 42,
        }
    }
}

/// One chart request as received, recorded before its scenario is applied.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The percent-decoded symbol path segment (`^GSPC` for `%5EGSPC`).
    pub symbol: String,
    /// The path as received, e.g. `/v8/finance/chart/%5EGSPC` (no query string).
    pub raw_path: String,
    /// Decoded query parameters (the last value wins for repeated keys).
    pub query: HashMap<String, String>,
    pub user_agent: Option<String>,
}

/// How the server answers chart requests for one symbol.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// Generated bars (see [`crate::synthetic_chart`]); the default for every symbol.
    Synthetic,
    /// Replay this response exactly (content type `application/json;charset=utf-8` unless
    /// `headers` sets one).
    Body {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Request n (counted from `set_scenario`) gets element n; the last element repeats forever.
    Sequence(Vec<Scenario>),
    /// HTTP 404 with Yahoo's "No data found, symbol may be delisted" body.
    Delisted,
    /// HTTP 400 with Yahoo's "Data doesn't exist for startDate = ..." body.
    BadRequest,
    /// HTTP 429, text body `Too Many Requests\r\n`, with `Retry-After` when `Some`.
    RateLimited { retry_after_secs: Option<u64> },
    /// HTTP 500 with a short HTML body.
    ServerError,
    /// Wait this long (on top of the latency), then answer like `Synthetic`.
    Hang(Duration),
    /// Send 200 and the first part of the body, then break the connection.
    DropConnection,
    /// HTTP 200, JSON content type, the first 100 bytes of a real-shaped body.
    Malformed,
    /// A `Synthetic` response whose `meta.symbol` is this other symbol.
    WrongSymbol(String),
    /// HTTP 200 with meta but no `timestamp` (no bars).
    Empty,
    /// HTTP 200 with `chart.result: null` and `chart.error` set.
    ErrorIn200,
    /// Synthetic bars with these splits and dividends, answered as Yahoo would at the request's
    /// window end (`period2`, or now if earlier): a split that has not happened by then leaves
    /// the bars on the old basis, a dividend that has happened lowers the `adjclose` of the bars
    /// before its ex-date, and `events` lists those that have happened inside the window.
    Actions(Vec<CorporateAction>),
    /// Like [`Scenario::Actions`], but answered as known on `as_of` whatever the window: a
    /// backfill of an older window made after the events (prices adjusted, events outside the
    /// window not listed).
    ActionsAsOf {
        actions: Vec<CorporateAction>,
        as_of: chrono::NaiveDate,
    },
}

impl Scenario {
    /// The scenario that serves the `n`-th request (0-based) since this one was set, with
    /// sequences (also nested ones) resolved.
    fn for_request(&self, n: usize) -> Scenario {
        match self {
            Scenario::Sequence(items) => match items.len().checked_sub(1) {
                None => Scenario::Synthetic,
                Some(last) if n < last => items
                    .get(n)
                    .map_or(Scenario::Synthetic, |s| s.for_request(0)),
                // The last element serves every later request; a nested sequence there
                // progresses from its own start.
                Some(last) => items
                    .get(last)
                    .map_or(Scenario::Synthetic, |s| s.for_request(n - last)),
            },
            other => other.clone(),
        }
    }

    /// Short name for the verbose log.
    fn kind(&self) -> &'static str {
        match self {
            Scenario::Synthetic => "synthetic",
            Scenario::Body { .. } => "body",
            Scenario::Sequence(_) => "sequence",
            Scenario::Delisted => "delisted",
            Scenario::BadRequest => "bad-request",
            Scenario::RateLimited { .. } => "rate-limited",
            Scenario::ServerError => "server-error",
            Scenario::Hang(_) => "hang",
            Scenario::DropConnection => "drop-connection",
            Scenario::Malformed => "malformed",
            Scenario::WrongSymbol(_) => "wrong-symbol",
            Scenario::Empty => "empty",
            Scenario::ErrorIn200 => "error-in-200",
            Scenario::Actions(_) => "actions",
            Scenario::ActionsAsOf { .. } => "actions as of",
        }
    }
}

/// What Yahoo sends when it blocks a whole run (see [`FakeYahoo::throttle_after`]); never with
/// a `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttling {
    /// HTTP 429, text `Too Many Requests\r\n`.
    PlainText,
    /// HTTP 429, text `Edge: Too Many Requests`.
    Edge,
    /// HTTP 429 with an HTML page.
    Html,
    /// HTTP 200 with an HTML outage page ("Will be right back").
    OutagePage,
    /// HTTP 200 with an empty body.
    EmptyBody,
}

impl std::str::FromStr for Throttling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "plain" => Throttling::PlainText,
            "edge" => Throttling::Edge,
            "html" => Throttling::Html,
            "outage" => Throttling::OutagePage,
            "empty" => Throttling::EmptyBody,
            other => {
                return Err(format!(
                    "unknown throttling {other:?}: expected plain, edge, html, outage or empty"
                ));
            }
        })
    }
}

const THROTTLED_HTML: &str = "<!DOCTYPE html><html><head><title>Yahoo</title></head><body>\
<h1>Too Many Requests</h1><p>fake-yahoo: simulated throttling</p></body></html>\n";
const OUTAGE_HTML: &str = "<!DOCTYPE html>\n<html lang=\"en-us\"><head><meta charset=\"utf-8\">\
<title>Yahoo</title></head><body><div class=\"box\"><h1>Will be right back...</h1>\
<p>Thank you for your patience.</p><p>Our engineers are working quickly to resolve the issue.</p>\
</div></body></html>\n";

fn throttled(kind: Throttling) -> Response {
    match kind {
        Throttling::PlainText => plain(
            StatusCode::TOO_MANY_REQUESTS,
            "text/plain;charset=utf-8",
            "Too Many Requests\r\n",
        ),
        Throttling::Edge => plain(
            StatusCode::TOO_MANY_REQUESTS,
            "text/plain;charset=utf-8",
            "Edge: Too Many Requests",
        ),
        Throttling::Html => plain(
            StatusCode::TOO_MANY_REQUESTS,
            "text/html;charset=utf-8",
            THROTTLED_HTML,
        ),
        Throttling::OutagePage => plain(StatusCode::OK, "text/html;charset=utf-8", OUTAGE_HTML),
        Throttling::EmptyBody => plain(StatusCode::OK, JSON, ""),
    }
}

/// A scenario and how many requests it has served so far.
struct Armed {
    scenario: Scenario,
    served: usize,
}

/// State shared by the handlers and the [`FakeYahoo`] handle.
struct Shared {
    seed: u64,
    latency: Duration,
    scenarios: Mutex<HashMap<String, Armed>>,
    log: Mutex<Vec<RequestRecord>>,
    counts: Mutex<HashMap<String, usize>>,
    /// Every chart request after the first `n` (counted over all symbols) is throttled.
    throttle: Mutex<Option<(usize, Throttling)>>,
    verbose: AtomicBool,
    /// Becomes true on shutdown; cuts latency and `Hang` sleeps short.
    stopping: watch::Receiver<bool>,
}

/// Locks a mutex, ignoring poisoning: the data are plain maps and lists that a panicking
/// holder cannot leave half-updated in a harmful way.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Logs the request and picks the scenario that answers it (in arrival order, so
    /// `Sequence` steps are handed out one per request).
    /// Records a request and picks its answer. Also returns its position among all requests
    /// received (1 for the first), taken under the log's lock: a second request arriving
    /// meanwhile must not move this one past [`FakeYahoo::throttle_after`]'s `n`.
    fn record_and_pick(&self, record: RequestRecord) -> (usize, Scenario) {
        let symbol = record.symbol.clone();
        let position = {
            let mut log = lock(&self.log);
            log.push(record);
            log.len()
        };
        *lock(&self.counts).entry(symbol.clone()).or_insert(0) += 1;
        let scenario = match lock(&self.scenarios).get_mut(&symbol) {
            Some(armed) => {
                let scenario = armed.scenario.for_request(armed.served);
                armed.served += 1;
                scenario
            }
            None => Scenario::Synthetic,
        };
        (position, scenario)
    }

    /// Sleeps for `d`, or less if the server is shutting down. Never blocks other requests.
    async fn pause(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let mut stopping = self.stopping.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }
}

/// A running fake Yahoo server. Dropping it (or [`FakeYahoo::shutdown`]) stops it.
pub struct FakeYahoo {
    shared: Arc<Shared>,
    serving: Serving,
}

impl std::fmt::Debug for FakeYahoo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeYahoo")
            .field("addr", &self.serving.addr())
            .finish_non_exhaustive()
    }
}

impl FakeYahoo {
    /// Binds `opts.bind` and starts serving on the current Tokio runtime.
    pub async fn start(opts: Options) -> io::Result<FakeYahoo> {
        let listener = tokio::net::TcpListener::bind(opts.bind).await?;
        let (stop, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            seed: opts.seed,
            latency: opts.latency,
            scenarios: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            counts: Mutex::new(HashMap::new()),
            throttle: Mutex::new(None),
            verbose: AtomicBool::new(false),
            stopping,
        });
        let app = Router::new()
            .route("/v8/finance/chart/{symbol}", get(chart))
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        let serving = Serving::spawn(listener, app, stop)?;
        Ok(FakeYahoo { shared, serving })
    }

    /// `http://IP:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.serving.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.serving.addr()
    }

    /// Sets how requests for `yahoo_symbol` (as Yahoo spells it, e.g. `^GSPC`) are answered
    /// from now on; a `Sequence` starts again at its first element.
    pub fn set_scenario(&self, yahoo_symbol: &str, scenario: Scenario) {
        lock(&self.shared.scenarios).insert(
            yahoo_symbol.to_string(),
            Armed {
                scenario,
                served: 0,
            },
        );
    }

    /// From now on, every chart request after the first `n` received since the server
    /// started (all symbols together) is answered as Yahoo answers a blocked run, whatever
    /// its symbol's scenario; [`FakeYahoo::stop_throttling`] lifts it.
    pub fn throttle_after(&self, n: usize, kind: Throttling) {
        *lock(&self.shared.throttle) = Some((n, kind));
    }

    /// Lifts [`FakeYahoo::throttle_after`].
    pub fn stop_throttling(&self) {
        *lock(&self.shared.throttle) = None;
    }

    /// Chart requests received so far, all symbols together.
    pub fn requests_total(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Chart requests received so far for `yahoo_symbol` (the decoded path segment).
    pub fn requests_for(&self, yahoo_symbol: &str) -> usize {
        lock(&self.shared.counts)
            .get(yahoo_symbol)
            .copied()
            .unwrap_or(0)
    }

    /// Every chart request received so far, in arrival order.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// Prints one line per chart request to stderr when on (off by default).
    pub fn set_verbose(&self, on: bool) {
        self.shared.verbose.store(on, Ordering::Relaxed);
    }

    /// Stops accepting connections, cuts pending latency/hang sleeps short and waits (up to
    /// 5 s) for open connections to finish.
    pub async fn shutdown(self) {
        self.serving.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn chart(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let raw_path = uri.path().to_string();
    let segment = raw_path.strip_prefix(CHART_PREFIX).unwrap_or(&raw_path);
    let symbol = percent_decode_str(segment).decode_utf8_lossy().into_owned();
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let user_agent = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let (received, scenario) = shared.record_and_pick(RequestRecord {
        symbol: symbol.clone(),
        raw_path,
        query: query.clone(),
        user_agent,
    });
    if shared.verbose.load(Ordering::Relaxed) {
        eprintln!(
            "fake-yahoo: GET {}{} -> {}",
            uri.path(),
            uri.query().map(|q| format!("?{q}")).unwrap_or_default(),
            scenario.kind()
        );
    }
    let throttling = *lock(&shared.throttle);
    shared.pause(shared.latency).await;
    match throttling {
        Some((n, kind)) if received > n => throttled(kind),
        _ => respond(&shared, &symbol, &query, scenario).await,
    }
}

async fn not_found(State(shared): State<Arc<Shared>>) -> Response {
    shared.pause(shared.latency).await;
    plain(StatusCode::NOT_FOUND, JSON, NOT_FOUND_BODY)
}

fn plain(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn respond(
    shared: &Shared,
    symbol: &str,
    query: &HashMap<String, String>,
    scenario: Scenario,
) -> Response {
    // Scenarios that need no valid request parameters.
    match scenario {
        Scenario::Body {
            status,
            body,
            headers,
        } => return replay(status, body, &headers),
        Scenario::Delisted => return plain(StatusCode::NOT_FOUND, JSON, DELISTED_BODY),
        Scenario::BadRequest => return plain(StatusCode::BAD_REQUEST, JSON, BAD_REQUEST_BODY),
        Scenario::RateLimited { retry_after_secs } => {
            let mut response = plain(
                StatusCode::TOO_MANY_REQUESTS,
                "text/plain;charset=utf-8",
                "Too Many Requests\r\n",
            );
            if let Some(secs) = retry_after_secs {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            return response;
        }
        Scenario::ServerError => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/html;charset=utf-8",
                SERVER_ERROR_BODY,
            );
        }
        Scenario::ErrorIn200 => {
            let body = ChartEnvelope::error("Not Found", "No data found, symbol may be delisted");
            return plain(StatusCode::OK, JSON, body.to_json());
        }
        Scenario::Hang(d) => shared.pause(d).await,
        _ => {}
    }

    // The rest are built on the synthetic chart, so the request must be valid first.
    let now = Utc::now().timestamp();
    let window = match parse_window(query, now) {
        Ok(window) => window,
        Err(description) => {
            let body = ChartEnvelope::error("Bad Request", description);
            return plain(StatusCode::BAD_REQUEST, JSON, body.to_json());
        }
    };
    let (actions, as_of) = match &scenario {
        Scenario::Actions(actions) => (actions.as_slice(), None),
        Scenario::ActionsAsOf { actions, as_of } => (
            actions.as_slice(),
            as_of
                .and_hms_opt(23, 59, 59)
                .map(|t| t.and_utc().timestamp()),
        ),
        _ => (&[][..], None),
    };
    let mut chart = build_chart_as_of(
        symbol,
        window.period1,
        window.period2,
        shared.seed,
        now,
        &window.range,
        actions,
        as_of,
    );
    match &scenario {
        Scenario::WrongSymbol(other) => chart.set_symbol(other),
        Scenario::Empty => chart.make_empty(),
        _ => {}
    }
    let body = Bytes::from(chart.to_json());
    match scenario {
        Scenario::Malformed => plain(
            StatusCode::OK,
            JSON,
            body.slice(..MALFORMED_LEN.min(body.len() / 2)),
        ),
        Scenario::DropConnection => drop_connection(body),
        _ => plain(StatusCode::OK, JSON, body),
    }
}

/// [`Scenario::Body`]: status, body and headers exactly as given.
fn replay(status: u16, body: String, headers: &[(String, String)]) -> Response {
    let mut builder = Response::builder().status(status);
    let has_content_type = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(CONTENT_TYPE.as_str()));
    if !has_content_type {
        builder = builder.header(CONTENT_TYPE, JSON);
    }
    for (name, value) in headers {
        // Invalid names or values surface as an error from `body()` below.
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(Body::from(body)).unwrap_or_else(|e| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain;charset=utf-8",
            format!("fake-yahoo: invalid Scenario::Body: {e}\n"),
        )
    })
}

/// [`Scenario::DropConnection`]: 200 and half the body, then the body stream fails, which
/// makes hyper abort the connection without the chunked terminator.
fn drop_connection(body: Bytes) -> Response {
    let first = body.slice(..body.len() / 2);
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let first = first.clone();
        async move {
            match step {
                0 => Some((Ok(first), 1)),
                1 => {
                    // Let the headers and the first chunk reach the client first.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let error = io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "fake-yahoo: simulated dropped connection",
                    );
                    Some((Err(error), 2))
                }
                _ => None,
            }
        }
    });
    plain(StatusCode::OK, JSON, Body::from_stream(stream))
}

/// The requested window in unix seconds, and `range` to echo in `meta.range`.
#[derive(Debug, PartialEq)]
struct Window {
    period1: i64,
    period2: i64,
    range: String,
}

/// Validates the query like Yahoo does; `Err` is the `chart.error.description` of a 400.
fn parse_window(query: &HashMap<String, String>, now: i64) -> Result<Window, String> {
    if let Some(interval) = query.get("interval")
        && interval != "1d"
    {
        return Err(format!(
            "Invalid input - interval={interval} is not supported. Valid intervals: \
             [1m, 2m, 5m, 15m, 30m, 60m, 90m, 1h, 4h, 1d, 5d, 1wk, 1mo, 3mo]"
        ));
    }
    let (p1, p2) = (query.get("period1"), query.get("period2"));
    if let (None, None, Some(range)) = (p1, p2, query.get("range")) {
        return range_window(range, now);
    }
    let period1 = parse_period("period1", p1)?;
    let period2 = parse_period("period2", p2)?;
    if period1 > period2 {
        return Err(format!(
            "Invalid input - start date cannot be after end date. \
             startDate = {period1}, endDate = {period2}"
        ));
    }
    Ok(Window {
        period1,
        period2,
        range: String::new(),
    })
}

fn parse_period(name: &str, value: Option<&String>) -> Result<i64, String> {
    let value = value.ok_or_else(|| format!("Invalid input - {name} is required"))?;
    value
        .trim()
        .parse()
        .map_err(|_| format!("Invalid input - {name}={value} is not a valid unix timestamp"))
}

/// `range=` instead of period1/period2: the window ends now.
fn range_window(range: &str, now: i64) -> Result<Window, String> {
    let end = DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default();
    let start = match range {
        "1d" => end.checked_sub_days(Days::new(1)),
        "5d" => end.checked_sub_days(Days::new(5)),
        "1mo" => end.checked_sub_months(Months::new(1)),
        "3mo" => end.checked_sub_months(Months::new(3)),
        "6mo" => end.checked_sub_months(Months::new(6)),
        "1y" => end.checked_sub_months(Months::new(12)),
        "2y" => end.checked_sub_months(Months::new(24)),
        "5y" => end.checked_sub_months(Months::new(60)),
        "10y" => end.checked_sub_months(Months::new(120)),
        "ytd" => NaiveDate::from_ymd_opt(end.year(), 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc()),
        "max" => Some(DateTime::<Utc>::UNIX_EPOCH),
        _ => {
            return Err(format!(
                "Invalid input - range={range} is not supported. Valid ranges: [{}]",
                VALID_RANGES.join(", ")
            ));
        }
    };
    Ok(Window {
        period1: start.map_or(0, |s| s.timestamp()),
        period2: now,
        range: range.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn window_validation() {
        let ok = parse_window(
            &q(&[("period1", "10"), ("period2", "20"), ("interval", "1d")]),
            0,
        );
        assert_eq!(ok.unwrap().period2, 20);
        assert!(parse_window(&q(&[("period1", "10"), ("period2", "20")]), 0).is_ok());
        let bad = parse_window(
            &q(&[("period1", "1"), ("period2", "2"), ("interval", "1wk")]),
            0,
        );
        assert!(
            bad.unwrap_err()
                .starts_with("Invalid input - interval=1wk is not supported")
        );
        assert!(parse_window(&q(&[("period1", "1")]), 0).is_err());
        assert!(parse_window(&q(&[("period1", "x"), ("period2", "2")]), 0).is_err());
        assert!(parse_window(&q(&[("period1", "3"), ("period2", "2")]), 0).is_err());
        let r = parse_window(&q(&[("range", "1mo")]), 1_709_232_389).unwrap();
        assert_eq!(r.range, "1mo");
        assert_eq!(r.period2 - r.period1, 31 * 86_400); // 2024-02-29 minus a month = 01-29
        assert!(parse_window(&q(&[("range", "7y")]), 0).is_err());
    }

    #[test]
    fn sequence_progression() {
        let seq = Scenario::Sequence(vec![
            Scenario::ServerError,
            Scenario::Sequence(vec![Scenario::Delisted, Scenario::Empty]),
        ]);
        let kinds: Vec<_> = (0..5).map(|n| seq.for_request(n).kind()).collect();
        assert_eq!(
            kinds,
            ["server-error", "delisted", "empty", "empty", "empty"]
        );
        assert_eq!(
            Scenario::Sequence(vec![]).for_request(3).kind(),
            "synthetic"
        );
    }
}
