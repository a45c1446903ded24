"""The configuration of an index: one dataclass, saved as ``config.json`` in the index directory."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docid.words import check_language


@dataclass
class ModelConfig:
    """Size of a T5 built from scratch (ignored when ``IndexConfig.model`` names a checkpoint).

    The default (1.9M parameters with the 8,000-token vocabulary) is the best found for 2 CPU
    cores: on a time budget, epochs matter more than width (experiments/quality.py).
    """

    vocab_size: int = 8000
    d_model: int = 128
    d_ff: int = 512
    d_kv: int = 32
    num_heads: int = 4
    num_layers: int = 2
    num_decoder_layers: int = 2
    # No dropout: a model trained for minutes sees each fresh copy pair a few times, far from
    # overfitting it, and learns faster without (experiments/quality.py, the `dropout` lever:
    # SciFact dev nDCG@10 0.731 against 0.710, and 0.635 against 0.617 from the documents alone).
    dropout_rate: float = 0.0
    # The tokenizer folds case (sentencepiece's nmt_nfkc_cf): query and document words then
    # match whatever their case, as in BM25 (experiments/lexical_ceiling.py, quality.py).
    lowercase: bool = True
    # A copy distribution over the input's tokens mixed into the next-token distribution by a
    # learned gate (dsi.model.CopyT5, a pointer-generator): copying a rare word then needs no
    # vocabulary row learned for it. Dev nDCG@10 after 60 minutes against the plain T5:
    # Cranfield 0.371 against 0.312; SciFact 0.730 against 0.731 at seed 13 and 0.700 against
    # 0.713 at seed 14, a mean difference of +0.015, which the rule fixed before the second seed
    # ran asked to be positive (experiments/quality.py, `no_copy` and `no_copy_seed14`).
    copy_attention: bool = True


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
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 300
    max_epochs: int = 200
    max_steps: int | None = None
    max_minutes: float | None = 60.0
    checkpoint_minutes: float = 5.0
    seed: int = 13
    num_threads: int | None = None
    # Sharpness-aware minimisation: two forward/backward passes per update (see dsi.sam).
    sam: bool = False
    sam_rho: float = 0.05
    # Keep an exponential moving average of the weights with this decay (None: off); evaluations
    # during training and the trained model use the average (see dsi.averaging).
    weight_average_decay: float | None = None


# Settings added after indexes and results were first fingerprinted, each with the value that
# leaves it without effect, as it was before it existed (see IndexConfig.identity).
TRAIN_SETTINGS_ADDED_LATER: dict[str, Any] = {"weight_average_decay": None}
MODEL_SETTINGS_ADDED_LATER: dict[str, Any] = {"copy_attention": False}
# The n-gram scheme's (dsi.seal.SealOptions), in docid_options where a config names them.
DOCID_SETTINGS_ADDED_LATER: dict[str, Any] = {
    "word_weight_without_queries": None,
    "feedback_docs": 0,
    "feedback_docs_without_queries": None,
    # These matter only while feedback is on: the values they came with.
    "feedback_words": 10,
    "feedback_weight": 0.25,
}


def _generator_model() -> ModelConfig:
    # The generator kept the dropout and the plain T5 it was measured with: 30 epochs over few
    # pairs.
    return ModelConfig(dropout_rate=0.1, copy_attention=False)


def _generator_train() -> TrainConfig:
    return TrainConfig(max_source_length=128, warmup_steps=100, max_epochs=30, max_minutes=5.0)


@dataclass
class GeneratorConfig:
    """The query generator (``dsi.pseudo_queries``): a small T5 sharing the index's tokenizer."""

    model_config: ModelConfig = field(default_factory=_generator_model)
    # ``train.max_source_length`` bounds the document text the generator reads.
    train: TrainConfig = field(default_factory=_generator_train)
    max_query_length: int = 32
    # Unsupervised (document without one sentence -> that sentence) pairs per document.
    sentence_pairs_per_doc: int = 2
    # Each training query is repeated this many times per epoch.
    query_repeats: int = 2
    top_k: int = 10


