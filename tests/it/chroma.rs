//! The Chroma client against a real Chroma server (`CHROMA_URL`, started by `scripts/test.sh`
//! through `scripts/lib/chroma.sh`) and against the official Python client (`CHROMA_PYTHON`).
//! Each test works in a collection of its own, deleted at its end. A few tests use a tiny local
//! HTTP stand-in instead, for what a real server will not do on demand (fail, or show the
//! headers it received).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use market_encoder::config::env::EnvValue;
use market_encoder::job::fetch::RetryPolicy;
use market_encoder::job::index::{
    ChromaClient, ChromaSettings, Collection, Hit, Include, Metadata, MetadataValue, Record,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ALL: &[Include] = &[Include::Documents, Include::Metadatas, Include::Embeddings];

fn chroma_url() -> String {
    match std::env::var("CHROMA_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "CHROMA_URL is not set: run the suite with scripts/test.sh, which starts a local Chroma \
             (scripts/lib/chroma.sh: ensure_chroma), or point CHROMA_URL at a running Chroma 1.x"
        ),
    }
}

fn settings_for(pairs: &[(&'static str, String)]) -> ChromaSettings {
    let pairs = pairs.to_vec();
    ChromaSettings::from_env(&move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(EnvValue::Absent, |(_, v)| EnvValue::Present(v.clone()))
    })
    .unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    }
}

async fn client() -> ChromaClient {
    let settings = settings_for(&[("CHROMA_URL", chroma_url())]);
    ChromaClient::connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("{e} (run the suite with scripts/test.sh)"))
}

fn unique_name() -> String {
    format!("me-test-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh collection for one test.
async fn fresh(client: &ChromaClient) -> Collection {
    client.collection(&unique_name()).await.unwrap()
}

/// A unit vector at angle `i` degrees in the first two dimensions of `dim`.
fn direction(i: usize, dim: usize) -> Vec<f32> {
    let a = (i as f32).to_radians();
    let mut v = vec![0.0; dim];
    v[0] = a.cos();
    v[1] = a.sin();
    v
}

/// Chroma may return a cosine collection's embeddings renormalized (off in the last bit).
fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
        "{got:?} != {want:?}"
    );
}

fn record(
    id: &str,
    embedding: Vec<f32>,
    document: &str,
    metadata: &[(&str, MetadataValue)],
) -> Record {
    Record {
        id: id.to_owned(),
        embedding,
        document: document.to_owned(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

fn market_record(symbol: &str, day: u32, embedding: Vec<f32>) -> Record {
    let date = format!("2024-01-{day:02}");
    record(
        &format!("{symbol}:{date}"),
        embedding,
        &format!("{symbol} on {date}: closed up."),
        &[
            ("db_symbol", symbol.into()),
            ("trade_date", date.as_str().into()),
            ("day", i64::from(day).into()),
            ("daily_return", 0.0125.into()),
            ("is_up", true.into()),
        ],
    )
}

#[tokio::test]
async fn get_or_create_twice_gives_the_same_cosine_collection() {
    let client = client().await;
    let name = unique_name();
    let first = client.collection(&name).await.unwrap();
    let second = client.collection(&name).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first.name, name);
    assert_eq!(first.space, "cosine");
    assert_eq!(client.count(&first).await.unwrap(), 0);
    client.delete_collection(&name).await.unwrap();
    // deleting again is not an error; using the deleted collection is, with Chroma's reason
    client.delete_collection(&name).await.unwrap();
    let err = client.count(&first).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    assert!(
        err.to_string()
            .starts_with("Chroma rejected the count of me-test-"),
        "{err}"
    );
}

#[tokio::test]
async fn an_existing_collection_with_another_distance_is_refused() {
    let client = client().await;
    let name = unique_name();
    // Created by someone else with Chroma's default (l2), straight through the HTTP API.
    reqwest::Client::new()
        .post(format!(
            "{}/api/v2/tenants/default_tenant/databases/default_database/collections",
            chroma_url().trim_end_matches('/')
        ))
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let err = client.collection(&name).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Chroma collection {name} measures l2 distance, not cosine; delete it or set CHROMA_COLLECTION to a new name"
        )
    );
    client.delete_collection(&name).await.unwrap();
}

