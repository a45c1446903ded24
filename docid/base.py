"""The docid map (document id <-> sequence of symbol indices), its files and the scheme registry.

A docid map directory holds plain files only:

- ``docids.jsonl``: one ``{"doc_id": ..., "docid": [int, ...]}`` a line, in corpus order.
- ``docid_vocab.json``: format version, scheme, document count, symbols and scheme options.
- scheme data, e.g. ``docid_tree.safetensors`` for the semantic scheme.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from docid.io import atomic_write_text

FORMAT_VERSION = 1
DOCIDS_FILE = "docids.jsonl"
VOCAB_FILE = "docid_vocab.json"

Docid = tuple[int, ...]


class DocidError(ValueError):
    """Invalid docid data: a bad file, a bad argument or an inconsistent map."""


class DocidMap:
    """Maps each document id to a unique, non-empty sequence of indices into ``symbols``.

    Subclasses implement one scheme: ``fit`` builds a map from a corpus and ``_plan_add`` gives
    new documents docids without changing existing ones. The model side maps symbol index ``i``
    to token id ``offset + i``; this class never sees token ids.
    """

    scheme: ClassVar[str] = ""
    # What ``fit`` and ``add`` take as a document's text: "text" (its title and body) or
    # "title" (the title scheme's).
    reads: ClassVar[str] = "text"

    def __init__(
        self,
        doc_ids: Sequence[str],
        sequences: Sequence[Sequence[int]],
        symbols: Sequence[str],
        options: dict[str, Any] | None = None,
    ) -> None:
        symbols = list(symbols)
        _check_symbols(symbols)
        seqs = [tuple(map(int, seq)) for seq in sequences]
        if len(seqs) != len(doc_ids):
            raise DocidError(f"got {len(doc_ids)} doc ids but {len(seqs)} docids.")
        rows, by_seq = _index_entries(doc_ids, seqs, len(symbols), label="document")
        self._set(list(doc_ids), seqs, symbols, dict(options or {}), rows, by_seq)

    def _set(
        self,
        doc_ids: list[str],
        sequences: list[Docid],
        symbols: list[str],
        options: dict[str, Any],
        rows: dict[str, int],
        by_seq: dict[Docid, str],
    ) -> None:
        self.doc_ids = doc_ids
        self.sequences = sequences
        self.symbols = symbols
        self.options = options
        self._rows = rows
        self._by_seq = by_seq

    # --- lookups -------------------------------------------------------------------------------

    def sequence(self, doc_id: str) -> Docid:
        """The docid of ``doc_id``; ``KeyError`` if the document is unknown."""
        try:
            return self.sequences[self._rows[doc_id]]
        except KeyError:
            raise KeyError(f"unknown doc id {doc_id!r}.") from None

    def lookup(self, seq: Sequence[int]) -> str | None:
        """The document whose docid is ``seq``, or None if no document has it."""
        try:
            return self._by_seq.get(tuple(map(int, seq)))
        except (TypeError, ValueError):
            return None

    def symbol_names(self, doc_id: str) -> list[str]:
        """The docid of ``doc_id`` spelled as symbol names (for display and debugging)."""
        return [self.symbols[i] for i in self.sequence(doc_id)]

    @property
    def max_sequence_length(self) -> int:
        """Length of the longest docid (the decoder needs this many steps plus EOS)."""
        return max((len(s) for s in self.sequences), default=0)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._rows

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(scheme={self.scheme!r}, docs={len(self)}, "
            f"symbols={len(self.symbols)})"
        )

    # --- building ------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls, doc_ids: Sequence[str], texts: Sequence[str] | None = None, **options: Any
    ) -> DocidMap:
        """Assign docids to a corpus (implemented by each scheme)."""
        raise NotImplementedError(f"scheme {cls.scheme!r} does not implement fit.")

    def add(
        self, doc_ids: Sequence[str], texts: Sequence[str] | None = None, **options: Any
    ) -> list[Docid]:
        """Give new documents docids and return them; existing docids never change.

        New symbols, when needed, are appended to ``symbols`` so existing indices stay valid.
        """
        doc_ids = list(doc_ids)
        texts = check_corpus(doc_ids, texts, allow_empty=True)
        for doc_id in doc_ids:
            if doc_id in self._rows:
                raise DocidError(f"doc id {doc_id!r} is already in the docid map.")
        if not doc_ids:
            return []
        symbols, seqs = self._plan_add(doc_ids, texts, **options)
        symbols = list(symbols)
        if len(seqs) != len(doc_ids):
            raise RuntimeError(
                f"scheme {self.scheme!r} planned {len(seqs)} docids for {len(doc_ids)}."
            )
        if symbols[: len(self.symbols)] != self.symbols:
            raise RuntimeError(f"scheme {self.scheme!r} changed existing symbols while adding.")
        _check_symbols(symbols)
        seqs = [tuple(map(int, s)) for s in seqs]
        new_rows, new_by_seq = _index_entries(doc_ids, seqs, len(symbols), label="new document")
        for seq, doc_id in new_by_seq.items():
            if seq in self._by_seq:
                raise RuntimeError(
                    f"new document {doc_id!r} got the docid of {self._by_seq[seq]!r}."
                )
        # Commit only after every check passed, so a failed add leaves the map unchanged.
        offset = len(self.doc_ids)
        self.symbols = symbols
        self.doc_ids.extend(doc_ids)
        self.sequences.extend(seqs)
        self._rows.update({d: offset + r for d, r in new_rows.items()})
        self._by_seq.update(new_by_seq)
        return seqs

    def _plan_add(
        self, doc_ids: list[str], texts: list[str] | None, **options: Any
    ) -> tuple[list[str], list[Docid]]:
        """Return (all symbols, old ones first; docids of the new documents) without mutating."""
        raise DocidError(f"the {self.scheme!r} docid scheme cannot add documents.")

    # --- files ---------------------------------------------------------------------------------

    def save(self, directory: Path) -> list[str]:
        """Write the map's plain files into ``directory`` (atomically each); return their names."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        names = self._save_extra(directory)
        lines = [
            json.dumps({"doc_id": d, "docid": list(s)}, ensure_ascii=False)
            for d, s in zip(self.doc_ids, self.sequences, strict=True)
        ]
        atomic_write_text(directory / DOCIDS_FILE, "".join(line + "\n" for line in lines))
        vocab = {
            "format_version": FORMAT_VERSION,
            "scheme": self.scheme,
            "num_docs": len(self.doc_ids),
            "options": self.options,
            "symbols": self.symbols,
        }
        text = json.dumps(vocab, ensure_ascii=False, indent=1) + "\n"
        atomic_write_text(directory / VOCAB_FILE, text)
        return [VOCAB_FILE, DOCIDS_FILE, *names]

    def _save_extra(self, directory: Path) -> list[str]:
        """Write scheme data beside the two common files; return the names written."""
        return []

    def _load_extra(self, directory: Path) -> None:
        """Read and validate scheme data after the common files were loaded."""

    @classmethod
    def load(cls, directory: Path) -> DocidMap:
        """Read a map written by ``save``; ``ValueError`` naming the file if anything is off."""
        directory = Path(directory)
        vocab_path = directory / VOCAB_FILE
        vocab = _read_json(vocab_path)
        version = vocab.get("format_version")
        if version != FORMAT_VERSION:
            raise DocidError(
                f"{vocab_path} has format_version {version!r} but this version of docid "
                f"reads only {FORMAT_VERSION}."
            )
        scheme = vocab.get("scheme")
        if not isinstance(scheme, str):
            raise DocidError(f"{vocab_path} has no 'scheme' string.")
        if scheme not in available_schemes():
            raise DocidError(
                f"{vocab_path} names docid scheme {scheme!r}, which is not one of "
                f"{available_schemes()}."
            )
        kind = get_scheme(scheme)
        if cls is not DocidMap and not issubclass(kind, cls):
            raise DocidError(f"{vocab_path} holds a {scheme!r} map, not a {cls.scheme!r} one.")
        symbols = vocab.get("symbols")
        options = vocab.get("options", {})
        num_docs = vocab.get("num_docs")
        if not isinstance(options, dict):
            raise DocidError(f"{vocab_path} has 'options' that is not an object.")
        if not isinstance(num_docs, int) or isinstance(num_docs, bool) or num_docs < 0:
            raise DocidError(f"{vocab_path} has no valid 'num_docs' count.")
        try:
            _check_symbols(symbols)
        except ValueError as err:
            raise DocidError(f"{vocab_path}: {err}") from None

        docids_path = directory / DOCIDS_FILE
        doc_ids, seqs = _read_docids(docids_path)
        rows, by_seq = _index_entries(
            doc_ids, seqs, len(symbols), label=f"{docids_path} line", start=1
        )
        if len(doc_ids) != num_docs:
            raise DocidError(
                f"{docids_path} has {len(doc_ids)} docids but {vocab_path} counts {num_docs}."
            )
        obj = kind.__new__(kind)
        obj._set(doc_ids, seqs, list(symbols), options, rows, by_seq)
        obj._load_extra(directory)
        return obj


