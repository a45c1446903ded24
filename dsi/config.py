"""The configuration of an index: one dataclass, saved as ``config.json`` in the index directory."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ModelConfig:
    """Size of a T5 built from scratch (ignored when ``IndexConfig.model`` names a checkpoint)."""

    vocab_size: int = 8000
    d_model: int = 256
    d_ff: int = 1024
    d_kv: int = 32
    num_heads: int = 8
    num_layers: int = 3
    num_decoder_layers: int = 3
    dropout_rate: float = 0.1


@dataclass
class TrainConfig:
    """How the model learns the corpus: examples, optimiser and budget."""

    max_source_length: int = 64
    # Indexing views per document: the lead (title + start of text) plus sliding windows.
    window_length: int = 48
    window_stride: int = 32
    max_windows_per_doc: int = 8
    # Training queries (query -> docid) are repeated this many times per epoch.
    query_repeats: int = 2
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 300
    max_epochs: int = 200
    max_steps: int | None = None
    max_minutes: float | None = 30.0
    checkpoint_minutes: float = 5.0
    seed: int = 13
    num_threads: int | None = None


@dataclass
class IndexConfig:
    """Everything that defines an index; ``IndexConfig(**json)`` reads ``config.json`` back."""

    docids: str = "semantic"
    # Options of the docid scheme (semantic: k, c, position_tokens, embedder).
    docid_options: dict[str, Any] = field(default_factory=dict)
    # None: build a T5 from ``model_config`` with a sentencepiece tokenizer trained on the corpus.
    # Otherwise a local directory or hub name of a T5 checkpoint with its tokenizer.
    model: str | None = None
    model_config: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    num_beams: int = 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        """Rebuild from ``to_dict`` output, rejecting unknown keys with a clear message."""
        data = dict(data)
        nested = {"model_config": ModelConfig, "train": TrainConfig}
        for key, kind in nested.items():
            if key in data and isinstance(data[key], dict):
                data[key] = _build(kind, data[key], key)
        return _build(cls, data, "config")

    def save(self, path: Path) -> None:
        from dsi.io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> IndexConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _build(kind: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where} has unknown settings {unknown}; known ones are {sorted(names)}.")
    return kind(**data)
