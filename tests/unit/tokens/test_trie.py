"""TokenTrie: the prefix tree of a vocabulary, and walks that must equal running every token
through the automaton one by one (on random tables, small vocabularies and the 32k SPM one)."""

from __future__ import annotations

import bisect
from unittest import mock

import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import given, settings
from hypothesis import strategies as st
from token_oracles import alive_tokens, random_table, vocabularies

from outlines_gguf.automata.dfa import group_columns
from outlines_gguf.compiler import compile_regex
from outlines_gguf.tokens import trie as trie_module
from outlines_gguf.tokens.trie import Loops, TokenTrie, concat_ranges, loop_bits

SEEDS = st.integers(0, 2**32 - 1)


def paths(trie: TokenTrie) -> list[bytes]:
    """The bytes (labels) leading from the root to each node, read through ``parent``."""
    out: list[bytes] = []
    labels, parent = trie.node_byte.tolist(), trie.parent.tolist()
    for node in range(trie.n_nodes):
        chain, p = [], node
        while p >= 0:
            chain.append(labels[p])
            p = parent[p]
        out.append(bytes(reversed(chain)))
    return out


def class_sequences(tokens: list[bytes], byte_class: np.ndarray) -> list[bytes]:
    return [bytes(byte_class[b] for b in tok) for tok in tokens]


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(-50, 50), st.integers(0, 6)), max_size=20))
def test_concat_ranges_is_the_concatenation_of_ranges(pairs: list[tuple[int, int]]) -> None:
    starts = np.array([s for s, _ in pairs], dtype=np.int64)
    counts = np.array([c for _, c in pairs], dtype=np.int64)
    expected = [x for s, c in pairs for x in range(s, s + c)]
    assert concat_ranges(starts, counts).tolist() == expected


def check_prefix_tree(trie: TokenTrie, labels_of: list[bytes], excluded: np.ndarray) -> None:
    """``trie`` has one node per distinct non-empty prefix of the emittable label strings,
    numbered level by level, children contiguous, and each token at the node of its labels."""
    emittable = [i for i, t in enumerate(labels_of) if t and not excluded[i]]
    node_paths = paths(trie)
    prefixes = {labels_of[i][:k] for i in emittable for k in range(1, len(labels_of[i]) + 1)}
    assert sorted(node_paths) == sorted(prefixes) and len(set(node_paths)) == len(node_paths)
    depths = [len(p) for p in node_paths]
    assert depths == sorted(depths)  # breadth first
    starts = trie.level_start.tolist()
    assert starts == [bisect.bisect_left(depths, d) for d in range(1, len(starts) + 1)]
    assert trie.root_children == depths.count(1)
    for node in range(trie.n_nodes):
        children = [c for c in range(trie.n_nodes) if trie.parent[c] == node]
        assert children == list(range(trie.first_child[node], trie.first_child[node] + trie.n_children[node]))
        ending = trie.term_tokens[trie.term_start[node] : trie.term_start[node] + trie.term_count[node]]
        assert sorted(ending.tolist()) == [i for i in emittable if labels_of[i] == node_paths[node]]
    assert sorted(trie.term_tokens.tolist()) == emittable


@settings(max_examples=30, deadline=None)
@given(vocabularies())
def test_build_is_the_prefix_tree_of_the_emittable_tokens(vocab: tuple[list[bytes], np.ndarray]) -> None:
    tokens, special = vocab
    check_prefix_tree(TokenTrie.build(tokens, special), tokens, special)


@settings(max_examples=30, deadline=None)
@given(vocabularies(), SEEDS, st.integers(1, 4))
def test_compress_is_the_prefix_tree_of_class_sequences(
    vocab: tuple[list[bytes], np.ndarray], seed: int, n_classes: int
) -> None:
    tokens, special = vocab
    byte_class = np.random.default_rng(seed).integers(0, n_classes, 256).astype(np.uint8)
    trie = TokenTrie.build(tokens, special)
    check_prefix_tree(trie.compress(byte_class), class_sequences(tokens, byte_class), special)


