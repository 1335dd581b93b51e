"""What every callable in llama-cpp-python's ``logits_processor`` hook shares.

llama-cpp-python runs a logits processor inside a ctypes callback: an
exception raised there is printed and ignored, and sampling goes on
unconstrained. So nothing may escape the hook. :class:`StickyFailure` keeps
the first error of a generation (and logs every one), forces
end-of-generation on the scores, and stays failed until :meth:`~StickyFailure.reset`,
so that the caller can re-raise the error once generation is over.

:func:`continues` tells whether a call's ``input_ids`` continue the sequence
of the previous call (one more token) or start a new generation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

logger = logging.getLogger("outlines_gguf")


def continues(seen: np.ndarray | None, ids: np.ndarray) -> bool:
    """Whether ``ids`` are ``seen`` (the previous call's ids) plus one token."""
    if seen is None or ids.shape[0] != seen.shape[0] + 1:
        return False
    if ids.dtype == seen.dtype:  # (as llama-cpp-python passes them: bytes compare, a third of the time)
        return ids[:-1].tobytes() == seen.tobytes()
    return bool(np.array_equal(ids[:-1], seen))


def apply_processor(processor: Callable[[Any, np.ndarray], Any], input_ids: Any, scores: np.ndarray) -> None:
    """Run a logits processor on ``scores``: it writes in place, or returns the new scores (copied in)."""
    out = processor(input_ids, scores)
    if out is not None and out is not scores:
        scores[:] = out


def force_eog(scores: np.ndarray, eog: np.ndarray) -> None:
    """Allow only the end-of-generation ids ``eog`` (those within ``scores``), in place."""
    scores[:] = -np.inf
    scores[eog[eog < scores.shape[-1]]] = 0.0


class StickyFailure:
    """The first error raised inside the hook during one generation, and end-of-generation forced
    from then on.

    ``label`` names what failed in the log (``"outlines-gguf: <label>, forcing end of generation:
    <error>"``); ``eog`` is the end-of-generation ids, or None where they are unknown (then
    nothing can be forced and generation goes on). Not thread-safe: its owner serializes calls.
    """

    def __init__(self, label: str, eog: np.ndarray | None) -> None:
        self.label = label
        self.eog = eog
        self.error: BaseException | None = None
        self.failed = False

    def reset(self) -> None:
        """A new generation: no error, not failed."""
        self.error = None
        self.failed = False

    def keep(self, exc: BaseException) -> None:
        """Fail with ``exc``, kept unless an earlier error is (nothing logged, nothing forced)."""
        if self.error is None:
            self.error = exc
        self.failed = True

    def run(self, step: Callable[[], object], scores: np.ndarray) -> np.ndarray:
        """Run ``step`` (which writes into ``scores``); if it raises, :meth:`fail` instead of raising."""
        try:
            step()
        except Exception as exc:
            self.fail(exc, scores)
        return scores

    def fail(self, exc: BaseException, scores: np.ndarray) -> None:
        """Log ``exc``, keep it (unless an earlier error is kept) and force end-of-generation."""
        logger.error("outlines-gguf: %s, forcing end of generation: %s", self.label, exc, exc_info=exc)
        self.keep(exc)
        try:
            self.force_eog(scores)
        except Exception as inner:  # scores that cannot even hold -inf: nothing more to do here
            logger.error("outlines-gguf: could not force end of generation: %s", inner)

    def force_eog(self, scores: np.ndarray) -> None:
        """Allow only end-of-generation in ``scores`` (nothing, where the ids are unknown)."""
        if self.eog is not None:
            force_eog(scores, self.eog)


class GuardedHook:
    """What a hook with a :class:`StickyFailure` (``self._guard``) shows its users."""

    _guard: StickyFailure

    @property
    def error(self) -> BaseException | None:
        """The first error raised inside the hook in this generation (None: none)."""
        return self._guard.error

    @error.setter
    def error(self, error: BaseException | None) -> None:
        self._guard.error = error

    @property
    def _failed(self) -> bool:
        """Failed in this generation: end-of-generation is forced until the next one."""
        return self._guard.failed
