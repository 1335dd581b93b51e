"""Constraint + vocabulary -> guide, and the one owner of every cache.

The layers below are pure: ``automata`` turns a regex into a DFA, ``json_schema``
a schema into automata, ``grammar`` a Lark grammar into tables, ``guides`` an
automaton and a vocabulary into token masks. Compiling is costly, so this
module memoizes what they build, in memory (LRU) and, for DFAs, on disk
(:mod:`outlines_gguf.disk_cache`). :func:`clear_caches` empties all of it: a
benchmark's cold start, or a test that must not see another's work.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from outlines_gguf import disk_cache
from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.automata.regex import regex_to_dfa
from outlines_gguf.errors import RegexError, SchemaError
from outlines_gguf.grammar.compiled import Grammar, terminal_lexing
from outlines_gguf.grammar.gbnf import build_gbnf
from outlines_gguf.grammar.general import GeneralGrammar
from outlines_gguf.grammar.modes import build_grammar, normalize_start
from outlines_gguf.guides.base import RegexGuide
from outlines_gguf.guides.grammar import CFGGuide
from outlines_gguf.guides.grammar_general import GeneralCFGGuide
from outlines_gguf.json_schema import validate
from outlines_gguf.json_schema.compiler import schema_to_dfa
from outlines_gguf.json_schema.keywords import DEFAULT_MAX_DEPTH
from outlines_gguf.json_schema.loading import prepare_schema
from outlines_gguf.json_schema.numbers import bounded_number_dfa, multiple_of_dfa
from outlines_gguf.json_schema.runs import string_run_table
from outlines_gguf.json_schema.scalars import pattern_part_dfa
from outlines_gguf.tokens.cache import clear_gguf_cache
from outlines_gguf.tokens.text import starts_plain_char
from outlines_gguf.tokens.vocabulary import Vocabulary

# -- automata ---------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def compile_regex(pattern: str) -> ByteDFA:
    """Compile ``pattern`` (Python ``re`` syntax, full match) to a :class:`ByteDFA` (cached).

    Raises :class:`RegexError` for invalid or unsupported syntax,
    :class:`EmptyLanguageError` when no string matches, and
    :class:`ConstraintTooComplexError` past the documented size limits.
    """
    if not isinstance(pattern, str):
        raise RegexError(f"a regex must be a str, got {type(pattern).__name__}")
    return disk_cache.cached("regex", pattern, lambda: regex_to_dfa(pattern))


def compile_json_schema(
    schema: Any,
    whitespace_pattern: str | None = None,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    lenient: bool = False,
    extra_properties: bool | None = None,
    refs: Mapping[str, Any] | None = None,
) -> ByteDFA:
    """Compile a JSON Schema (dict, JSON text or Pydantic model) to one whole-schema :class:`ByteDFA`.

    ``max_depth`` bounds recursion through ``$ref`` and the nesting of
    free-form values (``{}``, additional properties). ``extra_properties``:
    None follows the schema (additional properties are allowed where the
    schema does not forbid them, as JSON Schema says; for a Pydantic model
    they are not generated, since Pydantic ignores them). Raises
    :class:`SchemaError` (a ``ValueError``) naming the keyword and its path
    for what cannot be enforced, unless ``lenient``. ``refs``: the other documents its
    ``$ref``s lead to, by URI. Results are cached.
    """
    canonical, extra = prepare_schema(schema, extra_properties, refs, lenient)
    return compile_canonical(canonical, whitespace_pattern, max_depth, lenient, extra)


@lru_cache(maxsize=128)
def compile_canonical(
    canonical: str, whitespace_pattern: str | None, max_depth: int, lenient: bool, extra: bool | None
) -> ByteDFA:
    """Compile a schema given as canonical JSON text (cached; see :func:`compile_json_schema`)."""
    if whitespace_pattern is not None:
        try:
            re.compile(whitespace_pattern)
        except re.error as exc:
            raise SchemaError(f"invalid whitespace_pattern: {exc}") from exc
    key = json.dumps([canonical, whitespace_pattern, max_depth, lenient, extra], ensure_ascii=False)
    return disk_cache.cached(
        "json", key, lambda: schema_to_dfa(canonical, whitespace_pattern, max_depth, lenient, extra)
    )


def compile_grammar(
    text: str, start: str | Sequence[str] = "start", lexer: str = "auto"
) -> Grammar | GeneralGrammar:
    """Compile a Lark grammar (cached per text, start and lexer). Raises :class:`GrammarError`
    with the location.

    ``start`` is a rule name, or several (the language is their union, as lark's ``start=[...]``).
    ``lexer`` picks the mode:

    * ``"auto"`` (default): the LALR(1) mode with lark's contextual lexer when lark's LALR
      analysis accepts the grammar without conflicts (the fast path, a :class:`Grammar`),
      the general mode otherwise;
    * ``"contextual"``: always the LALR(1) mode, as lark's ``parser="lalr"`` (shift/reduce
      conflicts resolved as shifts, with a warning; reduce/reduce conflicts are an error);
    * ``"dynamic"``: always the general mode (a
      :class:`~outlines_gguf.grammar.general.GeneralGrammar`): any context-free grammar,
      ambiguous or not, with every lexing, as lark's Earley parser with
      ``lexer="dynamic_complete"``.
    """
    return _compile_grammar(text, normalize_start(start), lexer)


@lru_cache(maxsize=64)
def compile_gbnf(text: str) -> Grammar | GeneralGrammar:
    """Compile a llama.cpp GBNF grammar (cached per text; see :func:`.grammar.gbnf.build_gbnf`)."""
    return build_gbnf(text)


@lru_cache(maxsize=64)
def _compile_grammar(text: str, start: str | tuple[str, ...], lexer: str) -> Grammar | GeneralGrammar:
    return build_grammar(text, start, lexer)


# -- guides -----------------------------------------------------------------------------------

GUIDE_CACHE_SIZE = 64
"""How many compiled guides are kept per process (least recently used are dropped)."""

_G = TypeVar("_G")
_guides: OrderedDict[tuple[str, Hashable], object] = OrderedDict()
_guides_lock = threading.Lock()


def cached_guide(key: Hashable, vocabulary: Vocabulary, build: Callable[[], _G]) -> _G:
    """Return the guide cached under (vocabulary hash, key), building it on a miss."""
    full_key = (vocabulary.hash, key)
    with _guides_lock:
        guide = _guides.get(full_key)
        if guide is not None:
            _guides.move_to_end(full_key)
            return guide  # type: ignore[return-value]  # the key names the guide's type
    guide = build()
    with _guides_lock:
        _guides[full_key] = guide
        while len(_guides) > GUIDE_CACHE_SIZE:
            _guides.popitem(last=False)
    return guide


def regex_guide(pattern: str, vocabulary: Vocabulary) -> RegexGuide:
    """The guide for ``pattern``, shared through the guide cache."""
    return cached_guide(
        ("regex", pattern), vocabulary, lambda: RegexGuide(compile_regex(pattern), vocabulary)
    )


def grammar_guide(
    text: str, vocabulary: Vocabulary, start: str | Sequence[str] = "start", lexer: str = "auto"
) -> CFGGuide | GeneralCFGGuide:
    """The guide for a Lark grammar, shared through the guide cache: a :class:`CFGGuide` in the
    LALR mode, a :class:`GeneralCFGGuide` in the general mode (see :func:`compile_grammar`)."""
    starts = normalize_start(start)

    def build() -> CFGGuide | GeneralCFGGuide:
        grammar = _compile_grammar(text, starts, lexer)
        if isinstance(grammar, GeneralGrammar):
            return GeneralCFGGuide(grammar, vocabulary)
        return CFGGuide(grammar, vocabulary)

    return cached_guide(("cfg", text, starts, lexer), vocabulary, build)


def gbnf_guide(text: str, vocabulary: Vocabulary) -> CFGGuide | GeneralCFGGuide:
    """The guide for a llama.cpp GBNF grammar, shared through the guide cache."""

    def build() -> CFGGuide | GeneralCFGGuide:
        grammar = compile_gbnf(text)
        if isinstance(grammar, GeneralGrammar):
            return GeneralCFGGuide(grammar, vocabulary)
        return CFGGuide(grammar, vocabulary)

    return cached_guide(("gbnf", text), vocabulary, build)


def clear_guide_cache() -> None:
    """Drop every cached guide (and the masks they hold)."""
    with _guides_lock:
        _guides.clear()


def clear_caches(*vocabularies: Vocabulary) -> None:
    """Forget everything compiled in this process: guides, DFAs, grammars, GGUF vocabularies,
    and the byte-class tries of the ``vocabularies`` given (a fresh process's cold start).

    Kept: process-wide tables that do not depend on a constraint (Unicode classes, UTF-8
    plans, the shared JSON pieces of ``NFABuilder.shared``, an extra member's ``: value`` for
    any value per whitespace setting, ``json_schema.split._any_value_member``). The disk cache is left
    alone (``disk_cache.clear()`` empties it).
    """
    clear_guide_cache()
    compile_regex.cache_clear()
    compile_canonical.cache_clear()
    _compile_grammar.cache_clear()
    compile_gbnf.cache_clear()
    # pieces memoized where they are built, keyed by a terminal, a pattern or a step
    terminal_lexing.cache_clear()
    validate.pattern_dfa.cache_clear()
    pattern_part_dfa.cache_clear()
    multiple_of_dfa.cache_clear()
    bounded_number_dfa.cache_clear()
    starts_plain_char.cache_clear()
    string_run_table.cache_clear()
    clear_gguf_cache()
    for vocabulary in vocabularies:
        vocabulary.clear_class_tries()
