"""Loaders for corpora, queries and qrels: good inputs of every format, and one test per defect."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsi.data import (
    Corpus,
    DataError,
    beir_split_paths,
    load_corpus,
    load_qrels,
    load_queries,
)

TINY = Path(__file__).resolve().parents[2] / "examples" / "tiny"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl(*rows: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def doc(i: int, text: str = "some text", title: str = "A title") -> dict[str, str]:
    return {"_id": f"d{i}", "title": title, "text": text}


def assert_names(exc: pytest.ExceptionInfo[DataError], path: Path, line: int | None) -> str:
    """The message names the file and (when given) the 1-based line, in one sentence."""
    message = str(exc.value)
    assert path.name in message
    if line is not None:
        assert re.search(rf"\bline {line}:", message), message
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Good inputs


def test_integer_ids_are_their_decimal_strings_in_corpus_queries_and_qrels(tmp_path: Path) -> None:
    corpus = write(
        tmp_path / "corpus.jsonl",
        jsonl({"_id": 7, "text": "a"}, {"id": -3, "text": "b"}, {"doc_id": "x9", "text": "c"}),
    )
    queries = write(
        tmp_path / "queries.jsonl", jsonl({"_id": 1, "text": "q"}, {"qid": 20, "text": "r"})
    )
    qrels = write(tmp_path / "qrels.tsv", "query-id\tcorpus-id\tscore\n1\t7\t1\n20\t-3\t2\n")
    assert load_corpus(corpus).doc_ids == ["7", "-3", "x9"]
    assert load_queries(queries) == {"1": "q", "20": "r"}
    assert load_qrels(qrels) == {"1": {"7": 1}, "20": {"-3": 2}}
    # An integer and its decimal string are one id.
    twice = write(
        tmp_path / "twice.jsonl", jsonl({"_id": 7, "text": "a"}, {"_id": "7", "text": "b"})
    )
    with pytest.raises(DataError) as exc:
        load_corpus(twice)
    assert "duplicate doc id '7' (first on line 1)" in assert_names(exc, twice, 2)


def test_beir_folder_and_jsonl_file(tmp_path: Path) -> None:
    write(tmp_path / "corpus.jsonl", jsonl(doc(1), doc(2, title=""), {"_id": "d3", "text": "x"}))
    for path in (tmp_path, tmp_path / "corpus.jsonl"):
        corpus = load_corpus(path)
        assert corpus.doc_ids == ["d1", "d2", "d3"]
        assert corpus.titles == ["A title", "", ""]
        assert corpus.texts == ["some text", "some text", "x"]
        assert len(corpus) == 3
        assert corpus.source.endswith("corpus.jsonl")
        assert corpus.full_texts() == ["A title some text", "some text", "x"]


def test_jsonl_alternative_keys_and_extra_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path / "docs.jsonl",
        jsonl(
            {"id": "a", "contents": "pyserini style"},
            {"doc_id": "b", "text": "other", "metadata": {"url": "x"}},
        ),
    )
    corpus = load_corpus(path)
    assert corpus.doc_ids == ["a", "b"]
    assert corpus.texts == ["pyserini style", "other"]


def test_crlf_bom_and_trailing_blank_lines(tmp_path: Path) -> None:
    body = "\ufeff" + json.dumps(doc(1)) + "\r\n" + json.dumps(doc(2)) + "\r\n\r\n  \n"
    corpus = load_corpus(write(tmp_path / "c.jsonl", body))
    assert corpus.doc_ids == ["d1", "d2"]
    assert corpus.texts == ["some text", "some text"]


def test_unicode_text_is_kept(tmp_path: Path) -> None:
    corpus = load_corpus(write(tmp_path / "c.jsonl", jsonl(doc(1, text="Zürich – 東京 ✓"))))
    assert corpus.texts == ["Zürich – 東京 ✓"]


@pytest.mark.parametrize(
    ("body", "titles"),
    [
        ("d1\tfirst text\nd2\tsecond text\n", ["", ""]),
        ("d1\tT1\tfirst text\nd2\tT2\tsecond text\n", ["T1", "T2"]),
        ("id\ttext\nd1\tfirst text\nd2\tsecond text\n", ["", ""]),
        ("_id\ttitle\ttext\nd1\tT1\tfirst text\nd2\tT2\tsecond text\n", ["T1", "T2"]),
        ("docid\ttext\ttitle\nd1\tfirst text\tT1\nd2\tsecond text\tT2\n", ["T1", "T2"]),
    ],
)
def test_tsv_corpus(tmp_path: Path, body: str, titles: list[str]) -> None:
    corpus = load_corpus(write(tmp_path / "c.tsv", body))
    assert corpus.doc_ids == ["d1", "d2"]
    assert corpus.texts == ["first text", "second text"]
    assert corpus.titles == titles


def test_queries_formats(tmp_path: Path) -> None:
    expected = {"1": "what is a bell", "q2": "who made it"}
    rows = [
        {"_id": "1", "text": "what is a bell", "metadata": {}},
        {"id": "q2", "query": "who made it"},
    ]
    write(tmp_path / "beir" / "queries.jsonl", jsonl(*rows))
    assert load_queries(tmp_path / "beir") == expected
    assert load_queries(tmp_path / "beir" / "queries.jsonl") == expected
    assert (
        load_queries(write(tmp_path / "q.tsv", "1\twhat is a bell\nq2\twho made it\n")) == expected
    )
    with_header = "query-id\ttext\n1\twhat is a bell\nq2\twho made it\n"
    assert load_queries(write(tmp_path / "h.tsv", with_header)) == expected


def test_qrels_formats(tmp_path: Path) -> None:
    expected = {"1": {"d1": 1, "d2": 0}, "2": {"d1": 3}}
    beir = "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t0\n2\td1\t3\n"
    assert load_qrels(write(tmp_path / "a.tsv", beir)) == expected
    assert load_qrels(write(tmp_path / "b.tsv", beir.split("\n", 1)[1])) == expected
    trec = "1 0 d1 1\n1 0 d2 0\n2 Q0 d1 3\n"
    assert load_qrels(write(tmp_path / "qrels.txt", trec)) == expected
    assert load_qrels(write(tmp_path / "neg.tsv", "1\td1\t-1\n")) == {"1": {"d1": -1}}


def test_beir_split_paths(tmp_path: Path) -> None:
    write(tmp_path / "queries.jsonl", jsonl({"_id": "1", "text": "q"}))
    write(tmp_path / "qrels" / "test.tsv", "1\td1\t1\n")
    write(tmp_path / "qrels" / "train.tsv", "1\td1\t1\n")
    assert beir_split_paths(tmp_path, "test") == (
        tmp_path / "queries.jsonl",
        tmp_path / "qrels" / "test.tsv",
    )
    with pytest.raises(DataError, match=r"split 'dev' \(available: test, train\)"):
        beir_split_paths(tmp_path, "dev")
    with pytest.raises(DataError, match="no such folder"):
        beir_split_paths(tmp_path / "nope", "test")
    (tmp_path / "queries.jsonl").unlink()
    with pytest.raises(DataError, match="no queries.jsonl"):
        beir_split_paths(tmp_path, "test")


def test_tiny_example_corpus_loads() -> None:
    corpus = load_corpus(TINY)
    queries = load_queries(TINY)
    train = load_qrels(TINY / "qrels" / "train.tsv")
    test = load_qrels(TINY / "qrels" / "test.tsv")
    assert len(corpus) == 300
    assert corpus.doc_ids[0] == "d001"
    assert len(queries) == 150
    assert (len(train), len(test)) == (100, 50)
    assert set(train).isdisjoint(test)
    assert set(train) | set(test) == set(queries)
    assert all(set(j) <= set(corpus.doc_ids) for j in (*train.values(), *test.values()))
    assert len(set(corpus.texts)) == 300


# ---------------------------------------------------------------------------------------------
# Corpus helpers


def test_subset_and_concat() -> None:
    a = Corpus(["x", "y", "z"], ["X", "", "Z"], ["tx", "ty", "tz"], source="a")
    b = Corpus(["w"], [""], ["tw"], source="b")
    sub = a.subset(["z", "x"])
    assert (sub.doc_ids, sub.titles, sub.texts) == (["z", "x"], ["Z", "X"], ["tz", "tx"])
    both = Corpus.concat([a, b])
    assert both.doc_ids == ["x", "y", "z", "w"]
    assert both.texts == ["tx", "ty", "tz", "tw"]
    assert both.source == "a + b"
    with pytest.raises(DataError, match="'x' appears in both a and a"):
        Corpus.concat([a, a])
    with pytest.raises(DataError, match="unknown doc id 'q'"):
        a.subset(["q"])
    with pytest.raises(DataError, match="'x' twice"):
        a.subset(["x", "x"])
    with pytest.raises(ValueError, match="equally long"):
        Corpus(["x"], [], ["t"])


# ---------------------------------------------------------------------------------------------
# One test per defect: the message names the file and the line


def corpus_error(tmp_path: Path, name: str, content: str | bytes, line: int | None) -> str:
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as exc:
        load_corpus(path)
    return assert_names(exc, path, line)


def test_malformed_json(tmp_path: Path) -> None:
    body = jsonl(doc(1), doc(2), '{"_id": "d3", "text": ')
    assert "malformed JSON" in corpus_error(tmp_path, "c.jsonl", body, 3)


def test_line_not_an_object(tmp_path: Path) -> None:
    body = jsonl(doc(1), ["d2", "text"])
    assert "expected a JSON object, found list" in corpus_error(tmp_path, "c.jsonl", body, 2)


def test_missing_id(tmp_path: Path) -> None:
    body = jsonl(doc(1), {"title": "t", "text": "x"})
    assert "missing '_id' or 'id' or 'doc_id'" in corpus_error(tmp_path, "c.jsonl", body, 2)


def test_missing_text(tmp_path: Path) -> None:
    body = jsonl(doc(1), doc(2), {"_id": "d3", "title": "only a title"})
    assert "missing 'text' or 'contents' field" in corpus_error(tmp_path, "c.jsonl", body, 3)


@pytest.mark.parametrize(
    ("row", "key", "kind"),
    [
        ({"_id": True, "text": "x"}, "_id", "bool"),
        ({"_id": 7.0, "text": "x"}, "_id", "float"),
        ({"_id": "d2", "text": ["x"]}, "text", "list"),
        ({"_id": "d2", "text": 7}, "text", "int"),
        ({"_id": "d2", "title": None, "text": "x"}, "title", "NoneType"),
    ],
)
def test_non_string_field(tmp_path: Path, row: dict, key: str, kind: str) -> None:
    message = corpus_error(tmp_path, "c.jsonl", jsonl(doc(1), row), 2)
    # An id may also be a JSON integer (read as its decimal string); other fields may not.
    expected = "a string or an integer" if key == "_id" else "a string"
    assert f"field '{key}' must be {expected}, not {kind}" in message


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    body = jsonl(doc(1), doc(2), doc(3), doc(2))
    message = corpus_error(tmp_path, "c.jsonl", body, 4)
    assert "duplicate doc id 'd2' (first on line 2)" in message


@pytest.mark.parametrize("text", ["", "   ", "\t \u3000"])
def test_empty_text(tmp_path: Path, text: str) -> None:
    message = corpus_error(tmp_path, "c.jsonl", jsonl(doc(1), doc(2, text=text)), 2)
    assert "'d2' has empty text" in message


def test_whitespace_only_title(tmp_path: Path) -> None:
    message = corpus_error(tmp_path, "c.jsonl", jsonl(doc(1), doc(2, title="  ")), 2)
    assert "title of 'd2' is only whitespace" in message


def test_skip_empty_drops_empty_documents(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", jsonl(doc(1), doc(2, text="", title=""), doc(3)))
    assert load_corpus(path, skip_empty=True).doc_ids == ["d1", "d3"]


@pytest.mark.parametrize(
    ("doc_id", "problem"),
    [
        ("", "empty doc id"),
        ("a b", "contains whitespace"),
        ("a\u00a0b", "contains whitespace"),
        ("a\x00b", "control character U+0000"),
        ("a\tb", "control character U+0009"),
        ("a\nb", "control character U+000A"),
        ("a\x7fb", "control character U+007F"),
        ("a\x9bb", "control character U+009B"),
    ],
)
def test_bad_id(tmp_path: Path, doc_id: str, problem: str) -> None:
    body = jsonl(doc(1), {"_id": doc_id, "text": "x"})
    assert problem in corpus_error(tmp_path, "c.jsonl", body, 2)


def test_undecodable_bytes(tmp_path: Path) -> None:
    good = jsonl(doc(1), doc(2), doc(3)).encode()
    bad = b'{"_id": "d4", "text": "caf\xe9"}\n'
    message = corpus_error(tmp_path, "c.jsonl", good + bad + jsonl(doc(5)).encode(), 4)
    assert "invalid UTF-8 byte 0xe9" in message


def test_unpaired_surrogate(tmp_path: Path) -> None:
    body = jsonl(doc(1), '{"_id": "d2", "text": "bad \\ud800 escape"}')
    assert "unpaired surrogate" in corpus_error(tmp_path, "c.jsonl", body, 2)


def test_blank_line_in_the_middle(tmp_path: Path) -> None:
    body = json.dumps(doc(1)) + "\n\n" + json.dumps(doc(2)) + "\n"
    assert "blank line" in corpus_error(tmp_path, "c.jsonl", body, 2)


@pytest.mark.parametrize("body", ["", "\n\n  \n"])
def test_empty_corpus(tmp_path: Path, body: str) -> None:
    assert "no documents found" in corpus_error(tmp_path, "c.jsonl", body, None)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.jsonl", tmp_path / "nope"):
        with pytest.raises(DataError, match="no such file or folder") as exc:
            load_corpus(path)
        assert_names(exc, path, None)
    (tmp_path / "empty_beir").mkdir()
    with pytest.raises(DataError, match="folder has no corpus.jsonl") as exc:
        load_corpus(tmp_path / "empty_beir")
    assert_names(exc, tmp_path / "empty_beir", None)


@pytest.mark.parametrize("name", ["corpus.csv", "corpus.json", "corpus"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, jsonl(doc(1)))
    with pytest.raises(DataError, match="unknown corpus format") as exc:
        load_corpus(path)
    assert_names(exc, path, None)


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        ("d1\tT\ttext\nd2\ttext\n", 2, "expected 3 tab-separated columns as on line 1, found 2"),
        ("d1\ttext\nd2\tT\ttext\tmore\n", 2, "expected 2 tab-separated columns"),
        ("only-one-column\n", 1, "expected 2 or 3 tab-separated columns"),
        ("d1\ta\tb\tc\n", 1, "found 4"),
        ("id\ttext\nd1\tx\nd2\tx\ty\n", 3, "as on line 1, found 3"),
        ("d1\tx\n\tx\n", 2, "empty doc id"),
        ("d1\tx\nd 2\tx\n", 2, "contains whitespace"),
        ("d1\tx\nd2\t  \n", 2, "has empty text"),
        ("d1\tT\tx\nd2\t \tx\n", 2, "only whitespace"),
        ("d1\tx\nd2\tx\nd1\ty\n", 3, "duplicate doc id 'd1' (first on line 1)"),
        ("d1\tx\n\nd2\tx\n", 2, "blank line"),
        (b"d1\tx\nd2\t\xff\xfe\n", 2, "invalid UTF-8"),
    ],
)
def test_tsv_defects(tmp_path: Path, body: str | bytes, line: int, problem: str) -> None:
    assert problem in corpus_error(tmp_path, "c.tsv", body, line)


@pytest.mark.parametrize(
    ("name", "body", "line", "problem"),
    [
        ("q.jsonl", jsonl({"_id": "1", "text": "a"}, {"_id": "2"}), 2, "missing 'text' or 'query'"),
        (
            "q.jsonl",
            jsonl({"_id": "1", "text": "a"}, {"_id": "1", "text": "b"}),
            2,
            "first on line 1",
        ),
        ("q.jsonl", jsonl({"_id": "1", "text": " "}), 1, "query '1' has empty text"),
        (
            "q.jsonl",
            jsonl({"_id": 1.5, "text": "a"}),
            1,
            "must be a string or an integer, not float",
        ),
        (
            "q.jsonl",
            jsonl({"_id": False, "text": "a"}),
            1,
            "must be a string or an integer, not bool",
        ),
        ("q.jsonl", jsonl({"_id": "q\u0000", "text": "a"}), 1, "control character U+0000"),
        ("q.tsv", "1\ta\n2\x01\tb\n", 2, "control character U+0001"),
        ("q.jsonl", "{not json}\n", 1, "malformed JSON"),
        ("q.tsv", "1\ta\n2\tb\tc\n", 2, "expected 2 tab-separated columns"),
        ("q.tsv", "1\ta\n\tb\n", 2, "empty query id"),
        ("q.tsv", b"1\ta\n2\t\xc3\n", 2, "invalid UTF-8"),
    ],
)
def test_query_defects(
    tmp_path: Path, name: str, body: str | bytes, line: int, problem: str
) -> None:
    path = write(tmp_path / name, body)
    with pytest.raises(DataError) as exc:
        load_queries(path)
    assert problem in assert_names(exc, path, line)


def test_query_file_problems(tmp_path: Path) -> None:
    for path, problem in [
        (write(tmp_path / "empty.jsonl", ""), "no queries found"),
        (tmp_path / "missing.tsv", "no such file"),
        (write(tmp_path / "q.txt", "1\ta\n"), "unknown queries format"),
    ]:
        with pytest.raises(DataError, match=problem) as exc:
            load_queries(path)
        assert_names(exc, path, None)


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        ("q1\td1\t1\nq1\td2\tyes\n", 2, "grade 'yes' is not an integer"),
        ("q1\td1\t1\nq1\td2\t0.5\n", 2, "grade '0.5' is not an integer"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", 2, "not an integer"),
        ("q1\td1\n", 1, "found 2"),
        ("q1\td1\t1\nq1\td2\n", 2, "expected 3 columns like the first line, found 2"),
        ("q1 0 d1 1\nq2 0 d1 1 extra\n", 2, "expected 4 columns like the first line, found 5"),
        ("q1\td1\t1\nq2\td3\t1\nq1\td1\t2\n", 3, "first on line 1"),
        ("q1\td1\t1\n\nq2\td1\t1\n", 2, "blank line"),
        (b"q1\td1\t1\nq2\t\x80\t1\n", 2, "invalid UTF-8"),
    ],
)
def test_qrels_defects(tmp_path: Path, body: str | bytes, line: int, problem: str) -> None:
    path = write(tmp_path / "qrels.tsv", body)
    with pytest.raises(DataError) as exc:
        load_qrels(path)
    assert problem in assert_names(exc, path, line)


def test_qrels_file_problems(tmp_path: Path) -> None:
    for path, problem in [
        (write(tmp_path / "empty.tsv", "query-id\tcorpus-id\tscore\n"), "no judgments found"),
        (tmp_path / "missing.tsv", "no such file"),
        (tmp_path, "is a folder"),
    ]:
        with pytest.raises(DataError, match=problem) as exc:
            load_qrels(path)
        assert_names(exc, path, None)


# ---------------------------------------------------------------------------------------------
# Property: any malformed line inserted into a valid file is reported, with its line number

FIELD = st.text(alphabet="abcdefghij KLMNOP-.,0123456789", min_size=1, max_size=12).filter(
    str.strip
)
NO_NEWLINE = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)))


def _invalid_json(line: str) -> bool:
    try:
        json.loads(line)
    except Exception:  # noqa: BLE001 - any failure at all makes the line malformed
        return True
    return False


# 0xc0, 0xc1 and 0xf5..0xff never occur in UTF-8, so the line cannot decode whatever surrounds them.
UNDECODABLE = st.tuples(
    st.binary(max_size=8),
    st.sampled_from([b"\xff", b"\xfe", b"\xc0", b"\xc1", b"\xf8"]),
    st.binary(max_size=8),
).map(lambda parts: b"".join(parts).replace(b"\n", b"").replace(b"\t", b""))
BLANK = st.sampled_from(["", " ", "\t", "  \r", " \f\v "]).map(str.encode)
# Not blank: blank lines at the end of a file are legal, and BLANK covers the middle.
NOT_JSON = NO_NEWLINE.filter(lambda s: s.strip(" \t\r\f\v") and _invalid_json(s)).map(str.encode)
JSON_SCALAR = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(), st.booleans(), st.none()
)
NOT_OBJECT = st.one_of(JSON_SCALAR, st.lists(JSON_SCALAR, max_size=3)).map(
    lambda v: json.dumps(v).encode()
)
NON_STRING = st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.none(), st.booleans())
# An id may be a JSON integer (read as its decimal string), but nothing else that is no string.
NON_STRING_ID = st.one_of(
    st.lists(st.integers(), max_size=2), st.none(), st.booleans(), st.floats(allow_nan=False)
)
BAD_OBJECT = st.one_of(
    st.fixed_dictionaries({"title": FIELD, "text": FIELD}),
    st.fixed_dictionaries({"_id": FIELD.map(lambda s: "x" + s.replace(" ", "")), "title": FIELD}),
    st.fixed_dictionaries({"_id": NON_STRING_ID, "text": FIELD}),
    st.fixed_dictionaries({"_id": st.just("new"), "text": NON_STRING}),
    st.fixed_dictionaries({"_id": st.just("new"), "title": NON_STRING, "text": FIELD}),
    st.fixed_dictionaries({"_id": st.just("new"), "text": st.sampled_from(["", " ", "\n\t"])}),
    st.fixed_dictionaries({"_id": st.just("new"), "title": st.just("  "), "text": FIELD}),
    st.fixed_dictionaries({"_id": st.sampled_from(["", " ", "a b", "tab\there"]), "text": FIELD}),
).map(lambda v: json.dumps(v).encode())


def _check_inserted(suffix: str, lines: list[bytes], bad: bytes, position: int) -> None:
    lines = [*lines[:position], bad, *lines[position:]]
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / f"corpus{suffix}", b"\n".join(lines) + b"\n")
        with pytest.raises(DataError) as exc:
            load_corpus(path)
        assert_names(exc, path, position + 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), texts=st.lists(FIELD, min_size=1, max_size=6))
def test_property_malformed_jsonl_line(data: st.DataObject, texts: list[str]) -> None:
    lines = [
        json.dumps({"_id": f"d{i}", "title": t, "text": t}).encode() for i, t in enumerate(texts)
    ]
    position = data.draw(st.integers(0, len(lines)))
    choices = [NOT_JSON, NOT_OBJECT, BAD_OBJECT, UNDECODABLE]
    if position < len(lines):  # a blank line only counts as an error when data follows it
        choices.append(BLANK)
    if position > 0:  # repeat an id from an earlier line
        choices.append(
            st.integers(0, position - 1).map(
                lambda i: json.dumps({"_id": f"d{i}", "text": "again"}).encode()
            )
        )
    bad = data.draw(st.one_of(choices))
    _check_inserted(".jsonl", lines, bad, position)


TSV_FIELD = FIELD.map(lambda s: s.encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), texts=st.lists(FIELD, min_size=1, max_size=6))
def test_property_malformed_tsv_line(data: st.DataObject, texts: list[str]) -> None:
    lines = [f"d{i}\t{t}\t{t}".encode() for i, t in enumerate(texts)]
    position = data.draw(st.integers(0, len(lines)))
    # On line one a two-column row is legal (it sets the width), so only 1 or 4+ columns there.
    counts = st.sampled_from([1, 4, 5] if position == 0 else [1, 2, 4, 5])
    choices = [
        st.tuples(counts, st.lists(TSV_FIELD, min_size=5, max_size=5)).map(
            lambda c: b"\t".join([b"new", *c[1]][: c[0]])
        ),
        st.sampled_from([b"\tT\ttext", b"a b\tT\ttext", b"new\tT\t", b"new\tT\t  ", b"new\t \tx"]),
        UNDECODABLE.map(lambda b: b"new\t" + b + b"\ttext"),
    ]
    if position < len(lines):
        choices.append(BLANK)
    if position > 0:
        choices.append(st.integers(0, position - 1).map(lambda i: f"d{i}\tT\tagain".encode()))
    bad = data.draw(st.one_of(choices))
    _check_inserted(".tsv", lines, bad, position)
