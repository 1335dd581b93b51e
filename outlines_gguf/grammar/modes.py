"""Which engine a Lark grammar compiles to: the LALR mode with lark's contextual lexer
(:mod:`.compiled`), or the general mode with every lexing (:mod:`.general`).

Above both, so that neither imports the other's chooser.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from outlines_gguf.errors import GrammarError
from outlines_gguf.grammar.compiled import Grammar, load_lark
from outlines_gguf.grammar.general import GeneralGrammar

logger = logging.getLogger("outlines_gguf")


LEXERS = ("auto", "contextual", "dynamic")
"""The grammar modes (see :func:`outlines_gguf.compiler.compile_grammar`)."""

START_UNION = "outlines_gguf_start_union"
"""The rule added to a grammar with several start rules for the LALR mode (its language is their union)."""


def normalize_start(start: str | Sequence[str]) -> str | tuple[str, ...]:
    """A start rule name, or several as a tuple (hashable, for the compile cache)."""
    if isinstance(start, str):
        return start
    starts = tuple(start)
    if not starts or not all(isinstance(s, str) for s in starts):
        raise GrammarError(f"start must be a rule name or a non-empty list of them, not {start!r}")
    return starts[0] if len(starts) == 1 else starts


def build_grammar(text: str, start: str | tuple[str, ...], lexer: str) -> Grammar | GeneralGrammar:
    """The grammar in the mode ``lexer`` asks for (uncached: ``compiler.compile_grammar`` caches)."""
    if lexer not in LEXERS:
        raise GrammarError(f"lexer must be one of {', '.join(LEXERS)}, not {lexer!r}")
    if lexer == "dynamic":
        return GeneralGrammar(text, start)
    if isinstance(start, tuple):
        lalr_text, lalr_start = f"{text}\n{START_UNION}: {' | '.join(start)}\n", START_UNION
    else:
        lalr_text, lalr_start = text, start
    if lexer == "contextual":
        return Grammar(lalr_text, lalr_start)
    try:
        loaded = load_lark(lalr_text, lalr_start)
    except GrammarError as exc:  # a reduce/reduce conflict is LALR's limit, not the grammar's
        if "Reduce/Reduce collision" not in str(exc):
            raise
        return GeneralGrammar(text, start)
    if loaded[1]:
        logger.info("outlines-gguf: the grammar has LALR conflicts; using the general mode")
        return GeneralGrammar(text, start)
    return Grammar(lalr_text, lalr_start, loaded=loaded)
