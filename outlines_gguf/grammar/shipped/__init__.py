"""Ready-made Lark grammars for :class:`~outlines_gguf.CFGLogitsProcessor`.

>>> from outlines_gguf import CFGLogitsProcessor, grammars
>>> CFGLogitsProcessor(grammars.ARITHMETIC, llm)

``JSON``: any JSON value. ``ARITHMETIC``: + - * / with precedence, unary
minus and parentheses. ``SQL_SELECT``: one SELECT statement with joins,
WHERE, GROUP BY, ORDER BY and LIMIT (keywords in any case). ``PROGRAM``: a
small imperative language (assignments, print, if/else, while, blocks,
``#`` comments).
"""

from __future__ import annotations

from importlib import resources


def load(name: str) -> str:
    """The text of the shipped grammar ``name`` (one of :func:`names`)."""
    if name not in names():
        raise ValueError(f"no shipped grammar named {name!r}; there are {', '.join(names())}")
    return resources.files(__name__).joinpath(f"{name}.lark").read_text(encoding="utf-8")


def names() -> list[str]:
    """The names of the shipped grammars."""
    files = resources.files(__name__).iterdir()
    return sorted(p.name[: -len(".lark")] for p in files if p.name.endswith(".lark"))


JSON = load("json")
ARITHMETIC = load("arithmetic")
SQL_SELECT = load("sql_select")
PROGRAM = load("program")

__all__ = ["ARITHMETIC", "JSON", "PROGRAM", "SQL_SELECT", "load", "names"]
