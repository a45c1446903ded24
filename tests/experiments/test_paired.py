"""experiments/paired.py: paired bootstrap differences and which retrievers it compares."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import paired


def test_equal_retrievers_differ_by_nothing():
    scores = np.linspace(0.0, 1.0, 50)
    result = paired.paired_difference(scores, scores, 2000, np.random.default_rng(0))
    assert result["difference"] == result["low"] == result["high"] == 0.0
    assert result["not_above"] == 1.0 and result["wins"] == result["losses"] == 0


def test_a_consistent_gain_has_an_interval_above_zero():
    rng = np.random.default_rng(1)
    second = rng.random(200)
    first = second + 0.05 + 0.01 * rng.standard_normal(200)
    result = paired.paired_difference(first, second, 2000, np.random.default_rng(0))
    assert 0.0 < result["low"] < result["difference"] < result["high"]
    assert result["difference"] == pytest.approx(0.05, abs=0.005)
    assert result["not_above"] == 0.0 and result["wins"] > 190


def test_a_noisy_small_gain_is_not_called_sure():
    rng = np.random.default_rng(2)
    second = rng.integers(0, 2, 40).astype(float)  # Hits@10-like, 40 queries
    first = second.copy()
    first[:3] = 1.0 - first[:3]  # three queries flipped: a gain or loss of a few queries
    result = paired.paired_difference(first, second, 4000, np.random.default_rng(0))
    assert result["low"] < 0.0 < result["high"]
    assert 0.0 < result["not_above"] < 1.0


def test_scores_must_be_paired():
    with pytest.raises(ValueError, match="same queries"):
        paired.paired_difference(np.zeros(3), np.zeros(4), 10, np.random.default_rng(0))


def test_comparisons_put_runs_against_bm25_and_the_default():
    groups = ["default (2 seeds)", "wide_slow (2 seeds)"]
    pairs = paired.comparisons(["default", "seed14", "wide_slow"], groups)
    assert ("default", "bm25") in pairs and ("wide_slow", "default") in pairs
    assert ("seed14", "default") in pairs and ("default", "default") not in pairs
    assert ("wide_slow (2 seeds)", "default (2 seeds)") in pairs
    assert ("default (2 seeds)", "bm25") in pairs
    assert ("default (2 seeds)", "default (2 seeds)") not in pairs
    assert all(second != "seed14" for _, second in pairs)
    # Without a default run, only BM25 is compared against.
    assert paired.comparisons(["wide_slow"], []) == [("wide_slow", "bm25")]
