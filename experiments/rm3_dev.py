"""Choose the ``bm25+rm3`` baseline's feedback settings on dev (rule: experiments/rules/rm3_dev.md).

Every candidate of the rule's grid is scored on two dev sets (Cranfield's 45 held-out queries and
SciFact's 809 training queries, its documents alone); the best mean dev nDCG@10 wins unless the
reference setting is within the rule's margin. Test scores of the reference and the winner are
measured once, after the decision, and decide nothing::

    python -m experiments.rm3_dev --rule experiments/rules/rm3_dev.md

writes ``experiments/results/rm3_dev.json`` and ``rm3_dev.md`` (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from docid.io import atomic_write_text
from dsi.baselines import REFERENCE_RM3, RM3Baseline, RM3Settings
from dsi.metrics import evaluate_run
from experiments.provenance import add_rule_argument, checked_rule, git_state
from experiments.quality import load_dataset

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
DATASETS = ("cranfield", "scifact_unsupervised")
SEED = 13
GRID = {
    "feedback_docs": (3, 5, 10, 20),
    "feedback_terms": (5, 10, 20, 40),
    "original_weight": (0.3, 0.5, 0.7, 0.9),
}
REFERENCE = REFERENCE_RM3
# The rule keeps the reference unless the best beats it by more than this (mean dev nDCG@10).
MARGIN = 0.002


def score(
    baseline: RM3Baseline, settings: RM3Settings, queries: dict[str, str], qrels: dict
) -> dict[str, float]:
    """Metrics of ``baseline`` with ``settings`` on the judged queries ``qrels``."""
    baseline.settings = settings
    qids = sorted(qrels)
    ranked = baseline.search([queries[q] for q in qids], 100)
    run = {q: dict(row) for q, row in zip(qids, ranked, strict=True)}
    return evaluate_run(run, qrels)


def name_of(settings: RM3Settings) -> str:
    return (
        f"docs={settings.feedback_docs} terms={settings.feedback_terms} "
        f"w={settings.original_weight}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_rule_argument(parser)
    parser.add_argument("--output", type=Path, default=RESULTS / "rm3_dev.json")
    args = parser.parse_args(argv)
    rule = checked_rule(parser, args.rule)
    started = time.monotonic()
    data = {name: load_dataset(name, SEED) for name in DATASETS}
    baselines = {name: RM3Baseline(d["corpus"]) for name, d in data.items()}
    candidates = [RM3Settings(*values) for values in itertools.product(*GRID.values())]
    dev: list[dict[str, Any]] = []
    for settings in candidates:
        per_set = {
            name: score(baselines[name], settings, d["queries"], d["dev"])["nDCG@10"]
            for name, d in data.items()
        }
        mean = sum(per_set.values()) / len(per_set)
        dev.append({"settings": asdict(settings), "dev_nDCG@10": per_set, "mean": mean})
        print(f"{name_of(settings):32s} " + " ".join(f"{v:.4f}" for v in per_set.values()))
    best = max(dev, key=lambda row: row["mean"])
    reference = next(row for row in dev if row["settings"] == asdict(REFERENCE))
    keeps_reference = best["mean"] - reference["mean"] <= MARGIN
    chosen = REFERENCE if keeps_reference else RM3Settings(**best["settings"])
    # Test, once, after the decision: both settings, and Cranfield over all 225 queries for the
    # reference script's figure.
    test: dict[str, Any] = {}
    for label, settings in (("reference", REFERENCE), ("chosen", chosen)):
        test[label] = {
            name: score(baselines[name], settings, d["queries"], d["test"])
            for name, d in data.items()
        }
        cranfield = data["cranfield"]
        every = {**cranfield["dev"], **cranfield["test"]}
        test[label]["cranfield_all_225"] = score(
            baselines["cranfield"], settings, cranfield["queries"], every
        )
    result = {
        "rule": rule,
        "git": git_state(ROOT),
        "seed": SEED,
        "grid": {k: list(v) for k, v in GRID.items()},
        "margin": MARGIN,
        "dev_queries": {name: len(d["dev"]) for name, d in data.items()},
        "test_queries": {name: len(d["test"]) for name, d in data.items()},
        "dev": dev,
        "best": best,
        "reference": reference,
        "chosen": asdict(chosen),
        "keeps_reference": keeps_reference,
        "test": test,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.output.with_suffix(".md"), markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    """The decision and the test scores as a short markdown page."""
    lines = [
        "# bm25+rm3's feedback settings, chosen on dev (`python -m experiments.rm3_dev`)",
        "",
        f"Rule: `{(result['rule'] or {}).get('file')}` at "
        f"{(result['rule'] or {}).get('commit', '')[:7]}; code at "
        f"{(result['git']['commit'] or '')[:7]}. Dev queries: {result['dev_queries']}.",
        "",
        "Top 10 candidates by mean dev nDCG@10 (the reference marked *):",
        "",
        "| docs | terms | weight | " + " | ".join(DATASETS) + " | mean |",
        "|---|---|---|" + "---|" * len(DATASETS) + "---|",
    ]
    ranked = sorted(result["dev"], key=lambda row: -row["mean"])
    shown = ranked[:10]
    if result["reference"] not in shown:
        shown.append(result["reference"])
    for row in shown:
        s = row["settings"]
        mark = "*" if row["settings"] == result["reference"]["settings"] else ""
        values = " | ".join(f"{row['dev_nDCG@10'][n]:.4f}" for n in DATASETS)
        lines.append(
            f"| {s['feedback_docs']}{mark} | {s['feedback_terms']} | {s['original_weight']} | "
            f"{values} | {row['mean']:.4f} |"
        )
    chosen = result["chosen"]
    lines += [
        "",
        f"Decision: {'the reference stays' if result['keeps_reference'] else 'the best wins'}"
        f" ({chosen['feedback_docs']} documents, {chosen['feedback_terms']} terms, weight "
        f"{chosen['original_weight']}).",
        "",
        "Test nDCG@10, measured once after the decision (decides nothing):",
        "",
        "| settings | cranfield test | scifact test (documents alone) | cranfield, all 225 |",
        "|---|---|---|---|",
    ]
    for label, scores in result["test"].items():
        lines.append(
            f"| {label} | {scores['cranfield']['nDCG@10']:.4f} | "
            f"{scores['scifact_unsupervised']['nDCG@10']:.4f} | "
            f"{scores['cranfield_all_225']['nDCG@10']:.4f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
