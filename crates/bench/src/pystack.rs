//! Phase E, with `--python-stack`: the job next to the Python stack a user would pick instead
//! (`crates/bench/python_stack.py`: yfinance, pandas, psycopg2, chromadb), back to back on the
//! same machine, the same fake Yahoo (same latency) and PostgreSQL server, each run into a
//! fresh database and, with embeddings, a fresh Chroma collection:
//!
//! 1. the first daily run with embeddings: `--daily-securities` securities over a 60-day
//!    window, the last `embedding_days` (30) days of each narrated, embedded and indexed. Ours
//!    (the release binary), then the Python stack with Chroma's default embedding function as
//!    chromadb ships it (`shipped`), then with onnxruntime used well (`tuned`);
//! 2. the next daily run, one weekday later, on each one's own database and collection: one
//!    new bar and one new document per security;
//! 3. the backfill of phase A (`--securities` x `--years`, no embeddings) by the Python stack,
//!    next to phase A's own figure.
//!
//! Wall time and peak RSS of each child are measured the same way (`run_measured`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{Datelike, Days, NaiveDate, Weekday};
use fake_yahoo::{FakeYahoo, Options};
use market_encoder::config::env::EnvValue;
use market_encoder::job::index::{ChromaClient, ChromaSettings};

use crate::{ScratchDb, config_yaml, kib_to_mib, path_str, run_measured, succeeded, summary_of};

/// What phase E needs.
pub struct Inputs<'a> {
    pub binary: &'a str,
    pub admin_url: &'a str,
    pub chroma_url: &'a str,
    pub model_dir: &'a Path,
    pub onnx_model: &'a Path,
    pub python: &'a Path,
    pub work_dir: &'a Path,
    pub latency: Duration,
    pub batch_size: usize,
    pub daily_securities: usize,
    /// The last day of the first daily run.
    pub to: NaiveDate,
    /// Phase A's backfill: its config, window, and (wall, peak RSS KiB) of ours.
    pub backfill: Option<Backfill<'a>>,
}

/// Phase A's backfill, for step 3.
pub struct Backfill<'a> {
    pub config: &'a Path,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub ours: (Duration, i64),
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: Duration,
    peak_rss_kib: i64,
    documents: u64,
}

/// The three contenders of steps 1 and 2.
const STACKS: [&str; 3] = ["market-encoder", "python (shipped)", "python (tuned)"];

/// Runs phase E and appends its lines to `report`; returns its figures as JSON.
pub async fn phase(report: &mut String, inputs: &Inputs<'_>) -> anyhow::Result<serde_json::Value> {
    let home = shipped_model_home(inputs)?;
    let config = inputs.work_dir.join("daily.yaml");
    std::fs::write(
        &config,
        config_yaml(inputs.daily_securities, inputs.batch_size),
    )?;
    let yahoo = FakeYahoo::start(Options {
        latency: inputs.latency,
        ..Options::default()
    })
    .await?;
    let first = (inputs.to - Days::new(60), inputs.to);
    let next_to = next_weekday(inputs.to);
    let next = (next_to - Days::new(60), next_to);
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let mut dbs = Vec::new();
    let mut collections = Vec::new();
    let mut runs: Vec<[Option<Run>; 2]> = Vec::new();
    let result = async {
        for (i, stack) in STACKS.iter().enumerate() {
            dbs.push(ScratchDb::create(inputs.admin_url, &format!("py{i}")).await?);
            collections.push(format!("me-bench-e{i}-{}-{stamp}", std::process::id()));
            let (db, collection) = (&dbs[i], &collections[i]);
            let mut pair = [None, None];
            for (slot, window) in [first, next].into_iter().enumerate() {
                let run = match i {
                    0 => ours(inputs, &config, &yahoo, db, collection, window).await,
                    _ => {
                        let mode = if i == 1 { "shipped" } else { "tuned" };
                        let chroma = Some((collection.as_str(), mode));
                        python(inputs, &home, &config, &yahoo, db, chroma, window).await
                    }
                }
                .with_context(|| format!("phase E: {stack}, run {}", slot + 1))?;
                pair[slot] = Some(run);
            }
            runs.push(pair);
        }
        let backfill = match &inputs.backfill {
            None => None,
            Some(b) => {
                let db = ScratchDb::create(inputs.admin_url, "pyback").await?;
                let run = python(inputs, &home, b.config, &yahoo, &db, None, (b.from, b.to)).await;
                db.drop_db().await?;
                Some(run.context("phase E: python backfill")?)
            }
        };
        anyhow::Ok(backfill)
    }
    .await;
    yahoo.shutdown().await;
    let cleanup = async {
        let settings = ChromaSettings::from_env(&|name| match name {
            "CHROMA_URL" => EnvValue::Present(inputs.chroma_url.to_owned()),
            other => EnvValue::from_process(other),
        })?;
        let client = ChromaClient::connect(&settings).await?;
        for c in &collections {
            client.delete_collection(c).await?;
        }
        for db in dbs {
            db.drop_db().await?;
        }
        anyhow::Ok(())
    }
    .await;
    let backfill = result?;
    cleanup.context("phase E: dropping its databases and collections")?;
    write(report, inputs, &runs, backfill, first, next)
}

