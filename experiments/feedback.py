"""Generative pseudo-relevance feedback: dev nDCG@10 by how many documents the model reads, how
many of its words are kept and how much they weigh.

    python -m experiments.feedback --results experiments/results/levers   # after quality.py

It decides a setting: ``--rule experiments/rules/<name>.md`` names the committed rule it decides by
(its commit goes into the result; without it the result says ``rule: null``).

For each finished copying run of ``experiments/quality.py`` whose model is kept (no more
training), the dev queries are decoded once and ranked without feedback and with each setting of
``GRID`` (``SealOptions.feedback_docs``, ``feedback_words``, ``feedback_weight``), through
``NgramRetriever.rank_generations`` as ``search`` ranks. Models trained without queries chose their
setting by the mean of two dev numbers: Cranfield (the mean of its two seeds) and SciFact without
its queries; indexes with training queries take it only if it raises SciFact's dev (the mean of
its two seeds). For context, BM25 with the same kind of feedback on Cranfield (its best documents'
own words, by their share of each document, instead of the model's) on dev and test.
Writes ``<results>/feedback.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
from collections import Counter

from docid.io import atomic_write_text
from docid.words import WordIndex, analyze
from dsi.bm25 import BM25Retriever
from dsi.feedback import add_feedback
from dsi.metrics import evaluate_run
from dsi.ngram_retriever import NgramRetriever
from dsi.seal import SealOptions
from experiments import quality, word_weight

log = logging.getLogger("feedback")
OFF = "off"
GRID = [
    {"feedback_docs": docs, "feedback_words": words, "feedback_weight": weight}
    for docs, words, weight in itertools.product((3, 5, 10), (10, 20, 40), (0.25, 0.5, 1.0, 2.0))
]
WITH_QUERIES = ("scifact/default", "scifact/seed14")


def label(setting: dict[str, float]) -> str:
    return (
        f"F{setting['feedback_docs']} T{setting['feedback_words']} mu{setting['feedback_weight']}"
    )


def dev_by_setting(data: dict, name: str, args) -> dict[str, float] | None:
    """Dev nDCG@10 of run ``name`` without feedback and with each setting of ``GRID``; None when
    its model is gone."""
    # The feedback settings are this script's to set.
    finished = quality.finished_run(data, name, args, decoding_may_differ=True)
    if finished is None:
        return None
    index, _ = finished
    retriever = NgramRetriever(index, device="cpu")
    base = retriever.options
    qids = sorted(data["dev"])
    generated = retriever.generate([data["queries"][q] for q in qids])
    out = {}
    # The documents' generated words are cached in the retriever: each is read once.
    for key, setting in [(OFF, {"feedback_docs": 0}), *((label(s), s) for s in GRID)]:
        retriever.options = dataclasses.replace(base, **setting)
        ranked = retriever.rank_generations(generated, 100)
        run = {q: [(h.doc_id, h.score) for h in hits] for q, hits in zip(qids, ranked, strict=True)}
        out[key] = evaluate_run(run, data["dev"])["nDCG@10"]
    return out


def bm25_with_feedback(data: dict, qrels: dict, setting: dict[str, float]) -> dict[str, float]:
    """nDCG@10 of BM25 on ``qrels``, alone and with lexical feedback: ``dsi.feedback.add_feedback``
    with the ``feedback_docs`` best documents' own words (each by its share of the document's
    words) instead of the model's."""
    corpus = data["corpus"]
    options = dataclasses.replace(SealOptions(), **setting)
    bm25 = BM25Retriever().index(corpus)
    words = WordIndex.build(corpus.full_texts())
    doc_words = analyze(corpus.full_texts())
    qids = sorted(qrels)
    rankings = bm25.search([data["queries"][q] for q in qids], k=len(corpus.doc_ids))
    position = corpus.positions()
    alone, fed = {}, {}
    for qid, ranked in zip(qids, rankings, strict=True):
        alone[qid] = ranked[:100]
        shares = []
        for doc_id, _ in ranked[: options.feedback_docs]:
            own = doc_words[position[doc_id]]
            shares.append({word: count / len(own) for word, count in Counter(own).items()})
        first = [(position[d], s) for d, s in ranked]
        best = add_feedback(options, first, shares, words, 100)
        fed[qid] = [(corpus.doc_ids[d], s) for d, s in best]
    return {
        "bm25": evaluate_run(alone, qrels)["nDCG@10"],
        "bm25 + feedback": evaluate_run(fed, qrels)["nDCG@10"],
    }


