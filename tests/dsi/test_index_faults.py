"""Fault injection on a saved index directory.

Every file listed in ``manifest["checksums"]`` is in turn flipped, truncated, emptied, extended
and deleted: loading must stop with one clear :class:`IndexLoadError` naming the file, never load
something that answers differently. The manifest itself is damaged key by key. And loading plus
searching must never unpickle anything.

Tests record the faults they inject with ``record_property("faults", n)``.
"""

from __future__ import annotations

import atexit
import functools
import json
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dsi.index import GenerativeIndex, TrainingQueries
from dsi.index_format import MANIFEST_DIGEST, IndexLoadError
from dsi.retriever import Retriever
from tests.conftest import child_env, random_corpus, tiny_config

QUERIES = ["river stone lantern", "amber birch", "quartz nectar summit", "\u2207\u2207"]
K = 4


@functools.cache
def reference_index() -> Path:
    """A small index with every optional file a plain build writes (semantic docids, queries).

    Built once, at collection, because the test parameters are the files its manifest lists.
    """
    rng = random.Random(5)
    corpus = random_corpus(rng, 10)
    queries = {f"q{i}": " ".join(corpus.texts[i].split()[:4]) for i in range(5)}
    qrels = {f"q{i}": {corpus.doc_ids[i]: 1} for i in range(5)}
    index = GenerativeIndex.build(
        corpus, tiny_config(steps=3), TrainingQueries(queries, qrels), progress_bar=False
    )
    folder = Path(tempfile.mkdtemp(prefix="dsi-faults-"))
    atexit.register(shutil.rmtree, folder, True)
    return index.save(folder / "idx")


def manifest_files() -> list[str]:
    manifest = json.loads((reference_index() / "manifest.json").read_text())
    return sorted(manifest["checksums"])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "index_file" in metafunc.fixturenames:
        metafunc.parametrize("index_file", manifest_files())


@pytest.fixture(scope="module")
def expected() -> list[list[tuple[str, float]]]:
    hits = Retriever.load(reference_index(), device="cpu").search(QUERIES, k=K)
    return [[(h.doc_id, h.score) for h in row] for row in hits]


@pytest.fixture
def copy(tmp_path) -> Path:
    return Path(shutil.copytree(reference_index(), tmp_path / "idx"))


# ------------------------------------------------------------------------------ faults
def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # the smallest change: one bit
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def append(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b'\n{"_id": "extra", "text": "appended"}\n')


def delete(path: Path) -> None:
    path.unlink()


def swap_with_sibling(path: Path) -> None:
    """Replace the file by another file of the index (a mix-up of two copies)."""
    others = sorted(p for p in path.parent.parent.rglob("*") if p.is_file() and p != path)
    other = next(p for p in others if p.read_bytes() != path.read_bytes())
    path.write_bytes(other.read_bytes())


FAULTS: dict[str, Callable[[Path], None]] = {
    "flip-bit": flip_byte,
    "truncate": truncate,
    "empty": empty,
    "append": append,
    "swap": swap_with_sibling,
    "delete": delete,
}