fn write(
    report: &mut String,
    inputs: &Inputs<'_>,
    runs: &[[Option<Run>; 2]],
    backfill: Option<Run>,
    first: (NaiveDate, NaiveDate),
    next: (NaiveDate, NaiveDate),
) -> anyhow::Result<serde_json::Value> {
    let get = |stack: usize, slot: usize| runs.get(stack).and_then(|p| p[slot]);
    writeln!(
        report,
        "E. the job next to the Python stack (yfinance + pandas + psycopg2 + chromadb), {} securities:",
        inputs.daily_securities
    )?;
    let mut json = serde_json::Map::new();
    for (slot, (name, window)) in [("first daily run", first), ("next daily run", next)]
        .into_iter()
        .enumerate()
    {
        writeln!(report, "   {name} ({}..{}):", window.0, window.1)?;
        let ours = get(0, slot).context("phase E: no run of ours")?;
        let mut rows = Vec::new();
        for (stack, label) in STACKS.iter().enumerate() {
            let run = get(stack, slot).context("phase E: a run is missing")?;
            let ratio = run.wall.as_secs_f64() / ours.wall.as_secs_f64();
            writeln!(
                report,
                "     {label:<18} {:>8.2} s  peak RSS {:>7.1} MiB  {:>5} documents  ({ratio:.2}x ours)",
                run.wall.as_secs_f64(),
                kib_to_mib(run.peak_rss_kib),
                run.documents
            )?;
            rows.push(serde_json::json!({
                "stack": label, "wall_s": run.wall.as_secs_f64(),
                "peak_rss_mib": kib_to_mib(run.peak_rss_kib), "documents": run.documents,
                "python_over_ours": ratio,
            }));
        }
        json.insert(name.replace(' ', "_"), serde_json::Value::Array(rows));
    }
    if let (Some(b), Some(run)) = (&inputs.backfill, backfill) {
        let ratio = run.wall.as_secs_f64() / b.ours.0.as_secs_f64();
        writeln!(
            report,
            "   backfill of phase A ({}..{}), no embeddings:",
            b.from, b.to
        )?;
        writeln!(
            report,
            "     market-encoder     {:>8.2} s  peak RSS {:>7.1} MiB  (phase A)",
            b.ours.0.as_secs_f64(),
            kib_to_mib(b.ours.1)
        )?;
        writeln!(
            report,
            "     python             {:>8.2} s  peak RSS {:>7.1} MiB  ({ratio:.2}x ours)",
            run.wall.as_secs_f64(),
            kib_to_mib(run.peak_rss_kib)
        )?;
        json.insert(
            "backfill".into(),
            serde_json::json!({"ours_s": b.ours.0.as_secs_f64(), "python_s": run.wall.as_secs_f64(),
                "python_peak_rss_mib": kib_to_mib(run.peak_rss_kib), "python_over_ours": ratio}),
        );
    }
    Ok(serde_json::Value::Object(json))
}

