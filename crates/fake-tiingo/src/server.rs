//! The HTTP server: routing, the token check, the request log and per-ticker scenarios.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use chrono::{NaiveDate, Utc};
use fake_yahoo::{CorporateAction, Serving};
use tokio::sync::watch;

use crate::prices::prices;

/// The token the fake accepts unless told another.
pub const DEFAULT_TOKEN: &str = "fake-tiingo-token-0123456789";
const JSON: &str = "application/json";
const PREFIX: &str = "/tiingo/daily/";

/// Server settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Seed of the synthetic series: the same as fake-yahoo's gives the same prices.
    pub seed: u64,
    /// The API token requests must carry.
    pub token: String,
    /// Delay added before every response.
    pub latency: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 42,
            token: DEFAULT_TOKEN.to_owned(),
            latency: Duration::ZERO,
        }
    }
}

/// One request as received, before its scenario is applied.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The ticker path segment, upper-cased (`NVDA` for `/tiingo/daily/nvda/prices`).
    pub ticker: String,
    /// The path and query exactly as received.
    pub uri: String,
    pub query: HashMap<String, String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// How the server answers requests for one ticker.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// fake-yahoo's synthetic bars, on Tiingo's basis; the default for every ticker.
    Synthetic,
    /// Synthetic bars with these splits and dividends, answered as Tiingo would now: raw
    /// prices, `splitFactor` and `divCash` on the ex-date rows, `adjClose` adjusted for all.
    Actions(Vec<CorporateAction>),
    /// Like [`Scenario::Actions`], answered as Tiingo would have on `as_of`: no row after it,
    /// the adjustments known then (fake-yahoo's `ActionsAsOf` for the same date agrees).
    ActionsAsOf {
        actions: Vec<CorporateAction>,
        as_of: NaiveDate,
    },
    /// HTTP 404 `{"detail":"Error: Ticker 'X' not found"}`.
    NotFound,
    /// HTTP 401 `{"detail":"Invalid token."}` whatever the token.
    Unauthorized,
    /// HTTP 429, with `Retry-After` when `Some`.
    RateLimited { retry_after_secs: Option<u64> },
    /// HTTP 500.
    ServerError,
    /// HTTP 200 `[]`: no session in the window.
    Empty,
    /// This status and body exactly.
    Body { status: u16, body: String },
    /// Request n gets element n; the last repeats.
    Sequence(Vec<Scenario>),
}

impl Scenario {
    fn for_request(&self, n: usize) -> Scenario {
        match self {
            Scenario::Sequence(items) => match items.len().checked_sub(1) {
                None => Scenario::Synthetic,
                Some(last) => items.get(n.min(last)).map_or(Scenario::Synthetic, |s| {
                    s.for_request(n.saturating_sub(last))
                }),
            },
            other => other.clone(),
        }
    }
}

struct Armed {
    scenario: Scenario,
    served: usize,
}

struct Shared {
    seed: u64,
    token: String,
    latency: Duration,
    scenarios: Mutex<HashMap<String, Armed>>,
    log: Mutex<Vec<RequestRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake Tiingo. Dropping it (or [`FakeTiingo::shutdown`]) stops it.
pub struct FakeTiingo {
    shared: Arc<Shared>,
    serving: Serving,
}

impl std::fmt::Debug for FakeTiingo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTiingo")
            .field("addr", &self.serving.addr())
            .finish_non_exhaustive()
    }
}

impl FakeTiingo {
    /// Binds `opts.bind` and starts serving on the current Tokio runtime.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(opts: Options) -> io::Result<FakeTiingo> {
        let listener = tokio::net::TcpListener::bind(opts.bind).await?;
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            seed: opts.seed,
            token: opts.token,
            latency: opts.latency,
            scenarios: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/tiingo/daily/{ticker}/prices", get(daily))
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        let serving = Serving::spawn(listener, app, stop)?;
        Ok(FakeTiingo { shared, serving })
    }

    /// `http://IP:PORT`, no trailing slash.
    #[must_use]
    pub fn base_url(&self) -> String {
        self.serving.base_url()
    }

    /// The token the server accepts.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Sets how requests for `ticker` (any case) are answered from now on.
    pub fn set_scenario(&self, ticker: &str, scenario: Scenario) {
        lock(&self.shared.scenarios).insert(
            ticker.to_ascii_uppercase(),
            Armed {
                scenario,
                served: 0,
            },
        );
    }

    /// Every request received so far, in arrival order.
    #[must_use]
    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// Stops accepting connections and waits (up to 5 s) for open ones to finish.
    pub async fn shutdown(self) {
        self.serving.shutdown().await;
    }
}

fn json(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

fn detail(status: StatusCode, text: &str) -> Response {
    json(status, serde_json::json!({ "detail": text }).to_string())
}

async fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

async fn daily(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let ticker = uri
        .path()
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix("/prices"))
        .unwrap_or_default()
        .to_ascii_uppercase();
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let authorization = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(&shared.log).push(RequestRecord {
        ticker: ticker.clone(),
        uri: uri.to_string(),
        query: query.clone(),
        authorization: authorization.clone(),
    });
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let presented = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Token "))
        .or(query.get("token").map(String::as_str));
    match presented {
        None => return detail(StatusCode::UNAUTHORIZED, "Please supply a token"),
        Some(t) if t != shared.token => return detail(StatusCode::UNAUTHORIZED, "Invalid token."),
        Some(_) => {}
    }
    let scenario = match lock(&shared.scenarios).get_mut(&ticker) {
        Some(armed) => {
            let s = armed.scenario.for_request(armed.served);
            armed.served += 1;
            s
        }
        None => Scenario::Synthetic,
    };
    let (actions, as_of) = match scenario {
        Scenario::Synthetic => (Vec::new(), None),
        Scenario::Actions(actions) => (actions, None),
        Scenario::ActionsAsOf { actions, as_of } => (actions, Some(as_of)),
        Scenario::NotFound => {
            return detail(
                StatusCode::NOT_FOUND,
                &format!("Error: Ticker '{ticker}' not found"),
            );
        }
        Scenario::Unauthorized => return detail(StatusCode::UNAUTHORIZED, "Invalid token."),
        Scenario::RateLimited { retry_after_secs } => {
            let mut response = detail(
                StatusCode::TOO_MANY_REQUESTS,
                "You have run over your hourly request allocation.",
            );
            if let Some(secs) = retry_after_secs {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            return response;
        }
        Scenario::ServerError => {
            return detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
        Scenario::Empty => return json(StatusCode::OK, "[]".to_owned()),
        Scenario::Body { status, body } => {
            return json(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            );
        }
        Scenario::Sequence(_) => (Vec::new(), None),
    };
    let today = Utc::now().date_naive();
    let date = |key: &str, default: NaiveDate| match query.get(key) {
        None => Ok(default),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| format!("Error: {key} {text:?} is not a date (YYYY-MM-DD)")),
    };
    let (start, end) = match (date("startDate", today), date("endDate", today)) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(e), _) | (_, Err(e)) => return detail(StatusCode::BAD_REQUEST, &e),
    };
    let rows = prices(&ticker, start, end, shared.seed, &actions, as_of);
    json(
        StatusCode::OK,
        serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned()),
    )
}
