"""DocidMap contract shared by every scheme: lookups, files, validation, registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from docid import DocidError, DocidMap, available_schemes, fit_docids, get_scheme
from docid.base import DOCIDS_FILE, VOCAB_FILE

IDS = [f"doc{i}" for i in range(60)] + ["x-9", "Ünïcode", "42"]
TEXTS = [f"text about topic {i % 7} and subject {i % 3} number {i}" for i in range(len(IDS))]


def make(scheme: str) -> DocidMap:
    if scheme == "semantic":
        x = np.random.default_rng(0).normal(size=(len(IDS), 8)).astype(np.float32)
        return fit_docids("semantic", IDS, TEXTS, embeddings=x, k=3, c=5)
    return fit_docids(scheme, IDS, TEXTS)


SCHEMES = ["atomic", "naive", "semantic"]


def test_registry_lists_builtin_schemes() -> None:
    assert {"atomic", "naive", "semantic"} <= set(available_schemes())
    assert get_scheme("atomic").scheme == "atomic"
    with pytest.raises(ValueError, match="unknown docid scheme 'nope'"):
        fit_docids("nope", IDS, TEXTS)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sequences_are_unique_and_invert(scheme: str) -> None:
    m = make(scheme)
    assert len(m) == len(IDS) and m.doc_ids == IDS
    assert len(set(m.sequences)) == len(IDS)
    for doc_id in IDS:
        seq = m.sequence(doc_id)
        assert seq and all(0 <= i < len(m.symbols) for i in seq)
        assert m.lookup(seq) == doc_id
        assert m.lookup(list(seq)) == doc_id
        assert m.lookup(np.array(seq)) == doc_id
    assert m.lookup((len(m.symbols),)) is None
    assert m.lookup([]) is None
    assert m.max_sequence_length == max(len(s) for s in m.sequences)
    with pytest.raises(KeyError, match="unknown doc id"):
        m.sequence("missing")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_save_load_round_trip(scheme: str, tmp_path: Path) -> None:
    m = make(scheme)
    names = m.save(tmp_path)
    assert {VOCAB_FILE, DOCIDS_FILE} <= set(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temp files left
    loaded = DocidMap.load(tmp_path)
    assert type(loaded) is type(m)
    assert loaded.scheme == scheme
    assert loaded.doc_ids == m.doc_ids
    assert loaded.sequences == m.sequences
    assert loaded.symbols == m.symbols
    assert loaded.options == m.options
    assert all(loaded.lookup(s) == d for d, s in zip(IDS, m.sequences, strict=True))
    # The files are the documented plain formats.
    first = json.loads((tmp_path / DOCIDS_FILE).read_text(encoding="utf-8").splitlines()[0])
    assert first == {"doc_id": IDS[0], "docid": list(m.sequences[0])}
    vocab = json.loads((tmp_path / VOCAB_FILE).read_text(encoding="utf-8"))
    assert vocab["format_version"] == 1 and vocab["scheme"] == scheme
    assert vocab["num_docs"] == len(IDS) and vocab["symbols"] == m.symbols
    # Saving again over the same directory works and changes nothing.
    m.save(tmp_path)
    assert DocidMap.load(tmp_path).sequences == m.sequences


@pytest.mark.parametrize("scheme", SCHEMES)
def test_add_keeps_old_docids(scheme: str, tmp_path: Path) -> None:
    m = make(scheme)
    old_seqs, old_symbols = list(m.sequences), list(m.symbols)
    new_ids = ["new-1", "new-2", "zz~"]
    extra = {}
    if scheme == "semantic":
        extra["embeddings"] = np.random.default_rng(1).normal(size=(3, 8))
    new = m.add(new_ids, ["a b", "c d", "e f"], **extra)
    assert m.sequences[: len(old_seqs)] == old_seqs
    assert m.symbols[: len(old_symbols)] == old_symbols
    assert len(set(m.sequences)) == len(m) == len(IDS) + 3
    assert [m.lookup(s) for s in new] == new_ids
    with pytest.raises(ValueError, match="already in the docid map"):
        m.add(["new-1"], ["again"], **({"embeddings": np.zeros((1, 8))} if extra else {}))
    m.save(tmp_path)
    assert DocidMap.load(tmp_path).sequences == m.sequences


def test_fit_rejects_bad_corpora() -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        fit_docids("atomic", [], [])
    with pytest.raises(ValueError, match="appears more than once"):
        fit_docids("atomic", ["a", "a"], ["x", "y"])
    with pytest.raises(ValueError, match="2 doc ids but 1 texts"):
        fit_docids("naive", ["a", "b"], ["x"])
    with pytest.raises(ValueError, match="non-empty strings"):
        fit_docids("naive", ["a", ""], None)
    with pytest.raises(ValueError, match="takes no options"):
        fit_docids("atomic", ["a"], ["x"], k=3)


def test_constructor_validates() -> None:
    with pytest.raises(DocidError, match="also the docid of 'a'"):
        DocidMap(["a", "b"], [(0,), (0,)], ["x", "y"])
    with pytest.raises(DocidError, match="outside the 2 symbols"):
        DocidMap(["a"], [(2,)], ["x", "y"])
    with pytest.raises(DocidError, match="empty docid"):
        DocidMap(["a"], [()], ["x"])
    with pytest.raises(DocidError, match="distinct"):
        DocidMap(["a"], [(0,)], ["x", "x"])


# --- damaged files: one clear error naming the file ------------------------------------------


def _saved(tmp_path: Path, scheme: str = "atomic") -> Path:
    make(scheme).save(tmp_path)
    return tmp_path


def _edit_lines(path: Path, edit) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")


def _edit_vocab(path: Path, **changes) -> None:
    vocab = json.loads(path.read_text(encoding="utf-8"))
    vocab.update(changes)
    path.write_text(json.dumps(vocab), encoding="utf-8")


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"docid_vocab\.json does not exist"):
        DocidMap.load(tmp_path / "nothing")


def test_load_rejects_other_format_version(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    _edit_vocab(d / VOCAB_FILE, format_version=99)
    with pytest.raises(ValueError, match=r"docid_vocab\.json has format_version 99"):
        DocidMap.load(d)


def test_load_rejects_unknown_scheme(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    _edit_vocab(d / VOCAB_FILE, scheme="magic")
    with pytest.raises(ValueError, match=r"docid_vocab\.json names docid scheme 'magic'"):
        DocidMap.load(d)


def test_load_rejects_wrong_count(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    _edit_vocab(d / VOCAB_FILE, num_docs=5)
    with pytest.raises(ValueError, match=r"docids\.jsonl has 63 docids but .*counts 5"):
        DocidMap.load(d)


def test_load_rejects_out_of_range_symbol(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    _edit_lines(
        d / DOCIDS_FILE,
        lambda ls: [*ls[:2], json.dumps({"doc_id": "doc2", "docid": [999]}), *ls[3:]],
    )
    with pytest.raises(
        ValueError, match=r"docids\.jsonl line 3: docid \[999\] of 'doc2' is outside"
    ):
        DocidMap.load(d)


def test_load_rejects_duplicate_docid(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    _edit_lines(
        d / DOCIDS_FILE,
        lambda ls: [ls[0], ls[1].replace('"docid": [1]', '"docid": [0]')],
    )
    _edit_vocab(d / VOCAB_FILE, num_docs=2)
    with pytest.raises(ValueError, match=r"docids\.jsonl line 2: .* also the docid of 'doc0'"):
        DocidMap.load(d)


def test_load_rejects_duplicate_doc_id(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    _edit_lines(d / DOCIDS_FILE, lambda ls: [ls[0], ls[1].replace('"doc1"', '"doc0"')])
    with pytest.raises(ValueError, match=r"docids\.jsonl line 2: doc id 'doc0' appears twice"):
        DocidMap.load(d)


def test_load_rejects_broken_json_line(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    _edit_lines(d / DOCIDS_FILE, lambda ls: [*ls[:4], "{not json", *ls[5:]])
    with pytest.raises(ValueError, match=r"docids\.jsonl line 5 is not valid JSON"):
        DocidMap.load(d)


def test_load_rejects_non_integer_docid(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    _edit_lines(d / DOCIDS_FILE, lambda ls: [json.dumps({"doc_id": "doc0", "docid": ["0"]})])
    with pytest.raises(ValueError, match=r"docids\.jsonl line 1: 'docid' must be a list of int"):
        DocidMap.load(d)


def test_load_rejects_tampered_naive_docid(tmp_path: Path) -> None:
    d = _saved(tmp_path, "naive")
    m = DocidMap.load(d)
    swapped = list(reversed(m.sequence("doc12")))
    _edit_lines(
        d / DOCIDS_FILE,
        lambda ls: [
            json.dumps({"doc_id": "doc12", "docid": swapped}) if '"doc12"' in ln else ln
            for ln in ls
        ],
    )
    with pytest.raises(ValueError, match=r"docids\.jsonl: the naive docid of 'doc12' does not"):
        DocidMap.load(d)
