"""A generative index: tokenizer + T5 + docid map + trie, built from a corpus, saved as a directory.

Directory layout (format version 1)::

    manifest.json     format, versions, counts, docid offset, sha256 of every file, lineage
    config.json       IndexConfig, exactly as IndexConfig.from_dict reads it back
    model/            config + safetensors weights + tokenizer files
    docids.jsonl      doc id -> docid symbol indices (+ docid_vocab.json, scheme data)
    trie.marisa       prefix trie over docid token sequences, marisa's own format
    documents.jsonl   the indexed documents, so evaluation, replay and additions need no corpus path
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import dsi
from docid.base import DocidMap, fit_docids
from dsi.config import IndexConfig
from dsi.data import Corpus, load_corpus
from dsi.examples import ExampleSet, indexing_examples, retrieval_examples
from dsi.io import atomic_write_text, publish_dir, published, sha256_file, staging_dir
from dsi.model import build_model, load_model, load_tokenizer, num_parameters, train_tokenizer
from dsi.train import train
from trie.prefix import PrefixTrie

log = logging.getLogger(__name__)

FORMAT = "dsi-index"
FORMAT_VERSION = 1


class IndexLoadError(ValueError):
    """An index directory cannot be loaded; the message says what is wrong in one sentence."""


@dataclass
class TrainingQueries:
    """Training queries and their relevant documents, for the retrieval task."""

    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]

    def pairs(self, known_doc_ids: set[str]) -> list[tuple[str, str]]:
        """(query text, doc id) for every positive judgement whose query and document exist."""
        out = []
        for qid, judged in sorted(self.qrels.items()):
            if qid not in self.queries:
                continue
            for doc_id, grade in sorted(judged.items()):
                if grade > 0 and doc_id in known_doc_ids:
                    out.append((self.queries[qid], doc_id))
        return out


@dataclass
class GenerativeIndex:
    """Everything needed to answer queries by decoding docids."""

    config: IndexConfig
    tokenizer: Any
    model: torch.nn.Module
    docids: DocidMap
    trie: PrefixTrie
    docid_offset: int
    corpus: Corpus
    lineage: list[dict[str, Any]] = field(default_factory=list)

    # ----------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        corpus: Corpus,
        config: IndexConfig | None = None,
        training_queries: TrainingQueries | None = None,
        work_dir: Path | None = None,
        progress_bar: bool = True,
    ) -> GenerativeIndex:
        """Assign docids, train the model on the corpus (and queries), and build the trie.

        ``work_dir`` keeps the tokenizer, docids and training checkpoints; calling ``build`` again
        with the same corpus, config and work_dir resumes where an interrupted run stopped.
        """
        config = config or IndexConfig()
        if len(corpus.doc_ids) == 0:
            raise ValueError("The corpus is empty: there is nothing to index.")
        started = time.monotonic()
        fingerprint = _fingerprint(corpus, config, training_queries)
        if work_dir is not None:
            work_dir = Path(work_dir)
            _claim_work_dir(work_dir, fingerprint)
        texts = corpus.full_texts()

        docids = _cached_docids(work_dir, config, corpus, texts)
        tokenizer, model, offset = _make_model(config, texts, training_queries, docids, work_dir)
        eos = model.config.eos_token_id
        targets = [[offset + s for s in seq] + [eos] for seq in docids.sequences]

        doc_tokens = tokenizer(texts, add_special_tokens=False)["input_ids"]
        examples = indexing_examples(doc_tokens, targets, config.train, eos, seed=config.train.seed)
        if training_queries is not None:
            position = {d: i for i, d in enumerate(corpus.doc_ids)}
            pairs = training_queries.pairs(set(position))
            if pairs:
                query_tokens = tokenizer([q for q, _ in pairs], add_special_tokens=False)[
                    "input_ids"
                ]
                examples.extend(
                    retrieval_examples(
                        query_tokens,
                        [targets[position[d]] for _, d in pairs],
                        config.train,
                        eos,
                        config.train.query_repeats,
                    )
                )
        log.info(
            "Training a %.1fM-parameter T5 on %d examples (%d documents).",
            num_parameters(model) / 1e6,
            len(examples),
            len(corpus.doc_ids),
        )
        stats = train(
            model,
            examples,
            config.train,
            checkpoint_dir=None if work_dir is None else work_dir / "checkpoint",
            pad_id=model.config.pad_token_id,
            progress_bar=progress_bar,
        )
        model = model.cpu().eval()
        trie = PrefixTrie.from_sequences(targets)
        lineage = [
            {
                "event": "build",
                "corpus": corpus.source,
                "documents": len(corpus.doc_ids),
                "training_queries": 0 if training_queries is None else len(training_queries.qrels),
                "examples": _count_tasks(examples),
                "training": asdict(stats),
                "seconds": round(time.monotonic() - started, 1),
                "at": _now(),
            }
        ]
        return cls(config, tokenizer, model, docids, trie, offset, corpus, lineage)

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the index to ``directory``; an existing index there is replaced only when complete."""
        directory = Path(directory)
        stage = staging_dir(directory)
        try:
            self.config.save(stage / "config.json")
            self.model.save_pretrained(stage / "model", safe_serialization=True)
            self.tokenizer.save_pretrained(stage / "model")
            self.docids.save(stage)
            self.trie.save(stage / "trie.marisa")
            save_documents(self.corpus, stage / "documents.jsonl")
            files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "library_version": dsi.__version__,
                "created": _now(),
                "num_docs": len(self.docids),
                "docid_scheme": self.docids.scheme,
                "docid_offset": self.docid_offset,
                "vocab_size": int(self.model.config.vocab_size),
                "parameters": num_parameters(self.model),
                "versions": _versions(),
                "lineage": self.lineage,
                "checksums": {name: sha256_file(stage / name) for name in files},
            }
            atomic_write_text(stage / "manifest.json", json.dumps(manifest, indent=2) + "\n")
            publish_dir(stage, directory)
        except BaseException:
            import shutil

            shutil.rmtree(stage, ignore_errors=True)
            raise
        return directory

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> GenerativeIndex:
        """Load an index directory, checking its format version, files and checksums."""
        directory = _resolve_index_dir(Path(directory))
        manifest = read_manifest(directory)
        if verify:
            for name, expected in manifest["checksums"].items():
                path = directory / name
                if not path.is_file():
                    raise IndexLoadError(f"Index {directory} is missing its file {name}.")
                if sha256_file(path) != expected:
                    raise IndexLoadError(
                        f"Index {directory} is corrupted: {name} does not match its checksum."
                    )
        try:
            config = IndexConfig.load(directory / "config.json")
            tokenizer = load_tokenizer(directory / "model")
            from transformers import T5ForConditionalGeneration

            model = T5ForConditionalGeneration.from_pretrained(
                str(directory / "model"), use_safetensors=True
            ).eval()
            docids = DocidMap.load(directory)
            trie = PrefixTrie.load(directory / "trie.marisa")
            corpus = load_corpus(directory / "documents.jsonl")
        except IndexLoadError:
            raise
        except Exception as exc:  # one sentence naming the index, whatever broke underneath
            raise IndexLoadError(f"Index {directory} cannot be loaded: {exc}") from exc
        offset = int(manifest["docid_offset"])
        if len(docids) != manifest["num_docs"] or len(trie) != len(docids):
            raise IndexLoadError(
                f"Index {directory} is inconsistent: manifest says {manifest['num_docs']} documents, "
                f"docids hold {len(docids)} and the trie {len(trie)}."
            )
        if offset + len(docids.symbols) > model.config.vocab_size:
            raise IndexLoadError(
                f"Index {directory} is inconsistent: {len(docids.symbols)} docid symbols from "
                f"token {offset} do not fit the model's vocabulary of {model.config.vocab_size}."
            )
        return cls(config, tokenizer, model, docids, trie, offset, corpus, manifest["lineage"])


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and validate ``manifest.json``: format name, version and required keys."""
    path = Path(directory) / "manifest.json"
    if not Path(directory).is_dir():
        raise IndexLoadError(f"There is no index directory at {directory}.")
    if not path.is_file():
        raise IndexLoadError(f"{directory} is not a dsi index: it has no manifest.json.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexLoadError(f"Index manifest {path} is not valid JSON ({exc}).") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexLoadError(f"{path} is not a dsi index manifest.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexLoadError(
            f"Index {directory} has format version {version}, but dsi {dsi.__version__} reads "
            f"format version {FORMAT_VERSION}; rebuild the index with this version."
        )
    missing = {"num_docs", "docid_offset", "checksums", "lineage"} - set(manifest)
    if missing:
        raise IndexLoadError(f"Index manifest {path} lacks the keys {sorted(missing)}.")
    return manifest


def _resolve_index_dir(directory: Path) -> Path:
    """The directory, or the previous index if a crash interrupted replacing it."""
    found = published(directory)
    if found != directory:
        log.warning(
            "Index %s was being replaced when a process died; loading the previous one.", directory
        )
    return found


# ----------------------------------------------------------------------- helpers
def save_documents(corpus: Corpus, path: Path) -> None:
    """Write ``corpus`` as BEIR-style JSONL that ``load_corpus`` reads back unchanged."""
    lines = (
        json.dumps({"_id": d, "title": t, "text": x}, ensure_ascii=False)
        for d, t, x in zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True)
    )
    atomic_write_text(path, "\n".join(lines) + "\n")


def _make_model(config, texts, training_queries, docids: DocidMap, work_dir: Path | None):
    """The tokenizer, the model and the first docid token id."""
    if config.model:
        tokenizer = load_tokenizer(config.model)
        model, offset = load_model(config.model, len(docids.symbols))
        return tokenizer, model, offset
    tok_dir = (work_dir or Path(tempfile.mkdtemp(prefix="dsi-tokenizer-"))) / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        tokenizer = load_tokenizer(tok_dir)
    else:
        extra = list(training_queries.queries.values()) if training_queries else []
        tokenizer = train_tokenizer(texts + extra, config.model_config.vocab_size, tok_dir / "spm")
        tokenizer.save_pretrained(tok_dir)
    offset = len(tokenizer)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model_config, offset, len(docids.symbols))
    return tokenizer, model, offset


def _cached_docids(
    work_dir: Path | None, config: IndexConfig, corpus: Corpus, texts: list[str]
) -> DocidMap:
    if work_dir is not None and (work_dir / "docids" / "docids.jsonl").exists():
        return DocidMap.load(work_dir / "docids")
    docids = fit_docids(config.docids, list(corpus.doc_ids), texts, **config.docid_options)
    if work_dir is not None:
        (work_dir / "docids").mkdir(parents=True, exist_ok=True)
        docids.save(work_dir / "docids")
    return docids


def _fingerprint(corpus: Corpus, config: IndexConfig, queries: TrainingQueries | None) -> str:
    settings = config.to_dict()
    # The budget may change between an interrupted run and its resumption.
    for key in ("max_minutes", "max_steps", "max_epochs", "checkpoint_minutes"):
        settings["train"].pop(key)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for doc_id, title, text in zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True):
        digest.update(f"{doc_id}\x00{title}\x00{text}\x01".encode())
    if queries is not None:
        digest.update(json.dumps([queries.queries, queries.qrels], sort_keys=True).encode())
    return digest.hexdigest()


def _claim_work_dir(work_dir: Path, fingerprint: str) -> None:
    """Reuse ``work_dir`` only for the same corpus and config; otherwise start it afresh."""
    import shutil

    stamp = work_dir / "fingerprint"
    if work_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
        log.warning(
            "Work directory %s belongs to another corpus or config; starting afresh.", work_dir
        )
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        atomic_write_text(stamp, fingerprint + "\n")


def _count_tasks(examples: ExampleSet) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in examples.tasks:
        counts[task] = counts.get(task, 0) + 1
    return counts


def _versions() -> dict[str, str]:
    import transformers

    return {
        "dsi": dsi.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