# --- validation helpers ----------------------------------------------------------------------


def check_corpus(
    doc_ids: Sequence[str], texts: Sequence[str] | None, allow_empty: bool = False
) -> list[str] | None:
    """Check doc ids (non-empty strings, unique) and texts (same count); return texts as a list."""
    if not doc_ids and not allow_empty:
        raise DocidError("cannot assign docids to an empty corpus.")
    seen: set[str] = set()
    for doc_id in doc_ids:
        if not isinstance(doc_id, str) or not doc_id:
            raise DocidError(f"doc ids must be non-empty strings, got {doc_id!r}.")
        if doc_id in seen:
            raise DocidError(f"doc id {doc_id!r} appears more than once.")
        seen.add(doc_id)
    if texts is None:
        return None
    texts = list(texts)
    if len(texts) != len(doc_ids):
        raise DocidError(f"got {len(doc_ids)} doc ids but {len(texts)} texts.")
    return texts


def _check_symbols(symbols: object) -> None:
    if not isinstance(symbols, list):
        raise DocidError("'symbols' must be a list of strings.")
    if not all(isinstance(s, str) and s for s in symbols):
        raise DocidError("every symbol must be a non-empty string.")
    if len(set(symbols)) != len(symbols):
        raise DocidError("symbols must be distinct.")


