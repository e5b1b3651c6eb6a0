//! `market-encoder serve`: the job as an always-on HTTP service.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /health` | 200 `{"status":"ok"}` while the process is up (liveness) |
//! | `GET /ready` | 200 when PostgreSQL answers `SELECT 1` within 2 s, else 503 with the reason (readiness) |
//! | `GET /status[?limit=N]` | the last N (20, at most 200) rows of `runs`, newest first |
//! | `POST /collect` | starts a run: 202 with its id; 401 without the right `Authorization: Bearer $COLLECT_TOKEN`, 403 when `COLLECT_TOKEN` is unset, 409 while a run is going (here or in another process) |
//! | `GET /ml-features[?date=D]` | the cross-asset features of the latest date (or D), as `features --json`; 404 when none |
//! | `GET /metrics` | Prometheus text (0.0.4) computed from the `runs` table |
//!
//! A run started by `POST /collect` or by `--every` is the CronJob's run: the same
//! [`JobOptions`] (built once at start by `app`, only the window recomputed for the day the run
//! starts) through [`job::start`] and [`StartedRun::finish`]. Two runs never overlap:
//! in this process a one-permit semaphore answers 409 at once, and PostgreSQL's advisory run
//! lock, taken before `POST /collect` answers, is the truth across processes (a CronJob pod
//! holding it makes `POST /collect` answer 409 too, and a scheduled tick skip).
//!
//! A run is not tied to the request that started it: it goes on in its own task, and on
//! SIGTERM/SIGINT the service stops accepting connections, the run in flight stops the way the
//! CronJob's does (recorded `interrupted`), and `serve` returns (exit 0).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};
use uuid::Uuid;

use crate::cli::JobArgs;
use crate::config::env::DatabaseSettings;
use crate::domain::DomainError;
use crate::job::store::{RunTotals, Store, StoreError};
use crate::job::{self, JobError, JobOptions, StartedRun};
use crate::read::features::{self, FeaturesError};
use crate::report;
use crate::support::text::one_line;

mod http;
pub use http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};

/// How long `/ready` waits for PostgreSQL.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the read endpoints wait for a pooled connection.
const READ_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Runs shown by `/status` without `?limit=`, and at most.
const STATUS_LIMIT: u32 = 20;
const STATUS_LIMIT_MAX: u32 = 200;
/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `serve` needs: where to listen, the schedule, the token, and the runs' options.
pub struct ServeOptions {
    pub bind: SocketAddr,
    pub every: Option<Duration>,
    /// `COLLECT_TOKEN`; `None` disables `POST /collect` (403).
    pub collect_token: Option<SecretString>,
    /// The options of every run; each run's window is recomputed from `job_args`.
    pub job: JobOptions,
    pub job_args: JobArgs,
    /// `encoding.days_back`, the window's length without `--days-back`.
    pub days_back: u32,
    pub database: DatabaseSettings,
}

/// Why the service could not start or went down.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {reason} (check --bind / MARKET_ENCODER_BIND)")]
    Bind { addr: SocketAddr, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a run did not start (answered to `POST /collect` at once; a scheduled tick logs it).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a run is in progress")]
    Busy { run_id: Option<Uuid> },
    #[error("the service is stopping; no new run is started")]
    Stopping,
    #[error("{0} (check --from/--to)")]
    Window(DomainError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("the run's task ended before it started")]
    Lost,
}

impl StartError {
    /// Another process (a CronJob pod, another replica) holds the run lock.
    fn is_locked(&self) -> bool {
        matches!(self, Self::Job(JobError::Store(StoreError::Locked { .. })))
    }
}

/// The service's shared state.
struct Service {
    job: JobOptions,
    job_args: JobArgs,
    days_back: u32,
    database: DatabaseSettings,
    collect_token: Option<SecretString>,
    /// A pool for the read endpoints (runs use their own, as the CronJob does).
    reads: Store,
    /// One permit: held by the run in flight, from before its start to after its end.
    gate: Arc<Semaphore>,
    /// The id of the run in flight, once it has one.
    current: Mutex<Option<Uuid>>,
    cancel: CancellationToken,
}

/// Holds the gate's permit for a run and forgets the run's id when dropped, also if the run's
/// task panics.
struct Slot {
    service: Arc<Service>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.service.set_current(None);
    }
}

