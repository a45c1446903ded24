"""How sure are the differences between retrievers: paired bootstrap over the queries.

    python -m experiments.paired        # after experiments/quality.py (its finished runs)

The dev and test splits are small (SciFact 150 / 300 queries, Cranfield 45 / 180), so a
difference of a point of nDCG@10 may be the draw of the queries, or of the training seed. For
each finished run of ``experiments/quality.py`` (its work directory, no more training; runs
whose configuration changed since, or whose model is gone, are left out) this ranks the dev and
test queries again (and checks that the scores are quality.py's), then compares the per-query
nDCG@10 and Hits@10 of two retrievers on the same queries: the mean difference, its 95% interval
over bootstrap resamples of the queries, and the share of resamples in which the first
retriever does not beat the second. ``SEED_GROUPS`` average a configuration's
runs at several training seeds per query, so that a configuration is compared, not one draw of
it. Writes ``<results>/paired.{json,md}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
from typing import Any

import numpy as np

from docid.io import atomic_write_text
from dsi.bm25 import BM25Retriever
from dsi.metrics import paired_difference, per_query
from experiments import quality

log = logging.getLogger("paired")
METRICS = ("nDCG@10", "Hits@10")
# A configuration -> its runs at training seeds 13, 14, ... (quality.CONFIGS names).
# (no_copy and wide_slow, with their seed-14 runs, were groups too until their levers retired:
# quality.RETIRED; experiments/results/levers/paired.md holds their comparisons.)
SEED_GROUPS: dict[str, tuple[str, ...]] = {
    "default": ("default", "seed14"),
}


def per_query_scores(data: dict[str, Any], args) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """split -> retriever -> metric -> per-query scores (queries in sorted order)."""
    scores: dict[str, dict[str, dict[str, np.ndarray]]] = {"dev": {}, "test": {}}

    def measure(name: str, search, saved: dict[str, Any] | None = None) -> None:
        for split, measured in scores.items():
            qids = sorted(data[split])
            run = quality.ranked_run(search, data["queries"], qids)
            by_query = per_query(run, data[split])
            measured[name] = {
                m: np.array([by_query[q][m] for q in qids if q in by_query]) for m in METRICS
            }
            again = measured[name]["nDCG@10"].mean()
            if saved is not None and abs(again - saved[split]["nDCG@10"]) > 1e-9:
                log.warning(
                    "%s/%s %s: nDCG@10 %.4f ranked again, %.4f as quality.py measured it",
                    *(data["name"], name, split, again, saved[split]["nDCG@10"]),
                )

    measure("bm25", BM25Retriever().index(data["corpus"]).search)
    for name in quality.CONFIGS:
        if quality.CONFIGS[name][1].get("docids", "ngram") != "ngram":
            continue  # semantic and atomic docids: far below, nothing to compare
        found = quality.finished_run(data, name, args)
        if found is None:
            continue
        measure(name, quality.generative_search(found[0]), found[1])
        # One trained index at a time: each holds its corpus, n-gram index and training set.
        del found
        gc.collect()
        log.info("%s/%s: ranked.", data["name"], name)
    for measured in scores.values():
        for group, members in SEED_GROUPS.items():
            if all(m in measured for m in members):
                measured[_seeds(group, members)] = {
                    m: np.mean([measured[r][m] for r in members], axis=0) for m in METRICS
                }
    return scores


def _seeds(group: str, members: tuple[str, ...]) -> str:
    return f"{group} ({len(members)} seeds)"


def comparisons(runs: list[str], groups: list[str]) -> list[tuple[str, str]]:
    """(first, second) pairs: every run and seed group against BM25, every run against the
    default, every seed group against the default's."""
    pairs = [(n, "bm25") for n in runs + groups]
    if "default" in runs:
        pairs += [(n, "default") for n in runs if n != "default"]
    default_group = _seeds("default", SEED_GROUPS["default"])
    if default_group in groups:
        pairs += [(g, default_group) for g in groups if g != default_group]
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "cranfield"])
    parser.add_argument("--resamples", type=int, default=10000)
    args = quality.parse_reader_arguments(parser, argv)
    rows = []
    for dataset in args.datasets:
        data = quality.load_dataset(dataset, args.seed)
        scores = per_query_scores(data, args)
        for split, retrievers in scores.items():
            rng = np.random.default_rng(args.seed)
            groups = [_seeds(g, m) for g, m in SEED_GROUPS.items() if _seeds(g, m) in retrievers]
            runs = [n for n in retrievers if n != "bm25" and n not in groups]
            for first, second in comparisons(runs, groups):
                row = {"dataset": dataset, "split": split, "first": first, "second": second}
                for metric in METRICS:
                    a, b = retrievers[first][metric], retrievers[second][metric]
                    row[metric] = {
                        "first": float(a.mean()),
                        "second": float(b.mean()),
                        **paired_difference(a, b, args.resamples, rng),
                    }
                row["queries"] = len(retrievers[first]["nDCG@10"])
                rows.append(row)
    args.results.mkdir(parents=True, exist_ok=True)
    payload = {
        "seed": args.seed,
        "resamples": args.resamples,
        "seed_groups": SEED_GROUPS,
        "rows": rows,
    }
    atomic_write_text(args.results / "paired.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(args.results / "paired.md", report(rows, args))


def report(rows: list[dict[str, Any]], args) -> str:
    groups = ", ".join(f"{g} = {' + '.join(m)}" for g, m in SEED_GROUPS.items())
    lines = [
        "# Paired differences between retrievers, with 95% bootstrap intervals over the queries",
        "",
        f"`python -m experiments.paired` ({args.resamples} resamples, seed {args.seed}): the runs "
        "of experiments/quality.py, ranked again. *not above*: the share of resamples in which "
        "the first retriever does not beat the second. Seed groups average a configuration's "
        f"runs per query: {groups}.",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for split in ("test", "dev"):
            chosen = [r for r in rows if r["dataset"] == dataset and r["split"] == split]
            if not chosen:
                continue
            lines += [
                "",
                f"## {dataset}, {split} ({chosen[0]['queries']} queries)",
                "",
                "| first | second | nDCG@10 first | second | difference [95%] | not above "
                "| wins / losses | Hits@10 difference [95%] | not above |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for r in chosen:
                n, h = r["nDCG@10"], r["Hits@10"]
                lines.append(
                    f"| {r['first']} | {r['second']} | {n['first']:.3f} | {n['second']:.3f} "
                    f"| {n['difference']:+.3f} [{n['low']:+.3f}, {n['high']:+.3f}] "
                    f"| {n['not_above']:.2f} | {n['wins']} / {n['losses']} "
                    f"| {h['difference']:+.3f} [{h['low']:+.3f}, {h['high']:+.3f}] "
                    f"| {h['not_above']:.2f} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
