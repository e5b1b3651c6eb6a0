//! The embed and index stages' loop: every pending document is embedded and upserted into
//! Chroma in rounds, and marked indexed only in the version Chroma accepted. Started by
//! `job/mod.rs` with the run, it follows the narrate stage: the documents of the securities
//! stored first are embedded while the others are still being fetched.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use chrono::NaiveDate;

use crate::job::embed::{EmbedError, Embedder, EmbedderSource};
use crate::job::index::{
    ChromaClient, ChromaSettings, Collection, IndexError, Metadata, MetadataValue, Record,
};
use crate::job::store::{PendingDocument, Store, StoreError};

/// The embed and index stages' settings.
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    pub chroma: ChromaSettings,
    /// Where the vectors come from (the config's `embedding:` section).
    pub embedder: EmbedderSource,
    /// Documents embedded and upserted per round.
    pub batch_size: usize,
}

/// Why the embed and index stages stopped. Prices, indicators and documents are stored by then;
/// the documents stay pending and the next run catches up.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(transparent)]
    Chroma(#[from] IndexError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Texts per embedding call: 32 of the job's documents take about a second on 2 cores here
/// (~40 documents/s), 8 s on a CPU ten times slower, inside the 15 s a stop may take.
const EMBED_CHUNK: usize = 32;

/// The embedding model, loading in the background from the start of the run: the ~0.3 s of CPU
/// it takes overlaps the fetch stage's network waits instead of delaying the index stage (10%
/// of a daily run; README, Performance). Dropped unused (a stopped run), the load is aborted.
pub(super) struct ModelLoad(AbortOnDropHandle<Result<Embedder, EmbedError>>);

impl ModelLoad {
    pub(super) fn start(source: &EmbedderSource) -> Self {
        let source = source.clone();
        Self(AbortOnDropHandle::new(tokio::spawn(async move {
            Embedder::load(&source).await
        })))
    }

    async fn finish(self) -> Result<Embedder, EmbedError> {
        self.0
            .await
            .map_err(|e| EmbedError::Worker(e.to_string()))?
    }
}

/// What the narrate stage has committed so far, which the index stage follows.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Narrated {
    /// Documents written (only its changes matter: each one wakes the index stage).
    pub documents: u64,
    /// The narrate stage is over: nothing more will be written this run.
    pub done: bool,
}

/// The embed and index stages, beside the fetch, store and narrate stages: every pending
/// document (new, changed, or left by an earlier run) is embedded and upserted into Chroma in
/// rounds of `batch_size`, then marked indexed in that version; a round starts whenever the
/// narrate stage has written more (`narrated`), and the last one after it is `done`. On
/// cancellation the work in flight is abandoned at once, wherever it is (a Chroma call, the
/// model load, an embedding chunk): a document is marked only after Chroma accepted it, so the
/// round in flight simply stays pending (ids are stable: a re-upsert overwrites). Embedding goes
/// a chunk at a time ([`EMBED_CHUNK`]) so that the blocking thread computing an abandoned chunk
/// is done within a second or two. On error, returns how many were indexed before.
pub(super) async fn index_documents(
    store: &Store,
    memory: &MemoryOptions,
    model: ModelLoad,
    narrated: watch::Receiver<Narrated>,
    cancel: &CancellationToken,
) -> Result<u64, (u64, MemoryError)> {
    let indexed = AtomicU64::new(0);
    tokio::select! {
        biased;
        () = cancel.cancelled() => {
            let n = indexed.load(Ordering::Relaxed);
            info!(documents_indexed = n, "stopped: the round in flight stays pending");
            Ok(n)
        }
        result = index_all(store, memory, model, narrated, &indexed) => {
            result.map_err(|e| (indexed.load(Ordering::Relaxed), e))
        }
    }
}