impl Service {
    fn current(&self) -> Option<Uuid> {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_current(&self, run_id: Option<Uuid>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = run_id;
    }

    /// Starts a run the CronJob's way and returns its id once it holds the lock and has its
    /// `runs` row; the rest of the run goes on in its own task, which prints the summary line
    /// on stdout at the end, like the CronJob.
    async fn start_run(self: &Arc<Self>, trigger: &'static str) -> Result<Uuid, StartError> {
        let permit = Arc::clone(&self.gate)
            .try_acquire_owned()
            .map_err(|_| StartError::Busy {
                run_id: self.current(),
            })?;
        if self.cancel.is_cancelled() {
            return Err(StartError::Stopping);
        }
        let mut options = self.job.clone();
        options.window = self
            .job_args
            .window(self.days_back, Utc::now().date_naive())
            .map_err(StartError::Window)?;
        let slot = Slot {
            service: Arc::clone(self),
            _permit: permit,
        };
        let (started_tx, started_rx) = oneshot::channel();
        let service = Arc::clone(self);
        let span = info_span!("run_task", trigger);
        tokio::spawn(
            async move {
                let _slot = slot;
                let run = match job::start(&options, &service.database).await {
                    Ok(run) => run,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let run_id = run.id();
                service.set_current(Some(run_id));
                info!(%run_id, window = %options.window, securities = options.securities.len(), "run started");
                let _ = started_tx.send(Ok(run_id));
                finish(run, &options, &service.cancel).await;
            }
            .instrument(span),
        );
        match started_rx.await {
            Ok(Ok(run_id)) => Ok(run_id),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(StartError::Lost),
        }
    }
}

/// The rest of a started run, reported like the CronJob's: the summary JSON line on stdout,
/// the failure line in the log.
async fn finish(run: StartedRun, options: &JobOptions, cancel: &CancellationToken) {
    let run_id = run.id();
    match run.finish(options, cancel).await {
        Ok(report) => {
            println!("{}", report::json_line(&report));
            if let Some(line) = report::failure_line(&report) {
                warn!(%run_id, "{line}");
            }
        }
        Err(e) => error!(%run_id, error = %e, "the run failed"),
    }
}

/// Serves until `cancel` (SIGTERM/SIGINT), then waits for the run in flight to record itself.
pub async fn run(options: ServeOptions, cancel: &CancellationToken) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| ServeError::Bind {
            addr: options.bind,
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ServeError::Bind {
        addr: options.bind,
        reason: e.to_string(),
    })?;
    let reads = Store::connect_lazy(&options.database, 4, READ_ACQUIRE_TIMEOUT)?;
    if options.job.apply_migrations {
        // So that the read endpoints find their tables. Not fatal: the database may be down
        // now (`/ready` says so), and every run migrates again.
        match tokio::time::timeout(READ_ACQUIRE_TIMEOUT * 2, reads.migrate()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "could not apply migrations at start; each run tries again")
            }
            Err(_) => warn!("applying migrations at start timed out; each run tries again"),
        }
    }
    if options.collect_token.is_none() {
        warn!("POST /collect disabled: COLLECT_TOKEN is not set");
    }
    let service = Arc::new(Service {
        job: options.job,
        job_args: options.job_args,
        days_back: options.days_back,
        database: options.database,
        collect_token: options.collect_token,
        reads,
        gate: Arc::new(Semaphore::new(1)),
        current: Mutex::new(None),
        cancel: cancel.clone(),
    });

    // The first line on stdout, for whoever started us with port 0.
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let every = options.every.map_or_else(
        || "off".to_owned(),
        |e| humantime::format_duration(e).to_string(),
    );
    info!(%addr, %every, "listening");

    let scheduler = options.every.map(|every| {
        let service = Arc::clone(&service);
        tokio::spawn(schedule(every, cancel.clone(), move || {
            let service = Arc::clone(&service);
            async move { scheduled_run(&service).await }
        }))
    });
    http::serve(listener, router(Arc::clone(&service)), cancel.clone()).await;
    cancel.cancel(); // the server can only end by the signal; make sure the rest stops too
    if let Some(scheduler) = scheduler {
        let _ = scheduler.await;
    }
    // The run in flight sees the cancellation, records itself `interrupted` and releases
    // the permit.
    if service.current().is_some() || service.gate.available_permits() == 0 {
        info!("waiting for the run in flight to stop");
    }
    let _ = service.gate.acquire().await;
    info!("stopped");
    Ok(())
}

/// Calls `start` at once, then at every multiple of `every` from then, until `cancel`. A
/// multiple that passed while `start` itself was slow is skipped, not caught up.
pub async fn schedule<F, Fut>(every: Duration, cancel: CancellationToken, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let every = every.max(Duration::from_millis(1));
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(next) => {}
        }
        start().await;
        let now = tokio::time::Instant::now();
        while next <= now {
            next += every;
        }
    }
}

