"""experiments/quality.py keeps a trained run when only its decoding settings changed, and the
dev points of a run resumed from its checkpoint."""

from __future__ import annotations

import json
import subprocess
from argparse import Namespace
from pathlib import Path

import pytest

from dsi.config import IndexConfig
from experiments import provenance, quality


def _fingerprint(settings: dict) -> dict:
    return quality.fingerprint_of(IndexConfig().updated(settings), Namespace(eval_every=10.0))


def test_decoding_settings_are_set_apart_from_training_ones():
    base = _fingerprint({})
    trained, decoding = quality._decoding_apart(base)
    assert decoding == {"scoring": "bm25"}
    assert trained["config"]["docid_options"] == {"preset": None}
    assert trained["eval_every"] == 10.0

    rescored = _fingerprint({"docid_options.scoring": "intersective"})
    assert rescored != base
    assert quality._decoding_apart(rescored)[0] == trained
    retrained = _fingerprint({"docid_options.preset": "without_queries"})
    assert quality._decoding_apart(retrained)[0] != trained
    # The fingerprint is the settings as index.json holds them (experiments.provenance).
    assert base["config"] == provenance.config_fingerprint(quality.resolved_config(IndexConfig()))
    assert "generator" not in base["config"] and "window_length" not in base["config"]["train"]


def test_a_retired_lever_is_refused_naming_the_commit_it_ran_at(capsys):
    args = Namespace(minutes=60.0, seed=13)
    assert set(quality.RETIRED).isdisjoint(quality.CONFIGS)
    with pytest.raises(ValueError, match="'wide' sets what dsi no longer has .* commit f89ab7c"):
        quality.config_for("wide", args)
    with pytest.raises(SystemExit):
        quality.main(["--configs", "default", "no_copy"])
    err = capsys.readouterr().err
    assert "'no_copy'" in err and "b7249fd" in err
    # Every lever left builds a config of today's settings.
    for name in quality.CONFIGS:
        quality.config_for(name, args)


def test_other_docid_schemes_have_no_decoding_settings():
    semantic = _fingerprint({"docids": "semantic"})
    assert quality._decoding_apart(semantic) == (semantic, {})


def test_a_resumed_run_keeps_its_earlier_dev_points(tmp_path):
    fingerprint = _fingerprint({})
    path = tmp_path / "curve.json"
    assert quality.measured_curve(path, fingerprint) == []
    curve = [{"minutes": m, "nDCG@10": m / 100} for m in (10.0, 20.0, 30.0)]
    path.write_text(json.dumps({"fingerprint": fingerprint, "points": curve}))
    kept = quality.measured_curve(path, fingerprint)
    assert kept == curve
    # Resumed from the checkpoint at 25 minutes: the point at 30 is measured again.
    quality.add_point(kept, {"minutes": 30.0, "nDCG@10": 0.5})
    assert [(p["minutes"], p["nDCG@10"]) for p in kept] == [(10.0, 0.1), (20.0, 0.2), (30.0, 0.5)]
    # Started afresh: every later point goes.
    quality.add_point(kept, {"minutes": 10.0, "nDCG@10": 0.05})
    assert kept == [{"minutes": 10.0, "nDCG@10": 0.05}]
    # Another run's points are not its own.
    assert quality.measured_curve(path, _fingerprint({"train.learning_rate": 1e-3})) == []


def _beir_folder(folder: Path, train_queries: int, test_queries: int) -> None:
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": f"title {i}", "text": f"text {i}"} for i in range(20)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    qids = [f"q{i}" for i in range(train_queries + test_queries)]
    queries = [{"_id": q, "text": f"query {q}"} for q in qids]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for split, chosen in (("train", qids[:train_queries]), ("test", qids[train_queries:])):
        if chosen:
            rows = "".join(f"{q}\td{i % 20}\t1\n" for i, q in enumerate(chosen))
            (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)


