//! The embedding model against sentence-transformers' own vectors
//! (tests/fixtures/embeddings/reference.json, made by make_reference.py beside it), and the hub
//! download against a local server laid out like the Hugging Face hub.
//!
//! Needs EMBEDDING_MODEL_DIR (scripts/test.sh sets it with `ensure_model` from
//! scripts/lib/model.sh).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use market_encoder::job::embed::{self, EmbedError, HUB_FILES, MODEL_REPO, MiniLm};
use serde::Deserialize;
use url::Url;

const REFERENCE: &str = include_str!("../fixtures/embeddings/reference.json");

#[derive(Deserialize)]
struct Reference {
    dimension: usize,
    max_seq_length: usize,
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(REFERENCE).unwrap()
}

fn model_dir() -> PathBuf {
    match market_encoder::config::env::model_dir(&|name| {
        market_encoder::config::env::EnvValue::from_process(name)
    }) {
        Some(dir) => dir,
        None => panic!(
            "{}\nthese tests need the embedding model: run them through scripts/test.sh, which sets EMBEDDING_MODEL_DIR",
            EmbedError::ModelDirUnset
        ),
    }
}

/// The model, loaded once for all tests of this file.
fn model() -> &'static MiniLm {
    static MODEL: OnceLock<MiniLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        let started = Instant::now();
        let model = MiniLm::load(&model_dir()).unwrap();
        eprintln!("model loaded in {:?}", started.elapsed());
        model
    })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_against_reference(reference: &Reference, got: &[Vec<f32>], how: &str) {
    assert_eq!(got.len(), reference.sentences.len());
    for (s, v) in reference.sentences.iter().zip(got) {
        assert_eq!(v.len(), reference.dimension);
        let norm = dot(v, v).sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "{how}: norm {norm} for {:?}",
            s.text
        );
        let c = cosine(v, &s.embedding);
        let short: String = s.text.chars().take(50).collect();
        eprintln!("{how}: cosine {c:.7} ({} tokens) {short:?}", s.tokens);
        assert!(c >= 0.999, "{how}: cosine {c} < 0.999 for {:?}", s.text);
    }
}

#[test]
fn vectors_match_sentence_transformers_batched_and_one_by_one() {
    let reference = reference();
    assert!(
        reference
            .sentences
            .iter()
            .any(|s| s.tokens > reference.max_seq_length),
        "the reference must exercise truncation"
    );
    let model = model();
    assert_eq!(model.dimension(), 384);
    assert_eq!(model.dimension(), reference.dimension);
    assert_eq!(model.max_seq_length(), reference.max_seq_length);

    let texts: Vec<&str> = reference
        .sentences
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let batched = model.embed(&texts).unwrap();
    check_against_reference(&reference, &batched, "batch");

    let single: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| model.embed(&[t]).unwrap().pop().unwrap())
        .collect();
    check_against_reference(&reference, &single, "single");
    for ((b, s), text) in batched.iter().zip(&single).zip(&texts) {
        let diff = max_abs_diff(b, s);
        assert!(
            diff < 1e-5,
            "batch and single differ by {diff} for {text:?}"
        );
    }
}