#[tokio::test]
async fn upsert_splits_into_batches_of_the_maximum() {
    let client = client()
        .await
        .with_max_batch_size(NonZeroUsize::new(3).unwrap());
    assert_eq!(client.max_batch_size(), 3);
    let c = fresh(&client).await;
    let records: Vec<_> = (1..=10)
        .map(|d| market_record("AAPL", d, direction(d as usize, 8)))
        .collect();
    assert_eq!(client.upsert(&c, &records).await.unwrap(), 10);
    assert_eq!(client.count(&c).await.unwrap(), 10);
    let ids: Vec<_> = records.iter().map(|r| r.id.clone()).collect();
    assert_eq!(client.get(&c, &ids, ALL).await.unwrap().len(), 10);
    client.delete_collection(&c.name).await.unwrap();
}

#[tokio::test]
async fn the_maximum_can_only_be_lowered() {
    let client = client().await;
    let advertised = client.max_batch_size();
    assert!(advertised > 100, "pre-flight max_batch_size {advertised}");
    let client = client.with_max_batch_size(NonZeroUsize::new(advertised * 10).unwrap());
    assert_eq!(client.max_batch_size(), advertised);
}

#[tokio::test]
async fn duplicate_ids_in_one_call_last_wins() {
    let client = client()
        .await
        .with_max_batch_size(NonZeroUsize::new(2).unwrap());
    let c = fresh(&client).await;
    let records = vec![
        record("X:1", direction(0, 4), "first", &[("v", 1.into())]),
        record("X:2", direction(10, 4), "other", &[("v", 2.into())]),
        record("X:1", direction(20, 4), "second", &[("v", 3.into())]),
    ];
    assert_eq!(client.upsert(&c, &records).await.unwrap(), 2);
    assert_eq!(client.count(&c).await.unwrap(), 2);
    let got = client.get(&c, &["X:1"], ALL).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].document.as_deref(), Some("second"));
    assert_eq!(
        got[0].metadata.as_ref().unwrap()["v"],
        MetadataValue::Int(3)
    );
    assert_close(got[0].embedding.as_deref().unwrap(), &direction(20, 4));
    client.delete_collection(&c.name).await.unwrap();
}

#[tokio::test]
async fn rerun_overwrites_instead_of_duplicating() {
    let client = client().await;
    let c = fresh(&client).await;
    let first: Vec<_> = (1..=5)
        .map(|d| market_record("MSFT", d, direction(d as usize * 3, 16)))
        .collect();
    client.upsert(&c, &first).await.unwrap();
    assert_eq!(client.count(&c).await.unwrap(), 5);
    // The same ids again with a corrected document and metadata.
    let second: Vec<_> = first
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.document = format!("{} (revised)", r.document);
            r.metadata.insert("daily_return".into(), (-0.5).into());
            r.metadata.insert("revision".into(), 2.into());
            r
        })
        .collect();
    assert_eq!(client.upsert(&c, &second).await.unwrap(), 5);
    assert_eq!(client.count(&c).await.unwrap(), 5);
    let got = client.get(&c, &["MSFT:2024-01-03"], ALL).await.unwrap();
    assert_eq!(
        got[0].document.as_deref(),
        Some("MSFT on 2024-01-03: closed up. (revised)")
    );
    let m = got[0].metadata.as_ref().unwrap();
    assert_eq!(m["daily_return"], MetadataValue::Float(-0.5));
    assert_eq!(m["revision"], MetadataValue::Int(2));
    assert_eq!(m["db_symbol"], MetadataValue::Str("MSFT".into()));
    client.delete_collection(&c.name).await.unwrap();
}

