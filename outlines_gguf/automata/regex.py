"""Compile a regular expression to a deterministic automaton over UTF-8 bytes.

The pattern is parsed with Python's own ``re`` parser, so the syntax is
exactly Python's. Characters become UTF-8 byte sequences, so a token that
ends in the middle of a multi-byte character is handled like any other
prefix. Constructs that are not regular (backreferences, conditionals,
possessive and atomic groups) are rejected with :class:`RegexError`;
lookarounds, ``\\b``/``\\B`` and anchors other than at the very start or end
are compiled by :mod:`.lookaround`.

Character classes follow the intersection of Python's ``str`` and
``re.ASCII`` semantics, so every generated string fully matches the pattern
under both: ``\\d``, ``\\w``, ``\\s`` produce ASCII characters, their negations
(``\\D``, ``[^\\d]``) exclude the Unicode ones. With the ``(?a)`` flag the
classes are exactly ASCII. A pattern that is complemented afterwards takes the
union instead (``negated=True``), and a JSON Schema pattern is also read as
ECMA-262 reads ``.`` and ``$`` (``ecma=True``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from outlines_gguf.automata import lookaround
from outlines_gguf.automata.budget import MAX_REPEAT, compile_budget, spend
from outlines_gguf.automata.charsets import Ranges
from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.automata.ecma_syntax import expand_escapes
from outlines_gguf.automata.nfa import Fragment, FragmentBuilder
from outlines_gguf.automata.translate import C, _Flags, _RegexTranslator, _short, sre_parse
from outlines_gguf.errors import ConstraintTooComplexError, RegexError


class NFABuilder(FragmentBuilder):
    """A :class:`~outlines_gguf.automata.nfa.FragmentBuilder` that also takes Python regexes as
    fragments (with lookarounds: :mod:`.lookaround`)."""

    def regex(
        self,
        pattern: str,
        chars: Callable[[Ranges], Fragment] | None = None,
        *,
        anchored: bool = True,
        strict_lookahead: bool = False,
        negated: bool = False,
        ecma: bool = False,
    ) -> Fragment:
        """A Python regex (full match when ``anchored``) as a fragment.

        ``chars`` decides how a set of characters becomes bytes (default:
        UTF-8); JSON strings pass one that writes the JSON escapes. Patterns
        with lookarounds, ``\\b`` or inner anchors are compiled by
        :mod:`.lookaround` (``strict_lookahead``: refuse a lookahead that looks
        past the end of the match, as a lexer terminal's would).

        ``negated``: the fragment will be complemented (``not: {pattern}``, the keys outside
        ``patternProperties``), so classes take their widest meaning over every reader (``\\s``
        every Unicode space, ``$`` also before a final newline) instead of the narrowest: what
        is left after the complement then fails to match under each reading. ``ecma``: a JSON
        Schema pattern, read to hold under ECMA-262 too (``.`` and ``$``).
        """
        spend(10 * len(pattern))
        expanded = expand_escapes(pattern)  # \p{L}, \cC: as classes re reads
        if expanded is pattern:
            return self._regex(pattern, chars, anchored, strict_lookahead, negated, ecma)
        try:
            return self._regex(expanded, chars, anchored, strict_lookahead, negated, ecma)
        except (RegexError, ConstraintTooComplexError) as exc:
            # name the pattern as the caller wrote it (a position would be in the rewritten text)
            message = re.sub(r" at position \d+", "", str(exc).replace(_short(expanded), _short(pattern)))
            exc.args = (message, *exc.args[1:])
            raise

    def _regex(
        self,
        pattern: str,
        chars: Callable[[Ranges], Fragment] | None,
        anchored: bool,
        strict_lookahead: bool,
        negated: bool,
        ecma: bool = False,
    ) -> Fragment:
        """:meth:`regex` of a pattern in the syntax Python's ``re`` reads."""
        try:
            parsed = sre_parse.parse(pattern)
        except re.error as exc:
            raise RegexError(f"invalid regex {_short(pattern)}: {exc}") from exc
        except RecursionError as exc:
            raise ConstraintTooComplexError(f"regex {_short(pattern)} is nested too deeply") from exc
        except OverflowError as exc:  # a repeat count beyond what re itself can store
            raise ConstraintTooComplexError(f"regex {_short(pattern)}: {exc}") from exc
        if lookaround.needs_assertions(list(parsed.data), anchored, anchored):
            dfa = lookaround.compile_assertions(
                self,
                pattern,
                parsed,
                chars or self.chars,
                anchored,
                strict=strict_lookahead,
                negated=negated,
                ecma=ecma,
            )
            if dfa is None:  # matches nothing: a fragment whose end cannot be reached
                return self.nfa.state(), self.nfa.state()
            return self.dfa(dfa)
        translator = _RegexTranslator(self, pattern, chars or self.chars)
        translator.negative = negated
        translator.ecma = ecma
        try:
            return translator.seq(list(parsed.data), _Flags.of(parsed.state.flags), anchored, anchored)
        except RecursionError as exc:
            raise ConstraintTooComplexError(f"regex {_short(pattern)} is nested too deeply") from exc


def regex_to_dfa(pattern: str) -> ByteDFA:
    """Compile ``pattern`` (Python ``re`` syntax, full match) to a :class:`ByteDFA`.

    Uncached: :func:`outlines_gguf.compiler.compile_regex` is the cached entry point.
    Raises :class:`RegexError` for invalid or unsupported syntax,
    :class:`EmptyLanguageError` when no string matches, and
    :class:`ConstraintTooComplexError` past the documented size limits.
    """
    if not isinstance(pattern, str):
        raise RegexError(f"a regex must be a str, got {type(pattern).__name__}")
    label = f"regex {_short(pattern)}"
    with compile_budget(label):
        builder = NFABuilder(label)
        return builder.build(builder.regex(pattern))


def regex_may_be_refused(pattern: str) -> bool:
    """Whether :meth:`NFABuilder.regex` may refuse ``pattern`` (a :class:`RegexError` or a
    repeat count past ``MAX_REPEAT``), by a look at its parse tree that builds nothing: a
    syntax error, a construct the translator refuses (backreferences, conditional groups,
    possessive repeats, atomic groups), a large repeat, a variable-width lookbehind. False
    means it will not; True, that building it tells (the caller then builds it)."""
    try:
        parsed = sre_parse.parse(expand_escapes(pattern))
    except (re.error, RecursionError, OverflowError, RegexError):
        return True
    plain = {C.LITERAL, C.NOT_LITERAL, C.ANY, C.AT}
    in_class = {C.LITERAL, C.RANGE, C.CATEGORY, C.NEGATE}
    stack: list[tuple[list, bool]] = [(list(parsed.data), False)]  # (items, inside a lookbehind)
    while stack:
        items, behind = stack.pop()
        for op, av in items:
            if op in plain:
                continue
            if op is C.IN:
                if any(o not in in_class for o, _ in av):
                    return True
            elif op is C.BRANCH:
                stack.extend((list(alt), behind) for alt in av[1])
            elif op is C.SUBPATTERN:
                stack.append((list(av[3]), behind))
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
                lo, hi, sub = av
                if lo > MAX_REPEAT or (hi != C.MAXREPEAT and hi > MAX_REPEAT):
                    return True
                stack.append((list(sub), behind))
            elif op in (C.ASSERT, C.ASSERT_NOT):
                direction, sub = av
                low, high = sub.getwidth()
                if behind or (direction < 0 and low != high):
                    return True  # a lookaround inside a lookbehind, a variable-width lookbehind
                stack.append((list(sub), direction < 0))
            else:
                return True
    return False
