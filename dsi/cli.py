"""The ``dsi`` command line: index a corpus, add documents to an index, search it, evaluate it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docid.guard import FileKind
from dsi.metrics import RUN_FILE

log = logging.getLogger("dsi")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    _quiet_dependencies(quiet=getattr(args, "quiet", False))
    from dsi.data import DataError
    from dsi.index_format import IndexLoadError

    try:
        return args.func(args)
    except (DataError, IndexLoadError, ValueError, FileNotFoundError) as exc:
        print(f"dsi: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dsi: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130


def _quiet_dependencies(quiet: bool = False) -> None:
    """Keep our own progress bars and log lines; silence the chatter of libraries underneath.

    The hub's download bars stay (unless ``quiet``): a ``--model`` or ``--index`` from the hub
    may take minutes to download, and a person should see that it does.
    """
    for name in ("bm25s", "faiss", "faiss.loader", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from huggingface_hub.utils import enable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    # transformers' own bars (loading and writing weights) are chatter on every load; this
    # turns off the hub's bars too, which come back just after.
    hf_logging.disable_progress_bar()
    if not quiet:
        enable_progress_bars()


def _add_training_query_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queries", default=None, help="training queries (jsonl/tsv)")
    p.add_argument("--qrels", default=None, help="training judgements for --queries")
    p.add_argument(
        "--train-split",
        default="train",
        help="for a BEIR folder: the qrels split whose queries train retrieval, if it exists",
    )
    p.add_argument("--no-train-queries", action="store_true", help="learn from documents alone")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, unless there is none to show (None, off, empty) or its help
    already says it in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class _DocidKinds:
    """The ``--docids`` choices: :func:`dsi.kinds.docid_kinds`, the one dispatch. Looked up only
    when argparse checks or prints them, since importing it imports torch (slow for --help)."""

    def __iter__(self) -> Iterator[str]:
        from dsi.kinds import docid_kinds

        return iter(docid_kinds())

    def __contains__(self, value: object) -> bool:
        return value in list(self)


def _subcommand(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)


def _add_index_arg(p: argparse.ArgumentParser, text: str = "index directory to read") -> None:
    # Any of them may be a hub repo id (dsi.hub.locate_index): fetched into the hub's cache.
    p.add_argument(
        "--index", required=True, metavar="DIR", help=f"{text}, or a hub repo id (owner/name)"
    )


def _add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if found)"
    )


def _add_num_beams_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-beams",
        type=int,
        default=None,
        help="beams of the constrained beam search, at least k (default: the index's setting)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsi", description=__doc__)
    from dsi import __version__
    from dsi.config import IndexConfig, TrainConfig

    parser.add_argument(
        "--version", action="version", version=f"dsi {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, help="what to do")

    p = _subcommand(sub, "index", "build an index directory from a corpus")
    p.add_argument("--corpus", required=True, help="BEIR folder, .jsonl or .tsv file")
    p.add_argument("--output", required=True, metavar="DIR", help="index directory to write")
    p.add_argument(
        "--docids",
        default=None,
        choices=_DocidKinds(),
        metavar="KIND",
        help=f"identifier kind, one of: %(choices)s (default: the config's, {IndexConfig.docids})",
    )
    p.add_argument(
        "--model",
        default=None,
        help="local directory or hub name of a pretrained seq2seq checkpoint to start from (a T5 "
        "gets the copy head, another architecture trains without it); its learning rate "
        "defaults to 3e-4 (default: a new T5 from the config)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="JSON file of settings, nested as index.json holds them (default: built-in)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting (docs/settings.md lists them), e.g. train.batch_size=32 or "
        "docid_options.preset=without_queries (repeatable)",
    )
    _add_training_query_args(p)
    p.add_argument(
        "--skip-empty", action="store_true", help="leave out documents whose text is empty"
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help=f"training time budget (default: the config's, {TrainConfig.max_minutes:g})",
    )
    p.add_argument(
        "--max-steps", type=int, default=None, help="training step budget (default: none)"
    )
    p.add_argument(
        "--memorization-sample",
        type=int,
        default=None,
        metavar="N",
        help="docid kinds: after training, measure memorization@1 and @10 on N documents drawn "
        "with a fixed seed (all when fewer; 0: not measured) and keep it in the index's "
        "statistics, which dsi info shows (default: 1000)",
    )
    p.add_argument("--quiet", action="store_true", help="only warnings, no progress bars")
    p.set_defaults(func=_cmd_index)

    p = _subcommand(sub, "search", "search an index; prints one JSON line per query (or --format)")
    _add_index_arg(p)
    p.add_argument("-k", type=int, default=10, help="documents returned per query")
    p.add_argument(
        "--queries",
        default=None,
        metavar="FILE",
        help="file of queries with their ids (jsonl/tsv) instead of arguments",
    )
    p.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="write the results to FILE (replaced whole, only if dsi search wrote it) instead "
        "of printing them (default: standard output)",
    )
    p.add_argument(
        "--format",
        default="jsonl",
        choices=sorted(SEARCH_FORMATS),
        help="jsonl: one JSON object per query; trec: a TREC run (qid Q0 docid rank score "
        "dsi); tsv: query_id, doc_id, rank, score under a header. Queries given as arguments "
        "have the ids 0, 1, ...",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="with --format jsonl: under each hit's 'explain', what scored it (n-gram indexes: "
        "the generated n-grams and words with their scores; docid indexes: the decoded docid "
        "and its log-probability)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="queries decoded together")
    _add_num_beams_arg(p)
    _add_device_arg(p)
    p.add_argument("--quiet", action="store_true", help="only warnings, no progress bars")
    p.add_argument("query", nargs="*", help="queries to search (each one argument)")
    p.set_defaults(func=_cmd_search)

    p = _subcommand(sub, "eval", "evaluate an index on queries with judgements")
    _add_index_arg(p)
    p.add_argument(
        "--queries",
        default=None,
        help="queries to evaluate (jsonl/tsv), or with --split a BEIR folder (default with "
        "--split: the folder of the index's corpus)",
    )
    p.add_argument("--qrels", default=None, help="judgements (TSV: query-id, corpus-id, score)")
    p.add_argument(
        "--split",
        default=None,
        metavar="NAME",
        help="a BEIR folder's split: its queries.jsonl and qrels/NAME.tsv instead of --qrels",
    )
    p.add_argument("-k", type=int, default=100, help="documents retrieved per query")
    _add_num_beams_arg(p)
    p.add_argument("--batch-size", type=int, default=16, help="queries decoded together")
    p.add_argument(
        "--baselines",
        default=None,
        help="comma list of baselines ranked on the same queries: bm25, bm25+queries (documents "
        "+ the index's training queries), bm25+rm3 (pseudo-relevance feedback), dense (MiniLM)",
    )
    p.add_argument("--bm25", action="store_true", help="short for --baselines bm25")
    p.add_argument(
        "--compare",
        action="store_true",
        help="paired bootstrap 95%% intervals of dsi minus each baseline (10,000 resamples, seed 0)",
    )
    p.add_argument("--per-query", default=None, metavar="FILE", help="per-query metrics (JSONL)")
    p.add_argument(
        "--memorization",
        action="store_true",
        help="also report memorization@1 and @10 under dsi: the share of indexed documents whose "
        "first indexing view decodes their own docid (docid indexes only)",
    )
    p.add_argument(
        "--memorization-sample",
        type=int,
        default=None,
        metavar="N",
        help="measure memorization on N documents drawn with a fixed seed (default: all)",
    )
    p.add_argument(
        "--run-file",
        default=None,
        help="TREC run file to write (default: INDEX.QRELS-NAME.trec beside the index)",
    )
    _add_device_arg(p)
    p.add_argument("--quiet", action="store_true", help="only warnings, no progress bars")
    p.set_defaults(func=_cmd_eval)

    p = _subcommand(sub, "add", "add new documents to an index (continual indexing)")
    _add_index_arg(p, "index directory to extend")
    p.add_argument("--corpus", required=True, help="the new documents: BEIR folder, .jsonl or .tsv")
    p.add_argument("--output", default=None, help="index directory to write (default: --index)")
    _add_training_query_args(p)
    p.add_argument(
        "--replay",
        default="documents",
        choices=["none", "queries", "generative", "documents"],
        help="what of the indexed documents is rehearsed while learning the new ones",
    )
    p.add_argument(
        "--replay-ratio", type=float, default=1.0, help="replayed examples per new example"
    )
    p.add_argument("--sam", action="store_true", help="sharpness-aware minimisation")
    p.add_argument(
        "--sam-rho", type=float, default=0.05, help="SAM's neighbourhood radius (with --sam)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an AddConfig setting, e.g. replay_docs=500 or train.learning_rate=1e-3",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="training time budget (default: the index's own)",
    )
    p.add_argument(
        "--max-steps", type=int, default=None, help="training step budget (default: none)"
    )
    p.add_argument("--quiet", action="store_true", help="only warnings, no progress bars")
    p.set_defaults(func=_cmd_add)

    p = _subcommand(
        sub, "info", "describe an index directory from its manifest (the model is not loaded)"
    )
    p.add_argument("directory", metavar="DIR", help="index directory to describe")
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="also draw the training log (loss over steps and time, dev metrics if logged) "
        "into FILE.png (or .pdf, .svg; needs matplotlib)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also check the sha256 of every file (a load hashes files up to 64 MiB and checks "
        "the size of larger ones, which it maps)",
    )
    p.set_defaults(func=_cmd_info)

    p = _subcommand(sub, "serve", "serve an index over HTTP (needs the serve extra)")
    _add_index_arg(p, "index directory to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    p.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one")
    _add_device_arg(p)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads for decoding (default: torch's)",
    )
    _add_num_beams_arg(p)
    p.add_argument("--batch-size", type=int, default=None, help="search batch size (default 32)")
    p.add_argument(
        "--max-batch", type=int, default=None, help="most queries in one decode (default 32)"
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=None,
        help="how long a request waits for others to batch with (default 5)",
    )
    p.add_argument(
        "--max-queries", type=int, default=None, help="most queries per request (default 64)"
    )
    p.add_argument("--max-query-chars", type=int, default=None, help="longest query (default 2000)")
    p.add_argument("--max-k", type=int, default=None, help="largest k (default 100)")
    p.add_argument(
        "--max-body-bytes", type=int, default=None, help="largest body (default 1048576)"
    )
    p.add_argument(
        "--max-pending",
        type=int,
        default=None,
        help="queued queries before requests get a 503 (default 1024)",
    )
    p.add_argument("--quiet", action="store_true", help="only warnings, no progress bars")
    p.set_defaults(func=_cmd_serve)
    return parser


# --------------------------------------------------------------------------- index
def _cmd_index(args: argparse.Namespace) -> int:
    from docid.guard import claim
    from dsi.index_format import WORK_KIND, claim_index

    config = _read_config(args)
    output = Path(args.output)
    work_dir = output.parent / f".{output.name}.work"
    # Under `accelerate launch` every process runs this; PartialState says which one we are.
    state = _process_state()
    if not state.is_main_process:
        # The main process checks and locks for all of them: another process checking the work
        # directory could see it half made by the main one (created, its fingerprint not yet
        # written) and refuse it. A refusal ends the main process, and the launcher the rest.
        return _index(args, config, output, work_dir, state)
    # Before any work: refuse what dsi did not write, and keep a second writer out.
    with claim_index(output), claim(work_dir, WORK_KIND):
        return _index(args, config, output, work_dir, state)


def _index(args: argparse.Namespace, config: Any, output: Path, work_dir: Path, state) -> int:
    from dsi.config import IndexConfig
    from dsi.data import load_corpus
    from dsi.evaluation import BUILD_MEMORIZATION_SAMPLE, record_memorization
    from dsi.kinds import index_class, index_kind, prepare_search, prepare_work_dir
    from dsi.model import model_label

    sample = args.memorization_sample
    assert isinstance(config, IndexConfig)
    if sample is not None and sample < 0:
        raise ValueError(f"--memorization-sample must be 0 or more, got {sample}.")
    if sample and index_kind(config.docids) == "ngram":
        raise ValueError(
            "--memorization-sample measures docid decoding, and n-gram identifiers (the default "
            "kind) give no document its own identifier to decode."
        )
    corpus = load_corpus(args.corpus, skip_empty=args.skip_empty)
    log.info("Loaded %d documents from %s.", len(corpus.doc_ids), args.corpus)
    training = _training_queries(args)
    started = time.monotonic()
    builder: Any = index_class(config.docids)
    if state.num_processes > 1:
        prepare_work_dir(state, corpus, config, training, work_dir)
    index = builder.build(corpus, config, training, work_dir=work_dir, progress_bar=not args.quiet)
    if not state.is_main_process:
        return 0  # only the main process writes the index and reports
    if index_kind(config.docids) != "ngram" and sample != 0:
        # Part of the build's statistics (its lineage entry), measured before the index is saved.
        record_memorization(index, BUILD_MEMORIZATION_SAMPLE if sample is None else sample)
    prepare_search(index, progress_bar=not args.quiet, work_dir=work_dir)
    index.save(output)
    shutil.rmtree(work_dir, ignore_errors=True)
    stats = index.lineage[-1]
    report = {
        "index": str(output),
        "documents": len(index.corpus.doc_ids),
        "docids": config.docids,
        "model": model_label(config.model),
        "training": stats["training"],
    }
    if "memorization" in stats:
        report["memorization"] = stats["memorization"]
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report))
    return 0


def _process_state():
    """accelerate's view of this process among those launched together.

    accelerate forms a process group on the CPU (gloo) only when asked for the CPU, and its
    ``launch --cpu`` starts several processes only through mpirun. So processes launched by
    torchrun or ``accelerate launch --multi_gpu`` on a machine without CUDA (or with
    ``ACCELERATE_USE_CPU=1``) are told to use the CPU; otherwise each would train alone.
    """
    import os

    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (launched and not torch.cuda.is_available())
    return PartialState(cpu=cpu)


def _read_config(args: argparse.Namespace):
    from dsi.config import IndexConfig, parse_assignments

    data: dict[str, Any] = IndexConfig().to_dict()
    given: dict[str, Any] = {}
    if args.config:
        given = json.loads(Path(args.config).read_text())
        _merge(data, given)
    settings = parse_assignments(args.set)
    if args.docids:
        settings["docids"] = args.docids
    if args.model:
        settings["model"] = args.model
    if args.max_minutes is not None:
        settings["train.max_minutes"] = args.max_minutes
    if args.max_steps is not None:
        settings["train.max_steps"] = args.max_steps
        if args.max_minutes is None:
            settings["train.max_minutes"] = None
    config = IndexConfig.from_dict(data).updated(settings)
    lr_given = "train.learning_rate" in settings or "learning_rate" in given.get("train", {})
    if config.model and not lr_given:
        from dsi.model import PRETRAINED_LEARNING_RATE

        # TrainConfig's default suits a small T5 trained from scratch, not a pretrained start.
        config = config.updated({"train.learning_rate": PRETRAINED_LEARNING_RATE})
    return config


def _merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


# ---------------------------------------------------------------------------- add
def _cmd_add(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from docid.guard import claim
    from dsi.config import AddConfig, parse_assignments
    from dsi.data import load_corpus
    from dsi.index_format import WORK_KIND, claim_index
    from dsi.kinds import load_index, prepare_search
    from dsi.model import is_hub_name

    if PartialState().num_processes > 1:
        raise ValueError("dsi add runs in a single process; start it without accelerate launch.")
    settings: dict[str, Any] = {"train": {}}
    for key, value in parse_assignments(args.set).items():
        group, dot, leaf = key.partition(".")
        if dot and group != "train":
            raise ValueError(f"--set {key}: only train.* settings are grouped.")
        if dot:
            settings["train"][leaf] = value
        else:
            settings[key] = value
    settings.update(replay=args.replay, replay_ratio=args.replay_ratio, sam=args.sam)
    settings.update(sam_rho=args.sam_rho, max_steps=args.max_steps, max_minutes=args.max_minutes)
    try:
        config = AddConfig(**settings)
    except TypeError as exc:
        raise ValueError(f"--set names an unknown AddConfig setting ({exc}).") from exc

    source = Path(args.index)
    if args.output is None and not source.exists() and is_hub_name(args.index):
        raise ValueError(
            f"dsi add --index {args.index} reads a hub repo: name the index to write with --output."
        )
    output = Path(args.output) if args.output else source
    work_dir = output.parent / f".{output.name}.add.work"
    with claim_index(output), claim(work_dir, WORK_KIND):
        corpus = load_corpus(args.corpus)
        log.info("Loaded %d new documents from %s.", len(corpus.doc_ids), args.corpus)
        training = _training_queries(args)
        # The old index is only read here; it is replaced (or --output written) once complete.
        index = load_index(source)
        started = time.monotonic()
        entry = index.add(corpus, training, config, work_dir=work_dir, progress_bar=not args.quiet)
        prepare_search(index, progress_bar=not args.quiet, work_dir=work_dir)
        index.save(output)
        shutil.rmtree(work_dir, ignore_errors=True)
    print(
        json.dumps(
            {
                "index": str(output),
                "added": entry["documents"],
                "documents": entry["total_documents"],
                "new_symbols": entry.get("new_symbols", 0),
                "replay": entry["replay"],
                "training": entry["training"],
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    return 0


def _training_queries(args: argparse.Namespace):
    """Training queries from --queries/--qrels, or the BEIR folder's --train-split, if any."""
    from dsi.data import TrainingQueries, load_qrels, load_queries

    if args.no_train_queries:
        return None
    queries_path, qrels_path = args.queries, args.qrels
    folder = Path(args.corpus)
    if queries_path is None and folder.is_dir():
        split = folder / "qrels" / f"{args.train_split}.tsv"
        if split.is_file() and (folder / "queries.jsonl").is_file():
            queries_path, qrels_path = folder / "queries.jsonl", split
    if (queries_path is None) != (qrels_path is None):
        raise ValueError("--queries and --qrels go together: give both or neither.")
    if queries_path is None:
        return None
    queries = load_queries(queries_path)
    training = TrainingQueries(queries, load_qrels(qrels_path))
    log.info(
        "Training retrieval on the %d queries judged in %s (the other %d of %s are not read).",
        len(training),
        qrels_path,
        len(queries) - len(training),
        queries_path,
    )
    return training