@pytest.mark.parametrize("level_by_level", [False, True], ids=["narrow", "levels"])
@settings(max_examples=40, deadline=None)
@given(vocab=vocabularies(), seed=SEEDS, n_states=st.integers(1, 5), data=st.data())
def test_walk_equals_running_each_token(
    level_by_level: bool, vocab: tuple[list[bytes], np.ndarray], seed: int, n_states: int, data: st.DataObject
) -> None:
    """Both walk strategies (node by node below thin levels, numpy level by level) give the oracle's
    tokens, each once; ``first_bytes`` keeps just those that start with one of them."""
    tokens, special = vocab
    table = random_table(seed, n_states, dead=data.draw(st.sampled_from([0.0, 0.3, 0.7])))
    state = data.draw(st.integers(0, n_states - 1))
    trie = TokenTrie.build(tokens, special)
    expected = alive_tokens(table, state, tokens, special)
    with mock.patch.object(trie_module, "_NARROW", 0 if level_by_level else trie_module._NARROW):
        assert sorted(trie.walk(table, state).tolist()) == expected
        first = np.array(sorted(data.draw(st.sets(st.sampled_from(list(b'ab"\xc3\xe4'))))), dtype=np.uint8)
        starting = [i for i in expected if tokens[i][0] in first]
        assert sorted(trie.walk(table, state, first).tolist()) == starting


@pytest.mark.parametrize("level_by_level", [False, True], ids=["narrow", "levels"])
@settings(max_examples=30, deadline=None)
@given(vocab=vocabularies(), seed=SEEDS, n_states=st.integers(1, 4), n_classes=st.integers(1, 5))
def test_compressed_walk_equals_byte_walk(
    level_by_level: bool, vocab: tuple[list[bytes], np.ndarray], seed: int, n_states: int, n_classes: int
) -> None:
    """A class-level table on the compressed trie accepts exactly the tokens its byte-level
    expansion accepts on the byte trie."""
    tokens, special = vocab
    rng = np.random.default_rng(seed)
    byte_class = rng.integers(0, n_classes, 256).astype(np.uint8)
    class_table = random_table(seed + 1, n_states, n_labels=int(byte_class.max()) + 1)
    byte_table = class_table[:, byte_class]
    trie = TokenTrie.build(tokens, special)
    small = trie.compress(byte_class)
    assert small.n_nodes <= trie.n_nodes
    with mock.patch.object(trie_module, "_NARROW", 0 if level_by_level else trie_module._NARROW):
        for state in range(n_states):
            expected = alive_tokens(byte_table, state, tokens, special)
            assert sorted(small.walk(class_table, state).tolist()) == expected
            assert sorted(trie.walk(byte_table, state).tolist()) == expected


@settings(max_examples=25, deadline=None)
@given(vocabularies(), SEEDS, st.integers(1, 4))
def test_step_advances_one_level(vocab: tuple[list[bytes], np.ndarray], seed: int, n_states: int) -> None:
    """``step`` reports the tokens ending at the given nodes and hands each child its parent's state."""
    tokens, special = vocab
    trie = TokenTrie.build(tokens, special)
    node_paths = paths(trie)
    nodes = np.arange(trie.root_children)
    states = np.random.default_rng(seed).integers(0, n_states, nodes.size)
    found: list[np.ndarray] = []
    children, parents = trie.step(nodes, states, found)
    ended = sorted(np.concatenate(found).tolist()) if found else []
    assert ended == [i for i, t in enumerate(tokens) if len(t) == 1 and not special[i]]
    expected = [(c, states[trie.parent[c]]) for c in range(trie.n_nodes) if len(node_paths[c]) == 2]
    if children is None:
        assert not expected
    else:
        assert list(zip(children.tolist(), parents.tolist(), strict=True)) == expected


@settings(max_examples=20, deadline=None)
@given(vocabularies())
def test_prepare_walks_builds_the_subtree_sizes(vocab: tuple[list[bytes], np.ndarray]) -> None:
    tokens, special = vocab
    trie = TokenTrie.build(tokens, special)
    trie.prepare_walks()
    assert {"_subtree_size", "_lists"} <= set(vars(trie))
    node_paths = paths(trie)
    for node, path in enumerate(node_paths):
        assert trie._subtree_size[node] == sum(p.startswith(path) for p in node_paths)


