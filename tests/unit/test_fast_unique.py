"""fast_unique returns exactly what np.unique returns."""

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
