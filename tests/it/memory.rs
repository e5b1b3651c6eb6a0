//! Market memory end to end: fake Yahoo -> PostgreSQL -> indicators -> narratives ->
//! in-process embeddings -> a real Chroma server, read back with our client and with the
//! official Python client. `scripts/test.sh` provides CHROMA_URL, CHROMA_PYTHON and
//! EMBEDDING_MODEL_DIR.

use crate::common::{TestDb, config, fake, run_job_with};
use market_encoder::config::env::EnvValue;
use market_encoder::job::index::{ChromaClient, ChromaSettings, Include, MetadataValue};
use serde_json::Value;

const WINDOW: [&str; 4] = ["--from", "2024-01-02", "--to", "2024-07-31"];

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh (it starts Chroma and caches the model)")
    })
}

/// A collection of this test's own, and the environment that points the job at it.
struct Memory {
    collection: String,
    chroma_url: String,
    model_dir: String,
}

impl Memory {
    fn new() -> Self {
        Self {
            collection: format!("me_test_{}", uuid::Uuid::new_v4().simple()),
            chroma_url: required("CHROMA_URL"),
            model_dir: required("EMBEDDING_MODEL_DIR"),
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("CHROMA_URL", self.chroma_url.as_str()),
            ("CHROMA_COLLECTION", self.collection.as_str()),
            ("EMBEDDING_MODEL_DIR", self.model_dir.as_str()),
        ]
    }

    async fn client(&self) -> ChromaClient {
        let url = self.chroma_url.clone();
        let collection = self.collection.clone();
        let settings = ChromaSettings::from_env(&move |name| match name {
            "CHROMA_URL" => EnvValue::Present(url.clone()),
            "CHROMA_COLLECTION" => EnvValue::Present(collection.clone()),
            _ => EnvValue::Absent,
        })
        .unwrap();
        ChromaClient::connect(&settings).await.unwrap()
    }

    async fn drop_collection(&self) {
        let _ = self
            .client()
            .await
            .delete_collection(&self.collection)
            .await;
    }
}