#[tokio::test]
async fn get_returns_documents_and_typed_metadata() {
    let client = client().await;
    let c = fresh(&client).await;
    let r = record(
        "SPY:2024-03-28",
        direction(45, 8),
        "SPY closed at 523.07.",
        &[
            ("int", 42.into()),
            ("big_int", i64::MAX.into()),
            ("float_whole", 1.0.into()),
            ("float", 523.07.into()),
            ("flag", false.into()),
            ("text", "ünïcödé \"quoted\"".into()),
        ],
    );
    client.upsert(&c, std::slice::from_ref(&r)).await.unwrap();
    // A record written by another client without document or metadata.
    reqwest::Client::new()
        .post(format!(
            "{}/api/v2/tenants/default_tenant/databases/default_database/collections/{}/upsert",
            chroma_url().trim_end_matches('/'),
            c.id
        ))
        .json(&json!({"ids": ["bare"], "embeddings": [direction(0, 8)]}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut got = client
        .get(&c, &["SPY:2024-03-28", "bare", "missing"], ALL)
        .await
        .unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got.len(), 2, "{got:?}");
    let embedding = got[0].embedding.take().unwrap();
    assert_close(&embedding, &r.embedding);
    assert_eq!(
        got[0],
        Hit {
            id: "SPY:2024-03-28".into(),
            distance: None,
            document: Some(r.document.clone()),
            metadata: Some(r.metadata.clone()),
            embedding: None,
        }
    );
    assert_eq!(got[1].id, "bare");
    assert_eq!(got[1].document, None);
    assert_eq!(got[1].metadata, None);
    // Only what was asked for comes back.
    let only_docs = client
        .get(&c, &["SPY:2024-03-28"], &[Include::Documents])
        .await
        .unwrap();
    assert!(only_docs[0].metadata.is_none() && only_docs[0].embedding.is_none());
    assert!(
        client
            .get(&c, &[] as &[&str], ALL)
            .await
            .unwrap()
            .is_empty()
    );
    client.delete_collection(&c.name).await.unwrap();
}

#[tokio::test]
async fn query_returns_nearest_first_and_filters_with_and() {
    let client = client().await;
    let c = fresh(&client).await;
    let mut records = Vec::new();
    for (s, symbol) in ["AAPL", "MSFT", "NVDA"].iter().enumerate() {
        for day in 1..=6 {
            records.push(market_record(
                symbol,
                day,
                direction(s * 60 + day as usize * 5, 32),
            ));
        }
    }
    client.upsert(&c, &records).await.unwrap();
    let include = &[Include::Distances, Include::Documents, Include::Metadatas];
    let target = &records[8]; // MSFT day 3
    let hits = client
        .query(
            &c,
            std::slice::from_ref(&target.embedding),
            4,
            None,
            include,
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    let hits = &hits[0];
    assert_eq!(hits.len(), 4);
    assert_eq!(hits[0].id, target.id);
    assert!(hits[0].distance.unwrap().abs() < 1e-5, "{hits:?}");
    assert_eq!(hits[0].document.as_deref(), Some(target.document.as_str()));
    let distances: Vec<f32> = hits.iter().map(|h| h.distance.unwrap()).collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]), "{distances:?}");
    // cosine: 5 degrees apart -> 1 - cos(5°)
    let expected = 1.0 - 5.0_f32.to_radians().cos();
    assert!((distances[1] - expected).abs() < 1e-4, "{distances:?}");

    // where: two keys combined with $and
    let filter = json!({"$and": [{"db_symbol": "NVDA"}, {"day": {"$gte": 5}}]});
    let hits = client
        .query(
            &c,
            std::slice::from_ref(&target.embedding),
            10,
            Some(filter),
            include,
        )
        .await
        .unwrap();
    let mut ids: Vec<_> = hits[0].iter().map(|h| h.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["NVDA:2024-01-05", "NVDA:2024-01-06"]);

    // Two query embeddings -> two lists; a bad filter is Chroma's 400, not retried
    let two = client
        .query(
            &c,
            &[records[0].embedding.clone(), records[17].embedding.clone()],
            1,
            None,
            include,
        )
        .await
        .unwrap();
    assert_eq!(two[0][0].id, records[0].id);
    assert_eq!(two[1][0].id, records[17].id);
    let err = client
        .query(
            &c,
            std::slice::from_ref(&target.embedding),
            1,
            Some(json!({"db_symbol": "A", "day": 1})),
            include,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(
        err.to_string()
            .starts_with("Chroma rejected the query of me-test-"),
        "{err}"
    );
    client.delete_collection(&c.name).await.unwrap();
}

#[tokio::test]
async fn invalid_records_are_refused_before_anything_is_sent() {
    let client = client().await;
    let c = fresh(&client).await;
    let records = vec![
        record("ok:1", direction(0, 4), "fine", &[("x", 1.into())]),
        record(
            "AAPL:2024-01-02",
            direction(1, 4),
            "bad",
            &[("rsi_14", f64::NAN.into())],
        ),
    ];
    let err = client.upsert(&c, &records).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "record \"AAPL:2024-01-02\" cannot be sent to Chroma: metadata \"rsi_14\" is NaN; Chroma accepts only finite numbers"
    );
    assert!(!err.is_unreachable());
    let mut inf = record("b:1", direction(0, 4), "bad", &[]);
    inf.embedding[2] = f32::NEG_INFINITY;
    let err = client.upsert(&c, &[inf]).await.unwrap_err();
    assert!(err.to_string().contains("embedding[2] is -inf"), "{err}");
    assert_eq!(client.count(&c).await.unwrap(), 0, "nothing was written");
    // What only the server checks comes back as its 400, with its reason.
    client.upsert(&c, &records[..1]).await.unwrap();
    let err = client
        .upsert(
            &c,
            &[record("dim:1", vec![1.0, 0.0], "wrong dimension", &[])],
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("dimension of 4, got 2"), "{err}");
    client.delete_collection(&c.name).await.unwrap();
}

