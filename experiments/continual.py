"""Continual indexing on SciFact (DSI++ protocol): how much do additions forget, per strategy?

    python -m experiments.continual --build-max-steps 2364 --max-steps-per-step 473 \\
        --build-minutes 1000 --minutes-per-step 1000   # the committed results (2026-12-06)
    python -m experiments.continual --scale 0.05 --model-size tiny --embedder tfidf \\
        --max-steps-per-step 30 --build-max-steps 60   # a toy run
    python -m experiments.continual --docids atomic    # DSI++'s own setting: a docid kind
    python -m experiments.continual --docids semantic --set train.max_windows_per_doc=2
                                        # --set: a setting of D0's build and each retraining

SciFact's documents are shuffled with a fixed seed and split into D0 (60%) and D1..D4 (10%
each); every query goes with the split of its latest relevant document (so once that split is
indexed, all its relevant documents are). D0 is indexed once, with a query generator kept in
the index, and its index is shared by every strategy. Then D1..D4 are added in turn by

- ``finetune``: plain fine-tuning on the new documents (no replay);
- ``queries``: replay of the real training queries of the documents already indexed;
- ``generative``: replay of queries generated for them (DSI++'s generative memory), mixed half
  and half with their real training queries (``AddConfig.real_query_share``), as DSI++ does;
- ``generative_sam``: generative replay with sharpness-aware minimisation;
- ``generated_only``: generated queries alone (not run unless asked for);
- ``documents`` / ``documents_sam``: replay of old documents' indexing examples (for n-gram
  indexes, ``--docids ngram``, their span pairs); not run unless asked for;
- ``retrain``: a new index built from scratch on everything so far, with D0's budget.

After every step, Hits@10 is measured on the test queries of each split indexed so far:
``a[n][i]`` after step n on split i. From that matrix (DSI++, Mehta et al. 2023):
A_n = mean_{i<=n} a[n][i], F_n = mean_{i<n} (max_{j<n} a[j][i] - a[n][i]),
LA_n = mean_{i<=n} a[i][i]. Optimizer updates and forward/backward passes are counted per step.

Beside them stand dsi eval's baselines (``--baselines``, default ``bm25,bm25+queries,dense``),
each built after every step over the documents indexed so far (``bm25+queries`` with the
training queries that judge them, the supervision the strategies train on) and scored the same
way; after the last step every strategy gets the paired bootstrap 95% interval of its Hits@10
minus each baseline's (``compare`` in the JSON).

With a docid kind (``--docids semantic|atomic|naive|title|keywords``: new documents get new
docids, as in DSI++) every step also measures the memorization of D0's documents
(``dsi.evaluation.memorization`` on ``--memorization-sample`` of them, fixed seed):
memorization@1 after each step, per strategy, beside the optimizer updates the strategy used
after D0 against retraining's. DSI++'s goal: generative-memory replay keeps D0's
memorization@1 within 5 points of its value after D0 at every step, with at least 4x fewer
optimizer updates than retraining (the report says whether each strategy meets it).

Results: ``<results>/<name>.json`` (everything), ``<name>.md`` (tables) and ``<name>.png``
(Hits@10 per step; needs matplotlib), where ``<name>`` is ``continual`` for n-gram identifiers
and ``continual_<docids>`` for a docid kind (``--name`` to choose). Work (indexes after each step, per-step
results) lives in ``--work``: a killed run continues from the last finished step when rerun with
the same settings; ``--strategies`` may differ between such runs (each strategy's steps are
kept apart), so strategies can be added to a finished run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from docid.io import atomic_open, atomic_write_text
from dsi.baselines import NEEDS_TRAINING_QUERIES, build_baseline, parse_baselines
from dsi.config import (
    MODEL_SIZES,
    AddConfig,
    IndexConfig,
    ModelConfig,
    TrainConfig,
    parse_assignments,
)
from dsi.data import Corpus, TrainingQueries, load_corpus, load_qrels, load_queries
from dsi.evaluation import RESAMPLES, SEED, memorization
from dsi.index import GenerativeIndex
from dsi.kinds import docid_kinds, index_class, index_kind, load_index
from dsi.metrics import paired_interval, per_query
from dsi.retriever import Retriever

log = logging.getLogger("continual")
ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = (
    "finetune",
    "queries",
    "generative",
    "generative_sam",
    "generated_only",
    "documents",
    "documents_sam",
    "retrain",
)
ADD_SETTINGS = {
    "finetune": {"replay": "none"},
    "queries": {"replay": "queries"},
    "generative": {"replay": "generative"},
    "generative_sam": {"replay": "generative", "sam": True},
    "generated_only": {"replay": "generative", "real_query_share": 0.0},
    "documents": {"replay": "documents"},
    "documents_sam": {"replay": "documents", "sam": True},
}
# The five, the one its goal is about first: a run cut short still answers it.
DEFAULT_STRATEGIES = "generative,finetune,retrain,queries,generative_sam"
SPLITS = (0.6, 0.1, 0.1, 0.1, 0.1)
# DSI++'s goal for generative-memory replay: D0's memorization@1 within this of its value after
# D0, with at least this many times fewer optimizer updates than retraining.
GOAL_MEMORIZATION_DROP = 0.05
GOAL_UPDATE_RATIO = 4.0


# ------------------------------------------------------------------------------------ data
@dataclasses.dataclass
class Task:
    """One split: its documents and the test queries that go with it."""

    corpus: Corpus
    test_qids: list[str]


def make_tasks(args, corpus: Corpus, test_qrels: dict[str, dict[str, int]]) -> list[Task]:
    rng = random.Random(args.seed)
    doc_ids = list(corpus.doc_ids)
    if args.scale < 1.0:
        doc_ids = rng.sample(doc_ids, max(len(SPLITS), round(args.scale * len(doc_ids))))
    rng.shuffle(doc_ids)
    bounds, start = [], 0
    for i, share in enumerate(SPLITS):
        end = len(doc_ids) if i == len(SPLITS) - 1 else start + round(share * len(doc_ids))
        bounds.append((start, end))
        start = end
    split_of = {d: i for i, (a, b) in enumerate(bounds) for d in doc_ids[a:b]}
    tasks = [Task(corpus.subset(doc_ids[a:b]), []) for a, b in bounds]
    for i, task in enumerate(tasks):
        task.corpus.source = f"D{i}"
    for qid in sorted(test_qrels):
        splits = [split_of[d] for d, g in test_qrels[qid].items() if g > 0 and d in split_of]
        if splits:
            tasks[max(splits)].test_qids.append(qid)
    return tasks


# ------------------------------------------------------------------------------ evaluation
def test_qids(tasks: list[Task], upto: int) -> list[str]:
    """The test queries of splits 0..upto, split by split."""
    return [q for task in tasks[: upto + 1] for q in task.test_qids]


def hits_per_split(
    rankings: dict[str, list[tuple[str, float]]],
    tasks: list[Task],
    upto: int,
    qrels: dict[str, dict[str, int]],
    known: set[str],
) -> dict[str, Any]:
    """Hits@10 of ``rankings`` per split 0..upto (None for a split without test queries), over
    all of them, and per query; judged against the documents ``known`` (those indexed so far)."""
    qids = test_qids(tasks, upto)
    judged = {q: {d: g for d, g in qrels[q].items() if d in known} for q in qids}
    scores = per_query({q: rankings[q] for q in qids}, judged)

    def mean(ids: list[str]) -> float | None:
        values = [scores[q]["Hits@10"] for q in ids if q in scores]
        return sum(values) / len(values) if values else None

    return {
        "per_task": [mean(task.test_qids) for task in tasks[: upto + 1]],
        "all": mean(qids),
        "queries": len(scores),
        "per_query": {q: scores[q]["Hits@10"] for q in qids if q in scores},
    }


def evaluate(
    index: GenerativeIndex,
    tasks: list[Task],
    upto: int,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    args,
) -> dict[str, Any]:
    """Hits@10 per split 0..upto, over all of them and per query (:func:`hits_per_split`); for a
    docid kind also the memorization of D0's documents (``memorization_d0``)."""
    qids = test_qids(tasks, upto)
    started = time.monotonic()
    retriever = Retriever.for_index(index, device=args.device)
    hits = retriever.search([queries[q] for q in qids], k=10, batch_size=args.eval_batch_size)
    rankings = {q: [(h.doc_id, h.score) for h in row] for q, row in zip(qids, hits, strict=True)}
    out = hits_per_split(rankings, tasks, upto, qrels, set(index.corpus.doc_ids))
    if index_kind(args.docids) != "ngram":
        out["memorization_d0"] = memorization(
            retriever,
            sample=args.memorization_sample,
            batch_size=args.eval_batch_size,
            doc_ids=tasks[0].corpus.doc_ids,
        )
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def baseline_steps(
    work: Path,
    tasks: list[Task],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    training: TrainingQueries,
    names: list[str],
) -> dict[str, dict[str, Any]]:
    """Each baseline after each step n: built over D0..Dn (``bm25+queries`` with the training
    queries that judge those documents, what the model's strategies learn from) and scored as
    :func:`evaluate` scores an index. Kept in ``work/baselines.json``."""
    path = work / "baselines.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    for name in names:
        if name in done:
            continue
        steps = []
        for n in range(len(tasks)):
            started = time.monotonic()
            docs = Corpus.concat(t.corpus for t in tasks[: n + 1])
            known = set(docs.doc_ids)
            pairs = training.pairs(known) if name in NEEDS_TRAINING_QUERIES else ()
            baseline = build_baseline(name, docs, pairs)
            qids = test_qids(tasks, n)
            ranked = baseline.search([queries[q] for q in qids], k=10)
            step = hits_per_split(dict(zip(qids, ranked, strict=True)), tasks, n, qrels, known)
            step["parameters"] = baseline.parameters()
            step["seconds"] = round(time.monotonic() - started, 1)
            steps.append(step)
        done[name] = {"parameters": steps[-1]["parameters"], "steps": steps}
        atomic_write_text(path, json.dumps(done, indent=1) + "\n")
        log.info("baseline %s: Hits@10 after each step %s", name, [s["all"] for s in steps])
    return {name: done[name] for name in names}


