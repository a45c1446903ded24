"""The lever screen of ``experiments/rules/docid_levers.md``: its table and its decision.

    python -m experiments.docid_levers --runs runs/levers
    python -m experiments.docid_levers --rule docid_levers_examples ...   # the second rule's levers

reads ``<runs>/<lever>.eval.json`` (``dsi eval ... --memorization --baselines bm25,bm25+queries``
on SciFact dev, one per lever of the rule's ``RULES`` entry) and the screen's semantic run (the
baseline), and writes ``experiments/results/<rule>.{json,md}``: dev nDCG@10, Hits@10 and
memorization of each beside the baseline, which levers the rule adopts, and the one that becomes
the second finalist configuration (or none). Both rules decide the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from experiments.provenance import git_state

ROOT = Path(__file__).resolve().parents[1]
# rule (experiments/rules/<rule>.md) -> its levers: name -> the one change from the baseline
RULES = {
    "docid_levers": {
        "pseudo3": "--set pseudo_queries=3",
        "k32": "--set docid_options.k=32",
        "c20": "--set docid_options.c=20",
    },
    "docid_levers_examples": {
        "views16": "--set train.max_windows_per_doc=16",
        "views2": "--set train.max_windows_per_doc=2",
        "repeats4": "--set train.query_repeats=4",
        "repeats1": "--set train.query_repeats=1",
    },
}
GAIN = 0.02  # the rule: adopted at least this far above the baseline's dev nDCG@10
MEMORY_LOSS = 0.05  # ... with memorization@1 at most this far below the baseline's
TIE = 0.005  # of the adopted, within this of the best: the cheaper build wins


def decide(
    baseline: dict[str, Any], levers: dict[str, dict[str, Any]]
) -> tuple[list[str], str | None]:
    """The adopted levers (in ``levers``' order) and the one that goes on, or None. Each row
    holds ``nDCG@10``, ``memorization@1`` and ``build_seconds``."""
    adopted = [
        name
        for name, row in levers.items()
        if row["nDCG@10"] >= baseline["nDCG@10"] + GAIN
        and row["memorization@1"] >= baseline["memorization@1"] - MEMORY_LOSS
    ]
    if not adopted:
        return [], None
    best = max(levers[name]["nDCG@10"] for name in adopted)
    level = [name for name in adopted if levers[name]["nDCG@10"] >= best - TIE]
    return adopted, min(level, key=lambda name: levers[name]["build_seconds"])


def _row(eval_file: Path) -> dict[str, Any]:
    result = json.loads(eval_file.read_text())
    row = {key: result["dsi"][key] for key in ("nDCG@10", "Hits@10", "memorization@1",
                                               "memorization@10")}  # fmt: skip
    manifest = eval_file.with_suffix("").with_suffix("") / "manifest.json"
    seconds = None
    if manifest.exists():  # the build's stage times (its lineage), for the rule's tie-break
        lineage = json.loads(manifest.read_text()).get("lineage", [{}])
        seconds = sum(lineage[0].get("stage_seconds", {}).values()) or None
    row["build_seconds"] = seconds
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "levers")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=ROOT / "experiments" / "results" / "docid_screen" / "semantic.eval.json",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--rule", default="docid_levers", choices=list(RULES))
    args = parser.parse_args()
    rule, name_of_rule = RULES[args.rule], f"experiments/rules/{args.rule}.md"
    baseline = _row(args.baseline)
    levers = {n: _row(args.runs / f"{n}.eval.json") for n in rule
              if (args.runs / f"{n}.eval.json").exists()}  # fmt: skip
    missing = [name for name in rule if name not in levers]
    if missing:
        adopted, chosen = [], None
    else:
        for row in (baseline, *levers.values()):
            row["build_seconds"] = row["build_seconds"] or float("inf")
        adopted, chosen = decide(baseline, levers)
    out = {
        "rule": name_of_rule,
        "git": git_state(ROOT),
        "baseline": baseline,
        "levers": levers,
        "missing": missing,
        "adopted": adopted if not missing else "pending: not every lever has run",
        "decision": chosen if not missing else "pending: not every lever has run",
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.rule}.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    lines = [
        "# Lever screen for semantic docids, SciFact dev (issue 28)",
        "",
        f"Rule: [{name_of_rule}](../rules/{args.rule}.md), committed before the runs. Each lever "
        "is one change from the screen's semantic run (4,728 steps, seed 13, 150 dev queries; "
        "memorization over all 5,183 documents). Regenerate: `python -m experiments.docid_levers "
        f"--rule {args.rule} --runs runs/levers`.",
        "",
        "| run | change | dev nDCG@10 | dev Hits@10 | memorization@1 | memorization@10 |",
        "|---|---|---|---|---|---|",
    ]
    for name, row, change in [("semantic (baseline)", baseline, "")] + [
        (name, levers[name], rule[name]) for name in levers
    ]:
        lines.append(
            f"| {name} | {change} | {row['nDCG@10']:.3f} | {row['Hits@10']:.3f} | "
            f"{row['memorization@1']:.3f} | {row['memorization@10']:.3f} |"
        )
    lines += ["", f"Adopted: {out['adopted'] or 'none'}. Decision: {out['decision'] or 'none'}."]
    if missing:
        lines.append(f"Not run yet: {', '.join(missing)}.")
    (args.results / f"{args.rule}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
