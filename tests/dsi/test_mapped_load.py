"""Loading maps what grows with the corpus: documents, word postings; large files are checked by
size on load and hashed in full by ``dsi info --verify``."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import dsi.index_format as index_format
from docid.words import WordIndex
from dsi.cli import main
from dsi.data import Corpus
from dsi.index import GenerativeIndex
from dsi.index_format import (
    DOCUMENT_OFFSETS_FILE,
    DocumentColumn,
    IndexLoadError,
    load_documents,
    save_documents,
)
from tests.conftest import random_corpus, tiny_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    corpus = random_corpus(random.Random(3), 8)
    index = GenerativeIndex.build(corpus, tiny_config(steps=2), progress_bar=False)
    return corpus, index.save(tmp_path_factory.mktemp("mapped") / "idx")


def test_documents_are_parsed_when_asked_for(tmp_path):
    corpus = Corpus(
        ["a", "b", "c"], ["", "T\u00e9", "x"], ["one", "two\nlines \u2028", "three"], "t"
    )
    save_documents(corpus, tmp_path / "documents.jsonl")
    loaded = load_documents(tmp_path)
    assert isinstance(loaded.texts, DocumentColumn)
    assert loaded.doc_ids == corpus.doc_ids and loaded.texts == corpus.texts
    assert loaded.titles[1] == "T\u00e9" and loaded.texts[-1] == "three"
    assert loaded.doc_ids[1:] == ["b", "c"] and loaded.full_texts() == corpus.full_texts()
    with pytest.raises(IndexError):
        loaded.doc_ids[3]
    # Without the offsets (an index saved before them) the lines are found by reading the file.
    (tmp_path / DOCUMENT_OFFSETS_FILE).unlink()
    assert load_documents(tmp_path).texts == corpus.texts
    # Offsets that do not end where the file ends are refused.
    np.save(tmp_path / DOCUMENT_OFFSETS_FILE, np.array([0, 5], dtype=np.int64))
    with pytest.raises(IndexLoadError, match="does not match"):
        load_documents(tmp_path)


def test_a_loaded_index_maps_its_documents_and_searches_as_before(saved):
    corpus, directory = saved
    index = GenerativeIndex.load(directory)
    assert isinstance(index.corpus.doc_ids, DocumentColumn)
    assert index.corpus.doc_ids == corpus.doc_ids and index.corpus.texts == corpus.texts


def test_word_postings_are_mapped(tmp_path):
    words = WordIndex.build(["cats sat", "dogs ran far", "cats and dogs"] * 5)
    words.save(tmp_path)
    mapped, read = WordIndex.load(tmp_path, mmap=True), WordIndex.load(tmp_path)
    assert isinstance(mapped.docs.base, np.memmap)
    assert np.array_equal(mapped.bm25(["cat", "dog"]), read.bm25(["cat", "dog"]))


def test_large_files_are_checked_by_size_on_load_and_hashed_by_info_verify(
    saved, tmp_path, monkeypatch, capsys
):
    _, reference = saved
    import shutil

    directory = shutil.copytree(reference, tmp_path / "idx")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["sizes"]["documents.jsonl"] == (directory / "documents.jsonl").stat().st_size
    # As if every file were large: a flipped byte passes a load, a cut file does not.
    monkeypatch.setattr(index_format, "HASH_ON_LOAD_BYTES", 0)
    path = directory / "documents.jsonl"
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    GenerativeIndex.load(directory)
    assert main(["info", str(directory)]) == 0
    capsys.readouterr()
    assert main(["info", "--verify", str(directory)]) == 2
    assert "documents.jsonl does not match its checksum" in capsys.readouterr().err
    with pytest.raises(IndexLoadError, match="documents.jsonl does not match its checksum"):
        GenerativeIndex.load(directory, verify="full")
    path.write_bytes(bytes(data[:-3]))
    with pytest.raises(IndexLoadError, match="holds .* bytes, the manifest says"):
        GenerativeIndex.load(directory)


def test_info_verify_passes_an_intact_index(saved, capsys):
    _, directory = saved
    assert main(["info", "--verify", str(directory)]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is True
