"""The model card of an index directory: ``README.md``, written with every save.

It says in words and tables what the manifest and settings hold (corpus, counts, settings,
training of the build and of every addition, evaluation figures where recorded), with the
front matter the Hugging Face hub reads, so that an index pushed to the hub explains itself.
The card is one of the index's files: the manifest lists and checks it like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dsi
from docid.io import atomic_write_text
from dsi.model import is_hub_name

CARD_FILE = "README.md"
# Lineage entries may carry evaluation figures under this key (see record_evaluation).
EVALUATION_KEY = "evaluation"
# The settings the card shows in its table; the settings file holds all of them.
SHOWN_TRAIN_SETTINGS = (
    "learning_rate",
    "batch_size",
    "max_minutes",
    "max_steps",
    "max_epochs",
    "seed",
    "mixed_precision",
    "grad_accumulation_steps",
)


def record_evaluation(
    index: Any, metrics: Mapping[str, float], queries: int, source: str = ""
) -> None:
    """Keep evaluation figures with the index's latest lineage entry, so that the card written
    by the next save shows them (``metrics``: name -> value, over ``queries`` queries of
    ``source``, e.g. "scifact test")."""
    if not index.lineage:
        raise ValueError("The index has no lineage entry to attach evaluation figures to.")
    figures = {name: float(value) for name, value in metrics.items()}
    index.lineage[-1][EVALUATION_KEY] = {"source": source, "queries": queries, "metrics": figures}


def write_card(index: Any, directory: Path) -> None:
    """Write the card of ``index`` (either kind) as ``directory / README.md``."""
    atomic_write_text(Path(directory) / CARD_FILE, card_text(index))


def card_text(index: Any) -> str:
    """The card of ``index``: markdown with the hub's YAML front matter."""
    config = index.config
    lineage = [entry for entry in index.lineage if isinstance(entry, Mapping)]
    parameters = sum(p.numel() for p in index.model.parameters())
    documents = len(index.corpus.doc_ids)
    source = _cell(getattr(index.corpus, "source", "") or "a corpus given in Python")
    model = config.model or "a T5 built from model_config and trained from scratch"
    lines = ["---", "library_name: dsi", "tags:"]
    lines += ["- dsi", "- generative-retrieval", "- information-retrieval"]
    if config.model and is_hub_name(config.model) and not Path(config.model).exists():
        lines.append(f"base_model: {config.model}")
    lines += ["---", "", f"# dsi index of {source}", ""]
    lines += [
        f"A generative retrieval index written by dsi {dsi.__version__}: a "
        f"{_count(parameters)}-parameter sequence-to-sequence model ({_cell(model)}) that "
        f"generates {config.docids} identifiers of {documents:,} documents.",
        "",
        "## Use",
        "",
        "```python",
        "from dsi.retriever import Retriever",
        "",
        'retriever = Retriever.load("THIS_DIRECTORY_OR_HUB_REPO_ID")',
        'hits = retriever.search(["your query"], k=10)[0]',
        "```",
        "",
        'or `dsi search --index THIS_DIRECTORY_OR_HUB_REPO_ID "your query"`.',
        "",
        "## Corpus",
        "",
        "| | |",
        "|---|---|",
        f"| documents | {documents:,} |",
        f"| training queries (query, document) pairs | {len(index.training_pairs):,} |",
        f"| corpus of the build | {source} |",
        f"| additions since | {sum(1 for e in lineage if e.get('event') == 'add')} |",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        f"| identifiers (docids) | {config.docids} |",
        f"| model | {_cell(model)} |",
        f"| parameters | {parameters:,} |",
        f"| beams | {config.num_beams} |",
    ]
    train = config.train
    for name in SHOWN_TRAIN_SETTINGS:
        if hasattr(train, name):
            lines.append(f"| train.{name} | {getattr(train, name)} |")
    lines += ["", "All settings are in the settings file next to this card.", ""]
    lines += _training_table(lineage)
    lines += _evaluation_table(lineage)
    lines += [
        "## Files",
        "",
        "`manifest.json` lists every file of the index, this card included, with its sha256; "
        "loading checks them and refuses a file it does not list.",
        "",
    ]
    return "\n".join(lines)


def _training_table(lineage: list[Mapping[str, Any]]) -> list[str]:
    lines = ["## Training", ""]
    runs = [e for e in lineage if isinstance(e.get("training"), Mapping)]
    if not runs:
        return [*lines, "No training is recorded.", ""]
    lines += [
        "| event | corpus | documents | steps | seconds | examples/s | final loss | stopped by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in runs:
        stats = entry["training"]
        loss = stats.get("final_loss")
        lines.append(
            f"| {entry.get('event', '')} | {_cell(entry.get('corpus') or '')} "
            f"| {entry.get('documents', '')} | {stats.get('steps', '')} "
            f"| {stats.get('seconds', '')} | {stats.get('examples_per_second', '')} "
            f"| {'' if loss is None else f'{loss:.4f}'} | {stats.get('stopped_by', '')} |"
        )
    return [*lines, ""]


def _evaluation_table(lineage: list[Mapping[str, Any]]) -> list[str]:
    recorded = [e for e in lineage if isinstance(e.get(EVALUATION_KEY), Mapping)]
    if not recorded:
        return []
    lines = ["## Evaluation", "", "| after | queries | metric | value |", "|---|---|---|---|"]
    for entry in recorded:
        figures = entry[EVALUATION_KEY]
        after = entry.get("event", "")
        if figures.get("source"):
            after = f"{after}, on {_cell(figures['source'])}"
        for name, value in figures.get("metrics", {}).items():
            lines.append(f"| {after} | {figures.get('queries', '')} | {name} | {value:.4f} |")
    return [*lines, ""]


def _count(parameters: int) -> str:
    """1.9M, or the exact count under a tenth of a million (a test's tiny model)."""
    return f"{parameters / 1e6:.1f}M" if parameters >= 100_000 else f"{parameters:,}"


def _cell(text: str) -> str:
    """``text`` as one markdown table cell: no line breaks, no column separators."""
    return " ".join(str(text).split()).replace("|", "\\|")
