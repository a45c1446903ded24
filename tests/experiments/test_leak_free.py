"""experiments.leak_free: the per-seed table of a default beside its baselines."""

from __future__ import annotations

import json

import pytest

from experiments import leak_free


def _block(ndcg: float, hits: float, n: int) -> dict:
    return {"nDCG@10": ndcg, "Hits@10": hits, "num_queries": n}


def _eval(dsi: float, bm25: float, unseen_dsi: float) -> dict:
    """A `dsi eval --compare` JSON with one baseline, seen and unseen parts."""
    report = {}
    for name, all_, unseen in (("dsi", dsi, unseen_dsi), ("bm25", bm25, 0.5)):
        report[name] = {
            **_block(all_, all_, 10),
            "seen": _block(all_, all_, 6),
            "unseen": _block(unseen, unseen, 4),
        }
    diff = [dsi - bm25, dsi - bm25 - 0.1, dsi - bm25 + 0.1]
    report["compare"] = {
        "bm25": {
            "nDCG@10": diff,
            "Hits@10": diff,
            "seen": {"nDCG@10": diff},
            "unseen": {"nDCG@10": diff},
        }
    }
    return report


def test_above_only_when_every_seed_is_above():
    summary = leak_free.summarize({13: _eval(0.8, 0.7, 0.6), 14: _eval(0.65, 0.7, 0.6)})
    verdict = summary["dsi_above_at_every_seed"]["bm25"]
    assert verdict["all"] == {"nDCG@10": False, "Hits@10": False}
    assert verdict["unseen"]["nDCG@10"] is True  # 0.6 > 0.5 at both seeds
    one = leak_free.summarize({13: _eval(0.8, 0.7, 0.4)})["dsi_above_at_every_seed"]["bm25"]
    assert one["all"]["nDCG@10"] is True and one["unseen"]["nDCG@10"] is False
    assert summary["seeds"]["13"]["bm25"]["all"]["dsi_minus"]["nDCG@10"][0] == pytest.approx(0.1)
    assert summary["seeds"]["14"]["dsi"]["unseen"]["queries"] == 4


def test_an_index_without_training_queries_has_no_seen_or_unseen_verdict():
    report = _eval(0.8, 0.7, 0.6)
    for block in (report["dsi"], report["bm25"], report["compare"]["bm25"]):
        del block["seen"], block["unseen"]
    verdict = leak_free.summarize({13: report})["dsi_above_at_every_seed"]["bm25"]
    assert verdict["all"] == {"nDCG@10": True, "Hits@10": True}
    assert verdict["seen"] == verdict["unseen"] == {"nDCG@10": None, "Hits@10": None}
    text = leak_free.markdown("x", leak_free.summarize({13: report}), {13: "e.json"})
    assert "| bm25 | yes | yes | – | – | – | – |" in text


def test_refuses_evals_without_intervals_or_with_other_baselines():
    bare = _eval(0.8, 0.7, 0.6)
    del bare["compare"]
    with pytest.raises(ValueError, match="--compare"):
        leak_free.summarize({13: bare})
    other = _eval(0.8, 0.7, 0.6)
    other["compare"] = {"dense": other["compare"]["bm25"]}
    other["dense"] = other.pop("bm25")
    with pytest.raises(ValueError, match="not \\['bm25'\\]"):
        leak_free.summarize({13: _eval(0.8, 0.7, 0.6), 14: other})


def test_main_writes_the_tables(tmp_path, capsys):
    paths = []
    for seed, dsi in ((13, 0.8), (14, 0.75)):
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps(_eval(dsi, 0.7, 0.6)))
        paths += ["--eval", str(seed), str(path)]
    leak_free.main(
        [*paths, "--name", "demo", "--results", str(tmp_path / "out"), "--label", "fused"]
    )
    text = (tmp_path / "out" / "demo.md").read_text()
    assert "## Seed 13 (all 10, seen 6, unseen 4)" in text and "## Seed 14" in text
    assert "| bm25 | yes | yes | yes | yes | yes | yes |" in text
    assert json.loads((tmp_path / "out" / "demo.json").read_text())["baselines"] == ["bm25"]
    assert "| fused | 0.800 |" in capsys.readouterr().out and "dsi default" not in text


def test_memorization_of_a_docid_index_is_kept_and_shown_under_its_seed(tmp_path):
    report = _eval(0.4, 0.7, 0.1)
    report["dsi"].update({"memorization@1": 0.871, "memorization@10": 0.872,
                          "memorization_documents": 5183,
                          "memorization_without_docid_words@1": 0.23,
                          "memorization_without_docid_words@10": 0.319})  # fmt: skip
    path = tmp_path / "s13.json"
    path.write_text(json.dumps(report))
    plain = tmp_path / "s14.json"
    plain.write_text(json.dumps(_eval(0.45, 0.7, 0.1)))
    leak_free.main(["--eval", "13", str(path), "--eval", "14", str(plain), "--name", "kw",
                    "--results", str(tmp_path), "--label", "keyword docids"])  # fmt: skip
    saved = json.loads((tmp_path / "kw.json").read_text())
    assert saved["memorization"] == {"13": {"memorization@1": 0.871, "memorization@10": 0.872,
                                            "memorization_without_docid_words@1": 0.23,
                                            "memorization_without_docid_words@10": 0.319,
                                            "documents": 5183}}  # fmt: skip
    text = (tmp_path / "kw.md").read_text()
    line = ("memorization@1 0.871, @10 0.872 over 5,183 documents; without the docid's words "
            "@1 0.230, @10 0.319 (`dsi eval --memorization`).")  # fmt: skip
    assert text.count(line) == 1 and text.index(line) < text.index("## Seed 14")
    assert "memorization" not in leak_free.summarize({14: _eval(0.45, 0.7, 0.1)})