/// One tick of `--every`: a run, unless one is going (here or elsewhere).
async fn scheduled_run(service: &Arc<Service>) {
    match service.start_run("schedule").await {
        Ok(run_id) => info!(%run_id, "scheduled run started"),
        Err(StartError::Busy { run_id }) => {
            info!(
                run_id = run_id.map(tracing::field::display),
                "scheduled run skipped: a run is in progress"
            );
        }
        Err(StartError::Stopping) => {}
        Err(e) if e.is_locked() => {
            warn!(error = %e, "scheduled run skipped: another process holds the run lock");
        }
        Err(e) => error!(error = %e, "scheduled run could not start"),
    }
}

fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .route("/collect", post(collect))
        .route("/ml-features", get(ml_features))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(trace))
        .with_state(service)
}

/// A span per request; one event when it ends (debug for reads, which probes repeat; info for
/// `/collect`; warn for server errors). Headers are never logged.
async fn trace(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = info_span!("http", %method, %path);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        if status >= 500 {
            warn!(status, elapsed_ms, "request failed");
        } else if path == "/collect" {
            info!(status, elapsed_ms, "request");
        } else {
            debug!(status, elapsed_ms, "request");
        }
    });
    response
}

/// Every error answer is JSON: one that is not (axum's own 405, a body the handler did not
/// shape) becomes `{"error": "<reason>: <what it said>"}` with the same status.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let said = one_line(&String::from_utf8_lossy(&body));
    let reason = status.canonical_reason().unwrap_or("error");
    let message = match (&allow, said.is_empty()) {
        (Some(allow), _) => format!(
            "{reason}: {method} {path}; allowed: {}",
            allow.to_str().unwrap_or("")
        ),
        (None, true) => format!("{reason}: {method} {path}"),
        (None, false) => format!("{reason}: {said}"),
    };
    let mut response = ApiError::new(status, message).into_response();
    if let Some(allow) = allow {
        response
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    response
}

/// A JSON error: `{"error": "...", ...}` with a status.
struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            body: json!({ "error": one_line(&message.to_string()) }),
        }
    }

    /// The database failed or is unreachable: 503, the message names the target (password
    /// redacted).
    fn store(e: &StoreError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: GET /health, /ready, /status, /ml-features, /metrics; POST /collect",
    )
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(service): State<Arc<Service>>) -> Result<Json<serde_json::Value>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, service.reads.check()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(e)) => Err(ApiError::store(&e)),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "PostgreSQL at {} did not answer within {} s",
                service.reads.target(),
                READY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// A query parameter, parsed; a bad value is a 400 naming it.
fn param<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    query
        .get(name)
        .map(|value| {
            value.trim().parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{name}: {value:?} is not {what}"),
                )
            })
        })
        .transpose()
}

async fn status(
    State(service): State<Arc<Service>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = param::<u32>(&query, "limit", "a number of runs")?.unwrap_or(STATUS_LIMIT);
    if !(1..=STATUS_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "limit: {limit} is outside 1..={STATUS_LIMIT_MAX} (the number of runs to show)"
            ),
        ));
    }
    let runs = service
        .reads
        .recent_runs(limit)
        .await
        .map_err(|e| ApiError::store(&e))?;
    Ok(Json(json!({
        "run_in_progress": service.current(),
        "runs": runs,
    })))
}

async fn collect(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(token) = &service.collect_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "POST /collect is disabled: COLLECT_TOKEN is not set",
        ));
    };
    if !bearer(&headers).is_some_and(|presented| token_matches(token, presented)) {
        warn!("POST /collect refused: missing or wrong bearer token");
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer $COLLECT_TOKEN)",
        )
        .into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"market-encoder\""),
        );
        return Ok(response);
    }
    match service.start_run("POST /collect").await {
        Ok(run_id) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "run_id": run_id, "outcome": "running", "status": "/status" })),
        )
            .into_response()),
        Err(StartError::Busy { run_id }) => Err(ApiError {
            status: StatusCode::CONFLICT,
            body: json!({ "error": "a run is in progress", "run_id": run_id }),
        }),
        Err(e) if e.is_locked() => Err(ApiError {
            status: StatusCode::CONFLICT,
            body: json!({ "error": one_line(&e.to_string()), "run_id": null }),
        }),
        Err(e @ StartError::Stopping) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e)),
        Err(StartError::Job(JobError::Store(e))) => Err(ApiError::store(&e)),
        Err(e) => {
            error!(error = %e, "POST /collect: the run could not start");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares in time independent of where the two differ (`subtle`); only a difference in
/// length returns early, which tells an attacker the length at most.
fn token_matches(expected: &SecretString, presented: &str) -> bool {
    bool::from(
        expected
            .expose_secret()
            .as_bytes()
            .ct_eq(presented.as_bytes()),
    )
}

async fn ml_features(
    State(service): State<Arc<Service>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let date = param::<NaiveDate>(&query, "date", "a date (YYYY-MM-DD)")?;
    match features::read_stored(&service.reads, date).await {
        Ok((date, rows)) => Ok(Json(report::features_value(date, &rows))),
        Err(e @ (FeaturesError::NoData { .. } | FeaturesError::NoDate { .. })) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, e))
        }
        Err(FeaturesError::Store(e)) => Err(ApiError::store(&e)),
    }
}

