"""dsi.baselines.cached_vectors: corpus vectors computed once, read back only when they fit."""

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


def test_vectors_are_computed_once_and_a_change_of_text_or_key_computes_again(tmp_path):
    calls, compute = _counting()
    texts = ["a cat", "banana"]
    first = cached_vectors(("m", "d1", "d2"), texts, compute, tmp_path)
    assert first.dtype == np.float32 and first.tolist() == [[5, 2], [6, 3]]
    again = cached_vectors(("m", "d1", "d2"), texts, compute, tmp_path)
    assert len(calls) == 1 and np.array_equal(again, first)
    cached_vectors(("m", "d1", "d2"), ["a cat", "bananas"], compute, tmp_path)
    cached_vectors(("other model", "d1", "d2"), texts, compute, tmp_path)
    # Parts are length-prefixed: ("ab", "c") and ("a", "bc") are different keys.
    cached_vectors(("m", "d1d", "2"), texts, compute, tmp_path)
    assert len(calls) == 4 and len(list((tmp_path / "dense").glob("*.npy"))) == 4


def test_without_a_folder_nothing_is_kept(tmp_path):
    calls, compute = _counting()
    cached_vectors(("m",), ["x"], compute, None)
    cached_vectors(("m",), ["x"], compute, None)
    assert len(calls) == 2


@pytest.mark.parametrize(
    "bad",
    [
        b"not an array",
        np.zeros((3, 2), dtype=np.float32),  # a row too many
        np.full((2, 2), np.nan, dtype=np.float32),
        np.zeros((2, 2), dtype=np.float64),
    ],
    ids=["garbage", "rows", "nan", "dtype"],
)
def test_a_cache_file_that_does_not_fit_is_replaced(tmp_path, caplog, bad):
    calls, compute = _counting()
    texts = ["a cat", "banana"]
    cached_vectors(("m",), texts, compute, tmp_path)
    (path,) = (tmp_path / "dense").glob("*.npy")
    if isinstance(bad, bytes):
        path.write_bytes(bad)
    else:
        np.save(path, bad)
    with caplog.at_level(logging.WARNING):
        vectors = cached_vectors(("m",), texts, compute, tmp_path)
    assert len(calls) == 2 and vectors.tolist() == [[5, 2], [6, 3]]
    assert "Ignoring" in caplog.text
    assert np.array_equal(np.load(path), vectors)  # rewritten


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
