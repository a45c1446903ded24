"""The example store: where the training examples of a build (or an addition) live.

Token sequences (documents, queries, copy pairs' sources and targets) are written once, a chunk
at a time, as Arrow tables in the work directory (``tables/*.arrow``, Hugging Face ``datasets``'
format, opened memory-mapped with ``datasets.Dataset.from_file``). An example is one row of a
*plan* (``parts/<part>.plan``, a flat numpy file, memory-mapped too): source table, row, start
and stop (the source is that slice of the row plus EOS), target table and row, task. A
document's views are thus index arithmetic over its stored tokens, and a query repeated every
epoch is stored once. Batches are collated from the memory maps: no list of all examples is
ever made, and resident memory is what training touches.

``store.json``, written last, names every file with its size and sha256, the tasks, and what
the store was built from (``key``). Opening checks them all: a store that is truncated,
damaged or of other inputs is rebuilt, never trained on. A resumed build (the same command
again after an interruption) finds its store complete and reads it instead of tokenizing again.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from docid.guard import Kind
from docid.io import atomic_write_text, publish_dir, published, sha256_file, staging_dir
from dsi.config import TrainConfig
from dsi.examples import view_spans

log = logging.getLogger(__name__)

STORE_VERSION = 1
STORE_FILE = "store.json"
# A store folder is recognised by its store.json, which is written last.
STORE_KIND = Kind("an example store", STORE_FILE)
# One plan row per example: 27 bytes, on disk.
PLAN_DTYPE = np.dtype(
    [
        ("src_table", "u1"),
        ("src_row", "<i8"),
        ("src_start", "<i4"),
        ("src_stop", "<i4"),
        ("tgt_table", "u1"),
        ("tgt_row", "<i8"),
        ("task", "u1"),
    ]
)
# Rows per Arrow record batch and texts per tokenizer call: large enough to be fast, small
# enough that a chunk's Python lists stay a few MB.
CHUNK = 4096
# The parts a build's store holds: the examples of every epoch, and the pool that some are
# drawn from afresh every epoch.
TRAIN, POOL = "train", "pool"


class StoreDamaged(ValueError):
    """An example store that cannot be trained on (truncated, damaged, of other inputs)."""


def chunks(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def tokenized(tokenizer: Any, texts: Iterable[str]) -> Iterator[list[int]]:
    """The token ids of each text (no special tokens), tokenized a chunk at a time."""
    for chunk in chunks(texts):
        yield from tokenizer(chunk, add_special_tokens=False)["input_ids"]


def tokenized_pairs(
    tokenizer: Any, pairs: Iterable[tuple[str, str]]
) -> Iterator[tuple[list[int], list[int]]]:
    """The token ids of each (source text, target text) pair, a chunk at a time."""
    for chunk in chunks(pairs):
        sources = tokenizer([s for s, _ in chunk], add_special_tokens=False)["input_ids"]
        targets = tokenizer([t for _, t in chunk], add_special_tokens=False)["input_ids"]
        yield from zip(sources, targets, strict=True)


class StoreWriter:
    """Writes a store into a (staging) directory: token tables, then plan rows per part."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        (self.directory / "tables").mkdir(parents=True, exist_ok=True)
        (self.directory / "parts").mkdir(parents=True, exist_ok=True)
        self.tables: list[str] = []
        self.rows: dict[str, int] = {}
        self.tasks: list[str] = []

    def tables_of(
        self, names: Sequence[str], rows: Iterable[Sequence[Sequence[int]]]
    ) -> list[tuple[int, np.ndarray]]:
        """Write ``rows`` (one token sequence per name in each) as one table per name, in
        lockstep; each table's number and its sequences' lengths."""
        import pyarrow as pa

        if len(self.tables) + len(names) > 255:
            raise ValueError("An example store holds at most 255 token tables.")
        numbers = []
        for name in names:
            numbers.append(len(self.tables))
            self.tables.append(f"{len(self.tables):03d}-{name}.arrow")
        schema = pa.schema([("ids", pa.list_(pa.int32()))])
        kind = pa.list_(pa.int32())
        lengths = [array("q") for _ in names]
        sinks = [pa.OSFile(str(self.directory / "tables" / self.tables[n]), "wb") for n in numbers]
        writers = [pa.ipc.new_stream(sink, schema) for sink in sinks]
        try:
            for chunk in chunks(rows):
                for column, (writer, counted) in enumerate(zip(writers, lengths, strict=True)):
                    values = [row[column] for row in chunk]
                    counted.extend(len(v) for v in values)
                    batch = pa.record_batch([pa.array(values, type=kind)], schema=schema)
                    writer.write_batch(batch)
        finally:
            for writer, sink in zip(writers, sinks, strict=True):
                writer.close()
                sink.close()
        return [
            (n, np.frombuffer(c, dtype=np.int64)) for n, c in zip(numbers, lengths, strict=True)
        ]

    def table(self, name: str, sequences: Iterable[Sequence[int]]) -> tuple[int, np.ndarray]:
        """Write ``sequences`` as a table; its number and the sequences' lengths."""
        return self.tables_of([name], ((s,) for s in sequences))[0]

    def add(
        self,
        part: str,
        task: str,
        source: tuple[int, np.ndarray, np.ndarray, np.ndarray],
        target: tuple[int, np.ndarray],
    ) -> None:
        """Append examples to ``part``: sources are (table, rows, starts, stops) slices plus
        EOS, targets (table, rows) whole rows."""
        src_table, src_rows, starts, stops = source
        tgt_table, tgt_rows = target
        if task not in self.tasks:
            if len(self.tasks) == 255:
                raise ValueError("An example store holds at most 255 tasks.")
            self.tasks.append(task)
        plan = np.zeros(len(src_rows), dtype=PLAN_DTYPE)
        plan["src_table"], plan["src_row"] = src_table, src_rows
        plan["src_start"], plan["src_stop"] = starts, stops
        plan["tgt_table"], plan["tgt_row"] = tgt_table, tgt_rows
        plan["task"] = self.tasks.index(task)
        with open(self.directory / "parts" / f"{part}.plan", "ab") as handle:
            handle.write(plan.tobytes())
        self.rows[part] = self.rows.get(part, 0) + len(plan)

    def finish(self, key: str, eos: int, extra: dict[str, Any]) -> None:
        """Write ``store.json``, which makes the store complete."""
        files = [f"tables/{name}" for name in self.tables]
        files += [f"parts/{part}.plan" for part in self.rows]
        meta = {
            "version": STORE_VERSION,
            "key": key,
            "eos": eos,
            "tables": self.tables,
            "parts": self.rows,
            "tasks": self.tasks,
            "extra": extra,
            "files": {
                name: {
                    "bytes": (self.directory / name).stat().st_size,
                    "sha256": sha256_file(self.directory / name),
                }
                for name in files
            },
        }
        atomic_write_text(self.directory / STORE_FILE, json.dumps(meta, indent=1))


