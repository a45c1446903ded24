"""``dsi eval --split NAME`` of a BEIR folder, the progress bars of search and eval, and
``dsi info --plot`` of the training log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dsi.plots import plot_training_log
from tests.conftest import REPO
from tests.dsi.test_cli import TINY, dsi

TINY_DATA = REPO / "examples" / "tiny"


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    """examples/tiny indexed from its BEIR folder with its training split (a few steps)."""
    out = tmp_path_factory.mktemp("split") / "idx"
    dsi("index", "--corpus", str(TINY_DATA), "--output", str(out), "--max-steps", "3", *TINY)
    return out


def test_split_reads_the_folder_of_the_index_or_of_queries(index, tmp_path):
    by_files = dsi(
        *("eval", "--index", str(index), "--queries", str(TINY_DATA / "queries.jsonl")),
        *("--qrels", str(TINY_DATA / "qrels" / "test.tsv"), "-k", "5", "--quiet"),
        *("--run-file", str(tmp_path / "files.trec")),
    )
    by_split = dsi("eval", "--index", str(index), "--split", "test", "-k", "5", "--quiet")
    named = dsi(
        *("eval", "--index", str(index), "--split", "test", "--queries", str(TINY_DATA)),
        *("-k", "5", "--quiet", "--run-file", str(tmp_path / "named.trec")),
    )
    expected = json.loads(by_files.stdout)
    for proc in (by_split, named):
        found = json.loads(proc.stdout)
        assert found["dsi"] == expected["dsi"] and found["queries"] == expected["queries"]
    # The default run file is named after the split, as after a --qrels file of that name.
    assert json.loads(by_split.stdout)["run_file"] == f"{index}.test.trec"
    assert Path(f"{index}.test.trec").read_text() == (tmp_path / "files.trec").read_text()


def test_the_training_split_is_warned_of_and_refused(index):
    proc = dsi("eval", "--index", str(index), "--split", "train", "--quiet", check=False)
    assert proc.returncode == 2, proc.stderr
    warning, error = proc.stderr.strip().splitlines()
    assert warning.endswith("WARNING dsi: Split 'train' is the split this index was trained on.")
    assert error.startswith("dsi: error: ") and "would evaluate on training queries" in error
    # The test split is not the training split: no such warning.
    proc = dsi("eval", "--index", str(index), "--split", "test", "--quiet")
    assert "trained on" not in proc.stderr


def test_bad_split_use_is_one_sentence_and_exit_2(index, tmp_path):
    cases = [
        (["--split", "dev"], f"{TINY_DATA}: no qrels for split 'dev' (available: test, train)"),
        (["--split", "test", "--qrels", "x.tsv"], "give --split or --qrels"),
        ([], "Give --queries and --qrels, or --split NAME of a BEIR folder."),
        (
            ["--split", "test", "--queries", str(TINY_DATA / "queries.jsonl")],
            "is not a folder",
        ),
    ]
    for extra, message in cases:
        proc = dsi("eval", "--index", str(index), *extra, "--quiet", check=False)
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (extra, proc.stderr)
        assert lines[0].startswith("dsi: error: ")


def test_search_and_eval_over_a_file_show_a_bar_unless_quiet(index, tmp_path):
    queries = str(TINY_DATA / "queries.jsonl")
    total = len((TINY_DATA / "queries.jsonl").read_text().splitlines())
    shown = dsi("search", "--index", str(index), "--queries", queries, "--batch-size", "2")
    assert "search: 100%" in shown.stderr and f"{total}/{total}" in shown.stderr
    quiet = dsi(
        "search", "--index", str(index), "--queries", queries, "--batch-size", "2", "--quiet"
    )
    assert "search:" not in quiet.stderr and quiet.stdout == shown.stdout
    # Queries given as arguments are few: no bar.
    assert "search:" not in dsi("search", "--index", str(index), "some words").stderr
    judged = dsi(
        "eval", "--index", str(index), "--split", "test", "--run-file", str(tmp_path / "r")
    )
    assert "search: 100%" in judged.stderr


PNG = b"\x89PNG\r\n\x1a\n"


def test_info_plots_the_training_log(index, tmp_path):
    pytest.importorskip("matplotlib")
    log = [json.loads(line) for line in (index / "training_log.jsonl").read_text().splitlines()]
    assert log and {"step", "seconds", "loss"} <= set(log[-1])
    picture = tmp_path / "log.png"
    info = json.loads(dsi("info", str(index), "--plot", str(picture)).stdout)
    assert info["plot"] == str(picture) and picture.read_bytes().startswith(PNG)
    assert info["documents"] > 0, "the description is printed as without --plot"
    bad = dsi("info", str(index), "--plot", str(tmp_path / "log.txt"), check=False)
    assert bad.returncode == 2 and "unknown image format 'txt'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_dev_metric_gets_its_own_axis_and_an_index_without_a_log_is_refused(tmp_path):
    pytest.importorskip("matplotlib")
    points = [
        {"step": 50, "seconds": 10.0, "epoch": 0, "loss": 3.0},
        {"step": 100, "seconds": 20.0, "epoch": 1, "loss": 2.0, "dev_nDCG@10": 0.3},
    ]
    svg = plot_training_log(points, tmp_path / "log.svg").read_text()
    assert "dev_nDCG@10" in svg and "Loss over time" in svg
    without = plot_training_log(points[:1], tmp_path / "plain.svg").read_text()
    assert "dev_nDCG@10" not in without
    with pytest.raises(ValueError, match="no training log to plot"):
        plot_training_log([], tmp_path / "empty.png")


def test_plot_without_matplotlib_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(ValueError, match=r"^--plot needs matplotlib, which is not installed"):
        plot_training_log(
            [{"step": 1, "seconds": 1.0, "epoch": 0, "loss": 1.0}], tmp_path / "x.png"
        )
    assert not (tmp_path / "x.png").exists()
