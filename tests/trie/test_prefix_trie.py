"""PrefixTrie against a brute-force reference, persistence and validation."""

from __future__ import annotations

import random
from pathlib import Path

import marisa_trie
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trie.prefix as prefix_mod
from trie import PrefixTrie
from trie.prefix import decode_key, encode_key, encode_token

EOS = 1


def reference(seqs: set[tuple[int, ...]]) -> dict[tuple[int, ...], list[int]]:
    """Every prefix of every sequence -> sorted distinct next tokens (brute force)."""
    nxt: dict[tuple[int, ...], set[int]] = {}
    for s in seqs:
        for i in range(len(s) + 1):
            nxt.setdefault(s[:i], set())
            if i < len(s):
                nxt[s[:i]].add(s[i])
    return {p: sorted(v) for p, v in nxt.items()}


def random_seqs(rng: random.Random, n: int, vocab: int, max_len: int, eos: bool = True):
    out = set()
    for _ in range(n):
        body = tuple(rng.randrange(2, vocab) for _ in range(rng.randint(0, max_len)))
        out.add(body + (EOS,) if eos else body)
    return out


def check_against_reference(t: PrefixTrie, seqs: set[tuple[int, ...]]) -> None:
    ref = reference(seqs)
    for p, children in ref.items():
        got = t.next_tokens(p)
        assert got.dtype == np.int64
        assert got.tolist() == children, p
        assert (p in t) == (p in seqs), p
    # Unknown prefixes: children of leaves, and random junk.
    for s in seqs:
        assert t.next_tokens(s + (7,)).size == 0 or s + (7,) in ref
    assert len(t) == len(seqs)
    assert list(t) == sorted(seqs)


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    seqs = random_seqs(rng, 200, vocab=rng.choice([5, 40, 70_000]), max_len=6)
    check_against_reference(PrefixTrie.from_sequences(seqs), seqs)


def test_not_prefix_free_and_duplicates() -> None:
    seqs = [(3, 4), (3,), (3, 4, 5), (3, 4), (), (9, 9, 9)]
    t = PrefixTrie.from_sequences(seqs)
    check_against_reference(t, set(seqs))
    assert len(t) == 5
    assert (3, 4, 5, 6) not in t and (9, 9) not in t and (8,) not in t


def test_empty_trie() -> None:
    t = PrefixTrie.from_sequences([])
    assert len(t) == 0 and list(t) == [] and () not in t
    assert t.next_tokens(()).size == 0 and t.max_token == -1


def test_large_token_ids_and_codes() -> None:
    big = [0, 63, 64, 4031, 4032, 254_015, 254_016, 16_003_007, 16_003_008, 2**31 - 1]
    for tok in big:
        assert decode_key(encode_token(tok)) == (tok,)
        assert all(0 < ord(c) < 0x80 for c in encode_token(tok))
    seqs = {(tok, EOS) for tok in big} | {(2**31 - 1, 2**31 - 2, EOS), (70_000, 5, EOS)}
    t = PrefixTrie.from_sequences(seqs)
    check_against_reference(t, seqs)
    assert t.max_token == 2**31 - 1
    atomic = {(32_000 + i, EOS) for i in range(0, 1_000_000, 997)}
    ta = PrefixTrie.from_sequences(atomic)
    assert ta.next_tokens(()).tolist() == sorted(s[0] for s in atomic)
    assert (32_000 + 997, EOS) in ta and (32_001, EOS) not in ta


def test_invalid_tokens_rejected() -> None:
    with pytest.raises(ValueError, match="outside the supported range"):
        PrefixTrie.from_sequences([(1, 2**31)])
    with pytest.raises(ValueError, match="outside the supported range"):
        PrefixTrie.from_sequences([(-1,)])
    with pytest.raises(TypeError, match="integers"):
        PrefixTrie.from_sequences([(1.5, 2)])
    with pytest.raises(ValueError):
        encode_key([2**31])


def test_lookup_of_foreign_prefixes_is_empty() -> None:
    t = PrefixTrie.from_sequences([(5, 6, EOS)])
    for p in [(-1,), (2**40,), (5, -3), ("x",), (5, 6, EOS, 0)]:
        assert t.next_tokens(p).size == 0
        assert p not in t
    assert 5 not in t and None not in t


def test_accepts_numpy_torch_and_lists() -> None:
    torch = pytest.importorskip("torch")
    t = PrefixTrie.from_sequences([np.array([4, 5, EOS]), [4, 6, EOS], torch.tensor([7, EOS])])
    assert t.next_tokens(np.array([4])).tolist() == [5, 6]
    assert t.next_tokens([4]).tolist() == [5, 6]
    assert t.next_tokens(torch.tensor([4])).tolist() == [5, 6]
    assert torch.tensor([7, EOS]) in t and [4, 5, EOS] in t


def test_cache_is_bounded_and_readonly() -> None:
    seqs = {(i, j, EOS) for i in range(2, 30) for j in range(2, 5)}
    t = PrefixTrie.from_sequences(seqs, cache_size=8)
    for i in range(2, 30):
        t.next_tokens((i,))
    info = t._cached_next.cache_info()
    assert info.currsize == 8
    a = t.next_tokens((3,))
    assert a is t.next_tokens((3,))  # served from the cache
    with pytest.raises(ValueError):
        a[0] = 99
    t.clear_cache()
    assert t._cached_next.cache_info().currsize == 0


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_roundtrip(tmp_path: Path, mmap: bool) -> None:
    rng = random.Random(3)
    seqs = random_seqs(rng, 300, vocab=100_000, max_len=5)
    t = PrefixTrie.from_sequences(seqs)
    path = tmp_path / "docids.marisa"
    t.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["docids.marisa"]  # temp file replaced
    u = PrefixTrie.load(path, mmap=mmap)
    assert len(u) == len(t) and list(u) == list(t) and u.max_token == t.max_token
    check_against_reference(u, seqs)
    t.save(path)  # overwrite in place
    assert list(PrefixTrie.load(path)) == sorted(seqs)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        PrefixTrie.load(tmp_path / "missing.marisa")
    junk = tmp_path / "junk.marisa"
    junk.write_bytes(b"not a trie at all")
    with pytest.raises(ValueError, match="not a marisa-trie file"):
        PrefixTrie.load(junk)
    empty = tmp_path / "empty.marisa"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a marisa-trie file"):
        PrefixTrie.load(empty)
    with pytest.raises(ValueError, match="does not exist"):
        PrefixTrie.load(tmp_path)  # a directory
    foreign = tmp_path / "foreign.marisa"
    marisa_trie.BytesTrie([("a", b"b")]).save(str(foreign))
    with pytest.raises(ValueError, match="not a dsi prefix trie"):
        PrefixTrie.load(foreign)


def test_load_rejects_other_format_version(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.marisa"
    monkeypatch.setattr(prefix_mod, "FORMAT_VERSION", 99)
    PrefixTrie.from_sequences([(2, EOS)]).save(path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="format version 99"):
        PrefixTrie.load(path)


token = st.integers(min_value=0, max_value=2**31 - 1)
small_token = st.integers(min_value=0, max_value=12)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.lists(st.one_of(small_token, token), max_size=6).map(tuple), max_size=40))
def test_property_random_tries(seqs: set[tuple[int, ...]]) -> None:
    check_against_reference(PrefixTrie.from_sequences(seqs), seqs)