#[tokio::test]
async fn a_closed_port_is_reported_as_unreachable_in_one_line() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = settings_for(&[("CHROMA_URL", format!("http://127.0.0.1:{port}"))])
        .with_retry(fast_retry());
    let started = Instant::now();
    let err = ChromaClient::connect(&settings).await.unwrap_err();
    assert!(err.is_unreachable());
    assert_eq!(
        err.to_string(),
        format!(
            "Chroma at http://127.0.0.1:{port} is unreachable (connection refused); start it or set CHROMA_URL"
        )
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_token_is_never_shown() {
    let settings = settings_for(&[
        ("CHROMA_URL", "http://127.0.0.1:8000".into()),
        ("CHROMA_TOKEN", "ck-do-not-print-me".into()),
    ]);
    for shown in [format!("{settings:?}"), settings.to_string()] {
        assert!(!shown.contains("do-not-print"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
    // A real server ignores the token (the open-source server has no auth) but must accept it.
    let settings = settings_for(&[
        ("CHROMA_URL", chroma_url()),
        ("CHROMA_TOKEN", "ck-do-not-print-me".into()),
    ]);
    let client = ChromaClient::connect(&settings).await.unwrap();
    assert!(!format!("{client:?}").contains("do-not-print"));
}

/// A stand-in HTTP server: answers each request with `respond(path)` and records the request
/// heads it saw.
struct Stub {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn stub(respond: fn(&str) -> (u16, &'static str)) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                seen.lock().unwrap().push(head);
                let (status, body) = respond(&path);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Stub { url, requests }
}

fn healthy(path: &str) -> (u16, &'static str) {
    match path {
        "/api/v2/heartbeat" => (200, r#"{"nanosecond heartbeat": 1}"#),
        "/api/v2/pre-flight-checks" => (200, r#"{"max_batch_size": 100}"#),
        _ => (
            200,
            r#"{"id": "x", "name": "default_database", "tenant": "t"}"#,
        ),
    }
}

#[tokio::test]
async fn the_token_goes_in_the_x_chroma_token_header() {
    let server = stub(healthy).await;
    let settings = settings_for(&[
        ("CHROMA_URL", server.url.clone()),
        ("CHROMA_TOKEN", "ck-abc123".into()),
        ("CHROMA_TENANT", "my tenant".into()),
    ]);
    let client = ChromaClient::connect(&settings).await.unwrap();
    assert_eq!(client.max_batch_size(), 100);
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3);
    for head in &requests {
        assert!(
            head.to_lowercase().contains("x-chroma-token: ck-abc123"),
            "{head}"
        );
    }
    assert!(
        requests[2].starts_with("GET /api/v2/tenants/my%20tenant/databases/default_database "),
        "{}",
        requests[2]
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let server = stub(|path| match path {
        "/api/v2/heartbeat" => (200, r#"{"nanosecond heartbeat": 1}"#),
        _ => (503, r#"{"error": "Unavailable", "message": "overloaded"}"#),
    })
    .await;
    let settings = settings_for(&[("CHROMA_URL", server.url.clone())]).with_retry(fast_retry());
    let err = ChromaClient::connect(&settings).await.unwrap_err();
    assert!(err.is_unreachable());
    assert_eq!(
        err.to_string(),
        format!(
            "Chroma at {} kept failing the pre-flight checks (HTTP 503: overloaded) after 3 attempts; check the Chroma server and rerun",
            server.url
        )
    );
    assert_eq!(server.requests.lock().unwrap().len(), 1 + 3);

    let old = stub(|_| {
        (
            410,
            r#"{"error": "Gone", "message": "The v1 API is deprecated"}"#,
        )
    })
    .await;
    let settings = settings_for(&[("CHROMA_URL", old.url.clone())]).with_retry(fast_retry());
    let err = ChromaClient::connect(&settings).await.unwrap_err();
    assert!(!err.is_unreachable());
    assert!(
        err.to_string()
            .contains("does not answer like a Chroma 1.x server"),
        "{err}"
    );
    assert_eq!(
        old.requests.lock().unwrap().len(),
        1,
        "4xx is never retried"
    );

    let denied = stub(|path| match path {
        "/api/v2/heartbeat" => (200, r#"{"nanosecond heartbeat": 1}"#),
        _ => (401, r#"{"error": "AuthError", "message": "Unauthorized"}"#),
    })
    .await;
    let settings = settings_for(&[("CHROMA_URL", denied.url.clone())]);
    let err = ChromaClient::connect(&settings).await.unwrap_err();
    assert!(err.to_string().contains("check CHROMA_TOKEN"), "{err}");
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let settings = settings_for(&[
        ("CHROMA_URL", chroma_url()),
        ("CHROMA_DATABASE", "no_such_db".into()),
    ]);
    let err = ChromaClient::connect(&settings).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("has no database \"no_such_db\" in tenant \"default_tenant\""),
        "{err}"
    );
}

#[tokio::test]
async fn interop_with_the_official_python_client() {
    let python = std::env::var("CHROMA_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CHROMA_PYTHON is not set: run the suite with scripts/test.sh (scripts/lib/chroma.sh \
             exports the python of the venv holding the chromadb package)"
        )
    });
    let client = client().await;
    let c = fresh(&client).await;
    let records: Vec<_> = (1..=4)
        .map(|d| market_record("QQQ", d, direction(d as usize * 10, 384)))
        .collect();
    client.upsert(&c, &records).await.unwrap();
    let id = "QQQ:2024-01-02";
    let output = tokio::process::Command::new(&python)
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chroma_interop.py"),
            &chroma_url(),
            &c.name,
            id,
        ])
        .env("ANONYMIZED_TELEMETRY", "False")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "tests/chroma_interop.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["space"], "cosine", "{seen}");
    assert_eq!(seen["count"], 4, "{seen}");
    assert_eq!(seen["ids"], json!([id]));
    assert_eq!(seen["document"], "QQQ on 2024-01-02: closed up.");
    assert_eq!(seen["dimension"], 384);
    assert_eq!(
        seen["metadata"],
        json!({"db_symbol": "QQQ", "trade_date": "2024-01-02", "day": 2, "daily_return": 0.0125, "is_up": true})
    );
    assert_eq!(
        seen["metadata_types"],
        json!({"db_symbol": "str", "trade_date": "str", "day": "int", "daily_return": "float", "is_up": "bool"})
    );
    assert_eq!(seen["query_ids"][0], id);
    assert!(
        seen["query_distances"][0].as_f64().unwrap().abs() < 1e-5,
        "{seen}"
    );
    client.delete_collection(&c.name).await.unwrap();
}

/// Upsert throughput at dimension 384 (ad hoc: `cargo test --release --test chroma --
/// --ignored --nocapture upsert_rate`).
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn upsert_rate() {
    let client = client().await;
    let c = fresh(&client).await;
    let n: usize = std::env::var("UPSERT_RATE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let mut embedding: Vec<f32> = (0..384)
                .map(|j| (((i * 7919 + j * 104_729) % 1000) as f32 / 1000.0) - 0.5)
                .collect();
            embedding[0] += 1.0;
            let mut metadata: Metadata = BTreeMap::new();
            metadata.insert("db_symbol".into(), format!("S{}", i % 500).into());
            metadata.insert("trade_date".into(), format!("2024-{:04}", i / 500).into());
            metadata.insert("daily_return".into(), (i as f64 / 1e4).into());
            metadata.insert("volume".into(), (i as i64 * 1000).into());
            Record {
                id: format!("S{}:{i}", i % 500),
                embedding,
                document: format!("Record {i}: a narrative of about one sentence of market data."),
                metadata,
            }
        })
        .collect();
    for batch in [client.max_batch_size(), 1000, 500] {
        let client = client_with(batch).await;
        let c = fresh(&client).await;
        let started = Instant::now();
        client.upsert(&c, &records).await.unwrap();
        let new = started.elapsed();
        let started = Instant::now();
        client.upsert(&c, &records).await.unwrap();
        let again = started.elapsed();
        assert_eq!(client.count(&c).await.unwrap(), n);
        println!(
            "batch {batch}: {n} new records in {new:.2?} = {:.0}/s; same records again in {again:.2?} = {:.0}/s",
            n as f64 / new.as_secs_f64(),
            n as f64 / again.as_secs_f64()
        );
        client.delete_collection(&c.name).await.unwrap();
    }
    client.delete_collection(&c.name).await.unwrap();
}

async fn client_with(batch: usize) -> ChromaClient {
    client()
        .await
        .with_max_batch_size(NonZeroUsize::new(batch).unwrap())
}
