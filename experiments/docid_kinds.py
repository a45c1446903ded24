"""Learning curves of the docid-decoding kinds: memorization and dev nDCG@10 while they train.

    python -m experiments.docid_kinds                   # every kind, SciFact and Cranfield, 60 min
    python -m experiments.docid_kinds --datasets scifact --kinds atomic title --minutes 20
    python -m experiments.docid_kinds --datasets cranfield --kinds atomic keywords \\
        --set model_config.size=tiny --max-steps 40 --eval-every 0.1 --memorization-sample 50 \\
        --work runs/docid_kinds_smoke --results runs/docid_kinds_smoke   # a smoke run
    python -m experiments.docid_kinds --replot experiments/results/docid_kinds_cranfield.json

Each kind (``--kinds``: semantic, atomic, naive, title, keywords) is built as ``dsi index
--docids KIND`` builds it, every other setting at its default (``--set KEY=VALUE`` changes one
for every kind; ``--embedder`` the semantic kind's), on the data and dev split of
``experiments/quality.py`` (SciFact: the corpus and 659 training queries, 150 dev queries held
out, seed 13; Cranfield: the documents alone, a fixed fifth of the queries as dev). Every
``--eval-every`` minutes of training (evaluation time does not count against the budget), and
once more at the end, a point of its curve records:

- dev nDCG@10, Hits@10, MRR@10 and Recall@10, searched 10 deep (the model's docid
  log-probabilities alone rank the documents; a docid search is at least k beams wide, so
  searching 100 deep would cost ten times the beams at every point);
- ``memorization@1`` / ``@10`` on a fixed sample of ``--memorization-sample`` documents (seed 0,
  ``dsi.evaluation.memorization``), and for title and keyword docids
  ``memorization_without_docid_words@1`` / ``@10`` (the same, from the text with the docid's
  words removed).

Test queries are never read: what decides between kinds is a rule over dev
(experiments/rules/docid_screen.md). Results: ``<results>/docid_kinds_<dataset>.json`` (every
curve), ``.md`` (the last point of each kind beside bm25 and bm25+queries, or bm25+rm3 without
training queries, on dev) and ``.png`` (dev nDCG@10 and memorization@1 against training
minutes). Finished runs are kept in ``--work`` and only reported when the command runs again
with the same settings, so the same command regenerates the tables and plots; a killed run
resumes from its last checkpoint with the points it had measured. ``--replot`` draws the plot of
saved results again without their work directories.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from docid import available_schemes
from docid.io import atomic_open, atomic_write_text
from dsi.baselines import build_baseline
from dsi.config import IndexConfig, parse_assignments
from dsi.evaluation import MASKED_MEMORIZATION_KEYS, memorization
from dsi.metrics import evaluate_run
from dsi.retriever import Retriever
from experiments.provenance import config_fingerprint
from experiments.quality import (
    ROOT,
    SHARED,
    add_point,
    code_state,
    data_digest,
    generative_search,
    load_dataset,
    measured_curve,
    provenance,
    stale_data,
    trained_index,
    training_queries,
)

log = logging.getLogger("docid_kinds")
KINDS = ("semantic", "atomic", "naive", "title", "keywords")
DEV_METRICS = ("nDCG@10", "Hits@10", "MRR@10", "Recall@10")
DEFAULT_MINUTES = 60.0
CURVE_KEYS = ("nDCG@10", "Hits@10", "memorization@1", "memorization@10")
MASKED_KEYS = MASKED_MEMORIZATION_KEYS


def budget_minutes(args) -> float | None:
    """The training minutes of each kind: ``--minutes``; without it 60, or no time limit when
    ``--max-steps`` is given (as ``dsi index --max-steps`` has none: steps decide)."""
    if args.minutes is not None:
        return args.minutes
    return None if args.max_steps is not None else DEFAULT_MINUTES


def kind_config(kind: str, args) -> IndexConfig:
    """``dsi index --docids KIND``'s settings with this run's budget, seed and ``--set``."""
    settings: dict[str, Any] = {
        "docids": kind,
        "train.max_minutes": budget_minutes(args),
        "train.seed": args.seed,
    }
    if args.max_steps is not None:
        settings["train.max_steps"] = args.max_steps
    if kind == "semantic" and args.embedder:
        settings["docid_options.embedder"] = args.embedder
    settings.update(parse_assignments(args.set))
    return IndexConfig().updated(settings)


def dev_metrics(search, data: dict[str, Any]) -> dict[str, float]:
    """The @10 metrics of ``search(texts, k)`` on the dev queries, searched 10 deep (a docid
    search's beams are at least k wide: 100 deep would cost ten times the beams)."""
    qids = sorted(data["dev"])
    started = time.monotonic()
    ranked = search([data["queries"][q] for q in qids], 10)
    seconds = time.monotonic() - started
    metrics = evaluate_run(dict(zip(qids, ranked, strict=True)), data["dev"])
    found = {key: metrics[key] for key in DEV_METRICS}
    found["ms_per_query"] = round(1000 * seconds / len(qids), 1)
    return found


def measure(index: Any, data: dict[str, Any], args) -> dict[str, Any]:
    """One point of a curve: dev metrics and memorization on the fixed sample."""
    point = dev_metrics(generative_search(index), data)
    found = memorization(Retriever.for_index(index, device="cpu"), sample=args.memorization_sample)
    point.update(found)
    return point


def run_kind(data: dict[str, Any], kind: str, args) -> dict[str, Any]:
    """Train ``kind`` with its curve measured on the way (or keep its finished run)."""
    config = kind_config(kind, args)
    work = args.work / data["name"] / kind
    fingerprint = {
        "config": config_fingerprint(config),
        "eval_every": args.eval_every,
        "memorization_sample": args.memorization_sample,
    }
    digest = data_digest(data)
    done = work / "result.json"
    if done.exists():
        saved = json.loads(done.read_text(encoding="utf-8"))
        stale = stale_data(saved, digest)
        if stale is None and saved.get("fingerprint") == fingerprint:
            log.info("%s/%s: already done, kept.", data["name"], kind)
            return saved
        log.warning("%s/%s: %s; training it again.", data["name"], kind, stale or "changed")
    curve = measured_curve(work / "curve.json", fingerprint, digest)

    def monitor(index: Any, seconds: float) -> None:
        point = {"minutes": round(seconds / 60, 2), **measure(index, data, args)}
        add_point(curve, point)
        record = {"fingerprint": fingerprint, "data_digest": digest, "points": curve}
        atomic_write_text(work / "curve.json", json.dumps(record, indent=2) + "\n")
        log.info("%s/%s at %.1f min: %s", data["name"], kind, seconds / 60, _brief(point))

    started = time.monotonic()
    try:
        index = trained_index(
            data, config, work / "build", args, monitor=monitor, monitor_minutes=args.eval_every
        )
    except ValueError as exc:  # e.g. title docids of a corpus without titles
        log.warning("%s/%s: refused: %s", data["name"], kind, exc)
        return {"name": kind, "refused": str(exc)}
    built = index.lineage[0]
    stats = built["training"]
    final = {"minutes": round(stats["seconds"] / 60, 2), **measure(index, data, args)}
    add_point(curve, final)
    log.info("%s/%s at the end: %s", data["name"], kind, _brief(final))
    result = {
        "name": kind,
        "settings": config.to_dict(),
        "fingerprint": fingerprint,
        "provenance": provenance(stats["steps"], built["data_digest"]),
        "training": stats,
        "build_seconds": round(time.monotonic() - started, 1),
        "curve": curve,
        "dev": final,
    }
    atomic_write_text(done, json.dumps(result, indent=2) + "\n")
    return result


def baselines(data: dict[str, Any]) -> list[dict[str, Any]]:
    """bm25 and, with training queries, bm25+queries (else bm25+rm3) on dev."""
    queries = training_queries(data)
    pairs = [] if queries is None else queries.pairs(set(data["corpus"].doc_ids))
    rows = []
    for name in ("bm25", "bm25+queries" if pairs else "bm25+rm3"):
        baseline = build_baseline(name, data["corpus"], pairs)
        rows.append({"name": name, "dev": dev_metrics(baseline.search, data)})
    return rows


def _brief(point: dict[str, Any]) -> str:
    keys = [k for k in (*CURVE_KEYS, *MASKED_KEYS) if k in point]
    return " ".join(f"{k} {point[k]:.3f}" for k in keys)


def _cell(point: dict[str, Any], key: str) -> str:
    return f"{point[key]:.3f}" if key in point else "–"


def table(data: dict[str, Any], rows: list[dict[str, Any]], args) -> list[str]:
    """The report's markdown: the last point of each kind, the baselines, then each curve."""
    lines = [
        f"# Docid kinds on {data['name']}: dev ({len(data['dev'])} queries), "
        f"{len(data['corpus'].doc_ids)} documents",
        "",
        "Each kind trained from scratch for at most "
        + " / ".join(
            part
            for part in (
                f"{budget_minutes(args):g} minutes" if budget_minutes(args) is not None else "",
                f"{args.max_steps} steps" if args.max_steps is not None else "",
            )
            if part
        )
        + f", seed {args.seed}; memorization on {args.memorization_sample} documents (seed 0). "
        "Rankings are the docids' log-probabilities alone. `masked`: memorization from the "
        "text with the docid's words removed (title and keyword docids).",
        "",
        "| retriever | dev nDCG@10 | dev Hits@10 | memorization@1 | memorization@10 | "
        "masked @1 | masked @10 | steps | train min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "refused" in row:
            lines.append(f"| {row['name']} | refused: {row['refused']} |||||||")
            continue
        dev = row["dev"]
        training = row.get("training")
        cells = [_cell(dev, k) for k in (*CURVE_KEYS, *MASKED_KEYS)]
        steps = str(training["steps"]) if training else "–"
        minutes = f"{training['seconds'] / 60:.1f}" if training else "–"
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {steps} | {minutes} |")
    for row in rows:
        if "curve" not in row:
            continue
        lines += [
            "",
            f"{row['name']}, every {args.eval_every:g} minutes of training:",
            "",
            "| minutes | dev nDCG@10 | memorization@1 | memorization@10 | masked @1 |",
            "|---|---|---|---|---|",
        ]
        for p in row["curve"]:
            keys = ("nDCG@10", "memorization@1", "memorization@10", MASKED_KEYS[0])
            lines.append(f"| {p['minutes']} | " + " | ".join(_cell(p, k) for k in keys) + " |")
    return lines + [""]


def write_report(data: dict[str, Any], rows: list[dict[str, Any]], args) -> None:
    name = data["name"]
    args.results.mkdir(parents=True, exist_ok=True)
    payload = {
        "dataset": name,
        "command": "python -m experiments.docid_kinds " + " ".join(sys.argv[1:]),
        "provenance": code_state(),
        "minutes": budget_minutes(args),
        "max_steps": args.max_steps,
        "seed": args.seed,
        "memorization_sample": args.memorization_sample,
        "results": rows,
    }
    stem = args.results / f"docid_kinds_{name}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(payload, indent=2) + "\n")
    atomic_write_text(stem.with_suffix(".md"), "\n".join(table(data, rows, args)))
    plot(name, rows, stem.with_suffix(".png"))


def plot(name: str, rows: list[dict[str, Any]], path: Path) -> None:
    """Dev nDCG@10 (baselines as lines) and memorization@1 (dashed: masked) against minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    baseline_styles = iter([":", "-.", "--", (0, (1, 4))])
    for row in rows:
        if "curve" in row:
            xs = [p["minutes"] for p in row["curve"]]
            line = left.plot(xs, [p["nDCG@10"] for p in row["curve"]], marker="o")
            color = line[0].get_color()
            line[0].set_label(row["name"])
            right.plot(
                xs, [p["memorization@1"] for p in row["curve"]], marker="o", color=color,
                label=row["name"],
            )  # fmt: skip
            if MASKED_KEYS[0] in row["curve"][-1]:
                right.plot(
                    xs, [p.get(MASKED_KEYS[0]) for p in row["curve"]], marker="x",
                    linestyle="--", color=color, label=f"{row['name']}, docid words removed",
                )  # fmt: skip
        elif "dev" in row and "training" not in row:
            # In the legend: a label written at x=0 fell left of the first point, outside the axes.
            left.axhline(
                row["dev"]["nDCG@10"], linestyle=next(baseline_styles, ":"), color="black",
                alpha=0.6, label=row["name"],
            )  # fmt: skip
    left.set_title(f"{name}: dev nDCG@10")
    right.set_title(f"{name}: memorization@1")
    for ax in (left, right):
        ax.set_xlabel("training minutes")
        ax.grid(alpha=0.3)
    left.set_ylim(bottom=0)
    # A share of all documents: on its whole scale, so that 0.006 does not look like a climb.
    right.set_ylim(0, 1.02)
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "cranfield"])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=available_schemes())
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training budget per kind (default 60; none with --max-steps, which then decides)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="step budget per kind")
    parser.add_argument("--eval-every", type=float, default=10.0, help="minutes between points")
    parser.add_argument("--memorization-sample", type=int, default=500)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--embedder", default=None, help="the semantic kind's (default: its own)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a setting of every kind"
    )
    parser.add_argument("--data", type=Path, default=SHARED, help="folder of the datasets")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "docid_kinds")
    parser.add_argument("--results", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--quiet", action="store_true", help="no training progress bars")
    parser.add_argument(
        "--replot", type=Path, nargs="+", metavar="JSON",
        help="only draw again the plot of these saved results (the .png beside each), no runs",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.replot:
        for path in args.replot:
            payload = json.loads(path.read_text())
            plot(payload["dataset"], payload["results"], path.with_suffix(".png"))
        return
    if not args.data.exists():
        parser.error(f"{args.data} is missing: the datasets live in ../shared/data.")
    code_state()  # the commit of the code that runs, read before any training
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for dataset in args.datasets:
        data = load_dataset(dataset, args.seed, root=args.data)
        rows = baselines(data)
        for kind in args.kinds:
            rows.append(run_kind(data, kind, args))
            write_report(data, rows, args)
        write_report(data, rows, args)


if __name__ == "__main__":
    main()
