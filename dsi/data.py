"""Load corpora, queries and relevance judgments, validating every line.

Plain Python on purpose: files are streamed line by line (a million documents fit comfortably),
and no ``datasets`` dependency is needed. Supported layouts:

- a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``;
- JSONL: one object per line, id under ``_id``, ``id`` or ``doc_id``, text under ``text`` (or
  ``contents``, as pyserini writes it), optional ``title``; other keys are ignored;
- TSV: ``id<TAB>text`` or ``id<TAB>title<TAB>text``, with an optional header line;
- qrels: BEIR TSV ``query-id corpus-id score`` (optional header) or TREC ``qid 0 docid grade``.

Every problem raises :class:`DataError` with one sentence naming the file and the 1-based line.
Corpora, queries and qrels built in Python (:meth:`Corpus.from_records`,
:func:`queries_from_records`, :func:`qrels_from_records`) pass the same checks as a JSONL line, with the same messages, naming the record by its 0-based
position instead of a line; a Hugging Face ``datasets.Dataset`` (or a ``DatasetDict`` of one
split) names the row and, once read, its id: ``dataset 'scifact' split 'corpus' row 3 (id 'd3')``.
Blank lines at the end of a file are ignored; a blank line followed by more data is an error.

Ids (of documents and queries, in every format) are non-empty and hold neither whitespace nor
control characters (Unicode category Cc: NUL, tab, newline, ...), which would break TREC run
files. In JSONL a JSON integer id is read as its decimal string (``7`` -> ``"7"``), so a corpus,
its queries and their qrels agree; other non-string ids (booleans, numbers with a fraction) are
refused.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

logger = logging.getLogger(__name__)

_DOC_ID_KEYS = ("_id", "id", "doc_id")
_DOC_TEXT_KEYS = ("text", "contents")
_QUERY_ID_KEYS = ("_id", "id", "query_id", "qid")
_QUERY_TEXT_KEYS = ("text", "query")
_ID_HEADERS = {"_id", "id", "doc_id", "docid", "pid", "corpus-id", "qid", "query-id", "query_id"}
_TEXT_HEADERS = {"text", "contents", "body", "passage", "query"}
_QRELS_HEADER_IDS = {"query-id", "query_id", "qid", "query"}
_QRELS_QUERY_KEYS = ("query-id", "query_id", "qid")
_QRELS_DOC_KEYS = ("corpus-id", "corpus_id", "doc_id", "docid")
_QRELS_GRADE_KEYS = ("score", "grade")
_WHITESPACE = re.compile(r"\s")
_BLANK = " \t\r\f\v"  # a blank line holds only ASCII whitespace
_INTEGER = re.compile(r"[+-]?\d+")


class DataError(ValueError):
    """A corpus, query or qrels file (or record) is malformed; the message says where."""


@dataclass(frozen=True)
class _Where:
    """Where a row came from: ``file line 3`` or ``records record 3`` (the start of a message)."""

    source: str | Path
    # "line" (1-based, as editors count), "record" (0-based, as Python indexes) or "row" (a
    # ``datasets`` row, 0-based as ``dataset[i]`` indexes it)
    unit: str
    number: int
    record_id: str | None = None  # a dataset row's id once read, so a message names both

    def __str__(self) -> str:
        named = f" (id {self.record_id!r})" if self.record_id is not None else ""
        return f"{self.source} {self.unit} {self.number}{named}"

    def named(self, record_id: str) -> _Where:
        """This place with the row's id added (dataset rows only; lines and records say the
        id in the message where it matters)."""
        return replace(self, record_id=record_id) if self.unit == "row" else self


@dataclass
class Corpus:
    """Documents in file order, each id once; ``source`` says where they came from."""

    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    source: str = ""

    def __post_init__(self) -> None:
        if not len(self.doc_ids) == len(self.titles) == len(self.texts):
            raise ValueError(
                f"corpus {self.source!r} has {len(self.doc_ids)} ids, {len(self.titles)} titles "
                f"and {len(self.texts)} texts; they must be equally long"
            )
        # A repeated id would make positions() map it to its last copy only; a set is cheap.
        if len(set(self.doc_ids)) != len(self.doc_ids):
            seen: set[str] = set()
            for doc_id in self.doc_ids:
                if doc_id in seen:
                    raise DataError(f"corpus {self.source!r} has doc id {doc_id!r} more than once")
                seen.add(doc_id)

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping], source: str = "records", *, skip_empty: bool = False
    ) -> Corpus:
        """A corpus from mappings shaped like the JSONL lines: ``_id`` (or ``id``, ``doc_id``),
        ``text`` (or ``contents``), optional ``title``; other keys are ignored.

        Any iterable of mappings works, e.g. a list of dicts or a ``datasets.Dataset`` (or a
        ``DatasetDict`` of one split; ``datasets`` is optional, the ``datasets`` extra). Every
        record passes the checks of :func:`load_corpus`, and a problem raises
        :class:`DataError` naming the record by its 0-based position, e.g. ``records record 3:
        missing 'text' or 'contents' field``; a dataset's row also by its id, and a missing
        column is named before any row is read.
        """
        records, source = _record_source(records, source)
        return _build_corpus(_corpus_records(records, source), source, skip_empty=skip_empty)

    @classmethod
    def of_checked(
        cls,
        doc_ids: Sequence[str],
        titles: Sequence[str],
        texts: Sequence[str],
        source: str = "",
    ) -> Corpus:
        """A corpus of columns checked before (an index's saved documents), built without
        reading them: they may be sequences that read a document when asked for it
        (:func:`dsi.index_format.load_documents`)."""
        corpus = cls.__new__(cls)
        corpus.doc_ids, corpus.titles, corpus.texts = doc_ids, titles, texts  # type: ignore[assignment]
        corpus.source = source
        return corpus

    def __len__(self) -> int:
        return len(self.doc_ids)

    def full_texts(self) -> list[str]:
        """``title + " " + text`` per document (just the text when the title is empty)."""
        return [f"{t} {x}" if t else x for t, x in zip(self.titles, self.texts, strict=True)]

    def positions(self) -> dict[str, int]:
        """Map each doc id to its index in this corpus."""
        return {doc_id: i for i, doc_id in enumerate(self.doc_ids)}

    def subset(self, doc_ids: Iterable[str]) -> Corpus:
        """The documents named by ``doc_ids``, in that order."""
        where = self.positions()
        picked: list[int] = []
        seen: set[str] = set()
        for doc_id in doc_ids:
            if doc_id not in where:
                raise DataError(f"{self.source}: subset asks for unknown doc id {doc_id!r}")
            if doc_id in seen:
                raise DataError(f"{self.source}: subset asks for doc id {doc_id!r} twice")
            seen.add(doc_id)
            picked.append(where[doc_id])
        return Corpus(
            doc_ids=[self.doc_ids[i] for i in picked],
            titles=[self.titles[i] for i in picked],
            texts=[self.texts[i] for i in picked],
            source=f"{self.source} (subset of {len(picked)})",
        )

    @classmethod
    def concat(cls, corpora: Iterable[Corpus]) -> Corpus:
        """Join corpora end to end; a doc id present in two of them is an error."""
        doc_ids: list[str] = []
        titles: list[str] = []
        texts: list[str] = []
        sources: list[str] = []
        owner: dict[str, str] = {}
        for corpus in corpora:
            for doc_id in corpus.doc_ids:
                if doc_id in owner:
                    raise DataError(
                        f"doc id {doc_id!r} appears in both {owner[doc_id]} and {corpus.source}"
                    )
                owner[doc_id] = corpus.source
            doc_ids.extend(corpus.doc_ids)
            titles.extend(corpus.titles)
            texts.extend(corpus.texts)
            sources.append(corpus.source)
        return cls(doc_ids, titles, texts, source=" + ".join(sources))


@dataclass
class TrainingQueries:
    """The training queries a build may read, and their judgements.

    Built from a whole queries file and the training qrels, it keeps only the queries with a
    relevant judgement in those qrels, minus the ``dev`` query ids: a BEIR ``queries.jsonl``
    holds the test and dev queries too, and none of them may reach the tokenizer, the training
    examples, the query generator or the saved index. The set is derived here, once; everything
    that builds from training queries reads ``queries``/``qrels``/``texts``/``pairs`` of this.
    """

    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    dev: Collection[str] = ()

    def __post_init__(self) -> None:
        held_out = frozenset(self.dev)
        usable = {
            qid: dict(judged)
            for qid, judged in self.qrels.items()
            if qid in self.queries
            and qid not in held_out
            and any(grade > 0 for grade in judged.values())
        }
        # File order of the queries, so that the texts a tokenizer reads do not depend on qrels order.
        self.queries = {qid: text for qid, text in self.queries.items() if qid in usable}
        self.qrels = {qid: usable[qid] for qid in self.queries}
        self.dev = held_out

    def __len__(self) -> int:
        return len(self.queries)

    def texts(self) -> list[str]:
        """The text of every usable query, in the order of the queries file."""
        return list(self.queries.values())

    def pairs(self, known_doc_ids: Collection[str]) -> list[tuple[str, str]]:
        """(query text, doc id) for every relevant judgement of a document in ``known_doc_ids``."""
        out = []
        for qid, judged in sorted(self.qrels.items()):
            for doc_id, grade in sorted(judged.items()):
                if grade > 0 and doc_id in known_doc_ids:
                    out.append((self.queries[qid], doc_id))
        return out


# ---------------------------------------------------------------------------------------------
# Line reading shared by all loaders


def _lines(path: Path) -> Iterator[tuple[_Where, str]]:
    """Yield ``(where, text without line ending)`` for every non-blank line.

    Bytes are decoded per line so an encoding error is reported with its line number.
    """
    blank: int | None = None
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                if blank is not None:
                    raise _blank_error(path, blank) from None
                raise DataError(
                    f"{path} line {number}: invalid UTF-8 byte 0x{raw[exc.start]:02x} "
                    f"at byte {exc.start + 1}"
                ) from None
            if not line.strip(_BLANK):
                blank = blank or number
                continue
            if blank is not None:
                raise _blank_error(path, blank)
            yield _Where(path, "line", number), line


def _blank_error(path: Path, number: int) -> DataError:
    return DataError(f"{path} line {number}: blank line in the middle of the file")


def _check_id(value: str, where: _Where, what: str) -> str:
    if not value.strip():
        raise DataError(f"{where}: empty {what}")
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:  # tab and newline too: they are whitespace, but name them exactly
        raise DataError(
            f"{where}: {what} {value!r} contains the control character U+{ord(control):04X}"
        )
    if _WHITESPACE.search(value):
        raise DataError(f"{where}: {what} {value!r} contains whitespace")
    return value


def _check_unicode(value: str, key: str, where: _Where) -> None:
    # json.loads accepts lone UTF-16 surrogates (\ud800); they cannot be written back as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{where}: field '{key}' contains an unpaired surrogate escape") from None


def _parse_object(line: str, where: _Where) -> dict:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise DataError(f"{where}: malformed JSON ({detail})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    return obj


def _is_dataset(records: object) -> bool:
    """A ``datasets.Dataset`` or ``IterableDataset``, told without importing ``datasets``."""
    return type(records).__module__.startswith("datasets.") and hasattr(records, "column_names")


def _record_source(records: Iterable[Mapping], source: str) -> tuple[Iterable[Mapping], str]:
    """``(records, source)`` with a ``datasets.DatasetDict`` of one split replaced by that split
    (BEIR's hub corpora load as ``{"corpus": Dataset}``) and the default ``source`` of a
    dataset replaced by its name and split; a dict of several splits must be indexed first."""
    records = _dataset_split(records, source)
    return records, (_dataset_source(records, source) if _is_dataset(records) else source)


def _dataset_split(records: Iterable[Mapping], source: str) -> Iterable[Mapping]:
    if not (isinstance(records, Mapping) and type(records).__module__.startswith("datasets.")):
        return records
    splits = list(records)
    source = "dataset" if source == "records" else source
    if len(splits) != 1:
        names = ", ".join(repr(str(name)) for name in splits) or "none"
        raise DataError(
            f"{source}: a {type(records).__name__} with the splits {names}; pass one of them, "
            f"e.g. dataset[{str(splits[0])!r}]"
            if splits
            else f"{source}: a {type(records).__name__} with no splits"
        )
    return records[splits[0]]


def _dataset_source(dataset: object, source: str) -> str:
    """``source`` as given, or for the default a name from the dataset's info and split."""
    if source != "records":
        return source
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) or getattr(info, "config_name", None)
    split = getattr(dataset, "split", None)
    label = "dataset" + (f" {name!r}" if name else "")
    return label + (f" split {str(split)!r}" if split else "")


def _check_columns(dataset: object, needed: Sequence[tuple[str, ...]], source: str) -> None:
    """One sentence for a dataset that lacks a column, before any row is read."""
    columns = getattr(dataset, "column_names", None)
    if not columns:  # an IterableDataset may not know its columns; rows are checked anyway
        return
    for keys in needed:
        if not any(key in columns for key in keys):
            names = " or ".join(f"'{k}'" for k in keys)
            have = ", ".join(repr(c) for c in columns)
            raise DataError(f"{source}: no {names} column (the columns are {have})")


def _records(
    records: Iterable[Mapping], source: str, needed: Sequence[tuple[str, ...]] = ()
) -> Iterator[tuple[_Where, Mapping]]:
    """Number records from 0 and check each is a mapping: _lines + _parse_object for Python.

    A ``datasets`` Dataset (after :func:`_record_source`) is read row by row, its rows named
    ``row N (id 'x')``; ``needed`` lists the key alternatives its columns must offer."""
    if _is_dataset(records):
        _check_columns(records, needed, source)
        for number, record in enumerate(records):
            yield _Where(source, "row", number), record
        return
    if isinstance(records, (str, bytes, Mapping)):
        # Iterating these yields characters or keys, which would fail record by record.
        raise DataError(
            f"{source}: expected an iterable of records (mappings), found {type(records).__name__}"
        )
    for number, record in enumerate(records):
        where = _Where(source, "record", number)
        if not isinstance(record, Mapping):
            raise DataError(f"{where}: expected a mapping, found {type(record).__name__}")
        yield where, record


def _get_string(
    obj: Mapping,
    keys: tuple[str, ...],
    where: _Where,
    line: str | None,
    required: bool = True,
    what: str = "a string",
) -> tuple[str, str] | None:
    """The first of ``keys`` present, as ``(key, value)``; ``line`` is the raw JSON text, or None
    for a Python record (whose strings may hold any code point, so each is checked)."""
    for key in keys:
        if key in obj:
            value = obj[key]
            if not isinstance(value, str):
                raise DataError(
                    f"{where}: field '{key}' must be {what}, not {type(value).__name__}"
                )
            if line is None or "\\u" in line:
                _check_unicode(value, key, where)
            return key, value
    if required:
        names = " or ".join(f"'{k}'" for k in keys)
        raise DataError(f"{where}: missing {names} field")
    return None


def _get_id(obj: Mapping, keys: tuple[str, ...], where: _Where, line: str | None) -> str:
    """The id under the first of ``keys``: a string, or a JSON integer as its decimal string."""
    for key in keys:
        if key in obj:
            value = obj[key]
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            break
    _, value = _get_string(obj, keys, where, line, what="a string or an integer")
    return value


def _register(seen: dict[str, int], key: str, where: _Where, what: str) -> None:
    first = seen.setdefault(key, where.number)
    if first != where.number:
        raise DataError(f"{where}: duplicate {what} {key!r} (first on {where.unit} {first})")


def _tsv_header(fields: list[str]) -> bool:
    """True for a header such as ``id<TAB>title<TAB>text``: an id name, one text name, a title."""
    names = [f.strip().lower() for f in fields]
    rest = names[1:]
    return (
        len(names) in (2, 3)
        and names[0] in _ID_HEADERS
        and sum(n in _TEXT_HEADERS for n in rest) == 1
        and all(n in _TEXT_HEADERS or n == "title" for n in rest)
    )


def _resolve(path: str | Path, member: str, kind: str) -> tuple[Path, str]:
    """Return (file, format) for a BEIR folder or a .jsonl/.tsv file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        inner = path / member
        if not inner.is_file():
            raise DataError(f"{path}: folder has no {member} (expected the BEIR layout)")
        return inner, "jsonl"
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".tsv"):
        raise DataError(
            f"{path}: unknown {kind} format {suffix or '(no extension)'!r} "
            f"(expected a BEIR folder, .jsonl or .tsv)"
        )
    return path, suffix[1:]


# ---------------------------------------------------------------------------------------------
# Corpus


def load_corpus(path: str | Path, *, skip_empty: bool = False) -> Corpus:
    """Load documents from a BEIR folder, a ``.jsonl`` or a ``.tsv`` file.

    A document whose text is empty is an error unless ``skip_empty`` is set, in which case it is
    dropped with a logged warning (BEIR Cranfield has two such documents).
    """
    file, fmt = _resolve(path, "corpus.jsonl", "corpus")
    rows = _corpus_jsonl(file) if fmt == "jsonl" else _corpus_tsv(file)
    return _build_corpus(rows, str(file), skip_empty=skip_empty)


def _build_corpus(
    rows: Iterable[tuple[_Where, str, str, str]], source: str, *, skip_empty: bool
) -> Corpus:
    """The checks across rows, shared by files and records: duplicates, blank titles and texts."""
    doc_ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    skipped = 0
    for where, doc_id, title, text in rows:
        _register(seen, doc_id, where, "doc id")
        if title and not title.strip():
            raise DataError(f"{where}: title of {doc_id!r} is only whitespace")
        if not text.strip():
            if skip_empty:
                skipped += 1
                continue
            raise DataError(
                f"{where}: document {doc_id!r} has empty text "
                f"(skip such documents with skip_empty=True, or --skip-empty on the command line)"
            )
        doc_ids.append(doc_id)
        titles.append(title)
        texts.append(text)
    if skipped:
        logger.warning("%s: skipped %d documents with empty text", source, skipped)
    if not doc_ids:
        raise DataError(f"{source}: no documents found")
    return Corpus(doc_ids, titles, texts, source=source)


def _corpus_row(obj: Mapping, where: _Where, line: str | None) -> tuple[_Where, str, str, str]:
    """One document from a JSON object or a Python record: (where, doc id, title, text)."""
    doc_id = _check_id(_get_id(obj, _DOC_ID_KEYS, where, line), where, "doc id")
    where = where.named(doc_id)
    _, text = _get_string(obj, _DOC_TEXT_KEYS, where, line)
    found = _get_string(obj, ("title",), where, line, required=False)
    return where, doc_id, (found[1] if found else ""), text


def _corpus_jsonl(path: Path) -> Iterator[tuple[_Where, str, str, str]]:
    for where, line in _lines(path):
        yield _corpus_row(_parse_object(line, where), where, line)


def _corpus_records(
    records: Iterable[Mapping], source: str
) -> Iterator[tuple[_Where, str, str, str]]:
    for where, record in _records(records, source, (_DOC_ID_KEYS, _DOC_TEXT_KEYS)):
        yield _corpus_row(record, where, None)


def _corpus_tsv(path: Path) -> Iterator[tuple[_Where, str, str, str]]:
    columns: tuple[int, int | None, int] | None = None  # (id, title, text) column indices
    width = 0
    first = 0
    for where, line in _lines(path):
        number = where.number
        fields = line.split("\t")
        if columns is None:
            first = number
            if _tsv_header(fields):
                names = [f.strip().lower() for f in fields]
                text_col = next(i for i, n in enumerate(names) if i and n in _TEXT_HEADERS)
                title_col = names.index("title") if "title" in names else None
                columns, width = (0, title_col, text_col), len(fields)
                continue
            if len(fields) not in (2, 3):
                raise DataError(
                    f"{path} line {number}: expected 2 or 3 tab-separated columns "
                    f"(id, [title,] text), found {len(fields)}"
                )
            width = len(fields)
            columns = (0, 1, 2) if width == 3 else (0, None, 1)
        if len(fields) != width:
            raise DataError(
                f"{path} line {number}: expected {width} tab-separated columns "
                f"as on line {first}, found {len(fields)}"
            )
        id_col, title_col, text_col = columns
        doc_id = _check_id(fields[id_col], where, "doc id")
        title = fields[title_col] if title_col is not None else ""
        yield where, doc_id, title, fields[text_col]


# ---------------------------------------------------------------------------------------------
# Queries and qrels


def load_queries(path: str | Path) -> dict[str, str]:
    """Load ``qid -> text`` from a BEIR folder (``queries.jsonl``), ``.jsonl`` or ``.tsv``."""
    file, fmt = _resolve(path, "queries.jsonl", "queries")
    rows = _queries_jsonl(file) if fmt == "jsonl" else _queries_tsv(file)
    return _build_queries(rows, str(file))


def queries_from_records(records: Iterable[Mapping], source: str = "records") -> dict[str, str]:
    """``qid -> text`` from mappings shaped like ``queries.jsonl`` lines: ``_id`` (or ``id``,
    ``query_id``, ``qid``) and ``text`` (or ``query``); other keys are ignored.

    Any iterable of mappings works (a list of dicts, a ``datasets.Dataset``); the checks and
    messages are those of :func:`load_queries`, naming the record by its 0-based position.
    """
    records, source = _record_source(records, source)
    needed = (_QUERY_ID_KEYS, _QUERY_TEXT_KEYS)
    rows = (_query_row(record, where, None) for where, record in _records(records, source, needed))
    return _build_queries(rows, source)


def _build_queries(rows: Iterable[tuple[_Where, str, str]], source: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    seen: dict[str, int] = {}
    for where, qid, text in rows:
        _register(seen, qid, where, "query id")
        if not text.strip():
            raise DataError(f"{where}: query {qid!r} has empty text")
        queries[qid] = text
    if not queries:
        raise DataError(f"{source}: no queries found")
    return queries


def _query_row(obj: Mapping, where: _Where, line: str | None) -> tuple[_Where, str, str]:
    qid = _check_id(_get_id(obj, _QUERY_ID_KEYS, where, line), where, "query id")
    where = where.named(qid)
    _, text = _get_string(obj, _QUERY_TEXT_KEYS, where, line)
    return where, qid, text


def _queries_jsonl(path: Path) -> Iterator[tuple[_Where, str, str]]:
    for where, line in _lines(path):
        yield _query_row(_parse_object(line, where), where, line)


def _queries_tsv(path: Path) -> Iterator[tuple[_Where, str, str]]:
    for where, line in _lines(path):
        number = where.number
        fields = line.split("\t")
        if number == 1 and len(fields) == 2 and _tsv_header(fields):
            continue
        if len(fields) != 2:
            raise DataError(
                f"{path} line {number}: expected 2 tab-separated columns (id, text), "
                f"found {len(fields)}"
            )
        yield where, _check_id(fields[0], where, "query id"), fields[1]


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Load ``qid -> {doc_id: grade}`` from BEIR TSV or TREC qrels (format read off line one)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass a qrels file such as qrels/test.tsv")
    return _build_qrels(_qrels_lines(path), str(path))


def qrels_from_records(
    records: Iterable[Mapping], source: str = "records"
) -> dict[str, dict[str, int]]:
    """``qid -> {doc_id: grade}`` from mappings shaped like BEIR's qrels columns: ``query-id``
    (or ``query_id``, ``qid``), ``corpus-id`` (or ``corpus_id``, ``doc_id``, ``docid``) and
    ``score`` (or ``grade``); ids and grades may be integers; other keys are ignored.

    Any iterable of mappings works (a list of dicts, a ``datasets.Dataset`` of BEIR qrels); the
    checks and messages are those of :func:`load_qrels`, naming the record by its 0-based position.
    """
    records, source = _record_source(records, source)
    return _build_qrels(_qrels_records(records, source), source)


def _build_qrels(
    rows: Iterable[tuple[_Where, str, str, str]], source: str
) -> dict[str, dict[str, int]]:
    """The checks of one judgement (ids, grade, repeats), shared by files and records."""
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    for where, raw_qid, raw_doc_id, grade in rows:
        qid = _check_id(raw_qid, where, "query id")
        doc_id = _check_id(raw_doc_id, where, "doc id")
        if not _INTEGER.fullmatch(grade):
            raise DataError(f"{where}: grade {grade!r} is not an integer")
        first = seen.setdefault((qid, doc_id), where.number)
        if first != where.number:
            raise DataError(
                f"{where}: duplicate judgment for query {qid!r} and doc {doc_id!r} "
                f"(first on {where.unit} {first})"
            )
        qrels.setdefault(qid, {})[doc_id] = int(grade)
    if not qrels:
        raise DataError(f"{source}: no judgments found")
    return qrels


def _qrels_records(
    records: Iterable[Mapping], source: str
) -> Iterator[tuple[_Where, str, str, str]]:
    needed = (_QRELS_QUERY_KEYS, _QRELS_DOC_KEYS, _QRELS_GRADE_KEYS)
    for where, record in _records(records, source, needed):
        qid = _get_id(record, _QRELS_QUERY_KEYS, where, None)
        where = where.named(qid)
        doc_id = _get_id(record, _QRELS_DOC_KEYS, where, None)
        # A grade is an integer like an id is; _get_id reads it the same way (7 -> "7").
        grade = _get_id(record, _QRELS_GRADE_KEYS, where, None)
        yield where, qid, doc_id, grade


def _qrels_lines(path: Path) -> Iterator[tuple[_Where, str, str, str]]:
    width = 0
    for where, line in _lines(path):
        number = where.number
        fields = line.split()
        if width == 0:
            if _qrels_header(number, fields):
                continue
            if len(fields) not in (3, 4):
                raise DataError(
                    f"{path} line {number}: expected 3 columns (query-id corpus-id score) or "
                    f"4 columns (qid iter docid grade), found {len(fields)}"
                )
            width = len(fields)
        if len(fields) != width:
            raise DataError(
                f"{path} line {number}: expected {width} columns like the first line, "
                f"found {len(fields)}"
            )
        yield where, fields[0], fields[-2], fields[-1]


def _qrels_header(number: int, fields: list[str]) -> bool:
    """True for a BEIR header line such as ``query-id corpus-id score``."""
    return (
        number == 1
        and len(fields) == 3
        and fields[0].lower() in _QRELS_HEADER_IDS
        and not _INTEGER.fullmatch(fields[2])
    )


def beir_split_paths(folder: str | Path, split: str) -> tuple[Path, Path]:
    """Return ``(queries.jsonl, qrels/<split>.tsv)`` of a BEIR folder, checking both exist."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    queries = folder / "queries.jsonl"
    if not queries.is_file():
        raise DataError(f"{folder}: folder has no queries.jsonl (expected the BEIR layout)")
    qrels = folder / "qrels" / f"{split}.tsv"
    if not qrels.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise DataError(
            f"{folder}: no qrels for split {split!r} (available: {', '.join(available) or 'none'})"
        )
    return queries, qrels


def expanded_corpus(corpus: Corpus, training_pairs: Sequence[tuple[str, str]]) -> Corpus:
    """``corpus`` with the text of every training query appended to the document it judges."""
    appended: dict[str, list[str]] = {}
    for query, doc_id in training_pairs:
        appended.setdefault(doc_id, []).append(query)
    texts = [
        " ".join([text, *appended[doc_id]]) if doc_id in appended else text
        for doc_id, text in zip(corpus.doc_ids, corpus.texts, strict=True)
    ]
    return Corpus(list(corpus.doc_ids), list(corpus.titles), texts, source=corpus.source)
