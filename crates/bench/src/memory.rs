//! Phase C, market memory (`--memory`): embedding throughput on this CPU versus
//! sentence-transformers on the same machine, the indexing rate into Chroma, and the memory the
//! model takes. Runs on phase A's job database, whose `documents` hold one narrative per
//! security for each of its last `embedding_days` trade dates.
//!
//! 1. The job with its embed and index stages: the release binary again, on the same database
//!    and config, into a fresh Chroma collection. Prices are stored already, so the run mostly
//!    embeds and indexes the pending documents. Wall time, documents/s, the embed and index
//!    stages' own time (from the summary line), and the child's peak RSS against phase A's: the
//!    difference is what the model and its activations take.
//! 2. Embedding alone, in-process: `MiniLm::embed` on the same documents after a warm-up, best
//!    of up to 3 passes (fewer when a pass is long).
//! 3. sentence-transformers (`st_throughput.py`, with the python of `--st-python`) and
//!    onnxruntime (`ort_throughput.py run`, with `--ort-python` and the ONNX export of
//!    `--onnx-model`: one session, dynamic padding, as many threads as ours) on the very same
//!    texts and as many passes, right after step 2. The report names the kernel path our
//!    encoder took on this CPU (`minilm::KernelPath`) and the ratios to both.
//! 4. Chroma with our client: the vectors of 2 upserted into a fresh collection in the job's
//!    rounds of 256 (new records), the same again (unchanged records), then query latency.
//!
//! The benchmark's collections are deleted at the end, also after an error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use market_encoder::config::env::EnvValue;
use market_encoder::job::embed::MiniLm;
use market_encoder::job::index::{ChromaClient, ChromaSettings, Include, Record};
use market_encoder::job::record;
use market_encoder::job::store::PendingDocument;
use sqlx::{Connection, PgConnection, Row};

use crate::{kib_to_mib, per_second, run_measured, status_kib, summary_of};

/// Texts embedded before timing (the first pass allocates and faults in the weights).
const WARM_UP: usize = 64;
/// At most this many timed embedding passes; the best counts.
const MAX_PASSES: usize = 3;
/// Another pass is started only if the passes so far plus one more stay within this budget, so
/// that 6,000 documents on 2 cores take one pass per implementation, small runs three.
const PASS_BUDGET: Duration = Duration::from_secs(30);
/// Records per upsert, as the job's index stage sends them (`app::memory_options`).
const INDEX_ROUND: usize = 256;
/// Query calls timed, and their `n_results`.
const QUERIES: usize = 100;
const QUERY_K: u32 = 10;
/// The sentence-transformers side, next to this crate's manifest.
const ST_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/st_throughput.py");
/// The onnxruntime side (`run MODEL_DIR MODEL_ONNX TEXTS [PASSES] [THREADS]`).
const ORT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ort_throughput.py");

/// What phase C needs from the run around it.
pub struct Inputs<'a> {
    /// The release `market-encoder` binary.
    pub binary: &'a str,
    /// Its arguments in phase A (`--config`, `--from`, `--to`), without `--no-embeddings`.
    pub job_args: &'a [String],
    /// Phase A's job database.
    pub database_url: &'a str,
    pub yahoo_base_url: &'a str,
    pub chroma_url: &'a str,
    pub model_dir: &'a Path,
    pub st_python: Option<&'a Path>,
    /// A python with onnxruntime, tokenizers and numpy, and the model exported to ONNX
    /// (`scripts/lib/ort.sh`).
    pub ort: Option<(&'a Path, &'a Path)>,
    /// A scratch directory (the texts for sentence-transformers go there).
    pub work_dir: &'a Path,
    /// Phase A's peak RSS: the job without the model.
    pub phase_a_peak_rss_kib: i64,
}

/// Phase C's figures.
pub struct MemoryReport {
    documents: usize,
    dimension: usize,
    job: JobRun,
    embed: EmbedRun,
    st: StOutcome,
    ort: StOutcome,
    chroma: ChromaRun,
}

struct JobRun {
    wall: Duration,
    indexed: u64,
    /// The embed and index stages alone (`summary.index.elapsed_ms`).
    stages: Duration,
    peak_rss_kib: i64,
    phase_a_peak_rss_kib: i64,
}

