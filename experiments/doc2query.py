"""Documents expanded with queries the index's own generator writes (doc2query), scored on dev
(issue 29; rule: experiments/rules/doc2query.md).

    python -m experiments.doc2query --rule experiments/rules/doc2query.md \\
        --dev runs/fusion/scifact ../shared/data/scifact/queries.jsonl runs/data/scifact_dev.dev.tsv \\
        --output experiments/results/doc2query_dev_scifact

Trains the query generator ``dsi index`` would train for the index (its tokenizer, documents and
training queries), writes ``max(COUNTS)`` queries per document, and for each count rebuilds the
word index with each document's training queries and its first ``n`` generated ones, then
scores the index's search and the query's own words alone on dev, with seen and unseen queries
apart. Writes ``OUT.json`` (with the generated queries of the first documents) and ``OUT.md``;
``--queries-out FILE`` writes every generated query too.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docid.io import atomic_write_text
from dsi.config import generator_config
from dsi.evaluation import seen_queries
from dsi.metrics import mean_metrics
from dsi.pseudo_queries import QueryGenerator
from dsi.seal import word_index
from experiments.fusion import DevSet, dev_command, provenance, scores_of, write_decision
from experiments.query_words import with_query_words
from experiments.search_dev import K

COUNTS = (0, 5, 10)
SAMPLE = 5  # documents whose generated queries the result JSON shows
MARGIN = 0.01
LEVEL = 0.002


def generated_queries(dev: DevSet, count: int, progress_bar: bool = False) -> list[list[str]]:
    """``count`` queries per document (corpus order) by the generator ``dsi index`` trains."""
    index = dev.retriever.index
    texts = index.corpus.full_texts()
    position = index.corpus.positions()
    pairs = [(position[doc], query) for query, doc in index.training_pairs if doc in position]
    config = generator_config(index.config.model_config.size)
    generator = QueryGenerator.fit(index.tokenizer, texts, pairs, config, progress_bar=progress_bar)
    return generator.generate(texts, count)


def parts(dev: DevSet, rankings: Sequence[Sequence[tuple[int, float]]]) -> dict[str, float]:
    """Dev nDCG@10 and Hits@10 over all queries, and nDCG@10 over the seen and unseen ones
    (None: no such query)."""
    per = scores_of(dev, rankings)
    seen = seen_queries(dev.qrels, dev.retriever.index.training_pairs)
    every = mean_metrics(per)
    out = {"nDCG@10": every["nDCG@10"], "Hits@10": every["Hits@10"]}
    for part, members in (
        ("seen", [q for q in per if q in seen]),
        ("unseen", [q for q in per if q not in seen]),
    ):
        out[f"{part} nDCG@10"] = mean_metrics({q: per[q] for q in members})["nDCG@10"]
    return out


def candidates(dev: DevSet, generated: list[list[str]], counts: Sequence[int]) -> list[dict]:
    """Per count: the index's search and the query's own words alone over the word index
    expanded with the training queries and that many generated queries per document."""
    retriever = dev.retriever
    index = retriever.index
    saved = index.word_index
    doc_ids = index.corpus.doc_ids
    queries = list(dev.queries.values())
    generation = retriever.generate(queries)  # what the model generates reads no word index
    rows = []
    try:
        for count in counts:
            extra = [(q, doc_ids[d]) for d, qs in enumerate(generated) for q in qs[:count]]
            pairs = list(index.training_pairs) + extra
            index.word_index = word_index(index.corpus, pairs, True, index.config.language)
            search = retriever.lexical_rankings(generation, 32, None, K)
            own = with_query_words(retriever, None)(queries, generation)
            rows.append(
                {
                    "generated per document": count,
                    **parts(dev, search),
                    **{f"own words {k}": v for k, v in parts(dev, own).items()},
                }
            )
    finally:
        index.word_index = saved
    return rows


def decide(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """rules/doc2query.md: the smallest count within ``LEVEL`` of the best if the best beats
    count 0 by ``MARGIN``; else 0."""
    today = next(r for r in rows if r["generated per document"] == 0)
    best = max(r["nDCG@10"] for r in rows)
    if best < today["nDCG@10"] + MARGIN - 1e-12:
        return {"generated per document": 0}
    level = [r for r in rows if r["nDCG@10"] >= best - LEVEL - 1e-12]
    return {"generated per document": min(r["generated per document"] for r in level)}


def _queries_out_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queries-out",
        type=Path,
        default=None,
        help="also write every generated query (JSONL; megabytes: keep it out of the results)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    args, rule, dev = dev_command(
        __doc__.split("\n\n")[0], argv, fused=False, extra=_queries_out_argument
    )
    if dev.retriever.options.fusion_weight:
        raise SystemExit("The rule scores the lexical ranking: this index's preset fuses docids.")
    started = time.monotonic()
    generated = generated_queries(dev, max(COUNTS))
    generation_seconds = time.monotonic() - started
    rows = candidates(dev, generated, COUNTS)
    result = {
        **provenance(args, rule, dev),
        "generation_seconds": round(generation_seconds, 1),
        "rows": rows,
        "decision": decide(rows),
        "seconds": round(time.monotonic() - started, 1),
    }
    doc_ids = dev.retriever.index.corpus.doc_ids
    result["sample"] = {d: qs for d, qs in zip(doc_ids[:SAMPLE], generated, strict=False)}
    if args.queries_out is not None:
        lines = [
            json.dumps({"doc_id": d, "queries": qs})
            for d, qs in zip(doc_ids, generated, strict=True)
        ]
        atomic_write_text(args.queries_out, "\n".join(lines) + "\n")
    columns = [
        "generated per document",
        "nDCG@10",
        "Hits@10",
        "seen nDCG@10",
        "unseen nDCG@10",
        "own words nDCG@10",
        "own words unseen nDCG@10",
    ]
    heading = (
        f"Documents expanded with generated queries: {dev.name} dev ({len(dev.queries)} queries), "
        f"the index's search and the query's own words alone, k={K}"
    )
    write_decision(args.output, heading, rows, columns, result)


if __name__ == "__main__":
    main()
