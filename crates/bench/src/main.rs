//! `market-encoder-bench`: how fast the job is and how much memory it takes, measured.
//!
//! Phase A, the job end to end: the release `market-encoder` binary fetches N securities x 10
//! years of daily bars from the in-process fake Yahoo (each response delayed by a realistic
//! latency) into a fresh PostgreSQL database, with indicators and documents, without the
//! embed and index stages (`--no-embeddings`). Reports wall time, rows/s stored and the child's
//! own peak RSS (`run_measured`), against the latency-bound ideal
//! ceil(N / batch_size) x latency.
//!
//! Phase B, the database side alone, in the same run: the same rows stored through
//! `Store::store_series` (one transaction per security, `batch_size` at a time) versus
//! PostgreSQL's own `COPY` of the very same rows into a copy of the table, at the same
//! concurrency. Series are prepared in memory first; only the writes are timed.
//!
//! Phase C, market memory, with `--memory` (`scripts/bench.sh --memory` provides Chroma, the
//! model and sentence-transformers), on phase A's database and its `embedding_days` (30)
//! documents per security, 6,000 for the default 200 securities: the release binary again
//! with its embed and index stages into a fresh Chroma collection (wall time, documents/s, the
//! child's own peak RSS against phase A's: what the model and its activations take);
//! `MiniLm::embed` alone in-process (sentences/s, rayon threads) versus sentence-transformers on
//! the very same texts (`st_throughput.py` with `--st-python`); then our Chroma client upserting
//! those vectors into a fresh collection (new, then unchanged records/s) and 100 queries of
//! k = 10 (median and p95 latency). Details in `memory.rs`; it also prints rows for README's
//! Performance table.
//!
//! Phase D, with `--rebase`: a 10:1 split met by the daily run on one security with `--years`
//! of history, timed next to the daily run after it (`rebase.rs`).
//!
//! Phase E, with `--python-stack PYTHON`: the first and the next daily run with embeddings,
//! and phase A's backfill, next to the Python stack a user would pick instead (yfinance,
//! pandas, psycopg2, chromadb; `python_stack.py`), back to back (`pystack.rs`).

mod memory;
mod pystack;
mod rebase;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::NaiveDate;
use clap::Parser;
use fake_yahoo::{FakeYahoo, Options};
use futures::{StreamExt, TryStreamExt};
use market_encoder::config::Config;
use market_encoder::config::env::{DatabaseSettings, EnvValue};
use market_encoder::domain::DateWindow;
use market_encoder::job::fetch::wire::parse_chart;
use market_encoder::job::store::{Store, daily_return};
use market_encoder::job::validate::{Series, validate};
use nix::sys::resource::{UsageWho, getrusage};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

#[derive(Debug, Parser)]
#[command(about = "Benchmark market-encoder against the local fake Yahoo and a real PostgreSQL")]
struct Args {
    /// Securities to configure.
    #[arg(long, default_value_t = 200)]
    securities: usize,
    /// Years of daily bars per security.
    #[arg(long, default_value_t = 10)]
    years: u32,
    /// Latency the fake adds to every response.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// Securities in flight at once (encoding.batch_size).
    #[arg(long, default_value_t = 5)]
    batch_size: usize,
    /// The market-encoder binary to run (build it with --release first).
    #[arg(long, default_value = "target/release/market-encoder")]
    binary: String,
    /// PostgreSQL server to use (a scratch database is created and dropped on it).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Skip phase B.
    #[arg(long)]
    skip_store_phase: bool,
    /// Also run phase C, market memory (needs Chroma and the model; scripts/bench.sh --memory
    /// provides both).
    #[arg(long)]
    memory: bool,
    /// Chroma for phase C (a scratch collection is created and deleted on it).
    #[arg(long, env = "CHROMA_URL")]
    chroma_url: Option<String>,
    /// The all-MiniLM-L6-v2 model directory for phase C.
    #[arg(long, env = "EMBEDDING_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Also run phase D: what a split costs (a whole-history rebase) next to a daily run.
    #[arg(long)]
    rebase: bool,
    /// A python with sentence-transformers, to compare phase C's embedding throughput with.
    #[arg(long)]
    st_python: Option<PathBuf>,
    /// A python with onnxruntime, tokenizers and numpy (scripts/lib/ort.sh), to compare phase
    /// C's embedding throughput with; needs --onnx-model.
    #[arg(long, requires = "onnx_model")]
    ort_python: Option<PathBuf>,
    /// The model exported to ONNX (scripts/lib/ort.sh's ensure_onnx_model).
    #[arg(long)]
    onnx_model: Option<PathBuf>,
    /// Run phase E with this python (yfinance, pandas, psycopg2, chromadb, PyYAML:
    /// scripts/lib/pystack.sh); needs Chroma, the model and --onnx-model.
    #[arg(long, requires = "onnx_model")]
    python_stack: Option<PathBuf>,
    /// Securities of phase E's daily runs.
    #[arg(long, default_value_t = 40)]
    daily_securities: usize,
}