struct EmbedRun {
    passes: Vec<Duration>,
    /// The matrix-product kernel this CPU took (`minilm::KernelPath::selected`).
    kernel: minilm::KernelPath,
    threads: usize,
    load: Duration,
    /// The benchmark's own RSS growth across `MiniLm::load` (None without /proc).
    load_rss_kib: Option<i64>,
    weights_bytes: u64,
}

enum StOutcome {
    NotMeasured,
    Measured(StRun),
    Failed(String),
}

struct StRun {
    sentences_per_s: f64,
    threads: u64,
    peak_rss_mib: f64,
    versions: String,
}

struct ChromaRun {
    records: usize,
    new: Duration,
    unchanged: Duration,
    latencies: Vec<Duration>,
    /// Queries whose nearest hit was the record whose vector was the query.
    self_first: usize,
}

/// Runs phase C and deletes its Chroma collections afterwards, whether it succeeded or not.
pub async fn run(inputs: &Inputs<'_>) -> anyhow::Result<MemoryReport> {
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let pid = std::process::id();
    let job_collection = format!("me-bench-job-{pid}-{stamp}");
    let bench_collection = format!("me-bench-index-{pid}-{stamp}");
    let settings = ChromaSettings::from_env(&|name| match name {
        "CHROMA_URL" => EnvValue::Present(inputs.chroma_url.to_owned()),
        other => EnvValue::from_process(other),
    })?;
    let result = measure(inputs, &settings, &job_collection, &bench_collection).await;
    let cleanup = async {
        let client = ChromaClient::connect(&settings).await?;
        client.delete_collection(&job_collection).await?;
        client.delete_collection(&bench_collection).await?;
        anyhow::Ok(())
    }
    .await;
    let report = result?;
    cleanup.context("deleting the benchmark's Chroma collections")?;
    Ok(report)
}

async fn measure(
    inputs: &Inputs<'_>,
    settings: &ChromaSettings,
    job_collection: &str,
    bench_collection: &str,
) -> anyhow::Result<MemoryReport> {
    // Chroma first: if it does not answer, fail before the long steps.
    let client = ChromaClient::connect(settings).await.with_context(|| {
        format!(
            "Chroma at {} (scripts/bench.sh --memory starts one)",
            inputs.chroma_url
        )
    })?;

    eprintln!("phase C 1/4: the job with its embed and index stages");
    let job = job_with_memory(inputs, job_collection).await?;

    let documents = read_documents(inputs.database_url).await?;
    if documents.is_empty() {
        bail!("phase A's database holds no documents to embed");
    }
    if usize::try_from(job.indexed).ok() != Some(documents.len()) {
        bail!(
            "the job indexed {} documents, but the database holds {}",
            job.indexed,
            documents.len()
        );
    }
    let texts: Arc<Vec<String>> = Arc::new(documents.iter().map(|d| d.document.clone()).collect());

    eprintln!(
        "phase C 2/4: MiniLm::embed on {} documents, in-process",
        texts.len()
    );
    let (embed, vectors, dimension) =
        embed_in_process(inputs.model_dir, Arc::clone(&texts)).await?;

    // Back to back with step 2, the same texts and as many passes.
    let texts_path: PathBuf = inputs.work_dir.join("texts.json");
    std::fs::write(&texts_path, serde_json::to_vec(&*texts)?)?;
    let passes = embed.passes.len().to_string();
    let model_dir = inputs.model_dir.as_os_str();
    let st = match inputs.st_python {
        None => StOutcome::NotMeasured,
        Some(python) => {
            eprintln!("phase C 3/4: sentence-transformers on the same texts");
            let args = [
                ST_SCRIPT.as_ref(),
                model_dir,
                texts_path.as_os_str(),
                passes.as_ref(),
            ];
            match python_throughput(python, &args).await {
                Ok(run) => StOutcome::Measured(run),
                Err(e) => StOutcome::Failed(format!("{e:#}")),
            }
        }
    };
    let ort = match inputs.ort {
        None => StOutcome::NotMeasured,
        Some((python, onnx)) => {
            eprintln!("phase C 3/4: onnxruntime on the same texts");
            let threads = embed.threads.to_string();
            let args = [
                ORT_SCRIPT.as_ref(),
                "run".as_ref(),
                model_dir,
                onnx.as_os_str(),
                texts_path.as_os_str(),
                passes.as_ref(),
                threads.as_ref(),
            ];
            match python_throughput(python, &args).await {
                Ok(run) => StOutcome::Measured(run),
                Err(e) => StOutcome::Failed(format!("{e:#}")),
            }
        }
    };
    std::fs::remove_file(&texts_path)?;

    eprintln!("phase C 4/4: Chroma indexing and queries");
    let chroma = index_and_query(&client, bench_collection, &documents, vectors).await?;
    Ok(MemoryReport {
        documents: documents.len(),
        dimension,
        job,
        embed,
        st,
        ort,
        chroma,
    })
}

