"""Corpora and queries built in Python pass the checks of the file loaders, with their messages."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

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

TINY = Path(__file__).resolve().parents[2] / "examples" / "tiny"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def both_errors(tmp_path: Path, rows: list[dict], *, queries: bool = False) -> tuple[str, str]:
    """The file loader's message and from_records' message for the same rows."""
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.raises(DataError) as from_file:
        (load_queries if queries else load_corpus)(path)
    with pytest.raises(DataError) as from_records:
        (queries_from_records if queries else Corpus.from_records)(rows, source="mem")
    return str(from_file.value), str(from_records.value)


def assert_same_sentence(file_msg: str, record_msg: str, path: Path, line: int) -> str:
    """Same sentence, located at ``line`` (1-based) of the file and record ``line - 1``."""
    file_where, record_where = f"{path} line {line}: ", f"mem record {line - 1}: "
    assert file_msg.startswith(file_where), file_msg
    assert record_msg.startswith(record_where), record_msg
    assert record_msg[len(record_where) :] == file_msg[len(file_where) :]
    assert "\n" not in record_msg
    return record_msg[len(record_where) :]


def doc(i: int, **fields: object) -> dict:
    return {"_id": f"d{i}", "title": "A title", "text": "some text", **fields}


# ---------------------------------------------------------------------------------------------
# Good records


def test_tiny_corpus_from_records_equals_the_file_loader() -> None:
    path = TINY / "corpus.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    from_file = load_corpus(path)
    built = Corpus.from_records(rows, source="tiny")
    assert built.source == "tiny"
    assert (built.doc_ids, built.titles, built.texts) == (
        from_file.doc_ids,
        from_file.titles,
        from_file.texts,
    )
    assert len(built) == 300


def test_tiny_queries_from_records_equal_the_file_loader() -> None:
    path = TINY / "queries.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    built = queries_from_records(rows)
    assert built == load_queries(path)
    assert list(built) == list(load_queries(path))  # file order kept


def test_any_iterable_of_mappings_integer_ids_and_alternative_keys() -> None:
    # A generator of read-only mappings stands in for a datasets.Dataset: one pass, no list.
    def rows() -> Iterator[Mapping]:
        yield MappingProxyType({"_id": 7, "text": "seven", "extra": [1, 2]})
        yield MappingProxyType({"id": "b", "title": "Bee", "contents": "buzz"})
        yield {"doc_id": -3, "text": "minus three", "title": ""}

    corpus = Corpus.from_records(rows())
    assert corpus.doc_ids == ["7", "b", "-3"]
    assert corpus.titles == ["", "Bee", ""]
    assert corpus.texts == ["seven", "buzz", "minus three"]
    assert corpus.source == "records"
    assert queries_from_records([{"qid": 1, "query": "q"}]) == {"1": "q"}


def test_skip_empty_drops_empty_records() -> None:
    rows = [doc(1), doc(2, text="  ", title=""), doc(3)]
    assert Corpus.from_records(rows, skip_empty=True).doc_ids == ["d1", "d3"]


# ---------------------------------------------------------------------------------------------
# Bad records: the file loader's sentence, naming the record by its 0-based position


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"_id": "d9", "title": "only a title"}, "missing 'text' or 'contents' field"),
        ({"text": "no id"}, "missing '_id' or 'id' or 'doc_id' field"),
        ({"_id": True, "text": "x"}, "field '_id' must be a string or an integer, not bool"),
        ({"_id": 7.0, "text": "x"}, "field '_id' must be a string or an integer, not float"),
        (doc(9, text=["x"]), "field 'text' must be a string, not list"),
        (doc(9, title=None), "field 'title' must be a string, not NoneType"),
        (doc(9, text=""), "document 'd9' has empty text"),
        (doc(9, title="  "), "title of 'd9' is only whitespace"),
        ({"_id": "", "text": "x"}, "empty doc id"),
        ({"_id": "a b", "text": "x"}, "contains whitespace"),
        ({"_id": "a\x00b", "text": "x"}, "contains the control character U+0000"),
        ({"_id": "a\nb", "text": "x"}, "contains the control character U+000A"),
        (doc(9, text="bad \ud800"), "field 'text' contains an unpaired surrogate escape"),
    ],
)
def test_bad_record_names_it_like_the_file_loader_names_the_line(
    tmp_path: Path, bad: dict, problem: str
) -> None:
    rows = [doc(1), doc(2), doc(3), bad]
    file_msg, record_msg = both_errors(tmp_path, rows)
    assert problem in assert_same_sentence(file_msg, record_msg, tmp_path / "rows.jsonl", 4)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"_id": "q9"}, "missing 'text' or 'query' field"),
        ({"_id": "q9", "text": " "}, "query 'q9' has empty text"),
        ({"_id": False, "text": "x"}, "must be a string or an integer, not bool"),
        ({"_id": "q\t9", "text": "x"}, "contains the control character U+0009"),
    ],
)
def test_bad_query_record(tmp_path: Path, bad: dict, problem: str) -> None:
    rows = [{"_id": "q1", "text": "one"}, bad]
    file_msg, record_msg = both_errors(tmp_path, rows, queries=True)
    assert problem in assert_same_sentence(file_msg, record_msg, tmp_path / "rows.jsonl", 2)


def test_duplicate_ids_name_both_records() -> None:
    with pytest.raises(DataError) as exc:
        Corpus.from_records([doc(1), doc(2), doc(3), doc(2)])
    assert str(exc.value) == "records record 3: duplicate doc id 'd2' (first on record 1)"
    with pytest.raises(
        DataError, match=r"^mem record 1: duplicate query id '5' \(first on record 0\)$"
    ):
        queries_from_records([{"_id": 5, "text": "a"}, {"_id": "5", "text": "b"}], source="mem")


def test_record_that_is_not_a_mapping() -> None:
    with pytest.raises(DataError, match=r"^records record 1: expected a mapping, found list$"):
        Corpus.from_records([doc(1), ["d2", "text"]])


@pytest.mark.parametrize("records", ["d1 text", {"_id": "d1", "text": "x"}, b"d1"])
def test_not_an_iterable_of_records(records: object) -> None:
    # A single dict or a string would otherwise be iterated key by key or character by character.
    with pytest.raises(DataError, match=r"^records: expected an iterable of records"):
        Corpus.from_records(records)  # type: ignore[arg-type]


def test_no_records() -> None:
    with pytest.raises(DataError, match=r"^records: no documents found$"):
        Corpus.from_records([])
    with pytest.raises(DataError, match=r"^qs: no queries found$"):
        queries_from_records(iter(()), source="qs")


# ---------------------------------------------------------------------------------------------
# Qrels


def test_tiny_qrels_from_records_equal_the_file_loader() -> None:
    path = TINY / "qrels" / "train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()[1:]  # past the header
    rows = [
        dict(zip(("query-id", "corpus-id", "score"), line.split("\t"), strict=True))
        for line in lines
    ]
    assert qrels_from_records(rows) == load_qrels(path)
    # Integer columns, as a datasets.Dataset of BEIR qrels holds them, read the same.
    as_ints = [{"qid": 7, "docid": 12, "grade": 2}, {"query_id": "7", "doc_id": "13", "score": 0}]
    assert qrels_from_records(as_ints) == {"7": {"12": 2, "13": 0}}


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (("q2", "d2", "1.5"), "grade '1.5' is not an integer"),
        (("q2", "d2", "high"), "grade 'high' is not an integer"),
        (("q\x012", "d2", "1"), "query id 'q\\x012' contains the control character U+0001"),
        (("q1", "d1", "0"), "duplicate judgment for query 'q1' and doc 'd1' (first on "),
    ],
)
def test_bad_qrels_record(tmp_path: Path, bad: tuple[str, str, str], problem: str) -> None:
    good = ("q1", "d1", "1")
    path = tmp_path / "qrels.tsv"
    path.write_text("".join(" ".join(row) + "\n" for row in (good, bad)), encoding="utf-8")
    with pytest.raises(DataError) as from_file:
        load_qrels(path)
    records = [
        dict(zip(("query-id", "corpus-id", "score"), row, strict=True)) for row in (good, bad)
    ]
    with pytest.raises(DataError) as from_records:
        qrels_from_records(records, source="mem")
    file_msg, record_msg = str(from_file.value), str(from_records.value)
    # The duplicate's "(first on line 1)" is "(first on record 0)": compare past that point.
    file_msg = file_msg.replace("(first on line 1)", "(first on record 0)")
    assert problem in assert_same_sentence(file_msg, record_msg, path, 2)


def test_bad_qrels_record_types() -> None:
    with pytest.raises(DataError, match=r"^records record 0: missing 'score' or 'grade' field$"):
        qrels_from_records([{"query-id": "q", "corpus-id": "d"}])
    with pytest.raises(
        DataError,
        match=r"^records record 0: field 'score' must be a string or an integer, not float$",
    ):
        qrels_from_records([{"query-id": "q", "corpus-id": "d", "score": 1.0}])
    with pytest.raises(DataError, match=r"^records: no judgments found$"):
        qrels_from_records([])


# ---------------------------------------------------------------------------------------------
# The plain constructor


def test_constructor_refuses_duplicate_ids() -> None:
    # Before, positions() silently mapped 'b' to its last copy and the first became unreachable.
    with pytest.raises(DataError, match=r"^corpus 'mem' has doc id 'b' more than once$"):
        Corpus(["a", "b", "c", "b"], [""] * 4, ["t"] * 4, source="mem")
    assert Corpus(["a", "b"], ["", ""], ["x", "y"]).positions() == {"a": 0, "b": 1}
