"""TokenMask's two forms (ids kept, ids forbidden) against a boolean array over the vocabulary."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from outlines_gguf.guides.base import TokenMask

N_VOCAB = 64
EOG = np.array([0, 63], dtype=np.int64)

ids = st.lists(st.integers(0, N_VOCAB - 1), max_size=N_VOCAB)


@settings(max_examples=300, deadline=None)
@given(allowed=ids, extra=ids, was_final=st.booleans(), final=st.booleans())
def test_extended_allows_the_extra_ids_and_end_of_generation_exactly_when_final(
    allowed: list[int], extra: list[int], was_final: bool, final: bool
) -> None:
    """Both forms (most of the vocabulary allowed: the forbidden ids are held), extra ids in any
    order and repeated, end of generation switched on or off."""
    dense = np.zeros(N_VOCAB, dtype=bool)
    dense[allowed] = True
    dense[EOG] = was_final
    mask = TokenMask(dense, was_final)
    wanted = dense.copy()
    wanted[extra] = True
    wanted[EOG] = final
    got = mask.extended(np.array(extra, dtype=np.int32), EOG, final, N_VOCAB)
    assert got.eog_allowed == final
    assert got.allowed_ids(N_VOCAB).tolist() == np.flatnonzero(wanted).tolist()
    assert got.allowed_count == int(wanted.sum())


def test_extended_keeps_the_forbidden_form_sorted_and_distinct() -> None:
    dense = np.ones(N_VOCAB, dtype=bool)
    dense[[5, 9, 10, 40]] = False
    mask = TokenMask(dense, True)
    got = mask.extended(np.array([40, 9, 9, 70 - N_VOCAB], dtype=np.int32), EOG, True, N_VOCAB)
    assert got._forbid is not None and got._forbid.tolist() == [5, 10]
