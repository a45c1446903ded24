"""Quality of the generative retrievers against BM25 on SciFact and Cranfield, from scratch on CPU.

    python -m experiments.quality                       # every dataset and configuration
    python -m experiments.quality --datasets scifact --configs default salient30 --minutes 30

Protocol (fixed seed): SciFact's 809 training queries are split into ``train`` (659) and ``dev``
(150); every configuration trains on the corpus and ``train`` only. Cranfield has no training
queries: the models learn from the documents alone, and a fixed fifth of its 225 queries is the
dev set (``test`` is the rest). ``--datasets scifact_unsupervised`` is SciFact in Cranfield's
setting: its 809 training queries are the dev set, none is trained on. During training each
configuration is evaluated on dev every ``--eval-every`` minutes of training (the curve of the
plot; evaluation time does not count against the budget); after training it is evaluated on
test once (the table). BM25 (bm25s, stopwords + Snowball, ``dsi.bm25``) is evaluated on the
same dev and test queries.

Configurations (``CONFIGS``): ``default`` is exactly what ``dsi index`` builds; the others change
one lever. For each n-gram configuration a row ``<name>+tuned`` follows: the same trained model
with its document scoring (BM25 or SEAL's, their weights, number of unigrams) chosen on dev,
then evaluated on test once
(``--no-tune-decoding`` leaves it out). ``--rule experiments/rules/<name>.md`` names the committed
rule that the run decides by (experiments/rules/README.md); the result records its commit, and a
rule file that is not committed as it is refuses the run. Results: ``<results>/quality_<dataset>.json`` (everything, including each curve),
``quality_<dataset>.md`` (the test table) and ``quality_<dataset>.png`` (dev nDCG@10 against
training minutes, BM25 as a line). Finished configurations are kept in ``--work`` and skipped
when the command is rerun with the same settings, so a killed run goes on where it stopped (from
its last checkpoint, with the dev points measured before, ``curve.json``); one
whose decoding settings alone changed (``SealOptions.DECODING``) is evaluated again, not
retrained. Every result records its ``provenance``: the git commit of the code that wrote it
(``dirty`` when the work tree differed), the training steps and the digest of the data its index
was trained on (``dsi.index.training_data_digest``); a finished run whose digest is not the one
the current data give (or that has none) is trained again, and the scripts that read finished
runs leave it out.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

from docid.io import atomic_open, atomic_write_text
from dsi.bm25 import BM25Retriever
from dsi.config import IndexConfig
from dsi.data import TrainingQueries, load_corpus, load_qrels, load_queries
from dsi.index import training_data_digest
from dsi.kinds import index_class
from dsi.metrics import evaluate_run
from dsi.ngram_retriever import Generation, NgramRetriever
from dsi.retriever import Retriever
from dsi.seal import SealOptions, resolved_config, split_decoding
from experiments.provenance import add_rule_argument, checked_rule, config_fingerprint, git_state

log = logging.getLogger("quality")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
METRICS = ("nDCG@10", "Hits@1", "Hits@10", "MRR@10", "Recall@10", "Recall@100")

# name -> (description, IndexConfig settings as `dsi index --set` keys, training-minute cap).
# Docid-memorising schemes are capped: on 2 cores their dev quality stays near zero (see the
# curves), so the rest of the budget goes to the configurations that learn.
CONFIGS: dict[str, tuple[str, dict[str, Any], float | None]] = {
    "default": (
        "`dsi index` default: n-gram identifiers (SEAL), copy-trained, BM25 over the n-grams "
        "and their words; a T5 that can copy its input (pointer-generator)",
        {},
        None,
    ),
    "semantic": (
        "semantic docids (hierarchical k-means, MiniLM) with the default model",
        {"docids": "semantic"},
        10.0,
    ),
    "atomic": (
        "atomic docids (one token per document) with the default model",
        {"docids": "atomic"},
        10.0,
    ),
    "seed14": (
        "default with another initialisation and order of examples (train.seed 14 instead of "
        "13; the same dev split): how far a second seed moves the default",
        {"train.seed": 14},
        None,
    ),
}
# Levers that set what is no longer a setting (format version 2 made the model's dimensions,
# dropout, copying, the copy-pair counts, span lengths and weight averaging constants): their
# results stay the record, under experiments/results/ and in experiments/README.md, at the
# commit where each ran.
RETIRED: dict[str, str] = {
    "no_copy": "b7249fd",
    "no_copy_seed14": "b7249fd",
    "dropout": "3b55ac0",
    "salient30": "9344cd7",
    "fixed_copies": "b79645e",
    "large_pool": "b79645e",
    "pooled_copies": "b79645e",
    "short_spans": "d8ae975",
    "vocab16k": "0fe52a4",
    "weight_average": "36efa19",
    "wide": "f89ab7c",
    "wide_slow": "99a2af8",
    "wide_slow_seed14": "a80b24e",
}


def retired_lever(name: str) -> str:
    """The sentence that refuses to run the retired lever ``name`` (``RETIRED``)."""
    return (
        f"The lever {name!r} sets what dsi no longer has as a setting; it ran at commit "
        f"{RETIRED[name]}, whose results stay its record (check that commit out to run it again)."
    )


# ------------------------------------------------------------------------------------ data
# "<dataset>_unsupervised": a dataset with training queries in Cranfield's setting, its models
# learning from the documents alone and all its training queries the dev set. SciFact's 809 can
# tell apart levers for corpora without queries that Cranfield's 45 dev queries cannot.
UNSUPERVISED = "_unsupervised"


def load_dataset(name: str, seed: int, root: Path | None = None) -> dict[str, Any]:
    """Corpus, queries, training qrels (or None) and the dev / test qrels of ``name``
    (``<folder>_unsupervised``: the folder's training queries as dev, none to train on), a
    folder of ``root`` (default: ``../shared/data``)."""
    unsupervised = name.endswith(UNSUPERVISED)
    folder = (root or SHARED) / name.removesuffix(UNSUPERVISED)
    corpus = load_corpus(folder, skip_empty=True)
    queries = load_queries(folder / "queries.jsonl")
    test = load_qrels(folder / "qrels" / "test.tsv")
    rng = random.Random(seed)
    if unsupervised:
        train = None
        dev = load_qrels(folder / "qrels" / "train.tsv")
    elif (folder / "qrels" / "train.tsv").exists():
        train = load_qrels(folder / "qrels" / "train.tsv")
        dev_ids = set(rng.sample(sorted(train), 150))
        dev = {q: train[q] for q in dev_ids}
        train = {q: j for q, j in train.items() if q not in dev_ids}
    else:
        train = None
        dev_ids = set(rng.sample(sorted(test), len(test) // 5))
        dev = {q: test[q] for q in dev_ids}
        test = {q: j for q, j in test.items() if q not in dev_ids}
    return {
        "name": name,
        "corpus": corpus,
        "queries": queries,
        "train": train,
        "dev": dev,
        "test": test,
    }


# ------------------------------------------------------------------------------ evaluation
def ranked_run(search, queries: dict[str, str], qids: list[str]) -> dict[str, list]:
    """The run (qid -> [(doc_id, score)], 100 deep) of ``search(texts, k)`` on ``qids``."""
    ranked = search([queries[q] for q in qids], 100)
    return {q: list(row) for q, row in zip(qids, ranked, strict=True)}


def evaluate(search, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> dict:
    """Metrics of ``search(texts, k) -> [[(doc_id, score)]]`` on the judged queries."""
    qids = sorted(qrels)
    started = time.monotonic()
    run = ranked_run(search, queries, qids)
    seconds = time.monotonic() - started
    metrics = evaluate_run(run, qrels)
    metrics["ms_per_query"] = round(1000 * seconds / len(qids), 1)
    return metrics


def generative_search(index: Any):
    retriever = Retriever.for_index(index, device="cpu")

    def search(texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        hits = retriever.search(texts, k=k, batch_size=32)
        return [[(h.doc_id, h.score) for h in row] for row in hits]

    return search


def latency(index: Any, texts: list[str]) -> dict[str, float]:
    """Milliseconds per query of ``search(k=10)`` at beam 10 and 20, one query at a time and in
    batches of 32 (one warm-up batch first)."""
    retriever = Retriever.for_index(index, device="cpu")
    retriever.search(texts[:4], k=10)
    out = {}
    for beams in (10, 20):
        for batch in (1, 32):
            started = time.perf_counter()
            retriever.search(texts, k=10, batch_size=batch, num_beams=beams)
            out[f"beam{beams}_batch{batch}"] = round(
                1000 * (time.perf_counter() - started) / len(texts), 1
            )
    return out


# ---------------------------------------------------------------------------- the runs
def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The settings that name this script's runs; the scripts that read finished runs take
    them too."""
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget per run")
    parser.add_argument("--eval-every", type=float, default=10.0, help="dev evaluation interval")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--results", type=Path, default=ROOT / "experiments" / "results")


def parse_reader_arguments(
    parser: argparse.ArgumentParser, argv: list[str] | None, decides: bool = False
):
    """The arguments of a script that reads this script's finished runs (never training them,
    so quietly), with logging set up; a usage error when ../shared/data is missing.

    A script that ``decides`` something takes ``--rule``: ``args.rule_record`` is what its
    result records as ``rule`` (a usage error when the rule file is not committed as it is)."""
    add_run_arguments(parser)
    if decides:
        add_rule_argument(parser)
    args = parser.parse_args(argv)
    args.rule_record = checked_rule(parser, args.rule) if decides else None
    args.quiet = True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not SHARED.exists():
        parser.error(f"{SHARED} is missing: the datasets live in ../shared/data.")
    return args


def config_for(name: str, args) -> tuple[dict[str, Any], IndexConfig]:
    if name in RETIRED:
        raise ValueError(retired_lever(name))
    _, settings, cap = CONFIGS[name]
    minutes = args.minutes if cap is None else min(args.minutes, cap)
    settings = {"train.max_minutes": minutes, "train.seed": args.seed, **settings}
    return settings, IndexConfig().updated(settings)


def training_queries(data: dict[str, Any]) -> TrainingQueries | None:
    """The training queries every configuration of ``data`` is built with (None without)."""
    if data["train"] is None:
        return None
    # dev is named too, so it can never be trained on.
    return TrainingQueries(data["queries"], data["train"], dev=data["dev"])


def trained_index(data: dict[str, Any], config: IndexConfig, work: Path, args, **kwargs) -> Any:
    """Build (or, from the checkpoints in ``work``, resume at once) the index of ``config``."""
    return index_class(config.docids).build(
        data["corpus"],
        config,
        training_queries(data),
        work_dir=work,
        progress_bar=not args.quiet,
        **kwargs,
    )


def data_digest(data: dict[str, Any]) -> str:
    """The data digest that an index built now from ``data`` records (its lineage's)."""
    return training_data_digest(data["corpus"], training_queries(data))


@functools.cache
def code_state() -> dict[str, Any]:
    """The git commit (and dirty flag) of the code this process runs, read once at first use."""
    return git_state(ROOT)


def provenance(training_steps: int, digest: str) -> dict[str, Any]:
    """A result's ``provenance``: the code that wrote it, and what its model was trained on."""
    return {**code_state(), "training_steps": training_steps, "data_digest": digest}


def stale_data(saved: dict[str, Any], digest: str) -> str | None:
    """Why the saved result ``saved`` was not trained on the data of ``digest`` (one clause),
    or None when it was."""
    recorded = (saved.get("provenance") or {}).get("data_digest")
    if recorded is None:
        return "it records no data digest (it ran before results recorded their provenance)"
    if recorded != digest:
        return (
            f"it was trained on other data (data digest {recorded[:12]}, the current data give "
            f"{digest[:12]})"
        )
    return None


def fingerprint_of(config: IndexConfig, args) -> dict[str, Any]:
    """What a finished run of ``config`` is kept by (``result.json``'s ``fingerprint``)."""
    # Resolved, so that a changed default of dsi index does not keep a result it no longer makes.
    resolved = resolved_config(config) if config.docids == "ngram" else config
    return {"config": config_fingerprint(resolved), "eval_every": args.eval_every}


def run_dir(data: dict[str, Any], name: str, args) -> Path:
    """Where the run of ``name`` on ``data`` keeps its checkpoints, dev curve and result."""
    return args.work / data["name"] / name


def read_back(data: dict[str, Any], name: str, config: IndexConfig, args) -> Any:
    """The index of ``name``'s trained model under ``config`` (its decoding may differ), read
    back from the run's checkpoint and never trained further; an error where that is gone."""
    build = run_dir(data, name, args) / "build"
    if not (build / "checkpoint").exists():
        raise FileNotFoundError(f"{build} holds no trained model to read back.")
    # A budget of one step, long spent: whatever budget the run had, no step is taken.
    return trained_index(data, config.updated({"train.max_steps": 1}), build, args)


def finished_run(
    data: dict[str, Any], name: str, args, decoding_may_differ: bool = False
) -> tuple[Any, dict[str, Any]] | None:
    """The trained index of ``name``'s finished run and its saved result, read back without
    training; None when it has none, its configuration changed since (``run_config`` trains
    those) or its trained model is gone, where reading it back would train it.

    With ``decoding_may_differ``, a run whose decoding settings alone changed counts too (for
    scripts that set their own; its saved result was decoded with the old ones)."""
    work = run_dir(data, name, args)
    done = work / "result.json"
    if not done.exists():
        return None
    _, config = config_for(name, args)
    saved = json.loads(done.read_text(encoding="utf-8"))
    now = fingerprint_of(config, args)
    if decoding_may_differ and "fingerprint" in saved:
        saved_fingerprint, now = _decoding_apart(saved["fingerprint"])[0], _decoding_apart(now)[0]
    else:
        saved_fingerprint = saved.get("fingerprint")
    if saved_fingerprint != now:
        log.warning("%s/%s: its configuration changed since it ran; left out.", data["name"], name)
        return None
    if not (work / "build" / "checkpoint").exists():
        log.warning("%s/%s: its trained model is gone; left out.", data["name"], name)
        return None
    stale = stale_data(saved, data_digest(data))
    if stale is not None:
        log.warning("%s/%s: %s; left out.", data["name"], name, stale)
        return None
    return read_back(data, name, config, args), saved


def _decoding_apart(fingerprint: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's fingerprint without its decoding-only n-gram settings, and those settings."""
    config = dict(fingerprint["config"])
    if config.get("docids") != "ngram":
        return fingerprint, {}
    config["docid_options"], decoding = split_decoding(config["docid_options"])
    return {**fingerprint, "config": config}, decoding


def run_config(data: dict[str, Any], name: str, args) -> dict[str, Any]:
    """Train one configuration, with dev evaluations on the way, then evaluate it on test.

    A finished run whose decoding settings alone changed is evaluated again (dev at the end of
    training, test), not retrained; its earlier dev points keep the decoding they were measured
    with (``curve_decoding``)."""
    description = CONFIGS[name][0]
    settings, config = config_for(name, args)
    work = run_dir(data, name, args)
    done = work / "result.json"
    fingerprint = fingerprint_of(config, args)
    digest = data_digest(data)
    if done.exists():
        saved = json.loads(done.read_text(encoding="utf-8"))
        stale = stale_data(saved, digest)
        if stale is not None:
            log.warning("%s/%s: %s; training it again.", data["name"], name, stale)
        elif saved.get("fingerprint") == fingerprint:
            log.info("%s/%s: already done, kept.", data["name"], name)
            return {**saved, "description": description}
        trained, old_decoding = _decoding_apart(saved.get("fingerprint") or {"config": {}})
        if stale is None and trained == _decoding_apart(fingerprint)[0]:
            (work / "tuned.json").unlink(missing_ok=True)  # tuned around the old defaults
            return evaluate_again(data, name, args, saved, fingerprint, old_decoding)
    (work / "tuned.json").unlink(missing_ok=True)  # tuned on the model about to be replaced
    curve = measured_curve(work / "curve.json", fingerprint, digest)
    queries = data["queries"]

    def monitor(index: Any, seconds: float) -> None:
        metrics = evaluate(generative_search(index), queries, data["dev"])
        add_point(curve, {"minutes": round(seconds / 60, 2), **metrics})
        # Kept as measured, so that a run resumed from its checkpoint keeps its earlier points.
        record = {"fingerprint": fingerprint, "data_digest": digest, "points": curve}
        atomic_write_text(work / "curve.json", json.dumps(record, indent=2) + "\n")
        log.info(
            "%s/%s at %.1f min: dev nDCG@10 %.3f Hits@10 %.3f",
            data["name"],
            name,
            seconds / 60,
            metrics["nDCG@10"],
            metrics["Hits@10"],
        )

    started = time.monotonic()
    index = trained_index(
        data, config, work / "build", args, monitor=monitor, monitor_minutes=args.eval_every
    )
    build_seconds = time.monotonic() - started
    built = index.lineage[0]
    stats = built["training"]
    dev = evaluate(generative_search(index), queries, data["dev"])
    add_point(curve, {"minutes": round(stats["seconds"] / 60, 2), **dev})
    test = evaluate(generative_search(index), queries, data["test"])
    log.info("%s/%s test: %s", data["name"], name, _brief(test))
    speed = latency(index, [queries[q] for q in sorted(data["test"])[:64]])
    log.info("%s/%s decoding ms/query: %s", data["name"], name, speed)
    result = {
        "name": name,
        "description": description,
        "settings": settings,
        "fingerprint": fingerprint,
        "provenance": provenance(stats["steps"], built["data_digest"]),
        "training": stats,
        "build_seconds": round(build_seconds, 1),
        "dev": dev,
        "test": test,
        "curve": curve,
        "latency_ms_per_query": speed,
    }
    atomic_write_text(done, json.dumps(result, indent=2) + "\n")
    return result


def measured_curve(
    path: Path, fingerprint: dict[str, Any], digest: str | None = None
) -> list[dict[str, Any]]:
    """The dev points measured so far by the run of ``fingerprint`` on the data of ``digest``
    (none for another run, or for one trained on other data)."""
    if not path.exists():
        return []
    record = json.loads(path.read_text(encoding="utf-8"))
    same = record.get("fingerprint") == fingerprint and record.get("data_digest") == digest
    return record["points"] if same else []


def add_point(curve: list[dict[str, Any]], point: dict[str, Any]) -> None:
    """Append ``point``, dropping points measured at or after it: a run resumed from an earlier
    checkpoint (or started afresh) measures those again."""
    curve[:] = [p for p in curve if p["minutes"] < point["minutes"]] + [point]


def evaluate_again(
    data: dict[str, Any],
    name: str,
    args,
    saved: dict[str, Any],
    fingerprint: dict[str, Any],
    old_decoding: dict[str, Any],
) -> dict[str, Any]:
    """The finished run ``saved`` of ``name``, its trained model evaluated with new decoding."""
    settings, config = config_for(name, args)
    index = read_back(data, name, config, args)
    log.info("%s/%s: decoding settings changed, evaluating again.", data["name"], name)
    dev = evaluate(generative_search(index), data["queries"], data["dev"])
    test = evaluate(generative_search(index), data["queries"], data["test"])
    log.info("%s/%s test: %s", data["name"], name, _brief(test))
    speed = latency(index, [data["queries"][q] for q in sorted(data["test"])[:64]])
    curve = saved["curve"][:-1] + [{"minutes": saved["curve"][-1]["minutes"], **dev}]
    result = {
        **saved,
        "description": CONFIGS[name][0],
        "settings": settings,
        "fingerprint": fingerprint,
        # The code that evaluated it again; the model's training as recorded (run_config only
        # evaluates again a run whose data digest is the current one).
        "provenance": provenance(
            saved["provenance"]["training_steps"], saved["provenance"]["data_digest"]
        ),
        "dev": dev,
        "test": test,
        "curve": curve,
        # The first evaluation's decoding, which every dev point but the last was measured with.
        "curve_decoding": saved.get("curve_decoding", old_decoding),
        "latency_ms_per_query": speed,
    }
    atomic_write_text(
        run_dir(data, name, args) / "result.json", json.dumps(result, indent=2) + "\n"
    )
    return result


# Decoding settings tried on dev for the "+tuned" rows (lists: JSON reads tuples back as lists).
TUNING_GRID: dict[str, list[float]] = {
    "num_beams": [10, 15, 20],
    "gamma": [0.1, 0.25, 0.5],
    "alpha": [2.0, 3.0, 4.0],
    "unigrams": [0, 50, 100, 200],
    "word_weight": [0.0, 0.5, 0.75, 1.0, 3.0],
}


def _fewer_unigrams(generation: Generation, unigrams: int) -> Generation:
    """``generation`` as search() would have made it with only the ``unigrams`` best first
    tokens: words are begun by those alone (each completion depends on its first token only)."""
    kept = generation.unigrams[:unigrams]
    firsts = {ngram[0] for ngram, _ in kept}
    words = [w for w in generation.words if w[0][0] in firsts]
    return generation._replace(unigrams=kept, words=words)


def tune_decoding(data: dict[str, Any], name: str, args) -> dict[str, Any]:
    """The trained n-gram configuration ``name`` with its document scoring tuned on dev, then test.

    The model stays as it is; the grid spans the beam size, both scorings (BM25 over the
    n-grams with its ``gamma``, SEAL's intersective score with its ``alpha``), the number of
    first-token unigrams and the weight of the n-grams' words, so the JSON also holds the
    scorings' dev comparison. A result tuned over another grid, or around other decoding
    settings, is tuned again.
    """
    work = run_dir(data, name, args)
    done = work / "tuned.json"
    _, config = config_for(name, args)
    options = SealOptions.from_config(resolved_config(config))
    base = options.for_search(with_queries=data["train"] is not None)
    # What the grid leaves as it is: JSON-normalised, as saved.
    # Every parameter, constants included: a changed constant of search is tuned around again.
    untuned = json.loads(json.dumps(dataclasses.asdict(base)))
    trained = json.loads((work / "result.json").read_text(encoding="utf-8"))
    if done.exists():
        saved = json.loads(done.read_text(encoding="utf-8"))
        same_model = saved.get("provenance", {}).get("data_digest") == data_digest(data)
        if (
            same_model
            and saved.get("tuning_grid") == TUNING_GRID
            and saved.get("untuned") == untuned
        ):
            return saved
    index = read_back(data, name, config, args)
    retriever = NgramRetriever(index, device="cpu")
    retriever.options = dataclasses.replace(base, unigrams=max(TUNING_GRID["unigrams"]))
    qids = sorted(data["dev"])
    scorings = [{"scoring": "bm25", "gamma": g} for g in TUNING_GRID["gamma"]]
    scorings += [{"scoring": "intersective", "alpha": a} for a in TUNING_GRID["alpha"]]
    grid = []
    for num_beams in TUNING_GRID["num_beams"]:
        generated = retriever.generate([data["queries"][q] for q in qids], num_beams=num_beams)
        for scoring in scorings:
            for unigrams in TUNING_GRID["unigrams"]:
                # As search() would have generated them with this many unigrams.
                cut = [_fewer_unigrams(g, unigrams) for g in generated]
                for word_weight in TUNING_GRID["word_weight"]:
                    retriever.options = dataclasses.replace(
                        base, unigrams=unigrams, word_weight=word_weight, **scoring
                    )
                    ranked = retriever.rank_generations(cut, 100, num_beams=num_beams)
                    run = {
                        qid: [(hit.doc_id, hit.score) for hit in hits]
                        for qid, hits in zip(qids, ranked, strict=True)
                    }
                    grid.append(
                        {
                            "num_beams": num_beams,
                            **scoring,
                            "unigrams": unigrams,
                            "word_weight": word_weight,
                            "dev": evaluate_run(run, data["dev"]),
                        }
                    )
    best = max(grid, key=lambda g: (g["dev"]["nDCG@10"], g["dev"]["Hits@10"]))
    chosen = {key: value for key, value in best.items() if key != "dev"}
    log.info(
        "%s/%s decoding tuned on dev: %s (dev nDCG@10 %.3f)",
        data["name"],
        name,
        chosen,
        best["dev"]["nDCG@10"],
    )
    num_beams = chosen["num_beams"]
    retriever.options = dataclasses.replace(
        base, **{k: v for k, v in chosen.items() if k != "num_beams"}
    )

    def search(texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        hits = retriever.search(texts, k=k, num_beams=num_beams)
        return [[(h.doc_id, h.score) for h in row] for row in hits]

    result = {
        "name": f"{name}+tuned",
        "description": f"{name} with {', '.join(f'{k}={v}' for k, v in chosen.items())} "
        "chosen on dev",
        "provenance": provenance(
            trained["provenance"]["training_steps"], trained["provenance"]["data_digest"]
        ),
        "training": trained["training"],
        "dev": best["dev"],
        "test": evaluate(search, data["queries"], data["test"]),
        "tuning_grid": TUNING_GRID,
        "untuned": untuned,
        "grid": grid,
    }
    atomic_write_text(done, json.dumps(result, indent=2) + "\n")
    return result


def run_bm25(data: dict[str, Any]) -> dict[str, Any]:
    bm25 = BM25Retriever().index(data["corpus"])
    return {
        "name": "bm25",
        "description": "BM25 (bm25s, stopwords + Snowball), no training",
        "dev": evaluate(bm25.search, data["queries"], data["dev"]),
        "test": evaluate(bm25.search, data["queries"], data["test"]),
    }


# ----------------------------------------------------------------------------- reporting
def _brief(metrics: dict[str, float]) -> str:
    return " ".join(f"{m} {metrics[m]:.3f}" for m in METRICS)


def write_report(data: dict[str, Any], rows: list[dict[str, Any]], args) -> None:
    name = data["name"]
    payload = {
        "dataset": name,
        "documents": len(data["corpus"].doc_ids),
        "train_queries": 0 if data["train"] is None else len(data["train"]),
        "dev_queries": len(data["dev"]),
        "test_queries": len(data["test"]),
        "minutes": args.minutes,
        "seed": args.seed,
        "command": "python " + " ".join(sys.argv),
        # The code that wrote this report; each row's provenance names its own run's.
        "provenance": code_state(),
        # The rule this run decides by and the commit that holds it; null for a lever run
        # without one (it decides nothing).
        "rule": args.rule_record,
        "results": rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results / f"quality_{name}.json", json.dumps(payload, indent=2) + "\n")
    lines = [
        f"# {name}: test set ({payload['test_queries']} queries), {payload['documents']} documents",
        "",
        f"Training from scratch, at most {args.minutes:g} CPU-minutes (2 cores), seed {args.seed}; "
        f"{payload['train_queries']} training queries, dev {payload['dev_queries']} queries.",
        "",
        "| retriever | " + " | ".join(METRICS) + " | train min | epochs | ms/query |",
        "|---|" + "---|" * (len(METRICS) + 3),
    ]
    for row in rows:
        t = row["test"]
        training = row.get("training") or {}
        minutes = f"{training['seconds'] / 60:.1f}" if training else "-"
        epochs = str(training.get("epochs_completed", "-")) if training else "-"
        lines.append(
            f"| {row['name']}: {row['description']} | "
            + " | ".join(f"{t[m]:.3f}" for m in METRICS)
            + f" | {minutes} | {epochs} | {t['ms_per_query']} |"
        )
    for row in rows:
        resumed = row.get("training", {}).get("resumed_from_step", 0)
        if resumed:
            lines += [
                "",
                f"{row['name']}: stopped and resumed from its checkpoint at step {resumed}; its "
                "training minutes and epochs count every sitting.",
            ]
        if "curve_decoding" in row:
            old, now = row["curve_decoding"], _decoding_apart(row["fingerprint"])[1]
            changes = ", ".join(
                f"{key} {old.get(key, 'unset')} -> {value}"
                for key, value in now.items()
                if old.get(key) != value
            )
            lines += [
                "",
                f"{row['name']}: evaluated again on the same trained model after its decoding "
                f"settings changed ({changes}); the dev points of its curve before the last were "
                "measured with the old ones.",
            ]
    timed = [row for row in rows if "latency_ms_per_query" in row]
    if timed:
        keys = list(timed[0]["latency_ms_per_query"])
        lines += [
            "",
            "Decoding latency, ms per query (search k=10, CPU, 2 threads):",
            "",
            "| retriever | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for row in timed:
            cells = " | ".join(str(row["latency_ms_per_query"][k]) for k in keys)
            lines.append(f"| {row['name']} | {cells} |")
    atomic_write_text(args.results / f"quality_{name}.md", "\n".join(lines) + "\n")
    plot(name, rows, args.results / f"quality_{name}.png")


def plot(name: str, rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot.")
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for row in rows:
        if "curve" in row:
            # A run evaluated again with new decoding: its last point alone used it.
            again = "curve_decoding" in row
            curve = row["curve"][:-1] if again else row["curve"]
            xs = [p["minutes"] for p in curve]
            line = ax.plot(xs, [p["nDCG@10"] for p in curve], marker="o", label=row["name"])
            if again:
                end = row["curve"][-1]
                ax.plot(
                    [end["minutes"]],
                    [end["nDCG@10"]],
                    marker="D",
                    linestyle="",
                    color=line[0].get_color(),
                    label=f"{row['name']}, trained model rescored with today's decoding",
                )
        elif "training" in row:  # the same model, decoding tuned: one point at its end
            minutes = row["training"]["seconds"] / 60
            ax.plot(
                [minutes],
                [row["dev"]["nDCG@10"]],
                marker="*",
                markersize=12,
                linestyle="",
                label=row["name"],
            )
        else:
            ax.axhline(row["dev"]["nDCG@10"], color="black", linestyle="--", label=row["name"])
    ax.set_xlabel("training minutes (2 CPU cores)")
    ax.set_ylabel("dev nDCG@10")
    ax.set_title(f"{name}: quality against training time")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "cranfield"])
    parser.add_argument(
        "--configs", nargs="+", default=["default", "semantic"], choices=[*CONFIGS, *RETIRED]
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--no-tune-decoding",
        dest="tune_decoding",
        action="store_false",
        help="skip the extra row of n-gram configurations with the scoring tuned on dev",
    )
    parser.add_argument("--quiet", action="store_true")
    add_rule_argument(parser)
    args = parser.parse_args(argv)
    retired = [name for name in args.configs if name in RETIRED]
    if retired:
        parser.error(retired_lever(retired[0]))
    # Before any run: a lever's runs are decided by a rule committed before them, or by none.
    args.rule_record = checked_rule(parser, args.rule)
    code_state()  # read now, before any training: the commit of the code that runs
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not SHARED.exists():
        parser.error(f"{SHARED} is missing: the datasets live in ../shared/data.")
    started = time.monotonic()
    for dataset in args.datasets:
        data = load_dataset(dataset, args.seed)
        rows = [run_bm25(data)]
        log.info("%s bm25 test: %s", dataset, _brief(rows[0]["test"]))
        for name in args.configs:
            rows.append(run_config(data, name, args))
            write_report(data, rows, args)
            if args.tune_decoding and CONFIGS[name][1].get("docids", "ngram") == "ngram":
                rows.append(tune_decoding(data, name, args))
                write_report(data, rows, args)
        write_report(data, rows, args)
    log.info("Done in %.1f min.", (time.monotonic() - started) / 60)


if __name__ == "__main__":
    main()
