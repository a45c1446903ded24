"""The word index of documents expanded with their training queries, scored on dev (issue 29;
rule: experiments/rules/word_expansion.md).

    python -m experiments.word_expansion --rule experiments/rules/word_expansion.md \\
        --dev runs/fusion/scifact ../shared/data/scifact/queries.jsonl runs/data/scifact_dev.dev.tsv \\
        --output experiments/results/word_expansion_dev_scifact

The n-gram kinds score generated words with BM25 over each document's words. ``bm25+queries``
scores documents with the text of the training queries that judge them appended
(``dsi.data.expanded_corpus``). This script searches a trained fused index again with its
word index built from those expanded texts, at several ``word_weight`` (the model, the n-gram
index and the docids untouched), and reports dev nDCG@10 of the fused and the lexical-alone
rankings; the rule decides. Writes ``OUT.json`` and ``OUT.md``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from dsi.fusion import fuse
from dsi.metrics import mean_metrics
from dsi.seal import word_index
from experiments.fusion import DevSet, dev_command, provenance, scores_of, write_decision

K = 10
# (expand, word_weight): today's scoring first (rules/word_expansion.md).
CANDIDATES = ((False, 0.75), (True, 0.75), (True, 1.5), (True, 3.0))
LEVEL = 0.002
MARGIN = 0.01


def candidates(dev: DevSet, grid: Sequence[tuple[bool, float]]) -> list[dict[str, Any]]:
    """Dev metrics of the fused and the lexical-alone ranking for each (expand, word_weight)."""
    retriever = dev.retriever
    index = retriever.index
    saved, original = index.word_index, retriever.options
    language = index.config.language
    plain = word_index(index.corpus, index.training_pairs, False, language)
    started = time.monotonic()
    expanded = word_index(index.corpus, index.training_pairs, True, language)
    build_seconds = time.monotonic() - started
    # As the rule ran them (before the preset held them): the query's words not scored.
    options = dataclasses.replace(retriever.options, query_weight=0.0)
    rows = []
    for expand, weight in grid:
        index.word_index = expanded if expand else plain
        retriever.options = dataclasses.replace(options, word_weight=weight)
        _, parts = retriever.fusion_parts(list(dev.queries.values()), K, 32, None, None)
        fused = [fuse(lex, reached, options.fusion_weight, K) for lex, reached in parts]
        alone = [fuse(lex, reached, 0.0, K) for lex, reached in parts]
        rows.append(
            {
                "expand": expand,
                "word_weight": weight,
                "fused": mean_metrics(scores_of(dev, fused)),
                "lexical": mean_metrics(scores_of(dev, alone)),
            }
        )
    index.word_index, retriever.options = saved, original
    for row in rows:
        row["fused nDCG@10"] = row["fused"]["nDCG@10"]
        row["lexical nDCG@10"] = row["lexical"]["nDCG@10"]
        row["fused Hits@10"] = row["fused"]["Hits@10"]
    rows[0]["expanded_word_index_seconds"] = round(build_seconds, 2)
    return rows


def decide(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """rules/word_expansion.md: the best expanded candidate if it beats today's (the first row,
    unexpanded) by ``MARGIN``; of expanded ones within ``LEVEL`` of each other, the one whose
    word_weight is nearest today's."""
    today = rows[0]
    expanded = [r for r in rows if r["expand"]]
    best = max(r["fused nDCG@10"] for r in expanded)
    level = [r for r in expanded if r["fused nDCG@10"] >= best - LEVEL - 1e-12]
    chosen = min(level, key=lambda r: abs(r["word_weight"] - today["word_weight"]))
    if best >= today["fused nDCG@10"] + MARGIN - 1e-12:
        return {"expand": True, "word_weight": chosen["word_weight"]}
    return {"expand": False, "word_weight": today["word_weight"]}


def main(argv: Sequence[str] | None = None) -> None:
    args, rule, dev = dev_command(__doc__.split("\n\n")[0], argv)
    started = time.monotonic()
    rows = candidates(dev, CANDIDATES)
    result = {
        **provenance(args, rule, dev),
        "fusion_weight": dev.retriever.options.fusion_weight,
        "plan_weight": dev.retriever.options.plan_weight,
        "rows": rows,
        "decision": decide(rows),
        "seconds": round(time.monotonic() - started, 1),
    }
    columns = ["expand", "word_weight", "fused nDCG@10", "fused Hits@10", "lexical nDCG@10"]
    heading = (
        f"Word index expanded with training queries: {dev.name} dev ({len(dev.queries)} "
        f"queries), fusion weight {result['fusion_weight']:g}, plan weight "
        f"{result['plan_weight']:g}"
    )
    write_decision(args.output, heading, rows, columns, result)


if __name__ == "__main__":
    main()
