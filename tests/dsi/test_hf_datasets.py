"""Hugging Face ``datasets`` objects as corpus, queries and qrels: the file loaders' checks, with
each bad row named by its number and id (skipped where ``datasets`` is not installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsi.data import (
    Corpus,
    DataError,
    load_corpus,
    load_qrels,
    load_queries,
    qrels_from_records,
    queries_from_records,
)

datasets = pytest.importorskip("datasets")

TINY = Path(__file__).resolve().parents[2] / "examples" / "tiny"


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_tiny_beir_folder_from_datasets_equals_the_file_loaders() -> None:
    corpus = Corpus.from_records(datasets.Dataset.from_list(jsonl_rows(TINY / "corpus.jsonl")))
    expected = load_corpus(TINY)
    assert (corpus.doc_ids, corpus.titles, corpus.texts) == (
        expected.doc_ids,
        expected.titles,
        expected.texts,
    )
    assert corpus.source == "dataset"
    queries = queries_from_records(datasets.Dataset.from_list(jsonl_rows(TINY / "queries.jsonl")))
    assert queries == load_queries(TINY)
    qrels_file = sorted((TINY / "qrels").glob("*.tsv"))[0]
    rows = [line.split("\t") for line in qrels_file.read_text(encoding="utf-8").splitlines()]
    header, body = rows[0], rows[1:]
    records = [dict(zip(header, (q, d, int(g)), strict=True)) for q, d, g in body]
    assert qrels_from_records(datasets.Dataset.from_list(records)) == load_qrels(qrels_file)


def test_integer_ids_and_a_datasetdict_of_one_split() -> None:
    # BEIR's hub copies load as DatasetDict({"corpus": Dataset}), often with integer columns.
    rows = datasets.Dataset.from_list([{"_id": 7, "title": "T", "text": "seven"}], split="corpus")
    corpus = Corpus.from_records(datasets.DatasetDict(corpus=rows))
    assert corpus.doc_ids == ["7"] and corpus.source == "dataset split 'corpus'"
    streamed = rows.to_iterable_dataset()
    assert queries_from_records(streamed.rename_column("title", "query").remove_columns("text"))
    assert Corpus.from_records(rows, source="mine").source == "mine"


def test_a_datasetdict_of_several_splits_is_refused_with_its_splits() -> None:
    part = datasets.Dataset.from_list([{"query-id": "q", "corpus-id": "d", "score": 1}])
    with pytest.raises(
        DataError,
        match=r"^dataset: a DatasetDict with the splits 'train', 'test'; pass one of them, "
        r"e\.g\. dataset\['train'\]$",
    ):
        qrels_from_records(datasets.DatasetDict(train=part, test=part))


def test_bad_rows_are_named_by_number_and_id() -> None:
    rows = [
        {"_id": "d0", "title": "", "text": "fine"},
        {"_id": "d1", "title": "", "text": "also fine"},
        {"_id": "d2", "title": "", "text": "  "},
    ]
    with pytest.raises(DataError) as exc:
        Corpus.from_records(datasets.Dataset.from_list(rows))
    assert str(exc.value) == (
        "dataset row 2 (id 'd2'): document 'd2' has empty text (skip such documents with "
        "skip_empty=True, or --skip-empty on the command line)"
    )
    # The same sentence as the file loader's, after the place.
    rows[2]["text"] = "x"
    rows[1]["_id"] = "d0"
    with pytest.raises(
        DataError, match=r"^dataset row 1 \(id 'd0'\): duplicate doc id 'd0' \(first on row 0\)$"
    ):
        Corpus.from_records(datasets.Dataset.from_list(rows))
    with pytest.raises(DataError, match=r"^dataset row 0: doc id 'a b' contains whitespace$"):
        Corpus.from_records(datasets.Dataset.from_list([{"_id": "a b", "text": "x"}]))
    nulls = datasets.Dataset.from_list([{"_id": "d0", "title": "t", "text": "x"}, {"_id": "d1"}])
    with pytest.raises(
        DataError, match=r"^dataset row 1 \(id 'd1'\): field 'text' must be a string, not NoneType$"
    ):
        Corpus.from_records(nulls)


def test_bad_query_and_qrels_rows() -> None:
    queries = datasets.Dataset.from_list([{"_id": "q1", "text": "a"}, {"_id": "q2", "text": ""}])
    with pytest.raises(DataError, match=r"^dataset row 1 \(id 'q2'\): query 'q2' has empty text$"):
        queries_from_records(queries)
    qrels = datasets.Dataset.from_list([{"query-id": "q1", "corpus-id": "d1", "score": 1.5}])
    with pytest.raises(
        DataError,
        match=r"^dataset row 0 \(id 'q1'\): field 'score' must be a string or an integer, "
        r"not float$",
    ):
        qrels_from_records(qrels)


def test_a_missing_column_is_named_before_any_row() -> None:
    docs = datasets.Dataset.from_list([{"doc": "d0", "body": "x"}])
    with pytest.raises(
        DataError,
        match=r"^dataset: no '_id' or 'id' or 'doc_id' column \(the columns are 'doc', 'body'\)$",
    ):
        Corpus.from_records(docs)
    with pytest.raises(DataError, match=r"^q: no 'score' or 'grade' column"):
        qrels_from_records(
            datasets.Dataset.from_list([{"query-id": "q", "corpus-id": "d"}]), source="q"
        )
