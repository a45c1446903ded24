"""Continual indexing (as in DSI++): what an addition checks, replays and records.

:meth:`dsi.index.IndexLifecycle.add` runs an addition; this module holds its parts that do not
depend on the identifier kind: the check of the new documents, the replay sample, training with
replay, the addition's fingerprint and its lineage entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import torch

from dsi.config import AddConfig
from dsi.data import Corpus, TrainingQueries
from dsi.examples import Examples, count_tasks
from dsi.index_format import utc_now
from dsi.train import TrainStats, train

log = logging.getLogger(__name__)


def train_with_replay(
    model: torch.nn.Module,
    examples: Examples,
    pool: Examples,
    config: AddConfig,
    train_config: Any,
    work_dir: Path | None,
    progress_bar: bool,
) -> tuple[TrainStats, int]:
    """Continue training on the new ``examples`` with ``config.replay_ratio`` replayed examples
    per new one, drawn afresh from ``pool`` every epoch; returns the stats and that count."""
    per_epoch = math.ceil(config.replay_ratio * len(examples)) if len(pool) else 0
    log.info(
        "Adding documents: %d new examples and %d replayed per epoch (%s replay, pool %d).",
        len(examples),
        per_epoch,
        config.replay,
        len(pool),
    )
    stats = train(
        model,
        examples,
        train_config,
        checkpoint_dir=None if work_dir is None else work_dir / "checkpoint",
        pad_id=model.config.pad_token_id,
        progress_bar=progress_bar,
        replay=pool,
        replay_per_epoch=per_epoch,
    )
    return stats, per_epoch


def add_order(lineage: list[dict[str, Any]]) -> int:
    """The number of the next addition to an index with this ``lineage`` (1 for the first)."""
    return sum(1 for e in lineage if e.get("event") == "add") + 1


def add_entry(
    lineage: list[dict[str, Any]],
    corpus: Corpus,
    total_documents: int,
    pairs: list[tuple[str, str]],
    config: AddConfig,
    examples: Examples,
    replay: tuple[Examples, int, bool],
    stats: TrainStats,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    """The lineage entry of an addition of ``corpus`` (either index kind; ``extra`` holds what
    only one kind records). ``replay`` is (pool, replayed per epoch, generator trained)."""
    pool, per_epoch, generator_trained = replay
    return {
        "event": "add",
        "order": add_order(lineage),
        "corpus": corpus.source,
        "documents": len(corpus.doc_ids),
        "total_documents": total_documents,
        "first_doc_id": corpus.doc_ids[0],
        "last_doc_id": corpus.doc_ids[-1],
        "training_queries": len(pairs),
        "settings": config.to_dict(),
        "examples": count_tasks(examples),
        "replay": {
            "strategy": config.replay,
            "per_epoch": per_epoch,
            "pool": count_tasks(pool),
            "generator_trained": generator_trained,
        },
        **extra,
        "training": stats.summary(),
        "optimizer_updates": stats.optimizer_updates,
        "seconds": round(time.monotonic() - started, 1),
        "at": utc_now(),
    }


def replay_doc_ids(corpus: Corpus, config: AddConfig) -> list[str]:
    """The indexed documents to replay: all of them, or ``config.replay_docs`` drawn at random."""
    old = list(corpus.doc_ids)
    if config.replay_docs is not None and config.replay_docs < len(old):
        rng = random.Random(config.seed)
        old = sorted(rng.sample(old, config.replay_docs), key=corpus.positions().get)
    return old


def check_new_documents(corpus: Corpus, known: Any) -> None:
    """Refuse an added corpus that is empty, repeats an id or holds a document of ``known``."""
    if len(corpus.doc_ids) == 0:
        raise ValueError("The corpus to add is empty: there is nothing to index.")
    seen: set[str] = set()
    for doc_id in corpus.doc_ids:
        if doc_id in known:
            raise ValueError(
                f"Document {doc_id!r} is already in the index; "
                "an added corpus must hold new documents only."
            )
        if doc_id in seen:
            raise ValueError(f"Document {doc_id!r} appears twice in the corpus to add.")
        seen.add(doc_id)


def add_fingerprint(
    lineage: list[dict[str, Any]],
    num_docs: int,
    corpus: Corpus,
    queries: TrainingQueries | None,
    config: AddConfig,
) -> str:
    """What an addition's work directory belongs to (budgets left out: they may change)."""
    settings = config.to_dict()
    for key in ("max_minutes", "max_steps", "max_epochs"):
        settings.pop(key)
    for key in ("max_minutes", "max_steps", "max_epochs", "checkpoint_minutes"):
        settings["train"].pop(key, None)
    state = {"lineage": lineage, "documents": num_docs, "settings": settings}
    digest = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode())
    for doc_id, title, text in zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True):
        digest.update(f"{doc_id}\x00{title}\x00{text}\x01".encode())
    if queries is not None:
        digest.update(json.dumps([queries.queries, queries.qrels], sort_keys=True).encode())
    return digest.hexdigest()
