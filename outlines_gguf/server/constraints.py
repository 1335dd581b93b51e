"""Compiled constraints for requests, cached by content hash across requests.

A request names at most one constraint on its text: ``response_format``
(``json_object`` or ``json_schema``) or one of the extensions ``regex``,
``grammar`` (Lark, or llama.cpp's GBNF) and ``choice``. Each is
compiled once into a guide (the thread-safe state machine behind our
processors) and kept in a :class:`ConstraintCache` under the SHA-256 of what
was asked for, so the next request with the same schema pays a dictionary
lookup; every request then gets a fresh processor around the shared guide.
Errors in the constraint are 400s that name the field and, for schemas, the
keyword's path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from outlines_gguf import compiler
from outlines_gguf.guides.base import Guide, RegexGuide
from outlines_gguf.server.errors import APIError, bad_request, one_line
from outlines_gguf.server.protocol import _Request, extension
from outlines_gguf.tokens.vocabulary import Vocabulary

DEFAULT_CACHE_ENTRIES = 16
"""Compiled constraints kept per server (least recently used are dropped). A guide holds the masks
computed for it: from tens of kilobytes to a few megabytes on a 152k vocabulary."""


TRIM_INTERVAL_S = 0.25
"""At most this often, memory freed by evicted constraints is handed back to the system."""


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere: other allocators return memory by themselves or not)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the heap's free pages to the system.

    A guide's masks are many small arrays; once it is evicted, glibc keeps
    the freed pages, scattered among live ones, so resident memory would
    stay at its high-water mark. ``malloc_trim`` gives them back (a few
    milliseconds, in the compile thread, at most four times a second).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class CompileNeededError(Exception):
    """A constraint is not compiled yet: prepare the request off the event loop, where compiling may take."""


class ConstraintCache:
    """Guides by content hash, least recently used dropped past ``max_entries``.

    Thread-safe. Two requests that miss on the same key at once both compile
    (the second result wins); that is rarer and cheaper than a lock held
    across a compile that may take a second. With a shared folder behind it,
    a miss is looked up there before compiling, and what is compiled is
    written there for the other replicas.
    """

    def __init__(
        self, vocabulary: Vocabulary, max_entries: int = DEFAULT_CACHE_ENTRIES, shared: Any = None
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"the constraint cache needs at least one entry, got {max_entries}")
        self.vocabulary = vocabulary
        self.max_entries = max_entries
        self.shared = shared
        """A :class:`~.shared_cache.SharedGuideFolder` behind the memory, or None."""
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._trimmed = 0.0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(kind: str, content: str) -> str:
        """The content hash a constraint is cached under."""
        return hashlib.sha256(f"{kind}\0{content}".encode()).hexdigest()

    def get(self, kind: str, content: str, build: Callable[[], Any]) -> Any:
        """The value cached for (``kind``, ``content``), built by ``build()`` on a miss."""
        key = self.key(kind, content)
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return value
        if getattr(self._local, "cached_only", False):
            raise CompileNeededError(kind)
        with self._lock:
            self.misses += 1
        value = self.shared.load(key) if self.shared is not None else None
        if value is None:
            value = build()
            if self.shared is not None:
                self.shared.store(key, value)
        evicted = []
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                evicted.append(self._entries.popitem(last=False))
        if evicted:
            del evicted  # drop the guides here, then give their memory back now and then
            now = time.monotonic()
            if now - self._trimmed >= TRIM_INTERVAL_S:
                self._trimmed = now
                release_free_memory()
        return value

    @contextmanager
    def cached_only(self) -> Iterator[None]:
        """In this thread, a miss raises :class:`CompileNeededError` instead of compiling or reading disk."""
        self._local.cached_only = True
        try:
            yield
        finally:
            self._local.cached_only = False

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"entries": len(self._entries), "max_entries": self.max_entries,
                                 "hits": self.hits, "misses": self.misses}
        if self.shared is not None:
            stats["shared"] = self.shared.stats()
        return stats


@dataclass(frozen=True)
class TextConstraint:
    """The constraint on a response's text: what it is, the request field, the shared guide."""

    kind: str
    param: str
    guide: Guide


