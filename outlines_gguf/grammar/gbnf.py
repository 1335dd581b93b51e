"""llama.cpp's GBNF grammars: parsed, checked like llama.cpp, and converted to Lark.

GBNF (``grammars/README.md`` and ``llama-grammar.cpp`` in llama.cpp) is a
scannerless, character-level context-free grammar: rules ``name ::= ...``,
``|``, groups, ``* + ?``, ``{m}``, ``{m,}``, ``{m,n}``, string literals and
character classes with escapes, ``.`` (any character), ``#`` comments, and
``root`` as the start rule. :func:`parse_gbnf` reads it into a small AST
with the same syntax rules as llama.cpp's parser (where a rule may span lines,
which escapes exist, what a name is) and refuses what llama.cpp refuses
(undefined rules, no ``root``, left recursion, repetition past its limits),
with errors that name the line and column.

:func:`gbnf_to_lark` writes the same language as a Lark grammar for our
LALR engine (:mod:`~outlines_gguf.grammar.compiled`), whose lexer is not scannerless.
Every rule that reaches no recursion is regular: it is inlined into one
regex terminal; each run of regular items inside a recursive rule becomes
one terminal too, so the parser only sees the few tokens where recursion
happens (``{ws`` ... ``}ws``, ``"..."ws``). :func:`lexer_conflicts` then
proves that lark's longest-match lexer splits every text exactly where the
grammar does; grammars where it cannot (a terminal that can run on into
what follows it, two terminals that match the same text) need the general
CFG engine, and :func:`compile_gbnf` says so.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from outlines_gguf.errors import GrammarError

if TYPE_CHECKING:
    from outlines_gguf.grammar.compiled import Grammar
    from outlines_gguf.grammar.general import GeneralGrammar

logger = logging.getLogger("outlines_gguf")

START = "root"
"""The start rule of every GBNF grammar (and of its Lark conversion)."""

MAX_REPETITION = 2000
"""llama.cpp's MAX_REPETITION_THRESHOLD: a larger minimum is refused, a larger maximum means no maximum,
and nested repetitions whose expansion would make this many rules are refused."""

_GBNF_RULE = re.compile(r"^[ \t]*[a-zA-Z0-9-]+[ \t]*::=", re.MULTILINE)


def is_gbnf(text: str) -> bool:
    """Whether ``text`` is a GBNF grammar (a line starting ``name ::=``) rather than a Lark one."""
    return isinstance(text, str) and _GBNF_RULE.search(text) is not None


# -- AST ------------------------------------------------------------------------------------


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


# -- parser ---------------------------------------------------------------------------------


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
            name = culprit[0] if isinstance(culprit[0], str) else culprit[0][0]  # type: ignore[index]
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


# -- analysis -------------------------------------------------------------------------------


class _Analysis:
    """Which rules are regular (reach no recursion), which nodes are nullable."""

    def __init__(self, grammar: GBNFGrammar) -> None:
        self.grammar = grammar
        rules = grammar.rules
        edges = {name: {r.name for r in _refs(body)} for name, body in rules.items()}
        cyclic = _cyclic_rules(edges)
        self.regular_rule: dict[str, bool] = {}

        def regular(name: str) -> bool:
            found = self.regular_rule.get(name)
            if found is None:
                found = name not in cyclic and all(regular(n) for n in edges[name])
                self.regular_rule[name] = found
            return found

        for name in rules:
            regular(name)
        self.nullable_rule: dict[str, bool] = dict.fromkeys(rules, False)
        changed = True
        while changed:
            changed = False
            for name, body in rules.items():
                if not self.nullable_rule[name] and self.nullable(body):
                    self.nullable_rule[name] = changed = True

    def regular(self, node: Node) -> bool:
        return all(self.regular_rule[r.name] for r in _refs(node))

    def nullable(self, node: Node) -> bool:
        if isinstance(node, Chars):
            return False
        if isinstance(node, Literal):
            return node.text == ""
        if isinstance(node, Ref):
            return self.nullable_rule[node.name]
        if isinstance(node, Seq):
            return all(self.nullable(i) for i in node.items)
        if isinstance(node, Alt):
            return any(self.nullable(o) for o in node.options)
        return node.lo == 0 or self.nullable(node.item)

    def nonempty(self, node: Node) -> Node | None:
        """A regular node for the same language without the empty string (None: nothing is left)."""
        if not self.nullable(node):
            return node
        if isinstance(node, Literal):
            return None
        if isinstance(node, Ref):
            return self.nonempty(self.grammar.rules[node.name])
        if isinstance(node, Alt):
            options = [o for o in (self.nonempty(o) for o in node.options) if o is not None]
            return Alt(tuple(options)) if options else None
        if isinstance(node, Seq):  # every item is nullable: the first non-empty item decides
            items = node.items
            options = []
            for i, item in enumerate(items):
                head = self.nonempty(item)
                if head is not None:
                    options.append(Seq((head, *items[i + 1 :])) if i + 1 < len(items) else head)
            return Alt(tuple(options)) if options else None
        assert isinstance(node, Repeat)
        if node.hi == 0:
            return None
        inner = self.nonempty(node.item)
        return None if inner is None else Repeat(inner, 1, node.hi)


def _cyclic_rules(edges: dict[str, set[str]]) -> set[str]:
    """Rules on a cycle of references (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cyclic: set[str] = set()
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    cyclic.update(component)
    return cyclic


# -- regex and Lark output ------------------------------------------------------------------


def _re_char(cp: int) -> str:
    """One code point for a regex inside a Lark ``/.../`` literal. lark turns ``\\xhh`` escapes into the
    characters before compiling, so ASCII punctuation is escaped with a backslash instead."""
    if cp < 0x80 and chr(cp).isalnum():
        return chr(cp)
    if 0x21 <= cp <= 0x7E:
        return "\\" + chr(cp)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _re_class(chars: Chars) -> str:
    if chars == ANY:
        return "[\\x00-\\U0010ffff]"
    body = "".join(_re_char(lo) if lo == hi else f"{_re_char(lo)}-{_re_char(hi)}" for lo, hi in chars.ranges)
    return f"[{'^' if chars.negated else ''}{body}]"


class _RegexWriter:
    """Regular nodes as Python regexes (rules inlined), with no '/' and no newline in the text."""

    def __init__(self, grammar: GBNFGrammar) -> None:
        self.grammar = grammar
        self._memo: dict[str, tuple[str, int]] = {}

    # precedence: 0 alternation, 1 concatenation, 2 atom
    def write(self, node: Node) -> tuple[str, int]:
        if isinstance(node, Chars):
            return _re_class(node), 2
        if isinstance(node, Literal):
            text = "".join(_re_char(ord(c)) for c in node.text)
            return text, (2 if len(node.text) == 1 else 1)
        if isinstance(node, Ref):
            found = self._memo.get(node.name)
            if found is None:
                found = self._memo[node.name] = self.write(self.grammar.rules[node.name])
            return found
        if isinstance(node, Seq):
            parts = [self.wrap(*self.write(i), 1) for i in node.items]
            parts = [p for p in parts if p]
            return "".join(parts), (2 if len(parts) == 1 and len(node.items) == 1 else 1)
        if isinstance(node, Alt):
            options = [self.write(o)[0] for o in node.options]
            if len(options) == 1:
                return self.write(node.options[0])
            nonempty = list(dict.fromkeys(o for o in options if o))
            text = "|".join(nonempty)
            if "" in options:  # an empty option
                return (f"(?:{text})?" if text else ""), 1
            return text, 0
        assert isinstance(node, Repeat)
        inner = self.wrap(*self.write(node.item), 2)
        if not inner:
            return "", 2
        lo, hi = node.lo, node.hi
        if hi is None:
            suffix = "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
        elif lo == 0 and hi == 1:
            suffix = "?"
        else:
            suffix = f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"
        return inner + suffix, 1  # quantified again, it needs a group ('a**' is not a regex)

    @staticmethod
    def wrap(text: str, precedence: int, needed: int) -> str:
        return text if precedence >= needed or not text else f"(?:{text})"

    def regex(self, node: Node) -> str:
        return self.write(node)[0]


class _LarkWriter:
    def __init__(self, grammar: GBNFGrammar) -> None:
        self.grammar = grammar
        self.analysis = _Analysis(grammar)
        self.regexes = _RegexWriter(grammar)
        self.terminals: dict[str, str] = {}  # regex -> name
        self.rule_names: dict[str, str] = {}
        taken: set[str] = set()
        for name in grammar.rules:
            base = re.sub(r"[^a-z0-9_]", "_", name.lower())
            if not base[0].isalpha():
                base = "r_" + base
            candidate, k = base, 2
            while candidate in taken:
                candidate, k = f"{base}_{k}", k + 1
            taken.add(candidate)
            self.rule_names[name] = candidate
        self.rule_names[START] = START

    def terminal(self, node: Node, hint: str) -> str:
        """The terminal for a regular ``node`` ('' if it only matches the empty text; 'T?' if nullable)."""
        optional = self.analysis.nullable(node)
        body = self.analysis.nonempty(node) if optional else node
        if body is None:
            return ""
        regex = self.regexes.regex(body)
        name = self.terminals.get(regex)
        if name is None:
            base = re.sub(r"[^A-Z0-9_]", "_", hint.upper()) or "T"
            if not base[0].isalpha():
                base = "T_" + base
            name, k = base, 2
            used = set(self.terminals.values())
            while name in used:
                name, k = f"{base}_{k}", k + 1
            self.terminals[regex] = name
        return f"{name}?" if optional else name

    def expansion(self, node: Node, rule: str) -> str:
        """Lark text for a node that reaches recursion (regular runs become terminals)."""
        if self.analysis.regular(node):
            hint = node.name if isinstance(node, Ref) else f"{rule}_{len(self.terminals)}"
            return self.terminal(node, hint)
        if isinstance(node, Ref):
            return self.rule_names[node.name]
        if isinstance(node, Seq):
            parts: list[str] = []
            run: list[Node] = []

            def flush() -> None:
                if run:
                    single = run[0] if len(run) == 1 else Seq(tuple(run))
                    parts.append(self.expansion(single, rule))
                    run.clear()

            for item in node.items:
                if self.analysis.regular(item):
                    run.append(item)
                else:
                    flush()
                    parts.append(self.expansion(item, rule))
            flush()
            return " ".join(p for p in parts if p)
        if isinstance(node, Alt):
            return self.alternatives(node, rule, group=True)
        assert isinstance(node, Repeat)
        inner = self.expansion(node.item, rule)
        base = f"({inner})"
        lo, hi = node.lo, node.hi
        if hi is None:
            if lo <= 1:
                return base + ("*" if lo == 0 else "+")
            return f"{base} ~ {lo} {base}*"
        if hi == 0:
            return ""
        if lo == 0:
            return f"{base}?" if hi == 1 else f"({base} ~ 1..{hi})?"
        return f"{base} ~ {lo}" if lo == hi else f"{base} ~ {lo}..{hi}"

    def alternatives(self, node: Alt, rule: str, group: bool) -> str:
        options = [self.expansion(o, rule) for o in node.options]
        nonempty = list(dict.fromkeys(o for o in options if o))
        if group:
            text = " | ".join(nonempty)
            if "" in options:
                return f"({text})?" if text else ""
            return f"({text})" if len(nonempty) > 1 else text
        lines = list(nonempty)
        if "" in options:
            lines.append("")
        return "\n    | ".join(lines)

    def write(self) -> str:
        reachable = _reachable(self.grammar)
        out: list[str] = []
        root = self.grammar.rules[START]
        if self.analysis.regular_rule[START]:
            out.append(f"{START}: {self.terminal(root, START)}")
        for name, body in self.grammar.rules.items():
            if name not in reachable or self.analysis.regular_rule[name]:
                continue
            out.append(f"{self.rule_names[name]}: {self.alternatives(body, name, group=False)}")
        for regex, name in self.terminals.items():
            out.append(f"{name}: /{regex}/")
        return "\n".join(out) + "\n"


def _reachable(grammar: GBNFGrammar) -> set[str]:
    seen = {START}
    todo = [START]
    while todo:
        for ref in _refs(grammar.rules[todo.pop()]):
            if ref.name not in seen:
                seen.add(ref.name)
                todo.append(ref.name)
    return seen


def gbnf_to_lark(text: str | GBNFGrammar) -> str:
    """The Lark grammar (start rule ``root``) for the same language as the GBNF ``text``.

    Regular rules and runs of regular items become single regex terminals,
    so the lexer sees few, long terminals. Raises :class:`GrammarError` for
    GBNF that llama.cpp would refuse (with the line and column).
    """
    grammar = text if isinstance(text, GBNFGrammar) else parse_gbnf(text)
    return _LarkWriter(grammar).write()


# -- compiling ------------------------------------------------------------------------------


def build_gbnf(text: str) -> Grammar | GeneralGrammar:
    """Compile a GBNF grammar for the byte-level CFG engine (uncached: ``compiler.compile_gbnf``
    caches): an :class:`~outlines_gguf.grammar.exact.ExactLexerGrammar` (the LALR engine, each
    lexer running only the terminals its parser stack accepts) when its Lark form can be lexed
    exactly so, else the general mode with every lexing, which is GBNF's own (scannerless)
    meaning. Raises :class:`GrammarError` for invalid GBNF.
    """
    from lark.exceptions import GrammarError as LarkGrammarError

    from outlines_gguf.grammar.compiled import build_grammar
    from outlines_gguf.grammar.exact import compile_exact_grammar, lexer_conflicts

    lark_text = gbnf_to_lark(text)
    try:
        grammar = compile_exact_grammar(lark_text, start=START)
    except GrammarError as exc:
        if not isinstance(exc.__cause__, LarkGrammarError) or "Reduce/Reduce" not in str(exc):
            raise
        problems = [str(exc)]
    else:
        problems = lexer_conflicts(grammar)
        if not problems:
            return grammar
    logger.info("outlines-gguf: GBNF grammar in the general mode: %s", "; ".join(problems[:3]))
    return build_grammar(lark_text, START, "dynamic")
