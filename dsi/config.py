"""The settings of an index: one small block per stage, saved as ``index.json`` in the index
directory, and the named constants of the stages they leave fixed.

A setting is a key that ``dsi index --set KEY=VALUE`` (or ``--config FILE``, or the Python
:class:`IndexConfig`) accepts; :func:`setting_keys` lists them and docs/settings.md documents
each. Everything else a stage needs is a constant with the reason it was chosen: here for the
model, training and the query generator, in ``dsi.seal`` (``SealOptions``, ``NGRAM_PRESETS``) for
n-gram identifiers.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docid.words import check_language

# ------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ModelShape:
    """The architecture of a T5 built from scratch: not a setting (``ModelConfig.size`` names
    one of ``MODEL_SIZES``; the query generator's is that size too, ``generator_config``)."""

    d_model: int
    d_ff: int
    d_kv: int
    num_heads: int
    num_layers: int
    num_decoder_layers: int
    # No dropout: a model trained for minutes sees each fresh copy pair a few times, far from
    # overfitting it, and learns faster without (experiments/quality.py, the `dropout` lever:
    # SciFact dev nDCG@10 0.731 against 0.710, and 0.635 against 0.617 from the documents alone).
    dropout_rate: float = 0.0
    # A copy distribution over the input's tokens mixed into the next-token distribution by a
    # learned gate (dsi.model.CopyT5, a pointer-generator): copying a rare word then needs no
    # vocabulary row learned for it. Dev nDCG@10 after 60 minutes against the plain T5:
    # Cranfield 0.371 against 0.312; SciFact 0.730 against 0.731 at seed 13 and 0.700 against
    # 0.713 at seed 14, a mean difference of +0.015, which the rule fixed before the second seed
    # ran asked to be positive (experiments/quality.py, `no_copy` and `no_copy_seed14`).
    copy_attention: bool = True


MODEL_SIZES: dict[str, ModelShape] = {
    # 1.9M parameters with the 8,000-token vocabulary: the best found for 2 CPU cores; on a time
    # budget, epochs matter more than width (experiments/quality.py, the `wide` levers).
    "small": ModelShape(d_model=128, d_ff=512, d_kv=32, num_heads=4, num_layers=2,
                        num_decoder_layers=2),
    # Seconds per index: smoke tests, examples and the golden tests, not quality.
    "tiny": ModelShape(d_model=32, d_ff=64, d_kv=8, num_heads=2, num_layers=1,
                       num_decoder_layers=1),
}  # fmt: skip
# The tokenizer folds case (sentencepiece's nmt_nfkc_cf): query and document words then match
# whatever their case, as in BM25 (experiments/lexical_ceiling.py, quality.py).
LOWERCASE = True


@dataclass
class ModelConfig:
    """The T5 built from scratch (ignored when ``IndexConfig.model`` names a checkpoint)."""

    # One of MODEL_SIZES.
    size: str = "small"
    # Pieces of the sentencepiece tokenizer trained on the corpus.
    vocab_size: int = 8000

    def __post_init__(self) -> None:
        if self.size not in MODEL_SIZES:
            raise ValueError(
                f"model_config.size must be one of {sorted(MODEL_SIZES)}, got {self.size!r}."
            )
        if not isinstance(self.vocab_size, int) or self.vocab_size < 10:
            raise ValueError(f"model_config.vocab_size must be at least 10, got {self.vocab_size}.")

    @property
    def shape(self) -> ModelShape:
        return MODEL_SIZES[self.size]

    @property
    def lowercase(self) -> bool:
        return LOWERCASE


# ---------------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    """How the model learns the corpus: the optimiser and budget (settings), and the fixed
    parameters of the examples and the trainer (``TRAIN_CONSTANTS``: not settings of an index;
    the query generator and ``dsi add`` run the trainer with values of their own)."""

    max_source_length: int = 64
    # Indexing views per document: the lead (title + start of text) plus sliding windows, at
    # most max_windows_per_doc of them (a setting: NCI's many views per document).
    window_length: int = 48
    window_stride: int = 32
    max_windows_per_doc: int = 8
    # Training queries (query -> docid) are repeated this many times per epoch (a setting: the
    # ratio of retrieval to indexing examples, a lever of DSI's).
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
    # Sharpness-aware minimisation: two forward/backward passes per update (see dsi.sam); only
    # `dsi add --sam` uses it.
    sam: bool = False
    sam_rho: float = 0.05
    # Keep an exponential moving average of the weights with this decay (None: off); evaluations
    # during training and the trained model use the average (see dsi.averaging). Off: it did not
    # beat the plain weights (experiments/quality.py, the `weight_average` lever).
    weight_average_decay: float | None = None
    # Passed to accelerate's Accelerator: "no", "fp16" (CUDA) or "bf16"; "no" leaves accelerate's
    # own setting (e.g. `accelerate launch --mixed_precision`) as it is.
    mixed_precision: str = "no"
    # Micro-batches of batch_size whose gradients make one optimizer update (a step).
    grad_accumulation_steps: int = 1

    def __post_init__(self) -> None:
        for name, least in (("max_windows_per_doc", 0), ("query_repeats", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"train.{name} must be an integer >= {least}, got {value!r}.")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(
                f"train.mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}."
            )
        steps = self.grad_accumulation_steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(
                f"train.grad_accumulation_steps must be an integer >= 1, got {steps!r}."
            )
        if self.sam and steps > 1:
            raise ValueError("train.sam does not combine with train.grad_accumulation_steps > 1.")


# TrainConfig's fields that are fixed for an index (their defaults above), not settings.
TRAIN_CONSTANTS = (
    "max_source_length",
    "window_length",
    "window_stride",
    "weight_decay",
    "sam",
    "sam_rho",
    "weight_average_decay",
)


def train_settings() -> list[str]:
    """The names of TrainConfig's settings: every field but ``TRAIN_CONSTANTS``."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in TRAIN_CONSTANTS]


# --------------------------------------------------------------------------- query generator


def _generator_shape(size: str) -> ModelShape:
    # The generator kept the dropout and the plain T5 it was measured with: 30 epochs over few
    # pairs.
    return dataclasses.replace(MODEL_SIZES[size], dropout_rate=0.1, copy_attention=False)


@dataclass(frozen=True)
class GeneratorConfig:
    """The query generator (``dsi.pseudo_queries``): a T5 sharing the index's tokenizer. Not a
    setting: an index trains ``generator_config`` of its model size."""

    model_config: ModelShape = field(default_factory=lambda: _generator_shape("small"))
    # ``train.max_source_length`` bounds the document text the generator reads.
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_source_length=128, warmup_steps=100, max_epochs=30, max_minutes=5.0
        )
    )
    max_query_length: int = 32
    # Unsupervised (document without one sentence -> that sentence) pairs per document.
    sentence_pairs_per_doc: int = 2
    # Each training query is repeated this many times per epoch.
    query_repeats: int = 2
    top_k: int = 10