/// Trade dates per security that get a document (the job's default, written out): phase C
/// embeds securities x this many.
const EMBEDDING_DAYS: u32 = 30;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let memory_needs = if args.memory || args.python_stack.is_some() {
        Some((
            args.chroma_url
                .as_deref()
                .context("--memory needs --chroma-url or CHROMA_URL (scripts/bench.sh --memory starts Chroma)")?,
            args.model_dir
                .as_deref()
                .context("--memory needs --model-dir or EMBEDDING_MODEL_DIR (scripts/bench.sh --memory provides it)")?,
        ))
    } else {
        None
    };
    let to = NaiveDate::from_ymd_opt(2024, 12, 31).context("date")?;
    let from = NaiveDate::from_ymd_opt(2025 - i32::try_from(args.years)?, 1, 1).context("date")?;
    let window = DateWindow::new(from, to)?;
    let dir = std::env::temp_dir().join(format!("market-encoder-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("securities.yaml");
    std::fs::write(&config_path, config_yaml(args.securities, args.batch_size))?;
    let config = Config::load(&config_path)?;

    let mut report = String::new();
    writeln!(
        report,
        "market-encoder benchmark: {} securities x {} years ({window}), fake Yahoo latency {} ms, batch_size {}, {} cores",
        args.securities,
        args.years,
        args.latency_ms,
        args.batch_size,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    )?;

    // Phase A: the job end to end.
    let job_db = ScratchDb::create(&args.database_url, "job").await?;
    let yahoo = FakeYahoo::start(Options {
        latency: Duration::from_millis(args.latency_ms),
        ..Options::default()
    })
    .await?;
    let job_args: Vec<String> = vec![
        "--config".into(),
        path_str(&config_path)?.into(),
        "--from".into(),
        from.to_string(),
        "--to".into(),
        to.to_string(),
    ];
    let (output, wall, peak_rss_kib) = run_measured(
        tokio::process::Command::new(&args.binary)
            .args(&job_args)
            // Prices, indicators and documents; the embed and index stages are phase C.
            .arg("--no-embeddings")
            .env("DATABASE_URL", &job_db.url)
            .env("YAHOO_BASE_URL", yahoo.base_url())
            .env("LOG_LEVEL", "warn"),
    )
    .await
    .with_context(|| {
        format!(
            "cannot run {} (build it with cargo build --release)",
            args.binary
        )
    })?;
    succeeded(&output)?;
    let summary = summary_of(&output.stdout)?;
    let rows = summary["summary"]["rows_written"].as_u64().unwrap_or(0);
    let requests = yahoo.request_log().len();
    let ideal = Duration::from_millis(args.latency_ms)
        * u32::try_from(args.securities.div_ceil(args.batch_size))?;
    writeln!(report, "A. job end to end (release binary):")?;
    writeln!(
        report,
        "   wall time           {:>10.2} s",
        wall.as_secs_f64()
    )?;
    writeln!(report, "   rows stored         {rows:>10}")?;
    writeln!(
        report,
        "   rows/s end to end   {:>10.0}",
        per_second(rows, wall)
    )?;
    writeln!(
        report,
        "   requests            {requests:>10}  (latency-bound ideal ceil({}/{}) x {} ms = {:.2} s)",
        args.securities,
        args.batch_size,
        args.latency_ms,
        ideal.as_secs_f64()
    )?;
    writeln!(
        report,
        "   peak RSS            {:>10.1} MiB",
        kib_to_mib(peak_rss_kib)
    )?;
    // Phase C runs now, on phase A's database (printed after phase B); phase B then has the
    // server to itself, as without --memory.
    let memory = match memory_needs.filter(|_| args.memory) {
        None => None,
        Some((chroma_url, model_dir)) => Some(
            memory::run(&memory::Inputs {
                binary: &args.binary,
                job_args: &job_args,
                database_url: &job_db.url,
                yahoo_base_url: &yahoo.base_url(),
                chroma_url,
                model_dir,
                st_python: args.st_python.as_deref(),
                ort: args.ort_python.as_deref().zip(args.onnx_model.as_deref()),
                work_dir: &dir,
                phase_a_peak_rss_kib: peak_rss_kib,
            })
            .await,
        ),
    };
    yahoo.shutdown().await;
    job_db.drop_db().await?;
    let memory = memory.transpose().context("phase C (market memory)")?;

    let mut store_rate = None;
    if !args.skip_store_phase {
        let (ours, copy) = store_phase(&args, &config, &window).await?;
        writeln!(
            report,
            "B. database side alone ({} concurrent transactions):",
            args.batch_size
        )?;
        writeln!(
            report,
            "   store_series        {:>10.0} rows/s  ({} rows in {:.2} s)",
            per_second(ours.0, ours.1),
            ours.0,
            ours.1.as_secs_f64()
        )?;
        writeln!(
            report,
            "   COPY (same rows)    {:>10.0} rows/s  ({} rows in {:.2} s)",
            per_second(copy.0, copy.1),
            copy.0,
            copy.1.as_secs_f64()
        )?;
        writeln!(
            report,
            "   COPY / store_series {:>10.2}x",
            per_second(copy.0, copy.1) / per_second(ours.0, ours.1)
        )?;
        store_rate = Some((per_second(ours.0, ours.1), per_second(copy.0, copy.1)));
    }
    if let Some(memory) = &memory {
        memory.write_text(&mut report)?;
        writeln!(report, "README, Performance table rows (phase C):")?;
        report.push_str(&memory.readme_rows());
    }
    let python_stack = match (&args.python_stack, memory_needs, &args.onnx_model) {
        (Some(python), Some((chroma_url, model_dir)), Some(onnx_model)) => Some(
            pystack::phase(
                &mut report,
                &pystack::Inputs {
                    binary: &args.binary,
                    admin_url: &args.database_url,
                    chroma_url,
                    model_dir,
                    onnx_model,
                    python,
                    work_dir: &dir,
                    latency: Duration::from_millis(args.latency_ms),
                    batch_size: args.batch_size,
                    daily_securities: args.daily_securities,
                    to,
                    backfill: Some(pystack::Backfill {
                        config: &config_path,
                        from,
                        to,
                        ours: (wall, peak_rss_kib),
                    }),
                },
            )
            .await?,
        ),
        _ => None,
    };
    if args.rebase {
        rebase::phase(
            &mut report,
            &args.binary,
            &args.database_url,
            &dir,
            from,
            to,
            Duration::from_millis(args.latency_ms),
        )
        .await?;
    }
    print!("{report}");
    let mut json = serde_json::json!({
        "securities": args.securities, "years": args.years, "latency_ms": args.latency_ms,
        "batch_size": args.batch_size, "wall_s": wall.as_secs_f64(), "rows": rows,
        "rows_per_s": per_second(rows, wall), "ideal_s": ideal.as_secs_f64(),
        "peak_rss_mib": kib_to_mib(peak_rss_kib),
        "store_rows_per_s": store_rate.map(|r| r.0), "copy_rows_per_s": store_rate.map(|r| r.1),
    });
    if let Some(memory) = &memory {
        json["memory"] = memory.json();
    }
    if let Some(python_stack) = python_stack {
        json["python_stack"] = python_stack;
    }
    println!("{json}");
    std::fs::remove_dir_all(&dir)?;
    if let Some(failure) = memory.as_ref().and_then(memory::MemoryReport::failure) {
        bail!("phase C: sentence-transformers failed: {failure}");
    }
    Ok(())
}

/// How often a measured child's `/proc/<pid>/status` is read while it runs.
const RSS_POLL: Duration = Duration::from_millis(20);

/// Runs `command` to completion with its output captured, and measures that child on its own:
/// its output, wall time and peak RSS (KiB).
///
/// The peak: getrusage(RUSAGE_CHILDREN) is the largest of all children reaped so far, including
/// those of whatever this process was before an exec (scripts/bench.sh execs us right after
/// `cargo build`, whose peak is far above the job's). When it grew while this child ran, it is
/// exactly this child's. Otherwise this child stayed below an earlier one, and the figure is
/// its high-water mark (VmHWM) read from /proc/<pid>/status every 20 ms while it ran, which can
/// miss only a new peak in its last 20 ms.
async fn run_measured(
    command: &mut tokio::process::Command,
) -> anyhow::Result<(std::process::Output, Duration, i64)> {
    let children_before = getrusage(UsageWho::RUSAGE_CHILDREN)?.max_rss();
    let started = Instant::now();
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let status = child.id().map(|pid| format!("/proc/{pid}/status"));
    let waiting = child.wait_with_output();
    tokio::pin!(waiting);
    let mut polled_kib = 0;
    let mut poll = tokio::time::interval(RSS_POLL);
    let output = loop {
        tokio::select! {
            output = &mut waiting => break output?,
            _ = poll.tick() => {
                if let Some(kib) = status.as_deref().and_then(|s| status_kib(s, "VmHWM:")) {
                    polled_kib = polled_kib.max(kib);
                }
            }
        }
    };
    let wall = started.elapsed();
    let children_after = getrusage(UsageWho::RUSAGE_CHILDREN)?.max_rss();
    let peak_kib = if children_after > children_before {
        children_after
    } else {
        polled_kib
    };
    Ok((output, wall, peak_kib))
}

/// A `kB` field of a `/proc/.../status` file (`VmHWM:`, `VmRSS:`), if there is one.
fn status_kib(path: &str, key: &str) -> Option<i64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The `{"summary": ...}` line of the job's stdout.
/// An error with the child's stderr unless it exited 0.
fn succeeded(output: &std::process::Output) -> anyhow::Result<()> {
    if !output.status.success() {
        bail!(
            "market-encoder exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn summary_of(stdout: &[u8]) -> anyhow::Result<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .find(|l| l.starts_with("{\"summary\""))
        .map(serde_json::from_str)
        .transpose()?
        .context("no summary line from market-encoder")
}

type Timed = (u64, Duration);

async fn store_phase(
    args: &Args,
    config: &Config,
    window: &DateWindow,
) -> anyhow::Result<(Timed, Timed)> {
    // Prepare every series in memory (not timed): the fake's bodies through the real parser and
    // validator, exactly what the job would store.
    let p1 = day_start(window.from()) - 86_400;
    let p2 = day_start(window.to()) + 2 * 86_400;
    let now = chrono::Utc::now();
    let mut prepared: Vec<(&market_encoder::domain::Security, Series)> = Vec::new();
    for security in &config.securities {
        let body = fake_yahoo::synthetic_chart(security.yahoo_symbol.as_str(), p1, p2, 42);
        let envelope = parse_chart(body.to_string().as_bytes())?;
        prepared.push((
            security,
            validate(envelope, &security.yahoo_symbol, window, now)?,
        ));
    }

    let db = ScratchDb::create(&args.database_url, "store").await?;
    let settings = DatabaseSettings::from_env(&|name| match name {
        "DATABASE_URL" => EnvValue::Present(db.url.clone()),
        _ => EnvValue::Absent,
    })?;
    let store = Store::connect(&settings, u32::try_from(args.batch_size)? + 1).await?;
    store.migrate().await?;
    sqlx::query(
        "CREATE TABLE market_data_copy (LIKE market_data INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)",
    )
    .execute(store.pool())
    .await?;

    let started = Instant::now();
    let written: u64 = futures::stream::iter(&prepared)
        .map(|(security, series)| store.store_series(security, series, None))
        .buffer_unordered(args.batch_size)
        .try_fold(0, |sum, written| async move { Ok(sum + written.rows) })
        .await?;
    let ours = (written, started.elapsed());

    // The same rows, as COPY text, one COPY per security at the same concurrency.
    let buffers: Vec<Vec<u8>> = prepared
        .iter()
        .map(|(s, series)| copy_text(s.db_symbol.as_str(), series))
        .collect();
    let started = Instant::now();
    let copied: u64 = futures::stream::iter(&buffers)
        .map(|buffer| {
            let pool = store.pool().clone();
            async move {
                let mut conn = pool.acquire().await?;
                let mut copy = conn
                    .copy_in_raw(
                        "COPY market_data_copy (symbol, trade_date, open_price, high_price, low_price, close_price, adj_close, volume, daily_return) FROM STDIN",
                    )
                    .await?;
                copy.send(buffer.as_slice()).await?;
                copy.finish().await
            }
        })
        .buffer_unordered(args.batch_size)
        .try_fold(0, |sum, n| async move { Ok::<u64, sqlx::Error>(sum + n) })
        .await?;
    let copy = (copied, started.elapsed());
    store.pool().close().await;
    db.drop_db().await?;
    Ok((ours, copy))
}

/// COPY's text format for one security's bars, with the same daily returns the job computes.
fn copy_text(symbol: &str, series: &Series) -> Vec<u8> {
    let mut out = String::with_capacity(series.bars.len() * 96);
    let mut previous = None;
    for bar in &series.bars {
        let ret = previous
            .and_then(|p| daily_return(bar.close, p))
            .map_or_else(|| "\\N".to_owned(), |r| r.to_string());
        let adj = bar
            .adj_close
            .map_or_else(|| "\\N".to_owned(), |a| a.to_string());
        let _ = writeln!(
            out,
            "{symbol}\t{}\t{}\t{}\t{}\t{}\t{adj}\t{}\t{ret}",
            bar.trade_date, bar.open, bar.high, bar.low, bar.close, bar.volume
        );
        previous = Some(bar.close);
    }
    out.into_bytes()
}

fn config_yaml(securities: usize, batch_size: usize) -> String {
    let mut yaml = String::from("securities:\n  stocks:\n");
    for i in 0..securities {
        let _ = writeln!(
            yaml,
            "    - symbol: \"BENCH{i:04}\"\n      name: \"Benchmark security {i}\""
        );
    }
    let _ = write!(
        yaml,
        "encoding:\n  days_back: 60\n  embedding_days: {EMBEDDING_DAYS}\n  batch_size: {batch_size}\n  max_retries: 3\n  request_timeout_secs: 30\n  requests_per_second: 1000\n"
    );
    yaml
}

/// A database of its own on the benchmark server, dropped at the end.
struct ScratchDb {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDb {
    async fn create(admin: &str, purpose: &str) -> anyhow::Result<Self> {
        let name = format!("me_bench_{purpose}_{}", std::process::id());
        let mut conn = PgConnection::connect(admin)
            .await
            .context("cannot reach PostgreSQL at DATABASE_URL")?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await?;
        // The new database's pages and WAL are written out now, not during the measured run
        // that follows (they showed as 40-55% I/O wait in a backfill's first two seconds).
        // Needs a superuser or pg_checkpoint; without, the runs measure that write too.
        if let Err(e) = sqlx::query("CHECKPOINT").execute(&mut conn).await {
            eprintln!(
                "bench: CHECKPOINT refused ({e}); the first run also measures the new database being written out"
            );
        }
        let mut url = url::Url::parse(admin)?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            admin: admin.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop_db(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.admin).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

fn day_start(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map_or(0, |d| d.and_utc().timestamp())
}

#[allow(clippy::cast_precision_loss)] // row counts are far below 2^52
fn per_second(rows: u64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64().max(1e-9)
}

#[allow(clippy::cast_precision_loss)]
fn kib_to_mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

fn path_str(path: &std::path::Path) -> anyhow::Result<&str> {
    path.to_str().context("temporary path is not UTF-8")
}
