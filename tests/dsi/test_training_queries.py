"""Training-query hygiene: a build reads only the queries judged in its training qrels.

Nothing else in a queries file (test and dev queries share SciFact's ``queries.jsonl``) may reach
the tokenizer, the training examples or the saved index.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dsi.data import Corpus, TrainingQueries
from dsi.index import GenerativeIndex, training_data_digest
from dsi.seal import NgramGenerativeIndex
from tests.conftest import REPO, tiny_config
from tests.dsi.test_cli import TINY, dsi

TINY_CORPUS = REPO / "examples" / "tiny"
# Unjudged queries whose words appear nowhere in the corpus; if the tokenizer read them, its
# pieces (and so the model and its rankings) would change.
RARE = ["zyqxwv quorblet", "quorblet zyqxwv fnarg", "fnarg zyqxwvian quorbletting"]


def _tiny_copy(folder: Path, extra: int) -> Path:
    """examples/tiny as a BEIR folder, with ``extra`` unjudged queries appended to its queries."""
    shutil.copytree(TINY_CORPUS, folder)
    if extra:
        with (folder / "queries.jsonl").open("a", encoding="utf-8") as handle:
            for i in range(extra):
                text = f"{RARE[i % len(RARE)]} ǂwhorl {i}"
                handle.write(json.dumps({"_id": f"unjudged{i}", "text": text}) + "\n")
    return folder


def _tokenizer_files(index: Path) -> dict[str, bytes]:
    model = index / "model"
    names = [p.name for p in model.iterdir() if p.name.startswith("tokenizer")]
    assert "tokenizer.json" in names
    return {name: (model / name).read_bytes() for name in sorted(names)}


@pytest.mark.parametrize("docids", ["atomic", pytest.param("ngram", marks=pytest.mark.slow)])
def test_unjudged_queries_reach_neither_tokenizer_nor_model(tmp_path, docids):
    built = {}
    for name, extra in (("clean", 0), ("extra", 60)):
        corpus = _tiny_copy(tmp_path / f"{name}_data", extra)
        out = tmp_path / name
        args = ["index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "4", *TINY]
        dsi(*args, "--docids", docids, "--quiet")
        built[name] = out

    clean, extra = built["clean"], built["extra"]
    assert _tokenizer_files(clean) == _tokenizer_files(extra), (
        "the tokenizer of a build whose queries file holds unjudged queries differs"
    )
    assert (clean / "training_queries.jsonl").read_bytes() == (
        extra / "training_queries.jsonl"
    ).read_bytes()
    digests = [json.loads((i / "manifest.json").read_text())["lineage"][0] for i in built.values()]
    assert digests[0]["data_digest"] == digests[1]["data_digest"]
    assert digests[0]["training_steps"] == 4
    queries = str(TINY_CORPUS / "queries.jsonl")
    found = [
        dsi("search", "--index", str(i), "--queries", queries, "-k", "5").stdout
        for i in built.values()
    ]
    assert found[0] == found[1], "search results differ between the two builds"


def test_training_queries_keep_only_judged_queries_minus_dev():
    queries = {"q3": "third", "q1": "first", "q2": "second", "test": "a test query", "q4": "x"}
    qrels = {"q1": {"d1": 1, "d2": 0}, "q2": {"d2": 2}, "q3": {"d3": 1}, "q4": {"d4": 0}}
    qrels["missing"] = {"d1": 1}  # judged, but the queries file lacks it
    training = TrainingQueries(queries, qrels, dev={"q2"})
    assert training.queries == {"q3": "third", "q1": "first"}, "file order, judged, not dev"
    assert training.texts() == ["third", "first"]
    assert set(training.qrels) == {"q1", "q3"} and len(training) == 2
    assert training.pairs({"d1", "d2"}) == [("first", "d1")]
    assert training.pairs({"d1", "d3"}) == [("first", "d1"), ("third", "d3")]
    assert TrainingQueries(queries, qrels).texts() == ["third", "first", "second"]


def test_the_data_digest_changes_with_what_a_build_learns_from_alone():
    corpus = Corpus(["d1", "d2"], ["first", ""], ["one text", "two text"], source="t")
    queries = {"q1": "which one", "q2": "which two", "q3": "unjudged"}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    digest = training_data_digest(corpus, TrainingQueries(queries, qrels, dev={"q2"}))
    # Unjudged queries, dev queries and queries missing from the file: the same digest.
    fewer = {"q1": "which one", "q2": "another dev text"}
    assert training_data_digest(corpus, TrainingQueries(fewer, qrels, dev={"q2"})) == digest
    assert training_data_digest(corpus, TrainingQueries(queries, {"q1": {"d1": 1}})) == digest
    # One more judged training query, another document text, no queries: another digest.
    assert training_data_digest(corpus, TrainingQueries(queries, qrels)) != digest
    edited = Corpus(["d1", "d2"], ["first", ""], ["one text", "two texts"], source="t")
    assert training_data_digest(edited, TrainingQueries(queries, qrels, dev={"q2"})) != digest
    assert training_data_digest(corpus, None) != digest


@pytest.mark.parametrize("builder", [GenerativeIndex, NgramGenerativeIndex])
def test_both_index_kinds_record_the_data_digest_and_steps(builder):
    rng_words = "river stone lantern copper meadow falcon harbor violet thunder orchard".split()
    texts = [" ".join(rng_words[i : i + 4]) for i in range(6)]
    corpus = Corpus([f"d{i}" for i in range(6)], [""] * 6, texts, source="t")
    queries = {"q1": "river stone", "q2": "violet thunder", "q3": "never judged"}
    judged = {"q1": {"d0": 1}}
    config = tiny_config("ngram" if builder is NgramGenerativeIndex else "atomic", steps=2)
    entries = []
    for qrels in (judged, {**judged, "q2": {"d4": 1}}):
        index = builder.build(corpus, config, TrainingQueries(queries, qrels), progress_bar=False)
        entries.append(index.lineage[0])
    assert [e["training_steps"] for e in entries] == [2, 2]
    assert entries[0]["data_digest"] == training_data_digest(
        corpus, TrainingQueries({"q1": "river stone"}, judged)
    )
    assert entries[0]["data_digest"] != entries[1]["data_digest"]
