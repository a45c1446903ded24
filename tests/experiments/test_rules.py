"""An experiment that decides something runs under a rule file committed before it, and records
the rule's commit; a rule file that is not committed as it is refuses the run (exit code 2)."""

from __future__ import annotations

import argparse
import json
import subprocess
from argparse import Namespace
from pathlib import Path

import pytest

from experiments import feedback, provenance, quality, word_weight


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    done = subprocess.run(["git", *identity, *args], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one committed rule (rules/committed.md) and one never added."""
    root = tmp_path / "repo"
    (root / "rules").mkdir(parents=True)
    _git(root, "init", "-q")
    (root / "rules" / "committed.md").write_text("# Rule\n\nDev nDCG@10 decides.\n")
    _git(root, "add", "rules/committed.md")
    _git(root, "commit", "-qm", "rule")
    (root / "rules" / "untracked.md").write_text("# Rule not committed\n")
    return root


def test_a_committed_rule_is_recorded_with_its_commit(repo):
    commit = _git(repo, "rev-parse", "HEAD")
    # Later commits of other files leave the rule's commit as it was.
    (repo / "other.txt").write_text("x\n")
    _git(repo, "add", "other.txt")
    _git(repo, "commit", "-qm", "other")
    record = provenance.rule_record(repo / "rules" / "committed.md")
    assert record == {"file": "rules/committed.md", "commit": commit}


def test_a_rule_not_committed_as_it_is_is_refused(repo, tmp_path):
    rule = repo / "rules" / "committed.md"
    cases = {
        "not committed": repo / "rules" / "untracked.md",
        "does not exist": repo / "rules" / "missing.md",
    }
    outside = tmp_path / "outside.md"
    outside.write_text("# Rule outside git\n")
    cases["not in a git repository"] = outside
    for reason, path in cases.items():
        with pytest.raises(provenance.RuleRefused, match=reason):
            provenance.rule_record(path)
    # Staged but not committed: still not committed.
    _git(repo, "add", "rules/untracked.md")
    with pytest.raises(provenance.RuleRefused, match="not committed"):
        provenance.rule_record(repo / "rules" / "untracked.md")
    # Edited after its commit: refused until the edit is committed (as a new rule's would be).
    rule.write_text("# Rule\n\nTest nDCG@10 decides.\n")
    with pytest.raises(provenance.RuleRefused, match="uncommitted changes"):
        provenance.rule_record(rule)
    _git(repo, "commit", "-qam", "edit")
    assert provenance.rule_record(rule)["commit"] == _git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("main", [quality.main, feedback.main, word_weight.main])
def test_experiments_that_decide_refuse_an_uncommitted_rule(main, repo, tmp_path, capsys):
    results = tmp_path / "results"
    rule = repo / "rules" / "untracked.md"
    with pytest.raises(SystemExit) as exit_:
        main(["--rule", str(rule), "--results", str(results), "--work", str(tmp_path / "w")])
    assert exit_.value.code == 2
    assert f"Rule file {rule} is not committed" in capsys.readouterr().err
    assert not results.exists()


def test_readers_that_decide_take_a_rule_and_the_others_none(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "SHARED", tmp_path)  # present: the datasets are not read here
    rule = repo / "rules" / "committed.md"
    args = quality.parse_reader_arguments(
        argparse.ArgumentParser(), ["--rule", str(rule)], decides=True
    )
    assert args.rule_record == provenance.rule_record(rule)
    args = quality.parse_reader_arguments(argparse.ArgumentParser(), [], decides=True)
    assert args.rule_record is None
    # A script that decides nothing has no --rule to take.
    with pytest.raises(SystemExit):
        quality.parse_reader_arguments(argparse.ArgumentParser(), ["--rule", str(rule)])


def test_the_quality_report_records_its_rule_and_provenance(repo, tmp_path):
    record = provenance.rule_record(repo / "rules" / "committed.md")
    metrics = {m: 0.5 for m in quality.METRICS} | {"ms_per_query": 1.0}
    row = {"name": "bm25", "description": "BM25", "dev": metrics, "test": metrics}
    data = {"name": "corpus", "corpus": Namespace(doc_ids=["d1"]), "train": None}
    data |= {"dev": {"q1": {"d1": 1}}, "test": {"q2": {"d1": 1}}}
    for rule in (record, None):
        args = Namespace(results=tmp_path / "results", minutes=1.0, seed=13, rule_record=rule)
        quality.write_report(data, [row], args)
        payload = json.loads((tmp_path / "results" / "quality_corpus.json").read_text())
        assert payload["rule"] == rule
        # The commit of the code that wrote it (dirty as the work tree was at its first use).
        assert set(payload["provenance"]) == {"commit", "dirty"}
        assert payload["provenance"]["commit"] == provenance.git_state(quality.ROOT)["commit"]
