"""Reads what market-encoder's Rust client wrote, with the official Python client.

Usage: $CHROMA_PYTHON tests/chroma_interop.py URL COLLECTION ID
Prints one JSON object on stdout; tests/chroma.rs (interop_with_the_official_python_client)
runs it and asserts on it. Exits non-zero with a message on stderr if anything fails.
"""

import json
import sys
from urllib.parse import urlparse

import chromadb
from chromadb.config import Settings


def main() -> None:
    url, name, record_id = sys.argv[1:4]
    parsed = urlparse(url)
    client = chromadb.HttpClient(
        host=parsed.hostname,
        port=parsed.port or (443 if parsed.scheme == "https" else 80),
        ssl=parsed.scheme == "https",
        settings=Settings(anonymized_telemetry=False),
    )
    # No embedding function: every call below passes embeddings, none are computed here.
    collection = client.get_collection(name, embedding_function=None)
    configuration = collection.configuration or {}
    hnsw = configuration.get("hnsw") or {}
    got = collection.get(ids=[record_id], include=["documents", "metadatas", "embeddings"])
    metadata = got["metadatas"][0]
    embedding = [float(x) for x in got["embeddings"][0]]
    queried = collection.query(
        query_embeddings=[embedding],
        n_results=3,
        include=["documents", "metadatas", "distances"],
    )
    print(
        json.dumps(
            {
                "chromadb_version": chromadb.__version__,
                "space": hnsw.get("space"),
                "count": collection.count(),
                "ids": got["ids"],
                "document": got["documents"][0],
                "metadata": metadata,
                "metadata_types": {k: type(v).__name__ for k, v in metadata.items()},
                "dimension": len(embedding),
                "query_ids": queried["ids"][0],
                "query_distances": [float(d) for d in queried["distances"][0]],
            }
        )
    )


if __name__ == "__main__":
    main()