# -------------------------------------------------------------------------- search
TSV_HEADER = "query_id\tdoc_id\trank\tscore"


def _is_search_record(line: str) -> bool:
    """A line of ``dsi search --format jsonl``: a JSON object with a query and its hits."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "query" in record and "hits" in record


# What --output may replace: a file dsi search wrote in the same format, or an empty one.
SEARCH_JSONL = FileKind("a dsi search output (JSONL)", _is_search_record)
SEARCH_TSV = FileKind("a dsi search output (TSV)", lambda line: line.rstrip("\r\n") == TSV_HEADER)
SEARCH_FORMATS = {"jsonl": SEARCH_JSONL, "trec": RUN_FILE, "tsv": SEARCH_TSV}


def _cmd_search(args: argparse.Namespace) -> int:
    from docid.guard import ensure_replaceable
    from docid.io import atomic_write_text
    from dsi.data import load_queries
    from dsi.metrics import trec_lines, write_trec_run
    from dsi.retriever import Retriever, check_queries

    if args.queries and args.query:
        raise ValueError("Give queries as arguments or with --queries FILE, not both.")
    if args.queries:
        items: list[tuple[str | None, str]] = list(load_queries(args.queries).items())
    else:
        items = [(None, q) for q in args.query]
    if not items:
        raise ValueError("Give queries as arguments or with --queries FILE.")
    check_queries([q for _, q in items])  # before the index loads: a blank query is a mistake
    if args.explain and args.format != "jsonl":
        raise ValueError("--explain shows in the jsonl format only; drop --format or --explain.")
    output = Path(args.output) if args.output else None
    if output is not None:  # before the search: never overwrite a user's file
        ensure_replaceable(output, SEARCH_FORMATS[args.format])
    retriever = Retriever.load(args.index, device=args.device)
    texts = [q for _, q in items]
    if args.explain:
        results, explained = retriever.explain(
            texts, k=args.k, batch_size=args.batch_size, num_beams=args.num_beams
        )
    else:
        if args.queries:  # a file of queries gets a progress bar; a few arguments need none
            results = _search_with_bar(retriever, texts, args)
        else:
            results = retriever.search(
                texts, k=args.k, batch_size=args.batch_size, num_beams=args.num_beams
            )
        explained = [[{}] * len(hits) for hits in results]
    if args.format == "jsonl":
        lines = []
        for (qid, text), hits, why in zip(items, results, explained, strict=True):
            record: dict[str, Any] = {"query": text}
            if qid is not None:
                record = {"query_id": qid, **record}
            record["hits"] = [
                {"doc_id": h.doc_id, "score": round(h.score, 5), **({"explain": e} if e else {})}
                for h, e in zip(hits, why, strict=True)
            ]
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        # Queries given as arguments are numbered in order; a file's queries keep their ids.
        run = {
            str(i) if qid is None else qid: hits
            for i, ((qid, _), hits) in enumerate(zip(items, results, strict=True))
        }
        if args.format == "trec":
            if output is not None:
                write_trec_run(run, output, tag="dsi")
                return 0
            lines = trec_lines(run, tag="dsi")
        else:
            lines = [TSV_HEADER + "\n"]
            for qid, hits in run.items():
                for position, hit in enumerate(hits, start=1):
                    lines.append(f"{qid}\t{hit.doc_id}\t{position}\t{float(hit.score)!r}\n")
    if output is not None:
        atomic_write_text(output, "".join(lines))
    else:
        sys.stdout.write("".join(lines))
    return 0


# ---------------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> int:
    from docid.guard import ensure_replaceable
    from dsi import evaluation
    from dsi.baselines import build_baseline, check_available, parse_baselines
    from dsi.data import load_qrels, load_queries
    from dsi.metrics import write_trec_run
    from dsi.model import model_label
    from dsi.retriever import Retriever

    names = parse_baselines(args.baselines or "")
    if args.bm25 and "bm25" not in names:
        names.insert(0, "bm25")
    if args.compare and not names:
        raise ValueError("--compare compares dsi with baselines; name them with --baselines.")
    args.queries, args.qrels = _eval_files(args)
    run_file = Path(args.run_file or f"{Path(args.index)}.{Path(args.qrels).stem}.trec")
    files = {"dsi": run_file}
    files.update({name: run_file.with_name(f"{run_file.stem}.{name}.trec") for name in names})
    for path in files.values():
        ensure_replaceable(path, RUN_FILE)  # before the search: never overwrite a user's file
    if args.per_query:
        ensure_replaceable(Path(args.per_query), evaluation.PER_QUERY_FILE)
    if args.memorization_sample is not None and not args.memorization:
        raise ValueError("--memorization-sample N goes with --memorization.")
    if args.memorization:  # refused before the index loads
        _check_memorization(args)
    queries = load_queries(args.queries)
    qrels = load_qrels(args.qrels)
    judged = [qid for qid in queries if qid in qrels]
    if not judged:
        raise ValueError(f"None of the queries in {args.queries} has judgements in {args.qrels}.")
    texts = [queries[qid] for qid in judged]
    retriever = Retriever.load(args.index, device=args.device)
    index = retriever.index
    training_pairs = list(index.training_pairs)
    if args.split and evaluation.is_training_split(texts, training_pairs):
        log.warning("Split %r is the split this index was trained on.", args.split)
    evaluation.check_not_training(texts, training_pairs, args.qrels)
    for name in names:  # refused before minutes of ranking, not after
        check_available(name, bool(training_pairs))

    started = time.monotonic()
    results = _search_with_bar(retriever, texts, args)
    seconds = time.monotonic() - started
    ranked = [[(h.doc_id, h.score) for h in hits] for hits in results]
    runs: dict[str, Any] = {"dsi": dict(zip(judged, ranked, strict=True))}
    write_trec_run(runs["dsi"], run_file, tag="dsi")
    parameters = {}
    for name in names:
        baseline = build_baseline(
            name,
            index.corpus,
            training_pairs,
            show_progress=not args.quiet,
            language=index.config.language,
        )
        runs[name] = dict(zip(judged, baseline.search(texts, k=args.k), strict=True))
        write_trec_run(runs[name], files[name], tag=name)
        parameters[name] = baseline.parameters()
    blocks = evaluation.report(
        runs, qrels, training_pairs, compare=args.compare, per_query_file=args.per_query
    )
    dsi_block = blocks.pop("dsi")
    if args.memorization:
        dsi_block.update(
            evaluation.memorization(
                retriever, sample=args.memorization_sample, batch_size=args.batch_size
            )
        )
    report: dict[str, Any] = {
        "model": model_label(index.config.model),
        "index": _index_provenance(args.index),
        "queries": len(judged),
        "k": args.k,
        "dsi": dsi_block,
        "dsi_queries_per_second": round(len(judged) / seconds, 2),
        "run_file": str(run_file),
    }
    for name in names:
        report[name] = {**blocks.pop(name), "run_file": str(files[name])}
        report[name]["parameters"] = parameters[name]
    if "bm25" in names:  # where --bm25 wrote it before --baselines existed
        report["bm25_run_file"] = str(files["bm25"])
    report.update(blocks)  # compare, per_query_file
    print(json.dumps(report, indent=2))
    return 0


def _index_provenance(index: str) -> dict[str, Any]:
    """Which build an eval scored, from the index's manifest: when and by which dsi it was made,
    its training steps, and the digest of the texts its tokenizer and examples were built from
    (so that a saved result cannot be mistaken for another build's)."""
    manifest = _saved_manifest(index)
    lineage = manifest["lineage"]
    return {
        "path": index,
        "created": manifest.get("created"),
        "library_version": manifest.get("library_version"),
        "docid_scheme": manifest.get("docid_scheme"),
        "documents": manifest["num_docs"],
        "training": _training_summary(lineage),
        "data_digest": _build_entry(lineage).get("data_digest"),
        "additions": sum(isinstance(e, dict) and e.get("event") == "add" for e in lineage),
    }


def _build_entry(lineage: list[Any]) -> dict[str, Any]:
    """The lineage entry of the index's build ({} if none is recorded)."""
    return next((e for e in lineage if isinstance(e, dict) and e.get("event") == "build"), {})


def _saved_manifest(index: str) -> dict[str, Any]:
    """The manifest of ``--index`` (a directory or a hub repo id), read without loading it."""
    from dsi.hub import locate_index
    from dsi.index_format import read_manifest, resolve_index_dir

    return read_manifest(resolve_index_dir(locate_index(index)))


def _check_memorization(args: argparse.Namespace) -> None:
    """Refuse --memorization for an n-gram index and a sample below one document."""
    from dsi.kinds import index_kind

    if args.memorization_sample is not None and args.memorization_sample < 1:
        raise ValueError(
            f"--memorization-sample must be at least 1, got {args.memorization_sample}."
        )
    scheme = _saved_manifest(args.index).get("docid_scheme")
    if index_kind(scheme) == "ngram":
        raise ValueError(
            f"--memorization measures docid decoding, and {args.index} holds n-gram identifiers "
            "(the default kind), which give no document its own identifier to decode."
        )


def _eval_files(args: argparse.Namespace) -> tuple[str, str]:
    """``(queries, qrels)`` of ``dsi eval``: as given, or a BEIR folder's ``--split``."""
    from dsi.data import beir_split_paths

    if args.split is None:
        if args.queries is None or args.qrels is None:
            raise ValueError("Give --queries and --qrels, or --split NAME of a BEIR folder.")
        return args.queries, args.qrels
    if args.qrels is not None:
        raise ValueError("--split takes the qrels from the BEIR folder; give --split or --qrels.")
    folder = args.queries
    if folder is None:  # the folder the index's corpus was read from, if it was a BEIR folder
        lineage = _saved_manifest(args.index)["lineage"]
        source = _build_entry(lineage).get("corpus")
        if not source or Path(source).name != "corpus.jsonl":
            raise ValueError(
                "The index was not built from a BEIR folder; name one with --queries FOLDER."
            )
        folder = str(Path(source).parent)
    if not Path(folder).is_dir():
        raise ValueError(f"--split reads a BEIR folder, and {folder} is not a folder.")
    queries, qrels = beir_split_paths(folder, args.split)  # an unknown split lists the others
    return str(queries), str(qrels)


def _search_with_bar(retriever: Any, texts: list[str], args: argparse.Namespace) -> list:
    """``retriever.search`` over ``texts`` one batch at a time under a progress bar on stderr
    (hidden by ``--quiet``, as the training bar is); the batches are those search makes."""
    from tqdm.auto import tqdm

    results: list = []
    with tqdm(total=len(texts), desc="search", unit="query", disable=args.quiet) as bar:
        for start in range(0, len(texts), args.batch_size):
            batch = texts[start : start + args.batch_size]
            results += retriever.search(
                batch, k=args.k, batch_size=args.batch_size, num_beams=args.num_beams
            )
            bar.update(len(batch))
    return results


# ---------------------------------------------------------------------------- info
def _cmd_info(args: argparse.Namespace) -> int:
    """Print what an index is from its manifest and settings; no model, no checksums unless
    ``--verify``."""
    from dsi.index_format import (
        CONFIG_FILE,
        IndexLoadError,
        read_manifest,
        resolve_index_dir,
        verify_checksums,
    )
    from dsi.kinds import index_kind

    directory = resolve_index_dir(Path(args.directory))
    manifest = read_manifest(directory)  # one sentence (exit 2) for what is not an index
    config_file = directory / CONFIG_FILE
    try:
        settings = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexLoadError(
            f"{directory} is not a complete dsi index: no {CONFIG_FILE}."
        ) from None
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"{config_file} is not valid JSON ({exc}).") from None
    sizes: dict[str, int | None] = {}
    for name in sorted(manifest["checksums"]):
        path = directory / name
        sizes[name] = path.stat().st_size if path.is_file() else None  # None: missing
    scheme = manifest.get("docid_scheme") or settings.get("docids")
    lineage = manifest["lineage"]
    info: dict[str, Any] = {
        "index": str(directory),
        "kind": index_kind(scheme),
        "documents": manifest["num_docs"],
        "docid_scheme": scheme,
        "parameters": manifest.get("parameters"),
        "vocab_size": manifest.get("vocab_size"),
        "created": manifest.get("created"),
        "library_version": manifest.get("library_version"),
        "format_version": manifest.get("format_version"),
        "versions": manifest.get("versions"),
        "training": _training_summary(lineage),
    }
    if index_kind(scheme) != "ngram":
        info["memorization"] = _memorization_summary(lineage)
    info |= {
        "settings": settings,
        "lineage": lineage,
        "files": sizes,
        "total_bytes": sum(size or 0 for size in sizes.values()),
    }
    missing = [name for name, size in sizes.items() if size is None]
    if missing:
        info["missing_files"] = missing
    if args.verify:
        verify_checksums(directory, manifest, hashes="full")  # one sentence (exit 2) if not
        info["verified"] = True
    if args.plot:
        from dsi.index_format import TRAINING_LOG_FILE, load_training_log
        from dsi.plots import plot_training_log

        points = load_training_log(directory / TRAINING_LOG_FILE)
        if not points:
            raise ValueError(
                f"{directory} has no training log to plot (no {TRAINING_LOG_FILE}: an index "
                "built before dsi kept one)."
            )
        info["plot"] = str(plot_training_log(points, args.plot))
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def _memorization_summary(lineage: list[Any]) -> dict[str, Any] | None:
    """The latest memorization a build or addition of a docid index measured (``dsi index``
    measures it after training), or None if none did."""
    for entry in reversed(lineage):
        if isinstance(entry, dict) and isinstance(entry.get("memorization"), dict):
            return {"event": entry.get("event"), **entry["memorization"]}
    return None


