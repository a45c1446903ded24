"""The search settings of indexes with training queries, re-decided on dev (issue 27; rule:
experiments/rules/search_dev.md).

    python -m experiments.search_dev --rule experiments/rules/search_dev.md \\
        --dev runs/fusion/scifact ../shared/data/scifact/queries.jsonl runs/data/scifact_dev.dev.tsv \\
        --output experiments/results/search_dev_scifact

A trained n-gram index (``ngram`` or ``ngram+semantic``) is searched on its dev queries once per
candidate of each setting in ``SETTINGS``, in order: the settings before it at their decided
values, the ones after it at the index's own (today's). Each candidate's dev nDCG@10 and
Hits@10 at k=10 and the seconds its search took; the rule's choice per setting. Nothing is
trained and no test query is read. Writes ``OUT.json`` and ``OUT.md``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from dsi.metrics import mean_metrics, per_query
from experiments.fusion import DevSet, dev_command, provenance, write_decision

K = 10
MARGIN = 0.01  # a candidate must beat today's value by this much (rules/search_dev.md)
LEVEL = 0.002  # candidates this close to the best count as level: the cheapest of them wins
# Per setting, its candidates, cheapest first; each is a dict of the options it sets
# (``num_beams`` is search's argument, the rest are SealOptions fields).
SETTINGS: dict[str, list[dict[str, Any]]] = {
    "scoring": [
        {"scoring": "bm25"},
        {"scoring": "intersective", "alpha": 3.0},
        {"scoring": "intersective", "alpha": 2.0},
    ],
    "num_beams": [{"num_beams": 5}, {"num_beams": 10}, {"num_beams": 20}],
    "feedback_docs": [{"feedback_docs": 0}, {"feedback_docs": 5}],
}


def today(dev: DevSet, setting: str) -> dict[str, Any]:
    """The candidate of ``setting`` the index searches with as saved (ValueError if none)."""
    current = {**dataclasses.asdict(dev.retriever.options), "num_beams": dev.retriever.num_beams}
    for candidate in SETTINGS[setting]:
        if all(current[key] == value for key, value in candidate.items()):
            return candidate
    raise ValueError(f"The index's {setting} is none of the rule's candidates {SETTINGS[setting]}.")


def score(dev: DevSet, chosen: dict[str, Any]) -> dict[str, Any]:
    """Dev metrics of the index searched with the options in ``chosen`` (k=10, batches of 32)."""
    retriever = dev.retriever
    saved = retriever.options
    options = {key: value for key, value in chosen.items() if key != "num_beams"}
    retriever.options = dataclasses.replace(saved, **options)
    try:
        started = time.perf_counter()
        hits = retriever.search(
            list(dev.queries.values()), k=K, batch_size=32, num_beams=chosen.get("num_beams")
        )
        seconds = time.perf_counter() - started
    finally:
        retriever.options = saved
    run = {
        qid: {hit.doc_id: float(K - rank) for rank, hit in enumerate(row)}
        for qid, row in zip(dev.queries, hits, strict=True)
    }
    metrics = mean_metrics(per_query(run, dev.qrels))
    return {"nDCG@10": metrics["nDCG@10"], "Hits@10": metrics["Hits@10"], "seconds": seconds}


def decide(rows: Sequence[dict[str, Any]], kept: dict[str, Any]) -> dict[str, Any]:
    """rules/search_dev.md for one setting: ``kept`` (today's candidate) unless another beats it
    by ``MARGIN``; then the cheapest (earliest in ``rows``) of those within ``LEVEL`` of the
    best."""
    of_today = next(r for r in rows if r["candidate"] == kept)
    best = max(r["nDCG@10"] for r in rows)
    if best < of_today["nDCG@10"] + MARGIN - 1e-12:
        return kept
    return next(r["candidate"] for r in rows if r["nDCG@10"] >= best - LEVEL - 1e-12)


def candidates(dev: DevSet) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every setting's candidates scored in order, each with the decided values of the
    settings before it; the rows and the decided options."""
    decided: dict[str, Any] = {}
    for setting in SETTINGS:
        decided.update(today(dev, setting))
    rows = []
    for setting, options in SETTINGS.items():
        kept = today(dev, setting)
        scored = []
        for candidate in options:
            metrics = score(dev, {**decided, **candidate})
            scored.append(
                {"setting": setting, "candidate": candidate, "today": candidate == kept, **metrics}
            )
        chosen = decide(scored, kept)
        decided.update(chosen)
        rows += [{**row, "chosen": row["candidate"] == chosen} for row in scored]
    return rows, decided


def main(argv: Sequence[str] | None = None) -> None:
    args, rule, dev = dev_command(__doc__.split("\n\n")[0], argv, fused=False)
    started = time.monotonic()
    rows, decided = candidates(dev)
    options = dev.retriever.options
    result = {
        **provenance(args, rule, dev),
        "kind": dev.retriever.index.config.docids,
        "preset": {
            name: getattr(options, name)
            for name in (
                "word_weight",
                "fusion_weight",
                "plan_weight",
                "expand_words",
                "query_weight",
            )
        },
        "rows": rows,
        "decision": decided,
        "seconds": round(time.monotonic() - started, 1),
    }
    for row in rows:
        row["values"] = ", ".join(f"{k} {v}" for k, v in row["candidate"].items())
    heading = (
        f"With-queries search settings on {dev.name} dev ({len(dev.queries)} queries, "
        f"{result['kind']}, k={K}); each setting scored with the ones above at their decided values"
    )
    columns = ["setting", "values", "today", "nDCG@10", "Hits@10", "seconds", "chosen"]
    write_decision(args.output, heading, rows, columns, result)


if __name__ == "__main__":
    main()
