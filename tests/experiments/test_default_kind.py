"""experiments/default_kind.py: rules/default_kind.md's decision from dev eval JSONs."""

from __future__ import annotations

import json

from experiments import default_kind


def test_a_side_prefers_the_fused_kind_only_by_the_margin_over_the_pooled_mean():
    assert default_kind.side([(0.70, 0.711)])["verdict"] == "preferred"
    assert default_kind.side([(0.70, 0.709)])["verdict"] == "not preferred"
    # Pooled: Cranfield +0.03, SciFact-from-documents -0.005, mean +0.0125.
    pooled = default_kind.side([(0.30, 0.33), (0.60, 0.595)])
    assert pooled["verdict"] == "preferred"
    assert abs(pooled["ngram+semantic"] - pooled["ngram"] - 0.0125) < 1e-9
    assert default_kind.side([(0.30, None)])["verdict"] == "pending"


def test_the_fused_kind_needs_both_sides_and_one_refusal_settles_it():
    assert default_kind.default("preferred", "preferred") == "ngram+semantic"
    assert default_kind.default("preferred", "not preferred") == "ngram"
    assert default_kind.default("not preferred", "pending") == "ngram"
    assert default_kind.default("preferred", "pending") == "pending"


def test_the_table_reads_dsi_eval_files_and_marks_missing_runs_pending(tmp_path, capsys):
    def evaluation(name: str, ndcg: float) -> str:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"dsi": {"nDCG@10": ndcg, "Hits@10": 0.9}}))
        return str(path)

    out = tmp_path / "default_kind"
    code = default_kind.main(
        ["--with-queries", "scifact", evaluation("n", 0.789), evaluation("f", 0.781)]
        + ["--without", "cranfield", evaluation("nc", 0.30), str(tmp_path / "absent.json")]
        + ["--output", str(out)]
    )
    assert code == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["sides"]["with training queries"]["verdict"] == "not preferred"
    assert result["sides"]["without"]["verdict"] == "pending"
    assert result["default"] == "ngram"
    assert result["rule"] is None
    assert "pending" in out.with_suffix(".md").read_text()
