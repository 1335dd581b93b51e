"""See how a constraint changed each token's probabilities, in bounded memory.

:class:`LogitTrackingProcessor` wraps any logits processor (ours or a plain
callable). For every generated position it records the scores before
("natural", unstructured) and after ("constrained", structured) the wrapped
processor, and the token that was chosen.

Memory. Per position it keeps the top ``top_k`` entries of both rows (ids and
both values) and each row's log-sum-exp, so probabilities of kept entries are
exact: ``2 * top_k * 12 + 24`` bytes. Full rows are kept for the last
``full_rows`` positions only (``2 * full_rows * n_vocab * 4`` bytes), or for
every position with ``full_rows=None``. With the defaults (``top_k=10``,
``full_rows=8``) and a 152k vocabulary, 1,000 positions take about 10 MB.

Reuse. A new prompt (``input_ids`` that do not extend the previous call's by
one token) starts a new record: what was tracked before is dropped, unless
``accumulate=True``, which appends the new generation's positions after the
old ones. ``clear()`` empties the record at any time. Dropping a record that
was never read logs a warning once, since that is usually a mix-up.

The chosen token of a position is known when the next call arrives (it is
the last id of the next ``input_ids``). The last position's token never comes
back to a processor: it is taken as chosen when the constraint allowed only
one token, and otherwise can be given with :meth:`finish` (the high-level
API does this).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from outlines_gguf.errors import ProcessorFailedError
from outlines_gguf.llama_cpp import hook
from outlines_gguf.llama_cpp.completion_check import completion_text, token_for_bytes
from outlines_gguf.llama_cpp.hook import GuardedHook
from outlines_gguf.tokens.cache import as_vocabulary
from outlines_gguf.tokens.vocabulary import Vocabulary

logger = logging.getLogger("outlines_gguf")

UNKNOWN = -1
"""The chosen-token value of a position whose token is not known (yet)."""


def _logsumexp(row: np.ndarray) -> float:
    finite = row[np.isfinite(row)]
    if finite.size == 0:
        return float("-inf")
    top = float(finite.max())
    return top + float(np.log(np.exp(finite - top, dtype=np.float64).sum()))


def _top(row: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` largest finite entries of ``row`` (fewer if fewer are finite), best first."""
    finite = np.flatnonzero(np.isfinite(row))
    if finite.size <= k:
        ids = finite
    elif finite.size < row.size // 4:
        ids = finite[np.argpartition(row[finite], -k)[-k:]]
    else:
        ids = np.argpartition(row, -k)[-k:]
        ids = ids[np.isfinite(row[ids])]
    return ids[np.argsort(-row[ids], kind="stable")]


def token_label(vocabulary: Vocabulary | None, token: int) -> str:
    """Readable text of one token: UTF-8 with undecodable bytes shown as \\xNN; a token that writes
    nothing by the model's own name for it (each end-of-generation token its own: ``<|im_end|>``)."""
    if vocabulary is None:
        return f"<{token}>"
    data = vocabulary.tokens[token]
    if not data:
        name = vocabulary.special_names.get(token)
        if name:
            return name
        return f"<eog {token}>" if token in vocabulary.eog_ids else f"<special {token}>"
    return data.decode("utf-8", errors="backslashreplace")


