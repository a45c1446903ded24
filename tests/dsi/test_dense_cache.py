"""dsi.baselines.cached_vectors: each text's vector computed once, read back only when it fits."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dsi.baselines import cache_dir, cached_vectors


def _counting():
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float64)

    return calls, compute


def _shards(folder):
    return sorted((folder / "dense").glob("*/*.npz"))


def test_vectors_are_computed_once_and_a_change_of_key_computes_again(tmp_path):
    calls, compute = _counting()
    texts = ["a cat", "banana"]
    first = cached_vectors(("m", "s1"), texts, compute, tmp_path)
    assert first.dtype == np.float32 and first.tolist() == [[5, 2], [6, 3]]
    again = cached_vectors(("m", "s1"), texts, compute, tmp_path)
    assert len(calls) == 1 and np.array_equal(again, first)
    cached_vectors(("other model", "s1"), texts, compute, tmp_path)
    # Parts are length-prefixed: ("ab", "c") and ("a", "bc") are different keys.
    cached_vectors(("ms", "1"), texts, compute, tmp_path)
    assert calls == [texts] * 3 and len(_shards(tmp_path)) == 3


def test_a_grown_corpus_computes_only_its_new_texts(tmp_path):
    calls, compute = _counting()
    cached_vectors(("m",), ["a cat", "banana"], compute, tmp_path)
    grown = ["dog", "banana", "a cat", "dog", "aardvark"]
    vectors = cached_vectors(("m",), grown, compute, tmp_path)
    # New texts once each, in first-seen order; old ones read back, all in the asked order.
    assert calls[1:] == [["dog", "aardvark"]]
    assert vectors.tolist() == [[3, 0], [6, 3], [5, 2], [3, 0], [8, 3]]
    again = cached_vectors(("m",), ["aardvark", "a cat"], compute, tmp_path)
    assert again.tolist() == [[8, 3], [5, 2]] and len(calls) == 2 and len(_shards(tmp_path)) == 2


def test_only_shards_holding_an_asked_text_have_their_vectors_read(tmp_path, caplog):
    calls, compute = _counting()
    cached_vectors(("m",), ["a cat"], compute, tmp_path)
    cached_vectors(("m",), ["banana"], compute, tmp_path)
    for path in _shards(tmp_path):
        with np.load(path) as kept:
            ids, vectors = kept["ids"], kept["vectors"]
        if vectors[0, 0] == 6:  # banana's shard: its vectors spoilt, its ids intact
            _npz(path, ids=ids, vectors=np.full_like(vectors, np.nan))
    with caplog.at_level(logging.WARNING):
        assert cached_vectors(("m",), ["a cat"], compute, tmp_path).tolist() == [[5, 2]]
    assert len(calls) == 2 and not caplog.text and len(_shards(tmp_path)) == 2


def test_without_a_folder_nothing_is_kept(tmp_path):
    calls, compute = _counting()
    cached_vectors(("m",), ["x"], compute, None)
    cached_vectors(("m",), ["x"], compute, None)
    assert len(calls) == 2


def _npz(path, **arrays):
    np.savez(path.with_suffix(""), **arrays)  # savez appends .npz


@pytest.mark.parametrize(
    "bad",
    [
        b"not an array",
        b"PK\x03\x04 a broken zip",
        {"vectors": np.zeros((2, 2), dtype=np.float32)},  # no ids
        {"rows": np.zeros((3, 2), dtype=np.float32)},  # a row too many
        {"nan": np.full((2, 2), np.nan, dtype=np.float32)},
        {"dtype": np.zeros((2, 2), dtype=np.float64)},
    ],
    ids=["garbage", "zip", "ids", "rows", "nan", "dtype"],
)
def test_a_shard_that_does_not_fit_is_replaced(tmp_path, caplog, bad):
    calls, compute = _counting()
    texts = ["a cat", "banana"]
    cached_vectors(("m",), texts, compute, tmp_path)
    (path,) = _shards(tmp_path)
    if isinstance(bad, bytes):
        path.write_bytes(bad)
    else:
        with np.load(path) as kept:
            ids = kept["ids"]
        ((name, vectors),) = bad.items()
        _npz(path, vectors=vectors) if name == "vectors" else _npz(path, ids=ids, vectors=vectors)
    with caplog.at_level(logging.WARNING):
        vectors = cached_vectors(("m",), texts, compute, tmp_path)
    assert len(calls) == 2 and vectors.tolist() == [[5, 2], [6, 3]]
    assert "Ignoring" in caplog.text
    (path,) = _shards(tmp_path)  # the bad shard removed, a good one written
    with np.load(path) as kept:
        assert np.array_equal(kept["vectors"], vectors)


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    calls, compute = _counting()
    with caplog.at_level(logging.WARNING):
        vectors = cached_vectors(("m",), ["a"], compute, blocker)
    assert vectors.tolist() == [[1, 1]] and "Could not cache" in caplog.text


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DSI_CACHE", "off")
    assert cache_dir() is None
    monkeypatch.setenv("DSI_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DSI_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dsi"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dsi"
