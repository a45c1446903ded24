"""Where the generative retriever wins and loses against BM25: documents with training queries or not.

    python -m experiments.seen_documents        # after experiments/quality.py (SciFact, default)

Splits SciFact's dev and test queries by whether one of their relevant documents is also the
relevant document of a training query (the model has learnt queries for it), and evaluates the
trained ``default`` configuration of ``experiments/quality.py`` (its work directory, no more
training) and BM25 on each part. Nothing is tuned here: it breaks down the same rankings that
``quality.py`` evaluates. Writes ``<results>/seen_documents.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging

from docid.io import atomic_write_text
from dsi.bm25 import BM25Retriever
from dsi.metrics import evaluate_run
from experiments import quality

log = logging.getLogger("seen_documents")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="default", choices=list(quality.CONFIGS))
    args = quality.parse_reader_arguments(parser, argv)
    data = quality.load_dataset("scifact", args.seed)
    found = quality.finished_run(data, args.config, args)
    if found is None:
        parser.error(
            f"{quality.run_dir(data, args.config, args)} holds no finished run of {args.config} with "
            "its trained model: run experiments/quality.py first."
        )
    searches = {
        args.config: quality.generative_search(found[0]),
        "bm25": BM25Retriever().index(data["corpus"]).search,
    }
    taught = {doc for judged in data["train"].values() for doc in judged}
    rows = []
    for split in ("dev", "test"):
        qids = sorted(data[split])
        runs = {}
        for name, search in searches.items():
            runs[name] = quality.ranked_run(search, data["queries"], qids)
        seen = [q for q in qids if set(data[split][q]) & taught]
        parts = {"with training queries": seen, "without": sorted(set(qids) - set(seen))}
        for part, members in parts.items():
            qrels = {q: data[split][q] for q in members}
            row = {"split": split, "documents": part, "queries": len(members)}
            for name, run in runs.items():
                row[name] = evaluate_run({q: run[q] for q in members}, qrels)
            rows.append(row)
            log.info(
                "%s, %s (%d): %s nDCG@10 %.3f, bm25 %.3f",
                *(split, part, len(members), args.config),
                *(row[args.config]["nDCG@10"], row["bm25"]["nDCG@10"]),
            )
    args.results.mkdir(parents=True, exist_ok=True)
    payload = {"dataset": "scifact", "config": args.config, "seed": args.seed, "rows": rows}
    atomic_write_text(args.results / "seen_documents.json", json.dumps(payload, indent=2) + "\n")
    lines = [
        "# SciFact: queries whose relevant document has training queries, and the others",
        "",
        f"`{args.config}` of experiments/quality.py (seed {args.seed}) against BM25; "
        "`python -m experiments.seen_documents`",
        "",
        "| split | relevant document | queries | model nDCG@10 | BM25 nDCG@10 | model Hits@10 "
        "| BM25 Hits@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        model, bm25 = row[args.config], row["bm25"]
        lines.append(
            f"| {row['split']} | {row['documents']} | {row['queries']} | {model['nDCG@10']:.3f} "
            f"| {bm25['nDCG@10']:.3f} | {model['Hits@10']:.3f} | {bm25['Hits@10']:.3f} |"
        )
    atomic_write_text(args.results / "seen_documents.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
