"""Shared fixtures: tiny corpora and a tiny T5 configuration, so model tests run in seconds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from dsi.config import IndexConfig, ModelConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# No test writes dsi's cache in the home folder (tests of the cache name their own folder).
os.environ.setdefault("DSI_CACHE", "off")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child Python that imports this checkout: the repo first on its path,
    then whatever PYTHONPATH held already (where the dependencies may come from)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TQDM_DISABLE": "1", **extra}


WORDS = (
    "river stone lantern copper meadow falcon harbor violet thunder orchard glacier ember willow "
    "canyon saffron beacon marble cedar tundra coral prairie quartz nectar summit lagoon ivory "
    "basalt juniper aurora delta mesa fjord cobalt heron maple ridge sparrow tidal amber birch"
).split()


def random_corpus(rng: random.Random, n_docs: int, id_style: str = "plain"):
    """A corpus of ``n_docs`` short random documents; ids vary in style to exercise naive docids."""
    from dsi.data import Corpus

    ids: list[str] = []
    while len(ids) < n_docs:
        if id_style == "plain":
            candidate = f"d{len(ids)}"
        else:
            candidate = "".join(rng.choice("abcxyz0123-_") for _ in range(rng.randint(1, 6)))
        if candidate not in ids:
            ids.append(candidate)
    titles = [" ".join(rng.choices(WORDS, k=2)) for _ in ids]
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(6, 30))) + "." for _ in ids]
    return Corpus(doc_ids=ids, titles=titles, texts=texts, source="random")


def tiny_config(docids: str = "semantic", steps: int = 10, **train) -> IndexConfig:
    """A model small enough that ten training steps take well under a second."""
    options = {"k": 3, "c": 3, "embedder": "tfidf"} if docids == "semantic" else {}
    return IndexConfig(
        docids=docids,
        docid_options=options,
        # d_model 32, d_ff 64, d_kv 8, 2 heads, 1 + 1 layers, no dropout.
        model_config=ModelConfig(size="tiny", vocab_size=120),
        train=TrainConfig(
            max_steps=steps,
            max_minutes=None,
            batch_size=8,
            warmup_steps=2,
            learning_rate=3e-3,
            checkpoint_minutes=60,
            **train,
        ),
        num_beams=5,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED}/data is absent: the shared benchmark data is not available here.")
    return SHARED / "data"
