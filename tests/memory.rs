//! Market memory end to end: fake Yahoo -> PostgreSQL -> indicators -> narratives ->
//! in-process embeddings -> a real Chroma server, read back with our client and with the
//! official Python client. `scripts/test.sh` provides CHROMA_URL, CHROMA_PYTHON and
//! EMBEDDING_MODEL_DIR.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use common::{TestDb, config, fake, run_job_with};
use market_encoder::index::{ChromaClient, ChromaSettings, Include, MetadataValue};
use market_encoder::settings::EnvValue;
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

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_embedded_indexed_and_read_by_the_official_client() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let memory = Memory::new();
    let dir = tempfile::tempdir().unwrap();
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
    // embedding_days is 30 in the test config: 30 documents per security.
    assert_eq!(
        r.summary()["index"]["documents_indexed"],
        90,
        "{}",
        r.stdout
    );
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
    assert_eq!(again.summary()["index"]["documents_indexed"], 0);
    assert_eq!(client.count(&collection).await.unwrap(), 90);
    memory.drop_collection().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_chroma_down_prices_are_kept_and_the_next_run_catches_up() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let memory = Memory::new();
    let dir = tempfile::tempdir().unwrap();
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
    assert_eq!(back.summary()["index"]["documents_indexed"], 30);
    assert_eq!(pending(&db).await, 0);
    let client = memory.client().await;
    let collection = client.collection(&memory.collection).await.unwrap();
    assert_eq!(client.count(&collection).await.unwrap(), 30);
    memory.drop_collection().await;
}
