"""Our metrics against trec_eval's own code (pytrec_eval), on random runs with ties and grades."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsi.metrics import per_query

pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier is in the test extra")

DOCS = [f"d{i}" for i in range(30)]
# Our name -> (trec_eval measure, cutoff the run is cut to before trec_eval sees it).
# trec_eval's recip_rank has no cutoff, so MRR@10 is recip_rank over the first 10 documents.
MEASURES = {
    "nDCG@10": ("ndcg_cut_10", None),
    "Hits@1": ("success_1", None),
    "Hits@10": ("success_10", None),
    "MRR@10": ("recip_rank", 10),
    "Recall@10": ("recall_10", None),
    "Recall@100": ("recall_100", None),
}


@st.composite
def judged_runs(draw):
    """Queries with graded judgments (at least one relevant) and runs whose scores often tie."""
    qrels, run = {}, {}
    for q in range(draw(st.integers(1, 4))):
        judged = draw(st.dictionaries(st.sampled_from(DOCS), st.integers(-1, 3), min_size=1))
        if not any(grade > 0 for grade in judged.values()):
            judged[draw(st.sampled_from(DOCS))] = draw(st.integers(1, 3))
        retrieved = draw(st.lists(st.sampled_from(DOCS), min_size=1, max_size=25, unique=True))
        # Scores from a few values, so that trec_eval's tie-break (doc id, descending) matters.
        scores = draw(
            st.lists(
                st.sampled_from([0.5, 1.0, 2.0, 3.25]),
                min_size=len(retrieved),
                max_size=len(retrieved),
            )
        )
        qrels[f"q{q}"] = judged
        run[f"q{q}"] = dict(zip(retrieved, scores, strict=True))
    return qrels, run


def trec_eval(run: dict, qrels: dict, measure: str, cutoff: int | None) -> dict[str, float]:
    if cutoff is not None:
        # Cut in trec_eval's own order (score descending, then doc id descending).
        run = {
            qid: dict(sorted(docs.items(), key=lambda p: (p[1], p[0]), reverse=True)[:cutoff])
            for qid, docs in run.items()
        }
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {measure})
    return {qid: values[measure] for qid, values in evaluator.evaluate(run).items()}


@settings(max_examples=200, deadline=None)
@given(judged_runs())
def test_every_metric_equals_trec_evals(case) -> None:
    qrels, run = case
    ours = per_query(run, qrels)
    assert set(ours) == set(qrels)
    for name, (measure, cutoff) in MEASURES.items():
        theirs = trec_eval(run, qrels, measure, cutoff)
        for qid in qrels:
            assert ours[qid][name] == pytest.approx(theirs[qid], abs=1e-4), (name, qid)