def _training_summary(lineage: list[Any]) -> dict[str, Any] | None:
    """Training over the index's life (build, then each addition), or None if none is recorded."""
    runs = [
        entry["training"]
        for entry in lineage
        if isinstance(entry, dict) and isinstance(entry.get("training"), dict)
    ]
    if not runs:
        return None
    last = runs[-1]
    return {
        "runs": len(runs),
        "steps": sum(int(run.get("steps") or 0) for run in runs),
        "seconds": round(sum(float(run.get("seconds") or 0.0) for run in runs), 2),
        "final_loss": last.get("final_loss"),
        "stopped_by": last.get("stopped_by"),
    }


# --------------------------------------------------------------------------- serve
def _cmd_serve(args: argparse.Namespace) -> int:
    try:  # the serve extra is optional: the core install has no FastAPI
        import uvicorn  # noqa: F401

        from dsi.server import ServerSettings, serve
    except ImportError as exc:
        missing = exc.name or "FastAPI/uvicorn"
        print(
            f"dsi: error: dsi serve needs FastAPI and uvicorn, and {missing} is not installed; "
            "install them with: pip install 'dsi[serve]'",
            file=sys.stderr,
        )
        return 2
    from dsi.decoding import keep_heap_flat
    from dsi.retriever import Retriever

    names = ("batch_size", "max_batch", "max_wait_ms", "max_queries", "max_query_chars", "max_k")
    names += ("max_body_bytes", "max_pending")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    settings = ServerSettings(index_path=str(args.index), **given)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if os.environ.get("DSI_DYNAMIC_MMAP_THRESHOLD") != "1":  # 1: glibc's default, to compare
        keep_heap_flat()  # memory that stays flat over many distinct queries
    retriever = Retriever.load(args.index, device=args.device, num_beams=args.num_beams)
    log.info("Serving %d documents from %s.", retriever.num_docs, args.index)
    try:
        started = serve(
            retriever,
            settings,
            host=args.host,
            port=args.port,
            log_level="warning" if args.quiet else "info",
        )
    except OSError as exc:
        print(f"dsi: error: {exc}", file=sys.stderr)
        return 2
    return 0 if started else 1


if __name__ == "__main__":
    sys.exit(main())