def choose(rows: dict[str, dict[str, float]]) -> dict | None:
    """The rule's choice: without queries, the setting with the best mean of Cranfield (its two
    seeds averaged) and SciFact without queries; with queries, that setting only if it raises
    SciFact's dev (two seeds averaged) over no feedback."""
    if not all(r in rows for r in word_weight.WITHOUT_QUERIES + WITH_QUERIES):
        return None
    keys = rows[word_weight.WITHOUT_QUERIES[0]]
    means = {key: word_weight.without_queries_mean(rows, key) for key in keys}
    chosen = max(means, key=means.get)
    with_queries = {key: sum(rows[r][key] for r in WITH_QUERIES) / 2 for key in (OFF, chosen)}
    return {
        "without_queries_means": means,
        "without_queries": chosen,
        "with_queries_means": with_queries,
        "with_queries": chosen if with_queries[chosen] > with_queries[OFF] else OFF,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = quality.parse_reader_arguments(parser, argv, decides=True)
    rows = {}
    for dataset, name in word_weight.RUNS:
        data = quality.load_dataset(dataset, args.seed)
        found = dev_by_setting(data, name, args)
        if found is not None:
            rows[f"{dataset}/{name}"] = found
            best = max(found, key=found.get)
            log.info("%s/%s: off %.4f, best %s %.4f", dataset, name, found[OFF], best, found[best])
    choice = choose(rows)
    context = None
    if choice and choice["without_queries"] != OFF:
        setting = next(s for s in GRID if label(s) == choice["without_queries"])
        data = quality.load_dataset("cranfield", args.seed)
        context = {
            split: bm25_with_feedback(data, data[split], setting) for split in ("dev", "test")
        }
    args.results.mkdir(parents=True, exist_ok=True)
    payload = {
        "rule": args.rule_record,
        "grid": GRID,
        "dev_nDCG@10": rows,
        "choice": choice,
        "cranfield_bm25": context,
    }
    atomic_write_text(args.results / "feedback.json", json.dumps(payload, indent=2) + "\n")
    keys = [OFF] + [label(s) for s in GRID]
    lines = [
        "# Dev nDCG@10 by feedback setting (`python -m experiments.feedback`)",
        "",
        "F: documents read, T: words kept, mu: their weight against the first ranking's best.",
        "",
        "| setting | "
        + " | ".join(rows)
        + (" | without queries: rule's mean |" if choice else " |"),
        "|---|" + "---|" * (len(rows) + bool(choice)),
    ]
    for key in keys:
        cells = [f"{rows[r][key]:.4f}" for r in rows]
        if choice:
            cells.append(f"{choice['without_queries_means'][key]:.4f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if choice:
        lines += [
            "",
            f"Chosen without queries: {choice['without_queries']}. With queries (SciFact dev, "
            f"two seeds averaged: off {choice['with_queries_means'][OFF]:.4f}, "
            f"{choice['without_queries']} "
            f"{choice['with_queries_means'][choice['without_queries']]:.4f}): "
            f"{choice['with_queries']}.",
        ]
    if context:
        lines += [
            "",
            f"Context, Cranfield: BM25 alone and with the same kind of feedback "
            f"({choice['without_queries']}, its best documents' own words):",
            "",
            "| split | BM25 | BM25 + feedback |",
            "|---|---|---|",
        ]
        for split, found in context.items():
            lines.append(f"| {split} | {found['bm25']:.4f} | {found['bm25 + feedback']:.4f} |")
    atomic_write_text(args.results / "feedback.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