async fn metrics(State(service): State<Arc<Service>>) -> Result<Response, ApiError> {
    let totals = service
        .reads
        .run_totals()
        .await
        .map_err(|e| ApiError::store(&e))?;
    let in_progress = service
        .reads
        .run_lock_held()
        .await
        .map_err(|e| ApiError::store(&e))?;
    Ok((
        [(CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        metrics_text(&totals, in_progress),
    )
        .into_response())
}

/// The outcomes a run can be recorded with; each gets a `runs_total` series, 0 included, so
/// that rates and alerts see it before it first happens.
const OUTCOMES: [&str; 6] = [
    "running",
    "succeeded",
    "partial",
    "failed",
    "interrupted",
    "abandoned",
];

/// The Prometheus text exposition (format 0.0.4) of the ledger's totals.
#[must_use]
pub fn metrics_text(totals: &RunTotals, in_progress: bool) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP market_encoder_{name} {help}");
        let _ = writeln!(out, "# TYPE market_encoder_{name} {kind}");
    };
    family(
        "runs_total",
        "counter",
        "Runs recorded in the runs table, by outcome (running: started, not finished).",
    );
    let mut counts: Vec<(&str, i64)> = OUTCOMES.iter().map(|o| (*o, 0)).collect();
    for (outcome, n) in &totals.runs {
        match counts.iter_mut().find(|(o, _)| o == outcome) {
            Some(entry) => entry.1 = *n,
            None => counts.push((outcome.as_str(), *n)),
        }
    }
    for (outcome, n) in counts {
        let _ = writeln!(
            out,
            "market_encoder_runs_total{{outcome=\"{}\"}} {n}",
            label_value(outcome)
        );
    }
    let mut sample = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP market_encoder_{name} {help}");
        let _ = writeln!(out, "# TYPE market_encoder_{name} {kind}");
        let _ = writeln!(out, "market_encoder_{name} {value}");
    };
    sample(
        "rows_written_total",
        "counter",
        "Price rows inserted or updated, over all runs.",
        totals.rows_written.to_string(),
    );
    sample(
        "features_written_total",
        "counter",
        "Cross-asset feature rows written, over all runs.",
        totals.features_written.to_string(),
    );
    sample(
        "securities_succeeded_total",
        "counter",
        "Securities stored successfully, over all runs.",
        totals.securities_ok.to_string(),
    );
    sample(
        "securities_failed_total",
        "counter",
        "Securities that failed, over all runs.",
        totals.securities_failed.to_string(),
    );
    sample(
        "last_run_duration_seconds",
        "gauge",
        "Wall time of the latest finished run (0: none yet).",
        float(totals.last_run_seconds.unwrap_or(0.0)),
    );
    sample(
        "last_run_timestamp_seconds",
        "gauge",
        "Unix time the latest finished run ended (0: none yet).",
        float(totals.last_run_finished.unwrap_or(0.0)),
    );
    sample(
        "last_success_timestamp_seconds",
        "gauge",
        "Unix time the last succeeded run ended (0: never).",
        float(totals.last_success.unwrap_or(0.0)),
    );
    sample(
        "run_in_progress",
        "gauge",
        "1 while some process (this service, a CronJob pod) holds the run lock, else 0.",
        u8::from(in_progress).to_string(),
    );
    let _ = writeln!(
        out,
        "# HELP market_encoder_run_duration_seconds Wall time of finished runs."
    );
    let _ = writeln!(out, "# TYPE market_encoder_run_duration_seconds summary");
    let _ = writeln!(
        out,
        "market_encoder_run_duration_seconds_sum {}",
        float(totals.finished_seconds)
    );
    let _ = writeln!(
        out,
        "market_encoder_run_duration_seconds_count {}",
        totals.finished_runs
    );
    out
}

