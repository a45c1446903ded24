"""The command line explains itself and fits other tools: help for every option, ``--docids``
choices from the one dispatch, defaults shown; ``dsi search --output/--format``; ``dsi info``.

Commands run in this process through the CLI's ``main`` (the same code a user runs, seconds
faster than a subprocess) on small indexes built once per module.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from dsi.cli import TSV_HEADER, _parser, main
from dsi.kinds import docid_kinds
from dsi.metrics import read_trec_run
from tests.dsi.test_cli import TINY, write_corpus
from tests.dsi.test_guard import NOTES

QUERIES = ["river stone", "amber birch", "quartz"]


@pytest.fixture(scope="module")
def atomic_index(tmp_path_factory) -> Path:
    """A small atomic-docid index built by ``dsi index`` (two training steps)."""
    folder = tmp_path_factory.mktemp("atomic")
    corpus = write_corpus(folder / "corpus.jsonl")
    out = folder / "idx"
    args = ["index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "2"]
    assert main([*args, *TINY, "--quiet"]) == 0
    return out


def search(capsys, index: Path, *args: str) -> str:
    """``dsi search`` in this process: exit 0; its standard output."""
    capsys.readouterr()
    assert main(["search", "--index", str(index), "-k", "3", "--quiet", *args]) == 0
    return capsys.readouterr().out


def refused(capsys, args: list[str], *needles: str) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dsi: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_subcommand_has_help() -> None:
    found = subcommands()
    assert {"index", "search", "eval", "add", "serve"} <= set(found)
    missing = [
        f"dsi {name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in found.items()
        for action in parser._actions
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert not missing, f"options without help text: {missing}"


def test_defaults_are_shown() -> None:
    found = subcommands()
    text = " ".join(found["search"].format_help().split())
    assert "documents returned per query (default: 10)" in text
    assert "queries decoded together (default: 32)" in text
    text = " ".join(found["eval"].format_help().split())
    assert "documents retrieved per query (default: 100)" in text
    text = " ".join(found["add"].format_help().split())
    assert "(default: documents)" in text and "(default: 0.05)" in text
    # An option without a value to show says nothing rather than "(default: None)".
    for parser in found.values():
        assert "default: None" not in parser.format_help()
        assert "default: False" not in parser.format_help()


def test_docids_choices_come_from_the_dispatch(capsys) -> None:
    text = " ".join(subcommands()["index"].format_help().split())
    kinds = docid_kinds()
    assert kinds[0] == "ngram" and {"semantic", "atomic", "naive"} <= set(kinds)
    assert f"one of: {', '.join(kinds)}" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "--corpus", "c.jsonl", "--output", "out", "--docids", "words"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'words'" in capsys.readouterr().err


# ------------------------------------------------------------------ search --output/--format
def test_search_formats_agree_and_read_back(atomic_index, tmp_path, capsys) -> None:
    printed = search(capsys, atomic_index, *QUERIES)
    records = [json.loads(line) for line in printed.splitlines()]
    assert [r["query"] for r in records] == QUERIES and "query_id" not in records[0]
    expected = {str(i): {h["doc_id"]: h["score"] for h in r["hits"]} for i, r in enumerate(records)}
    assert all(1 <= len(hits) <= 3 for hits in expected.values())

    # jsonl to a file: what standard output shows, and nothing printed.
    out = tmp_path / "results.jsonl"
    assert search(capsys, atomic_index, "--output", str(out), *QUERIES) == ""
    assert out.read_text() == printed

    # trec to a file: read back by our reader, queries numbered 0..n-1 in order.
    run_file = tmp_path / "results.trec"
    assert (
        search(capsys, atomic_index, "--format", "trec", "--output", str(run_file), *QUERIES) == ""
    )
    run = read_trec_run(run_file)
    assert list(run) == ["0", "1", "2"]
    assert {q: set(d) for q, d in run.items()} == {q: set(d) for q, d in expected.items()}
    for qid, docs in run.items():
        for doc_id, score in docs.items():
            assert score == pytest.approx(expected[qid][doc_id], abs=1e-5)
    rows = [line.split() for line in run_file.read_text().splitlines()]
    assert [int(r[3]) for r in rows if r[0] == "0"] == list(range(1, len(run["0"]) + 1))
    assert {r[1] for r in rows} == {"Q0"} and {r[5] for r in rows} == {"dsi"}
    # ... and to standard output, the same lines.
    assert search(capsys, atomic_index, "--format", "trec", *QUERIES) == run_file.read_text()

    # tsv: a header, then query_id, doc_id, rank, score in each query's ranked order.
    tsv = tmp_path / "results.tsv"
    assert search(capsys, atomic_index, "--format", "tsv", "--output", str(tsv), *QUERIES) == ""
    lines = tsv.read_text().splitlines()
    assert lines[0] == TSV_HEADER
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == 4 for r in rows)
    for i, record in enumerate(records):
        mine = [r for r in rows if r[0] == str(i)]
        assert [r[1] for r in mine] == [h["doc_id"] for h in record["hits"]]
        assert [int(r[2]) for r in mine] == list(range(1, len(mine) + 1))
        assert [round(float(r[3]), 5) for r in mine] == [h["score"] for h in record["hits"]]
    assert search(capsys, atomic_index, "--format", "tsv", *QUERIES) == tsv.read_text()


def test_search_a_file_of_queries_keeps_their_ids(atomic_index, tmp_path, capsys) -> None:
    queries = tmp_path / "q.tsv"
    queries.write_text(
        "".join(f"q-{n}\t{text}\n" for n, text in zip((7, 3), QUERIES[:2], strict=True))
    )
    run_file = tmp_path / "run.trec"
    args = ["--queries", str(queries), "--format", "trec", "--output", str(run_file)]
    search(capsys, atomic_index, *args)
    assert list(read_trec_run(run_file)) == ["q-7", "q-3"]
    records = [
        json.loads(line)
        for line in search(capsys, atomic_index, "--queries", str(queries)).splitlines()
    ]
    assert [(r["query_id"], r["query"]) for r in records] == [
        ("q-7", QUERIES[0]),
        ("q-3", QUERIES[1]),
    ]
    tsv = search(capsys, atomic_index, "--queries", str(queries), "--format", "tsv")
    assert {line.split("\t")[0] for line in tsv.splitlines()[1:]} == {"q-7", "q-3"}


@pytest.mark.parametrize("fmt", ["jsonl", "trec", "tsv"])
def test_search_output_replaces_only_its_own_file(atomic_index, tmp_path, capsys, fmt) -> None:
    mine = tmp_path / "notes.txt"
    mine.write_bytes(NOTES)
    args = ["search", "--index", str(atomic_index), "--format", fmt, "--output", str(mine)]
    refused(capsys, [*args, "river"], f"at {mine}:", f"a file of {len(NOTES)} bytes")
    assert mine.read_bytes() == NOTES
    folder = tmp_path / "folder"
    folder.mkdir()
    args[-1] = str(folder)
    refused(capsys, [*args, "river"], f"at {folder}:", "a folder")

    # Its own earlier output (and an empty file) it replaces.
    out = tmp_path / f"out.{fmt}"
    out.write_text("")
    search(capsys, atomic_index, "--format", fmt, "--output", str(out), "river")
    first = out.read_text()
    search(capsys, atomic_index, "--format", fmt, "--output", str(out), "amber", "quartz")
    assert out.read_text() != first and out.read_text().count("\n") >= 2
    # ... but not another format's output.
    other = {"jsonl": "trec", "trec": "tsv", "tsv": "jsonl"}[fmt]
    args = ["search", "--index", str(atomic_index), "--format", other, "--output", str(out)]
    refused(capsys, [*args, "river"], f"at {out}:")


def test_search_takes_queries_one_way(atomic_index, tmp_path, capsys) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "q1", "text": "river"}\n')
    args = ["search", "--index", str(atomic_index), "--queries", str(queries), "amber"]
    refused(capsys, args, "not both")
    refused(capsys, ["search", "--index", str(atomic_index)], "--queries FILE")


# ------------------------------------------------------------------------------- dsi info
def info(capsys, directory: Path) -> dict:
    capsys.readouterr()
    assert main(["info", str(directory)]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_describes_the_index_from_its_manifest(atomic_index, capsys) -> None:
    import dsi

    found = info(capsys, atomic_index)
    manifest = json.loads((atomic_index / "manifest.json").read_text())
    assert found["kind"] == "docid" and found["docid_scheme"] == "atomic"
    assert found["documents"] == 10 == manifest["num_docs"]
    assert found["settings"] == json.loads((atomic_index / "index.json").read_text())
    assert found["settings"]["model_config"]["size"] == "tiny"
    assert found["lineage"] == manifest["lineage"] and found["lineage"][0]["event"] == "build"
    assert found["library_version"] == dsi.__version__
    assert found["parameters"] == manifest["parameters"] > 0
    assert set(found["files"]) == set(manifest["checksums"])
    for name, size in found["files"].items():
        assert size == (atomic_index / name).stat().st_size
    assert found["total_bytes"] == sum(found["files"].values())
    assert "missing_files" not in found
    training = found["training"]
    assert training["runs"] == 1 and training["steps"] == 2 and training["stopped_by"] == "steps"
    assert training["final_loss"] == manifest["lineage"][0]["training"]["final_loss"]


def test_info_does_not_load_the_model(atomic_index, tmp_path, capsys) -> None:
    import shutil

    copy = tmp_path / "idx"
    shutil.copytree(atomic_index, copy)
    weights = next(
        name
        for name in json.loads((copy / "manifest.json").read_text())["checksums"]
        if name.endswith(".safetensors")
    )
    (copy / weights).write_bytes(b"not a model")  # loading it would fail
    found = info(capsys, copy)
    assert found["files"][weights] == len(b"not a model")
    (copy / weights).unlink()
    found = info(capsys, copy)
    assert found["files"][weights] is None and found["missing_files"] == [weights]


def test_info_names_the_ngram_kind(tmp_path, capsys) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "idx"
    args = ["index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "1"]
    assert main([*args, *TINY, "--docids", "ngram", "--quiet"]) == 0
    found = info(capsys, out)
    assert found["kind"] == "ngram" == found["docid_scheme"] == found["settings"]["docids"]


def test_info_refuses_what_is_not_an_index(tmp_path, capsys) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_bytes(NOTES)
    refused(capsys, ["info", str(folder)], f"{folder} is not a dsi index")
    refused(capsys, ["info", str(tmp_path / "absent")], "no index directory at")
    (folder / "manifest.json").write_text('{"format": "something else"}')
    refused(capsys, ["info", str(folder)], "is not a dsi index manifest")