/// The release binary over `window`, with its embed and index stages into `collection`.
async fn ours(
    inputs: &Inputs<'_>,
    config: &Path,
    yahoo: &FakeYahoo,
    db: &ScratchDb,
    collection: &str,
    (from, to): (NaiveDate, NaiveDate),
) -> anyhow::Result<Run> {
    // With MARKET_ENCODER_BENCH_JOB_LOGS=DIR, the job logs at info (timestamps of each stage)
    // into DIR/COLLECTION-FROM.log: where its time goes, at the cost of a few log lines.
    let logs = std::env::var_os("MARKET_ENCODER_BENCH_JOB_LOGS").map(std::path::PathBuf::from);
    let mut command = tokio::process::Command::new(inputs.binary);
    command
        .args(["--config", path_str(config)?])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .env("DATABASE_URL", &db.url)
        .env("YAHOO_BASE_URL", yahoo.base_url())
        .env("LOG_LEVEL", if logs.is_some() { "info" } else { "warn" })
        .env("CHROMA_URL", inputs.chroma_url)
        .env("CHROMA_COLLECTION", collection)
        .env("EMBEDDING_MODEL_DIR", inputs.model_dir);
    let (output, wall, peak_rss_kib) = run_measured(&mut command).await?;
    if let Some(dir) = logs {
        let path = dir.join(format!("{collection}-{from}.log"));
        std::fs::write(&path, &output.stderr)
            .with_context(|| format!("writing the job's log to {}", path.display()))?;
    }
    succeeded(&output)?;
    let summary = summary_of(&output.stdout)?;
    if let Some(error) = summary["summary"]["index"]["error"].as_str() {
        bail!("the embed and index stages failed: {error}");
    }
    Ok(Run {
        wall,
        peak_rss_kib,
        documents: summary["summary"]["index"]["documents_indexed"]
            .as_u64()
            .unwrap_or(0),
    })
}

/// `python_stack.py` over `window`; with `chroma` (collection, mode) it embeds and indexes.
async fn python(
    inputs: &Inputs<'_>,
    home: &Path,
    config: &Path,
    yahoo: &FakeYahoo,
    db: &ScratchDb,
    chroma: Option<(&str, &str)>,
    (from, to): (NaiveDate, NaiveDate),
) -> anyhow::Result<Run> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python_stack.py");
    let mut command = tokio::process::Command::new(inputs.python);
    command
        .arg(&script)
        .arg(config)
        .args([
            from.to_string(),
            to.to_string(),
            db.url.clone(),
            yahoo.base_url(),
        ])
        // The shipped embedding function's model, where chromadb would have downloaded it.
        .env("HOME", home)
        .env("EMBEDDING_MODEL_DIR", inputs.model_dir)
        .env("ONNX_MODEL", inputs.onnx_model)
        .env("ANONYMIZED_TELEMETRY", "False");
    if let Some((collection, mode)) = chroma {
        command.args([inputs.chroma_url, collection, mode]);
    }
    let (output, wall, peak_rss_kib) = run_measured(&mut command).await?;
    if !output.status.success() {
        bail!(
            "python_stack.py exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("python_stack.py printed no JSON line")?;
    let result: serde_json::Value = serde_json::from_str(line)?;
    let documents = result["documents"].as_u64().unwrap_or(0);
    if chroma.is_some() && result["chroma_count"].as_u64().is_none() && documents > 0 {
        bail!("python_stack.py indexed nothing: {line}");
    }
    Ok(Run {
        wall,
        peak_rss_kib,
        documents,
    })
}

/// A HOME whose `.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx` holds what chromadb's
/// default embedding function downloads: the model in ONNX and its tokenizer files.
fn shipped_model_home(inputs: &Inputs<'_>) -> anyhow::Result<std::path::PathBuf> {
    let home = inputs.work_dir.join("python-home");
    let dir = home.join(".cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx");
    std::fs::create_dir_all(&dir)?;
    let link = |from: &Path, name: &str| -> anyhow::Result<()> {
        let to = dir.join(name);
        if !to.exists() {
            std::os::unix::fs::symlink(from, &to)
                .with_context(|| format!("linking {} into {}", from.display(), dir.display()))?;
        }
        Ok(())
    };
    link(inputs.onnx_model, "model.onnx")?;
    for name in [
        "config.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "tokenizer.json",
        "vocab.txt",
    ] {
        link(&inputs.model_dir.join(name), name)?;
    }
    Ok(home)
}

/// The weekday after `date`.
fn next_weekday(date: NaiveDate) -> NaiveDate {
    let mut d = date + Days::new(1);
    while matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
        d = d + Days::new(1);
    }
    d
}
