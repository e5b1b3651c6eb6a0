//! The OpenAI-compatible embeddings provider against a local fake of `POST /v1/embeddings` that
//! answers in the real response shape with deterministic vectors (and, on demand, with each
//! failure a real server can produce); the `--dry-run` plan of the provider; and one run of the
//! job with `provider: openai` against the fake, PostgreSQL and a real Chroma server
//! (`CHROMA_URL`, which `scripts/test.sh` provides, as for tests/memory.rs).

use std::collections::VecDeque;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{TestDb, config, fake, run, run_job_with};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use market_encoder::config::env::EnvValue;
use market_encoder::job::embed::{
    EmbedError, Embedder, EmbedderSource, OpenAiEmbedder, OpenAiSettings,
};
use market_encoder::job::fetch::RetryPolicy;
use market_encoder::job::index::{ChromaClient, ChromaSettings, Include};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

const MODEL: &str = "fake-embed";
const KEY: &str = "sk-test-do-not-print";
const DIM: usize = 12;

/// What the fake does with one request.
#[derive(Clone)]
enum Reply {
    /// 200 with one vector per input, in order.
    Ok,
    /// 200 with the vectors in reverse order (their `index` still right).
    Shuffled,
    /// This status and body, with `Retry-After` if given.
    Status {
        status: u16,
        body: &'static str,
        retry_after: Option<&'static str>,
    },
    /// 200 with this body.
    Body(&'static str),
    /// 200 with the regular answer changed by this function.
    Edit(fn(&mut Value)),
    /// Wait this long, then answer like `Ok`.
    Hang(Duration),
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Seen {
    authorization: Option<String>,
    body: Value,
}

impl Seen {
    fn inputs(&self) -> usize {
        self.body["input"].as_array().map_or(0, Vec::len)
    }
}

#[derive(Default)]
struct FakeState {
    script: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

/// The fake OpenAI-compatible server, at `{base_url}/embeddings` with `base_url` ending in `/v1`.
struct FakeOpenAi {
    base_url: Url,
    state: Arc<FakeState>,
}

impl FakeOpenAi {
    async fn start() -> Self {
        let state = Arc::new(FakeState::default());
        let app = axum::Router::new()
            .route("/v1/embeddings", axum::routing::post(embeddings))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: Url::parse(&format!("http://{addr}/v1")).unwrap(),
            state,
        }
    }

    /// The next requests get these replies, in order; later ones get `Reply::Ok`.
    fn script(&self, replies: &[Reply]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(replies.iter().cloned());
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Settings for this fake: fast retries, a short timeout.
    fn settings(&self) -> OpenAiSettings {
        OpenAiSettings::new(self.base_url.clone(), MODEL)
            .with_timeout(Duration::from_secs(5))
            .with_retry(RetryPolicy {
                max_retries: 2,
                base: Duration::from_millis(10),
                max: Duration::from_secs(2),
            })
    }
}

async fn embeddings(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.seen.lock().unwrap().push(Seen {
        authorization: headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned()),
        body: body.clone(),
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Ok);
    let texts: Vec<String> = body["input"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let dim = body["dimensions"]
        .as_u64()
        .map_or(DIM, |d| usize::try_from(d).unwrap());
    let json_200 = |answer: Value| {
        (
            StatusCode::OK,
            [(CONTENT_TYPE, "application/json")],
            answer.to_string(),
        )
            .into_response()
    };
    match reply {
        Reply::Ok => json_200(answer(&texts, dim)),
        Reply::Shuffled => {
            let mut a = answer(&texts, dim);
            a["data"].as_array_mut().unwrap().reverse();
            json_200(a)
        }
        Reply::Edit(edit) => {
            let mut a = answer(&texts, dim);
            edit(&mut a);
            json_200(a)
        }
        Reply::Body(text) => {
            (StatusCode::OK, [(CONTENT_TYPE, "application/json")], text).into_response()
        }
        Reply::Status {
            status,
            body,
            retry_after,
        } => {
            let mut response = (
                StatusCode::from_u16(status).unwrap(),
                [(CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, after.parse().unwrap());
            }
            response
        }
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            json_200(answer(&texts, dim))
        }
    }
}

/// The real response shape (OpenAI's, which Ollama, vLLM and TEI copy).
fn answer(texts: &[String], dim: usize) -> Value {
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "embedding": raw_vector(t, dim), "index": i}))
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": MODEL,
        "usage": {"prompt_tokens": texts.len(), "total_tokens": texts.len()},
    })
}