def test_empty_trie() -> None:
    """No emittable token (only empty and special ones): walks find nothing, compressing works."""
    trie = TokenTrie.build([b"", b"x", b""], np.array([False, True, True]))
    assert trie.n_nodes == 0
    table = np.zeros((1, 256), dtype=np.int32)
    assert trie.walk(table, 0).size == 0
    small = trie.compress(np.zeros(256, dtype=np.uint8))
    assert small.n_nodes == 0 and small.walk(table[:, :1], 0).size == 0


# -- one real vocabulary --------------------------------------------------------------------

REGEXES = [
    r"[a-z]+",
    r" ?[A-Za-z]+(?: [A-Za-z]+)*",
    r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt])*"',
    r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?",
    r"(?s).*",
    r"[^a-z]{2,5}",
    r"(?:中文|日本語|é+)\n",
]


@pytest.mark.parametrize("pattern", REGEXES)
def test_real_vocabulary_walks_equal_the_oracle(pattern: str) -> None:
    """On the 32k SPM vocabulary, from a few states of each regex DFA: the byte walk and the walk
    of the trie compressed to the DFA's byte classes give exactly the oracle's tokens."""
    vocab = load_vocab("spm32k")
    tokens, special = vocab.tokens, vocab.is_special
    dfa = compile_regex(pattern)
    first, byte_class = group_columns(dfa.transitions)
    small = vocab.trie.compress(byte_class.astype(np.uint8))
    class_table = dfa.transitions[:, first]
    for state in sorted({0, dfa.n_states // 2, dfa.n_states - 1}):
        expected = alive_tokens(dfa.transitions, state, tokens, special)
        assert sorted(vocab.trie.walk(dfa.transitions, state).tolist()) == expected, state
        assert sorted(small.walk(class_table, state).tolist()) == expected, state


@pytest.mark.parametrize("dead", [0.05, 0.5, 0.95])
def test_real_vocabulary_random_tables(dead: float) -> None:
    """Dense and sparse random tables exercise both the level-by-level and the narrow walk."""
    vocab = load_vocab("spm32k")
    table = random_table(int(dead * 100), 6, dead=dead)
    for state in (0, 5):
        expected = alive_tokens(table, state, vocab.tokens, vocab.is_special)
        assert sorted(vocab.trie.walk(table, state).tolist()) == expected


@settings(max_examples=60, deadline=None)
@given(vocab=vocabularies(), seed=SEEDS, n_states=st.integers(1, 4), loop=st.sampled_from([0.5, 0.9, 1.0]))
def test_walk_taking_looping_subtrees_whole_equals_running_each_token(
    vocab: tuple[list[bytes], np.ndarray], seed: int, n_states: int, loop: float
) -> None:
    """With ``loops``, a subtree whose bytes all lead back to the state it is reached in is taken
    whole (a slice of the tokens in byte order): the same tokens as the oracle, each once."""
    tokens, special = vocab
    rng = np.random.default_rng(seed)
    table = random_table(seed, n_states, dead=0.2)
    for s in range(n_states):
        table[s, rng.random(256) < loop] = s
    trie = TokenTrie.build(tokens, special)
    with mock.patch.object(trie_module, "_NARROW", 0):
        for state in range(n_states):
            got = trie.walk(table, state, loops=Loops(loop_bits(table)))
            assert sorted(got.tolist()) == alive_tokens(table, state, tokens, special)


@settings(max_examples=40, deadline=None)
@given(vocab=vocabularies(), seed=SEEDS, n_classes=st.integers(1, 5), n_states=st.integers(1, 4))
def test_compressed_trie_slices_subtrees_and_takes_looping_ones_whole(
    vocab: tuple[list[bytes], np.ndarray], seed: int, n_classes: int, n_states: int
) -> None:
    """A compressed trie orders its tokens depth first: each node's slice of ``sorted_ids`` is
    exactly the tokens whose class sequence starts with the node's; and a class-level walk that
    takes looping subtrees whole gives the tokens of the byte-level oracle, each once."""
    tokens, special = vocab
    rng = np.random.default_rng(seed)
    byte_class = rng.integers(0, n_classes, 256).astype(np.uint8)
    small = TokenTrie.build(tokens, special).compress(byte_class)
    assert small.sorted_ids is not None and small.node_row is not None
    sequences = class_sequences(tokens, byte_class)
    emittable = [i for i, t in enumerate(tokens) if t and not special[i]]
    for node, prefix in enumerate(paths(small)):
        start, count = int(small.node_row[node]), int(small._subtree_tokens[node])
        below = sorted(small.sorted_ids[start : start + count].tolist())
        assert below == sorted(i for i in emittable if sequences[i].startswith(prefix)), prefix
    class_table = random_table(seed + 1, n_states, n_labels=int(byte_class.max()) + 1, dead=0.2)
    for s in range(n_states):
        class_table[s, rng.random(class_table.shape[1]) < 0.8] = s
    byte_table = class_table[:, byte_class]
    with mock.patch.object(trie_module, "_NARROW", 0):
        for state in range(n_states):
            got = small.walk(class_table, state, loops=Loops(loop_bits(class_table)))
            assert sorted(got.tolist()) == alive_tokens(byte_table, state, tokens, special)


SEARCH_REGEXES = [
    r'"(?:[^"\\\x00-\x1f]|\\.)*"',
    r"(?s).*[0-9]{4}-[0-9]{2}.*",
    r"[^0-9]*(?:[0-9][^0-9]*){0,3}",
    r"(?:[a-zé]|日本)*x?",
    r"[^\x80-\xff]*",
]


@pytest.mark.parametrize("level_by_level", [False, True], ids=["narrow", "levels"])
@pytest.mark.parametrize("pattern", SEARCH_REGEXES)
def test_regex_guide_walks_with_whole_subtrees_equal_the_oracle(pattern: str, level_by_level: bool) -> None:
    """On the 32k SPM vocabulary, the regex guide's walks, which take subtrees of plain text
    whole in states that every character leads back to (``RegexGuide._loops``), give exactly
    the oracle's tokens from every state."""
    from outlines_gguf.guides.base import RegexGuide

    vocab = load_vocab("spm32k")
    dfa = compile_regex(pattern)
    guide = RegexGuide(dfa, vocab)
    loops = guide._loops
    if pattern in SEARCH_REGEXES[:2]:  # the multi-byte side of the shortcut is exercised
        assert loops.chars is not None and loops.chars.any()
    with mock.patch.object(trie_module, "_NARROW", 0 if level_by_level else trie_module._NARROW):
        for state in range(dfa.n_states):
            expected = alive_tokens(dfa.transitions, state, vocab.tokens, vocab.is_special)
            got = vocab.trie.walk(dfa.transitions, state, loops=loops)
            assert sorted(got.tolist()) == expected, state


def test_whole_subtrees_need_plain_text_below() -> None:
    """Byte-level vocabularies hold tokens that are not text (a stray continuation byte after a
    letter, a lone lead byte mid-token): in a JSON string every character leads back to the
    state, but such a subtree is walked, not taken whole."""
    from outlines_gguf import Vocabulary
    from outlines_gguf.guides.base import RegexGuide

    letters = [bytes([c]) for c in b"abcxyz"]
    odd = [b"a\x80", b"ab\xc3", b"a\xc3\xa9b", b"b\xff", b"x\xe6\x97\xa5", b"x\xe6\x97", b"y\xe6z"]
    odd.append(b"z\xc3\xa9\x80")
    fill = [a + b + c for a in letters for b in letters for c in letters]  # a dense level to walk
    tokens = [b"<eos>", *letters, *odd, *fill]
    vocab = Vocabulary(tokens, eog_ids=[0], special_ids=[0])
    dfa = compile_regex(r'"(?:[^"\\\x00-\x1f]|\\.)*"')
    guide = RegexGuide(dfa, vocab)
    inside = int(dfa.transitions[0, ord('"')])
    with mock.patch.object(trie_module, "_NARROW", 0):
        got = sorted(vocab.trie.walk(dfa.transitions, inside, loops=guide._loops).tolist())
    assert got == alive_tokens(dfa.transitions, inside, vocab.tokens, vocab.is_special)
    assert tokens.index(b"a\x80") not in got and tokens.index(b"x\xe6\x97") in got
