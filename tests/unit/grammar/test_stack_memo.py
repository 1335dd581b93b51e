"""Results shared between parser stacks by the states they read (grammar/stack_memo.py) are the
results of each stack computed on its own.

Oracle: the lexer view of a stack computed from per-stack parser runs alone (the definition,
with no sharing), and configurations advanced byte by byte through that view. Texts come
from random byte walks that nest deeply (brackets, signs, arrays in arrays), so stacks of
every depth meet stacks that agree with them only near the top.
"""

from __future__ import annotations

import numpy as np
import pytest

from outlines_gguf import CFGGuide, Grammar, grammars
from outlines_gguf.grammar.compiled import ACCEPT, END
from outlines_gguf.grammar.exact import ExactLexerGrammar
from outlines_gguf.grammar.stack_memo import StackMemo

NESTED_LIST = """
start: item
item: "[" [item ("," item)*] "]" | "-" item | NUMBER | item "+" item
NUMBER: /[0-9]+/
"""


def reference_acceptable(grammar: Grammar, stack: int) -> frozenset[str]:
    names = grammar._candidates(stack)
    return frozenset(n for n in names if n in grammar.ignore or grammar.table.run(stack, n) is not None)


def reference_view(grammar: Grammar, stack: int) -> np.ndarray:
    """The view by its definition, from this stack's own runs."""
    follow = {}
    for terminal in reference_acceptable(grammar, stack):
        after = stack if terminal in grammar.ignore else grammar.table.run(stack, terminal)
        assert after is not None
        following = reference_acceptable(grammar, after)
        first = grammar.lexer(after).view(following)[0] >= 0
        follow[terminal] = (grammar.table.run(after, END) == ACCEPT, first)
    return grammar.lexer(stack).follow_view(follow)


def reference_step(grammar: Grammar, config: tuple[int, int], byte: int) -> tuple[int, int] | None:
    return grammar.step_through(lambda stack: reference_view(grammar, stack), config, byte)


def random_stacks(grammar: Grammar, alphabet: bytes, seed: int, steps: int) -> list[tuple[int, int]]:
    """Configurations along a random byte walk (each byte drawn among those the reference allows)."""
    rng = np.random.default_rng(seed)
    config = grammar.initial_state
    for byte in alphabet[:1]:  # (the first byte opens a bracket: a walk does not stay at the top)
        config = reference_step(grammar, config, byte)
        assert config is not None
    seen = [config]
    for _ in range(steps):
        options = [b for b in alphabet if reference_step(grammar, config, b) is not None]
        if not options:
            break
        nxt = reference_step(grammar, config, int(rng.choice(options)))
        assert nxt is not None
        config = nxt
        seen.append(config)
    return seen


CASES = [
    ("arithmetic", Grammar, grammars.load("arithmetic"), b"(1+-*/) ."),
    ("json", Grammar, grammars.load("json"), b"[],1-. "),
    ("nested-list", Grammar, NESTED_LIST, b"[],-+12"),
    ("nested-list-exact", ExactLexerGrammar, NESTED_LIST, b"[],-+12"),
]


@pytest.mark.parametrize(("name", "kind", "text", "alphabet"), CASES, ids=[c[0] for c in CASES])
def test_shared_views_equal_each_stacks_own(
    name: str, kind: type[Grammar], text: str, alphabet: bytes
) -> None:
    grammar = kind(text)
    configs = [c for seed in range(4) for c in random_stacks(grammar, alphabet, seed, 160)]
    assert max(grammar.table.depth(stack) for stack, _ in configs) > 8  # deep stacks were reached
    shared = 0
    for stack, q in configs:
        view, deepest = grammar.view_read(stack)
        assert np.array_equal(view, reference_view(grammar, stack)), (name, grammar.table.states(stack))
        assert grammar.acceptable(stack) == reference_acceptable(grammar, stack)
        shared += deepest < grammar.table.depth(stack) - 1
        for byte in alphabet:  # stepping through the shared views is stepping through the definition
            assert grammar.step((stack, q), byte) == reference_step(grammar, (stack, q), byte)
    assert shared  # some results depend on the top of the stack only