/// The fake's deterministic vector of a text: not unit length, so normalisation shows.
fn raw_vector(text: &str, dim: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..dim)
        .map(|j| {
            let x = h.rotate_left(u32::try_from(j * 7 % 64).unwrap());
            f32::from(u16::try_from(x % 1000).unwrap()) / 100.0 - 4.0
        })
        .collect()
}

/// What the client should return for `text`: the fake's vector at unit length.
fn expected(text: &str, dim: usize) -> Vec<f32> {
    let v = raw_vector(text, dim);
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    v.iter().map(|&x| (f64::from(x) / norm) as f32).collect()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
        "{got:?} != {want:?}"
    );
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("SPY on day {i}: closed up."))
        .collect()
}

fn with_key(settings: OpenAiSettings) -> OpenAiSettings {
    settings.with_api_key("OPENAI_API_KEY", Some(SecretString::from(KEY)))
}

#[tokio::test]
async fn texts_go_in_batches_and_come_back_in_order_at_unit_length() {
    let fake = FakeOpenAi::start().await;
    let client = OpenAiEmbedder::new(
        &fake
            .settings()
            .with_batch_size(NonZeroUsize::new(64).unwrap()),
    )
    .unwrap();
    let input = texts(150);
    let vectors = client.embed(&input).await.unwrap();

    let sizes: Vec<usize> = fake.seen().iter().map(Seen::inputs).collect();
    assert_eq!(sizes, [64, 64, 22]);
    assert_eq!(vectors.len(), 150);
    for (text, v) in input.iter().zip(&vectors) {
        assert_close(v, &expected(text, DIM));
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "{norm}");
    }
    // The request: the model, the texts, floats; no dimensions unless configured.
    let first = &fake.seen()[0].body;
    assert_eq!(first["model"], MODEL);
    assert_eq!(first["encoding_format"], "float");
    assert_eq!(first["input"][1], input[1].as_str());
    assert!(first.get("dimensions").is_none(), "{first}");
    assert!(client.embed(&[]).await.unwrap().is_empty());
    assert_eq!(fake.seen().len(), 3, "no request for no texts");
}

#[tokio::test]
async fn answers_out_of_order_are_put_back_in_order_by_index() {
    let fake = FakeOpenAi::start().await;
    fake.script(&[Reply::Shuffled, Reply::Shuffled]);
    let client = OpenAiEmbedder::new(
        &fake
            .settings()
            .with_batch_size(NonZeroUsize::new(5).unwrap()),
    )
    .unwrap();
    let input = texts(8);
    let vectors = client.embed(&input).await.unwrap();
    for (text, v) in input.iter().zip(&vectors) {
        assert_close(v, &expected(text, DIM));
    }
}

#[tokio::test]
async fn the_key_goes_in_a_bearer_header_only_when_configured() {
    let fake = FakeOpenAi::start().await;
    OpenAiEmbedder::new(&with_key(fake.settings()))
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap();
    OpenAiEmbedder::new(&fake.settings())
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap();
    let seen = fake.seen();
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(seen[1].authorization, None);
}

#[tokio::test]
async fn dimensions_are_sent_and_checked() {
    let fake = FakeOpenAi::start().await;
    let settings = fake.settings().with_dimensions(NonZeroU32::new(8));
    let vectors = OpenAiEmbedder::new(&settings)
        .unwrap()
        .embed(&texts(3))
        .await
        .unwrap();
    assert_eq!(fake.seen()[0].body["dimensions"], 8);
    assert!(vectors.iter().all(|v| v.len() == 8));

    // A server that ignores `dimensions` (Ollama does for most models).
    fake.script(&[Reply::Edit(|a| {
        for item in a["data"].as_array_mut().unwrap() {
            item["embedding"].as_array_mut().unwrap().truncate(4);
        }
    })]);
    let err = OpenAiEmbedder::new(&settings)
        .unwrap()
        .embed(&texts(3))
        .await
        .unwrap_err();
    assert!(matches!(err, EmbedError::WrongDimensions { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "the embeddings endpoint {}/embeddings returned vectors of 4 values but embedding.dimensions is 8; set dimensions to what \"fake-embed\" produces, or remove it",
            fake.base_url
        )
    );
}

#[tokio::test]
async fn a_refused_key_is_named_by_its_variable_never_shown() {
    let fake = FakeOpenAi::start().await;
    // OpenAI's 401 quotes the key it got (masked); a careless proxy may quote it whole.
    fake.script(&[Reply::Status {
        status: 401,
        body: r#"{"error":{"message":"Incorrect API key provided: sk-test-do-not-print.","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        retry_after: None,
    }]);
    let err = OpenAiEmbedder::new(&with_key(fake.settings()))
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, EmbedError::Unauthorized { status: 401, .. }),
        "{msg}"
    );
    assert!(msg.contains("check the key in $OPENAI_API_KEY"), "{msg}");
    assert!(msg.contains(fake.base_url.as_str()), "{msg}");
    assert!(
        !msg.contains("do-not-print") && !format!("{err:?}").contains("do-not-print"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert_eq!(fake.seen().len(), 1, "a 401 is not retried");

    // Without a key configured, the hint says where one goes.
    fake.script(&[Reply::Status {
        status: 401,
        body: r#"{"error":{"message":"You didn't provide an API key."}}"#,
        retry_after: None,
    }]);
    let err = OpenAiEmbedder::new(&fake.settings())
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("embedding.api_key_env"), "{err}");
}

