"""An index beside its baselines, over training seeds: one table from `dsi eval` JSONs.

    python -m experiments.leak_free --name scifact_default \\
        --eval 13 runs/scifact_s13.test.json --eval 14 runs/scifact_s14.test.json

Each ``--eval SEED FILE`` is the output of one ``dsi eval --baselines ... --compare`` of the
default index built at that training seed. The table gives, per seed and retriever, nDCG@10 and
Hits@10 over all evaluated queries and apart for the ``seen`` ones (a relevant document judged by
a training query) and the ``unseen`` rest, with the paired 95% interval of dsi minus each
baseline; then, per baseline, whether dsi has the higher point estimate at every seed (issue 29's
"beats"). This is what ``experiments/seen_documents.py`` measured before ``dsi eval`` split every
evaluation into seen and unseen queries itself. An eval run with ``--memorization`` (a docid
kind) adds its memorization under the seed's table. Writes ``<results>/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from docid.io import atomic_write_text
from dsi.evaluation import MASKED_MEMORIZATION_KEYS, MEMORIZATION_KEYS

RESULTS = Path(__file__).resolve().parent / "results" / "leak_free"
METRICS = ("nDCG@10", "Hits@10")
PARTS = ("all", "seen", "unseen")
# `dsi eval --memorization`'s keys (docid kinds); the masked pair only for title/keyword docids.
MEMORIZATION = (*MEMORIZATION_KEYS, *MASKED_MEMORIZATION_KEYS)


def _block(result: dict[str, Any], part: str) -> dict[str, Any] | None:
    return result if part == "all" else result.get(part)


def summarize(evals: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per seed: each retriever's metrics and query counts per part, and dsi minus each baseline
    (the eval's paired intervals); across seeds: whether dsi is above each baseline at all."""
    seeds: dict[str, Any] = {}
    memorized: dict[str, Any] = {}
    baselines: list[str] = []
    for seed, report in sorted(evals.items()):
        compare = report.get("compare", {})
        if not compare:
            raise ValueError(
                f"the eval of seed {seed} has no paired intervals: run it with --compare"
            )
        names = ["dsi", *compare]
        baselines = baselines or list(compare)
        if list(compare) != baselines:
            raise ValueError(f"seed {seed} compares with {list(compare)}, not {baselines}")
        rows = {}
        for name in names:
            rows[name] = {}
            for part in PARTS:
                block = _block(report[name], part)
                if block is None:
                    continue
                cell = {m: block[m] for m in METRICS}
                cell["queries"] = block["num_queries"]
                if name != "dsi":
                    paired = _block(compare[name], part)
                    if paired is not None:
                        cell["dsi_minus"] = {m: paired[m] for m in METRICS if m in paired}
                rows[name][part] = cell
        seeds[str(seed)] = rows
        found = {key: report["dsi"][key] for key in MEMORIZATION if key in report["dsi"]}
        if found:
            found["documents"] = report["dsi"]["memorization_documents"]
            memorized[str(seed)] = found
    above = {
        name: {part: {m: _above(seeds, name, part, m) for m in METRICS} for part in PARTS}
        for name in baselines
    }
    summary = {"seeds": seeds, "baselines": baselines, "dsi_above_at_every_seed": above}
    return summary | ({"memorization": memorized} if memorized else {})


def _above(seeds: dict[str, Any], name: str, part: str, metric: str) -> bool | None:
    """Whether dsi's ``metric`` is above ``name``'s on ``part`` at every seed that has the part;
    None where no seed has it (an index without training queries has no seen/unseen parts)."""
    pairs = [(rows["dsi"][part][metric], rows[name][part][metric]) for rows in seeds.values()
             if part in rows["dsi"] and part in rows[name]]  # fmt: skip
    return all(ours > theirs for ours, theirs in pairs) if pairs else None


def _interval(value: list[float] | None) -> str:
    return "" if not value else f"{value[0]:+.3f} [{value[1]:+.3f}, {value[2]:+.3f}]"


