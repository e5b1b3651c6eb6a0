//! `market-encoder check`: the pre-flight an operator or an init container runs before the job.
//! Each check does the least real thing that proves its part works, and says in one line what
//! it saw and, when it fails, what to do:
//!
//! 1. config: `securities.yaml` parses and validates;
//! 2. database: a new connection answers, and the migrations applied vs this binary's;
//! 3. yahoo: one real chart request for the first enabled security on Yahoo (status, latency,
//!    the body's first bytes if it is not chart JSON, whether it looks throttled); tiingo, when
//!    a security uses it: one prices request (the token checked, never shown);
//! 4. chroma: the heartbeat, the collection, and the model it records;
//! 5. model: the embedding model loads and embeds one sentence.
//!
//! Exit 0 only if every check passes; otherwise the exit code of the first failing one (2
//! config, 3 database, 1 Yahoo, 5 Chroma or the model), as the job would exit for it.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::app::{AppError, Exit, memory_plan, tiingo_options, yahoo_client_options};
use crate::cli::CheckArgs;
use crate::config::Config;
use crate::config::env::{DatabaseSettings, EnvValue};
use crate::domain::{DateWindow, Security, Source, TiingoTicker};
use crate::job::embed::Embedder;
use crate::job::fetch::tiingo::{TiingoClient, TiingoOptions};
use crate::job::fetch::{RetryPolicy, YahooClient};
use crate::job::index::{ChromaClient, IndexError};
use crate::job::store::Store;
use crate::report::{self, CheckLine};