#[tokio::test]
async fn a_404_points_at_base_url_and_model_and_other_4xx_are_final() {
    let fake = FakeOpenAi::start().await;
    fake.script(&[Reply::Status {
        status: 404,
        body: r#"{"error":"model \"fake-embed\" not found, try pulling it first"}"#,
        retry_after: None,
    }]);
    let err = OpenAiEmbedder::new(&fake.settings())
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the embeddings endpoint {}/embeddings answered HTTP 404 (model \"fake-embed\" not found, try pulling it first); check embedding.base_url (it usually ends in /v1) and embedding.model (\"fake-embed\": is it served there?)",
            fake.base_url
        )
    );
    // A base_url without /v1: the path does not exist at all.
    let wrong = Url::parse(&fake.base_url.as_str().replace("/v1", "")).unwrap();
    let err = OpenAiEmbedder::new(&OpenAiSettings::new(wrong, MODEL))
        .unwrap()
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(matches!(err, EmbedError::NotFound { .. }), "{err}");

    fake.script(&[Reply::Status {
        status: 400,
        body: r#"{"error":{"message":"This model's maximum context length is 8192 tokens"}}"#,
        retry_after: None,
    }]);
    let before = fake.seen().len();
    let err = OpenAiEmbedder::new(&fake.settings())
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("rejected a request of 2 texts (HTTP 400: This model's maximum context length is 8192 tokens)"),
        "{err}"
    );
    assert_eq!(fake.seen().len(), before + 1, "a 400 is not retried");
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_retry_after_says() {
    let fake = FakeOpenAi::start().await;
    fake.script(&[Reply::Status {
        status: 429,
        body: r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
        retry_after: Some("1"),
    }]);
    let started = Instant::now();
    let input = texts(3);
    let vectors = OpenAiEmbedder::new(&fake.settings())
        .unwrap()
        .embed(&input)
        .await
        .unwrap();
    assert_eq!(fake.seen().len(), 2);
    // The backoff alone would wait 10-20 ms.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_close(&vectors[2], &expected(&input[2], DIM));
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let fake = FakeOpenAi::start().await;
    let server_error = Reply::Status {
        status: 500,
        body: r#"{"error":"llama runner process has terminated"}"#,
        retry_after: None,
    };
    fake.script(std::slice::from_ref(&server_error));
    let vectors = OpenAiEmbedder::new(&fake.settings())
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(fake.seen().len(), 2);

    // Still failing after the retries (2 here): one line with the last error.
    fake.script(&[server_error.clone(), server_error.clone(), server_error]);
    let err = OpenAiEmbedder::new(&fake.settings())
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the embeddings endpoint {}/embeddings kept failing (HTTP 500: llama runner process has terminated) after 3 attempts; check the server (and embedding.timeout) and rerun",
            fake.base_url
        )
    );
    assert_eq!(fake.seen().len(), 2 + 3);
}