/// Step 1: the release binary with its embed and index stages, on phase A's database.
async fn job_with_memory(inputs: &Inputs<'_>, collection: &str) -> anyhow::Result<JobRun> {
    // The peak RSS of this child on its own (see `run_measured`).
    let (output, wall, peak_rss_kib) = run_measured(
        tokio::process::Command::new(inputs.binary)
            .args(inputs.job_args)
            .env("DATABASE_URL", inputs.database_url)
            .env("YAHOO_BASE_URL", inputs.yahoo_base_url)
            .env("CHROMA_URL", inputs.chroma_url)
            .env("CHROMA_COLLECTION", collection)
            .env("EMBEDDING_MODEL_DIR", inputs.model_dir)
            .env("LOG_LEVEL", "warn"),
    )
    .await
    .with_context(|| format!("cannot run {}", inputs.binary))?;
    if !output.status.success() {
        bail!(
            "market-encoder with the embed and index stages exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let summary = summary_of(&output.stdout)?;
    let index = &summary["summary"]["index"];
    if let Some(error) = index["error"].as_str() {
        bail!("the embed and index stages failed: {error}");
    }
    Ok(JobRun {
        wall,
        indexed: index["documents_indexed"]
            .as_u64()
            .context("no summary.index.documents_indexed in the summary line")?,
        stages: Duration::from_millis(index["elapsed_ms"].as_u64().unwrap_or(0)),
        peak_rss_kib,
        phase_a_peak_rss_kib: inputs.phase_a_peak_rss_kib,
    })
}

/// Every document of the job database, in the job's own order.
async fn read_documents(database_url: &str) -> anyhow::Result<Vec<PendingDocument>> {
    let mut conn = PgConnection::connect(database_url).await?;
    let rows = sqlx::query(
        "SELECT symbol, trade_date, document, metadata, content_hash FROM documents
         ORDER BY symbol, trade_date",
    )
    .fetch_all(&mut conn)
    .await
    .context("reading the documents")?;
    conn.close().await?;
    rows.iter()
        .map(|r| {
            let metadata: sqlx::types::Json<serde_json::Map<String, serde_json::Value>> =
                r.try_get(3)?;
            Ok(PendingDocument {
                symbol: r.try_get(0)?,
                trade_date: r.try_get(1)?,
                document: r.try_get(2)?,
                metadata: metadata.0,
                content_hash: r.try_get(4)?,
            })
        })
        .collect()
}

/// Step 2: load the model, warm up, then time whole passes over `texts`.
async fn embed_in_process(
    model_dir: &Path,
    texts: Arc<Vec<String>>,
) -> anyhow::Result<(EmbedRun, Vec<Vec<f32>>, usize)> {
    let dir = model_dir.to_owned();
    let rss_before = self_rss_kib();
    let started = Instant::now();
    let model = tokio::task::spawn_blocking(move || MiniLm::load(&dir)).await??;
    let load = started.elapsed();
    let load_rss_kib = rss_before.zip(self_rss_kib()).map(|(b, a)| a - b);
    let weights_bytes =
        std::fs::metadata(model_dir.join("model.safetensors")).map_or(0, |m| m.len());
    let dimension = model.dimension();
    let count = texts.len();
    let (passes, vectors) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        model.embed(&refs[..refs.len().min(WARM_UP)])?;
        let mut passes: Vec<Duration> = Vec::new();
        let mut vectors = Vec::new();
        while passes.len() < MAX_PASSES {
            let started = Instant::now();
            vectors = model.embed(&refs)?;
            let took = started.elapsed();
            passes.push(took);
            if passes.iter().sum::<Duration>() + took > PASS_BUDGET {
                break;
            }
        }
        Ok((passes, vectors))
    })
    .await??;
    if vectors.len() != count || vectors.iter().any(|v| v.len() != dimension) {
        bail!("MiniLm::embed returned vectors of the wrong number or size");
    }
    Ok((
        EmbedRun {
            passes,
            kernel: minilm::KernelPath::selected(),
            threads: rayon::current_num_threads(),
            load,
            load_rss_kib,
            weights_bytes,
        },
        vectors,
        dimension,
    ))
}

