"""sentence-transformers' embedding throughput on given texts: the reference the benchmark's
market memory phase compares market-encoder's in-process embedder with.

Usage: python st_throughput.py MODEL_DIR TEXTS_JSON [REPETITIONS]

Loads SentenceTransformer(MODEL_DIR, device="cpu"), warms up on the first 64 texts, then times
encode(texts, batch_size=32, normalize_embeddings=True) REPETITIONS times (default 3) and prints
one JSON line: {"sentences_per_s": best, "seconds": [...], "cpu_seconds": [...] (the process's CPU
time per pass, all threads), "sentences_per_cpu_s": texts / the least CPU time, "threads":
torch.get_num_threads(),
"texts": N, "peak_rss_mib": ..., "versions": {...}}. Run by market-encoder-bench --memory with the
python of scripts/lib/st.sh's venv.
"""

import json
import platform
import resource
import sys
import time


def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    model_dir, texts_path = sys.argv[1], sys.argv[2]
    repetitions = int(sys.argv[3]) if len(sys.argv) == 4 else 3
    if repetitions < 1:
        sys.exit("REPETITIONS must be at least 1")
    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
        sys.exit(f"{texts_path}: expected a non-empty JSON list of strings")

    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(texts[:64], batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    seconds = []
    cpu_seconds = []  # CPU time of the whole process (all threads) per pass
    for _ in range(repetitions):
        started, cpu_started = time.perf_counter(), time.process_time()
        vectors = model.encode(
            texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    if len(vectors) != len(texts):
        sys.exit(f"encode returned {len(vectors)} vectors for {len(texts)} texts")
    best = min(seconds)
    print(
        json.dumps(
            {
                "sentences_per_s": len(texts) / best,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "sentences_per_cpu_s": len(texts) / min(cpu_seconds),
                "threads": torch.get_num_threads(),
                "texts": len(texts),
                # ru_maxrss is in KiB on Linux.
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "versions": {
                    "python": platform.python_version(),
                    "sentence_transformers": sentence_transformers.__version__,
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
