"""onnxruntime's embedding throughput on given texts: the fastest CPU runtime the benchmark's
market memory phase compares market-encoder's in-process embedder with.

Usage:
  python ort_throughput.py export MODEL_DIR OUT_ONNX
      (with a python that has torch, transformers and onnx: the sentence-transformers venv)
      Exports the BertModel of MODEL_DIR to ONNX (opset 17, dynamic batch and sequence axes,
      inputs input_ids/attention_mask/token_type_ids, output last_hidden_state) the way
      transformers' and optimum's exporters do, via torch.onnx.export; writes OUT_ONNX
      atomically.
  python ort_throughput.py run MODEL_DIR MODEL_ONNX TEXTS_JSON [REPETITIONS] [THREADS]
      (with a python that has onnxruntime, tokenizers and numpy: scripts/lib/ort.sh's venv)
      One InferenceSession (all graph optimisations, intra_op_num_threads THREADS, default 2),
      the tokenizer of MODEL_DIR (truncation at 256), texts sorted longest first in batches of 32,
      each padded to its longest text (dynamic padding), mean pooling and L2 normalisation in
      numpy: onnxruntime "used well". Warms up on the first 64 texts, then times REPETITIONS
      passes (default 3) and prints one JSON line: {"sentences_per_s": best, "seconds": [...],
      "threads": ..., "texts": N, "peak_rss_mib": ..., "versions": {...}, "vectors_sha": ...}.
"""

import json
import os
import platform
import resource
import sys
import time

BATCH = 32
MAX_SEQ = 256


def export(model_dir: str, out: str) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            ).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    tmp = out + ".tmp"
    with torch.no_grad():
        torch.onnx.export(
            Wrapper(model),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            tmp,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, out)


def load(model_dir: str, onnx_path: str, threads: int):
    """One onnxruntime session (all graph optimisations, `threads` intra-op threads) and the
    tokenizer of MODEL_DIR (truncation at 256, no padding): onnxruntime "used well"."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.enable_truncation(MAX_SEQ)
    tokenizer.no_padding()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    return session, tokenizer


def embed(session, tokenizer, texts):
    """The normalised mean-pooled vectors of `texts` (an N x 384 float32 array), longest first
    in batches of 32, each padded to its longest text."""
    import numpy as np

    encodings = tokenizer.encode_batch(texts)
    order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
    out = np.zeros((len(encodings), 384), dtype=np.float32)
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        longest = max(len(encodings[i].ids) for i in chunk)
        ids = np.zeros((len(chunk), longest), dtype=np.int64)
        mask = np.zeros((len(chunk), longest), dtype=np.int64)
        for row, i in enumerate(chunk):
            n = len(encodings[i].ids)
            ids[row, :n] = encodings[i].ids
            mask[row, :n] = 1
        (hidden,) = session.run(
            None,
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        out[chunk] = pooled
    return out


def run(model_dir: str, onnx_path: str, texts_path: str, repetitions: int, threads: int) -> None:
    import numpy as np
    import onnxruntime as ort
    import tokenizers

    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
        sys.exit(f"{texts_path}: expected a non-empty JSON list of strings")
    session, tokenizer = load(model_dir, onnx_path, threads)

    def encode(batch_texts):
        return embed(session, tokenizer, batch_texts)

    encode(texts[:64])
    seconds = []
    cpu_seconds = []  # CPU time of the whole process (all threads) per pass
    vectors = None
    for _ in range(repetitions):
        started, cpu_started = time.perf_counter(), time.process_time()
        vectors = encode(texts)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    best = min(seconds)
    print(
        json.dumps(
            {
                "sentences_per_s": len(texts) / best,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "sentences_per_cpu_s": len(texts) / min(cpu_seconds),
                "threads": threads,
                "texts": len(texts),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "first_vector_head": [float(x) for x in vectors[0][:4]],
                "versions": {
                    "python": platform.python_version(),
                    "onnxruntime": ort.__version__,
                    "tokenizers": tokenizers.__version__,
                    "numpy": np.__version__,
                },
            }
        )
    )


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "export":
        export(args[1], args[2])
    elif 4 <= len(args) <= 6 and args[0] == "run":
        repetitions = int(args[4]) if len(args) > 4 else 3
        threads = int(args[5]) if len(args) > 5 else 2
        if repetitions < 1 or threads < 1:
            sys.exit("REPETITIONS and THREADS must be at least 1")
        run(args[1], args[2], args[3], repetitions, threads)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
