"""The index directory: its format version, file names, manifest (checksums, lineage) and the
atomic save that every identifier kind goes through.

Directory layout (format version 2)::

    manifest.json     format, versions, counts, docid offset, sha256 of every file, lineage
    index.json        IndexConfig, exactly as IndexConfig.from_dict reads it back
    model/            config + safetensors weights + tokenizer files
    documents.jsonl   the indexed documents, so evaluation, replay and additions need no corpus path
    documents.offsets.npy  where each line of documents.jsonl starts (and the end), so that a
                      load maps the documents and parses only those a search names
    training_queries.jsonl  (optional) the training queries as {"query", "doc_id"} lines, for replay
    query_generator/  (optional) a query generator (dsi.pseudo_queries) for generative replay
    README.md         model card (dsi.card): corpus, counts, settings, training, evaluation

and each kind's own files (docid kinds: docids.jsonl, docid_vocab.json, trie.marisa; n-grams:
ngram_index/, word_index/); docs/index-format.md describes them all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import platform
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

import dsi
from docid.guard import Kind, claim, ensure_replaceable
from docid.io import (
    atomic_open,
    atomic_write_text,
    backup_path,
    publish_dir,
    published,
    sha256_file,
    staging_dir,
)
from dsi.card import write_card
from dsi.data import Corpus
from dsi.model import num_parameters
from dsi.timing import stage

log = logging.getLogger(__name__)


FORMAT = "dsi-index"


# 2: the settings file is index.json (1: config.json, whose name Hugging Face hub tooling takes
# for a model's) and holds only the settings of docs/settings.md.
FORMAT_VERSION = 2


# The index's settings (IndexConfig); not config.json, which hub tooling reads as a model config.
CONFIG_FILE = "index.json"


TRAINING_QUERIES_FILE = "training_queries.jsonl"


# The loss history of training, one JSON line per point (step, seconds, epoch, loss).
TRAINING_LOG_FILE = "training_log.jsonl"


GENERATOR_DIR = "query_generator"


DOCUMENTS_FILE = "documents.jsonl"


# Where each line of documents.jsonl starts, then its size (int64); indexes saved before it
# have none, and a load finds the lines by reading the file once.
DOCUMENT_OFFSETS_FILE = "documents.offsets.npy"


# sha256 of the manifest's other contents; manifests written before it existed have none.
MANIFEST_DIGEST = "manifest_sha256"


# The byte size of every file (manifest "sizes"), beside its sha256.
MANIFEST_SIZES = "sizes"


# A load hashes files up to this size whole; a larger file (the arrays and documents of a
# large corpus, which a load maps rather than reads) is checked by its size, and by its sha256
# only on a full verification (``verify="full"``, ``dsi info --verify``): hashing 1 GB on every
# load would read every page that the memory maps leave on disk.
HASH_ON_LOAD_BYTES = 64 << 20


# What dsi may replace: an index (its manifest says so), a work directory (its fingerprint).
INDEX_KIND = Kind("a dsi index", "manifest.json", FORMAT)


WORK_KIND = Kind("a dsi work directory", "fingerprint")


GENERATOR_KIND = Kind("a saved query generator", "generator.json")


class IndexLoadError(ValueError):
    """An index directory cannot be loaded; the message says what is wrong in one sentence."""


@contextmanager
def claim_index(directory: Path, lock: bool = True) -> Iterator[None]:
    """Hold ``directory`` to write an index there (:func:`docid.guard.claim`): refused when
    something but an index stands there or at its backup name, or another process writes it."""
    with claim(directory, INDEX_KIND, lock=lock):
        ensure_replaceable(backup_path(directory), INDEX_KIND)
        yield


def verify_checksums(
    directory: Path, manifest: Mapping[str, Any], hashes: bool | str = True
) -> None:
    """Check that every file the manifest lists exists and (``hashes``) matches its sha256.

    ``hashes=True`` hashes every file up to ``HASH_ON_LOAD_BYTES`` and checks the size of a
    larger one the manifest records the size of (what a load does); ``"full"`` hashes every
    file. With hashes, a file the manifest does not list (hidden files aside) is refused too: it
    would be read unverified.
    """
    checksums = manifest["checksums"]
    sizes = manifest.get(MANIFEST_SIZES) or {}
    for name, expected in checksums.items():
        path = Path(directory) / name
        if not path.is_file():
            raise IndexLoadError(f"Index {directory} is missing its file {name}.")
        if not hashes:
            continue
        size = path.stat().st_size
        recorded = sizes.get(name)
        if recorded is not None and size != recorded:
            raise IndexLoadError(
                f"Index {directory} is corrupted: {name} does not match its checksum (it holds "
                f"{size} bytes, the manifest says {recorded})."
            )
        whole = hashes == "full" or recorded is None or size <= HASH_ON_LOAD_BYTES
        if whole and sha256_file(path) != expected:
            raise IndexLoadError(
                f"Index {directory} is corrupted: {name} does not match its checksum."
            )
    if hashes:
        for path in sorted(Path(directory).rglob("*")):
            relative = path.relative_to(directory)
            name = relative.as_posix()
            hidden = any(part.startswith(".") for part in relative.parts)
            if path.is_file() and not hidden and name != "manifest.json" and name not in checksums:
                raise IndexLoadError(
                    f"Index {directory} has a file {name} that its manifest does not list."
                )


def save_index(
    index: Any, directory: Path, write_parts: Callable[[Path], None], **manifest: Any
) -> Path:
    """Write what every index kind holds (config, model, tokenizer, documents, training pairs,
    query generator) and the kind's own parts (``write_parts(stage)``), then publish it as
    ``directory`` with ``manifest`` (:func:`publish_index`). Nothing but an index or an empty
    folder is replaced, and ``directory``'s writer lock is held meanwhile (:func:`claim_index`).
    """
    timings: dict[str, float] = {}
    with claim_index(directory):
        staged = staging_dir(directory)
        try:
            with stage("writing", timings):
                index.config.save(staged / CONFIG_FILE)
                index.model.save_pretrained(staged / "model", safe_serialization=True)
                index.tokenizer.save_pretrained(staged / "model")
                write_parts(staged)
                save_documents(index.corpus, staged / DOCUMENTS_FILE)
                if index.training_pairs:
                    save_training_pairs(index.training_pairs, staged / TRAINING_QUERIES_FILE)
                if index.query_generator is not None:
                    index.query_generator.save(staged / GENERATOR_DIR)
                if index.training_log:
                    save_training_log(index.training_log, staged / TRAINING_LOG_FILE)
                write_card(index, staged)
            # The first save after a build records its writing time with the other stages'.
            last = index.lineage[-1] if index.lineage else {}
            if "stage_seconds" in last and "writing" not in last["stage_seconds"]:
                last["stage_seconds"]["writing"] = timings["writing"]
            publish_index(staged, directory, model=index.model, lineage=index.lineage, **manifest)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
    return directory


def publish_index(
    stage: Path,
    directory: Path,
    *,
    model: torch.nn.Module,
    num_docs: int,
    docid_scheme: str,
    docid_offset: int,
    lineage: list[dict[str, Any]],
    **extra: Any,
) -> None:
    """Seal the fully written ``stage`` with its manifest and publish it as ``directory``."""
    files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": dsi.__version__,
        "created": utc_now(),
        "num_docs": num_docs,
        "docid_scheme": docid_scheme,
        "docid_offset": docid_offset,
        "vocab_size": int(model.config.vocab_size),
        **extra,
        "parameters": num_parameters(model),
        "versions": library_versions(),
        "lineage": lineage,
        "checksums": {name: sha256_file(stage / name) for name in files},
        MANIFEST_SIZES: {name: (stage / name).stat().st_size for name in files},
    }
    write_manifest(stage / "manifest.json", manifest)
    publish_dir(stage, directory, kind=INDEX_KIND)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically, sealed with the sha256 of its own contents."""
    sealed = {**manifest, MANIFEST_DIGEST: _manifest_digest(manifest)}
    atomic_write_text(path, json.dumps(sealed, indent=2) + "\n")


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    body = {key: value for key, value in manifest.items() if key != MANIFEST_DIGEST}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and validate ``manifest.json``: format name, version and required keys."""
    path = Path(directory) / "manifest.json"
    if not Path(directory).is_dir():
        raise IndexLoadError(f"There is no index directory at {directory}.")
    if not path.is_file():
        raise IndexLoadError(f"{directory} is not a dsi index: it has no manifest.json.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexLoadError(f"Index manifest {path} is not valid JSON ({exc}).") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexLoadError(f"{path} is not a dsi index manifest.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexLoadError(
            f"Index {directory} has format version {version}, but dsi {dsi.__version__} reads "
            f"only format version {FORMAT_VERSION}; rebuild it with `dsi index --corpus "
            f"{Path(directory) / 'documents.jsonl'} --output NEW_DIR` (with the training queries "
            "it was built with, if any)."
        )
    # After the version check: another format version may seal its manifest differently.
    if MANIFEST_DIGEST in manifest and manifest[MANIFEST_DIGEST] != _manifest_digest(manifest):
        raise IndexLoadError(
            f"Index manifest {path} is corrupted: its contents do not match its own checksum."
        )
    missing = {"num_docs", "docid_offset", "checksums", "lineage"} - set(manifest)
    if missing:
        raise IndexLoadError(f"Index manifest {path} lacks the keys {sorted(missing)}.")
    _check_manifest_types(manifest, path)
    return manifest


def _check_manifest_types(manifest: dict[str, Any], path: Path) -> None:
    """Refuse a manifest whose values have the wrong type (older manifests carry no digest)."""
    for key in ("num_docs", "docid_offset"):
        value = manifest[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise IndexLoadError(
                f"Index manifest {path} is corrupted: {key} is {value!r}, not a count."
            )
    checksums = manifest["checksums"]
    if not isinstance(checksums, dict) or not checksums:
        raise IndexLoadError(
            f"Index manifest {path} is corrupted: checksums is not a table of the index's files."
        )
    for name, digest in checksums.items():
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not isinstance(digest, str):
            raise IndexLoadError(
                f"Index manifest {path} is corrupted: its checksum entry {name!r} is invalid."
            )
    if not isinstance(manifest["lineage"], list):
        raise IndexLoadError(f"Index manifest {path} is corrupted: lineage is not a list.")
    sizes = manifest.get(MANIFEST_SIZES, {})
    if not isinstance(sizes, dict) or any(
        not isinstance(size, int) or isinstance(size, bool) or size < 0 for size in sizes.values()
    ):
        raise IndexLoadError(
            f"Index manifest {path} is corrupted: sizes is not a table of file sizes."
        )


def resolve_index_dir(directory: Path) -> Path:
    """The directory, or the previous index if a crash interrupted replacing it."""
    found = published(directory)
    if found != directory:
        log.warning(
            "Index %s was being replaced when a process died; loading the previous one.", directory
        )
    return found


# ----------------------------------------------------------------------- helpers
def save_documents(corpus: Corpus, path: Path) -> None:
    """Write ``corpus`` as BEIR-style JSONL that ``load_corpus`` reads back unchanged, and
    where each line starts beside it (``DOCUMENT_OFFSETS_FILE``), for :func:`load_documents`."""
    offsets = np.zeros(len(corpus.doc_ids) + 1, dtype=np.int64)
    with atomic_open(path) as handle:
        records = zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True)
        for i, (d, t, x) in enumerate(records):
            line = json.dumps({"_id": d, "title": t, "text": x}, ensure_ascii=False) + "\n"
            data = line.encode("utf-8")
            handle.write(data)
            offsets[i + 1] = offsets[i] + len(data)
    with atomic_open(path.with_name(DOCUMENT_OFFSETS_FILE)) as handle:
        np.save(handle, offsets, allow_pickle=False)


class SavedDocuments:
    """An index's ``documents.jsonl``, mapped: a document's line is parsed when it is asked
    for, so that a load reads none and a search the few it returns (``load_documents``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        if size == 0:
            raise IndexLoadError(f"{self.path} holds no documents.")
        with open(self.path, "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        offsets_path = self.path.with_name(DOCUMENT_OFFSETS_FILE)
        if offsets_path.is_file():
            offsets = np.load(offsets_path, mmap_mode="r", allow_pickle=False)
        else:  # an index saved before the offsets were: find the lines once
            offsets = _line_offsets(self.path)
        if (
            offsets.ndim != 1
            or offsets.dtype != np.int64
            or len(offsets) < 2
            or offsets[0] != 0
            or offsets[-1] != size
        ):
            raise IndexLoadError(
                f"{offsets_path} does not match {self.path}: its lines end elsewhere."
            )
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def record(self, i: int) -> tuple[str, str, str]:
        """(doc id, title, text) of document ``i``."""
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        try:
            obj = json.loads(self._map[start:end])
            return obj["_id"], obj.get("title", ""), obj["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexLoadError(
                f"{self.path} line {i + 1} is not a saved document ({exc})."
            ) from None

    def column(self, field: int) -> DocumentColumn:
        return DocumentColumn(self, field)


class DocumentColumn(Sequence[str]):
    """One field of :class:`SavedDocuments` (0 doc ids, 1 titles, 2 texts) as a read-only
    sequence of strings: what a :class:`dsi.data.Corpus` holds in lists."""

    def __init__(self, documents: SavedDocuments, field: int) -> None:
        self._documents = documents
        self._field = field

    def __len__(self) -> int:
        return len(self._documents)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"document {i} of {n}")
        return self._documents.record(j)[self._field]

    def __iter__(self) -> Iterator[str]:
        for j in range(len(self)):
            yield self._documents.record(j)[self._field]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, DocumentColumn)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like a list

    def __repr__(self) -> str:
        return f"<{len(self)} documents' field {self._field} of {self._documents.path}>"