class _Table:
    """A memory-mapped Arrow table of token sequences: row ``i`` as a numpy view."""

    def __init__(self, path: Path) -> None:
        from datasets import Dataset

        column = Dataset.from_file(str(path), in_memory=False).data.table.column("ids")
        self._offsets = [c.offsets.to_numpy() for c in column.chunks]
        self._values = [c.values.to_numpy() for c in column.chunks]
        counts = [len(o) - 1 for o in self._offsets]
        self._starts = np.cumsum([0] + counts)
        self.lengths = (
            np.concatenate([np.diff(o) for o in self._offsets])
            if self._offsets
            else np.zeros(0, dtype=np.int64)
        ).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def row(self, i: int) -> np.ndarray:
        chunk = int(np.searchsorted(self._starts, i, side="right")) - 1
        local = i - int(self._starts[chunk])
        offsets = self._offsets[chunk]
        return self._values[chunk][offsets[local] : offsets[local + 1]]


class ExampleStore:
    """An opened, checked store: its tables and parts, memory-mapped."""

    def __init__(self, directory: Path, key: str | None = None) -> None:
        """Open the store at ``directory``, checked (:class:`StoreDamaged` if it cannot be
        trained on); with ``key``, also that it was built from those inputs."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / STORE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise StoreDamaged(
                f"The example store at {directory} has no readable {STORE_FILE}."
            ) from exc
        if meta.get("version") != STORE_VERSION:
            raise StoreDamaged(
                f"The example store at {directory} has version {meta.get('version')}, not "
                f"{STORE_VERSION}."
            )
        if key is not None and meta.get("key") != key:
            raise StoreDamaged(f"The example store at {directory} was built from other inputs.")
        for name, want in meta["files"].items():
            path = directory / name
            size = path.stat().st_size if path.is_file() else None
            if size != want["bytes"]:
                raise StoreDamaged(
                    f"The example store at {directory} is truncated: {name} has {size} bytes, "
                    f"{want['bytes']} were written."
                )
            if sha256_file(path) != want["sha256"]:
                raise StoreDamaged(
                    f"The example store at {directory} is damaged: {name} does not match its "
                    "checksum."
                )
        try:
            self.tables = [_Table(directory / "tables" / name) for name in meta["tables"]]
        except Exception as exc:  # pyarrow's errors: one sentence naming the store
            raise StoreDamaged(f"The example store at {directory} cannot be read: {exc}") from exc
        self.directory = directory
        self.eos = int(meta["eos"])
        self.tasks: list[str] = list(meta["tasks"])
        self.extra: dict[str, Any] = dict(meta["extra"])
        self._parts: dict[str, int] = dict(meta["parts"])

    def part(self, name: str) -> StoredExamples:
        """The examples of part ``name`` (none if the store has no such part)."""
        rows = self._parts.get(name, 0)
        if rows == 0:
            return StoredExamples(self, np.zeros(0, dtype=PLAN_DTYPE))
        plan = np.memmap(self.directory / "parts" / f"{name}.plan", PLAN_DTYPE, "r", shape=(rows,))
        return StoredExamples(self, plan)


class StoredExamples:
    """The examples of one part of a store (the :class:`dsi.examples.Examples` protocol)."""

    def __init__(self, store: ExampleStore, plan: np.ndarray) -> None:
        self.store = store
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def lengths(self) -> np.ndarray:
        plan, tables = self.plan, self.store.tables
        out = (plan["src_stop"] - plan["src_start"]).astype(np.int64) + 1
        targets = plan["tgt_table"]
        for number in np.unique(targets):
            mask = targets == number
            out[mask] += tables[number].lengths[plan["tgt_row"][mask]]
        return out

    def pairs(self, indices: Sequence[int]) -> list[tuple[Sequence[int], Sequence[int]]]:
        tables, eos = self.store.tables, [self.store.eos]
        rows = self.plan[np.asarray(indices, dtype=np.int64)]
        return [
            (
                np.concatenate(
                    (
                        tables[r["src_table"]].row(int(r["src_row"]))[
                            r["src_start"] : r["src_stop"]
                        ],
                        eos,
                    )
                ),
                tables[r["tgt_table"]].row(int(r["tgt_row"])),
            )
            for r in rows
        ]

    def task_counts(self) -> dict[str, int]:
        codes, first, counts = np.unique(self.plan["task"], return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        return {self.store.tasks[codes[i]]: int(counts[i]) for i in order}


def open_store(
    directory: Path | None,
    key: str,
    eos: int,
    fill: Callable[[StoreWriter], dict[str, Any]],
) -> ExampleStore:
    """The example store at ``directory``: read as it is when complete and built from ``key``,
    otherwise (re)built by ``fill``, which writes its tables and parts and returns what else to
    keep (``ExampleStore.extra``). ``None``: a temporary store, deleted with the object."""
    temporary = directory is None
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="dsi-examples-")) / "examples"
    directory = Path(directory)
    found = published(directory)
    if found.exists():
        try:
            store = ExampleStore(found, key)
        except StoreDamaged as exc:
            log.warning("%s Rebuilding it.", exc)
            # Ours (inside a claimed work directory) and unusable: out of the way.
            shutil.rmtree(found)
        else:
            log.info("Reading the example store at %s (built before; not tokenized again).", found)
            return store
    # What a build killed while writing its store left behind.
    for stale in directory.parent.glob(f".{directory.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = staging_dir(directory)
    writer = StoreWriter(stage)
    extra = fill(writer)
    writer.finish(key, eos, extra)
    publish_dir(stage, directory, kind=STORE_KIND)
    store = ExampleStore(directory, key)
    if temporary:
        weakref.finalize(store, shutil.rmtree, directory.parent, True)
    return store


# ------------------------------------------------------------- what the index kinds write


def write_views(
    out: StoreWriter,
    part: str,
    task: str,
    documents: Iterable[tuple[Sequence[int], Sequence[int]]],
    config: TrainConfig,
    seed: int,
) -> None:
    """Document views -> target for every (document tokens, target tokens) of ``documents``:
    each document's lead and windows (``dsi.examples.view_spans``), drawn as one
    ``random.Random(seed)`` draws them document after document."""
    (docs, doc_lengths), (targets, _) = out.tables_of(("documents", "targets"), documents)
    rng = random.Random(seed)
    for first in range(0, len(doc_lengths), CHUNK * 16):
        rows, starts, stops = array("q"), array("q"), array("q")
        for row in range(first, min(first + CHUNK * 16, len(doc_lengths))):
            for a, b in view_spans(int(doc_lengths[row]), config, rng):
                rows.append(row)
                starts.append(a)
                stops.append(b)
        ids = np.frombuffer(rows, dtype=np.int64)
        span = (np.frombuffer(starts, dtype=np.int64), np.frombuffer(stops, dtype=np.int64))
        out.add(part, task, (docs, ids, *span), (targets, ids))


def write_pairs(
    out: StoreWriter,
    part: str,
    task: str,
    pairs: Iterable[tuple[Sequence[int], Sequence[int]]],
    config: TrainConfig,
    repeats: int,
) -> None:
    """Source -> target for every (source tokens, target tokens) of ``pairs``, all of them
    ``repeats`` times over; sources are cut to ``max_source_length - 1`` tokens plus EOS,
    targets are stored as they are (with their EOS)."""
    (sources, lengths), (targets, _) = out.tables_of(("sources", "targets"), pairs)
    rows = np.arange(len(lengths), dtype=np.int64)
    stops = np.minimum(lengths, config.max_source_length - 1)
    for _ in range(repeats):
        out.add(part, task, (sources, rows, np.zeros_like(rows), stops), (targets, rows))