#[test]
fn many_texts_keep_their_order_across_batches() {
    // 70 texts of different lengths = 3 batches; each must come back in its own place.
    let model = model();
    let texts: Vec<String> = (0..70)
        .map(|i| match i % 3 {
            0 => format!("Day {i}: stocks fell."),
            1 => narratives(i + 1).pop().unwrap(),
            _ => format!("{i} {}", "the dollar rose against the yen ".repeat(i % 5)),
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let all = model.embed(&refs).unwrap();
    assert_eq!(all.len(), 70);
    for i in [0, 1, 2, 31, 32, 33, 64, 69] {
        let alone = model.embed(&[refs[i]]).unwrap().pop().unwrap();
        let diff = max_abs_diff(&all[i], &alone);
        assert!(diff < 1e-5, "text {i} differs by {diff} in a batch");
    }
    assert!(model.embed(&[]).unwrap().is_empty());
}

#[test]
fn a_bad_model_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = MiniLm::load(&dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, EmbedError::NotADirectory { .. }), "{err}");
    assert!(err.to_string().contains("set EMBEDDING_MODEL_DIR"), "{err}");

    let err = MiniLm::load(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "embedding model directory {} has no config.json; set EMBEDDING_MODEL_DIR to a Hugging Face model directory (config.json, tokenizer.json, model.safetensors)",
            dir.path().display()
        )
    );

    // A non-BERT config, and then a cut-short weights file, next to the real tokenizer.
    let real = model_dir();
    std::fs::copy(
        real.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"not weights").unwrap();
    let err = MiniLm::load(dir.path()).unwrap_err();
    assert!(matches!(err, EmbedError::BadConfig { .. }), "{err}");

    std::fs::copy(real.join("config.json"), dir.path().join("config.json")).unwrap();
    let weights = std::fs::read(real.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let err = MiniLm::load(dir.path()).unwrap_err();
    assert!(matches!(err, EmbedError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    assert!(!err.to_string().contains('\n'), "one line: {err}");
}

#[test]
fn unset_model_dir_error_names_the_fix() {
    let msg = EmbedError::ModelDirUnset.to_string();
    assert!(msg.starts_with("EMBEDDING_MODEL_DIR is not set; "), "{msg}");
    assert!(msg.contains("ensure_model"), "{msg}");
}

/// A stand-in for the Hugging Face hub: GET /{owner}/{name}/resolve/main/{file} from a model
/// directory, for one repository; `fail` files answer 500. Counts the requests per file.
struct Hub {
    url: Url,
    requests: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
    fail_once: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    /// The next request for `file` answers 500.
    fn fail_once(&self, file: &str) {
        self.fail_once.lock().unwrap().push(file.to_owned());
    }
}

#[derive(Clone)]
struct HubState {
    repo: String,
    dir: PathBuf,
    fail: Vec<String>,
    fail_once: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

async fn hub_file(
    State(state): State<HubState>,
    UrlPath((owner, name, file)): UrlPath<(String, String, String)>,
) -> Response {
    state.total.fetch_add(1, Ordering::SeqCst);
    *state
        .requests
        .lock()
        .unwrap()
        .entry(file.clone())
        .or_default() += 1;
    if format!("{owner}/{name}") != state.repo || file.contains("..") {
        return (StatusCode::NOT_FOUND, "Repository not found").into_response();
    }
    let once = {
        let mut pending = state.fail_once.lock().unwrap();
        let hit = pending.contains(&file);
        pending.retain(|f| f != &file);
        hit
    };
    if once || state.fail.contains(&file) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    match tokio::fs::read(state.dir.join(&file)).await {
        Ok(bytes) => bytes.into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "Entry not found").into_response(),
    }
}

async fn start_hub(dir: &Path, fail: &[&str]) -> Hub {
    let requests = Arc::new(Mutex::new(HashMap::new()));
    let total = Arc::new(AtomicUsize::new(0));
    let fail_once = Arc::new(Mutex::new(Vec::new()));
    let state = HubState {
        repo: MODEL_REPO.to_owned(),
        dir: dir.to_owned(),
        fail: fail.iter().map(|s| (*s).to_owned()).collect(),
        fail_once: fail_once.clone(),
        requests: requests.clone(),
        total: total.clone(),
    };
    let app = axum::Router::new()
        .route(
            "/mirror/{owner}/{name}/resolve/main/{*file}",
            axum::routing::get(hub_file),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Hub {
        // Under a path, as a mirror may be: fetch_model must keep it.
        url: Url::parse(&format!("http://{addr}/mirror")).unwrap(),
        requests,
        total,
        fail_once,
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".part") {
            found.push(entry.display().to_string());
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn fetch_model_downloads_the_files_once_and_they_load() {
    let source = model_dir();
    let hub = start_hub(&source, &[]).await;
    let cache = tempfile::tempdir().unwrap();

    let dir = embed::fetch_model(&hub.url, MODEL_REPO, cache.path())
        .await
        .unwrap();
    assert_eq!(
        dir,
        cache.path().join("sentence-transformers--all-MiniLM-L6-v2")
    );
    for file in HUB_FILES {
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            std::fs::read(source.join(file)).unwrap(),
            "{file} differs from the served one"
        );
        assert_eq!(hub.requests.lock().unwrap().get(file), Some(&1), "{file}");
    }
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));

    // Cached: a second call asks nothing.
    let before = hub.total.load(Ordering::SeqCst);
    let again = embed::fetch_model(&hub.url, MODEL_REPO, cache.path())
        .await
        .unwrap();
    assert_eq!(again, dir);
    assert_eq!(hub.total.load(Ordering::SeqCst), before);

    // One file lost: only that one is fetched again.
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    embed::fetch_model(&hub.url, MODEL_REPO, cache.path())
        .await
        .unwrap();
    assert_eq!(hub.total.load(Ordering::SeqCst), before + 1);
    assert_eq!(hub.requests.lock().unwrap()["tokenizer.json"], 2);

    // And what was downloaded is the model.
    let dir2 = dir.clone();
    let vector = tokio::task::spawn_blocking(move || {
        MiniLm::load(&dir2)
            .unwrap()
            .embed(&["Stocks fell."])
            .unwrap()
    })
    .await
    .unwrap();
    let reference = reference();
    let expected = reference
        .sentences
        .iter()
        .find(|s| s.text == "Stocks fell.")
        .unwrap();
    assert!(cosine(&vector[0], &expected.embedding) >= 0.999);
}

#[tokio::test]
async fn fetch_model_failures_name_the_url_and_leave_no_partial_files() {
    let source = model_dir();
    let hub = start_hub(&source, &["tokenizer.json"]).await;
    let cache = tempfile::tempdir().unwrap();

    let err = embed::fetch_model(&hub.url, MODEL_REPO, cache.path())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EmbedError::Download { .. }), "{msg}");
    assert!(
        msg.contains(&format!(
            "{}/sentence-transformers/all-MiniLM-L6-v2/resolve/main/tokenizer.json",
            hub.url
        )),
        "{msg}"
    );
    assert!(msg.contains("HTTP 500"), "{msg}");
    let dir = cache.path().join("sentence-transformers--all-MiniLM-L6-v2");
    assert!(!dir.join("tokenizer.json").exists());
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));

    let err = embed::fetch_model(&hub.url, "someone/else", cache.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 404"), "{err}");

    // Nothing listens there: a transport error, also naming the URL.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let base = Url::parse(&format!("http://{closed}")).unwrap();
    let err = embed::fetch_model(&base, MODEL_REPO, cache.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&closed.to_string()), "{err}");
}

