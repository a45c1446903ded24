"""The lever screen's decision (experiments/rules/docid_levers.md)."""

from __future__ import annotations

from experiments.docid_levers import decide

BASELINE = {"nDCG@10": 0.269, "memorization@1": 0.383, "build_seconds": 2500.0}


def _row(ndcg: float, memorized: float, seconds: float = 2500.0) -> dict[str, float]:
    return {"nDCG@10": ndcg, "memorization@1": memorized, "build_seconds": seconds}


def test_a_lever_is_adopted_only_with_a_clear_gain_and_memorization_kept():
    levers = {
        "pseudo3": _row(0.28, 0.40),  # +0.011: noise on 150 queries
        "k32": _row(0.30, 0.30),  # +0.031 but memorizes 0.083 less
        "c20": _row(0.295, 0.34),  # +0.026, memorization -0.043: adopted
    }
    assert decide(BASELINE, levers) == (["c20"], "c20")
    assert decide(BASELINE, {"pseudo3": _row(0.27, 0.5)}) == ([], None)


def test_of_the_adopted_the_best_wins_and_a_near_tie_goes_to_the_cheaper_build():
    levers = {"pseudo3": _row(0.32, 0.40, 4000.0), "k32": _row(0.30, 0.40, 2000.0)}
    assert decide(BASELINE, levers) == (["pseudo3", "k32"], "pseudo3")
    levers["k32"] = _row(0.317, 0.40, 2000.0)
    assert decide(BASELINE, levers) == (["pseudo3", "k32"], "k32")
