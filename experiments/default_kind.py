"""Which identifier kind ``dsi index`` defaults to, by dev (issues 27 and 29; rule:
experiments/rules/default_kind.md).

    python -m experiments.default_kind --rule experiments/rules/default_kind.md \\
        --with-queries scifact NGRAM_DEV_JSON FUSED_DEV_JSON \\
        --without cranfield NGRAM_DEV_JSON FUSED_DEV_JSON \\
        --without scifact_docs NGRAM_DEV_JSON FUSED_DEV_JSON \\
        --output experiments/results/default_kind

Each JSON is one ``dsi eval`` on a dev split, of an ``ngram`` index and of an ``ngram+semantic``
index built on the same data and steps. A file that does not exist yet is a run still owed: its
side of the comparison is "pending". The fused kind is *preferred* on a side when its dev
nDCG@10 (without training queries: the mean over the settings, each weighing the same) beats
``ngram``'s by ``MARGIN`` or more, and becomes the default only if it is preferred on both sides.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docid.io import atomic_write_text
from experiments.fusion import ROOT, table
from experiments.provenance import add_rule_argument, checked_rule, git_state
from experiments.train_levers import dev_row

MARGIN = 0.01  # rules/default_kind.md: what a second beam search per query must earn
KINDS = ("ngram", "ngram+semantic")


def side(scores: Sequence[tuple[float | None, float | None]]) -> dict[str, Any]:
    """One side of the rule from its settings' ``(ngram, fused)`` dev nDCG@10 (None: not run):
    the pooled means and whether the fused kind is "preferred", "not preferred" or "pending"."""
    if not scores or any(a is None or b is None for a, b in scores):
        return {"ngram": None, "ngram+semantic": None, "verdict": "pending"}
    ngram = sum(a for a, _ in scores) / len(scores)  # type: ignore[misc]
    fused = sum(b for _, b in scores) / len(scores)  # type: ignore[misc]
    preferred = fused >= ngram + MARGIN - 1e-12
    return {
        "ngram": ngram,
        "ngram+semantic": fused,
        "verdict": "preferred" if preferred else "not preferred",
    }


def default(with_queries: str, without: str) -> str:
    """The default kind from the two sides' verdicts ("pending" while a known side cannot
    settle it: the fused kind needs both, so one "not preferred" keeps ``ngram``)."""
    if "not preferred" in (with_queries, without):
        return "ngram"
    if with_queries == without == "preferred":
        return "ngram+semantic"
    return "pending"


def _score(path: Path) -> float | None:
    row = dev_row(path)
    return None if row is None else row["nDCG@10"]


def tabulate(
    with_queries: Sequence[Sequence[str]], without: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """The rule's rows (one per setting), both sides and the decision."""
    rows, sides = [], {}
    for name, settings in (("with training queries", with_queries), ("without", without)):
        pairs = []
        for setting, ngram_file, fused_file in settings:
            pair = (_score(Path(ngram_file)), _score(Path(fused_file)))
            pairs.append(pair)
            rows.append(
                {
                    "side": name,
                    "setting": setting,
                    "ngram": pair[0] if pair[0] is not None else "pending",
                    "ngram+semantic": pair[1] if pair[1] is not None else "pending",
                    "ngram file": ngram_file,
                    "ngram+semantic file": fused_file,
                }
            )
        sides[name] = side(pairs)
    decision = default(sides["with training queries"]["verdict"], sides["without"]["verdict"])
    return {"rows": rows, "sides": sides, "default": decision}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    files = ("SETTING", "NGRAM_DEV_JSON", "FUSED_DEV_JSON")
    parser.add_argument("--with-queries", nargs=3, action="append", required=True, metavar=files)
    parser.add_argument("--without", nargs=3, action="append", required=True, metavar=files)
    parser.add_argument("--output", type=Path, required=True, help="OUT: writes OUT.json, OUT.md")
    add_rule_argument(parser)
    args = parser.parse_args(argv)
    rule = checked_rule(parser, args.rule)
    result = {"rule": rule, "git": git_state(ROOT), **tabulate(args.with_queries, args.without)}
    side_rows = [
        {"side": name, **{k: "pending" if v is None else v for k, v in values.items()}}
        for name, values in result["sides"].items()
    ]
    verdict = f"rule: {rule['file']}" if rule else "no rule: decides nothing"
    text = (
        "# The default identifier kind on dev: ngram against ngram+semantic (nDCG@10)\n\n"
        + table(result["rows"], ["side", "setting", *KINDS])
        + "\n\nEach side (without training queries: the settings' mean; the fused kind is "
        + f"preferred at +{MARGIN} or more):\n\n"
        + table(side_rows, ["side", *KINDS, "verdict"])
        + f"\n\nDefault ({verdict}): **{result['default']}**\n"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.output.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