/// Runs every check, prints one line each (or one JSON object), returns the exit code.
pub(super) async fn check(
    config: &Path,
    args: &CheckArgs,
    env: &dyn Fn(&'static str) -> EnvValue,
) -> Result<Exit, AppError> {
    let mut lines: Vec<(CheckLine, Exit)> = Vec::new();
    let config = Config::load(config);
    lines.push(match &config {
        Ok(c) => pass(
            "config",
            format!(
                "{}: {} securities, {} enabled",
                c.path.display(),
                c.securities.len(),
                c.securities.iter().filter(|s| s.enabled).count()
            ),
        ),
        Err(e) => fail("config", e.to_string(), Exit::Usage),
    });
    lines.push(database(env).await);
    match &config {
        Ok(config) => {
            lines.push(yahoo(config, env).await);
            if let Some(line) = tiingo(config, env).await {
                lines.push(line);
            }
            if args.no_embeddings {
                lines.push(pass("chroma", "not checked (--no-embeddings)".into()));
            } else {
                lines.extend(memory(config, env).await);
            }
        }
        Err(_) => {
            for name in ["yahoo", "chroma", "model"] {
                lines.push(fail(
                    name,
                    "not checked: the config is invalid".into(),
                    Exit::Usage,
                ));
            }
        }
    }
    let exit = lines
        .iter()
        .find(|(line, _)| !line.ok)
        .map_or(Exit::Success, |(_, exit)| *exit);
    let lines: Vec<CheckLine> = lines.into_iter().map(|(line, _)| line).collect();
    if args.json {
        println!("{}", report::check_json(&lines));
    } else {
        print!("{}", report::check_lines(&lines));
    }
    Ok(exit)
}

fn pass(name: &'static str, detail: String) -> (CheckLine, Exit) {
    (
        CheckLine {
            name,
            ok: true,
            detail,
        },
        Exit::Success,
    )
}

fn fail(name: &'static str, detail: String, exit: Exit) -> (CheckLine, Exit) {
    (
        CheckLine {
            name,
            ok: false,
            detail,
        },
        exit,
    )
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

async fn database(env: &dyn Fn(&'static str) -> EnvValue) -> (CheckLine, Exit) {
    let settings = match DatabaseSettings::from_env(env) {
        Ok(s) => s,
        Err(e) => return fail("database", e.to_string(), Exit::Usage),
    };
    let store = match Store::connect_lazy(&settings, 1, Duration::from_secs(10)) {
        Ok(store) => store,
        Err(e) => return fail("database", e.to_string(), Exit::Usage),
    };
    let started = Instant::now();
    if let Err(e) = store.check().await {
        return fail("database", e.to_string(), Exit::Database);
    }
    let latency = millis(started.elapsed());
    match store.migration_state().await {
        Ok((applied, pending)) if pending.is_empty() => pass(
            "database",
            format!(
                "{settings}: answers in {latency} ms; migrations up to date ({} applied)",
                applied.len()
            ),
        ),
        Ok((applied, pending)) => pass(
            "database",
            format!(
                "{settings}: answers in {latency} ms; {} migrations applied, {} pending ({}): the job applies them on start, or run `market-encoder migrate`",
                applied.len(),
                pending.len(),
                pending
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(e) => fail("database", e.to_string(), Exit::Database),
    }
}

async fn yahoo(config: &Config, env: &dyn Fn(&'static str) -> EnvValue) -> (CheckLine, Exit) {
    let Some(security) = config
        .securities
        .iter()
        .find(|s| s.enabled && s.source == Source::Yahoo)
    else {
        return pass(
            "yahoo",
            "not checked: no enabled security has source: yahoo".into(),
        );
    };
    let options = match yahoo_client_options(config, env, 1) {
        Ok(o) => o,
        Err(e) => return fail("yahoo", e.to_string(), Exit::Usage),
    };
    let client = match YahooClient::new(&options) {
        Ok(c) => c,
        Err(e) => return fail("yahoo", e.to_string(), Exit::Usage),
    };
    let today = Utc::now().date_naive();
    let window = DateWindow::days_back(today, 7);
    let symbol = &security.yahoo_symbol;
    let url = client.chart_url(symbol, &window);
    let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
    let probe = match client.probe(symbol, &window).await {
        Ok(p) => p,
        Err(e) => {
            return fail(
                "yahoo",
                format!("{shown}: no answer ({e}); check the network, a proxy, or YAHOO_BASE_URL"),
                Exit::Partial,
            );
        }
    };
    let head = format!(
        "{shown}: HTTP {} in {} ms",
        probe.status,
        millis(probe.elapsed)
    );
    if probe.throttled {
        return fail(
            "yahoo",
            format!(
                "{head}, throttled (body starts: {}); Yahoo is blocking this node: wait, run from another IP, or use source: tiingo",
                probe.body_start
            ),
            Exit::Partial,
        );
    }
    match (probe.status, probe.is_chart, probe.bars, &probe.yahoo_error) {
        (200, true, Some(bars), None) => pass(
            "yahoo",
            format!(
                "{head}, chart JSON with {bars} bars for {symbol} (last 7 days); not throttled"
            ),
        ),
        (_, true, _, Some(error)) => fail(
            "yahoo",
            format!("{head}, Yahoo's error for {symbol}: {error}; check the symbol in the config"),
            Exit::Partial,
        ),
        (_, _, _, _) => fail(
            "yahoo",
            format!(
                "{head}, not chart JSON (body starts: {}); check YAHOO_BASE_URL or a proxy in between",
                probe.body_start
            ),
            Exit::Partial,
        ),
    }
}

/// One request to Tiingo for the first enabled security on it (none: no line). A missing
/// `TIINGO_API_KEY` is a configuration error, as for the job.
async fn tiingo(
    config: &Config,
    env: &dyn Fn(&'static str) -> EnvValue,
) -> Option<(CheckLine, Exit)> {
    let enabled: Vec<Security> = config
        .securities
        .iter()
        .filter(|s| s.enabled)
        .cloned()
        .collect();
    let security = enabled.iter().find(|s| s.source == Source::Tiingo)?;
    let yahoo = match yahoo_client_options(config, env, 1) {
        Ok(o) => o,
        Err(e) => return Some(fail("tiingo", e.to_string(), Exit::Usage)),
    };
    let options = match tiingo_options(env, &enabled, &yahoo) {
        Ok(Some(o)) => o,
        Ok(None) => return None,
        Err(e) => return Some(fail("tiingo", e.to_string(), Exit::Usage)),
    };
    if options.token.is_none() {
        return Some(fail(
            "tiingo",
            format!(
                "TIINGO_API_KEY is not set, and {} uses source: tiingo; set it to your Tiingo token",
                security.db_symbol
            ),
            Exit::Usage,
        ));
    }
    let options = TiingoOptions {
        retry: RetryPolicy {
            max_retries: 0,
            ..options.retry
        },
        ..options
    };
    let base = options.base_url.clone();
    let outcome = async {
        let client = TiingoClient::new(&options).map_err(|e| e.to_string())?;
        let ticker = TiingoTicker::from_yahoo(&security.yahoo_symbol).map_err(|e| e.to_string())?;
        let today = Utc::now().date_naive();
        let started = Instant::now();
        let rows = client
            .prices(&ticker, &DateWindow::days_back(today, 7), today)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((ticker, rows.len(), started.elapsed()))
    }
    .await;
    Some(match outcome {
        Ok((ticker, rows, elapsed)) => pass(
            "tiingo",
            format!(
                "{base}: {rows} daily rows for {ticker} (last 7 days) in {} ms",
                millis(elapsed)
            ),
        ),
        Err(e) => fail("tiingo", e, Exit::Partial),
    })
}

/// The chroma and model checks (the model only if the config's embedder can be built).
async fn memory(config: &Config, env: &dyn Fn(&'static str) -> EnvValue) -> Vec<(CheckLine, Exit)> {
    let memory = match memory_plan(env, config) {
        Ok(m) => m,
        Err(e) => {
            let line = e.to_string();
            return vec![
                fail("chroma", line.clone(), Exit::Usage),
                fail("model", line, Exit::Usage),
            ];
        }
    };
    let wanted = memory.embedder.model_id();
    let name = memory.chroma.collection().to_owned();
    let started = Instant::now();
    let chroma = match ChromaClient::connect(&memory.chroma).await {
        Ok(client) => {
            let latency = millis(started.elapsed());
            match client.open_collection(&name).await {
                Ok(collection) => {
                    let count = client.count(&collection).await;
                    match (&collection.embedding_model, count) {
                        (Some(stored), _) if *stored != wanted => fail(
                            "chroma",
                            IndexError::ModelMismatch {
                                collection: name,
                                stored: stored.clone(),
                                wanted: wanted.clone(),
                            }
                            .to_string(),
                            Exit::Index,
                        ),
                        (stored, Ok(records)) => pass(
                            "chroma",
                            format!(
                                "{}: heartbeat in {latency} ms; collection {name}: {records} records, model {}",
                                memory.chroma,
                                stored.as_deref().unwrap_or("not recorded")
                            ),
                        ),
                        (_, Err(e)) => fail("chroma", e.to_string(), Exit::Index),
                    }
                }
                Err(IndexError::NoCollection { .. }) => pass(
                    "chroma",
                    format!(
                        "{}: heartbeat in {latency} ms; collection {name} does not exist yet (the first run creates it, for {wanted})",
                        memory.chroma
                    ),
                ),
                Err(e) => fail("chroma", e.to_string(), Exit::Index),
            }
        }
        Err(e) => fail("chroma", e.to_string(), Exit::Index),
    };
    let started = Instant::now();
    let model = match Embedder::load(&memory.embedder).await {
        Ok(embedder) => match embedder
            .embed(vec!["The S&P 500 rose 1.2% on the day.".into()])
            .await
        {
            Ok(vectors) => pass(
                "model",
                format!(
                    "{}: loaded and embedded one sentence ({} dimensions) in {} ms",
                    memory.embedder,
                    vectors.first().map_or(0, Vec::len),
                    millis(started.elapsed())
                ),
            ),
            Err(e) => fail("model", e.to_string(), Exit::Index),
        },
        Err(e) => fail("model", e.to_string(), Exit::Index),
    };
    vec![chroma, model]
}
