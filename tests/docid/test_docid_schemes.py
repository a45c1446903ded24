"""Atomic and naive schemes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from docid import fit_docids


def test_atomic_is_one_new_symbol_per_document() -> None:
    m = fit_docids("atomic", ["b", "a", "c"], ["x", "y", "z"])
    assert m.symbols == ["<doc_0>", "<doc_1>", "<doc_2>"]
    assert m.sequences == [(0,), (1,), (2,)]
    assert m.symbol_names("c") == ["<doc_2>"]


def test_atomic_add_appends_symbols() -> None:
    m = fit_docids("atomic", ["b", "a"], None)
    assert m.add(["q", "r"]) == [(2,), (3,)]
    assert m.symbols == ["<doc_0>", "<doc_1>", "<doc_2>", "<doc_3>"]
    assert m.add([]) == []


def test_naive_spells_the_id() -> None:
    m = fit_docids("naive", ["ab1", "ba", "1a"], None)
    assert m.symbols == ["1", "a", "b"]
    assert m.sequence("ab1") == (1, 2, 0)
    assert m.sequence("1a") == (0, 1)
    assert m.lookup((2, 1)) == "ba"


def test_naive_add_appends_unseen_characters_only() -> None:
    m = fit_docids("naive", ["ab", "ba"], None)
    assert m.add(["zab", "cz"]) == [(3, 0, 1), (2, 3)]
    assert m.symbols == ["a", "b", "c", "z"]


@settings(max_examples=30, deadline=None)
@given(st.sets(st.text(min_size=1, max_size=8), min_size=1, max_size=30))
def test_naive_sequences_invert_for_any_ids(ids: set[str]) -> None:
    ids_list = sorted(ids)
    m = fit_docids("naive", ids_list, None)
    for doc_id in ids_list:
        assert "".join(m.symbol_names(doc_id)) == doc_id
        assert m.lookup(m.sequence(doc_id)) == doc_id