def dsi_measures(a: list[list[float | None]]) -> list[dict[str, float | None]]:
    """A_n, F_n and LA_n for every step n of the accuracy matrix ``a[n][i]`` (i <= n)."""

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    out = []
    for n in range(len(a)):
        forgetting = []
        for i in range(n):
            earlier = [a[j][i] for j in range(i, n) if a[j][i] is not None]
            if earlier and a[n][i] is not None:
                forgetting.append(max(earlier) - a[n][i])
        out.append(
            {
                "A": mean(a[n][: n + 1]),
                "F": mean(forgetting) if n else None,
                "LA": mean([a[i][i] for i in range(n + 1)]),
            }
        )
    return out


# ---------------------------------------------------------------------------- the runs
def base_config(args) -> IndexConfig:
    options: dict[str, Any] = {}
    if args.docids == "semantic":
        options["embedder"] = args.embedder
    config = IndexConfig(
        docids=args.docids,
        docid_options=options,
        model_config=ModelConfig(size=args.model_size),
        train=TrainConfig(max_minutes=args.build_minutes, max_steps=args.build_max_steps),
        num_beams=10,
        query_generator=True,
    )
    # The query generator is the index's model size, with its own budget (dsi.config
    # generator_config); the committed results gave it the same 5 minutes.
    if args.model_size == "tiny":
        config.train.warmup_steps = 20
    return config.updated(parse_assignments(args.set))