/// Step 3: `st_throughput.py` or `ort_throughput.py run` (`args`, the script first) with
/// `python`: both print one JSON line of the same fields.
async fn python_throughput(python: &Path, args: &[&std::ffi::OsStr]) -> anyhow::Result<StRun> {
    let output = tokio::process::Command::new(python)
        .args(args)
        // The model is local: no look-ups on the hub.
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {}", python.display()))?;
    let script = args
        .first()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!(
            "{} {script} exited with {}: {}",
            python.display(),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no JSON line from {script}"))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let versions = v["versions"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{} {}", k.replace('_', "-"), v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Ok(StRun {
        sentences_per_s: v["sentences_per_s"]
            .as_f64()
            .with_context(|| format!("no sentences_per_s from {script}"))?,
        threads: v["threads"].as_u64().unwrap_or(0),
        peak_rss_mib: v["peak_rss_mib"].as_f64().unwrap_or(0.0),
        versions,
    })
}

/// Step 4: upserts (new, then unchanged) in the job's rounds, then single-vector queries.
async fn index_and_query(
    client: &ChromaClient,
    name: &str,
    documents: &[PendingDocument],
    vectors: Vec<Vec<f32>>,
) -> anyhow::Result<ChromaRun> {
    // The records exactly as the job's index stage builds them.
    let records: Vec<Record> = documents
        .iter()
        .zip(vectors)
        .map(|(d, embedding)| record(d, embedding))
        .collect();
    let collection = client.collection(name).await?;
    let new = upsert_rounds(client, &collection, &records).await?;
    let unchanged = upsert_rounds(client, &collection, &records).await?;
    let count = client.count(&collection).await?;
    if count != records.len() {
        bail!(
            "Chroma holds {count} records after upserting {}",
            records.len()
        );
    }
    let include = [Include::Documents, Include::Metadatas, Include::Distances];
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut latencies = Vec::with_capacity(QUERIES);
    let mut self_first = 0;
    for _ in 0..QUERIES {
        let record = &records[random.below(records.len())];
        let started = Instant::now();
        let hits = client
            .query(
                &collection,
                std::slice::from_ref(&record.embedding),
                QUERY_K,
                None,
                &include,
            )
            .await?;
        latencies.push(started.elapsed());
        if hits
            .first()
            .and_then(|h| h.first())
            .is_some_and(|h| h.id == record.id)
        {
            self_first += 1;
        }
    }
    latencies.sort();
    Ok(ChromaRun {
        records: records.len(),
        new,
        unchanged,
        latencies,
        self_first,
    })
}

async fn upsert_rounds(
    client: &ChromaClient,
    collection: &market_encoder::job::index::Collection,
    records: &[Record],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for round in records.chunks(INDEX_ROUND) {
        client.upsert(collection, round).await?;
    }
    Ok(started.elapsed())
}

impl MemoryReport {
    fn best_pass(&self) -> Duration {
        self.embed.passes.iter().min().copied().unwrap_or_default()
    }

    fn ours_per_s(&self) -> f64 {
        per_second(as_u64(self.documents), self.best_pass())
    }

    fn model_rss_mib(&self) -> f64 {
        kib_to_mib(self.job.peak_rss_kib - self.job.phase_a_peak_rss_kib)
    }

    fn median(&self) -> Duration {
        percentile(&self.chroma.latencies, 50)
    }

    fn p95(&self) -> Duration {
        percentile(&self.chroma.latencies, 95)
    }

    /// Why phase C is incomplete (sentence-transformers or onnxruntime was asked for and
    /// failed), if it is.
    pub fn failure(&self) -> Option<&str> {
        [&self.st, &self.ort].into_iter().find_map(|o| match o {
            StOutcome::Failed(e) => Some(e.as_str()),
            _ => None,
        })
    }

    /// `| name: N sentences/s (...): ours/theirs` for the README rows.
    fn versus(&self, name: &str, outcome: &StOutcome) -> String {
        match outcome {
            StOutcome::Measured(run) => format!(
                "; {name} on the same texts: {:.0} sentences/s ({} threads; {}): ours {:.2}x",
                run.sentences_per_s,
                run.threads,
                run.versions,
                self.ours_per_s() / run.sentences_per_s
            ),
            StOutcome::NotMeasured | StOutcome::Failed(_) => format!("; {name}: not measured"),
        }
    }

    fn write_versus(
        &self,
        out: &mut String,
        name: &str,
        flag: &str,
        outcome: &StOutcome,
    ) -> std::fmt::Result {
        match outcome {
            StOutcome::NotMeasured => writeln!(out, "   {name}: not measured (pass {flag})"),
            StOutcome::Failed(e) => writeln!(out, "   {name}: FAILED: {e}"),
            StOutcome::Measured(run) => {
                writeln!(
                    out,
                    "   {name:<21} {:>8.0} sentences/s  ({} threads; peak RSS {:.0} MiB; {})",
                    run.sentences_per_s, run.threads, run.peak_rss_mib, run.versions
                )?;
                writeln!(
                    out,
                    "   ours / {name:<12} {:>8.2}x  (target: >= 1)",
                    self.ours_per_s() / run.sentences_per_s
                )
            }
        }
    }

    /// Phase C in the style of phases A and B.
    pub fn write_text(&self, out: &mut String) -> std::fmt::Result {
        let (job, embed, chroma) = (&self.job, &self.embed, &self.chroma);
        writeln!(
            out,
            "C. market memory ({} documents, all-MiniLM-L6-v2 {} dimensions):",
            self.documents, self.dimension
        )?;
        writeln!(
            out,
            "   job with embed + index (release binary on phase A's database, prices already stored):"
        )?;
        writeln!(
            out,
            "   wall time           {:>10.2} s",
            job.wall.as_secs_f64()
        )?;
        writeln!(out, "   documents indexed   {:>10}", job.indexed)?;
        writeln!(
            out,
            "   documents/s         {:>10.0}  (embed + index stages alone: {:.2} s, {:.0}/s)",
            per_second(job.indexed, job.wall),
            job.stages.as_secs_f64(),
            per_second(job.indexed, job.stages)
        )?;
        writeln!(
            out,
            "   peak RSS            {:>10.1} MiB  (phase A {:.1} MiB: +{:.1} MiB for the model and its activations)",
            kib_to_mib(job.peak_rss_kib),
            kib_to_mib(job.phase_a_peak_rss_kib),
            self.model_rss_mib()
        )?;
        writeln!(
            out,
            "   embedding alone, same texts, best of {} (warm-up {WARM_UP}):",
            embed.passes.len()
        )?;
        writeln!(
            out,
            "   ours, in-process    {:>10.0} sentences/s  ({} rayon threads; {:.2} s per pass; kernel path {})",
            self.ours_per_s(),
            embed.threads,
            self.best_pass().as_secs_f64(),
            embed.kernel
        )?;
        writeln!(
            out,
            "   model load          {:>10.2} s  (+{} MiB RSS in-process; model.safetensors {:.1} MiB)",
            embed.load.as_secs_f64(),
            embed
                .load_rss_kib
                .map_or_else(|| "?".to_owned(), |k| format!("{:.1}", kib_to_mib(k))),
            bytes_to_mib(embed.weights_bytes)
        )?;
        self.write_versus(out, "sentence-transformers", "--st-python", &self.st)?;
        self.write_versus(
            out,
            "onnxruntime",
            "--ort-python and --onnx-model",
            &self.ort,
        )?;
        writeln!(
            out,
            "   Chroma, our client ({} records, upserts of {INDEX_ROUND} as in the job):",
            chroma.records
        )?;
        writeln!(
            out,
            "   new records/s       {:>10.0}  ({:.2} s)",
            per_second(as_u64(chroma.records), chroma.new),
            chroma.new.as_secs_f64()
        )?;
        writeln!(
            out,
            "   unchanged records/s {:>10.0}  ({:.2} s)",
            per_second(as_u64(chroma.records), chroma.unchanged),
            chroma.unchanged.as_secs_f64()
        )?;
        writeln!(
            out,
            "   query k={QUERY_K}          {:>10.1} ms median, {:.1} ms p95  ({} queries by a stored vector; its own record first in {}/{})",
            millis(self.median()),
            millis(self.p95()),
            chroma.latencies.len(),
            chroma.self_first,
            chroma.latencies.len()
        )
    }

    /// Rows for README's Performance table (`| measure | figure | target |`).
    pub fn readme_rows(&self) -> String {
        let (job, embed, chroma) = (&self.job, &self.embed, &self.chroma);
        let mut rows = String::new();
        let theirs = format!(
            "{}{}",
            self.versus("sentence-transformers", &self.st),
            self.versus("onnxruntime", &self.ort)
        );
        let _ = writeln!(
            rows,
            "| embedding throughput, in-process, {} documents (best of {}, {} threads, {} kernels) | {:.0} sentences/s{theirs} | at least onnxruntime's |",
            self.documents,
            embed.passes.len(),
            embed.threads,
            embed.kernel,
            self.ours_per_s()
        );
        let _ = writeln!(
            rows,
            "| job with the embed and index stages, {} documents (prices already stored) | {:.2} s, {:.0} documents/s (embed + index stages alone {:.2} s) | |",
            job.indexed,
            job.wall.as_secs_f64(),
            per_second(job.indexed, job.wall),
            job.stages.as_secs_f64()
        );
        let _ = writeln!(
            rows,
            "| peak RSS of the job with the embed and index stages | {:.0} MiB (+{:.0} MiB over prices only: the model and its activations) | |",
            kib_to_mib(job.peak_rss_kib),
            self.model_rss_mib()
        );
        let _ = writeln!(
            rows,
            "| Chroma indexing with our client, {} records in upserts of {INDEX_ROUND} | new: {:.0} records/s; unchanged: {:.0} records/s | |",
            chroma.records,
            per_second(as_u64(chroma.records), chroma.new),
            per_second(as_u64(chroma.records), chroma.unchanged)
        );
        let _ = writeln!(
            rows,
            "| Chroma query, k={QUERY_K}, {} records | {:.1} ms median, {:.1} ms p95 | |",
            chroma.records,
            millis(self.median()),
            millis(self.p95())
        );
        rows
    }

    /// Phase C in the benchmark's JSON line.
    pub fn json(&self) -> serde_json::Value {
        let (job, embed, chroma) = (&self.job, &self.embed, &self.chroma);
        let other = |outcome: &StOutcome| match outcome {
            StOutcome::Measured(run) => serde_json::json!({
                "sentences_per_s": run.sentences_per_s, "threads": run.threads,
                "peak_rss_mib": run.peak_rss_mib, "versions": run.versions,
                "ours_ratio": self.ours_per_s() / run.sentences_per_s,
            }),
            StOutcome::NotMeasured => serde_json::Value::Null,
            StOutcome::Failed(e) => serde_json::json!({ "error": e }),
        };
        let (st, ort) = (other(&self.st), other(&self.ort));
        serde_json::json!({
            "documents": self.documents,
            "job_wall_s": job.wall.as_secs_f64(), "job_documents_indexed": job.indexed,
            "job_documents_per_s": per_second(job.indexed, job.wall),
            "job_index_stages_s": job.stages.as_secs_f64(),
            "job_peak_rss_mib": kib_to_mib(job.peak_rss_kib),
            "model_rss_mib": self.model_rss_mib(),
            "embed_sentences_per_s": self.ours_per_s(), "embed_passes": embed.passes.len(),
            "embed_threads": embed.threads, "model_load_s": embed.load.as_secs_f64(),
            "embed_kernel_path": embed.kernel.name(),
            "sentence_transformers": st,
            "onnxruntime": ort,
            "chroma_new_records_per_s": per_second(as_u64(chroma.records), chroma.new),
            "chroma_unchanged_records_per_s": per_second(as_u64(chroma.records), chroma.unchanged),
            "chroma_query_median_ms": millis(self.median()),
            "chroma_query_p95_ms": millis(self.p95()),
        })
    }
}

/// The nearest-rank `pct`th percentile of sorted values.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let rank = (sorted.len() * pct).div_ceil(100);
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[allow(clippy::cast_precision_loss)] // model files are far below 2^52 bytes
fn bytes_to_mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// This process's current resident set (KiB).
fn self_rss_kib() -> Option<i64> {
    status_kib("/proc/self/status", "VmRSS:")
}

/// xorshift64: which stored vectors to query with, the same every run, without a dependency.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % as_u64(n.max(1))).unwrap_or(0)
    }
}
