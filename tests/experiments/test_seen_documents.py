"""experiments/seen_documents.py tabulates the seen and unseen parts of `dsi eval` outputs."""

from __future__ import annotations

import json

import pytest

from experiments import seen_documents


def _block(ndcg: float, hits: float, seen: tuple, unseen: tuple) -> dict:
    return {
        "nDCG@10": ndcg,
        "Hits@10": hits,
        "num_queries": seen[2] + unseen[2],
        "seen": {"nDCG@10": seen[0], "Hits@10": seen[1], "num_queries": seen[2]},
        "unseen": {"nDCG@10": unseen[0], "Hits@10": unseen[1], "num_queries": unseen[2]},
    }


def test_each_split_gives_a_seen_and_an_unseen_row_for_dsi_and_every_baseline(tmp_path):
    evaluation = {
        "model": "runs/x",
        "dsi": _block(0.8, 0.9, (0.9, 0.95, 3), (0.6, 0.7, 2)),
        "bm25": _block(0.7, 0.8, (0.71, 0.81, 3), (0.68, 0.79, 2)),
        "compare": {"bm25": {"nDCG@10": [0.1, 0.0, 0.2]}},
    }
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps(evaluation))
    seen_documents.main(
        ["--eval", "dev", str(dev), "--label", "ngram", "--results", str(tmp_path), "--name", "sd"]
    )
    rows = json.loads((tmp_path / "sd.json").read_text())["rows"]
    assert [(r["split"], r["documents"], r["queries"]) for r in rows] == [
        ("dev", "with training queries", 3),
        ("dev", "without", 2),
    ]
    assert rows[1]["bm25"] == {"nDCG@10": 0.68, "Hits@10": 0.79}
    assert "compare" not in rows[0]
    text = (tmp_path / "sd.md").read_text()
    assert "| dev | without | 2 | 0.600 | 0.680 | 0.700 | 0.790 |" in text


def test_an_evaluation_without_training_queries_is_refused(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"dsi": {"nDCG@10": 0.5, "Hits@10": 0.6}}))
    with pytest.raises(SystemExit, match="no seen/unseen parts"):
        seen_documents.main(["--eval", "test", str(plain), "--results", str(tmp_path)])