def add_config(args, strategy: str) -> AddConfig:
    return AddConfig(
        **ADD_SETTINGS[strategy],
        replay_ratio=args.replay_ratio,
        max_minutes=args.minutes_per_step,
        max_steps=args.max_steps_per_step,
        train={"warmup_steps": args.add_warmup_steps},
    )


def run_step(work: Path, name: str, make, evaluate_index) -> dict[str, Any]:
    """Run one step (``make`` returns an index and its lineage entry), or reuse its results."""
    done = work / f"{name}.json"
    if done.exists() and (work / name / "manifest.json").exists():
        log.info("%s: already done, reusing it.", name)
        return json.loads(done.read_text())
    started = time.monotonic()
    index, entry = make()
    seconds = round(time.monotonic() - started, 1)
    index.save(work / name)
    result = {"entry": entry, "seconds": seconds, "eval": evaluate_index(index)}
    atomic_write_text(done, json.dumps(result, indent=1) + "\n")
    log.info("%s: %s", name, json.dumps(result["eval"]))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        baseline_names = parse_baselines(args.baselines)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = Path(args.data)
    corpus = load_corpus(data)
    queries = load_queries(data / "queries.jsonl")
    test_qrels = load_qrels(data / "qrels" / "test.tsv")
    training = TrainingQueries(queries, load_qrels(data / "qrels" / "train.tsv"))
    tasks = make_tasks(args, corpus, test_qrels)
    chosen = args.strategies or DEFAULT_STRATEGIES
    strategies = [s.strip() for s in chosen.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise SystemExit(f"Unknown strategies {unknown}; choose from {list(STRATEGIES)}.")

    work = Path(args.work)
    # Settings that do not change what a step computes (baselines are kept apart).
    outputs = (
        "strategies",
        "results",
        "work",
        "name",
        "device",
        "eval_batch_size",
        "progress",
        "baselines",
    )
    settings = {k: v for k, v in vars(args).items() if k not in outputs}
    if args.docids == "ngram":  # measured for docid kinds only: an n-gram run's work stays
        settings.pop("memorization_sample")
    stamp = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    previous = work / "settings.sha256"
    if previous.exists() and previous.read_text().strip() != stamp:
        log.warning("%s holds a run with other settings; starting afresh.", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / "settings.sha256", stamp + "\n")
    log.info(
        "Splits: %s documents, %s test queries.",
        [len(t.corpus) for t in tasks],
        [len(t.test_qids) for t in tasks],
    )

    config = base_config(args)

    def scorer(upto: int):
        return lambda index: evaluate(index, tasks, upto, queries, test_qrels, args)

    def build(upto: int):
        def make():
            docs = Corpus.concat(t.corpus for t in tasks[: upto + 1])
            docs.source = "+".join(f"D{i}" for i in range(upto + 1))
            cfg = IndexConfig.from_dict(config.to_dict())
            # Only the shared D0 index needs a generator: the memory the additions replay.
            cfg.query_generator = upto == 0
            index = index_class(cfg.docids).build(
                docs, cfg, training, work_dir=work / f".build{upto}", progress_bar=args.progress
            )
            shutil.rmtree(work / f".build{upto}", ignore_errors=True)
            return index, index.lineage[-1]

        return make

    d0 = run_step(work, "d0", build(0), scorer(0))
    baselines = baseline_steps(work, tasks, queries, test_qrels, training, baseline_names)
    last = len(tasks) - 1
    results: dict[str, list[dict[str, Any]]] = {}
    for strategy in strategies:
        steps = [d0]
        for n in range(1, len(tasks)):
            name = f"{strategy}/step{n}"
            (work / strategy).mkdir(exist_ok=True)
            if strategy == "retrain":
                make = build(n)
            else:
                previous = work / ("d0" if n == 1 else f"{strategy}/step{n - 1}")

                def make(previous=previous, n=n, strategy=strategy):
                    index = load_index(previous)
                    entry = index.add(
                        tasks[n].corpus,
                        training,
                        add_config(args, strategy),
                        progress_bar=args.progress,
                        work_dir=work / strategy / f".add{n}",
                    )
                    shutil.rmtree(work / strategy / f".add{n}", ignore_errors=True)
                    return index, entry

            steps.append(run_step(work, name, make, scorer(n)))
        steps[-1] = with_per_query(work, f"{strategy}/step{last}", steps[-1], scorer(last))
        results[strategy] = steps
        elsewhere = finished_elsewhere(work, strategies, len(tasks), d0)
        write_report(args, tasks, d0, results | elsewhere, baselines)
    elsewhere = finished_elsewhere(work, strategies, len(tasks), d0)
    write_report(args, tasks, d0, results | elsewhere, baselines)
    return 0


def with_per_query(work: Path, name: str, result: dict[str, Any], evaluate_index) -> dict[str, Any]:
    """``result`` with per-query Hits@10: a step finished before they were recorded is scored
    again from its saved index (the same search, so the same Hits@10), and its file updated."""
    if "per_query" in result["eval"]:
        return result
    again = evaluate_index(load_index(work / name))
    if again["all"] != result["eval"]["all"]:
        log.warning("%s scores %s now, %s when it ran.", name, again["all"], result["eval"]["all"])
    result["eval"]["per_query"] = again["per_query"]
    atomic_write_text(work / f"{name}.json", json.dumps(result, indent=1) + "\n")
    return result


def finished_elsewhere(
    work: Path, chosen: list[str], num_tasks: int, d0: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """Steps of strategies that an earlier run with the same settings finished, for the report."""
    out = {}
    for strategy in STRATEGIES:
        done = [work / strategy / f"step{n}.json" for n in range(1, num_tasks)]
        if strategy not in chosen and all(path.exists() for path in done):
            out[strategy] = [d0] + [json.loads(path.read_text()) for path in done]
    return out


# ------------------------------------------------------------------------------- report
def accuracy(evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    """The accuracy matrix of one evaluation per step, and what DSI++ reads from it."""
    a = [e["per_task"] for e in evaluations]
    return {
        "a": a,
        "hits10_all": [e["all"] for e in evaluations],
        "hits10_d0": [row[0] for row in a],
        # The issue's goal: D0's forgetting after the last step (best earlier minus last).
        "forgetting_d0": max(row[0] for row in a[:-1]) - a[-1][0] if len(a) > 1 else None,
        "measures": dsi_measures(a),
    }


def summarize(steps: list[dict[str, Any]], shared_d0: bool) -> dict[str, Any]:
    train = [s["entry"]["training"] for s in steps]
    # The D0 build is shared by every strategy; only what comes after it is the strategy's cost.
    later = train[1:]
    memorized = [(s["eval"].get("memorization_d0") or {}).get("memorization@1") for s in steps]
    return {
        # memorization@1 of D0's documents after each step (docid kinds; None for n-grams).
        "memorization_d0": memorized,
        "memorization_d0_drop": _largest_drop(memorized),
        **accuracy([s["eval"] for s in steps]),
        "updates_per_step": [t["optimizer_updates"] for t in train],
        "passes_per_step": [t["forward_backward_passes"] for t in train],
        "seconds_per_step": [s["seconds"] for s in steps],
        "updates_after_d0": sum(t["optimizer_updates"] for t in later),
        "passes_after_d0": sum(t["forward_backward_passes"] for t in later),
        "seconds_after_d0": round(sum(s["seconds"] for s in steps[1:]), 1),
        "shared_d0": shared_d0,
    }


def comparisons(
    results: dict[str, list[dict[str, Any]]], baselines: dict[str, dict[str, Any]]
) -> dict[str, dict[str, list[float] | None]]:
    """Per strategy and baseline, after the last step: the strategy's Hits@10 minus the
    baseline's on the same test queries, ``[mean, low, high]`` of the paired bootstrap 95%
    interval (as ``dsi eval --compare``); None for a step without per-query scores."""
    out: dict[str, dict[str, list[float] | None]] = {}
    for name, steps in results.items():
        mine = steps[-1]["eval"].get("per_query")
        out[name] = {}
        for other, found in baselines.items():
            theirs = found["steps"][-1]["per_query"]
            out[name][other] = (
                None
                if mine is None
                else paired_interval(
                    {q: {"Hits@10": v} for q, v in mine.items()},
                    {q: {"Hits@10": v} for q, v in theirs.items()},
                    "Hits@10",
                    RESAMPLES,
                    SEED,
                )
            )
    return out


def _largest_drop(values: list[float | None]) -> float | None:
    """How far the values after the first fell below it at worst (None without values)."""
    later = [v for v in values[1:] if v is not None]
    if not later or values[0] is None:
        return None
    return values[0] - min(later)


def memorization_goal(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per strategy but retraining: D0's largest memorization@1 drop after D0, retraining's
    optimizer updates over the strategy's (both after D0), and whether DSI++'s goal is met."""
    retrain = summary.get("retrain", {}).get("updates_after_d0")
    out = {}
    for name, s in summary.items():
        drop = s.get("memorization_d0_drop")
        if name == "retrain" or drop is None:
            continue
        ratio = retrain / s["updates_after_d0"] if retrain and s["updates_after_d0"] else None
        out[name] = {
            "memorization_d0_drop": drop,
            "update_ratio_vs_retrain": ratio,
            "goal_met": None
            if ratio is None
            else bool(drop <= GOAL_MEMORIZATION_DROP and ratio >= GOAL_UPDATE_RATIO),
        }
    return out


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def write_report(
    args,
    tasks: list[Task],
    d0: dict,
    results: dict[str, list[dict]],
    baselines: dict[str, dict[str, Any]],
) -> None:
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    # The order (fine-tuning, replays, retraining), whichever run finished which.
    ordered = sorted(results, key=STRATEGIES.index)
    summary = {name: summarize(results[name], True) for name in ordered}
    goal = memorization_goal(summary)
    lexical = {name: accuracy(found["steps"]) for name, found in baselines.items()}
    compare = comparisons({name: results[name] for name in ordered}, baselines)
    report = {
        "settings": {k: v for k, v in vars(args).items()},
        "splits": {
            "documents": [len(t.corpus) for t in tasks],
            "test_queries": [len(t.test_qids) for t in tasks],
        },
        "definitions": {
            "a[n][i]": "Hits@10 on the test queries of split i after step n",
            "A_n": "mean over i<=n of a[n][i]",
            "F_n": "mean over i<n of max_{j<n} a[j][i] - a[n][i]",
            "LA_n": "mean over i<=n of a[i][i]",
        },
        "d0": d0,
        "strategies": summary,
        "memorization_goal": goal,
        # Each baseline over the documents indexed so far, after each step.
        "baselines": {
            name: {"parameters": found["parameters"], **lexical[name]}
            for name, found in baselines.items()
        },
        "compare": compare,
        "compare_settings": {"metric": "Hits@10", "resamples": RESAMPLES, "seed": SEED},
        "steps": results,
        "baseline_steps": baselines,
    }
    atomic_write_text(out / f"{args.name}.json", json.dumps(report, indent=1) + "\n")

    last = len(tasks) - 1
    lines = [
        "# Continual indexing on SciFact (DSI++ protocol)",
        "",
        f"Documents per split D0..D{last}: {report['splits']['documents']}; test queries: "
        f"{report['splits']['test_queries']}. Model `{args.model_size}`, docids `{args.docids}`"
        f"{' (' + args.embedder + ')' if args.docids == 'semantic' else ''}, scale {args.scale}, "
        f"budget per addition: {args.minutes_per_step} min / {args.max_steps_per_step} steps, "
        f"per build: {args.build_minutes} min / {args.build_max_steps} steps.",
        "",
        f"Measures after the last step (n = {last}), Hits@10; updates and passes count the "
        "training after the shared D0 index.",
        "",
        "| strategy | A_n | F_n (lower is better) | LA_n | Hits@10 all | Hits@10 D0 | "
        "forgetting on D0 | optimizer updates | forward/backward passes | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {_accuracy_cells(s)} | {s['updates_after_d0']} | "
            f"{s['passes_after_d0']} | {s['seconds_after_d0'] / 60:.1f} |"
        )
    for name, s in lexical.items():
        lines.append(f"| {name} (baseline) | {_accuracy_cells(s)} | – | – | – |")
    lines += [
        "",
        "Hits@10 on all test queries indexed so far / on D0's test queries, after each step:",
        "",
        "| strategy | " + " | ".join(f"step {n}" for n in range(last + 1)) + " |",
        "|---|" + "---|" * (last + 1),
    ]
    for name, s in [*summary.items(), *((f"{b} (baseline)", v) for b, v in lexical.items())]:
        cells = [
            f"{_fmt(x)} / {_fmt(y)}" for x, y in zip(s["hits10_all"], s["hits10_d0"], strict=False)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "A_n = mean_{i≤n} a_{n,i}; F_n = mean_{i<n} (max_{j<n} a_{j,i} − a_{n,i}); "
        "LA_n = mean_{i≤n} a_{i,i}, where a_{n,i} is Hits@10 on split i's test queries after "
        "step n.",
        "",
    ]
    if baselines:
        lines += _compare_lines(compare, list(baselines), len(test_qids(tasks, last)))
    if goal:
        lines += _memorization_lines(summary, goal, last)
    atomic_write_text(out / f"{args.name}.md", "\n".join(lines))
    plot(summary, out / f"{args.name}.png", lexical)


def _accuracy_cells(s: dict[str, Any]) -> str:
    """A_n, F_n, LA_n, Hits@10 all and on D0, and D0's forgetting after the last step."""
    m = s["measures"][-1]
    cells = (m["A"], m["F"], m["LA"], s["hits10_all"][-1], s["hits10_d0"][-1], s["forgetting_d0"])
    return " | ".join(_fmt(v) for v in cells)


def _compare_lines(
    compare: dict[str, dict[str, list[float] | None]], names: list[str], num_queries: int
) -> list[str]:
    """The table of each strategy minus each baseline after the last step."""

    def cell(found: list[float] | None) -> str:
        return "–" if found is None else f"{found[0]:+.3f} [{found[1]:+.3f}, {found[2]:+.3f}]"

    lines = [
        f"Each strategy minus each baseline after the last step, Hits@10 on all {num_queries} "
        f"test queries: mean [paired bootstrap 95%, {RESAMPLES:,} resamples, seed {SEED}]. The "
        "baselines index D0..Dn after step n; bm25+queries appends the training queries that "
        "judge those documents, the supervision every strategy trains on.",
        "",
        "| strategy | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for name, row in compare.items():
        lines.append(f"| {name} | " + " | ".join(cell(row[b]) for b in names) + " |")
    return lines + [""]


def _memorization_lines(
    summary: dict[str, dict[str, Any]], goal: dict[str, dict[str, Any]], last: int
) -> list[str]:
    """The memorization table of a docid kind: D0's memorization@1 after each step, and DSI++'s
    goal per strategy."""
    lines = [
        "memorization@1 of D0's documents after each step (their first indexing view decodes "
        "their own docid at rank 1):",
        "",
        "| strategy | " + " | ".join(f"step {n}" for n in range(last + 1)) + " |",
        "|---|" + "---|" * (last + 1),
    ]
    for name, s in summary.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(v) for v in s["memorization_d0"]) + " |")
    lines += [
        "",
        f"DSI++'s goal: D0's memorization@1 never more than {GOAL_MEMORIZATION_DROP:.2f} below "
        f"its value after D0, with at least {GOAL_UPDATE_RATIO:g}x fewer optimizer updates than "
        "retraining (after D0):",
        "",
        "| strategy | largest drop | optimizer updates | retraining's / its updates | goal met |",
        "|---|---|---|---|---|",
    ]
    for name, g in goal.items():
        ratio = g["update_ratio_vs_retrain"]
        met = {None: "– (no retraining run)", True: "yes", False: "no"}[g["goal_met"]]
        lines.append(
            f"| {name} | {_fmt(g['memorization_d0_drop'])} | "
            f"{summary[name]['updates_after_d0']} | "
            f"{'–' if ratio is None else f'{ratio:.1f}x'} | {met} |"
        )
    return lines + [""]


def plot(
    summary: dict[str, dict[str, Any]], path: Path, lexical: dict[str, dict[str, Any]] | None = None
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: %s was not written.", path)
        return
    fig = figure(summary, lexical)
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def figure(summary: dict[str, dict[str, Any]], lexical: dict[str, dict[str, Any]] | None = None):
    """Hits@10 on all queries so far and on D0's after each step (baselines dashed), and for a
    docid kind a third panel: D0's memorization@1, what DSI++'s goal reads."""
    import matplotlib.pyplot as plt

    memorized = any(
        any(v is not None for v in s.get("memorization_d0") or []) for s in summary.values()
    )
    fig, axes = plt.subplots(1, 3 if memorized else 2, figsize=(14 if memorized else 10, 4))
    axes[1].sharey(axes[0])
    for name, s in summary.items():
        steps = list(range(len(s["hits10_all"])))
        axes[0].plot(steps, [_nan(v) for v in s["hits10_all"]], marker="o", label=name)
        axes[1].plot(steps, [_nan(v) for v in s["hits10_d0"]], marker="o", label=name)
        if memorized:
            axes[2].plot(steps, [_nan(v) for v in s["memorization_d0"]], marker="o", label=name)
    for name, s in (lexical or {}).items():
        steps = list(range(len(s["hits10_all"])))
        for ax, key in zip(axes[:2], ("hits10_all", "hits10_d0"), strict=True):
            ax.plot(steps, [_nan(v) for v in s[key]], linestyle="--", label=name)
    axes[0].set_title("Hits@10, test queries of D0..Dn")
    axes[1].set_title("Hits@10, test queries of D0")
    axes[0].set_ylabel("Hits@10")
    if memorized:
        axes[2].set_title("memorization@1 of D0's documents")
        axes[2].set_ylim(-0.03, 1.03)
    for ax in axes:
        ax.set_xticks(range(max(len(s["hits10_all"]) for s in summary.values())))
        ax.set_xlabel("step n (documents D0..Dn indexed)")
        ax.grid(alpha=0.3)
    # One legend below the panels (saved with bbox_inches="tight"): inside, it hid the lines.
    handles, labels = axes[1].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=5)
    return fig


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the documents to use")
    p.add_argument("--strategies", default=None, help=f"some of {','.join(STRATEGIES)}")
    p.add_argument("--minutes-per-step", type=float, default=2.0, help="budget of each addition")
    p.add_argument("--max-steps-per-step", type=int, default=None)
    p.add_argument("--build-minutes", type=float, default=10.0, help="D0 and each retraining")
    p.add_argument("--build-max-steps", type=int, default=None)
    p.add_argument("--add-warmup-steps", type=int, default=100)
    p.add_argument("--replay-ratio", type=float, default=1.0)
    p.add_argument("--docids", default="ngram", choices=docid_kinds())
    p.add_argument(
        "--baselines",
        default="bm25,bm25+queries,dense",
        help="baselines measured after each step over the documents indexed so far (dsi eval's)",
    )
    p.add_argument(
        "--memorization-sample",
        type=int,
        default=500,
        help="D0 documents whose memorization a docid kind measures after each step",
    )
    p.add_argument(
        "--name",
        default=None,
        help="results file name (default: continual, or continual_<docids> for a docid kind)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of D0's build and each retraining (dsi index --set), e.g. "
        "train.max_windows_per_doc=2",
    )
    p.add_argument("--embedder", default="minilm", choices=["minilm", "tfidf"])
    p.add_argument("--model-size", default="small", choices=sorted(MODEL_SIZES))
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--device", default=None)
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    p.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--work", default=str(ROOT / "experiments" / "work" / "continual"))
    args = p.parse_args(argv)
    if args.name is None:
        args.name = "continual" if args.docids == "ngram" else f"continual_{args.docids}"
    return args


if __name__ == "__main__":
    sys.exit(main())