#[tokio::test]
async fn a_server_that_does_not_answer_in_time_is_retried_then_reported() {
    let fake = FakeOpenAi::start().await;
    fake.script(&[Reply::Hang(Duration::from_secs(3))]);
    let settings = fake.settings().with_timeout(Duration::from_millis(500));
    let vectors = OpenAiEmbedder::new(&settings)
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(fake.seen().len(), 2, "the timed-out request was retried");

    fake.script(&[
        Reply::Hang(Duration::from_secs(3)),
        Reply::Hang(Duration::from_secs(3)),
        Reply::Hang(Duration::from_secs(3)),
    ]);
    let started = Instant::now();
    let err = OpenAiEmbedder::new(&settings)
        .unwrap()
        .embed(&texts(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EmbedError::Unavailable { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no answer within 500ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_closed_port_is_reported_as_unreachable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = OpenAiSettings::new(
        Url::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap(),
        MODEL,
    )
    .with_retry(RetryPolicy {
        max_retries: 1,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    });
    let err = OpenAiEmbedder::new(&settings)
        .unwrap()
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the embeddings endpoint http://127.0.0.1:{port}/v1/embeddings is unreachable (connection refused); start the server or check embedding.base_url"
        )
    );
}

#[tokio::test]
async fn unusable_answers_are_refused_with_what_was_wrong() {
    let fake = FakeOpenAi::start().await;
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::Body(r#"{"object":"list","data":[{"embedding":[0.1,"#),
            "not the JSON of an embeddings answer (EOF while parsing",
        ),
        (
            Reply::Body("<html>It works!</html>"),
            "not the JSON of an embeddings answer (expected value",
        ),
        (
            Reply::Edit(|a| {
                a["data"].as_array_mut().unwrap().pop();
            }),
            "2 embeddings for 3 texts",
        ),
        (
            Reply::Edit(|a| a["data"][2]["index"] = json!(0)),
            "index 0 appears twice",
        ),
        (
            Reply::Edit(|a| a["data"][1]["index"] = json!(7)),
            "index 7 is out of range for 3 texts",
        ),
        (
            Reply::Edit(|a| {
                a["data"][1]["embedding"].as_array_mut().unwrap().pop();
            }),
            "embedding 1 has 11 values, embedding 0 has 12",
        ),
        (
            Reply::Edit(|a| a["data"][2]["embedding"][3] = json!(1e39)),
            "embedding 2 has a non-finite value at 3 (inf)",
        ),
        (
            Reply::Edit(|a| a["data"][0]["embedding"] = json!(vec![0.0; DIM])),
            "embedding 0 is all zeros",
        ),
        (
            Reply::Edit(|a| a["data"][0]["embedding"] = json!([])),
            "embedding 0 is empty",
        ),
        (
            Reply::Edit(|a| a["data"][0]["embedding"] = json!("AAAA")),
            "not the JSON of an embeddings answer (invalid type: string",
        ),
    ];
    let client = OpenAiEmbedder::new(&fake.settings()).unwrap();
    for (reply, detail) in cases {
        fake.script(&[reply]);
        let before = fake.seen().len();
        let err = client.embed(&texts(3)).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EmbedError::BadResponse { .. }), "{msg}");
        assert!(msg.contains(detail), "expected {detail:?} in: {msg}");
        assert!(
            msg.contains("check that embedding.base_url is an OpenAI-compatible API"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
        assert_eq!(fake.seen().len(), before + 1, "not retried: {detail}");
    }

    // Vectors of another length in a later batch of the same call.
    let client = OpenAiEmbedder::new(
        &fake
            .settings()
            .with_batch_size(NonZeroUsize::new(2).unwrap()),
    )
    .unwrap();
    fake.script(&[
        Reply::Ok,
        Reply::Edit(|a| {
            for item in a["data"].as_array_mut().unwrap() {
                item["embedding"].as_array_mut().unwrap().pop();
            }
        }),
    ]);
    let err = client.embed(&texts(4)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("embedding 2 has 11 values, earlier ones 12"),
        "{err}"
    );
}

#[tokio::test]
async fn the_embedder_enum_loads_the_openai_provider() {
    let fake = FakeOpenAi::start().await;
    let source = EmbedderSource::OpenAi(with_key(fake.settings()));
    assert_eq!(source.model_id(), "openai:fake-embed");
    assert!(!format!("{source} {source:?}").contains("do-not-print"));
    let embedder = Embedder::load(&source).await.unwrap();
    assert_eq!(embedder.model_id(), "openai:fake-embed");
    assert!(matches!(embedder, Embedder::OpenAi(_)));
    assert!(!format!("{embedder:?}").contains("do-not-print"));
    let input = texts(3);
    let vectors = embedder.embed(input.clone()).await.unwrap();
    assert_close(&vectors[1], &expected(&input[1], DIM));

    let unset = EmbedderSource::OpenAi(fake.settings().with_api_key("ME_NO_SUCH_KEY", None));
    let err = Embedder::load(&unset).await.unwrap_err();
    assert!(err.to_string().contains("ME_NO_SUCH_KEY"), "{err}");
}

// ---- the binary ----------------------------------------------------------------------------

const KEY_VAR: &str = "ME_TEST_EMBEDDINGS_KEY";