def canonical_json(value: Any) -> str:
    """Key order and spacing removed: equal schemas hash equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compile_error(exc: Exception, param: str, what: str) -> APIError:
    """A compile failure as a 400 that names the field (schema errors carry their keyword path)."""
    return bad_request(f"invalid {what}: {one_line(exc)}", param)


# -- the kinds ----------------------------------------------------------------------------------


def json_schema_guide(cache: ConstraintCache, schema: Any, *, lenient: bool, param: str) -> Guide:
    """The guide for JSON valid against ``schema`` (a 400 naming the keyword's path if we cannot)."""
    from outlines_gguf.llama_cpp.processors import JSONLogitsProcessor

    if not isinstance(schema, (dict, bool)):
        raise bad_request(f"a JSON Schema must be an object, got {type(schema).__name__}", param)

    def build() -> Guide:
        try:
            return JSONLogitsProcessor(schema, cache.vocabulary, lenient=lenient).guide
        except (ValueError, RecursionError) as exc:  # SchemaError, RegexError, ConstraintTooComplexError...
            error = compile_error(exc, param, "JSON Schema")
            error.message = error.message.replace("pass lenient=True", "set strict: false")
            raise error from exc

    return cache.get("json_schema" + ("-lenient" if lenient else ""), canonical_json(schema), build)


def regex_guide(cache: ConstraintCache, pattern: str, *, param: str, what: str = "regex") -> RegexGuide:
    """The guide for text that fully matches ``pattern``."""
    if not isinstance(pattern, str):
        raise bad_request(f"{param} must be a string", param)

    def build() -> RegexGuide:
        try:
            return compiler.regex_guide(pattern, cache.vocabulary)
        except (ValueError, RecursionError) as exc:
            raise compile_error(exc, param, what) from exc

    return cache.get("regex", pattern, build)


def looks_like_gbnf(grammar: str) -> bool:
    """GBNF rules are written ``name ::= ...`` (at the start of a line); Lark's are ``name: ...``."""
    from outlines_gguf.grammar.gbnf_parse import is_gbnf

    return is_gbnf(grammar)


def grammar_guide(cache: ConstraintCache, grammar: str, *, param: str) -> Guide:
    """The guide for a Lark grammar, a shipped grammar's name, or a llama.cpp GBNF grammar."""
    from outlines_gguf import grammars
    from outlines_gguf.llama_cpp.processors import CFGLogitsProcessor

    if not isinstance(grammar, str) or not grammar.strip():
        raise bad_request(f"{param} must be a non-empty grammar text", param)
    if grammar.strip() in grammars.names():
        grammar = grammars.load(grammar.strip())
    kind = "gbnf" if looks_like_gbnf(grammar) else "lark"

    def build() -> Guide:
        try:
            if kind == "gbnf":
                return compiler.gbnf_guide(grammar, cache.vocabulary)
            return CFGLogitsProcessor(grammar, cache.vocabulary).guide
        except (ValueError, RecursionError) as exc:  # GrammarError, EmptyLanguageError...
            raise compile_error(exc, param, "grammar") from exc

    return cache.get(kind, grammar, build)


def choice_guide(cache: ConstraintCache, choices: Any, *, param: str) -> RegexGuide:
    """The guide for exactly one of ``choices``."""
    if (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(c, str) and c for c in choices)
    ):
        raise bad_request(f"{param} must be a non-empty list of non-empty strings", param)
    return regex_guide(cache, "|".join(re.escape(c) for c in choices), param=param, what="choice")


# -- a request's constraint ---------------------------------------------------------------------

RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")


def text_constraint(req: _Request, cache: ConstraintCache) -> TextConstraint | None:
    """The request's constraint on its text, compiled (cached), or None for free text."""
    asked: list[tuple[str, str, Any]] = []
    fmt = req.response_format
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in RESPONSE_FORMAT_TYPES:
            raise bad_request(
                f"response_format.type must be one of {', '.join(RESPONSE_FORMAT_TYPES)}, got {kind!r}",
                "response_format.type",
            )
        if kind != "text":
            asked.append((kind, "response_format", fmt))
    for name in ("regex", "grammar", "choice"):
        value = extension(req, name)
        if value is not None:
            asked.append((name, name, value))
    if not asked:
        return None
    if len(asked) > 1:
        names = " and ".join(param for _, param, _ in asked)
        raise bad_request(f"give one constraint per request, not {names}", asked[1][1])
    kind, param, value = asked[0]
    if kind == "json_object":
        guide = json_schema_guide(cache, {"type": "object"}, lenient=False, param=param)
    elif kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise bad_request(
                "response_format.json_schema must be an object with a 'schema' (and a 'name')",
                "response_format.json_schema",
            )
        strict = spec.get("strict")
        if strict not in (None, True, False):
            raise bad_request("response_format.json_schema.strict must be a boolean",
                              "response_format.json_schema.strict")
        # strict (or absent): every keyword is enforced, or 400. strict=false: keywords we
        # cannot enforce are ignored, as OpenAI's non-strict mode promises no more.
        guide = json_schema_guide(
            cache, spec["schema"], lenient=strict is False, param="response_format.json_schema.schema"
        )
    elif kind == "regex":
        guide = regex_guide(cache, value, param=param)
    elif kind == "grammar":
        guide = grammar_guide(cache, value, param=param)
    else:
        guide = choice_guide(cache, value, param=param)
    return TextConstraint(kind, param, guide)