/// A sample value: Rust's shortest round-trip form, which Prometheus parses (never exponent
/// notation for these magnitudes); non-finite values as Prometheus writes them.
fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() && value.is_sign_positive() {
        "+Inf".to_owned()
    } else if value.is_infinite() {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

/// A label value escaped as the text format wants (`\`, `"` and newlines).
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_schedule_runs_at_once_then_every_period_until_cancelled() {
        let every = Duration::from_secs(60);
        let cancel = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let times: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let task = tokio::spawn(schedule(every, cancel.clone(), {
            let times = Arc::clone(&times);
            move || {
                times.lock().unwrap().push(start.elapsed());
                async {}
            }
        }));
        tokio::time::sleep(Duration::from_secs(150)).await;
        cancel.cancel();
        task.await.unwrap();
        let secs: Vec<u64> = times
            .lock()
            .unwrap()
            .iter()
            .map(Duration::as_secs)
            .collect();
        assert_eq!(secs, [0, 60, 120]);
        // Nothing after the cancellation.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(times.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_start_skips_the_ticks_it_missed_instead_of_catching_up() {
        let every = Duration::from_secs(60);
        let cancel = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let calls = Arc::new(AtomicUsize::new(0));
        let times: Arc<Mutex<Vec<u64>>> = Arc::default();
        let task = tokio::spawn(schedule(every, cancel.clone(), {
            let (calls, times) = (Arc::clone(&calls), Arc::clone(&times));
            move || {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                times.lock().unwrap().push(start.elapsed().as_secs());
                async move {
                    if first {
                        // e.g. a database that takes long to refuse
                        tokio::time::sleep(Duration::from_secs(150)).await;
                    }
                }
            }
        }));
        tokio::time::sleep(Duration::from_secs(250)).await;
        cancel.cancel();
        task.await.unwrap();
        // 0 (slow until 150), then the next tick on the grid (180), not 60 and 120 at once.
        assert_eq!(*times.lock().unwrap(), [0, 180, 240]);
    }

    #[test]
    fn the_bearer_token_is_read_from_the_authorization_header() {
        let headers = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            h
        };
        assert_eq!(bearer(&headers("Bearer s3cret")), Some("s3cret"));
        assert_eq!(bearer(&headers("bearer  s3cret ")), Some("s3cret"));
        assert_eq!(bearer(&headers("Basic czNjcmV0")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&headers("s3cret")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn tokens_match_only_exactly() {
        let token = SecretString::from("s3cret-token");
        assert!(token_matches(&token, "s3cret-token"));
        for wrong in [
            "",
            "s3cret",
            "s3cret-tokem",
            "s3cret-token ",
            "S3CRET-TOKEN",
        ] {
            assert!(!token_matches(&token, wrong), "{wrong:?}");
        }
    }

    #[test]
    fn metrics_are_prometheus_text_with_help_and_type_for_every_family() {
        let totals = RunTotals {
            runs: vec![("partial".into(), 1), ("succeeded".into(), 3)],
            rows_written: 1234,
            features_written: 56,
            securities_ok: 40,
            securities_failed: 2,
            finished_runs: 4,
            finished_seconds: 10.5,
            last_run_seconds: Some(2.25),
            last_run_finished: Some(1_700_000_000.5),
            last_success: Some(1_700_000_000.5),
        };
        let text = metrics_text(&totals, true);
        for line in [
            "market_encoder_runs_total{outcome=\"succeeded\"} 3",
            "market_encoder_runs_total{outcome=\"partial\"} 1",
            "market_encoder_runs_total{outcome=\"failed\"} 0",
            "market_encoder_rows_written_total 1234",
            "market_encoder_securities_failed_total 2",
            "market_encoder_last_run_duration_seconds 2.25",
            "market_encoder_last_success_timestamp_seconds 1700000000.5",
            "market_encoder_run_in_progress 1",
            "market_encoder_run_duration_seconds_sum 10.5",
            "market_encoder_run_duration_seconds_count 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // Every sample's family has HELP and TYPE before it; no family twice.
        let mut families = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!families.contains(&name.to_owned()), "{name} twice");
                families.push(name.to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(
                    families.iter().any(|f| name == f
                        || name
                            .strip_prefix(f.as_str())
                            .is_some_and(|s| s == "_sum" || s == "_count")),
                    "{name} has no TYPE"
                );
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert!(text.contains("# HELP market_encoder_run_in_progress "));
        let idle = metrics_text(&RunTotals::default(), false);
        assert!(idle.contains("market_encoder_last_success_timestamp_seconds 0\n"));
        assert!(idle.contains("market_encoder_run_in_progress 0\n"));
    }

    #[test]
    fn label_values_and_floats_are_written_as_the_format_wants() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(float(1e21), "1000000000000000000000");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.1), "0.1");
    }
}
