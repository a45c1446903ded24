"""How much the words of the generated n-grams should weigh, with and without training queries.

    python -m experiments.word_weight   # after experiments/quality.py (its finished runs)

For each finished copying run of ``experiments/quality.py`` whose model is kept (no more
training), the dev queries are decoded once and documents ranked by the BM25 over the n-grams
plus ``w`` times the BM25 over their words (``SealOptions.rank``), for each ``w`` of
``WEIGHTS`` (0: the n-grams alone), and by the words alone. Models trained without queries (Cranfield, SciFact learning from its documents
alone) chose the ``word_weight`` of ``dsi.seal.NGRAM_PRESETS["without_queries"]`` by the mean of
two dev numbers: Cranfield (the mean of its two seeds) and SciFact without its queries; the runs
with training queries show why their preset keeps 0.75. Writes ``<results>/word_weight.{json,md}``;
``--rule experiments/rules/<name>.md`` names the committed rule it decides by (its commit goes
into the result; without it the result says ``rule: null``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

import numpy as np

from docid.io import atomic_write_text
from docid.ngram import best_first
from dsi.metrics import evaluate_run
from dsi.ngram_retriever import NgramRetriever
from dsi.scoring import score_documents
from experiments import quality

log = logging.getLogger("word_weight")
WEIGHTS = (0.0, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
# The weights the rule chose among (0.75 was word_weight for every model before).
CHOICES = WEIGHTS[1:]
WORDS_ALONE = "words alone"
# (dataset, quality.CONFIGS name): the copying default at training seeds 13 and 14.
RUNS = (
    ("cranfield", "default"),
    ("cranfield", "seed14"),
    ("scifact_unsupervised", "default"),
    ("scifact", "default"),
    ("scifact", "seed14"),
)

# The runs of models trained without queries whose dev a rule averages: Cranfield's two seeds,
# then SciFact learning from its documents alone.
WITHOUT_QUERIES = ("cranfield/default", "cranfield/seed14", "scifact_unsupervised/default")


def without_queries_mean(rows: dict[str, dict], key) -> float:
    """The rule's dev number for ``key``: the mean of Cranfield (its two seeds averaged) and
    SciFact without queries."""
    cranfield, seed14, unsupervised = (rows[run][key] for run in WITHOUT_QUERIES)
    return ((cranfield + seed14) / 2 + unsupervised) / 2


def dev_by_weight(data: dict, name: str, args) -> dict[float | str, float] | None:
    """Dev nDCG@10 of run ``name`` for each word weight and for the words alone; None when its
    model is gone."""
    finished = quality.finished_run(data, name, args, decoding_may_differ=True)
    if finished is None:
        return None
    index, _ = finished
    retriever = NgramRetriever(index, device="cpu")
    qids = sorted(data["dev"])
    generated = retriever.generate([data["queries"][q] for q in qids])
    words = retriever.query_words(generated)
    doc_ids = index.corpus.doc_ids
    out = {}
    for weight in WEIGHTS:
        options = dataclasses.replace(retriever.options, word_weight=weight)
        run = {}
        for qid, generation, query_words in zip(qids, generated, words, strict=True):
            ngrams = generation.beams + generation.unigrams
            ranked = score_documents(options, ngrams, index.ngrams, 100, query_words, index.words)
            run[qid] = [(doc_ids[doc], score) for doc, score in ranked]
        out[weight] = evaluate_run(run, data["dev"])["nDCG@10"]
    run = {}
    for qid, query_words in zip(qids, words, strict=True):
        scores = index.words.bm25(query_words, retriever.options.k1, retriever.options.b)
        ranked = best_first([(int(d), float(scores[d])) for d in np.flatnonzero(scores)], 100)
        run[qid] = [(doc_ids[doc], score) for doc, score in ranked]
    out[WORDS_ALONE] = evaluate_run(run, data["dev"])["nDCG@10"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = quality.parse_reader_arguments(parser, argv, decides=True)
    rows = {}
    for dataset, name in RUNS:
        data = quality.load_dataset(dataset, args.seed)
        found = dev_by_weight(data, name, args)
        if found is not None:
            rows[f"{dataset}/{name}"] = found
            log.info("%s/%s: %s", dataset, name, {w: round(v, 4) for w, v in found.items()})
    choice = None
    if all(r in rows for r in WITHOUT_QUERIES):
        means = {w: without_queries_mean(rows, w) for w in CHOICES}
        choice = {"means": means, "chosen": max(means, key=means.get)}
    args.results.mkdir(parents=True, exist_ok=True)
    payload = {
        "rule": args.rule_record,
        "weights": WEIGHTS,
        "dev_nDCG@10": rows,
        "without_queries": choice,
    }
    atomic_write_text(args.results / "word_weight.json", json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Dev nDCG@10 by the weight of the n-grams' words (`python -m experiments.word_weight`)",
        "",
        "| run | " + " | ".join(f"w = {w}" for w in WEIGHTS) + f" | {WORDS_ALONE} |",
        "|---|" + "---|" * (len(WEIGHTS) + 1),
    ]
    for run, found in rows.items():
        cells = [found[w] for w in (*WEIGHTS, WORDS_ALONE)]
        lines.append(f"| {run} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    if choice:
        lines.append(
            "| without queries: mean of Cranfield's two seeds and scifact_unsupervised | - | "
            + " | ".join(f"{choice['means'][w]:.4f}" for w in CHOICES)
            + " | - |"
        )
        lines += ["", f"Chosen for models trained without queries: w = {choice['chosen']}."]
    atomic_write_text(args.results / "word_weight.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