#[tokio::test]
async fn fetch_model_refuses_a_mirror_that_serves_other_bytes() {
    // A mirror whose config.json is not the model's: the pinned SHA-256 refuses it, and
    // nothing is left where the loader would look.
    let source = model_dir();
    let mirror = tempfile::tempdir().unwrap();
    for file in HUB_FILES {
        let to = mirror.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(source.join(file), &to).unwrap();
    }
    std::fs::write(mirror.path().join("config.json"), b"{\"hidden_size\": 384}").unwrap();
    let hub = start_hub(mirror.path(), &[]).await;
    let cache = tempfile::tempdir().unwrap();
    let err = embed::fetch_model(&hub.url, MODEL_REPO, cache.path())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EmbedError::Download { .. }), "{msg}");
    assert!(
        msg.contains("SHA-256") && msg.contains("config.json"),
        "{msg}"
    );
    // Not retried: a mirror that serves other bytes serves them again.
    assert_eq!(hub.requests.lock().unwrap()["config.json"], 1);
    let dir = cache.path().join("sentence-transformers--all-MiniLM-L6-v2");
    assert!(!dir.join("config.json").exists());
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[tokio::test]
async fn fetch_model_retries_a_server_error() {
    // The first answer for tokenizer.json is a 500, the second the file: the download goes on.
    let source = model_dir();
    let hub = start_hub(&source, &[]).await;
    hub.fail_once("tokenizer.json");
    let cache = tempfile::tempdir().unwrap();
    let dir = embed::fetch_model(&hub.url, MODEL_REPO, cache.path())
        .await
        .unwrap();
    assert_eq!(hub.requests.lock().unwrap()["tokenizer.json"], 2);
    assert_eq!(
        std::fs::read(dir.join("tokenizer.json")).unwrap(),
        std::fs::read(source.join("tokenizer.json")).unwrap()
    );
}