@dataclass
class IndexConfig:
    """Everything that defines an index; ``IndexConfig(**json)`` reads ``config.json`` back."""

    # "ngram" (SEAL, the best found: experiments/quality.py), "semantic", "atomic" or "naive".
    docids: str = "ngram"
    # Options of the docid scheme (ngram: dsi.seal.SealOptions; semantic: k, c,
    # position_tokens, embedder).
    docid_options: dict[str, Any] = field(default_factory=dict)
    # None: build a T5 from ``model_config`` with a sentencepiece tokenizer trained on the corpus.
    # Otherwise a local directory or hub name of a T5 checkpoint with its tokenizer.
    model: str | None = None
    model_config: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    num_beams: int = 10
    # Generated queries per document added as extra (query -> docid) examples (DSI-QG style).
    pseudo_queries: int = 0
    # Train and keep a query generator in the index (for generative replay when adding).
    # It is trained whenever pseudo_queries > 0 as well, and then kept too.
    query_generator: bool = False
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    # Stemmer and stopwords of the lexical parts (word index, BM25 baselines): a Snowball
    # language (docid.words.languages()).
    language: str = "english"

    def __post_init__(self) -> None:
        check_language(self.language)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """``to_dict()`` without the settings added later while they are off
        (``TRAIN_SETTINGS_ADDED_LATER``, ``MODEL_SETTINGS_ADDED_LATER``,
        ``DOCID_SETTINGS_ADDED_LATER``), so that work directories and results fingerprinted
        before they existed stay valid."""
        data = self.to_dict()
        added_later = {
            "train": TRAIN_SETTINGS_ADDED_LATER,
            "model_config": MODEL_SETTINGS_ADDED_LATER,
        }
        for part in (data, data["generator"]):
            for key, settings in added_later.items():
                for name, off in settings.items():
                    if part[key][name] == off:
                        del part[key][name]
        if data["language"] == "english":  # added later too
            del data["language"]
        options = data["docid_options"]
        for name, off in DOCID_SETTINGS_ADDED_LATER.items():
            if name in options and options[name] == off:
                del options[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        """Rebuild from ``to_dict`` output, rejecting unknown keys with a clear message."""
        data = dict(data)
        _settings_of_older_configs(data)
        nested = {"model_config": ModelConfig, "train": TrainConfig}
        for key, kind in nested.items():
            if key in data and isinstance(data[key], dict):
                data[key] = _build(kind, data[key], key)
        if isinstance(data.get("generator"), dict):
            generator = dict(data["generator"])
            for key, kind in nested.items():
                if key in generator and isinstance(generator[key], dict):
                    generator[key] = _build(kind, generator[key], f"generator.{key}")
            data["generator"] = _build(GeneratorConfig, generator, "generator")
        return _build(cls, data, "config")

    def updated(self, settings: dict[str, Any]) -> IndexConfig:
        """A copy with dotted ``settings`` applied, e.g. ``{"train.batch_size": 32}``."""
        data = self.to_dict()
        for key, value in settings.items():
            target = data
            *parents, leaf = key.split(".")
            for part in parents:
                target = target.setdefault(part, {})
                if not isinstance(target, dict):
                    raise ValueError(f"Setting {key}: {part} is not a group of settings.")
            target[leaf] = value
        return IndexConfig.from_dict(data)

    def save(self, path: Path) -> None:
        from docid.io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> IndexConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _settings_of_older_configs(data: dict[str, Any]) -> None:
    """Fill in what configs saved before a setting existed meant by leaving it out.

    Before ``ModelConfig.copy_attention``: plain T5 models. Before ``ModelConfig.lowercase``:
    cased tokenizers and, for n-gram indexes, SEAL's intersective scoring (then the only one).
    """
    model_config = data.get("model_config")
    if not isinstance(model_config, dict):
        return
    generator = data.get("generator")
    has_generator = isinstance(generator, dict) and isinstance(generator.get("model_config"), dict)
    # Left out meant off, as in IndexConfig.identity.
    older: dict[str, Any] = dict(MODEL_SETTINGS_ADDED_LATER)
    if "lowercase" not in model_config:
        older["lowercase"] = False
        options = data.get("docid_options")
        if data.get("docids", "ngram") == "ngram" and isinstance(options, dict):
            data["docid_options"] = {"scoring": "intersective", **options}
    data["model_config"] = {**older, **model_config}
    if has_generator:
        data["generator"] = {**generator, "model_config": {**older, **generator["model_config"]}}


def _build(kind: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where} has unknown settings {unknown}; known ones are {sorted(names)}.")
    return kind(**data)


REPLAY_STRATEGIES = ("none", "queries", "generative", "documents")


@dataclass
class AddConfig:
    """How ``GenerativeIndex.add`` teaches the model new documents without forgetting old ones.

    replay: what is mixed in from the documents already indexed --
      "none" (plain fine-tuning), "queries" (their real training queries), "generative"
      (queries generated for them by the index's query generator, DSI++'s generative memory,
      mixed with their real training queries if any), "documents" (their indexing views).
    """

    replay: str = "documents"
    # Replay examples per new example, drawn afresh from the replay pool every epoch.
    replay_ratio: float = 1.0
    # Generative replay: queries generated per old document, and how many old documents get
    # them (None: all of them).
    generated_per_doc: int = 2
    replay_docs: int | None = None
    # Generative replay mixes in the old documents' real training queries when the index has
    # them (as DSI++ does): about this share of the replayed examples.
    real_query_share: float = 0.5
    sam: bool = False
    sam_rho: float = 0.05
    # Budget of the continued training; None keeps the index's own TrainConfig value.
    max_steps: int | None = None
    max_minutes: float | None = None
    max_epochs: int | None = None
    # Any other TrainConfig settings to override, e.g. {"learning_rate": 1e-3}.
    train: dict[str, Any] = field(default_factory=dict)
    seed: int = 13

    def __post_init__(self) -> None:
        if self.replay not in REPLAY_STRATEGIES:
            raise ValueError(
                f"replay must be one of {list(REPLAY_STRATEGIES)}, got {self.replay!r}."
            )
        if self.replay_ratio < 0:
            raise ValueError(f"replay_ratio must be at least 0, got {self.replay_ratio}.")
        if not 0.0 <= self.real_query_share <= 1.0:
            raise ValueError(
                f"real_query_share must be between 0 and 1, got {self.real_query_share}."
            )
        if self.generated_per_doc < 1:
            raise ValueError(f"generated_per_doc must be at least 1, got {self.generated_per_doc}.")
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(self.train) - names)
        if unknown:
            raise ValueError(
                f"train has unknown settings {unknown}; known ones are {sorted(names)}."
            )

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """``base`` with this config's budget, SAM and overrides applied."""
        changes: dict[str, Any] = dict(self.train)
        changes.update(sam=self.sam, sam_rho=self.sam_rho, seed=self.seed)
        if self.max_steps is not None:
            changes["max_steps"] = self.max_steps
            # A step budget alone should not be cut short by the index's time budget.
            if self.max_minutes is None and "max_minutes" not in self.train:
                changes["max_minutes"] = None
        if self.max_minutes is not None:
            changes["max_minutes"] = self.max_minutes
        if self.max_epochs is not None:
            changes["max_epochs"] = self.max_epochs
        return dataclasses.replace(base, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
