"""An independent GBNF recognizer: Earley over the parsed AST, one code point at a time.

It shares only the parser (:func:`outlines_gguf.grammar.gbnf_parse.parse_gbnf`) with the code under test;
the Lark conversion, the regexes and the LALR engine play no part. Groups and repetitions
become plain BNF rules here, as in llama.cpp.
"""

from __future__ import annotations

import random

from outlines_gguf.grammar.gbnf_parse import (
    Alt,
    Chars,
    GBNFGrammar,
    Literal,
    Node,
    Ref,
    Repeat,
    Seq,
    parse_gbnf,
)

Symbol = str | Chars  # a rule name, or one character


class Recognizer:
    def __init__(self, grammar: GBNFGrammar | str) -> None:
        if isinstance(grammar, str):
            grammar = parse_gbnf(grammar)
        self.rules: dict[str, list[tuple[Symbol, ...]]] = {}
        self._n = 0
        for name, body in grammar.rules.items():
            self.rules[name] = [self._seq(o) for o in body.options]
        self.nullable: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, alts in self.rules.items():
                if name not in self.nullable and any(
                    all(isinstance(s, str) and s in self.nullable for s in alt) for alt in alts
                ):
                    self.nullable.add(name)
                    changed = True

    def _fresh(self, alts: list[tuple[Symbol, ...]]) -> str:
        self._n += 1
        name = f" {self._n}"  # a space: no GBNF name has one
        self.rules[name] = alts
        return name

    def _seq(self, node: Node) -> tuple[Symbol, ...]:
        if isinstance(node, Seq):
            return tuple(s for item in node.items for s in self._seq(item))
        if isinstance(node, Literal):
            return tuple(Chars(((ord(c), ord(c)),)) for c in node.text)
        if isinstance(node, Chars):
            return (node,)
        if isinstance(node, Ref):
            return (node.name,)
        if isinstance(node, Alt):
            return (self._fresh([self._seq(o) for o in node.options]),)
        assert isinstance(node, Repeat)
        item = self._seq(node.item)
        out = item * node.lo
        if node.hi is None:
            star = self._fresh([])
            self.rules[star] = [(*item, star), ()]
            return (*out, star)
        tail: tuple[Symbol, ...] = ()
        for _ in range(node.hi - node.lo):  # x{0,k} = (x (x{0,k-1}))?
            tail = (self._fresh([(*item, *tail), ()]),)
        return (*out, *tail)

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is a sentence of the grammar (from ``root``)."""
        rules, nullable = self.rules, self.nullable
        sets: list[dict[tuple, None]] = [{}]

        def add(k: int, item: tuple) -> None:
            if item not in sets[k]:
                sets[k][item] = None

        for i in range(len(rules["root"])):
            add(0, ("root", i, 0, 0))
        for k in range(len(text) + 1):
            if k > 0:
                sets.append({})
                cp = ord(text[k - 1])
                for name, alt, dot, origin in sets[k - 1]:
                    symbols = rules[name][alt]
                    if dot < len(symbols) and isinstance(symbols[dot], Chars) and symbols[dot].matches(cp):
                        add(k, (name, alt, dot + 1, origin))
            agenda = list(sets[k])
            done = 0
            while done < len(agenda):
                name, alt, dot, origin = agenda[done]
                done += 1
                symbols = rules[name][alt]
                new: list[tuple] = []
                if dot < len(symbols):
                    sym = symbols[dot]
                    if isinstance(sym, str):
                        new.extend((sym, i, 0, k) for i in range(len(rules[sym])))
                        if sym in nullable:
                            new.append((name, alt, dot + 1, origin))
                else:
                    for pname, palt, pdot, porigin in list(sets[origin]):
                        psyms = rules[pname][palt]
                        if pdot < len(psyms) and psyms[pdot] == name:
                            new.append((pname, palt, pdot + 1, porigin))
                for item in new:
                    if item not in sets[k]:
                        sets[k][item] = None
                        agenda.append(item)
            if not sets[k]:
                return False
        return any(
            name == "root" and dot == len(rules[name][alt]) and origin == 0
            for name, alt, dot, origin in sets[len(text)]
        )

    # -- sampling -------------------------------------------------------------------------------

    def _heights(self) -> dict[str, int]:
        """The least derivation height of each rule (to finish a sample quickly)."""
        height: dict[str, int] = {}
        changed = True
        while changed:
            changed = False
            for name, alts in self.rules.items():
                for alt in alts:
                    subs = [height.get(s) if isinstance(s, str) else 0 for s in alt]
                    if all(h is not None for h in subs):
                        h = 1 + max([0, *subs])  # type: ignore[type-var]
                        if h < height.get(name, 1 << 30):
                            height[name] = h
                            changed = True
        return height

    def sample(self, rng: random.Random, depth: int = 12, alphabet: str | None = None) -> str:
        """A random sentence: random alternatives, then the shortest ones past ``depth``."""
        heights = self.__dict__.setdefault("_h", self._heights())
        out: list[str] = []

        def char(chars: Chars) -> str:
            for _ in range(50):
                pool = alphabet if alphabet and rng.random() < 0.5 else None
                if pool:
                    c = rng.choice(pool)
                elif chars.ranges and not chars.negated:
                    lo, hi = rng.choice(chars.ranges)
                    c = chr(rng.randint(lo, min(hi, lo + 200)))
                else:
                    c = chr(rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x3000)]))
                if chars.matches(ord(c)) and not 0xD800 <= ord(c) <= 0xDFFF:
                    return c
            raise ValueError("no character found")

        def expand(name: str, level: int) -> None:
            alts = self.rules[name]
            if level > depth:

                def cost(i: int) -> int:
                    return max([0, *(heights.get(s, 1 << 30) if isinstance(s, str) else 0 for s in alts[i])])

                alt = alts[min(range(len(alts)), key=cost)]
            else:
                alt = rng.choice(alts)
            for sym in alt:
                if isinstance(sym, str):
                    expand(sym, level + 1)
                else:
                    out.append(char(sym))

        expand("root", 0)
        return "".join(out)
