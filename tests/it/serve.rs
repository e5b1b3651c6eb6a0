//! `market-encoder serve` end to end: the real binary listening on a free port, called over
//! real HTTP, against a fresh PostgreSQL database per test and the fake Yahoo.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{ROLE_SECURITIES, TestDb, config, config_with, fake, fake_with_latency};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

const FROM: &str = "2024-05-01";
const TO: &str = "2024-07-31";
const TOKEN: &str = "t0ken-for-the-serve-tests-only";

/// The service, started with `serve --bind 127.0.0.1:0`; its output is collected as it comes
/// (so that a full pipe never blocks it).
struct Server {
    child: tokio::process::Child,
    base: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
}

async fn drain(
    pipe: impl AsyncRead + Unpin,
    into: Arc<Mutex<String>>,
    mut first: Option<tokio::sync::oneshot::Sender<String>>,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(tx) = first.take() {
            let _ = tx.send(line.clone());
        }
        let mut all = into.lock().unwrap();
        all.push_str(&line);
        all.push('\n');
    }
}

impl Server {
    async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = crate::common::command(&all, env).spawn().unwrap();
        let stdout: Arc<Mutex<String>> = Arc::default();
        let stderr: Arc<Mutex<String>> = Arc::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(drain(
            child.stdout.take().unwrap(),
            Arc::clone(&stdout),
            Some(tx),
        ));
        tokio::spawn(drain(
            child.stderr.take().unwrap(),
            Arc::clone(&stderr),
            None,
        ));
        let first = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(line)) => line,
            _ => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                panic!(
                    "serve printed no first line; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Self {
            child,
            base,
            stdout,
            stderr,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether stderr shows `needle` within 10 s: stderr is its own pipe, drained by its own
    /// task, so a line printed before the first line of stdout may still be on its way.
    async fn stderr_shows(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.stderr().contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// GET, expecting a JSON body.
    async fn json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.get(path).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: {status} {body:?} is not JSON: {e}"));
        (status, value)
    }

    /// POST /collect with this `Authorization` header (or none).
    async fn collect(
        &self,
        authorization: Option<&str>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut request = self.http.post(format!("{}/collect", self.base));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("POST /collect: {status} {body:?} is not JSON: {e}"));
        (status, value, headers)
    }

    /// POST /collect with the right token; returns the run id.
    async fn start_run(&self) -> String {
        let (status, body, _) = self.collect(Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["outcome"], "running");
        body["run_id"].as_str().unwrap().to_owned()
    }

    /// Polls /status until run `id` has finished; returns its row.
    async fn wait_for_run(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, body) = self.json("/status").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let run = body["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == id)
                .cloned();
            if let Some(run) = run
                && run["outcome"] != "running"
            {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} did not finish; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        parse_metrics(&response.text().await.unwrap())
    }

    /// SIGTERM, then the exit code (the process must exit within 20 s).
    async fn terminate(mut self) -> (Option<i32>, String, String) {
        let pid = self.child.id().unwrap().to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("serve did not exit within 20 s of SIGTERM")
            .unwrap();
        // Let the drains read the last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (status.code(), self.stdout(), self.stderr())
    }
}

/// The samples of a Prometheus text exposition, `name{labels}` -> value; checks that every
/// family has `# HELP` and `# TYPE` lines.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut typed = Vec::new();
    let mut helped = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_owned());
        } else if !line.is_empty() {
            let (key, value) = line.rsplit_once(' ').unwrap();
            let name = key.split('{').next().unwrap();
            let family = name
                .strip_suffix("_sum")
                .or_else(|| name.strip_suffix("_count"))
                .filter(|f| typed.iter().any(|t| t == f))
                .unwrap_or(name);
            assert!(typed.iter().any(|t| t == family), "{name} has no TYPE");
            assert!(helped.iter().any(|t| t == family), "{name} has no HELP");
            samples.insert(key.to_owned(), value.parse::<f64>().unwrap());
        }
    }
    samples
}

fn env<'a>(db: &'a TestDb, yahoo_url: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("DATABASE_URL", db.url.as_str()),
        ("YAHOO_BASE_URL", yahoo_url),
        ("COLLECT_TOKEN", TOKEN),
    ]
}

