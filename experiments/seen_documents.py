"""Where the generative retriever wins and loses against the baselines: queries whose relevant
document has training queries ("seen") and the others ("unseen").

    python -m experiments.seen_documents --eval dev runs/ngram_scifact.dev.json \\
        --eval test runs/ngram_scifact.test.json --label "ngram, seed 13"

Tabulates the ``seen`` and ``unseen`` blocks that ``dsi eval`` writes for an index with training
queries, for dsi and every baseline in the eval JSON, one pair of rows per evaluated split (each
``--eval SPLIT FILE`` is one ``dsi eval`` output). Nothing is searched or tuned here: the
rankings are ``dsi eval``'s. Writes ``<results>/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from docid.io import atomic_write_text
from experiments.fusion import ROOT

PARTS = {"seen": "with training queries", "unseen": "without"}
METRICS = ("nDCG@10", "Hits@10")


def retrievers(evaluation: dict[str, Any]) -> list[str]:
    """``dsi`` and the baselines of one eval JSON, in its order."""
    return [
        name
        for name, block in evaluation.items()
        if isinstance(block, dict) and "nDCG@10" in block and name != "compare"
    ]


def rows_of(split: str, evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """The seen and unseen rows of one evaluated split: query counts and every retriever's
    metrics (an error naming the file's lack when it has no seen/unseen parts)."""
    names = retrievers(evaluation)
    if "seen" not in evaluation.get("dsi", {}):
        raise SystemExit(
            f"The {split} evaluation has no seen/unseen parts: its index has no training queries."
        )
    rows = []
    for part, documents in PARTS.items():
        block = evaluation["dsi"][part]
        row: dict[str, Any] = {
            "split": split,
            "documents": documents,
            "queries": block["num_queries"],
        }
        for name in names:
            row[name] = {m: evaluation[name][part][m] for m in METRICS}
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    """The markdown table: one column per retriever and metric."""
    header = ["split", "relevant document", "queries"]
    header += [f"{name} {metric}" for metric in METRICS for name in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["split"], row["documents"], str(row["queries"])]
        cells += [f"{row[name][metric]:.3f}" for metric in METRICS for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--eval",
        nargs=2,
        action="append",
        required=True,
        metavar=("SPLIT", "FILE"),
        help="a split's name (dev, test) and its `dsi eval` JSON; repeat",
    )
    parser.add_argument("--label", default="dsi", help="what the dsi rows are (the index)")
    parser.add_argument("--name", default="seen_documents")
    parser.add_argument("--results", type=Path, default=ROOT / "experiments" / "results")
    args = parser.parse_args(argv)
    evaluations = {split: json.loads(Path(file).read_text()) for split, file in args.eval}
    rows = [row for split, ev in evaluations.items() for row in rows_of(split, ev)]
    names = retrievers(next(iter(evaluations.values())))
    payload = {
        "label": args.label,
        "evaluations": {split: file for split, file in args.eval},
        "index": {split: ev.get("model") for split, ev in evaluations.items()},
        "rows": rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results / f"{args.name}.json", json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Queries whose relevant document has training queries, and the others",
        "",
        f"`dsi` is {args.label}; the rankings are `dsi eval`'s ("
        + ", ".join(f"{split}: `{file}`" for split, file in args.eval)
        + "); `python -m experiments.seen_documents`",
        "",
        *table(rows, names),
    ]
    atomic_write_text(args.results / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
