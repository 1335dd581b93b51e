"""Functions run in worker processes by tests/test_reliability_processes.py (importable by name)."""

from __future__ import annotations

from typing import Any

import numpy as np


def masks_along(processor: Any, runs: list[tuple[list[int], list[int]]]) -> list[list[bytes]]:
    """For each (prompt, tokens) run: the allowed ids after each hook call (the prompt, then
    one more token per call), as bytes of sorted int32 ids."""
    out = []
    for prompt, tokens in runs:
        rows = []
        for k in range(len(tokens) + 1):
            scores = np.zeros(processor.vocabulary.size, dtype=np.float32)
            processor(np.array(prompt + tokens[:k], dtype=np.intc), scores)
            rows.append(np.flatnonzero(np.isfinite(scores)).astype(np.int32).tobytes())
        assert processor.error is None, processor.error
        out.append(rows)
    return out


def spawn_pool_check() -> None:
    """Build processors here, compute their masks here and in a spawned pool, and compare.

    Run in a fresh interpreter by the test (``python -c``): a spawn child that dies while
    starting can leave CPython's parent blocked forever on its start-up pipe, which must
    not hang the test session.
    """
    import multiprocessing
    import pickle
    import sys
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, where conftest lives
    from conftest import load_vocab

    from outlines_gguf import JSONLogitsProcessor, RegexLogitsProcessor

    vocab = load_vocab("spm32k")
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
    }
    processors = [
        JSONLogitsProcessor(schema, vocab),
        RegexLogitsProcessor(r"(?:[a-z]+ ){1,3}[0-9]{2}", vocab),
    ]
    texts = [[b'{"name": "Ada", "age": 3', b'{"name":"","age":12}'], [b"ab cd 12", b"xyz 9"]]
    runs = [spell(vocab, t) for t in texts]
    expected = [masks_along(pickle.loads(pickle.dumps(p)), r) for p, r in zip(processors, runs, strict=True)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        futures = [pool.submit(masks_along, p, r) for p, r in zip(processors, runs, strict=True)]
        got = [f.result(timeout=240) for f in futures]
    assert got == expected, "a child computed other masks than the parent"
    calls = sum(len(rows) for per_processor in got for rows in per_processor)
    assert calls > 25, calls
    sys.stdout.write(f"same masks in parent and children: {calls} hook calls\n")


def spell(vocab: Any, texts: list[bytes]) -> list[tuple[list[int], list[int]]]:
    """(prompt, tokens) runs that spell ``texts`` with short tokens of the vocabulary."""
    index = {t: i for i, t in enumerate(vocab.tokens) if t and i not in vocab.special_ids}
    runs = []
    for n, text in enumerate(texts):
        tokens, i = [], 0
        while i < len(text):
            for width in (4, 3, 2, 1):
                piece = text[i : i + width]
                if len(piece) == width and piece in index:
                    tokens.append(index[piece])
                    i += width
                    break
            else:
                raise AssertionError(f"cannot spell {text[i:]!r}")
        runs.append(([1, 7 + n], tokens))
    return runs