def test_masks_on_deep_stacks_equal_token_by_token_check() -> None:
    """Masks on deeply nested arithmetic, computed after shallower nestings filled the shared
    results, equal advancing every token of a real vocabulary through the reference views."""
    from conftest import load_vocab

    vocab = load_vocab("spm32k")
    grammar = Grammar(grammars.load("arithmetic"))
    guide = CFGGuide(grammar, vocab)
    # deeper first: a token of closing brackets fits there and must not be shared with the shallower
    prefixes = [
        "(((((1",
        "((1",
        "(1",
        "1",
        "((-(2*(3",
        "((((((-(-(((1+2",
        "(" * 35 + "1",
        "(1+-(-",
        "-(((-(4/(((",
        # runs of signs: a walk below them reads only what follows a sign (shared with any
        # stack), while a number after them reads down through every sign, to the brackets
        "((((((-------",
        "((-------",
        "-------",
        "1*(--(-",
        "((((2+--",
        "2+--",
    ]
    for prefix in prefixes:
        assert_mask_matches_reference(grammar, guide, prefix)


def assert_mask_matches_reference(grammar: Grammar, guide: CFGGuide, prefix: str) -> None:
    """The guide's mask after ``prefix`` allows exactly the tokens whose bytes the reference
    views can step through (and end of generation where the text is complete)."""
    vocab = guide.vocabulary
    config = grammar.advance(grammar.initial_state, prefix.encode())
    assert config is not None
    allowed = np.zeros(vocab.size, dtype=bool)
    allowed[guide.mask(config).allowed_ids(vocab.size)] = True
    expected = np.zeros(vocab.size, dtype=bool)
    for tid in range(vocab.size):
        if not vocab.tokens[tid] or tid in vocab.special_ids:
            continue
        state: tuple[int, int] | None = config
        for byte in vocab.tokens[tid]:
            state = reference_step(grammar, state, byte)
            if state is None:
                break
        expected[tid] = state is not None
    expected[vocab.eog_array] = grammar.is_final(config)
    wrong = np.flatnonzero(allowed != expected)
    assert not wrong.size, (prefix, [(int(t), vocab.tokens[t], bool(allowed[t])) for t in wrong[:5]])


def test_stack_memo_shares_by_the_states_read_and_keeps_each_stack() -> None:
    below, top = [-1, 0, 1, 0, 3, 1], [7, 1, 2, 1, 2, 3]  # stacks 2 and 4 agree down to position 1
    memo = StackMemo(below, top, limit=10)
    memo.put(2, 1, "read two states")
    assert memo.get(2) == "read two states"
    assert memo.get(4) == "read two states"  # states 2, 1 on top as well
    assert memo.get(5) is None  # top state 3: never stored
    memo.put(5, 40, "read past the bottom")
    assert memo.get(5) == "read past the bottom"  # kept by id (and sharing stops at the bottom)


def test_guides_of_every_vocabulary_share_the_grammars_lock() -> None:
    """One compiled grammar serves the guides of all vocabularies, and its interned stacks and
    memos grow as masks are computed (``is_final`` too): the grammar's lock guards every use, so
    threads on guides of two vocabularies get what each gets alone."""
    import pickle
    import threading

    from conftest import load_vocab

    text = grammars.load("arithmetic")
    grammar = Grammar(text)
    vocabs = [load_vocab("spm32k"), load_vocab("llama3-128k")]
    guides = [CFGGuide(grammar, vocab) for vocab in vocabs]
    assert all(guide._lock is grammar.lock for guide in guides)
    copy = pickle.loads(pickle.dumps(guides[0]))
    assert copy._lock is copy.grammar.lock and copy.grammar is not grammar

    prefixes = ["(" * depth + "1+" for depth in range(10)] + ["-" * depth + "(2*" for depth in range(10)]
    expected = {}
    for k, vocab in enumerate(vocabs):  # each alone, on a grammar of its own
        alone = CFGGuide(Grammar(text), vocab)
        for prefix in prefixes:
            config = alone.grammar.advance(alone.grammar.initial_state, prefix.encode())
            mask = alone.mask(config)
            expected[k, prefix] = (mask.allowed_ids(vocab.size).tolist(), alone.is_final(config))
    found: dict = {}

    def run(k: int, shift: int) -> None:
        guide = guides[k]
        for prefix in prefixes[shift:] + prefixes[:shift]:
            with guide._lock:
                config = grammar.advance(grammar.initial_state, prefix.encode())
            mask = guide.mask(config)
            found[k, prefix, shift] = (mask.allowed_ids(vocabs[k].size).tolist(), guide.is_final(config))

    threads = [threading.Thread(target=run, args=(k % 2, k)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 4 * len(prefixes)
    for (k, prefix, _), result in found.items():
        assert result == expected[k, prefix], prefix
