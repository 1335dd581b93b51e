"""llama.cpp's GBNF grammars converted to Lark (parsed and checked in
:mod:`~outlines_gguf.grammar.gbnf_parse`).

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

from outlines_gguf.errors import EmptyLanguageError, GrammarError
from outlines_gguf.grammar.compiled import Grammar
from outlines_gguf.grammar.exact import compile_exact_grammar, lexer_conflicts
from outlines_gguf.grammar.gbnf_parse import (
    ANY,
    START,
    Alt,
    Chars,
    GBNFGrammar,
    Literal,
    Node,
    Ref,
    Repeat,
    Seq,
    _refs,
    parse_gbnf,
)
from outlines_gguf.grammar.general import GeneralGrammar
from outlines_gguf.grammar.modes import build_grammar

logger = logging.getLogger("outlines_gguf")







# -- AST ------------------------------------------------------------------------------------




















# -- parser ---------------------------------------------------------------------------------
















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

    lark_text = gbnf_to_lark(text)
    try:
        grammar = compile_exact_grammar(lark_text, start=START)
    except EmptyLanguageError as exc:
        # a lexer may hide every sentence (`root ::= [a] | .+ root`: the longest match of `.+`
        # always takes the final "a"); the general mode decides without one
        problems = [f"with a lexer, {exc}"]
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
