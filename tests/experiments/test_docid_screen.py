"""The docid screen's decisions (experiments/rules/docid_screen.md and its addition)."""

from __future__ import annotations

from experiments.docid_screen import WITHOUT_WORDS, decide, decide_addition


def _row(ndcg: float, memorized: float, without: float | None = None) -> dict[str, float]:
    row = {"nDCG@10": ndcg, "memorization@1": memorized}
    if without is not None:
        row[WITHOUT_WORDS] = without
    return row


def test_the_best_dev_score_goes_on_and_a_near_tie_goes_to_the_better_memorizer():
    assert decide({"atomic": _row(0.07, 0.01), "semantic": _row(0.27, 0.38)}) == "semantic"
    assert decide({"atomic": _row(0.265, 0.6), "semantic": _row(0.27, 0.38)}) == "atomic"
    assert decide({"atomic": _row(0.25, 0.9), "semantic": _row(0.27, 0.38)}) == "semantic"
    assert decide({"atomic": _row(0.04, 0.9), "semantic": _row(0.03, 0.38)}) is None


def test_the_addition_compares_title_and_keyword_memorization_without_their_words():
    semantic = _row(0.27, 0.38)
    # Copying the title reaches memorization@1 0.99; without its words it memorizes little.
    copied = {
        "semantic": semantic,
        "title": _row(0.265, 0.99, 0.05),
        "keywords": _row(0.1, 0.9, 0.2),
    }
    assert decide_addition(copied) == "semantic"
    memorized = {**copied, "title": _row(0.265, 0.99, 0.5)}
    assert decide_addition(memorized) == "title"
    assert decide_addition({**copied, "keywords": _row(0.4, 0.5, 0.1)}) == "keywords"