async fn index_all(
    store: &Store,
    memory: &MemoryOptions,
    model: ModelLoad,
    mut narrated: watch::Receiver<Narrated>,
    indexed: &AtomicU64,
) -> Result<u64, MemoryError> {
    // Chroma first: if it is down, or its collection holds another model's vectors, fail
    // before spending time on the model.
    let chroma = ChromaClient::connect(&memory.chroma).await?;
    let collection = chroma
        .collection_for_model(memory.chroma.collection(), &memory.embedder.model_id())
        .await?;
    reconcile(store, &chroma, &collection).await?;
    let embedder = model.finish().await?;

    info!(model = %memory.embedder, "embedding the pending documents");
    let index = Index {
        store,
        chroma: &chroma,
        collection: &collection,
        embedder: &embedder,
        batch_size: memory.batch_size,
        indexed,
    };
    loop {
        // Read before the round: whatever was written before `done` is in this round.
        let last = narrated.borrow_and_update().done;
        index.pending().await?;
        if last {
            break;
        }
        if narrated.changed().await.is_err() {
            // The narrate stage is gone unfinished (the run is being dropped): one last round.
            index.pending().await?;
            break;
        }
    }
    Ok(indexed.load(Ordering::Relaxed))
}

/// One index stage's parts, for its rounds.
struct Index<'a> {
    store: &'a Store,
    chroma: &'a ChromaClient,
    collection: &'a Collection,
    embedder: &'a Embedder,
    batch_size: usize,
    indexed: &'a AtomicU64,
}

impl Index<'_> {
    /// Every document pending now, `batch_size` at a time in (symbol, date) order: embedded,
    /// upserted, marked. One written meanwhile before the cursor waits for the next round.
    async fn pending(&self) -> Result<(), MemoryError> {
        let mut after: Option<(String, NaiveDate)> = None;
        loop {
            let batch = self
                .store
                .pending_documents(
                    after.as_ref().map(|(s, d)| (s.as_str(), *d)),
                    self.batch_size,
                )
                .await?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            after = Some((last.symbol.clone(), last.trade_date));
            let mut vectors = Vec::with_capacity(batch.len());
            for chunk in batch.chunks(EMBED_CHUNK) {
                let texts: Vec<String> = chunk.iter().map(|d| d.document.clone()).collect();
                vectors.extend(self.embedder.embed(texts).await?);
            }
            let records: Vec<Record> = batch
                .iter()
                .zip(vectors)
                .map(|(d, embedding)| record(d, embedding))
                .collect();
            self.chroma.upsert(self.collection, &records).await?;
            let marked = self.store.mark_indexed(&batch).await?;
            let total = self.indexed.fetch_add(marked, Ordering::Relaxed) + marked;
            info!(documents = batch.len(), total, "indexed");
        }
    }
}

/// If the collection holds fewer records than PostgreSQL says were indexed, Chroma lost some
/// (a wiped volume, a recreated or renamed collection): every document is marked pending, so
/// this run re-indexes them all instead of leaving search silently incomplete. Ids are
/// stable, so records still there are overwritten, not duplicated.
async fn reconcile(
    store: &Store,
    chroma: &ChromaClient,
    collection: &Collection,
) -> Result<(), MemoryError> {
    let in_chroma = chroma.count(collection).await? as u64;
    let indexed = store.indexed_documents().await?;
    if in_chroma < indexed {
        let pending = store.forget_indexed().await?;
        warn!(
            collection = %collection.name,
            in_chroma,
            indexed,
            pending,
            "Chroma holds fewer records than were indexed; re-indexing all documents"
        );
    }
    Ok(())
}

/// The Chroma record of a document and its vector: id `{db_symbol}:{trade_date}`, the text,
/// the metadata as Chroma's typed values.
#[must_use]
pub fn record(document: &PendingDocument, embedding: Vec<f32>) -> Record {
    Record {
        id: document.id(),
        embedding,
        document: document.document.clone(),
        metadata: chroma_metadata(&document.metadata),
    }
}

/// The stored JSON metadata (flat scalars, see `narrate::metadata`) as Chroma's typed values:
/// integers stay integers, numbers with a fraction or exponent are floats.
pub fn chroma_metadata(json: &serde_json::Map<String, serde_json::Value>) -> Metadata {
    json.iter()
        .filter_map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(s) => MetadataValue::Str(s.clone()),
                serde_json::Value::Bool(b) => MetadataValue::Bool(*b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => MetadataValue::Int(i),
                    None => MetadataValue::Float(n.as_f64()?),
                },
                _ => return None,
            };
            Some((key.clone(), value))
        })
        .collect()
}