def _index_entries(
    doc_ids: Sequence[str],
    seqs: Sequence[Docid],
    num_symbols: int,
    label: str,
    start: int = 0,
) -> tuple[dict[str, int], dict[Docid, str]]:
    """Check doc ids and docids (unique, non-empty, in symbol range); return both indexes.

    ``label`` and ``start`` name a row in messages: ``"document 3"`` or ``"docids.jsonl line 4"``.
    """
    rows: dict[str, int] = {}
    by_seq: dict[Docid, str] = {}
    for row, (doc_id, seq) in enumerate(zip(doc_ids, seqs, strict=True)):
        where = f"{label} {row + start}"
        if not isinstance(doc_id, str) or not doc_id:
            raise DocidError(f"{where}: doc id {doc_id!r} is not a non-empty string.")
        if doc_id in rows:
            raise DocidError(f"{where}: doc id {doc_id!r} appears twice.")
        if not seq:
            raise DocidError(f"{where}: doc id {doc_id!r} has an empty docid.")
        if min(seq) < 0 or max(seq) >= num_symbols:
            raise DocidError(
                f"{where}: docid {list(seq)} of {doc_id!r} is outside the "
                f"{num_symbols} symbols of the vocabulary."
            )
        if seq in by_seq:
            raise DocidError(
                f"{where}: docid {list(seq)} of {doc_id!r} is also the docid of {by_seq[seq]!r}."
            )
        rows[doc_id] = row
        by_seq[seq] = doc_id
    return rows, by_seq


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DocidError(f"{path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DocidError(f"{path} is not valid JSON ({err}).") from None
    if not isinstance(data, dict):
        raise DocidError(f"{path} must hold a JSON object.")
    return data


def _read_docids(path: Path) -> tuple[list[str], list[Docid]]:
    doc_ids: list[str] = []
    seqs: list[Docid] = []
    if not path.is_file():
        raise DocidError(f"{path} does not exist.")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise DocidError(f"{path} line {number} is not valid JSON.") from None
            if not isinstance(record, dict) or "doc_id" not in record or "docid" not in record:
                raise DocidError(f"{path} line {number} needs both 'doc_id' and 'docid' fields.")
            seq = record["docid"]
            if not isinstance(seq, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in seq
            ):
                raise DocidError(f"{path} line {number}: 'docid' must be a list of integers.")
            doc_ids.append(record["doc_id"])
            seqs.append(tuple(seq))
    return doc_ids, seqs


# --- scheme registry -------------------------------------------------------------------------

_SCHEMES: dict[str, type[DocidMap]] = {}
# The built-in schemes register themselves when their modules are imported, which the package
# (docid/__init__.py) does: this module imports none of them, so that a scheme may import it
# without a cycle. They load faiss, torch and scikit-learn only when a scheme needs them.


def register_scheme(cls: type[DocidMap]) -> type[DocidMap]:
    """Class decorator: make a ``DocidMap`` subclass available under its ``scheme`` name."""
    if not cls.scheme:
        raise DocidError(f"{cls.__name__} must set a non-empty 'scheme' name to be registered.")
    _SCHEMES[cls.scheme] = cls
    return cls


def available_schemes() -> list[str]:
    """Names accepted by ``fit_docids`` and found in saved maps."""
    return sorted(_SCHEMES)


def get_scheme(name: str) -> type[DocidMap]:
    """The ``DocidMap`` subclass of scheme ``name``; ``ValueError`` if there is none."""
    if name not in _SCHEMES:
        raise DocidError(f"unknown docid scheme {name!r}; choose one of {available_schemes()}.")
    return _SCHEMES[name]


def fit_docids(
    scheme: str,
    doc_ids: Sequence[str],
    texts: Sequence[str] | None = None,
    **options: Any,
) -> DocidMap:
    """Assign docids to a corpus with the named scheme (``available_schemes()`` lists them)."""
    return get_scheme(scheme).fit(doc_ids, texts, **options)
