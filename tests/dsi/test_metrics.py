"""Metrics against hand-computed values, and TREC run files."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsi.data import DataError
from dsi.metrics import METRIC_NAMES, evaluate_run, per_query, read_trec_run, write_trec_run

QRELS = {"q1": {"a": 3, "b": 2, "c": 0, "d": 1}}
# Ranked x, a, c, b: x is unjudged, c judged non-relevant, d never retrieved.
RUN = {"q1": [("x", 0.9), ("a", 0.8), ("c", 0.7), ("b", 0.6)]}


def test_hand_computed_example() -> None:
    # DCG  = 0/log2(2) + 3/log2(3) + 0/log2(4) + 2/log2(5) = 1.892789 + 0.861353 = 2.754142
    # IDCG = 3/log2(2) + 2/log2(3) + 1/log2(4)            = 3 + 1.261860 + 0.5  = 4.761860
    result = evaluate_run(RUN, QRELS)
    assert result["nDCG@10"] == pytest.approx(2.754142 / 4.761860, abs=1e-6)
    assert result["nDCG@10"] == pytest.approx(0.578375, abs=1e-6)
    assert result["Hits@1"] == 0.0
    assert result["Hits@10"] == 1.0
    assert result["MRR@10"] == 0.5
    assert result["Recall@10"] == pytest.approx(2 / 3)
    assert result["Recall@100"] == pytest.approx(2 / 3)
    assert result["num_queries"] == 1
    assert set(result) == {*METRIC_NAMES, "num_queries"}


def test_perfect_and_empty_rankings() -> None:
    perfect = {"q1": [("a", 4.0), ("b", 3.0), ("d", 2.0)]}
    result = evaluate_run(perfect, QRELS)
    assert all(result[name] == pytest.approx(1.0) for name in METRIC_NAMES)
    empty = evaluate_run({"q1": []}, QRELS)
    assert all(empty[name] == 0.0 for name in METRIC_NAMES)


def test_missing_queries_count_as_zero_and_unjudged_are_ignored() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    run = {"q1": [("a", 1.0)], "q9": [("z", 1.0)]}
    result = evaluate_run(run, qrels)
    assert result["num_queries"] == 2  # q3 has no relevant document, q9 no judgments
    assert result["Hits@1"] == 0.5
    assert result["nDCG@10"] == 0.5
    assert set(per_query(run, qrels)) == {"q1", "q2"}


def test_ordering_follows_scores_with_trec_eval_ties() -> None:
    qrels = {"q": {"b": 1}}
    # The list is out of order: ranking follows the scores, not the list.
    assert evaluate_run({"q": [("a", 1.0), ("b", 2.0)]}, qrels)["Hits@1"] == 1.0
    # Equal scores: trec_eval puts the larger doc id first.
    assert evaluate_run({"q": [("a", 1.0), ("b", 1.0)]}, qrels)["Hits@1"] == 1.0
    assert evaluate_run({"q": [("b", 1.0), ("c", 1.0)]}, qrels)["MRR@10"] == 0.5


def test_dict_and_hit_inputs_agree_with_lists() -> None:
    @dataclass(frozen=True)
    class Hit:
        doc_id: str
        score: float

    as_dict = {"q1": dict(RUN["q1"])}
    as_hits = {"q1": [Hit(d, s) for d, s in RUN["q1"]]}
    expected = evaluate_run(RUN, QRELS)
    assert evaluate_run(as_dict, QRELS) == expected
    assert evaluate_run(as_hits, QRELS) == expected


def test_cutoffs_and_graded_ideal() -> None:
    relevant = {f"r{i}": 1 for i in range(20)}
    run = {
        "q": [(f"n{i}", 100.0 - i) for i in range(10)] + [(f"r{i}", 50.0 - i) for i in range(20)]
    }
    result = evaluate_run(run, {"q": relevant})
    assert result["Hits@10"] == 0.0
    assert result["nDCG@10"] == 0.0
    assert result["Recall@10"] == 0.0
    assert result["Recall@100"] == 1.0
    # The ideal ranking is cut at 10, so ten of the 20 relevant documents on top give 1.
    full = {"q": [(f"r{i}", 50.0 - i) for i in range(10)]}
    assert evaluate_run(full, {"q": relevant})["nDCG@10"] == pytest.approx(1.0)
    assert evaluate_run(full, {"q": relevant})["Recall@10"] == 0.5
    # Swapping grades 2 and 1 in the top two: (1 + 2/log2 3) / (2 + 1/log2 3).
    swapped = evaluate_run({"q": [("low", 2.0), ("high", 1.0)]}, {"q": {"high": 2, "low": 1}})
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert swapped["nDCG@10"] == pytest.approx(expected)


def test_bad_runs() -> None:
    with pytest.raises(ValueError, match="lists doc 'a' twice"):
        evaluate_run({"q1": [("a", 1.0), ("a", 0.5)]}, QRELS)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_run({"q1": [("a", float("nan"))]}, QRELS)
    with pytest.raises(ValueError, match="no relevant judgments"):
        evaluate_run(RUN, {"q1": {"a": 0}})


def test_trec_run_round_trip(tmp_path: Path) -> None:
    run = {"q1": [("b", 0.5), ("a", 1.25)], "q2": {"c": -3.0}, "q3": []}
    path = tmp_path / "out" / "run.trec"
    write_trec_run(run, path, tag="bm25")
    assert path.read_text().splitlines() == [
        "q1 Q0 a 1 1.25 bm25",
        "q1 Q0 b 2 0.5 bm25",
        "q2 Q0 c 1 -3.0 bm25",
    ]
    assert [p.name for p in path.parent.iterdir()] == ["run.trec"]  # no temp file left
    back = read_trec_run(path)
    assert back == {"q1": {"a": 1.25, "b": 0.5}, "q2": {"c": -3.0}}
    assert evaluate_run(back, QRELS) == evaluate_run(run, QRELS)


def test_trec_run_replaces_only_a_run_file(tmp_path: Path, record_property) -> None:
    from docid.guard import PathRefused

    path = tmp_path / "run.trec"
    path.write_bytes(b"")
    write_trec_run(RUN, path)  # an empty file may be written
    write_trec_run({"q1": [("b", 2.0)]}, path)  # and a run file replaced
    assert path.read_text() == "q1 Q0 b 1 2.0 dsi\n"
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\n\x00")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link.trec").symlink_to(path)
    for target, what in [
        (notes, "a file of 10 bytes that is not a TREC run file"),
        (tmp_path / "folder", "a folder of 0 entries"),
        (tmp_path / "link.trec", "a symbolic link"),
    ]:
        before = sorted((p.name, p.is_symlink()) for p in tmp_path.iterdir())
        with pytest.raises(PathRefused, match=what):
            write_trec_run(RUN, target)
        record_property("bad_inputs", 1)
        assert sorted((p.name, p.is_symlink()) for p in tmp_path.iterdir()) == before
    assert notes.read_bytes() == b"my notes\n\x00"
    assert path.read_text() == "q1 Q0 b 1 2.0 dsi\n"


def test_trec_run_rejects_whitespace_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run tag"):
        write_trec_run(RUN, tmp_path / "r", tag="two words")
    with pytest.raises(ValueError, match="doc id 'a b'"):
        write_trec_run({"q": [("a b", 1.0)]}, tmp_path / "r")
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 a 1 1.0 t\nq1 Q0 b 2 high t\n")
    with pytest.raises(DataError, match=r"bad.trec line 2: score 'high'"):
        read_trec_run(bad)
    bad.write_text("q1 Q0 a 1 1.0\n")
    with pytest.raises(DataError, match=r"bad.trec line 1: expected 6 columns"):
        read_trec_run(bad)