def load_documents(directory: Path) -> Corpus:
    """An index's documents (``save_documents``), mapped rather than read: a
    :class:`dsi.data.Corpus` whose columns parse a line when asked for it. The documents were
    checked when the index was built, so they are not checked again."""
    documents = SavedDocuments(Path(directory) / DOCUMENTS_FILE)
    return Corpus.of_checked(
        documents.column(0),
        documents.column(1),
        documents.column(2),
        source=str(Path(directory) / DOCUMENTS_FILE),
    )


def _line_offsets(path: Path, chunk: int = 1 << 24) -> np.ndarray:
    """Where each line of ``path`` starts, then its size (read in chunks, not mapped)."""
    starts = [np.zeros(1, dtype=np.int64)]
    done = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
            starts.append(ends.astype(np.int64) + done + 1)
            done += len(block)
    offsets = np.concatenate(starts)
    if offsets[-1] != done:  # a last line without its newline
        offsets = np.append(offsets, done)
    return offsets


def save_training_pairs(pairs: list[tuple[str, str]], path: Path) -> None:
    """Write (query text, doc id) pairs as ``{"query", "doc_id"}`` JSON lines."""
    lines = (json.dumps({"query": q, "doc_id": d}, ensure_ascii=False) for q, d in pairs)
    atomic_write_text(path, "\n".join(lines) + "\n")


def save_training_log(points: list[dict[str, float]], path: Path) -> None:
    """Write the loss history (``TrainStats.history``), one JSON object a line."""
    atomic_write_text(path, "".join(json.dumps(point) + "\n" for point in points))


def load_training_log(path: Path) -> list[dict[str, float]]:
    """Read ``save_training_log`` output; a missing file (an older index) means no history."""
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_training_pairs(path: Path) -> list[tuple[str, str]]:
    """Read ``save_training_pairs`` output; a missing file means no training queries."""
    if not path.is_file():
        return []
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                pairs.append((str(record["query"]), str(record["doc_id"])))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise IndexLoadError(
                    f"{path} line {number} is not a training query ({exc})."
                ) from exc
    return pairs


def library_versions() -> dict[str, str]:
    import transformers

    return {
        "dsi": dsi.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