/// The test config's encoding settings (as `crate::common::config` writes them) and an `embedding:`
/// section for `base_url`.
fn encoding_and_embedding(base_url: &Url, batch_size: usize) -> String {
    format!(
        "  days_back: 60\n  embedding_days: 30\n  batch_size: 4\n  max_retries: 2\n  request_timeout_secs: 2\n  \
         requests_per_second: 100\n  retry_base_ms: 20\n  retry_max_ms: 3000\n\
         embedding:\n  provider: openai\n  base_url: {base_url}\n  model: {MODEL}\n  api_key_env: {KEY_VAR}\n  \
         batch_size: {batch_size}\n  timeout: 5s\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dry_run_shows_the_provider_and_whether_the_key_is_set_never_the_key() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[("etfs", "SPY", "SPY")],
        &encoding_and_embedding(&fake.base_url, 16),
    );
    let cfg = cfg.to_str().unwrap();
    let mut env = vec![
        ("DATABASE_URL", "postgres://u:p@db.invalid:5432/markets"),
        (KEY_VAR, KEY),
    ];
    let r = run(&["--config", cfg, "--dry-run"], &env).await;
    assert_eq!(r.code, 0, "{r:#?}");
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("embedding:"))
        .unwrap_or_else(|| panic!("no embedding line:\n{}", r.stdout));
    assert_eq!(
        line,
        format!(
            "embedding:  openai-compatible POST {}/embeddings, model fake-embed (batch 16, timeout 5s), key from ${KEY_VAR} (set)",
            fake.base_url
        )
    );
    assert!(!r.stdout.contains(KEY) && !r.stderr.contains(KEY));

    // Without the key: the plan says so, and the dry run fails as the run would (exit 2).
    env.pop();
    let r = run(&["--config", cfg, "--dry-run"], &env).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stdout.contains(&format!("key from ${KEY_VAR} (not set)")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(&format!(
            "environment variable {KEY_VAR} (embedding.api_key_env) is not set"
        )),
        "{}",
        r.stderr
    );
    assert!(fake.seen().is_empty(), "a dry run sends nothing");
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh (it starts Chroma)")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_indexes_with_the_openai_provider_and_the_collection_remembers_the_model() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let openai = FakeOpenAi::start().await;
    let chroma_url = required("CHROMA_URL");
    let collection = format!("me_test_{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[("etfs", "SPY", "SPY")],
        &encoding_and_embedding(&openai.base_url, 8),
    );
    let env = [
        ("CHROMA_URL", chroma_url.as_str()),
        ("CHROMA_COLLECTION", collection.as_str()),
        (KEY_VAR, KEY),
    ];
    let window = ["--from", "2024-01-02", "--to", "2024-07-31"];
    let r = run_job_with(&cfg, &db, &yahoo, &window, &env).await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.documents_indexed(), 30, "{}", r.stdout);
    assert!(!r.stdout.contains(KEY) && !r.stderr.contains(KEY));

    // 30 documents in requests of 8, each with the key.
    let seen = openai.seen();
    assert_eq!(
        seen.iter().map(Seen::inputs).collect::<Vec<_>>(),
        [8, 8, 8, 6]
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(&*format!("Bearer {KEY}")))
    );

    // Chroma holds the fake's vectors, normalised, and the collection records the model.
    let settings = ChromaSettings::from_env(&|name| match name {
        "CHROMA_URL" => EnvValue::Present(chroma_url.clone()),
        "CHROMA_COLLECTION" => EnvValue::Present(collection.clone()),
        _ => EnvValue::Absent,
    })
    .unwrap();
    let client = ChromaClient::connect(&settings).await.unwrap();
    let stored = client.collection(&collection).await.unwrap();
    assert_eq!(stored.embedding_model.as_deref(), Some("openai:fake-embed"));
    assert_eq!(client.count(&stored).await.unwrap(), 30);
    let (date, document): (chrono::NaiveDate, String) = sqlx::query_as(
        "SELECT trade_date, document FROM documents WHERE symbol = 'SPY' ORDER BY trade_date DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let hits = client
        .get(&stored, &[format!("SPY:{date}")], &[Include::Embeddings])
        .await
        .unwrap();
    assert_close(
        hits[0].embedding.as_ref().unwrap(),
        &expected(&document, DIM),
    );

    // The same collection with the local model: refused before any model is loaded, prices kept.
    let local_cfg = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
    let r = run_job_with(&local_cfg, &db, &yahoo, &window, &env).await;
    assert_eq!(r.code, 5, "{r:#?}");
    assert!(
        r.stderr.contains(&format!(
            "collection {collection} holds vectors of model openai:fake-embed but this run embeds with sentence-transformers/all-MiniLM-L6-v2; set CHROMA_COLLECTION to another collection or delete {collection}"
        )),
        "{}",
        r.stderr
    );
    client.delete_collection(&collection).await.unwrap();
}
