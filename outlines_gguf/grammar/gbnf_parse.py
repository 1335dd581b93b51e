"""llama.cpp's GBNF grammars, parsed and checked like llama.cpp.

GBNF (``grammars/README.md`` and ``llama-grammar.cpp`` in llama.cpp) is a
scannerless, character-level context-free grammar: rules ``name ::= ...``,
``|``, groups, ``* + ?``, ``{m}``, ``{m,}``, ``{m,n}``, string literals and
character classes with escapes, ``.`` (any character), ``#`` comments, and
``root`` as the start rule. :func:`parse_gbnf` reads it into a small AST
with the same syntax rules as llama.cpp's parser (where a rule may span lines,
which escapes exist, what a name is) and refuses what llama.cpp refuses
(undefined rules, no ``root``, left recursion, repetition past its limits),
with errors that name the line and column. :mod:`~outlines_gguf.grammar.gbnf`
converts the AST to Lark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from outlines_gguf.errors import GrammarError

START = "root"
"""The start rule of every GBNF grammar (and of its Lark conversion)."""

MAX_REPETITION = 2000
"""llama.cpp's MAX_REPETITION_THRESHOLD: a larger minimum is refused, a larger maximum means no maximum,
and nested repetitions whose expansion would make this many rules are refused."""

_GBNF_RULE = re.compile(r"^[ \t]*[a-zA-Z0-9-]+[ \t]*::=", re.MULTILINE)


def is_gbnf(text: str) -> bool:
    """Whether ``text`` is a GBNF grammar (a line starting ``name ::=``) rather than a Lark one."""
    return isinstance(text, str) and _GBNF_RULE.search(text) is not None


@dataclass(frozen=True)
class Chars:
    """One character from ``ranges`` (inclusive code point pairs), or not from them if ``negated``."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool = False

    def matches(self, cp: int) -> bool:
        return any(lo <= cp <= hi for lo, hi in self.ranges) != self.negated


ANY = Chars((), True)
"""``.``: any character."""


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Ref:
    name: str
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    """Alternatives: a rule's body, or a parenthesised group."""

    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    item: Node
    lo: int
    hi: int | None  # None: no maximum


Node = Chars | Literal | Ref | Seq | Alt | Repeat


@dataclass
class GBNFGrammar:
    """Parsed GBNF: each rule's body (an :class:`Alt`) by name, in order of definition."""

    rules: dict[str, Alt]
    text: str = ""


def _is_word(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c == "-"


_SIMPLE_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}

