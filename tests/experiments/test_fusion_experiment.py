"""The fused kind end to end on examples/tiny: `dsi index --docids ngram+semantic`, search, and
experiments/fusion.py's grid, ablation and latency (a smoke run: it decides nothing)."""

from __future__ import annotations

import json

import pytest

from dsi.cli import main as dsi_main
from dsi.data import load_qrels
from dsi.retriever import Retriever
from experiments import fusion
from tests.conftest import REPO

TINY = REPO / "examples" / "tiny"


@pytest.fixture(scope="module")
def fused_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fusion") / "idx"
    code = dsi_main(
        [
            *("index", "--corpus", str(TINY), "--output", str(out), "--docids", "ngram+semantic"),
            *("--set", "model_config.size=tiny", "--set", "model_config.vocab_size=200"),
            *("--set", "train.batch_size=8", "--set", "train.warmup_steps=2"),
            *("--max-steps", "6", "--quiet"),
        ]
    )
    assert code == 0
    return out


@pytest.mark.slow
def test_a_fused_index_built_from_the_command_line_searches(fused_dir):
    retriever = Retriever.load(fused_dir, device="cpu")
    assert retriever.index.fused is not None
    hits = retriever.search(["which town is famous for reed clocks", "copper baskets"], k=10)
    corpus = set(retriever.index.corpus.doc_ids)
    assert all(len(row) == 10 and {h.doc_id for h in row} <= corpus for row in hits)


@pytest.mark.slow
def test_grid_ablation_and_latency_write_their_tables(fused_dir, tmp_path):
    dev = ["--dev", str(fused_dir), str(TINY / "queries.jsonl"), str(TINY / "qrels" / "test.tsv")]
    fusion.main(["grid", *dev, "--output", str(tmp_path / "grid")])
    result = json.loads((tmp_path / "grid.json").read_text())
    assert result["rule"] is None  # a smoke run decides nothing
    cells = {(r["fusion_weight"], r["plan_weight"]) for r in result["rows"]}
    expected = {(w, p) for w in fusion.FUSION_WEIGHTS[1:] for p in fusion.PLAN_WEIGHTS}
    assert cells == expected | {(0.0, 0.0)}
    assert result["best"]["fusion_weight"] in fusion.FUSION_WEIGHTS
    fusion.main(["ablation", *dev, "--weights", "0.5", "1", "--output", str(tmp_path / "abl")])
    rows = json.loads((tmp_path / "abl.json").read_text())["rows"]
    assert {(r["terms"], r["docids"]) for r in rows} == {
        ("model", True),
        ("model", False),
        ("own", True),
        ("own", False),
    }
    judged = len(load_qrels(TINY / "qrels" / "test.tsv"))
    assert all(r["num_queries"] == judged for r in rows)
    fusion.main(
        ["latency", *dev, "--weights", "0.5", "1", "--latency-queries", "6"]
        + ["--output", str(tmp_path / "lat")]
    )
    rows = json.loads((tmp_path / "lat.json").read_text())["rows"]
    assert [r["ranking"] for r in rows] == ["lexical", "fused", "fused+plan"]
    assert all(r["batch32_ms"] > 0 and r["batch1_ms"] > 0 for r in rows)
    assert (tmp_path / "lat.md").read_text().startswith("# fusion latency")


def _row(fusion_weight: float, plan_weight: float, ndcg: float) -> dict:
    return {"fusion_weight": fusion_weight, "plan_weight": plan_weight, "mean nDCG@10": ndcg}


def test_the_rule_takes_the_cheapest_of_the_level_candidates():
    rows = [
        _row(0.0, 0.0, 0.700),
        _row(0.5, 1.0, 0.710),
        _row(1.0, 0.0, 0.7085),
        _row(2.0, 4.0, 0.701),
    ]
    # 0.7085 is within 0.002 of the best 0.710 and needs no planning prior: it wins.
    assert fusion.decide(rows) == {"fusion_weight": 1.0, "plan_weight": 0.0}
    rows.append(_row(0.5, 0.0, 0.7095))  # level too, and a smaller fusion weight
    assert fusion.decide(rows) == {"fusion_weight": 0.5, "plan_weight": 0.0}
    rows.append(_row(0.0, 0.0, 0.7081))  # the lexical ranking alone is level: it wins
    assert fusion.decide(rows) == {"fusion_weight": 0.0, "plan_weight": 0.0}
    assert fusion.decide([_row(0.0, 0.0, 0.6), _row(0.25, 2.0, 0.65)]) == {
        "fusion_weight": 0.25,
        "plan_weight": 2.0,
    }