def _memorization_line(found: dict[str, Any]) -> str:
    at_1, at_10 = MEMORIZATION_KEYS
    text = f"memorization@1 {found[at_1]:.3f}, @10 {found[at_10]:.3f}"
    text += f" over {found['documents']:,} documents"
    masked_1, masked_10 = MASKED_MEMORIZATION_KEYS
    if masked_1 in found:
        text += f"; without the docid's words @1 {found[masked_1]:.3f}, @10 {found[masked_10]:.3f}"
    return text + " (`dsi eval --memorization`)."


def markdown(
    name: str, summary: dict[str, Any], sources: dict[int, str], label: str = "dsi default"
) -> str:
    """The summary as tables: one per seed, then the across-seed verdict per baseline;
    ``label`` names the evaluated index's row."""
    lines = [f"# {name}: {label} beside its baselines, per training seed", ""]
    lines.append(
        "`python -m experiments.leak_free "
        + " ".join(f"--eval {seed} {path}" for seed, path in sorted(sources.items()))
        + f" --name {name} --label '{label}'`"
    )
    lines.append("")
    lines.append(
        "seen: queries with a relevant document that a training query judges; unseen: the rest. "
        "Intervals: dsi minus the retriever, paired bootstrap 95% (`dsi eval --compare`)."
    )
    for seed, rows in summary["seeds"].items():
        counts = {part: rows["dsi"][part]["queries"] for part in PARTS if part in rows["dsi"]}
        lines += [
            "",
            f"## Seed {seed} (" + ", ".join(f"{p} {n}" for p, n in counts.items()) + ")",
            "",
        ]
        header = ["retriever"]
        for part in counts:
            header += [f"{part} nDCG@10", f"{part} Hits@10"]
        header += [f"dsi minus it, {part} nDCG@10" for part in counts]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for retriever, cells in rows.items():
            row = [retriever if retriever != "dsi" else label]
            for part in counts:
                cell = cells.get(part, {})
                row += [f"{cell[m]:.3f}" if m in cell else "" for m in METRICS]
            row += [
                _interval(cells.get(part, {}).get("dsi_minus", {}).get("nDCG@10"))
                for part in counts
            ]
            lines.append("| " + " | ".join(row) + " |")
        found = summary.get("memorization", {}).get(seed)
        if found:
            lines += ["", _memorization_line(found)]
    lines += ["", f"## {label} above the baseline at every seed (point estimates)", ""]
    lines += ["| baseline | " + " | ".join(f"{p} {m}" for p in PARTS for m in METRICS) + " |"]
    lines += ["|---|" + "---|" * (len(PARTS) * len(METRICS))]
    for baseline, parts in summary["dsi_above_at_every_seed"].items():
        marks = [{True: "yes", False: "no", None: "–"}[parts[p][m]] for p in PARTS for m in METRICS]
        lines.append(f"| {baseline} | " + " | ".join(marks) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eval", nargs=2, action="append", required=True, metavar=("SEED", "FILE"))
    parser.add_argument("--name", required=True, help="the result files' name")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--label", default="dsi default", help="the evaluated index's row name")
    args = parser.parse_args(argv)
    sources = {int(seed): path for seed, path in args.eval}
    try:
        evals = {
            seed: json.loads(Path(path).read_text(encoding="utf-8"))
            for seed, path in sources.items()
        }
        summary = summarize(evals)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"cannot tabulate the evals: {exc}")
    args.results.mkdir(parents=True, exist_ok=True)
    record = {"label": args.label, "sources": {str(s): p for s, p in sources.items()}, **summary}
    atomic_write_text(args.results / f"{args.name}.json", json.dumps(record, indent=2) + "\n")
    text = markdown(args.name, summary, sources, args.label)
    atomic_write_text(args.results / f"{args.name}.md", text)
    print(text, end="")


if __name__ == "__main__":
    main()