async fn pending(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM documents WHERE indexed_hash IS DISTINCT FROM content_hash",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// A fresh database, fake Yahoo, Chroma collection name and directory for the config.
async fn fresh() -> (TestDb, fake_yahoo::FakeYahoo, Memory, tempfile::TempDir) {
    (
        TestDb::new().await,
        fake().await,
        Memory::new(),
        tempfile::tempdir().unwrap(),
    )
}

/// Two ETFs and an index stored and indexed into a collection of the test's own by one job
/// run: the database, the fake, the collection, the config (and its directory) and that run.
async fn indexed_market() -> (
    TestDb,
    fake_yahoo::FakeYahoo,
    Memory,
    tempfile::TempDir,
    std::path::PathBuf,
    crate::common::Run,
) {
    let (db, yahoo, memory, dir) = fresh().await;
    let cfg = config(
        dir.path(),
        &[
            ("etfs", "SPY", "SPY"),
            ("etfs", "QQQ", "QQQ"),
            ("indices", "^GSPC", "SPX"),
        ],
        "",
    );
    let r = run_job_with(&cfg, &db, &yahoo, &WINDOW, &memory.env()).await;
    assert_eq!(r.code, 0, "{r:#?}");
    (db, yahoo, memory, dir, cfg, r)
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_embedded_indexed_and_read_by_the_official_client() {
    let (db, yahoo, memory, _dir, cfg, r) = indexed_market().await;
    // embedding_days is 30 in the test config: 30 documents per security.
    assert_eq!(r.documents_indexed(), 90, "{}", r.stdout);
    assert_eq!(pending(&db).await, 0);

    let client = memory.client().await;
    let collection = client.collection(&memory.collection).await.unwrap();
    assert_eq!(collection.space, "cosine");
    assert_eq!(client.count(&collection).await.unwrap(), 90);

    // The newest SPY day, by its stable id: the same document as in PostgreSQL, typed metadata.
    let (date, document): (chrono::NaiveDate, String) = sqlx::query_as(
        "SELECT trade_date, document FROM documents WHERE symbol = 'SPY' ORDER BY trade_date DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let id = format!("SPY:{date}");
    let hits = client
        .get(
            &collection,
            &[id.as_str()],
            &[Include::Documents, Include::Metadatas, Include::Embeddings],
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].document.as_deref(), Some(document.as_str()));
    let metadata = hits[0].metadata.clone().unwrap();
    assert_eq!(metadata["symbol"], MetadataValue::Str("SPY".into()));
    assert_eq!(metadata["category"], MetadataValue::Str("etfs".into()));
    assert_eq!(metadata["trade_date"], MetadataValue::Str(date.to_string()));
    assert!(matches!(metadata["trade_date_int"], MetadataValue::Int(_)));
    assert!(matches!(metadata["close"], MetadataValue::Float(_)));
    assert!(matches!(metadata["new_52w_high"], MetadataValue::Bool(_)));
    let vector = hits[0].embedding.clone().unwrap();
    assert_eq!(vector.len(), 384);

    // Its nearest neighbour is itself; a filtered query stays in its category.
    let nearest = client
        .query(
            &collection,
            std::slice::from_ref(&vector),
            5,
            None,
            &[Include::Distances, Include::Metadatas],
        )
        .await
        .unwrap();
    assert_eq!(nearest[0][0].id, id);
    assert!(nearest[0][0].distance.unwrap() < 1e-4);
    let indices_only = client
        .query(
            &collection,
            std::slice::from_ref(&vector),
            5,
            Some(serde_json::json!({"category": "indices"})),
            &[Include::Metadatas],
        )
        .await
        .unwrap();
    assert!(
        indices_only[0].iter().all(|h| h.id.starts_with("SPX:")),
        "{indices_only:?}"
    );

    // The official Python client reads what we wrote.
    let python = required("CHROMA_PYTHON");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chroma_interop.py");
    let out = std::process::Command::new(python)
        .args([script, &memory.chroma_url, &memory.collection, &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let interop: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(interop["count"], 90);
    assert_eq!(interop["space"], "cosine");
    assert_eq!(interop["document"], document.as_str());
    assert_eq!(interop["dimension"], 384);
    assert_eq!(interop["metadata_types"]["trade_date_int"], "int");
    assert_eq!(interop["metadata_types"]["close"], "float");
    assert_eq!(interop["metadata_types"]["new_52w_high"], "bool");
    assert_eq!(interop["metadata_types"]["symbol"], "str");
    assert_eq!(interop["query_ids"][0], id.as_str());

    // A rerun embeds and writes nothing new.
    let again = run_job_with(&cfg, &db, &yahoo, &WINDOW, &memory.env()).await;
    assert_eq!(again.code, 0, "{again:#?}");
    assert_eq!(again.documents_indexed(), 0, "{}", again.stdout);
    assert_eq!(client.count(&collection).await.unwrap(), 90);
    memory.drop_collection().await;
}

/// The index stage follows the narratives as they are written: the documents of a security
/// stored early are embedded and in Chroma before a slow one's prices are even stored.
#[tokio::test(flavor = "multi_thread")]
async fn documents_are_indexed_while_slower_securities_are_still_fetched() {
    let (db, yahoo, memory, dir) = fresh().await;
    let cfg = config(
        dir.path(),
        &[("etfs", "QQQ", "QQQ"), ("etfs", "SPY", "SPY")],
        "",
    );
    // Two attempts time out (request_timeout_secs is 2 in the test config), the third
    // answers: QQQ is stored ~4 s after SPY, time enough to embed SPY's 30 documents even on a
    // busy CPU.
    let hang = fake_yahoo::Scenario::Hang(std::time::Duration::from_secs(10));
    yahoo.set_scenario(
        "QQQ",
        fake_yahoo::Scenario::Sequence(vec![hang.clone(), hang, fake_yahoo::Scenario::Synthetic]),
    );
    let r = run_job_with(&cfg, &db, &yahoo, &WINDOW, &memory.env()).await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.documents_indexed(), 60, "{}", r.stdout);
    assert_eq!(pending(&db).await, 0);
    let (spy_indexed, qqq_stored): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT (SELECT max(indexed_at) FROM documents WHERE symbol = 'SPY'),
                    (SELECT min(created_at) FROM market_data WHERE symbol = 'QQQ')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        spy_indexed < qqq_stored,
        "SPY's documents were indexed at {spy_indexed}, after QQQ's prices were stored at {qqq_stored}"
    );
    memory.drop_collection().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_chroma_down_prices_are_kept_and_the_next_run_catches_up() {
    let (db, yahoo, memory, dir) = fresh().await;
    let cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");

    let mut down = memory.env();
    down[0] = ("CHROMA_URL", "http://127.0.0.1:9");
    let r = run_job_with(&cfg, &db, &yahoo, &WINDOW, &down).await;
    assert_eq!(r.code, 5, "{r:#?}");
    assert!(
        r.stderr
            .contains("indexing failed: Chroma at http://127.0.0.1:9 is unreachable"),
        "{}",
        r.stderr
    );
    assert!(
        db.count("SPY").await > 100,
        "prices are stored even though Chroma is down"
    );
    assert_eq!(pending(&db).await, 30);
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(outcome, "partial");

    // Chroma is back: the next run (nothing new from Yahoo) indexes everything left pending.
    let back = run_job_with(&cfg, &db, &yahoo, &WINDOW, &memory.env()).await;
    assert_eq!(back.code, 0, "{back:#?}");
    assert_eq!(back.documents_indexed(), 30, "{}", back.stdout);
    assert_eq!(pending(&db).await, 0);
    let client = memory.client().await;
    let collection = client.collection(&memory.collection).await.unwrap();
    assert_eq!(client.count(&collection).await.unwrap(), 30);

    // Chroma lost the collection (a wiped volume, a new CHROMA_COLLECTION): the next run sees
    // fewer records than PostgreSQL says were indexed and re-indexes everything.
    memory.drop_collection().await;
    let refill = run_job_with(&cfg, &db, &yahoo, &WINDOW, &memory.env()).await;
    assert_eq!(refill.code, 0, "{refill:#?}");
    assert_eq!(refill.documents_indexed(), 30, "{}", refill.stdout);
    assert!(
        refill.stderr.contains("re-indexing all"),
        "the operator is told why: {}",
        refill.stderr
    );
    let collection = client.open_collection(&memory.collection).await.unwrap();
    assert_eq!(client.count(&collection).await.unwrap(), 30);
    memory.drop_collection().await;
}

/// `similar` as a user runs it, against the collection a job run filled.
async fn similar(memory: &Memory, cfg: &std::path::Path, flags: &[&str]) -> crate::common::Run {
    let mut args = vec!["similar", "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(flags);
    crate::common::run(&args, &memory.env()).await
}

fn neighbours(r: &crate::common::Run) -> Vec<Value> {
    assert_eq!(r.code, 0, "{r:#?}");
    let answer: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    answer["neighbours"].as_array().unwrap().clone()
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    1.0 - dot / (norm(a) * norm(b))
}

#[tokio::test(flavor = "multi_thread")]
async fn similar_finds_the_nearest_days_to_a_stored_day_or_a_text() {
    let (db, _yahoo, memory, _dir, cfg, _run) = indexed_market().await;

    // Every stored vector, to check Chroma's answer against a brute-force search.
    let documents: Vec<(String, chrono::NaiveDate, String)> =
        sqlx::query_as("SELECT symbol, trade_date, document FROM documents ORDER BY 1, 2")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let ids: Vec<String> = documents
        .iter()
        .map(|(s, d, _)| format!("{s}:{d}"))
        .collect();
    let client = memory.client().await;
    let collection = client.open_collection(&memory.collection).await.unwrap();
    let stored = client
        .get(
            &collection,
            &ids,
            &[Include::Embeddings, Include::Metadatas],
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 90);
    let (symbol, date, _) = &documents[documents.len() - 20]; // a SPY day
    assert_eq!(symbol, "SPY");
    let query_id = format!("SPY:{date}");
    let query = stored.iter().find(|h| h.id == query_id).unwrap();
    let query_vector = query.embedding.clone().unwrap();
    let mut expected: Vec<(f32, &str)> = stored
        .iter()
        .filter(|h| h.id != query_id)
        .map(|h| {
            (
                cosine_distance(&query_vector, h.embedding.as_ref().unwrap()),
                h.id.as_str(),
            )
        })
        .collect();
    expected.sort_by(|a, b| a.0.total_cmp(&b.0));

    // A stored day: its 5 nearest other days, nearest first, as a brute-force search finds them.
    let date = date.to_string();
    let found = neighbours(
        &similar(
            &memory,
            &cfg,
            &["--symbol", "SPY", "--date", &date, "-k", "5", "--json"],
        )
        .await,
    );
    assert_eq!(found.len(), 5);
    for (rank, (n, (distance, id))) in found.iter().zip(&expected).enumerate() {
        assert_eq!(n["rank"], rank + 1);
        assert_eq!(n["id"], *id, "rank {}: {found:#?}", rank + 1);
        let got = n["distance"].as_f64().unwrap() as f32;
        assert!((got - distance).abs() < 1e-4, "{got} vs {distance}");
        assert!((n["similarity"].as_f64().unwrap() as f32 - (1.0 - distance)).abs() < 1e-4);
        assert!(n["document"].as_str().unwrap().contains(" it closed "));
        assert!(n["metadata"]["trade_date_int"].is_i64());
    }

    // Filters: the same security (named by its Yahoo symbol), or one category.
    let (_, spx_date, _) = documents.iter().find(|(s, _, _)| s == "SPX").unwrap();
    let spx_date = spx_date.to_string();
    let same = neighbours(
        &similar(
            &memory,
            &cfg,
            &[
                "--symbol",
                "^GSPC",
                "--date",
                &spx_date,
                "--same-symbol",
                "-k",
                "7",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(same.len(), 7);
    assert!(same.iter().all(|n| n["symbol"] == "SPX"), "{same:#?}");
    assert!(same.iter().all(|n| n["id"] != format!("SPX:{spx_date}")));
    let indices = neighbours(
        &similar(
            &memory,
            &cfg,
            &[
                "--symbol",
                "SPY",
                "--date",
                &date,
                "--category",
                "indices",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(indices.len(), 10);
    assert!(
        indices
            .iter()
            .all(|n| n["metadata"]["category"] == "indices")
    );

    // Metadata conditions and a date range next to meaning: every answer meets them all, and
    // they are exactly the brute-force set when k covers it.
    let down_days: Vec<&str> = stored
        .iter()
        .filter(|h| {
            let m = h.metadata.as_ref().unwrap();
            let day = match m.get("daily_return") {
                Some(MetadataValue::Float(r)) => *r,
                _ => 0.0,
            };
            let date = match m.get("trade_date") {
                Some(MetadataValue::Str(d)) => d.as_str(),
                _ => "",
            };
            day < 0.0 && ("2024-07-01"..="2024-07-31").contains(&date) && h.id != query_id
        })
        .map(|h| h.id.as_str())
        .collect();
    assert!(!down_days.is_empty());
    let filtered = neighbours(
        &similar(
            &memory,
            &cfg,
            &[
                "--symbol",
                "SPY",
                "--date",
                &date,
                "-k",
                "100",
                "--where",
                "daily_return < 0",
                "--from",
                "2024-07-01",
                "--to",
                "2024-07-31",
                "--json",
            ],
        )
        .await,
    );
    let mut got: Vec<&str> = filtered.iter().map(|n| n["id"].as_str().unwrap()).collect();
    let mut want = down_days.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    let bad = similar(
        &memory,
        &cfg,
        &[
            "--symbol",
            "SPY",
            "--date",
            &date,
            "--where",
            "dialy_return < 0",
        ],
    )
    .await;
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(
        bad.stderr.contains("dialy_return is not a metadata key"),
        "{}",
        bad.stderr
    );

    // A text is embedded with the documents' model: a stored document finds itself first.
    let (qqq, qqq_date, qqq_text) = documents.iter().find(|(s, _, _)| s == "QQQ").unwrap();
    let by_text =
        neighbours(&similar(&memory, &cfg, &["--text", qqq_text, "-k", "3", "--json"]).await);
    assert_eq!(by_text[0]["id"], format!("{qqq}:{qqq_date}"));
    assert!(
        by_text[0]["similarity"].as_f64().unwrap() > 0.999,
        "{by_text:#?}"
    );
    let spy_only = neighbours(
        &similar(
            &memory,
            &cfg,
            &[
                "--text",
                "sell-off with rising volatility",
                "--symbol",
                "SPY",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(spy_only.len(), 10);
    assert!(spy_only.iter().all(|n| n["symbol"] == "SPY"));

    // On a terminal-style run without --json: the query day's document, then a table.
    let table = similar(
        &memory,
        &cfg,
        &["--symbol", "SPY", "--date", &date, "-k", "3"],
    )
    .await;
    assert_eq!(table.code, 0, "{table:#?}");
    assert!(
        table.stdout.starts_with(&format!(
            "3 nearest to market day {query_id} in {}",
            memory.collection
        )),
        "{}",
        table.stdout
    );
    for id in expected.iter().take(3).map(|(_, id)| id) {
        let (s, d) = id.split_once(':').unwrap();
        assert!(
            table.stdout.lines().any(|l| l.contains(s) && l.contains(d)),
            "{id} not in\n{}",
            table.stdout
        );
    }

    // What cannot be answered: one line naming the problem, and a non-zero exit.
    let saturday = similar(&memory, &cfg, &["--symbol", "SPY", "--date", "2024-07-06"]).await;
    assert_eq!(saturday.code, 2, "{saturday:#?}");
    assert!(
        saturday.stderr.contains(&format!(
            "SPY on 2024-07-06 is not in Chroma collection {}",
            memory.collection
        )),
        "{}",
        saturday.stderr
    );
    let category = similar(&memory, &cfg, &["--text", "x", "--category", "bonds"]).await;
    assert_eq!(category.code, 2, "{category:#?}");
    assert!(
        category.stderr.contains("unknown category \"bonds\""),
        "{}",
        category.stderr
    );
    let missing = format!("{}_missing", memory.collection);
    let mut env = memory.env();
    env[1] = ("CHROMA_COLLECTION", missing.as_str());
    let mut args = vec!["similar", "--config", cfg.to_str().unwrap()];
    args.extend(["--symbol", "SPY", "--date", &date]);
    let no_collection = crate::common::run(&args, &env).await;
    assert_eq!(no_collection.code, 2, "{no_collection:#?}");
    assert!(
        no_collection
            .stderr
            .contains(&format!("has no collection {missing}")),
        "{}",
        no_collection.stderr
    );
    assert!(
        client.open_collection(&missing).await.is_err(),
        "a search must not create a collection"
    );
    env[0] = ("CHROMA_URL", "http://127.0.0.1:9");
    let down = crate::common::run(&args, &env).await;
    assert_eq!(down.code, 5, "{down:#?}");
    assert!(
        down.stderr
            .contains("Chroma at http://127.0.0.1:9 is unreachable"),
        "{}",
        down.stderr
    );
    memory.drop_collection().await;
}

/// SIGTERM at several points of the embedding stage: exit 143 within 15 s each time, and
/// every document marked indexed is in Chroma (nothing marked that Chroma did not accept);
/// a last run indexes the rest.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_embedding_exits_143_within_15_s_with_what_was_upserted_marked() {
    use tokio::io::AsyncBufReadExt;
    let (db, yahoo, memory, dir) = fresh().await;
    // 8 securities x 120 days: 960 documents, far more than one round of 256.
    let cfg = crate::common::numbered_config(
        dir.path(),
        "E",
        8,
        "  embedding_days: 120\n  batch_size: 4\n  requests_per_second: 100\n  retry_base_ms: 20\n  retry_max_ms: 200\n",
    );
    let cfg_path = cfg.to_str().unwrap().to_owned();
    let base = yahoo.base_url();
    let mut env = memory.env();
    env.push(("DATABASE_URL", db.url.as_str()));
    env.push(("YAHOO_BASE_URL", base.as_str()));
    let client = memory.client().await;
    for after_ms in [200u64, 1_500, 4_000] {
        let mut args = vec!["--config", cfg_path.as_str()];
        args.extend_from_slice(&WINDOW);
        let mut child = crate::common::command(&args, &env)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let started = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("embedding the pending documents") {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        assert!(started, "the embedding stage did not start");
        tokio::time::sleep(std::time::Duration::from_millis(after_ms)).await;
        let pid = child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let signalled = std::time::Instant::now();
        let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        let _ = drain.await;
        let took = signalled.elapsed();
        assert_eq!(
            status.code(),
            Some(143),
            "SIGTERM {after_ms} ms into embedding"
        );
        assert!(
            took < std::time::Duration::from_secs(15),
            "{took:?} to stop"
        );
        let indexed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM documents WHERE indexed_hash = content_hash")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        let in_chroma = match client.open_collection(&memory.collection).await {
            Ok(collection) => client.count(&collection).await.unwrap() as i64,
            Err(_) => 0,
        };
        assert_eq!(
            indexed, in_chroma,
            "marked indexed = in Chroma, SIGTERM at {after_ms} ms"
        );
    }
    let r = run_job_with(&cfg, &db, &yahoo, &WINDOW, &memory.env()).await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(pending(&db).await, 0);
    memory.drop_collection().await;
}