def assert_clear(exc: pytest.ExceptionInfo[IndexLoadError], *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message


def test_every_file_is_covered() -> None:
    names = set(manifest_files())
    on_disk = {
        str(p.relative_to(reference_index()))
        for p in reference_index().rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert names == on_disk, "every file of the index has a checksum"
    expected = {"index.json", "docids.jsonl", "documents.jsonl", "trie.marisa"}
    assert expected | {"model/model.safetensors", "training_queries.jsonl"} <= names


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_file_is_refused_by_name(copy, index_file, fault, record_property) -> None:
    FAULTS[fault](copy / index_file)
    record_property("faults", 1)
    with pytest.raises(IndexLoadError) as exc:
        GenerativeIndex.load(copy)
    if fault == "delete":
        assert_clear(exc, str(copy), f"missing its file {index_file}")
    else:
        assert_clear(exc, str(copy), f"corrupted: {index_file} does not match its checksum")
    with pytest.raises(IndexLoadError):
        Retriever.load(copy, device="cpu")


@pytest.mark.parametrize("fault", ["truncate", "empty", "delete"])
def test_unverified_load_still_fails_loudly_or_answers_the_same(
    copy, index_file, fault, expected, record_property
) -> None:
    """Without checksums (verify=False) a structurally damaged file still never gives a wrong
    answer: loading fails with IndexLoadError, or the index answers exactly as before (files the
    search does not read, such as documents.jsonl, may be cut at a line boundary)."""
    FAULTS[fault](copy / index_file)
    record_property("faults", 1)
    try:
        index = GenerativeIndex.load(copy, verify=False)
    except IndexLoadError as exc:
        assert "\n" not in str(exc)
        return
    hits = Retriever(index, device="cpu").search(QUERIES, k=K)
    assert [[h.doc_id for h in row] for row in hits] == [[d for d, _ in row] for row in expected]
    assert [h.score for row in hits for h in row] == pytest.approx(
        [s for row in expected for _, s in row], abs=1e-5
    )


# ---------------------------------------------------------------------------- manifest
def edit_manifest(directory: Path, change: Callable[[dict], object], digest: str) -> None:
    """Apply ``change``; ``digest`` says what becomes of the manifest's own checksum:
    "stale" keeps it (damage after writing), "dropped" removes it (a manifest written before
    the digest existed, or by a buggy tool)."""
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    result = change(manifest)
    if isinstance(result, list):  # the edit replaced the whole manifest
        manifest = result
    if digest == "dropped" and isinstance(manifest, dict):
        manifest.pop(MANIFEST_DIGEST, None)
    path.write_text(json.dumps(manifest, indent=2))


MANIFEST_EDITS: dict[str, tuple[Callable[[dict], object], str]] = {
    # name: (edit, what the message says when the digest cannot catch it)
    "docid-offset-plus-one": (
        lambda m: m.update(docid_offset=m["docid_offset"] + 1),
        "do not fit the model's vocabulary",
    ),
    "docid-offset-minus-one": (
        lambda m: m.update(docid_offset=m["docid_offset"] - 1),
        "is not in its trie",
    ),
    "docid-offset-string": (lambda m: m.update(docid_offset="twelve"), "not a count"),
    "docid-offset-float": (lambda m: m.update(docid_offset=1.5), "not a count"),
    "docid-offset-negative": (lambda m: m.update(docid_offset=-3), "not a count"),
    "num-docs-plus-one": (lambda m: m.update(num_docs=m["num_docs"] + 1), "inconsistent"),
    "num-docs-string": (lambda m: m.update(num_docs="10"), "not a count"),
    "checksums-list": (lambda m: m.update(checksums=list(m["checksums"])), "checksums is not"),
    "checksums-empty": (lambda m: m.update(checksums={}), "checksums is not"),
    "checksum-dropped": (
        lambda m: m["checksums"].pop("model/model.safetensors"),
        "file model/model.safetensors that its manifest does not list",
    ),
    "checksum-not-a-string": (
        lambda m: m["checksums"].update({"index.json": 7}),
        "entry 'index.json' is invalid",
    ),
    "checksum-outside-index": (
        lambda m: m["checksums"].update({"../escape.json": "0" * 64}),
        "entry '../escape.json' is invalid",
    ),
    "checksum-changed": (
        lambda m: m["checksums"].update({"trie.marisa": "0" * 64}),
        "trie.marisa does not match its checksum",
    ),
    "lineage-string": (lambda m: m.update(lineage="built"), "lineage is not a list"),
    "format-version-string": (lambda m: m.update(format_version="1"), "format version 1"),
    "format-other": (lambda m: m.update(format="something-else"), "not a dsi index manifest"),
    "key-missing": (lambda m: m.pop("docid_offset"), "lacks the keys ['docid_offset']"),
    "not-an-object": (lambda m: [m], "not a dsi index manifest"),
}


@pytest.mark.parametrize("digest", ["stale", "dropped"])
@pytest.mark.parametrize("edit", list(MANIFEST_EDITS))
def test_tampered_manifest_is_refused(copy, edit, digest, record_property) -> None:
    change, reason = MANIFEST_EDITS[edit]
    edit_manifest(copy, change, digest)
    record_property("faults", 1)
    with pytest.raises(IndexLoadError) as exc:
        GenerativeIndex.load(copy)
    if digest == "stale" and edit not in ("not-an-object", "format-other", "format-version-string"):
        assert_clear(exc, "contents do not match its own checksum")
    else:
        assert_clear(exc, reason)


def test_manifest_without_digest_still_loads(copy, expected) -> None:
    """Indexes saved before the manifest carried its own checksum (runs/tiny) stay loadable."""
    edit_manifest(copy, lambda m: None, "dropped")
    assert MANIFEST_DIGEST not in json.loads((copy / "manifest.json").read_text())
    hits = Retriever.load(copy, device="cpu").search(QUERIES, k=K)
    assert [[h.doc_id for h in row] for row in hits] == [[d for d, _ in row] for row in expected]


def test_unlisted_file_is_refused_but_hidden_files_are_ignored(copy, record_property) -> None:
    (copy / ".DS_Store").write_bytes(b"finder")
    GenerativeIndex.load(copy)
    (copy / "model" / "pytorch_model.bin").write_bytes(b"\x80\x04 not listed")
    record_property("faults", 1)
    with pytest.raises(IndexLoadError) as exc:
        GenerativeIndex.load(copy)
    assert_clear(exc, "a file model/pytorch_model.bin that its manifest does not list")


@pytest.mark.parametrize("fault", ["truncate", "empty", "delete", "append"])
def test_damaged_manifest_file_is_refused(copy, fault, record_property) -> None:
    FAULTS[fault](copy / "manifest.json")
    record_property("faults", 1)
    with pytest.raises(IndexLoadError) as exc:
        GenerativeIndex.load(copy)
    assert_clear(exc, "manifest")


def test_every_single_bit_flip_of_the_manifest_is_caught_or_harmless(
    copy, expected, record_property
) -> None:
    """Flip bit 0 of every byte of manifest.json in turn (a few thousand faults)."""
    path = copy / "manifest.json"
    original = path.read_bytes()
    loaded = 0
    for position in range(len(original)):
        data = bytearray(original)
        data[position] ^= 0x01
        path.write_bytes(bytes(data))
        try:
            index = GenerativeIndex.load(copy)
        except IndexLoadError as exc:
            assert "\n" not in str(exc)
            continue
        loaded += 1
        hits = Retriever(index, device="cpu").search(QUERIES, k=K)
        assert [[(h.doc_id, round(h.score, 4)) for h in row] for row in hits] == [
            [(d, round(s, 4)) for d, s in row] for row in expected
        ], f"flipping byte {position} of manifest.json changed the answers"
    record_property("faults", len(original))
    assert loaded < len(original) // 10, "most flips are caught before the model is loaded"


def test_missing_and_foreign_directories(tmp_path, record_property) -> None:
    cases = [
        (tmp_path / "nowhere", "no index directory"),
        (tmp_path, "has no manifest.json"),
    ]
    (tmp_path / "file").write_text("x")
    cases.append((tmp_path / "file", "no index directory"))
    for directory, needle in cases:
        with pytest.raises(IndexLoadError) as exc:
            GenerativeIndex.load(directory)
        assert_clear(exc, needle)
    record_property("faults", len(cases))


# ------------------------------------------------------------------------------- pickle
def refuse(name: str):
    def refused(*args, **kwargs):
        raise AssertionError(f"{name} was called while loading or searching an index")

    return refused


def test_no_index_file_is_a_pickle() -> None:
    for path in reference_index().rglob("*"):
        if not path.is_file():
            continue
        head = path.read_bytes()[:4]
        assert not (head[:1] == b"\x80" and 2 <= head[1] <= 5), f"{path.name} is a pickle"
        assert head != b"PK\x03\x04", f"{path.name} is a zip archive (torch.save format)"
        # .npy: documents.offsets.npy, plain int64 (np.load refuses a pickle without allow_pickle).
        assert path.suffix in {".json", ".jsonl", ".safetensors", ".marisa", ".md", ".npy"}, (
            path.name
        )
        if path.suffix == ".npy":
            assert not np.load(path, allow_pickle=False).dtype.hasobject, path.name


def test_load_and_search_run_no_pickle(monkeypatch, expected) -> None:
    import _pickle

    import numpy
    import torch

    class RefusedUnpickler(pickle.Unpickler):
        def __init__(self, *args, **kwargs):
            refuse("pickle.Unpickler")()

    for module in (pickle, _pickle):
        for name in ("load", "loads"):
            monkeypatch.setattr(module, name, refuse(f"{module.__name__}.{name}"))
        monkeypatch.setattr(module, "Unpickler", RefusedUnpickler)
    monkeypatch.setattr(torch, "load", refuse("torch.load"))
    numpy_load = numpy.load

    def careful_load(*args, allow_pickle=False, **kwargs):
        assert not allow_pickle, "numpy.load(allow_pickle=True) was called"
        return numpy_load(*args, allow_pickle=False, **kwargs)

    monkeypatch.setattr(numpy, "load", careful_load)
    hits = Retriever.load(reference_index(), device="cpu").search(QUERIES, k=K)
    assert [[h.doc_id for h in row] for row in hits] == [[d for d, _ in row] for row in expected]


PICKLE_TRAP = """
import json, pickle, sys, _pickle

def refused(*args, **kwargs):
    raise AssertionError("pickle was used")

class RefusedUnpickler(pickle.Unpickler):  # torch subclasses Unpickler at import time
    def __init__(self, *args, **kwargs):
        refused()

for module in (pickle, _pickle):  # before anything else is imported: no early reference escapes
    module.load = module.loads = refused
    module.Unpickler = RefusedUnpickler
import torch
torch.load = refused
from dsi.retriever import Retriever
hits = Retriever.load(sys.argv[1], device="cpu").search(json.loads(sys.argv[2]), k=int(sys.argv[3]))
print(json.dumps([[h.doc_id for h in row] for row in hits]))
"""


def test_load_and_search_run_no_pickle_in_a_fresh_interpreter(expected) -> None:
    env = child_env(OMP_NUM_THREADS="1")
    args = [str(reference_index()), json.dumps(QUERIES), str(K)]
    proc = subprocess.run(
        [sys.executable, "-c", PICKLE_TRAP, *args], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == [[d for d, _ in row] for row in expected]