def test_dev_splits_of_each_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "SHARED", tmp_path)
    _beir_folder(tmp_path / "withqueries", train_queries=200, test_queries=30)
    _beir_folder(tmp_path / "withoutqueries", train_queries=0, test_queries=50)

    supervised = quality.load_dataset("withqueries", 13)
    assert (len(supervised["train"]), len(supervised["dev"])) == (50, 150)
    assert not set(supervised["train"]) & set(supervised["dev"])
    assert len(supervised["test"]) == 30

    # The same folder without its training queries to train on: all of them are dev.
    unsupervised = quality.load_dataset("withqueries_unsupervised", 13)
    assert unsupervised["train"] is None
    assert set(unsupervised["dev"]) == set(supervised["train"]) | set(supervised["dev"])
    assert unsupervised["test"] == supervised["test"]
    assert unsupervised["name"] == "withqueries_unsupervised"  # its own work dir and results

    alone = quality.load_dataset("withoutqueries", 13)
    assert alone["train"] is None and (len(alone["dev"]), len(alone["test"])) == (10, 40)
    assert not set(alone["dev"]) & set(alone["test"])


def test_a_finished_run_is_read_back_only_as_it_was_trained(tmp_path):
    args = Namespace(work=tmp_path, minutes=60.0, seed=13, eval_every=10.0, quiet=True)
    data = {"name": "corpus"}  # every case below is refused before the corpus is read
    work = quality.run_dir(data, "default", args)
    assert quality.finished_run(data, "default", args) is None  # never run

    _, config = quality.config_for("default", args)
    work.mkdir(parents=True)
    result = {"fingerprint": quality.fingerprint_of(config, args)}
    (work / "result.json").write_text(json.dumps(result))
    # Its result is there, its model is not: reading it back would train a new one.
    assert quality.finished_run(data, "default", args) is None
    # Nor is a model read back for new decoding (evaluate_again, tune_decoding): refused.
    with pytest.raises(FileNotFoundError, match="no trained model"):
        quality.read_back(data, "default", config, args)
    assert not (work / "build").exists()

    (work / "build" / "checkpoint").mkdir(parents=True)
    # Run with another budget, the same name is another configuration.
    assert (
        quality.finished_run(data, "default", Namespace(**{**vars(args), "minutes": 30.0})) is None
    )
    assert not any((work / "build" / "checkpoint").iterdir())


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    done = subprocess.run(["git", *identity, *args], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_provenance_names_the_commit_and_whether_the_tree_differed(tmp_path):
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}  # not a repository
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "commit", "-qm", "code")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert provenance.git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_state(tmp_path) == {"commit": head, "dirty": True}


def test_a_finished_run_trained_on_other_data_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "SHARED", tmp_path / "data")
    _beir_folder(tmp_path / "data" / "withqueries", train_queries=200, test_queries=30)
    args = Namespace(work=tmp_path / "work", minutes=60.0, seed=13, eval_every=10.0, quiet=True)
    data = quality.load_dataset("withqueries", 13)
    digest = quality.data_digest(data)
    # Unjudged queries in the queries file change nothing; one more judged training query does.
    assert quality.data_digest({**data, "queries": {**data["queries"], "x": "unjudged"}}) == digest
    extra = {**data, "queries": {**data["queries"], "x": "judged"}}
    extra["train"] = {**data["train"], "x": {"d0": 1}}
    assert quality.data_digest(extra) != digest

    _, config = quality.config_for("default", args)
    work = quality.run_dir(data, "default", args)
    (work / "build" / "checkpoint").mkdir(parents=True)
    fingerprint = quality.fingerprint_of(config, args)
    kept = {"fingerprint": fingerprint, "provenance": {"data_digest": digest}, "dev": {}}
    # Kept as it is: same configuration, same data (no training, no reading back).
    (work / "result.json").write_text(json.dumps(kept))
    assert quality.run_config(data, "default", args) == {
        **kept,
        "description": quality.CONFIGS["default"][0],
    }
    # Trained on other data, or before results recorded their provenance: never read back.
    for saved in (
        {**kept, "provenance": {"data_digest": quality.data_digest(extra)}},
        {"fingerprint": fingerprint},
    ):
        (work / "result.json").write_text(json.dumps(saved))
        assert quality.stale_data(saved, digest) is not None
        assert quality.finished_run(data, "default", args) is None
        assert not any((work / "build" / "checkpoint").iterdir())
    assert "other data" in quality.stale_data({"provenance": {"data_digest": "0" * 64}}, digest)
    assert quality.stale_data(kept, digest) is None

    # Dev points measured on other data are measured again.
    path = work / "curve.json"
    path.write_text(json.dumps({"fingerprint": fingerprint, "data_digest": digest, "points": [1]}))
    assert quality.measured_curve(path, fingerprint, digest) == [1]
    assert quality.measured_curve(path, fingerprint, quality.data_digest(extra)) == []
