"""Training examples: (source token ids, target token ids) pairs for indexing and retrieval.

Whatever holds them (a small :class:`ExampleSet` in memory, a part of the memory-mapped example
store of :mod:`dsi.example_store`, or a :class:`Chain` of either), the trainer reads examples
through the :class:`Examples` protocol: their number, their lengths (a numpy array) and the
token ids of a batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dsi.config import TrainConfig


@runtime_checkable
class Examples(Protocol):
    """What the trainer reads of a set of examples."""

    def __len__(self) -> int: ...

    def lengths(self) -> np.ndarray:
        """Source plus target tokens of every example, in order."""
        ...

    def pairs(self, indices: Sequence[int]) -> list[tuple[Sequence[int], Sequence[int]]]:
        """(source, target) token ids of the examples at ``indices``."""
        ...

    def task_counts(self) -> dict[str, int]:
        """How many examples of each task, tasks in the order they first appear."""
        ...


@dataclass
class ExampleSet:
    """Parallel lists of encoder inputs and decoder targets, with a label per example's task:
    for small sets (the query generator's, tests); a build's examples live in the store."""

    sources: list[list[int]]
    targets: list[list[int]]
    tasks: list[str]

    def __len__(self) -> int:
        return len(self.sources)

    def extend(self, other: ExampleSet) -> None:
        self.sources += other.sources
        self.targets += other.targets
        self.tasks += other.tasks

    def lengths(self) -> np.ndarray:
        return np.fromiter(
            (len(s) + len(t) for s, t in zip(self.sources, self.targets, strict=True)),
            dtype=np.int64,
            count=len(self.sources),
        )

    def pairs(self, indices: Sequence[int]) -> list[tuple[Sequence[int], Sequence[int]]]:
        return [(self.sources[i], self.targets[i]) for i in indices]

    def task_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for task in self.tasks:
            counts[task] = counts.get(task, 0) + 1
        return counts


class Chain:
    """Sets of examples one after another, read in place (nothing is copied)."""

    def __init__(self, parts: Sequence[Examples]) -> None:
        self.parts = [p for p in parts if len(p)]
        self._starts = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def lengths(self) -> np.ndarray:
        if not self.parts:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([p.lengths() for p in self.parts])

    def pairs(self, indices: Sequence[int]) -> list[tuple[Sequence[int], Sequence[int]]]:
        indices = np.asarray(indices, dtype=np.int64)
        which = np.searchsorted(self._starts, indices, side="right") - 1
        out: list[tuple[Sequence[int], Sequence[int]] | None] = [None] * len(indices)
        for part in np.unique(which):
            rows = np.flatnonzero(which == part)
            got = self.parts[part].pairs(indices[rows] - self._starts[part])
            for row, pair in zip(rows, got, strict=True):
                out[row] = pair
        return out  # type: ignore[return-value]

    def task_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for part in self.parts:
            for task, n in part.task_counts().items():
                counts[task] = counts.get(task, 0) + n
        return counts


def mix_examples(first: Examples, second: Examples, second_share: float) -> Examples:
    """One pool of both sets in which ``second`` makes up about ``second_share`` of the examples
    (the scarcer set is repeated), so that uniform draws from it follow that mix."""
    if not len(second) or second_share <= 0.0:
        return first
    if not len(first) or second_share >= 1.0:
        return second
    wanted = second_share / (1.0 - second_share)  # len(second part) / len(first part)
    have = len(second) / len(first)
    if have < wanted:
        return Chain([first] + [second] * max(1, round(wanted / have)))
    return Chain([first] * max(1, round(have / wanted)) + [second])


def view_spans(length: int, config: TrainConfig, rng: random.Random) -> list[tuple[int, int]]:
    """The (start, stop) token spans of a document of ``length`` tokens that teach the model
    the document: its lead and sliding windows (windows drawn with ``rng`` when there are more
    than ``config.max_windows_per_doc``)."""
    lead_len = config.max_source_length - 1
    spans = [(0, min(length, lead_len))]
    if length > lead_len:
        starts = list(
            range(config.window_stride, length - config.window_stride, config.window_stride)
        )
        if len(starts) > config.max_windows_per_doc:
            starts = sorted(rng.sample(starts, config.max_windows_per_doc))
        spans += [(s, min(s + config.window_length, length)) for s in starts]
    return spans


def document_views(
    token_ids: Sequence[int], config: TrainConfig, eos_id: int, rng: random.Random
) -> list[list[int]]:
    """The encoder inputs that teach the model one document: its lead and sliding windows."""
    body = list(token_ids)
    return [body[a:b] + [eos_id] for a, b in view_spans(len(body), config, rng)]


def count_tasks(examples: Examples) -> dict[str, int]:
    """How many examples of each task ``examples`` holds."""
    return examples.task_counts()