def generator_config(size: str) -> GeneratorConfig:
    """The query generator an index whose model has size ``size`` (MODEL_SIZES) trains: a plain
    T5 of that size with the constants above."""
    return GeneratorConfig(model_config=_generator_shape(size))


# --------------------------------------------------------------------------------- the index

# The settings of each identifier kind, in ``IndexConfig.docid_options``: n-gram (dsi.seal,
# SealOptions), semantic (docid.semantic.SemanticDocids.fit), title and keywords (docid.lexical);
# atomic and naive have none.
DOCID_SETTINGS: dict[str, tuple[str, ...]] = {
    "ngram": ("preset", "scoring"),
    # N-grams and semantic docids from one model, fused at search (dsi.fusion, docs/fusion.md).
    "ngram+semantic": ("preset", "scoring"),
    "semantic": ("k", "c", "embedder"),
    "title": ("max_words",),
    "keywords": ("max_words",),
}


@dataclass
class IndexConfig:
    """The settings of an index; ``IndexConfig.from_dict`` reads ``index.json`` back."""

    # "ngram" (SEAL, the best found: experiments/quality.py), "ngram+semantic" (n-grams fused
    # with semantic docids, dsi.fusion), "semantic", "atomic", "naive", "title" or "keywords"
    # (docid.lexical).
    docids: str = "ngram"
    # The identifier kind's settings (DOCID_SETTINGS), e.g. {"preset": "without_queries"}.
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
    # Stemmer and stopwords of the lexical parts (word index, BM25 baselines): a Snowball
    # language (docid.words.languages()).
    language: str = "english"

    def __post_init__(self) -> None:
        check_language(self.language)
        known = DOCID_SETTINGS.get(self.docids, ())
        unknown = sorted(set(self.docid_options) - set(known))
        if unknown:
            raise ValueError(
                f"docid_options has unknown {self.docids} settings {unknown}; known ones are "
                f"{list(known)} (docs/settings.md)."
            )
        fixed = TrainConfig()
        changed = [n for n in TRAIN_CONSTANTS if getattr(self.train, n) != getattr(fixed, n)]
        if changed:
            raise ValueError(
                f"train.{changed[0]} is not a setting of an index: TrainConfig fixes it at "
                f"{getattr(fixed, changed[0])!r} (dsi.config.TRAIN_CONSTANTS)."
            )

    @property
    def generator(self) -> GeneratorConfig:
        """The query generator this index trains (``generator_config``; not a setting)."""
        return generator_config(self.model_config.size)

    def to_dict(self) -> dict[str, Any]:
        """The settings as nested JSON-ready dicts, as ``index.json`` holds them."""
        data = dataclasses.asdict(self)
        for name in TRAIN_CONSTANTS:
            del data["train"][name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        """Rebuild from ``to_dict`` output, rejecting unknown keys with a clear message."""
        data = dict(data)
        if isinstance(data.get("model_config"), dict):
            data["model_config"] = _build(ModelConfig, data["model_config"], "model_config")
        if isinstance(data.get("train"), dict):
            data["train"] = _build(TrainConfig, data["train"], "train", train_settings())
        return _build(cls, data, "config")

    def updated(self, settings: dict[str, Any]) -> IndexConfig:
        """A copy with dotted ``settings`` applied, e.g. ``{"train.batch_size": 32}``; a key
        that is no setting (:func:`setting_keys`) is refused, naming the known ones."""
        known = setting_keys()
        data = self.to_dict()
        for key, value in settings.items():
            if key not in known:
                raise ValueError(
                    f"{key!r} is not a setting; the settings are {', '.join(known)} "
                    "(docs/settings.md)."
                )
            target = data
            *parents, leaf = key.split(".")
            for part in parents:
                target = target[part]
            target[leaf] = value
        return IndexConfig.from_dict(data)

    def save(self, path: Path) -> None:
        from docid.io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> IndexConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as a dict: each value read as JSON (``4``, ``true``,
    ``null``), or kept as the string it is when it is not JSON."""
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}.")
        try:
            settings[key] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key] = raw
    return settings


def setting_keys() -> list[str]:
    """Every key ``dsi index --set`` accepts, dotted, in the order of docs/settings.md."""
    keys: list[str] = []
    for f in dataclasses.fields(IndexConfig):
        if f.name == "model_config":
            keys += [f"model_config.{g.name}" for g in dataclasses.fields(ModelConfig)]
        elif f.name == "train":
            keys += [f"train.{name}" for name in train_settings()]
        elif f.name == "docid_options":
            names = dict.fromkeys(n for kind in DOCID_SETTINGS.values() for n in kind)
            keys += [f"docid_options.{name}" for name in names]
        else:
            keys.append(f.name)
    return keys


def _build(kind: type, data: dict[str, Any], where: str, names: list[str] | None = None) -> Any:
    if names is None:
        names = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(data) - set(names))
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
    # Any other TrainConfig settings (train_settings()) to override, e.g. {"learning_rate": 1e-3}.
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
        names = train_settings()
        unknown = sorted(set(self.train) - set(names))
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