// ---- throughput (ignored; run by hand) -------------------------------------------------------

const SECURITIES: [(&str, &str, &str); 8] = [
    ("SPX", "S&P 500 Index", "indices"),
    ("NDX", "Nasdaq 100 Index", "indices"),
    ("AAPL", "Apple Inc.", "equities"),
    ("MSFT", "Microsoft Corporation", "equities"),
    ("SPY", "SPDR S&P 500 ETF Trust", "etfs"),
    ("BTC-USD", "Bitcoin USD", "crypto"),
    ("EURUSD=X", "Euro / US Dollar", "fx"),
    ("GC=F", "Gold Futures", "commodities"),
];
const REGIMES: [&str; 5] = [
    "bull, calm",
    "bull, volatile",
    "bear, calm",
    "bear, volatile",
    "range, calm",
];

/// The same sentences as `narratives()` in fixtures/embeddings/bench_sentence_transformers.py.
fn narratives(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (symbol, name, category) = SECURITIES[i % SECURITIES.len()];
            let date = format!("2024-{:02}-{:02}", 1 + (i / 28) % 12, 1 + i % 28);
            let cents = 10000 + (i * 7919) % 900_000;
            let change_bp = ((i * 37) % 500) as i64 - 250;
            let direction = match change_bp {
                x if x > 0 => "up",
                x if x < 0 => "down",
                _ => "unchanged",
            };
            let pct = change_bp.unsigned_abs();
            let rsi = 20 + (i * 11) % 61;
            let label = if rsi >= 70 {
                "overbought"
            } else if rsi <= 30 {
                "oversold"
            } else {
                "neutral"
            };
            let vol = 8 + (i * 13) % 40;
            let regime = REGIMES[i % REGIMES.len()];
            format!(
                "{date} - {symbol} ({name}, {category}) closed at {}.{:02}, {direction} {}.{:02}% on the day; \
                 20-day volatility {vol}% annualised; RSI {rsi} ({label}); regime: {regime}.",
                cents / 100,
                cents % 100,
                pct / 100,
                pct % 100
            )
        })
        .collect()
}

/// `cargo test --release --test embed -- --ignored --nocapture embed_throughput`
#[test]
#[ignore = "benchmark: run by hand in a release build"]
fn embed_throughput() {
    let sentences = narratives(1000);
    assert_eq!(
        sentences[0],
        "2024-01-01 - SPX (S&P 500 Index, indices) closed at 100.00, down 2.50% on the day; 20-day volatility 8% annualised; RSI 20 (oversold); regime: bull, calm."
    );
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let model = model();
    model.embed(&texts[..64]).unwrap(); // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        let vectors = model.embed(&texts).unwrap();
        best = best.min(started.elapsed().as_secs_f64());
        assert_eq!(vectors.len(), texts.len());
    }
    eprintln!(
        "market-encoder embed: {} sentences in {best:.2} s = {:.0} sentences/s ({} rayon threads)",
        texts.len(),
        texts.len() as f64 / best,
        rayon::current_num_threads()
    );
}
