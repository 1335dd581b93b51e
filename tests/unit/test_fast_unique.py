"""fast_unique returns exactly what np.unique (and np.nonzero, np.isin) return."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from outlines_gguf import fast_unique


@given(st.lists(st.integers(-5, 60), max_size=120), st.sampled_from([np.int32, np.int64, np.intp]))
def test_unique_matches_numpy(values: list[int], dtype: type) -> None:
    array = np.array(values, dtype=dtype)
    expected, first, inverse = np.unique(array, return_index=True, return_inverse=True)
    got, got_first, got_inverse = fast_unique.unique_first_inverse(array)
    assert got.tolist() == expected.tolist()
    assert got_first.tolist() == first.tolist()
    assert got_inverse.tolist() == inverse.reshape(-1).tolist()
    assert fast_unique.unique(array).tolist() == expected.tolist()
    assert fast_unique.unique(array).dtype == array.dtype


@given(st.integers(0, 9), st.integers(1, 300), st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_nonzero_2d_matches_numpy(rows: int, columns: int, seed: int, density: float) -> None:
    mask = np.random.default_rng(seed).random((rows, columns)) < density
    expected_rows, expected_columns = np.nonzero(mask)
    got_rows, got_columns = fast_unique.nonzero_2d(mask)
    assert got_rows.tolist() == expected_rows.tolist()
    assert got_columns.tolist() == expected_columns.tolist()
    table = np.where(mask, 7, -1).astype(np.int32)
    assert table[got_rows, got_columns].tolist() == table[expected_rows, expected_columns].tolist()


@given(
    st.lists(st.integers(0, 300), max_size=200),
    st.lists(st.integers(0, 300), max_size=2 * fast_unique.ISIN_FEW),
    st.sampled_from([np.uint8, np.int32, np.int64]),
)
def test_isin_few_matches_numpy(values: list[int], candidates: list[int], dtype: type) -> None:
    array = np.array(values, dtype=np.int64).astype(dtype)  # (uint8 wraps: first bytes)
    few = np.array(candidates, dtype=np.int64).astype(dtype)
    assert fast_unique.isin_few(array, few).tolist() == np.isin(array, few).tolist()
