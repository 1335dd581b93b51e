"""The string formats' automata shipped with the package (``json_schema/format_tables.npz``):
one for every format, each accepting exactly what building its regex now accepts, and a
regex without one built as before."""

from __future__ import annotations

import pytest

from outlines_gguf.automata.ops import difference
from outlines_gguf.json_schema.format_tables import shipped_format_dfa
from outlines_gguf.json_schema.leaves import STRING_FORMATS
from outlines_gguf.json_schema.scalars import build_format_dfa, format_part_dfa

REBUILD = "run scripts/build_format_tables.py to write the shipped tables again"


@pytest.mark.parametrize("name", sorted(STRING_FORMATS))
def test_every_format_is_shipped_and_equals_a_fresh_build(name: str) -> None:
    regex = STRING_FORMATS[name]
    shipped = shipped_format_dfa(regex)
    assert shipped is not None, f"format {name!r} has no shipped automaton (its regex changed?): {REBUILD}"
    built = build_format_dfa(regex)
    assert shipped.transitions.shape == (built.n_states, 256)
    assert difference(shipped, built) is None and difference(built, shipped) is None, (
        f"the shipped automaton of {name!r} accepts other strings than its regex: {REBUILD}"
    )
    assert not shipped.transitions.flags.writeable  # (shared by every schema of the process)


def test_a_regex_without_a_shipped_automaton_is_built() -> None:
    regex = r"[a-z]{2}-[0-9]"
    assert shipped_format_dfa(regex) is None
    dfa = format_part_dfa(regex)
    assert dfa.matches(b"ab-1") and not dfa.matches(b"ab-")
