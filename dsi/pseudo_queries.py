"""A query generator (document text -> queries), for pseudo-queries and generative replay.

A small T5 that shares the index's tokenizer learns two kinds of pairs:

- supervised: document -> one of its training queries, when the corpus has them;
- unsupervised: the document without one of its sentences -> that sentence (inverse cloze), so
  that it also learns something query-like from documents alone.

``generate`` samples (top-k) distinct queries per document. Saved as a directory of plain files:
``config.json`` + ``model.safetensors`` (the T5) and ``generator.json`` (``GeneratorConfig`` and
training statistics); the tokenizer is not duplicated, it is the index's.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from docid.io import atomic_write_text
from dsi.config import GeneratorConfig, ModelShape, TrainConfig
from dsi.examples import ExampleSet
from dsi.model import build_model, num_parameters, open_model
from dsi.train import train

log = logging.getLogger(__name__)

GENERATOR_FILE = "generator.json"
GENERATOR_VERSION = 1
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after ``.``, ``!`` or ``?`` followed by white space)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


class QueryGenerator:
    """Generates queries for documents; ``fit`` trains one, ``load`` reads a saved one."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        config: GeneratorConfig,
        stats: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.stats = dict(stats or {})

    # ----------------------------------------------------------------------- training
    @classmethod
    def fit(
        cls,
        tokenizer: Any,
        texts: Sequence[str],
        pairs: Sequence[tuple[int, str]] = (),
        config: GeneratorConfig | None = None,
        checkpoint_dir: Path | None = None,
        progress_bar: bool = True,
    ) -> QueryGenerator:
        """Train a generator on ``texts`` and ``pairs`` of (position in ``texts``, query)."""
        config = config or GeneratorConfig()
        if not texts:
            raise ValueError("The query generator needs at least one document to learn from.")
        examples = training_examples(tokenizer, texts, pairs, config)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model_config, len(tokenizer), 0)
        log.info(
            "Training a %.1fM-parameter query generator on %d examples (%d with real queries).",
            num_parameters(model) / 1e6,
            len(examples),
            examples.tasks.count("query"),
        )
        stats = train(
            model,
            examples,
            config.train,
            checkpoint_dir=checkpoint_dir,
            pad_id=model.config.pad_token_id,
            progress_bar=progress_bar,
        )
        summary = {
            "documents": len(texts),
            "query_pairs": len(pairs),
            "examples": len(examples),
            "training": stats.summary(),
        }
        return cls(model.cpu(), tokenizer, config, summary)

    # --------------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(
        self,
        texts: Sequence[str],
        n: int,
        top_k: int | None = None,
        temperature: float = 1.0,
        seed: int = 0,
        batch_size: int = 32,
        device: str | torch.device | None = None,
    ) -> list[list[str]]:
        """``n`` distinct queries per text, by top-k sampling.

        Sampling is retried for texts that got fewer than ``n`` distinct queries; what is still
        missing is filled with word windows of the text itself (fewer than ``n`` only when a text
        is too short to give ``n`` distinct ones).
        """
        if isinstance(texts, str):
            raise TypeError("generate() takes a list of texts; wrap a single text in a list.")
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}.")
        device = torch.device(device or "cpu")
        model = self.model.to(device).eval()
        top_k = top_k or self.config.top_k
        found: list[list[str]] = [[] for _ in texts]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for attempt in range(3):
                todo = [i for i, got in enumerate(found) if len(got) < n]
                for start in range(0, len(todo), batch_size):
                    rows = todo[start : start + batch_size]
                    samples = self._sample(
                        model, [texts[i] for i in rows], 2 * n, top_k, temperature * (1 + attempt)
                    )
                    for row, candidates in zip(rows, samples, strict=True):
                        for query in candidates:
                            if len(found[row]) < n and query and query not in found[row]:
                                found[row].append(query)
        filled = 0
        for i, got in enumerate(found):
            if len(got) < n:
                filled += n - len(got)
                got.extend(_windows(texts[i], n - len(got), exclude=set(got), seed=seed + i))
        if filled:
            log.info("Filled %d generated queries with document windows.", filled)
        self.model.cpu()
        return found

    def _sample(
        self, model, texts: list[str], count: int, top_k: int, temperature: float
    ) -> list[list[str]]:
        enc = self.tokenizer(
            texts,
            max_length=self.config.train.max_source_length,
            truncation=True,
            padding=True,
            return_tensors="pt",
        ).to(model.device)
        out = model.generate(
            **enc,
            do_sample=True,
            top_k=top_k,
            temperature=temperature,
            num_return_sequences=count,
            max_new_tokens=self.config.max_query_length,
        )
        decoded = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [
            [" ".join(q.split()) for q in decoded[i * count : (i + 1) * count]]
            for i in range(len(texts))
        ]

    # ---------------------------------------------------------------------------- files
    def save(self, directory: str | Path) -> Path:
        """Write the generator's files into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        meta = {
            "version": GENERATOR_VERSION,
            "config": asdict(self.config),
            "stats": self.stats,
        }
        atomic_write_text(directory / GENERATOR_FILE, json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, tokenizer: Any) -> QueryGenerator:
        """Read a generator written by ``save``; ``tokenizer`` is the index's."""
        directory = Path(directory)
        meta_path = directory / GENERATOR_FILE
        if not meta_path.is_file():
            raise ValueError(f"{directory} is not a query generator: it has no {GENERATOR_FILE}.")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") != GENERATOR_VERSION:
            raise ValueError(
                f"{meta_path} has version {meta.get('version')}, this library reads version "
                f"{GENERATOR_VERSION}."
            )
        try:
            config = _generator_config(meta["config"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{meta_path} holds an invalid generator config ({exc}).") from exc
        model = open_model(directory, use_safetensors=True)
        if model.config.vocab_size != len(tokenizer):
            raise ValueError(
                f"The query generator in {directory} has a vocabulary of "
                f"{model.config.vocab_size} tokens but the tokenizer has {len(tokenizer)}."
            )
        return cls(model, tokenizer, config, meta.get("stats"))


def training_examples(
    tokenizer: Any,
    texts: Sequence[str],
    pairs: Sequence[tuple[int, str]],
    config: GeneratorConfig,
) -> ExampleSet:
    """Supervised (document -> query) and unsupervised (document - sentence -> sentence) pairs."""
    eos = tokenizer.eos_token_id
    src_cut = config.train.max_source_length - 1
    tgt_cut = config.max_query_length - 1
    rng = random.Random(config.train.seed)
    sources: list[str] = []
    targets: list[str] = []
    tasks: list[str] = []
    for position, query in pairs:
        for _ in range(config.query_repeats):
            sources.append(texts[position])
            targets.append(query)
            tasks.append("query")
    for text in texts:
        sentences = split_sentences(text)
        if not sentences:
            continue
        picks = rng.sample(
            range(len(sentences)), min(config.sentence_pairs_per_doc, len(sentences))
        )
        for j in picks:
            # With one sentence there is no context left: the model learns to copy it instead.
            rest = sentences[:j] + sentences[j + 1 :] if len(sentences) > 1 else sentences
            sources.append(" ".join(rest))
            targets.append(sentences[j])
            tasks.append("sentence")
    encode = tokenizer(sources + targets, add_special_tokens=False)["input_ids"]
    src_ids, tgt_ids = encode[: len(sources)], encode[len(sources) :]
    out = ExampleSet([], [], [])
    for s, t, task in zip(src_ids, tgt_ids, tasks, strict=True):
        if not t:
            continue
        out.sources.append(list(s[:src_cut]) + [eos])
        out.targets.append(list(t[:tgt_cut]) + [eos])
        out.tasks.append(task)
    return out


def _windows(text: str, count: int, exclude: set[str], seed: int) -> list[str]:
    """Up to ``count`` distinct word windows of ``text`` (8 words, or all if shorter)."""
    words = text.split()
    size = min(8, len(words))
    rng = random.Random(seed)
    starts = list(range(max(1, len(words) - size + 1)))
    rng.shuffle(starts)
    out: list[str] = []
    for width in (size, max(1, size // 2)):
        for s in starts:
            window = " ".join(words[s : s + width])
            if len(out) < count and window and window not in exclude and window not in out:
                out.append(window)
    return out


def _generator_config(data: dict[str, Any]) -> GeneratorConfig:
    data = dict(data)
    data["model_config"] = ModelShape(**data["model_config"])
    data["train"] = TrainConfig(**data["train"])
    return GeneratorConfig(**data)
