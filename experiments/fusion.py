"""The fused kind's weights chosen on dev, its ablation and its latency (issue 29; rule:
experiments/rules/fusion_dev.md).

An ``ngram+semantic`` index (``dsi index --docids ngram+semantic``) ranks by the lexical score of
what its model generates plus ``fusion_weight`` times the query's best lexical score times the
docid beams' probability of each document they reach, the beams guided by PAG's planning prior
at ``plan_weight`` (:mod:`dsi.fusion`). This script scores a grid of both weights on one or more
dev sets (each an index with the queries and qrels it did not train on), once per plan weight
for the docid beams and then for every fusion weight, and picks the best by the rule::

    python -m experiments.fusion grid --dev runs/fusion/scifact_idx runs/data/scifact_q.jsonl \\
        runs/data/scifact_dev.dev.tsv --rule experiments/rules/fusion_dev.md \\
        --output runs/fusion/scifact_grid

The ablation scores four rankings at given weights: the model's terms or the query's own terms
(its words as n-grams of probability 1 and as words, no feedback: the lexical part without the
model), each with and without the docid part::

    python -m experiments.fusion ablation --dev IDX QUERIES QRELS --weights 0.5 1 --output OUT

The latency measurement times ``search(k=10)`` at beam 10, in batches of 32 and one query at a
time, lexical alone, simple fusion and fusion with the planning prior, as
``experiments/quality.py`` timed the default::

    python -m experiments.fusion latency --dev IDX QUERIES QRELS --weights 0.5 1 --output OUT

Each writes ``OUT.json`` and ``OUT.md``. A run on a tiny corpus (smoke) decides nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from docid.io import atomic_write_text
from dsi.data import load_qrels, load_queries
from dsi.fusion import fuse
from dsi.metrics import mean_metrics, per_query
from dsi.ngram_retriever import Generation, NgramRetriever, Ranking
from dsi.seal import FUSED, NgramGenerativeIndex
from experiments.provenance import add_rule_argument, checked_rule, git_state

ROOT = Path(__file__).resolve().parent.parent
# The rule's grid (experiments/rules/fusion_dev.md).
FUSION_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
PLAN_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
METRICS = ("nDCG@10", "Hits@10")
K = 10


@dataclasses.dataclass
class DevSet:
    """A fused index with the queries and qrels it is scored on."""

    name: str
    retriever: NgramRetriever
    queries: dict[str, str]  # only the judged ones, in qrels order
    qrels: dict[str, dict[str, int]]


def load_dev(index_dir: str, queries_file: str, qrels_file: str, fused: bool = True) -> DevSet:
    """The dev set of ``index_dir`` (a fused index; with ``fused`` False, any n-gram index): its
    judged queries and their qrels."""
    index = NgramGenerativeIndex.load(index_dir)
    if fused and index.fused is None:
        raise SystemExit(f"{index_dir} is not an {FUSED!r} index: it has no docids to fuse.")
    qrels = load_qrels(qrels_file)
    texts = load_queries(queries_file)
    missing = sorted(set(qrels) - set(texts))
    if missing:
        raise SystemExit(f"{queries_file} lacks the text of {len(missing)} judged queries.")
    queries = {qid: texts[qid] for qid in qrels}
    return DevSet(Path(index_dir).name, NgramRetriever(index, device="cpu"), queries, qrels)


def own_terms(retriever: NgramRetriever) -> Callable[[list[str], list[Generation]], list[Ranking]]:
    """The lexical ranking with the model's terms replaced by the query's own: each word of the
    query as an n-gram of log-probability 0 and as a scored word, no feedback (the model would
    read documents)."""
    tokenizer = retriever.index.tokenizer
    plain = dataclasses.replace(retriever.options, feedback_docs=0)

    def rank(queries: list[str], generated: list[Generation]) -> list[Ranking]:
        own = []
        for query in queries:
            words = query.split()
            tokens = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
            ngrams = [(tuple(t), 0.0) for t in tokens if t]
            own.append(Generation(ngrams, [], []))
        saved, retriever.options = retriever.options, plain
        try:
            return retriever.lexical_rankings(own)
        finally:
            retriever.options = saved

    return rank


def scores_of(dev: DevSet, rankings: Sequence[Ranking]) -> dict[str, dict[str, float]]:
    """Per query, its metrics of ``rankings`` (document indexes, best first)."""
    doc_ids = dev.retriever.index.corpus.doc_ids
    run = {
        qid: {doc_ids[doc]: float(K - rank) for rank, (doc, _) in enumerate(ranked[:K])}
        for qid, ranked in zip(dev.queries, rankings, strict=True)
    }
    return per_query(run, dev.qrels)


def grid(devs: Sequence[DevSet], fusion_weights, plan_weights) -> list[dict[str, Any]]:
    """Every (fusion weight, plan weight) of the grid on every dev set: mean metrics per set and
    the mean over sets (each set weighs the same). Fusion weight 0 ignores the docid beams, so
    it is scored once (plan weight 0)."""
    rows: dict[tuple[float, float], dict[str, Any]] = {}
    for dev in devs:
        for plan in plan_weights:
            _, parts = dev.retriever.fusion_parts(list(dev.queries.values()), K, 32, None, plan)
            for weight in fusion_weights:
                if weight == 0 and plan != plan_weights[0]:
                    continue
                fused = [fuse(lexical, reached, weight, K) for lexical, reached in parts]
                row = rows.setdefault(
                    (weight, plan), {"fusion_weight": weight, "plan_weight": plan}
                )
                row[dev.name] = mean_metrics(scores_of(dev, fused))
    for row in rows.values():
        for metric in METRICS:
            row[f"mean {metric}"] = sum(row[dev.name][metric] for dev in devs) / len(devs)
    return list(rows.values())


def ablation(devs: Sequence[DevSet], weight: float, plan: float) -> list[dict[str, Any]]:
    """The model's terms or the query's own, each with and without the docid part."""
    rows = []
    for dev in devs:
        queries = list(dev.queries.values())
        for terms in ("model", "own"):
            lexical = None if terms == "model" else own_terms(dev.retriever)
            _, parts = dev.retriever.fusion_parts(queries, K, 32, None, plan, lexical)
            for docids in (True, False):
                w = weight if docids else 0.0
                fused = [fuse(lex, reached, w, K) for lex, reached in parts]
                rows.append(
                    {
                        "dev": dev.name,
                        "terms": terms,
                        "docids": docids,
                        **mean_metrics(scores_of(dev, fused)),
                    }
                )
    return rows


def latency(dev: DevSet, weight: float, plan: float, count: int | None) -> list[dict[str, Any]]:
    """Milliseconds per query of ``search(k=10)`` at beam 10, batches of 32 and 1 (after a
    warm-up batch): lexical alone, simple fusion, fusion with the planning prior."""
    retriever = dev.retriever
    texts = list(dev.queries.values())[:count]
    base = retriever.options
    rows = []
    for name, w, p in (("lexical", 0.0, 0.0), ("fused", weight, 0.0), ("fused+plan", weight, plan)):
        retriever.options = dataclasses.replace(base, fusion_weight=w, plan_weight=p)
        retriever.search(texts[:4], k=K, num_beams=10)
        row: dict[str, Any] = {"ranking": name, "fusion_weight": w, "plan_weight": p}
        for batch in (32, 1):
            started = time.perf_counter()
            retriever.search(texts, k=K, batch_size=batch, num_beams=10)
            row[f"batch{batch}_ms"] = round(1000 * (time.perf_counter() - started) / len(texts), 1)
        rows.append(row)
    retriever.options = base
    return rows


def write_dev_qrels(dataset: str, output: Path, split: str = "dev") -> None:
    """The ``split`` qrels of ``dataset`` as ``experiments/quality.py`` splits it (seed 13), as
    a qrels TSV: dev is Cranfield's 45 held-out queries or ``scifact_unsupervised``'s 809
    training queries; test is what is left of the test queries (Cranfield's other 180)."""
    from experiments.quality import load_dataset

    qrels = load_dataset(dataset, 13)[split]
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{g}" for q in sorted(qrels) for d, g in sorted(qrels[q].items())]
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, "\n".join(lines) + "\n")
    print(f"{len(qrels)} {split} queries of {dataset} -> {output}")