class LogitTrackingProcessor(GuardedHook):
    """Record natural vs constrained scores around a wrapped logits processor.

    Use it as the processor: ``create_completion(..., logits_processor=
    LogitsProcessorList([LogitTrackingProcessor(JSONLogitsProcessor(M, llm))]))``.
    Single sequence only: ``input_ids`` and ``scores`` must be 1-D.
    """

    def __init__(
        self,
        processor: Callable[[Any, np.ndarray], np.ndarray] | None = None,
        *,
        vocabulary: Any = None,
        top_k: int = 10,
        full_rows: int | None = 8,
        accumulate: bool = False,
    ) -> None:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        if full_rows is not None and full_rows < 0:
            raise ValueError("full_rows must be >= 0 or None (every position)")
        self.processor = processor
        if vocabulary is None:
            vocabulary = getattr(processor, "vocabulary", None)
        self.vocabulary: Vocabulary | None = None if vocabulary is None else as_vocabulary(vocabulary)
        self.top_k = top_k
        self.full_rows = full_rows
        self.accumulate = accumulate
        self.generations = 0
        self._guard = hook.StickyFailure(
            "the processor wrapped by LogitTrackingProcessor failed",
            None if self.vocabulary is None else self.vocabulary.eog_array,  # None: pass vocabulary= to stop
        )
        self._seen: np.ndarray | None = None
        self._warned = False
        self.clear()

    # -- the hook ---------------------------------------------------------------------------

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        ids = np.asarray(input_ids)
        if ids.ndim != 1 or np.ndim(scores) != 1:  # a batch: never from llama-cpp-python
            raise ValueError(
                "LogitTrackingProcessor tracks a single sequence: input_ids and scores must be 1-D"
            )
        # past this point, never raise into llama-cpp-python: it would swallow the error and
        # go on sampling without the wrapped processor
        return self._guard.run(lambda: self._track(ids, input_ids, scores), scores)

    def _track(self, ids: np.ndarray, input_ids: Any, scores: np.ndarray) -> None:
        if hook.continues(self._seen, ids):
            self._set_chosen(self._n - 1, int(ids[-1]))
        else:
            self.generations += 1
            self._guard.reset()
            if not self.accumulate and self._n:
                if not self._read and not self._warned:
                    logger.warning(
                        "LogitTrackingProcessor: a new prompt started, so the %d positions tracked for "
                        "the previous one were dropped unread; pass accumulate=True to keep every "
                        "generation, or read the record before generating again",
                        self._n,
                    )
                    self._warned = True
                self.clear()
        self._seen = ids.copy()
        natural = np.array(scores, dtype=np.float32)
        processor = self.processor
        if processor is not None:
            self._guard.run(lambda: hook.apply_processor(processor, input_ids, scores), scores)
            if self._guard.failed:  # stays stopped for the rest of this generation
                self._guard.force_eog(scores)
        self._record(natural, scores)

    def raise_if_failed(self, completion: Any = None) -> None:
        """Raise :class:`ProcessorFailedError` if the wrapped processor failed during generation;
        with ``completion``, the wrapped processor's incomplete-generation check too (see
        :meth:`~outlines_gguf.llama_cpp.processors.GuideLogitsProcessor.raise_if_failed`), after
        recording the last token from it (:meth:`finish_from`)."""
        if completion is not None:
            self.finish_from(completion)
        if self.error is not None:
            raise ProcessorFailedError(f"the tracked processor failed: {self.error}") from self.error
        inner = getattr(self.processor, "raise_if_failed", None)
        if inner is not None:
            if completion is None:
                inner()
            else:
                inner(completion)

    def take_forced(self, sampled: int, forced: Sequence[int], natural: np.ndarray | None = None) -> None:
        """Fast-forward: record ``forced`` (tokens taken without sampling, after ``sampled``) as
        forced positions: constrained probability 1 for the forced token, natural row from
        ``natural`` (one raw logits row per forced token; unknown, all -inf, without it).
        The wrapped processor is told the same (see ``GuideLogitsProcessor.take_forced``)."""
        if self._seen is None or not forced:
            return
        self._set_chosen(self._n - 1, int(sampled))
        size = self.vocabulary.size if self.vocabulary is not None else 0
        for i, token in enumerate(forced):
            row = natural[i] if natural is not None else np.full(size, -np.inf, dtype=np.float32)
            row = np.array(row, dtype=np.float32)
            constrained = np.full(row.shape[0], -np.inf, dtype=np.float32)
            constrained[int(token)] = row[int(token)] if np.isfinite(row[int(token)]) else 0.0
            self._record(row, constrained)
        new = [int(sampled), *(int(t) for t in forced[:-1])]
        self._seen = np.concatenate([self._seen, np.asarray(new, dtype=self._seen.dtype)])
        inner = getattr(self.processor, "take_forced", None)
        if inner is not None:
            inner(sampled, forced, natural)

    def finish(self, token: int) -> None:
        """Record the token chosen at the last position (it never reaches a processor)."""
        if self._n:
            self._set_chosen(self._n - 1, int(token))

    def finish_from(self, completion: Any) -> int | None:
        """Record the last position's token from what ``create_completion`` (or
        ``create_chat_completion``) returned, or from the generated text; returns it, or None
        where the text does not name one token the constraint allowed there (an
        end-of-generation stop among several allowed ones)."""
        if not self._n or self.vocabulary is None or self._pending is None:
            return None
        pos, _, constrained = self._pending
        if pos != self._n - 1 or self._chosen[pos] != UNKNOWN:
            return None if self._chosen[pos] == UNKNOWN else int(self._chosen[pos])
        text, _ = completion_text(completion)
        first = int(np.flatnonzero(self._gen[: self._n] == self.generations)[0])
        known = self.vocabulary.decode(int(t) for t in self._chosen[first:pos])
        data = text.encode("utf-8")
        if not data.startswith(known) or UNKNOWN in self._chosen[first:pos]:
            return None
        rest = data[len(known) :]
        if rest:
            token = token_for_bytes(self.vocabulary, rest)
        else:  # nothing written: an end-of-generation token, if only one was allowed
            allowed = [
                t for t in self.vocabulary.eog_ids if t < constrained.size and np.isfinite(constrained[t])
            ]
            token = allowed[0] if len(allowed) == 1 else None
        if token is None or not np.isfinite(constrained[token]):
            return None
        self._set_chosen(pos, token)
        return token

    # -- storage ----------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget everything tracked so far."""
        k = self.top_k
        self._n = 0
        self._cap = 64
        self._ids = np.zeros((self._cap, 2, k), dtype=np.int32)  # [pos, natural/constrained ranking, k]
        self._vals = np.full((self._cap, 2, 2, k), -np.inf, dtype=np.float32)  # [pos, ranking, which, k]
        self._count = np.zeros((self._cap, 2), dtype=np.int16)
        self._lse = np.zeros((self._cap, 2), dtype=np.float64)
        self._chosen = np.full(self._cap, UNKNOWN, dtype=np.int64)
        self._gen = np.zeros(self._cap, dtype=np.int32)
        self._chosen_vals = np.full((self._cap, 2), np.nan, dtype=np.float32)  # its natural, constrained
        self._rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pending: tuple[int, np.ndarray, np.ndarray] | None = None  # the last rows, until chosen
        self._read = False

    def _grow(self) -> None:
        self._cap *= 2
        for name in ("_ids", "_vals", "_count", "_lse", "_chosen", "_gen", "_chosen_vals"):
            old = getattr(self, name)
            new = np.empty((self._cap, *old.shape[1:]), dtype=old.dtype)
            new[: old.shape[0]] = old
            if name == "_chosen":
                new[old.shape[0] :] = UNKNOWN
            elif name == "_chosen_vals":
                new[old.shape[0] :] = np.nan
            setattr(self, name, new)

    def _record(self, natural: np.ndarray, constrained_view: np.ndarray) -> None:
        if self._n == self._cap:
            self._grow()
        pos = self._n
        constrained = np.array(constrained_view, dtype=np.float32)
        for r, ranked in enumerate((natural, constrained)):
            top = _top(ranked, self.top_k)
            n = top.size
            self._ids[pos, r, :n] = top
            self._vals[pos, r, 0, :n] = natural[top]
            self._vals[pos, r, 1, :n] = constrained[top]
            self._count[pos, r] = n
        self._lse[pos] = (_logsumexp(natural), _logsumexp(constrained))
        self._gen[pos] = self.generations
        if self.full_rows is None or self.full_rows > 0:
            self._rows[pos] = (natural, constrained)
            if self.full_rows is not None:
                self._rows.pop(pos - self.full_rows, None)
        self._pending = (pos, natural, constrained)
        self._n += 1
        allowed = np.flatnonzero(np.isfinite(constrained))
        if allowed.size == 1:  # forced: the sampler can only take this one
            self._set_chosen(pos, int(allowed[0]))

    def _set_chosen(self, pos: int, token: int) -> None:
        if 0 <= pos < self._n:
            self._chosen[pos] = token
            pending = self._pending
            if pending is not None and pending[0] == pos and 0 <= token < pending[1].size:
                # the chosen token's values, so that it shows even when it is outside the top-k
                self._chosen_vals[pos] = (pending[1][token], pending[2][token])

    @property
    def n_positions(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held by the record (top-k arrays and full rows)."""
        names = ("_ids", "_vals", "_count", "_lse", "_chosen", "_gen", "_chosen_vals")
        arrays = sum(getattr(self, n).nbytes for n in names)
        return arrays + sum(a.nbytes + b.nbytes for a, b in self._rows.values())

    # -- queries ----------------------------------------------------------------------------

    def _positions(self, positions: Sequence[int] | None) -> list[int]:
        if positions is None:
            return list(range(self._n))
        for p in positions:
            if not 0 <= p < self._n:
                raise IndexError(f"position {p} not tracked (0..{self._n - 1})")
        return list(positions)

    def chosen_tokens(self) -> list[int]:
        """The token chosen at each position (``UNKNOWN`` where it is not known)."""
        self._read = True
        return self._chosen[: self._n].tolist()

    def sequence(self, pos: int | None = None) -> str:
        """Text generated up to and including position ``pos`` (all of it by default)."""
        self._read = True
        end = self._n if pos is None else pos + 1
        chosen = [t for t in self._chosen[:end].tolist() if t != UNKNOWN]
        if self.vocabulary is None:
            return " ".join(f"<{t}>" for t in chosen)
        return self.vocabulary.decode(chosen).decode("utf-8", errors="replace")

    def _full(self, which: int, positions: list[int]) -> np.ndarray:
        if not positions:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._rows[p][which] for p in positions])

    def get_logits(self, positions: Sequence[int] | None = None) -> dict[str, Any]:
        """Full rows of logits, for the positions whose rows the tracker keeps.

        Returns ``{"unstructured": (n, V), "structured": (n, V), "positions": [...],
        "n_positions": N, "all_positions": bool}``: row ``i`` is position
        ``positions[i]``. Only the last ``full_rows`` positions (8 by default)
        keep full rows, so by default this covers the last 8 of the
        ``n_positions`` tracked; ``all_positions`` says whether it covers every
        one. Make the tracker with ``full_rows=None`` to keep (and get) every
        position. ``positions`` picks some; asking for one whose row was not
        kept raises ``IndexError``.
        """
        self._read = True
        kept = sorted(self._rows)
        if positions is None:
            chosen = kept
        else:
            chosen = list(positions)
            missing = [p for p in chosen if p not in self._rows]
            if missing:
                raise IndexError(
                    f"no full rows kept for positions {missing[:5]} (kept: {kept[:1]}..{kept[-1:]}, "
                    f"full_rows={self.full_rows}): make the tracker with full_rows=None to keep every row"
                )
        return {
            "unstructured": self._full(0, chosen),
            "structured": self._full(1, chosen),
            "positions": chosen,
            "n_positions": self._n,
            "all_positions": len(chosen) == self._n,
        }

    def get_probabilities(self, positions: Sequence[int] | None = None) -> dict[str, Any]:
        """Like :meth:`get_logits` (the same keys and positions), as softmax probabilities
        (0 where the constraint put -inf)."""
        logits = self.get_logits(positions)
        out: dict[str, Any] = {k: logits[k] for k in ("positions", "n_positions", "all_positions")}
        for key in ("unstructured", "structured"):
            rows = logits[key].astype(np.float64)
            if rows.size:
                rows = rows - rows.max(axis=1, keepdims=True)
                rows = np.exp(rows)
                rows /= rows.sum(axis=1, keepdims=True)
            out[key] = rows
        return out

    def _candidates(self, pos: int) -> list[tuple[int, float, float]]:
        """(token, natural logit, constrained logit) of the entries kept for ``pos``."""
        seen: dict[int, tuple[float, float]] = {}
        for r in (0, 1):
            n = int(self._count[pos, r])
            for j in range(n):
                tok = int(self._ids[pos, r, j])
                seen[tok] = (float(self._vals[pos, r, 0, j]), float(self._vals[pos, r, 1, j]))
        chosen = int(self._chosen[pos])
        if chosen != UNKNOWN and chosen not in seen:
            if pos in self._rows:
                natural, constrained = self._rows[pos]
                seen[chosen] = (float(natural[chosen]), float(constrained[chosen]))
            elif not np.isnan(self._chosen_vals[pos, 0]):
                seen[chosen] = (float(self._chosen_vals[pos, 0]), float(self._chosen_vals[pos, 1]))
        return [(t, a, b) for t, (a, b) in seen.items()]

    def get_top_tokens(
        self, k: int = 10, positions: Sequence[int] | None = None, include_logits: bool = True
    ) -> list[dict[str, Any]]:
        """Per position: ``position``, ``text_so_far`` and the ``k`` most likely ``tokens``.

        Tokens are ranked by the larger of their natural and constrained
        probabilities (at most ``2 * top_k`` per position are kept), and the
        chosen token is added after them when it is not among them; each has ``token``, ``unstructured_prob``,
        ``structured_prob``, ``is_chosen`` and (with ``include_logits``)
        ``unstructured_logit`` and ``structured_logit``.
        """
        self._read = True
        result = []
        for pos in self._positions(positions):
            lse_n, lse_c = self._lse[pos]
            rows = []
            for tok, nat, con in self._candidates(pos):
                p_n = float(np.exp(nat - lse_n)) if np.isfinite(nat) and np.isfinite(lse_n) else 0.0
                p_c = float(np.exp(con - lse_c)) if np.isfinite(con) and np.isfinite(lse_c) else 0.0
                entry: dict[str, Any] = {
                    "token": token_label(self.vocabulary, tok),
                    "token_id": tok,
                    "unstructured_prob": p_n,
                    "structured_prob": p_c,
                    "is_chosen": tok == int(self._chosen[pos]),
                }
                if include_logits:
                    entry["unstructured_logit"] = nat
                    entry["structured_logit"] = con
                rows.append(entry)
            rows.sort(key=lambda e: -max(e["unstructured_prob"], e["structured_prob"]))
            top = rows[:k]
            top += [e for e in rows[k:] if e["is_chosen"]]  # the chosen token always shows
            result.append(
                {"position": pos, "text_so_far": self.sequence(pos - 1) if pos else "", "tokens": top}
            )
        return result

    def to_dataframe(self, show: str = "probs", min_value: float | None = None, top_k: int | None = None):
        """A pandas DataFrame with columns ``position, token, natural, constrained, chosen``.

        ``show`` is ``"probs"`` or ``"logits"``; ``min_value`` keeps rows where
        either value reaches it; ``top_k`` limits the tokens per position (the chosen one is always shown).
        """
        import pandas as pd

        if show not in ("probs", "logits"):
            raise ValueError('show must be "probs" or "logits"')
        records = []
        for entry in self.get_top_tokens(k=top_k or self.top_k, include_logits=True):
            for tok in entry["tokens"]:
                if show == "probs":
                    natural, constrained = tok["unstructured_prob"], tok["structured_prob"]
                else:
                    natural, constrained = tok["unstructured_logit"], tok["structured_logit"]
                if min_value is not None and max(natural, constrained) < min_value:
                    continue
                records.append((entry["position"], tok["token"], natural, constrained, tok["is_chosen"]))
        return pd.DataFrame.from_records(
            records, columns=["position", "token", "natural", "constrained", "chosen"]
        )

    def table(self, k: int = 3, positions: Sequence[int] | None = None, max_rows: int | None = None) -> str:
        """A compact text table for terminals: per position, the chosen token and the top ``k``.

        ``max_rows`` bounds the rows: beyond it the first and last positions
        are shown, with one line saying how many were left out.
        """
        picked = self._positions(positions)
        omitted = 0
        if max_rows is not None and len(picked) > max(max_rows, 1):
            head = (max(max_rows, 1) + 1) // 2
            tail = max(max_rows, 1) - head
            omitted = len(picked) - head - tail
            picked = picked[:head] + (picked[-tail:] if tail else [])
            cut_after = picked[head - 1]
        lines = [f"{'pos':>4}  {'chosen':<16} {'p(nat)':>7} {'p(con)':>7}  top natural -> constrained"]
        for entry in self.get_top_tokens(k=self.top_k * 2 + 1, positions=picked):
            chosen = next((t for t in entry["tokens"] if t["is_chosen"]), None)
            label = repr(chosen["token"])[:16] if chosen else "?"
            p_n = f"{chosen['unstructured_prob']:.3f}" if chosen else "-"
            p_c = f"{chosen['structured_prob']:.3f}" if chosen else "-"
            others = ", ".join(
                f"{t['token']!r} {t['unstructured_prob']:.2f}->{t['structured_prob']:.2f}"
                for t in entry["tokens"][:k]
            )
            lines.append(f"{entry['position']:>4}  {label:<16} {p_n:>7} {p_c:>7}  {others}")
            if omitted and entry["position"] == cut_after:
                lines.append(f"   ... {omitted} positions not shown")
        return "\n".join(lines)

    def plot(self, k: int = 5, positions: Sequence[int] | None = None, ax: Any = None):
        """Per position, the top natural vs constrained probabilities and the chosen token.

        Needs matplotlib (``pip install outlines-gguf[plot]``). Returns the figure.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("plot() needs matplotlib: pip install 'outlines-gguf[plot]'") from exc
        entries = self.get_top_tokens(k=k, positions=positions)
        drawable = _drawable_text()
        if ax is None:
            fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(entries) + 2), 4.5))
        else:
            fig = ax.figure
        for i, entry in enumerate(entries):
            for rank, tok in enumerate(entry["tokens"][:k]):
                x = i + (rank - (k - 1) / 2) * 0.8 / k
                ax.bar(x - 0.05, tok["unstructured_prob"], width=0.08, color="#9ab", alpha=0.9)
                ax.bar(
                    x + 0.05,
                    tok["structured_prob"],
                    width=0.08,
                    color="#d62" if tok["is_chosen"] else "#e9a",
                    alpha=0.9,
                )
        ax.set_xticks(range(len(entries)))
        ax.set_xticklabels(
            [
                drawable(next((repr(t["token"]) for t in e["tokens"] if t["is_chosen"]), "?")[:10])
                for e in entries
            ],
            rotation=60,
            ha="right",
            fontsize=8,
        )
        ax.set_ylabel("probability")
        ax.set_xlabel("position (chosen token)")
        ax.set_title(f"top {k} tokens per position: natural (grey) vs constrained (red = chosen)")
        fig.tight_layout()
        return fig


def _drawable_text() -> Callable[[str], str]:
    """A function that escapes (``\\u4e2d``) the characters matplotlib's font cannot draw, so that
    CJK and other scripts plot without "Glyph missing" warnings."""
    try:
        from matplotlib import font_manager
        from matplotlib.ft2font import FT2Font

        path = font_manager.findfont(font_manager.FontProperties())
        drawable = set(FT2Font(path).get_charmap())
    except Exception:  # no font information: draw ASCII only
        drawable = set(range(32, 127))

    def escape(text: str) -> str:
        return "".join(
            ch if ord(ch) in drawable else ch.encode("unicode_escape").decode("ascii") for ch in text
        )

    return escape


def add_tracking(generator: Any, **options: Any) -> Any:
    """Wrap ``generator.logits_processor`` in a :class:`LogitTrackingProcessor` and return the generator."""
    processor = getattr(generator, "logits_processor", None)
    if processor is None:
        raise ValueError("add_tracking needs an object with a logits_processor attribute")
    if not isinstance(processor, LogitTrackingProcessor):
        generator.logits_processor = LogitTrackingProcessor(processor, **options)
    return generator
