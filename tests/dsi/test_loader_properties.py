"""Property tests of the query and qrels loaders (test_data.py covers corpora the same way).

One malformed line of any kind, inserted anywhere in a valid file, must raise exactly one
:class:`DataError` whose one-line message names the file and that line; a file cut at any byte
either loads the lines before the cut or names the cut line. Every example records itself with
``record_property("bad_inputs", 1)`` so that a ``--junitxml`` run can count them.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsi.data import DataError, load_corpus, load_qrels, load_queries

EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# ------------------------------------------------------------------------------ helpers
FIELD = st.text(alphabet="abcdefghij KLMNOP-.,0123456789", min_size=1, max_size=12).filter(
    str.strip
)
TOKEN = st.text(alphabet="abcdefghijxyzQRS0123456789-_.:", min_size=1, max_size=8)
NON_STRING = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.just("a"), st.integers(), max_size=1),
)
# An id may be a JSON integer (read as its decimal string), but nothing else that is no string.
NON_STRING_ID = st.one_of(
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.just("a"), st.integers(), max_size=1),
)
BLANK = st.sampled_from([b"", b" ", b"\t", b"  \r", b" \x0c\x0b "])
BAD_IDS = st.sampled_from(["", " ", "a b", "tab\there", "nb\u00a0sp", "end\n"])
EMPTY_TEXTS = st.sampled_from(["", " ", "\t\r\n", "\u3000", "\u2003 \u00a0"])
UNICODE_BLANK = st.sampled_from(["\u3000", "\u00a0", "\u2003 \u2028", "\x85"]).map(str.encode)


def _undecodable(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _invalid_json(line: str) -> bool:
    try:
        json.loads(line)
    except Exception:  # noqa: BLE001 - any failure at all makes the line malformed
        return True
    return False


UNDECODABLE = st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\n", b""))
UNDECODABLE = UNDECODABLE.filter(_undecodable)
NO_NEWLINE = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)))
# Invalid even once the reader drops a byte-order mark from line one.
NOT_JSON = NO_NEWLINE.filter(
    lambda s: s.strip(" \t\r\f\v") and _invalid_json(s) and _invalid_json(s.removeprefix("\ufeff"))
).map(str.encode)
JSON_SCALAR = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(), st.booleans(), st.none()
)
NOT_OBJECT = st.one_of(JSON_SCALAR, st.lists(JSON_SCALAR, max_size=3)).map(
    lambda v: json.dumps(v).encode()
)


def write(folder: str, name: str, lines: list[bytes]) -> Path:
    path = Path(folder) / name
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def assert_names(exc: pytest.ExceptionInfo[DataError], path: Path, line: int | None) -> str:
    message = str(exc.value)
    assert path.name in message, message
    if line is not None:
        assert re.search(rf"\bline {line}:", message), message
    assert "\n" not in message, message
    return message


def rejected(loader, path: Path, line: int | None, record_property) -> str:
    with pytest.raises(DataError) as exc:
        loader(path)
    record_property("bad_inputs", 1)
    return assert_names(exc, path, line)


# ----------------------------------------------------------------------- queries, JSONL
def _query_objects(position: int) -> st.SearchStrategy[bytes]:
    new = st.just("new")
    objects = [
        st.fixed_dictionaries({"text": FIELD}),
        st.fixed_dictionaries({"title": FIELD, "body": FIELD}),
        st.fixed_dictionaries({"_id": new}),
        st.fixed_dictionaries({"qid": new, "title": FIELD}),
        st.sampled_from(["_id", "id", "query_id", "qid"]).flatmap(
            lambda key: st.fixed_dictionaries({key: NON_STRING_ID, "text": FIELD})
        ),
        st.sampled_from(["text", "query"]).flatmap(
            lambda key: st.fixed_dictionaries({"_id": new, key: NON_STRING})
        ),
        st.fixed_dictionaries({"_id": BAD_IDS, "text": FIELD}),
        st.fixed_dictionaries({"id": new, "query": EMPTY_TEXTS}),
    ]
    lines = [st.one_of(objects).map(lambda v: json.dumps(v).encode())]
    # json.loads accepts lone surrogates; they cannot be encoded back, so they are refused.
    lines.append(
        st.sampled_from(
            [b'{"_id": "new", "text": "x \\ud800"}', b'{"_id": "a\\udfff", "text": "x"}']
        )
    )
    if position > 0:  # an id from an earlier line, under any of the id keys
        lines.append(
            st.tuples(st.integers(0, position - 1), st.sampled_from(["_id", "id", "qid"])).map(
                lambda t: json.dumps({t[1]: f"q{t[0]}", "text": "again"}).encode()
            )
        )
    return st.one_of(lines)


@EXAMPLES
@given(data=st.data(), texts=st.lists(FIELD, min_size=1, max_size=6))
def test_property_malformed_queries_jsonl_line(data, texts, record_property) -> None:
    lines = [json.dumps({"_id": f"q{i}", "text": t}).encode() for i, t in enumerate(texts)]
    position = data.draw(st.integers(0, len(lines)), label="position")
    choices = [NOT_JSON, NOT_OBJECT, UNDECODABLE, _query_objects(position)]
    if position < len(lines):  # a blank line is an error only when data follows it
        choices.append(BLANK)
    bad = data.draw(st.one_of(choices), label="bad line")
    with tempfile.TemporaryDirectory() as folder:
        good = write(folder, "queries.jsonl", lines)
        assert load_queries(good) == {f"q{i}": t for i, t in enumerate(texts)}
        path = write(folder, "queries.jsonl", [*lines[:position], bad, *lines[position:]])
        rejected(load_queries, path, position + 1, record_property)


# ------------------------------------------------------------------------- queries, TSV
TSV_FIELD = FIELD.map(str.encode)


@EXAMPLES
@given(data=st.data(), texts=st.lists(FIELD, min_size=1, max_size=6))
def test_property_malformed_queries_tsv_line(data, texts, record_property) -> None:
    lines = [f"q{i}\t{t}".encode() for i, t in enumerate(texts)]
    position = data.draw(st.integers(0, len(lines)), label="position")
    choices = [
        # 1, 3 or more columns (a header line also has exactly two)
        st.tuples(st.sampled_from([1, 3, 4, 6]), st.lists(TSV_FIELD, min_size=6, max_size=6)).map(
            lambda c: b"\t".join([b"new", *c[1]][: c[0]])
        ),
        TSV_FIELD.map(lambda t: b"\t" + t),  # empty id
        st.tuples(BAD_IDS.filter(str.strip), TSV_FIELD).map(  # whitespace inside the id
            lambda t: t[0].replace("\t", " ").replace("\n", " ").encode() + b"\t" + t[1]
        ),
        EMPTY_TEXTS.map(lambda t: b"new\t" + t.replace("\n", "").replace("\t", " ").encode()),
        UNDECODABLE.map(lambda b: b"new\t" + b.replace(b"\t", b"")).filter(_undecodable),
    ]
    if position < len(lines):
        choices.append(BLANK)
    if position > 0:
        choices.append(st.integers(0, position - 1).map(lambda i: f"q{i}\tagain".encode()))
    bad = data.draw(st.one_of(choices), label="bad line")
    with tempfile.TemporaryDirectory() as folder:
        good = write(folder, "queries.tsv", lines)
        assert load_queries(good) == {f"q{i}": t for i, t in enumerate(texts)}
        path = write(folder, "queries.tsv", [*lines[:position], bad, *lines[position:]])
        rejected(load_queries, path, position + 1, record_property)


# ---------------------------------------------------------------------------------- qrels
QRELS_HEADER = b"query-id\tcorpus-id\tscore"
NOT_INTEGER = st.text(alphabet="0123456789+-.eExyz_/", min_size=1, max_size=6).filter(
    lambda s: not re.fullmatch(r"[+-]?\d+", s)
)


def _qrels_line(fmt: str, qid: str, doc_id: str, grade: str) -> bytes:
    if fmt == "trec":
        return f"{qid} 0 {doc_id} {grade}".encode()
    return f"{qid}\t{doc_id}\t{grade}".encode()


@EXAMPLES
@given(
    data=st.data(),
    fmt=st.sampled_from(["beir", "beir-header", "trec"]),
    grades=st.lists(st.integers(-2, 3), min_size=1, max_size=6),
)
def test_property_malformed_qrels_line(data, fmt, grades, record_property) -> None:
    kind = "trec" if fmt == "trec" else "beir"
    width = 4 if kind == "trec" else 3
    lines = [_qrels_line(kind, f"q{i % 3}", f"d{i}", str(g)) for i, g in enumerate(grades)]
    header = [QRELS_HEADER] if fmt == "beir-header" else []
    position = data.draw(st.integers(0, len(lines)), label="position")
    # The first data line sets the width, and 3 and 4 columns are both legal there.
    counts = [1, 2, 5, 6] if position == 0 else [n for n in range(1, 7) if n != width]
    sep = b" " if kind == "trec" else b"\t"
    choices = [
        st.tuples(st.sampled_from(counts), st.lists(TOKEN, min_size=6, max_size=6)).map(
            lambda c: sep.join(t.encode() for t in ["new", *c[1]][: c[0]])
        ),
        NOT_INTEGER.map(lambda g: _qrels_line(kind, "new", "d0", g)),
        UNDECODABLE.map(lambda b: b"new" + sep + b.replace(b"\t", b"").replace(b" ", b"")).filter(
            _undecodable
        ),
        UNICODE_BLANK,  # only Unicode whitespace: not blank to the reader, and no columns
    ]
    if position < len(lines):
        choices.append(BLANK)
    if position > 0:  # the same query and document judged twice
        choices.append(
            st.integers(0, position - 1).map(lambda i: _qrels_line(kind, f"q{i % 3}", f"d{i}", "1"))
        )
    bad = data.draw(st.one_of(choices), label="bad line")
    with tempfile.TemporaryDirectory() as folder:
        expected: dict[str, dict[str, int]] = {}
        for i, g in enumerate(grades):
            expected.setdefault(f"q{i % 3}", {})[f"d{i}"] = g
        good = write(folder, "qrels.tsv", [*header, *lines])
        assert load_qrels(good) == expected
        body = [*header, *lines[:position], bad, *lines[position:]]
        path = write(folder, "qrels.tsv", body)
        rejected(load_qrels, path, len(header) + position + 1, record_property)


# ------------------------------------------------------------------ ids with control characters
ID_CHARS = "abcxyz0123-_.:"
# Every control character (Unicode category Cc: NUL, tab, newline, DEL, C1, ...) inside an id.
CONTROL = st.characters(categories=["Cc"])
ID_KINDS = [
    "corpus.jsonl",
    "corpus.tsv",
    "queries.jsonl",
    "queries.tsv",
    "qrels-beir",
    "qrels-trec",
]


def _id_line(kind: str, i: int, doc_id: str, qid: str) -> bytes:
    """Line ``i`` of a file of ``kind`` with these ids (qid for queries and qrels)."""
    if kind == "corpus.jsonl":
        return json.dumps({"_id": doc_id, "title": "T", "text": f"text {i}"}).encode()
    if kind == "corpus.tsv":
        return f"{doc_id}\tT\ttext {i}".encode()
    if kind == "queries.jsonl":
        return json.dumps({"_id": qid, "text": f"query {i}"}).encode()
    if kind == "queries.tsv":
        return f"{qid}\tquery {i}".encode()
    return _qrels_line("trec" if kind == "qrels-trec" else "beir", qid, doc_id, "1")


@EXAMPLES
@given(
    data=st.data(),
    kind=st.sampled_from(ID_KINDS),
    n=st.integers(1, 5),
    parts=st.tuples(st.text(ID_CHARS, max_size=4), CONTROL, st.text(ID_CHARS, max_size=4)),
)
def test_property_id_with_a_control_character_is_refused(
    data, kind, n, parts, record_property
) -> None:
    """An id holding any control character, on any line of any loader, is refused by line."""
    before, control, after = parts
    if kind.startswith("qrels") and control.isspace():
        # Whitespace separates qrels columns: such a character makes two ids of one.
        control = data.draw(CONTROL.filter(lambda c: not c.isspace()), label="control")
    bad_id = before + control + after
    which = data.draw(st.sampled_from(["doc", "query"]), label="which id")
    if kind.startswith("corpus"):
        which = "doc"
    elif kind.startswith("queries"):
        which = "query"
    lines = [_id_line(kind, i, f"d{i}", f"q{i}") for i in range(n)]
    position = data.draw(st.integers(0, n), label="position")
    doc_id, qid = (bad_id, "qnew") if which == "doc" else ("dnew", bad_id)
    bad = _id_line(kind, n, doc_id, qid)
    name = "qrels.tsv" if kind.startswith("qrels") else kind
    loader = {"corpus": load_corpus, "queries": load_queries, "qrels": load_qrels}[
        kind.split(".")[0].split("-")[0]
    ]
    with tempfile.TemporaryDirectory() as folder:
        loader(write(folder, name, lines))  # the file loads without the bad line
        path = write(folder, name, [*lines[:position], bad, *lines[position:]])
        message = rejected(loader, path, position + 1, record_property)
    if kind.endswith("jsonl") or kind.startswith("qrels"):
        # The id arrives whole: the message names the character (or the id is only blanks).
        assert f"U+{ord(control):04X}" in message or "empty" in message, message


@EXAMPLES
@given(
    doc_ids=st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=6, unique=True),
    qids=st.lists(st.integers(0, 10**6), min_size=1, max_size=4, unique=True),
)
def test_property_integer_ids_agree_across_corpus_queries_and_qrels(doc_ids, qids) -> None:
    """JSON integer ids load as their decimal strings, so qrels (text) name the same ids."""
    with tempfile.TemporaryDirectory() as folder:
        corpus = write(
            folder, "corpus.jsonl", [json.dumps({"_id": d, "text": "t"}).encode() for d in doc_ids]
        )
        queries = write(
            folder, "queries.jsonl", [json.dumps({"_id": q, "text": "q"}).encode() for q in qids]
        )
        pairs = [(q, doc_ids[i % len(doc_ids)]) for i, q in enumerate(qids)]
        qrels = write(folder, "qrels.tsv", [f"{q}\t{d}\t1".encode() for q, d in pairs])
        assert load_corpus(corpus).doc_ids == [str(d) for d in doc_ids]
        assert list(load_queries(queries)) == [str(q) for q in qids]
        judged = load_qrels(qrels)
        assert judged == {str(q): {str(d): 1} for q, d in pairs}


# ------------------------------------------------------------------------------ truncation
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["queries", "corpus"]),
    texts=st.lists(FIELD.map(lambda t: t + " ü東"), min_size=1, max_size=5),
    data=st.data(),
)
def test_property_file_cut_at_any_byte(kind, texts, data, record_property) -> None:
    """A file cut short (a copy interrupted, a full disk) never loads as something else."""
    if kind == "queries":
        rows = [{"_id": f"q{i}", "text": t} for i, t in enumerate(texts)]
        loader, name = load_queries, "queries.jsonl"
    else:
        rows = [{"_id": f"d{i}", "title": "T", "text": t} for i, t in enumerate(texts)]
        loader, name = load_corpus, "corpus.jsonl"
    full = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)
    cut = data.draw(st.integers(0, len(full) - 1), label="cut")
    head = full[:cut]
    complete = head.count(b"\n") + (1 if head and full[cut : cut + 1] == b"\n" else 0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(head)
        if not head:  # nothing left: an empty file
            rejected(loader, path, None, record_property)
        elif head.endswith(b"\n") or full[cut : cut + 1] == b"\n":  # only whole lines left
            loaded = loader(path)
            if kind == "queries":
                assert loaded == {r["_id"]: r["text"] for r in rows[:complete]}
            else:
                assert loaded.doc_ids == [r["_id"] for r in rows[:complete]]
                assert loaded.texts == [r["text"] for r in rows[:complete]]
        else:  # cut inside a line: that line is named
            rejected(loader, path, head.count(b"\n") + 1, record_property)
