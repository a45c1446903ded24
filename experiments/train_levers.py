"""Training choices of indexes with training queries, re-decided on dev (issue 27; rule:
experiments/rules/train_dev.md).

    python -m experiments.train_levers build LEVER --output runs/train_levers/LEVER -- \\
        --corpus runs/data/scifact_dev --max-steps 14184 --set train.seed=13
    python -m experiments.train_levers table --rule experiments/rules/train_dev.md \\
        --runs runs/train_levers --baseline runs/ngram_scifact.dev.json \\
        --output experiments/results/train_dev_scifact

``build`` runs ``dsi index`` with one lever of ``LEVERS`` applied: a setting (``--set``), or a
constant that is no setting of an index (case folding, the with-queries preset's copy pairs),
changed in this process only. The index records the lever in ``lever.json`` beside its files.
``table`` reads ``<runs>/<lever>.dev.json`` (``dsi eval`` on the dev qrels) for each lever and the
baseline's, and writes the rule's table and decision to ``OUT.json``/``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from docid.io import atomic_write_text
from experiments.fusion import ROOT, table
from experiments.provenance import add_rule_argument, checked_rule, git_state

MARGIN = 0.01  # a lever must beat the baseline's dev nDCG@10 by this much (rules/train_dev.md)


def _cased() -> None:
    import dsi.config

    dsi.config.LOWERCASE = False


def _with_queries_preset(**changes: int) -> Callable[[], None]:
    def apply() -> None:
        from dsi import seal

        preset = seal.NGRAM_PRESETS[seal.WITH_QUERIES]
        seal.NGRAM_PRESETS[seal.WITH_QUERIES] = dataclasses.replace(preset, **changes)

    return apply


@dataclasses.dataclass(frozen=True)
class Lever:
    """One change from the baseline: ``dsi index`` arguments, or a constant patched here."""

    change: str
    arguments: tuple[str, ...] = ()
    patch: Callable[[], None] | None = None


LEVERS: dict[str, Lever] = {
    "cased": Lever("the tokenizer keeps case (dsi.config.LOWERCASE False)", patch=_cased),
    "vocab16k": Lever(
        "--set model_config.vocab_size=16000", ("--set", "model_config.vocab_size=16000")
    ),
    "pool0": Lever(
        "with-queries preset: no copy-pair pool (salient_pool_per_doc 0)",
        patch=_with_queries_preset(salient_pool_per_doc=0),
    ),
    "pairs30": Lever(
        "with-queries preset: 30 copy pairs per document (salient_pairs_per_doc 30)",
        patch=_with_queries_preset(salient_pairs_per_doc=30),
    ),
}


def build(name: str, output: Path, index_arguments: Sequence[str]) -> int:
    """``dsi index --output output ...`` with lever ``name`` applied; ``lever.json`` records it."""
    from dsi.cli import main as dsi_main

    lever = LEVERS[name]
    if lever.patch is not None:
        lever.patch()
    code = dsi_main(["index", "--output", str(output), *index_arguments, *lever.arguments])
    if code == 0:
        record = {"lever": name, "change": lever.change, "git": git_state(ROOT)}
        atomic_write_text(output.parent / f"{output.name}.lever.json", json.dumps(record) + "\n")
    return code


def decide(baseline: float, scores: dict[str, float | None]) -> dict[str, str]:
    """rules/train_dev.md: per lever, "adopted" if its dev nDCG@10 beats the baseline's by
    ``MARGIN``, "kept" (today's value stays) if not, "pending" without a finished run."""
    return {
        name: "pending"
        if score is None
        else "adopted"
        if score >= baseline + MARGIN - 1e-12
        else "kept"
        for name, score in scores.items()
    }


def dev_row(path: Path) -> dict[str, Any] | None:
    """nDCG@10, Hits@10 and the seen/unseen nDCG@10 of one ``dsi eval`` JSON (None if absent)."""
    if not path.exists():
        return None
    dsi = json.loads(path.read_text())["dsi"]
    row = {"nDCG@10": dsi["nDCG@10"], "Hits@10": dsi["Hits@10"]}
    for part in ("seen", "unseen"):
        if part in dsi:
            row[f"{part} nDCG@10"] = dsi[part]["nDCG@10"]
    return row


def tabulate(runs: Path, baseline_file: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rule's rows (the baseline, then each lever) and its decision."""
    baseline = dev_row(baseline_file)
    if baseline is None:
        raise SystemExit(f"The baseline's evaluation {baseline_file} does not exist yet.")
    rows = [{"lever": "baseline (today)", "change": "", **baseline}]
    scores: dict[str, float | None] = {}
    for name, lever in LEVERS.items():
        row = dev_row(runs / f"{name}.dev.json")
        scores[name] = None if row is None else row["nDCG@10"]
        rows.append({"lever": name, "change": lever.change, **(row or {})})
    decision = decide(baseline["nDCG@10"], scores)
    for row in rows[1:]:
        row["decision"] = decision[row["lever"]]
    return rows, decision


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    made = sub.add_parser(
        "build", help="dsi index with one lever applied: build LEVER --output DIR -- INDEX_ARGS"
    )
    made.add_argument("lever", choices=list(LEVERS))
    made.add_argument("--output", type=Path, required=True)
    shown = sub.add_parser("table", help="the rule's table and decision")
    shown.add_argument("--runs", type=Path, required=True)
    shown.add_argument("--baseline", type=Path, required=True)
    shown.add_argument("--output", type=Path, required=True, help="OUT: writes OUT.json, OUT.md")
    add_rule_argument(shown)
    argv = list(sys.argv[1:] if argv is None else argv)
    # build: what follows "--" is dsi index's own arguments.
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    if args.what == "build":
        return build(args.lever, args.output, argv[cut + 1 :])
    rule = checked_rule(shown, args.rule)
    rows, decision = tabulate(args.runs, args.baseline)
    result = {"rule": rule, "git": git_state(ROOT), "rows": rows, "decision": decision}
    columns = [
        "lever",
        "change",
        "nDCG@10",
        "Hits@10",
        "seen nDCG@10",
        "unseen nDCG@10",
        "decision",
    ]
    verdict = f"rule: {rule['file']}" if rule else "no rule: decides nothing"
    text = (
        "# With-queries training choices on SciFact dev (150 queries)\n\n"
        + table(rows, columns)
        + f"\n\nDecision ({verdict}): {json.dumps(decision)}\n"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.output.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