LEVEL = 0.002  # the rule's tie: within this of the best dev nDCG@10 counts as level


def decide(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """experiments/rules/fusion_dev.md's choice: the best mean dev nDCG@10; of the candidates
    within ``LEVEL`` of it, fusion weight 0 if level, else the smallest plan weight, then the
    smallest fusion weight."""
    best = max(r["mean nDCG@10"] for r in rows)
    level = [r for r in rows if r["mean nDCG@10"] >= best - LEVEL - 1e-12]
    chosen = min(
        level, key=lambda r: (r["fusion_weight"] != 0, r["plan_weight"], r["fusion_weight"])
    )
    return {k: chosen[k] for k in ("fusion_weight", "plan_weight")}


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table of ``rows``' ``columns`` (floats to 4 places)."""

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def dev_command(
    description: str,
    argv: Sequence[str] | None,
    fused: bool = True,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[argparse.Namespace, dict | None, DevSet]:
    """The arguments of a dev decision over one fused index (``fused`` False: any n-gram index)
    with training queries (``--dev INDEX QUERIES QRELS``, ``--output``, ``--rule``, and what
    ``extra`` adds to the parser): the parsed arguments, the checked rule and the dev set."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dev", nargs=3, required=True, metavar=("INDEX", "QUERIES", "QRELS"))
    parser.add_argument("--output", type=Path, required=True, help="OUT: writes OUT.json, OUT.md")
    add_rule_argument(parser)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    rule = checked_rule(parser, args.rule)
    dev = load_dev(*args.dev, fused=fused)
    if not dev.retriever.index.training_pairs:
        parser.error(
            f"{args.dev[0]} has no training queries: these rules decide for those that do."
        )
    return args, rule, dev


def provenance(args: argparse.Namespace, rule: dict | None, dev: DevSet) -> dict[str, Any]:
    """The head of a dev decision's result: its dev set, rule, commit and training steps."""
    return {
        "dev": list(args.dev),
        "rule": rule,
        "git": git_state(ROOT),
        "steps": dev.retriever.index.lineage[0].get("training_steps"),
    }


def write_decision(
    output: Path, heading: str, rows: Sequence[dict[str, Any]], columns: Sequence[str], result: dict
) -> None:
    """``output``.json (``result``) and .md: ``heading``, the rows' table and the decision (or
    that a run without a rule decides nothing); the markdown is printed too."""
    rule = result.get("rule")
    text = (
        f"# {heading}\n\n"
        + table(rows, columns)
        + f"\n\nDecision ({'rule: ' + rule['file'] if rule else 'no rule: decides nothing'}): "
        + json.dumps(result["decision"])
        + "\n"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(output.with_suffix(".md"), text)
    print(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("grid", "ablation", "latency", "dev-qrels"))
    parser.add_argument(
        "--dataset", help="dev-qrels: write this dataset's dev qrels (experiments/quality.py's)"
    )
    parser.add_argument(
        "--split", choices=("dev", "test"), default="dev", help="dev-qrels: which split's qrels"
    )
    parser.add_argument(
        "--dev",
        nargs=3,
        action="append",
        metavar=("INDEX", "QUERIES", "QRELS"),
        help="a fused index, a queries file and the qrels it is scored on (repeat to pool)",
    )
    parser.add_argument("--weights", nargs=2, type=float, metavar=("FUSION", "PLAN"))
    parser.add_argument("--latency-queries", type=int, default=None)
    parser.add_argument("--output", type=Path, required=True, help="OUT: writes OUT.json, OUT.md")
    add_rule_argument(parser)
    args = parser.parse_args(argv)
    if args.what == "dev-qrels":
        if not args.dataset:
            parser.error("dev-qrels needs --dataset.")
        write_dev_qrels(args.dataset, args.output, args.split)
        return
    if not args.dev:
        parser.error(f"{args.what} needs --dev INDEX QUERIES QRELS.")
    if args.what in ("ablation", "latency") and args.weights is None:
        parser.error(f"{args.what} needs --weights FUSION PLAN.")
    rule = checked_rule(parser, args.rule)
    devs = [load_dev(*triple) for triple in args.dev]
    started = time.monotonic()
    result: dict[str, Any] = {
        "what": args.what,
        "dev": [list(triple) for triple in args.dev],
        "rule": rule,
        "git": git_state(ROOT),
        "steps": {dev.name: dev.retriever.index.lineage[0].get("training_steps") for dev in devs},
    }
    if args.what == "grid":
        rows = grid(devs, FUSION_WEIGHTS, PLAN_WEIGHTS)
        result.update(rows=rows, best=decide(rows))
        columns = ["fusion_weight", "plan_weight", "mean nDCG@10", "mean Hits@10"]
        text = table(rows, columns) + f"\n\nChosen by the rule: {result['best']}.\n"
    elif args.what == "ablation":
        rows = ablation(devs, *args.weights)
        result.update(rows=rows, weights=args.weights)
        text = table(rows, ["dev", "terms", "docids", *METRICS, "num_queries"]) + "\n"
    else:
        rows = [
            {"dev": dev.name, **row}
            for dev in devs
            for row in latency(dev, *args.weights, args.latency_queries)
        ]
        result.update(rows=rows, weights=args.weights)
        columns = ["dev", "ranking", "fusion_weight", "plan_weight", "batch32_ms", "batch1_ms"]
        text = "ms per query, search k=10, beam 10, CPU\n\n" + table(rows, columns) + "\n"
    result["seconds"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.output.with_suffix(".md"), f"# fusion {args.what}\n\n{text}")
    print(text)


if __name__ == "__main__":
    main()