_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class _Parser:
    """llama.cpp's recursive-descent GBNF parser, over a Python str (code points)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.rules: dict[str, Alt] = {}
        self.symbols = 0  # rules llama.cpp would have made so far for groups and repetitions

    # errors -----------------------------------------------------------------------------

    def where(self, pos: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, pos) + 1
        return line, pos - (self.text.rfind("\n", 0, pos) + 1) + 1

    def error(self, pos: int, message: str) -> GrammarError:
        line, column = self.where(pos)
        start = self.text.rfind("\n", 0, pos) + 1
        end = self.text.find("\n", pos)
        source = self.text[start : end if end >= 0 else len(self.text)]
        caret = " " * (column - 1) + "^"
        where = f"line {line}, column {column}"
        return GrammarError(f"GBNF syntax error at {where}: {message}\n  {source}\n  {caret}")

    def peek(self, pos: int, k: int = 0) -> str:
        return self.text[pos + k] if pos + k < len(self.text) else ""

    # lexical ----------------------------------------------------------------------------

    def space(self, pos: int, newline_ok: bool) -> int:
        text = self.text
        while pos < len(text):
            c = text[pos]
            if c == "#":
                while pos < len(text) and text[pos] not in "\r\n":
                    pos += 1
            elif c in " \t" or (newline_ok and c in "\r\n"):
                pos += 1
            else:
                break
        return pos

    def name(self, pos: int) -> int:
        end = pos
        while end < len(self.text) and _is_word(self.text[end]):
            end += 1
        if end == pos:
            raise self.error(pos, "expecting a rule name (letters, digits and '-')")
        return end

    def char(self, pos: int, context: str) -> tuple[int, int]:
        """One (possibly escaped) character: (code point, next position)."""
        c = self.peek(pos)
        if not c:
            raise self.error(pos, f"unexpected end of input in {context}")
        if c != "\\":
            return ord(c), pos + 1
        kind = self.peek(pos, 1)
        if kind in _SIMPLE_ESCAPES:
            return ord(_SIMPLE_ESCAPES[kind]), pos + 2
        if kind in _HEX_ESCAPES:
            size = _HEX_ESCAPES[kind]
            digits = self.text[pos + 2 : pos + 2 + size]
            if len(digits) != size or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise self.error(pos, f"'\\{kind}' needs exactly {size} hex digits")
            value = int(digits, 16)
            if value > 0x10FFFF:
                raise self.error(pos, f"'\\{kind}{digits}' is past the last Unicode code point U+10FFFF")
            return value, pos + 2 + size
        known = "\\x \\u \\U \\t \\n \\r \\\\ \\\" \\[ \\] \\-"
        raise self.error(pos, f"unknown escape '\\{kind}' (GBNF has {known})")

    # grammar ----------------------------------------------------------------------------

    def parse(self) -> GBNFGrammar:
        pos = self.space(0, True)
        while pos < len(self.text):
            pos = self.rule(pos)
        if not self.rules:
            raise GrammarError("the GBNF grammar has no rules (expected 'root ::= ...')")
        return GBNFGrammar(self.rules, self.text)

    def rule(self, pos: int) -> int:
        end = self.name(pos)
        name = self.text[pos:end]
        pos = self.space(end, False)
        if self.text[pos : pos + 3] != "::=":
            raise self.error(pos, f"expecting '::=' after the rule name {name!r}")
        pos = self.space(pos + 3, True)
        body, pos = self.alternates(pos, nested=False)
        self.rules[name] = body  # like llama.cpp, a later definition replaces an earlier one
        c = self.peek(pos)
        if c == "\r":
            pos += 2 if self.peek(pos, 1) == "\n" else 1
        elif c == "\n":
            pos += 1
        elif c:
            raise self.error(
                pos,
                f"expecting a newline or the end after rule {name!r} (a rule continues on the next line "
                "only after '|', '::=' or inside parentheses)",
            )
        return self.space(pos, True)

    def alternates(self, pos: int, nested: bool) -> tuple[Alt, int]:
        options = []
        seq, pos = self.sequence(pos, nested)
        options.append(seq)
        while self.peek(pos) == "|":
            pos = self.space(pos + 1, True)
            seq, pos = self.sequence(pos, nested)
            options.append(seq)
        return Alt(tuple(options)), pos

    def sequence(self, pos: int, nested: bool) -> tuple[Node, int]:
        items: list[Node] = []
        weights: list[int] = []  # llama.cpp's n_prev_rules: rules a repetition of the item copies
        text = self.text
        while pos < len(text):
            c = text[pos]
            start = pos
            if c == '"':
                pos += 1
                chars = []
                while self.peek(pos) != '"':
                    if not self.peek(pos):
                        raise self.error(start, "unterminated string literal")
                    cp, pos = self.char(pos, "a string literal")
                    chars.append(chr(cp))
                items.append(Literal("".join(chars)))
                weights.append(1)
                pos = self.space(pos + 1, nested)
            elif c == "[":
                item, pos = self.char_class(pos)
                items.append(item)
                weights.append(1)
                pos = self.space(pos, nested)
            elif c in "<!":
                raise self.error(
                    pos,
                    "token references (<[id]>, <token>, !<...>) match token ids, not text, and are not "
                    "supported: write the text they stand for as a string literal",
                )
            elif _is_word(c):
                end = self.name(pos)
                line, column = self.where(pos)
                items.append(Ref(text[pos:end], line, column))
                weights.append(1)
                pos = self.space(end, nested)
            elif c == "(":
                before = self.symbols
                self.symbols += 1
                body, pos = self.alternates(self.space(pos + 1, True), nested=True)
                if self.peek(pos) != ")":
                    raise self.error(pos, "expecting ')' to close the group opened at line "
                                     f"{self.where(start)[0]}, column {self.where(start)[1]}")
                items.append(body)
                weights.append(max(1, self.symbols - before))
                pos = self.space(pos + 1, nested)
            elif c == ".":
                items.append(ANY)
                weights.append(1)
                pos = self.space(pos + 1, nested)
            elif c in "*+?{":
                if not items:
                    raise self.error(pos, f"'{c}' needs an item before it to repeat")
                if c == "{":
                    lo, hi, pos = self.counts(pos)
                    pos = self.space(pos, nested)
                else:
                    lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
                    pos = self.space(pos + 1, nested)
                total = hi if hi is not None and hi > 0 else lo if lo > 0 else 1
                if weights[-1] * total >= MAX_REPETITION:
                    raise self.error(
                        start,
                        f"this repetition would expand into more than {MAX_REPETITION} rules (llama.cpp's "
                        "limit on nested or counted repetitions): reduce the counts",
                    )
                self.symbols += 1 if hi is None else hi - lo
                items[-1] = Repeat(items[-1], lo, hi)
                weights[-1] *= total
            else:
                break
        return (items[0] if len(items) == 1 else Seq(tuple(items))), pos

    def counts(self, pos: int) -> tuple[int, int | None, int]:
        start = pos
        pos = self.space(pos + 1, False)
        lo_end = pos
        while lo_end < len(self.text) and self.text[lo_end].isdigit() and self.text[lo_end].isascii():
            lo_end += 1
        if lo_end == pos:
            raise self.error(pos, "expecting a number after '{'")
        lo = int(self.text[pos:lo_end])
        pos = self.space(lo_end, False)
        hi: int | None
        if self.peek(pos) == "}":
            hi = lo
        elif self.peek(pos) == ",":
            pos = self.space(pos + 1, False)
            hi_end = pos
            while hi_end < len(self.text) and self.text[hi_end].isdigit() and self.text[hi_end].isascii():
                hi_end += 1
            hi = int(self.text[pos:hi_end]) if hi_end > pos else None
            pos = self.space(hi_end, False)
            if self.peek(pos) != "}":
                raise self.error(pos, "expecting '}' to close the repetition")
        else:
            raise self.error(pos, "expecting ',' or '}' in the repetition")
        if lo > MAX_REPETITION:
            raise self.error(start, f"a repetition minimum above {MAX_REPETITION} (llama.cpp's limit)")
        if hi is not None and hi > MAX_REPETITION:
            hi = None  # llama.cpp reads a maximum past its limit as no maximum
        if hi is not None and hi < lo:
            raise self.error(start, f"the repetition {{{lo},{hi}}} has its maximum below its minimum")
        return lo, hi, pos + 1

    def char_class(self, pos: int) -> tuple[Chars, int]:
        start = pos
        pos += 1
        negated = self.peek(pos) == "^"
        if negated:
            pos += 1
        ranges: list[tuple[int, int]] = []
        while self.peek(pos) != "]":
            if not self.peek(pos):
                raise self.error(start, "unterminated character class")
            lo, pos = self.char(pos, "a character class")
            hi = lo
            if self.peek(pos) == "-" and self.peek(pos, 1) != "]":
                if not self.peek(pos, 1):
                    raise self.error(start, "unterminated character class")
                hi, pos = self.char(pos + 1, "a character class")
                if hi < lo:
                    raise self.error(start, f"the range U+{lo:04X}-U+{hi:04X} is reversed (matches nothing)")
            ranges.append((lo, hi))
        if not ranges:
            raise self.error(start, "an empty character class matches nothing")
        return Chars(tuple(ranges), negated), pos + 1


def parse_gbnf(text: str) -> GBNFGrammar:
    """Parse and check a GBNF grammar as llama.cpp does; raises :class:`GrammarError` with the place."""
    if not isinstance(text, str):
        raise GrammarError(f"a GBNF grammar must be a str, got {type(text).__name__}")
    grammar = _Parser(text).parse()
    for name, body in grammar.rules.items():
        for ref in _refs(body):
            if ref.name not in grammar.rules:
                raise GrammarError(
                    f"GBNF rule {name!r} uses the undefined rule {ref.name!r} "
                    f"(line {ref.line}, column {ref.column})"
                )
    if START not in grammar.rules:
        raise GrammarError("the GBNF grammar has no 'root' rule (generation starts from root)")
    _check_left_recursion(grammar)
    return grammar


def _refs(node: Node):
    if isinstance(node, Ref):
        yield node
    elif isinstance(node, Seq):
        for item in node.items:
            yield from _refs(item)
    elif isinstance(node, Alt):
        for option in node.options:
            yield from _refs(option)
    elif isinstance(node, Repeat):
        yield from _refs(node.item)


def _check_left_recursion(grammar: GBNFGrammar) -> None:
    """Refuse what llama.cpp refuses: a rule reachable from its own start, through rules that
    begin with it or begin with rules that have an empty alternative (llama.cpp's own check,
    over the rules it writes for groups and repetitions)."""
    rules = _llama_rules(grammar)
    may_be_empty: dict[object, bool] = {}
    in_progress: set[object] = set()
    visited: set[object] = set()
    culprit: list[object] = []

    def detect(key) -> bool:
        if key in in_progress:
            culprit.append(key)
            return True
        in_progress.add(key)
        alternatives = rules[key]
        may_be_empty[key] = any(not alt for alt in alternatives)
        for alt in alternatives:
            for sym in alt:
                if sym is None:  # a character
                    break
                if detect(sym):
                    return True
                if not may_be_empty.get(sym, False):
                    break
        in_progress.discard(key)
        visited.add(key)
        return False

    for key in list(rules):
        if key not in visited and detect(key):
            found = culprit[0]  # a rule name, or a (rule, ...) key of a rule llama.cpp writes
            name = found if isinstance(found, str) else found[0] if isinstance(found, tuple) else str(found)
            raise GrammarError(
                f"GBNF rule {name!r} is left-recursive (it can start with itself), which llama.cpp refuses: "
                "rewrite it with repetition, e.g. 'list ::= item (\",\" item)*'"
            )


def _llama_rules(grammar: GBNFGrammar) -> dict[object, list[list[object]]]:
    """The rules llama.cpp's parser writes: alternatives of symbols, a symbol being a rule key or
    None for a character; groups and repetitions get rules of their own."""
    rules: dict[object, list[list[object]]] = {}
    counter = [0]

    def fresh(base: str) -> tuple[str, int]:
        counter[0] += 1
        return (base, counter[0])

    def seq_syms(node: Node, base: str) -> list[object]:
        if isinstance(node, Seq):
            out: list[object] = []
            for item in node.items:
                out.extend(item_syms(item, base))
            return out
        return item_syms(node, base)

    def item_syms(node: Node, base: str) -> list[object]:
        if isinstance(node, Literal):
            return [None] * len(node.text)
        if isinstance(node, Chars):
            return [None]
        if isinstance(node, Ref):
            return [node.name]
        if isinstance(node, Alt):
            key = fresh(base)
            rules[key] = [seq_syms(o, base) for o in node.options]
            return [key]
        if isinstance(node, Seq):
            return seq_syms(node, base)
        assert isinstance(node, Repeat)
        prev = item_syms(node.item, base)
        out = prev * node.lo
        last = None
        for i in range(1 if node.hi is None else node.hi - node.lo):
            key = fresh(base)
            if node.hi is None:
                rules[key] = [[*prev, key], []]
            else:
                rules[key] = [prev + ([last] if i > 0 else []), []]
            last = key
        if last is not None:
            out.append(last)
        return out

    for name, body in grammar.rules.items():
        rules[name] = [seq_syms(o, name) for o in body.options]
    return rules
