"""Training examples: (source token ids, target token ids) pairs for indexing and retrieval."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from dsi.config import TrainConfig


@dataclass
class ExampleSet:
    """Parallel lists of encoder inputs and decoder targets, with a label per example's task."""

    sources: list[list[int]]
    targets: list[list[int]]
    tasks: list[str]

    def __len__(self) -> int:
        return len(self.sources)

    def extend(self, other: ExampleSet) -> None:
        self.sources += other.sources
        self.targets += other.targets
        self.tasks += other.tasks


def mix_examples(first: ExampleSet, second: ExampleSet, second_share: float) -> ExampleSet:
    """One pool of both sets in which ``second`` makes up about ``second_share`` of the examples
    (the scarcer set is repeated), so that uniform draws from it follow that mix."""
    if not len(second) or second_share <= 0.0:
        return first
    if not len(first) or second_share >= 1.0:
        return second
    wanted = second_share / (1.0 - second_share)  # len(second part) / len(first part)
    have = len(second) / len(first)
    out = ExampleSet([], [], [])
    if have < wanted:
        out.extend(first)
        for _ in range(max(1, round(wanted / have))):
            out.extend(second)
    else:
        for _ in range(max(1, round(have / wanted))):
            out.extend(first)
        out.extend(second)
    return out


def document_views(
    token_ids: Sequence[int], config: TrainConfig, eos_id: int, rng: random.Random
) -> list[list[int]]:
    """The encoder inputs that teach the model one document: its lead and sliding windows."""
    body = list(token_ids)
    lead_len = config.max_source_length - 1
    views = [body[:lead_len] + [eos_id]]
    if len(body) > lead_len:
        starts = list(
            range(config.window_stride, len(body) - config.window_stride, config.window_stride)
        )
        if len(starts) > config.max_windows_per_doc:
            starts = sorted(rng.sample(starts, config.max_windows_per_doc))
        views += [body[s : s + config.window_length] + [eos_id] for s in starts]
    return views


def indexing_examples(
    doc_token_ids: Sequence[Sequence[int]],
    docid_targets: Sequence[Sequence[int]],
    config: TrainConfig,
    eos_id: int,
    seed: int,
) -> ExampleSet:
    """Document views -> docid, for every document."""
    rng = random.Random(seed)
    out = ExampleSet([], [], [])
    for ids, target in zip(doc_token_ids, docid_targets, strict=True):
        for view in document_views(ids, config, eos_id, rng):
            out.sources.append(view)
            out.targets.append(list(target))
            out.tasks.append("index")
    return out


def retrieval_examples(
    query_token_ids: Sequence[Sequence[int]],
    docid_targets: Sequence[Sequence[int]],
    config: TrainConfig,
    eos_id: int,
    repeats: int,
) -> ExampleSet:
    """Query -> docid of a relevant document (one example per judged pair), ``repeats`` times."""
    out = ExampleSet([], [], [])
    cut = config.max_source_length - 1
    for _ in range(repeats):
        for ids, target in zip(query_token_ids, docid_targets, strict=True):
            out.sources.append(list(ids[:cut]) + [eos_id])
            out.targets.append(list(target))
            out.tasks.append("retrieve")
    return out


def count_tasks(examples: ExampleSet) -> dict[str, int]:
    """How many examples of each task ``examples`` holds."""
    counts: dict[str, int] = {}
    for task in examples.tasks:
        counts[task] = counts.get(task, 0) + 1
    return counts
