"""The learning-curve report of experiments/docid_kinds.py, on hand-made rows (nothing trains)."""

from __future__ import annotations

import argparse
import json

import pytest

from dsi.data import Corpus
from experiments import docid_kinds


def _args(tmp_path, **extra) -> argparse.Namespace:
    values = {
        "minutes": 60.0,
        "max_steps": None,
        "seed": 13,
        "memorization_sample": 500,
        "eval_every": 10.0,
        "embedder": None,
        "set": [],
        "results": tmp_path,
    }
    return argparse.Namespace(**{**values, **extra})


def _point(minutes: float, ndcg: float, memorized: float, masked: float | None = None) -> dict:
    point = {"minutes": minutes, "nDCG@10": ndcg, "Hits@10": ndcg + 0.1}
    point |= {"memorization@1": memorized, "memorization@10": min(1.0, memorized + 0.05)}
    if masked is not None:
        point |= {
            "memorization_without_docid_words@1": masked,
            "memorization_without_docid_words@10": masked + 0.1,
        }
    return point


def test_report_table_json_and_plot(tmp_path) -> None:
    data = {
        "name": "toy",
        "corpus": Corpus(doc_ids=["a", "b"], titles=["", ""], texts=["x", "y"], source="toy"),
        "dev": {"q1": {"a": 1}},
    }
    atomic = [_point(10.0, 0.01, 0.20), _point(20.5, 0.03, 0.60)]
    keywords = [_point(10.0, 0.10, 0.90, 0.30), _point(20.5, 0.20, 0.95, 0.40)]
    training = {"steps": 400, "seconds": 1230.0}
    rows = [
        {"name": "bm25", "dev": {"nDCG@10": 0.6, "Hits@10": 0.8}},
        {"name": "atomic", "curve": atomic, "dev": atomic[-1], "training": training},
        {"name": "keywords", "curve": keywords, "dev": keywords[-1], "training": training},
        {
            "name": "title",
            "refused": "title docids need document titles, and this corpus has none.",
        },
    ]
    args = _args(tmp_path)
    docid_kinds.write_report(data, rows, args)
    table = (tmp_path / "docid_kinds_toy.md").read_text()
    assert "| atomic | 0.030 | 0.130 | 0.600 | 0.650 | – | – | 400 | 20.5 |" in table
    assert "| keywords | 0.200 | 0.300 | 0.950 | 1.000 | 0.400 | 0.500 | 400 | 20.5 |" in table
    assert "| bm25 | 0.600 | 0.800 | – | – | – | – | – | – |" in table
    assert "| title | refused: title docids need document titles" in table
    assert "| 10.0 | 0.100 | 0.900 | 0.950 | 0.300 |" in table  # keywords' first point
    saved = json.loads((tmp_path / "docid_kinds_toy.json").read_text())
    assert saved["results"] == rows and saved["memorization_sample"] == 500
    assert (tmp_path / "docid_kinds_toy.png").stat().st_size > 0


def test_replot_draws_the_saved_results_again_with_the_baselines_in_the_legend(
    tmp_path, monkeypatch
) -> None:
    import matplotlib.pyplot as plt

    corpus = Corpus(doc_ids=["a"], titles=[""], texts=["x"], source="toy")
    data = {"name": "toy", "corpus": corpus, "dev": {"q1": {"a": 1}}}
    curve = [_point(10.0, 0.01, 0.20), _point(20.0, 0.03, 0.60)]
    rows = [
        {"name": "bm25", "dev": {"nDCG@10": 0.6, "Hits@10": 0.8}},
        {"name": "bm25+rm3", "dev": {"nDCG@10": 0.65, "Hits@10": 0.8}},
        {
            "name": "naive",
            "curve": curve,
            "dev": curve[-1],
            "training": {"steps": 9, "seconds": 60.0},
        },
    ]
    docid_kinds.write_report(data, rows, _args(tmp_path))
    png = tmp_path / "docid_kinds_toy.png"
    drawn = png.read_bytes()
    png.unlink()
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    docid_kinds.main(["--replot", str(tmp_path / "docid_kinds_toy.json")])
    assert png.read_bytes() == drawn
    (left, right) = figures[0].axes
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["bm25", "bm25+rm3", "naive"]
    # Memorization is a share of all documents: drawn on its whole scale, not zoomed to 0.6.
    assert right.get_ylim() == (0.0, 1.02)


def test_each_kind_is_built_as_dsi_index_builds_it(tmp_path) -> None:
    args = _args(tmp_path, minutes=20.0, max_steps=4728, embedder="tfidf")
    semantic = docid_kinds.kind_config("semantic", args)
    assert semantic.docids == "semantic" and semantic.docid_options == {"embedder": "tfidf"}
    assert semantic.train.max_minutes == 20.0 and semantic.train.max_steps == 4728
    title = docid_kinds.kind_config("title", _args(tmp_path, set=["model_config.size=tiny"]))
    assert title.docid_options == {} and title.model_config.size == "tiny"
    assert title.train.seed == 13 and title.train.max_steps is None
    with pytest.raises(ValueError, match="not a setting"):
        docid_kinds.kind_config("atomic", _args(tmp_path, set=["train.nope=1"]))
    # Steps without minutes: the steps decide, as with dsi index --max-steps.
    steps = docid_kinds.kind_config("semantic", _args(tmp_path, minutes=None, max_steps=14184))
    assert steps.train.max_minutes is None and steps.train.max_steps == 14184
    default = docid_kinds.kind_config("semantic", _args(tmp_path, minutes=None))
    assert default.train.max_minutes == 60.0 and default.train.max_steps is None
