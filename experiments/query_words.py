"""The query's own words in the n-gram kinds' lexical score, scored on dev (issue 29; rule:
experiments/rules/query_words.md).

    python -m experiments.query_words --rule experiments/rules/query_words.md \\
        --dev runs/fusion/scifact ../shared/data/scifact/queries.jsonl runs/data/scifact_dev.dev.tsv \\
        --output experiments/results/query_words_dev_scifact

A trained fused index is searched again with its word index expanded by the training queries
(rules/word_expansion.md) and its lexical ranking plus ``query_weight`` times the BM25 of the
query's own analysed words over that index, for each weight of the rule; dev nDCG@10 of the
fused and the lexical-alone rankings, and of the query's words alone. Writes ``OUT.json``/``.md``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from docid.words import analyze
from dsi.fusion import fuse
from dsi.metrics import mean_metrics
from dsi.ngram_retriever import Generation, NgramRetriever, Ranking
from dsi.scoring import Ranking as Scores
from dsi.seal import word_index
from experiments.fusion import DevSet, dev_command, provenance, scores_of, write_decision

K = 10
QUERY_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
WORD_WEIGHT = 0.75  # rules/word_expansion.md
LEVEL = 0.002
MARGIN = 0.01


def with_query_words(
    retriever: NgramRetriever, weight: float
) -> Callable[[list[str], list[Generation]], list[Ranking]]:
    """The lexical ranking of what the model generated plus ``weight`` times the BM25 of the
    query's own words over the word index (``weight`` None: the query's words alone)."""
    index, options = retriever.index, retriever.options

    def rank(queries: list[str], generated: list[Generation]) -> list[Ranking]:
        own = analyze(list(queries), language=index.config.language)
        model = retriever.lexical_rankings(generated) if weight is not None else [[]] * len(own)
        out = []
        for words, ranking in zip(own, model, strict=True):
            scores = index.words.bm25(words, options.k1, options.b) * (
                1.0 if weight is None else weight
            )
            ranked = scores != 0
            if ranking:
                docs = np.fromiter((d for d, _ in ranking), dtype=np.int64, count=len(ranking))
                scores[docs] += np.fromiter((s for _, s in ranking), dtype=np.float64)
                ranked[docs] = True
            out.append(Scores(scores, ranked).top(None))
        return out

    return rank


def candidates(dev: DevSet, weights: Sequence[float]) -> list[dict[str, Any]]:
    """Dev metrics per query weight (fused, lexical alone), then the query's words alone."""
    retriever = dev.retriever
    index = retriever.index
    saved, options = index.word_index, retriever.options
    index.word_index = word_index(index.corpus, index.training_pairs, True, index.config.language)
    # The query's words are added here, at each weight: not also by the scoring stage.
    retriever.options = dataclasses.replace(options, word_weight=WORD_WEIGHT, query_weight=0.0)
    queries = list(dev.queries.values())
    rows = []
    try:
        for weight in (*weights, None):
            lexical = with_query_words(retriever, weight)
            _, parts = retriever.fusion_parts(queries, K, 32, None, None, lexical)
            fused = [fuse(lex, reached, options.fusion_weight, K) for lex, reached in parts]
            alone = [fuse(lex, reached, 0.0, K) for lex, reached in parts]
            fused_m, alone_m = (
                mean_metrics(scores_of(dev, fused)),
                mean_metrics(scores_of(dev, alone)),
            )
            rows.append(
                {
                    "query_weight": "query words alone" if weight is None else weight,
                    "fused nDCG@10": fused_m["nDCG@10"],
                    "fused Hits@10": fused_m["Hits@10"],
                    "lexical nDCG@10": alone_m["nDCG@10"],
                    "lexical Hits@10": alone_m["Hits@10"],
                    "fused": fused_m,
                    "lexical": alone_m,
                }
            )
    finally:
        index.word_index, retriever.options = saved, options
    return rows


def decide(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """rules/query_words.md: the best weight above 0 if it beats weight 0 by ``MARGIN``; of
    those within ``LEVEL`` of the best, the smallest."""
    weighted = [r for r in rows if isinstance(r["query_weight"], float)]
    today = next(r for r in weighted if r["query_weight"] == 0)
    above = [r for r in weighted if r["query_weight"] > 0]
    best = max(r["fused nDCG@10"] for r in above)
    level = [r for r in above if r["fused nDCG@10"] >= best - LEVEL - 1e-12]
    chosen = min(level, key=lambda r: r["query_weight"])
    if best >= today["fused nDCG@10"] + MARGIN - 1e-12:
        return {"query_weight": chosen["query_weight"]}
    return {"query_weight": 0.0}


def main(argv: Sequence[str] | None = None) -> None:
    args, rule, dev = dev_command(__doc__.split("\n\n")[0], argv)
    started = time.monotonic()
    rows = candidates(dev, QUERY_WEIGHTS)
    options = dev.retriever.options
    result = {
        **provenance(args, rule, dev),
        "fusion_weight": options.fusion_weight,
        "plan_weight": options.plan_weight,
        "word_weight": WORD_WEIGHT,
        "rows": rows,
        "decision": decide(rows),
        "seconds": round(time.monotonic() - started, 1),
    }
    columns = [
        "query_weight",
        "fused nDCG@10",
        "fused Hits@10",
        "lexical nDCG@10",
        "lexical Hits@10",
    ]
    heading = (
        f"The query's own words in the lexical score: {dev.name} dev ({len(dev.queries)} "
        f"queries), expanded word index at word weight {WORD_WEIGHT:g}, fusion weight "
        f"{options.fusion_weight:g}, plan weight {options.plan_weight:g}"
    )
    write_decision(args.output, heading, rows, columns, result)


if __name__ == "__main__":
    main()
