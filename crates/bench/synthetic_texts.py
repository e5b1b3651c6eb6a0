"""Synthetic texts of an exact length in word pieces, for comparing encoders on equal-length
input (no padding to save): the counterpart of crates/minilm's `throughput` example, which feeds
synthetic token ids.

Usage: python synthetic_texts.py MODEL_DIR TEXTS TOKENS OUT_JSON
    (with a python that has `tokenizers`: scripts/lib/ort.sh's venv)
    Writes TEXTS texts, each of TOKENS word pieces as the model's tokenizer counts them ([CLS] and
    [SEP] included), made of whole lower-case words drawn from its vocabulary with a fixed seed;
    checks every length.
"""

import json
import os
import random
import sys

from tokenizers import Tokenizer


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    model_dir, texts, tokens, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    words = sorted(
        w
        for w in tokenizer.get_vocab()
        if w.isascii() and w.isalpha() and w.islower() and len(w) > 2
    )
    rng = random.Random(12345)
    result = []
    while len(result) < texts:
        text = " ".join(rng.choice(words) for _ in range(tokens - 2))
        if len(tokenizer.encode(text).ids) == tokens:
            result.append(text)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
