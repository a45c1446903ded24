"""The share of scored words that are the query's own, on hand-counted examples."""

from __future__ import annotations

import pytest

from experiments.own_words import own_shares


def test_own_shares_count_occurrences_and_distinct_words() -> None:
    # 3 of 5 occurrences are the query's ("cell" twice, "tumour" once); 2 of 4 distinct words.
    occurrences, distinct = own_shares(
        ["cell", "tumour"], ["cell", "cell", "tumour", "growth", "mice"]
    )
    assert occurrences == pytest.approx(3 / 5)
    assert distinct == pytest.approx(2 / 4)


def test_own_shares_of_nothing_scored_and_of_no_overlap() -> None:
    assert own_shares(["cell"], []) == (0.0, 0.0)
    assert own_shares(["cell"], ["mice", "mice"]) == (0.0, 0.0)
    assert own_shares([], ["mice"]) == (0.0, 0.0)