async fn scalar_i64(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_answers_and_a_collected_run_shows_in_status_metrics_and_features() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(dir.path(), &ROLE_SECURITIES, "", "");
    let yahoo_url = yahoo.base_url();
    let server = Server::start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--no-embeddings",
            "--from",
            FROM,
            "--to",
            TO,
        ],
        &env(&db, &yahoo_url),
    )
    .await;

    assert_eq!(
        server.json("/health").await,
        (StatusCode::OK, serde_json::json!({"status": "ok"}))
    );
    let (status, ready) = server.json("/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    // Before any run: migrated at start, nothing recorded, no features.
    let (status, before) = server.json("/status").await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(before["runs"], serde_json::json!([]));
    assert!(before["run_in_progress"].is_null());
    let m = server.metrics().await;
    for outcome in ["running", "succeeded", "partial", "failed", "interrupted"] {
        assert_eq!(
            m[&format!("market_encoder_runs_total{{outcome=\"{outcome}\"}}")],
            0.0
        );
    }
    assert_eq!(m["market_encoder_last_success_timestamp_seconds"], 0.0);
    assert_eq!(m["market_encoder_run_in_progress"], 0.0);
    let (status, none) = server.json("/ml-features").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{none}");
    assert!(
        none["error"]
            .as_str()
            .unwrap()
            .starts_with("no cross-asset features stored in"),
        "{none}"
    );

    // Refused: no token, a wrong one, another scheme. Nothing starts.
    for authorization in [
        None,
        Some("Bearer not-the-token".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_owned()),
    ] {
        let (status, body, headers) = server.collect(authorization.as_deref()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{authorization:?}: {body}"
        );
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{headers:?}"
        );
        assert!(body["error"].as_str().unwrap().contains("bearer token"));
    }
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM runs").await, 0);
    assert_eq!(yahoo.request_log().len(), 0);

    // The right token starts the CronJob's run; /status shows it to the end.
    let run_id = server.start_run().await;
    let run = server.wait_for_run(&run_id).await;
    assert_eq!(run["outcome"], "succeeded", "{run}\n{}", server.stderr());
    assert_eq!(run["securities_total"], 11);
    assert_eq!(run["securities_ok"], 11);
    assert_eq!(run["securities_failed"], 0);
    assert_eq!(run["errors"], serde_json::json!({}));
    assert_eq!(run["window_from"], FROM);
    assert_eq!(run["window_to"], TO);
    assert!(run["finished_at"].is_string());
    assert!(run["duration_ms"].as_i64().unwrap() >= 0);
    let rows = db.total_rows().await;
    assert!(rows > 0);
    assert_eq!(run["rows_written"], rows);
    assert!(run["features_written"].as_i64().unwrap() > 0);
    let (_, after) = server.json("/status").await;
    assert_eq!(after["runs"].as_array().unwrap().len(), 1);
    assert_eq!(after["runs"][0]["id"], run_id.as_str());
    let (status, _) = server.json("/status?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, bad) = server.json("/status?limit=many").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    // Outside 1..=200: a 400 that says the range, never a silent cap.
    for limit in ["0", "201", "99999"] {
        let (status, bad) = server.json(&format!("/status?limit={limit}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{limit}: {bad}");
        assert!(bad["error"].as_str().unwrap().contains("1..=200"), "{bad}");
    }
    let (status, _) = server.json("/status?limit=200").await;
    assert_eq!(status, StatusCode::OK);

    // The features, as `market-encoder features --json` prints them.
    let (status, features) = server.json("/ml-features").await;
    assert_eq!(status, StatusCode::OK, "{features}");
    assert_eq!(features["date"], TO);
    assert_eq!(features["expected"], 14);
    assert!(features["features"]["ml_risk_on_ratio"].is_f64());
    let cli = crate::common::run(
        &["features", "--json"],
        &[("DATABASE_URL", db.url.as_str())],
    )
    .await;
    assert_eq!(cli.code, 0, "{cli:#?}");
    let printed: Value = serde_json::from_str(cli.stdout.trim()).unwrap();
    assert_eq!(features, printed);
    let (status, first) = server.json(&format!("/ml-features?date={FROM}")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["date"], FROM);
    let (status, saturday) = server.json("/ml-features?date=2024-07-27").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{saturday}");
    assert!(saturday["error"].as_str().unwrap().contains("2024-07-27"));
    let (status, bad) = server.json("/ml-features?date=July").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // Metrics agree with the runs table.
    let m = server.metrics().await;
    assert_eq!(m["market_encoder_runs_total{outcome=\"succeeded\"}"], 1.0);
    assert_eq!(m["market_encoder_runs_total{outcome=\"failed\"}"], 0.0);
    assert_eq!(m["market_encoder_rows_written_total"], rows as f64);
    assert_eq!(
        m["market_encoder_features_written_total"],
        run["features_written"].as_i64().unwrap() as f64
    );
    assert_eq!(m["market_encoder_securities_succeeded_total"], 11.0);
    assert_eq!(m["market_encoder_securities_failed_total"], 0.0);
    assert_eq!(m["market_encoder_run_in_progress"], 0.0);
    assert_eq!(m["market_encoder_run_duration_seconds_count"], 1.0);
    let (finished, seconds): (f64, f64) = sqlx::query_as(
        "SELECT extract(epoch FROM finished_at)::float8,
                extract(epoch FROM finished_at - started_at)::float8 FROM runs",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!((m["market_encoder_last_success_timestamp_seconds"] - finished).abs() < 1e-3);
    assert!((m["market_encoder_last_run_duration_seconds"] - seconds).abs() < 1e-3);

    // Unknown paths and methods.
    let (status, _) = server.json("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        server.get("/collect").await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );

    let (code, stdout, stderr) = server.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    // The run's summary line, like the CronJob's.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("{\"summary\"") && l.contains(&run_id)),
        "{stdout}"
    );
    assert!(!stderr.contains(TOKEN), "the token was logged");
    assert!(!stdout.contains(TOKEN), "the token was printed");
}

/// 12 securities at 700 ms per request, 2 at a time: a run lasts about 4 s.
fn slow_config(dir: &std::path::Path) -> std::path::PathBuf {
    let symbols: Vec<String> = (0..12).map(|i| format!("T{i:02}")).collect();
    let securities: Vec<(&str, &str, &str)> = symbols
        .iter()
        .map(|s| ("stocks", s.as_str(), s.as_str()))
        .collect();
    config(
        dir,
        &securities,
        "  batch_size: 2\n  max_retries: 0\n  requests_per_second: 100\n",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_collect_during_a_run_is_409_and_sigterm_records_the_run_interrupted() {
    let db = TestDb::new().await;
    let yahoo = fake_with_latency(Duration::from_millis(700)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = slow_config(dir.path());
    let yahoo_url = yahoo.base_url();
    let server = Server::start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--no-embeddings",
            "--from",
            FROM,
            "--to",
            TO,
        ],
        &env(&db, &yahoo_url),
    )
    .await;

    let run_id = server.start_run().await;
    let (status, body, _) = server.collect(Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "a run is in progress");
    assert_eq!(body["run_id"], run_id.as_str());

    let (_, running) = server.json("/status").await;
    assert_eq!(running["run_in_progress"], run_id.as_str());
    assert_eq!(running["runs"][0]["outcome"], "running");
    assert!(running["runs"][0]["finished_at"].is_null());
    let m = server.metrics().await;
    assert_eq!(m["market_encoder_run_in_progress"], 1.0);
    assert_eq!(m["market_encoder_runs_total{outcome=\"running\"}"], 1.0);
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM runs").await, 1);

    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (code, stdout, stderr) = server.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    let (outcome, ok, finished): (String, i32, bool) =
        sqlx::query_as("SELECT outcome, securities_ok, finished_at IS NOT NULL FROM runs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(outcome, "interrupted", "{stderr}");
    assert!(finished);
    assert!(ok > 0 && ok < 12, "{ok} securities finished");
    // Whatever was stored is whole.
    let partial: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT symbol FROM market_data GROUP BY symbol
                               HAVING count(*) <> (SELECT max(c) FROM (SELECT count(*) AS c FROM market_data GROUP BY symbol) t)) u",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(partial, 0);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("{\"summary\"") && l.contains("\"interrupted\"")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn collect_is_409_while_another_process_holds_the_run_lock() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    let yahoo_url = yahoo.base_url();
    let server = Server::start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--no-embeddings",
            "--from",
            FROM,
            "--to",
            TO,
        ],
        &env(&db, &yahoo_url),
    )
    .await;

    // A CronJob pod's run, as far as PostgreSQL can tell.
    let mut holder = db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(market_encoder::job::store::RUN_LOCK_KEY)
        .execute(&mut *holder)
        .await
        .unwrap();
    let (status, body, _) = server.collect(Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("another market-encoder run holds the run lock"),
        "{body}"
    );
    assert!(body["run_id"].is_null());
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM runs").await, 0);
    assert_eq!(yahoo.requests_for("SPY"), 0);
    let m = server.metrics().await;
    assert_eq!(m["market_encoder_run_in_progress"], 1.0);

    // Once it is released, the service runs.
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(market_encoder::job::store::RUN_LOCK_KEY)
        .execute(&mut *holder)
        .await
        .unwrap();
    drop(holder);
    let run_id = server.start_run().await;
    let run = server.wait_for_run(&run_id).await;
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(db.count("SPY").await, run["rows_written"].as_i64().unwrap());
    let (code, _, stderr) = server.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_collect_is_disabled_and_an_unreachable_database_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    let secret = "hunter2-do-not-print";
    let url = format!("postgres://market:{secret}@127.0.0.1:1/nowhere");
    let server = Server::start(
        &["--config", cfg.to_str().unwrap(), "--no-embeddings"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("YAHOO_BASE_URL", "http://127.0.0.1:9"),
        ],
    )
    .await;
    assert!(
        server
            .stderr_shows("POST /collect disabled: COLLECT_TOKEN is not set")
            .await,
        "{}",
        server.stderr()
    );
    let (status, _) = server.json("/health").await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready) = server.json("/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let reason = ready["error"].as_str().unwrap();
    assert!(
        reason.contains("postgres://market:[redacted]@127.0.0.1:1/nowhere"),
        "{reason}"
    );
    assert!(!reason.contains('\n'));
    let (status, _) = server.json("/status").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        server.get("/metrics").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    for authorization in [None, Some(format!("Bearer {TOKEN}"))] {
        let (status, body, _) = server.collect(authorization.as_deref()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(
            body["error"],
            "POST /collect is disabled: COLLECT_TOKEN is not set"
        );
    }
    let (code, stdout, stderr) = server.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains(secret) && !stdout.contains(secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_starts_a_run_at_start_without_collect() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    let yahoo_url = yahoo.base_url();
    let server = Server::start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--no-embeddings",
            "--every",
            "1m",
            "--from",
            FROM,
            "--to",
            TO,
        ],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("YAHOO_BASE_URL", yahoo_url.as_str()),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let (_, body) = server.json("/status").await;
        if let Some(run) = body["runs"].get(0)
            && run["outcome"] != "running"
        {
            break run.clone();
        }
        assert!(Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert!(db.count("SPY").await > 0);
    let (code, _, stderr) = server.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("scheduled run started"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_in_use_or_a_bad_config_exits_2_before_serving() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let r = crate::common::run(
        &[
            "serve",
            "--bind",
            &addr,
            "--config",
            cfg.to_str().unwrap(),
            "--no-embeddings",
        ],
        &[("DATABASE_URL", db.url.as_str())],
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains(&format!("cannot listen on {addr}")),
        "{}",
        r.stderr
    );
    let r = crate::common::run(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--config",
            "/nonexistent.yaml",
        ],
        &[("DATABASE_URL", db.url.as_str())],
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(!r.stdout.contains("listening on"), "{}", r.stdout);
}

/// Slow clients: one that sends a header line a second is disconnected after the header-read
/// timeout, and a crowd of them (more than the connection cap) never keeps a probe from an
/// answer; a method the endpoint does not take is a JSON 405.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_disconnected_and_every_error_is_json() {
    use market_encoder::serve::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    let server = Server::start(
        &["--config", cfg.to_str().unwrap(), "--no-embeddings"],
        &[
            ("DATABASE_URL", "postgres://market@127.0.0.1:1/nowhere"),
            ("YAHOO_BASE_URL", "http://127.0.0.1:9"),
        ],
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    // More slow clients than the cap, each sending one header line a second.
    let crowd = MAX_CONNECTIONS + 20;
    let mut slow = Vec::new();
    for _ in 0..crowd {
        let addr = addr.clone();
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let _ = stream.write_all(b"GET /health HTTP/1.1\r\n").await;
            let mut buf = [0u8; 256];
            for i in 0..60 {
                let line = format!("X-Slow-{i}: 1\r\n");
                if stream.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
                tokio::select! {
                    // The server closed it, or answered (408) before closing: cut off.
                    _ = stream.read(&mut buf) => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            started.elapsed()
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A probe still gets its answer, at worst once the first slow clients are cut off.
    let probe = Instant::now();
    let (status, body) = server.json("/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        probe.elapsed() < HEADER_READ_TIMEOUT + Duration::from_secs(5),
        "probe waited {:?}",
        probe.elapsed()
    );
    for task in slow {
        let held = task.await.unwrap();
        assert!(
            held < HEADER_READ_TIMEOUT * 2 + Duration::from_secs(5),
            "a slow client was held {held:?}"
        );
    }
    // Every error answer is JSON with a message.
    let response = server
        .http
        .post(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().contains_key("allow"));
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Method Not Allowed: POST /health"),
        "{body}"
    );
    let (status, body) = server.json("/status?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("1..=200"),
        "{body}"
    );
    let (status, body) = server.json("/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
    let (code, _, stderr) = server.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
}
