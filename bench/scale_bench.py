"""Every stage of ``dsi index`` (the default n-gram kind) on N synthetic passages, but a short
training: time and peak resident memory per stage, as one JSON object on stdout.

    python -m bench.scale_bench --docs 100000 > bench/results/scale_100k.json
    python -m bench.scale_bench --table bench/results/scale_*.json   # the markdown table

The corpus (generated first, not timed as a stage): passages of about 60 words, MS MARCO's
length (lengths drawn from a normal distribution of mean 60 and deviation 15, cut to 20..120
words), each word drawn from a Zipfian vocabulary of ``--vocabulary`` (50,000) made-up words
(syllable strings, word ``r`` of rank ``r`` drawn with probability proportional to
``1 / r**exponent``, ``--exponent`` 1.1, near English's), all from ``--seed`` (0). No titles
unless ``--titles`` (4-10 words of the same vocabulary). No training queries: the build uses the
``without_queries`` preset, as ``dsi index --corpus DIR`` of a collection without queries does.

The build is the library's own: ``dsi.kinds.index_class("ngram").build`` (the
``IndexLifecycle.build`` that ``dsi index`` runs) with ``train.max_steps`` (100) in place of the
time budget, then ``index.save``, ``dsi.retriever.Retriever.load`` and ``--searches`` (100)
searches one query at a time (2-4 words of a random passage). Its stages come from
``dsi.timing.stage`` (the lineage's stages and the parts they are made of: tokenizing the
documents, the n-gram index, the word index); a thread samples the resident memory every
``--sample-ms`` milliseconds, so each stage has its peak. The feedback table that ``dsi index``
reads for the ``without_queries`` preset (the model generating for every document) is linear in
documents and far the longest stage at this scale: ``--feedback-sample`` (500) documents are read
as it reads them (stage ``feedback_sample``), and ``feedback`` gives the CPU seconds per document
and their extrapolation to the whole corpus. The built index is saved without the table, so the
searches read their feedback documents as they go (the cold path).

Progress goes to stderr (``--quiet``: warnings only); stdout holds the one JSON object.
Figures: ``seconds`` (the whole run but the corpus generation), ``cpu_seconds`` (the process's
CPU time, all threads: on a shared machine the wall clock measures the neighbours too),
``peak_rss_mb`` (the process's peak, ``getrusage``), per stage ``seconds``, ``cpu_seconds``,
``peak_rss_mb`` (sampled) and ``start_rss_mb``; a stage inside another names it as ``within``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench.scale_bench")

VOCABULARY = 50_000
EXPONENT = 1.1
MEAN_WORDS = 60
SD_WORDS = 15
WORDS_RANGE = (20, 120)
TITLE_WORDS = (4, 10)
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["qu", "th", "sh", "ch"]


# ------------------------------------------------------------------------------------- corpus


def vocabulary(size: int) -> list[str]:
    """``size`` distinct made-up words; shorter words for the frequent ranks, as in language."""
    base = len(_SYLLABLES)
    words = []
    for rank in range(size):
        # Rank r in base `base`, at least one syllable: distinct numbers, distinct words.
        digits, n = [], rank
        while True:
            digits.append(_SYLLABLES[n % base])
            n //= base
            if n == 0:
                break
        words.append("".join(reversed(digits)) + ("s" if rank % 7 == 3 else ""))
    return words


def synthetic_corpus(
    docs: int,
    vocabulary_size: int = VOCABULARY,
    exponent: float = EXPONENT,
    seed: int = 0,
    titles: bool = False,
) -> tuple[list[str], list[str], list[str]]:
    """(doc ids, titles, texts) of ``docs`` passages drawn as the module docstring says."""
    rng = np.random.default_rng(seed)
    words = np.array(vocabulary(vocabulary_size), dtype=object)
    weights = 1.0 / np.arange(1, vocabulary_size + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    lengths = np.clip(np.rint(rng.normal(MEAN_WORDS, SD_WORDS, docs)), *WORDS_RANGE).astype(
        np.int64
    )
    title_lengths = (
        rng.integers(TITLE_WORDS[0], TITLE_WORDS[1] + 1, docs)
        if titles
        else np.zeros(docs, dtype=np.int64)
    )
    texts: list[str] = []
    title_texts: list[str] = []
    chunk = 20_000  # documents drawn at a time: bounded temporary arrays at 1M documents
    for begin in range(0, docs, chunk):
        end = min(docs, begin + chunk)
        counts = lengths[begin:end] + title_lengths[begin:end]
        ranks = np.minimum(np.searchsorted(cdf, rng.random(int(counts.sum()))), vocabulary_size - 1)
        drawn = words[ranks]
        at = 0
        for n_text, n_title in zip(lengths[begin:end], title_lengths[begin:end], strict=True):
            title_texts.append(" ".join(drawn[at : at + n_title]))
            at += n_title
            text = " ".join(drawn[at : at + n_text])
            texts.append(text[0].upper() + text[1:] + ".")
            at += n_text
    doc_ids = [f"p{i}" for i in range(docs)]
    return doc_ids, title_texts, texts


def synthetic_queries(texts: Sequence[str], n: int, seed: int = 1) -> list[str]:
    """``n`` queries of 2-4 consecutive words of random passages (lower-cased, no full stop)."""
    rng = np.random.default_rng(seed)
    queries = []
    for doc in rng.integers(0, len(texts), n):
        words = texts[int(doc)].rstrip(".").lower().split()
        size = int(rng.integers(2, 5))
        start = int(rng.integers(0, max(1, len(words) - size)))
        queries.append(" ".join(words[start : start + size]))
    return queries


# ------------------------------------------------------------------------------------- memory


def rss_mb() -> float:
    """The process's resident memory now, MB (``/proc/self/statm``; psutil where that lacks)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, MB (``ru_maxrss`` is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageRecorder:
    """Seconds and sampled peak RSS of every stage, in the order they started.

    A sampler thread reads the RSS every ``interval`` seconds and raises the peak of every open
    stage; each stage's start and end are sampled too, so a stage shorter than the interval
    still has a peak."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.stages: dict[str, dict[str, Any]] = {}
        self._open: list[str] = []
        self._started: dict[str, float] = {}
        self._cpu: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> StageRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._raise(rss_mb())

    def _raise(self, rss: float) -> None:
        with self._lock:
            for name in self._open:
                entry = self.stages[name]
                entry["peak_rss_mb"] = max(entry["peak_rss_mb"], rss)

    def event(self, event: str, name: str) -> None:
        """A ``dsi.timing`` watcher: a stage named twice (the lineage adds up parts) adds up."""
        rss = rss_mb()
        if event == "start":
            with self._lock:
                entry = self.stages.setdefault(
                    name,
                    {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": rss, "start_rss_mb": rss},
                )
                if self._open and "within" not in entry:
                    entry["within"] = self._open[-1]
                self._open.append(name)
                self._started[name] = time.monotonic()
                self._cpu[name] = time.process_time()
            log.info("stage %s: started at %.0f MB", name, rss)
            return
        self._raise(rss)
        with self._lock:
            if name in self._open:
                self._open.remove(name)
            entry = self.stages[name]
            entry["seconds"] += time.monotonic() - self._started.pop(name)
            entry["cpu_seconds"] += time.process_time() - self._cpu.pop(name)
        log.info(
            "stage %s: %.1f s (CPU %.1f s), peak %.0f MB (now %.0f MB)",
            name,
            entry["seconds"],
            entry["cpu_seconds"],
            entry["peak_rss_mb"],
            rss,
        )

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A stage of the benchmark itself (writing, loading, searching)."""
        self.event("start", name)
        try:
            yield
        finally:
            self.event("end", name)

    def figures(self) -> dict[str, dict[str, Any]]:
        """The stages, figures rounded."""
        out = {}
        for name, entry in self.stages.items():
            out[name] = {
                key: round(value, 2) if isinstance(value, float) else value
                for key, value in entry.items()
            }
        return out


# -------------------------------------------------------------------------------------- run


def bench_config(steps: int, size: str, batch_size: int, vocab_size: int) -> Any:
    """The default n-gram config, but ``steps`` training steps of ``size`` and no time budget."""
    from dsi.config import IndexConfig, ModelConfig, TrainConfig

    return IndexConfig(
        docids="ngram",
        model_config=ModelConfig(size=size, vocab_size=vocab_size),
        train=TrainConfig(
            max_steps=steps, max_minutes=None, batch_size=batch_size, checkpoint_minutes=1e9
        ),
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the corpus, then build, write, load and search the index; the figures."""
    import torch

    from dsi.data import Corpus
    from dsi.kinds import index_class
    from dsi.retriever import Retriever
    from dsi.timing import watching

    torch.set_num_threads(args.threads)
    generated = time.monotonic()
    doc_ids, titles, texts = synthetic_corpus(
        args.docs, args.vocabulary, args.exponent, args.seed, args.titles
    )
    corpus = Corpus(doc_ids, titles, texts, source=f"synthetic-{args.docs}")
    del doc_ids, titles  # the corpus holds them
    queries = synthetic_queries(texts, args.searches, seed=args.seed + 1)
    log.info(
        "Generated %d passages (%.1f words on average) in %.1f s; RSS %.0f MB.",
        args.docs,
        sum(t.count(" ") + 1 for t in texts[:10_000]) / min(len(texts), 10_000),
        time.monotonic() - generated,
        rss_mb(),
    )
    config = bench_config(args.steps, args.size, args.batch_size, args.vocab_size)
    corpus_rss = rss_mb()
    root = Path(args.work or tempfile.mkdtemp(prefix="scale-bench-"))
    started, cpu_started = time.monotonic(), time.process_time()
    with StageRecorder(args.sample_ms / 1000) as recorder, watching(recorder.event):
        with recorder.stage("build"):
            index = index_class("ngram").build(
                corpus, config, None, work_dir=root / "work", progress_bar=False
            )
        lineage = index.lineage[-1]
        feedback_sample = min(args.feedback_sample, args.docs)
        if feedback_sample:
            # `dsi index` reads every document for the without_queries preset's feedback table
            # (NgramRetriever.prepare_feedback); that is linear in documents, so a sample of
            # them is timed and the whole corpus extrapolated from it.
            reader = Retriever.for_index(index, device="cpu")
            sample_cpu = time.process_time()
            with recorder.stage("feedback_sample"):
                reader.generated_words_of(list(range(feedback_sample)))
            feedback_cpu = time.process_time() - sample_cpu
            del reader
        with recorder.stage("write"):
            index.save(root / "index")
        del index
        with recorder.stage("load"):
            retriever = Retriever.load(root / "index")
        latencies = []
        with recorder.stage("search"):
            for query in queries:
                began = time.perf_counter()
                retriever.search([query], k=10)
                latencies.append(time.perf_counter() - began)
    seconds = time.monotonic() - started
    cpu_seconds = time.process_time() - cpu_started
    stages = recorder.figures()
    feedback = [name for name in stages if name.startswith("feedback")]
    if feedback_sample:
        per_doc = feedback_cpu / feedback_sample
        feedback_estimate = {
            "sampled_docs": feedback_sample,
            "cpu_seconds_per_doc": round(per_doc, 4),
            "extrapolated_cpu_seconds_all_docs": round(per_doc * args.docs, 1),
        }
    result: dict[str, Any] = {
        "docs": args.docs,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "corpus_rss_mb": round(corpus_rss, 1),
        "corpus_tokens": lineage.get("corpus_tokens"),
        "examples": lineage.get("examples"),
        "training_steps": lineage.get("training_steps"),
        "search_ms": {
            "mean": round(1000 * float(np.mean(latencies)), 1) if latencies else None,
            "p50": round(1000 * float(np.median(latencies)), 1) if latencies else None,
            "first": round(1000 * latencies[0], 1) if latencies else None,
        },
        "stages": stages,
        "feedback": (
            {"stages": feedback, **feedback_estimate}
            if feedback_sample
            else {"skipped": "--feedback-sample 0"}
        ),
        "settings": {
            "vocabulary": args.vocabulary,
            "exponent": args.exponent,
            "seed": args.seed,
            "titles": args.titles,
            "steps": args.steps,
            "size": args.size,
            "batch_size": args.batch_size,
            "vocab_size": args.vocab_size,
            "searches": args.searches,
            "threads": args.threads,
        },
        "machine": {"cpus": os.cpu_count()},
    }
    return result


# ------------------------------------------------------------------------------------ table

TABLE_STAGES = (
    "tokenizer",
    "tokenize_documents",
    "ngram_index",
    "word_index",
    "examples",
    "feedback",
    "training",
    "writing",
    "write",
    "load",
    "search",
)


def table(paths: Sequence[Path]) -> str:
    """A markdown table of saved results: per run the totals, then per stage "wall seconds (CPU
    seconds) / peak RSS MB"."""
    runs = sorted(
        (json.loads(Path(p).read_text(encoding="utf-8")) for p in paths), key=lambda r: r["docs"]
    )
    names = [n for n in TABLE_STAGES if any(n in r["stages"] for r in runs)]
    head = ["docs", "total s (CPU s)", "peak RSS MB", *names, "search ms (mean)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [
            f"{r['docs']:,}",
            f"{r['seconds']:,.1f} ({r.get('cpu_seconds', 0):,.1f})",
            f"{r['peak_rss_mb']:,.0f}",
        ]
        for name in names:
            s = r["stages"].get(name)
            cells.append(
                "–"
                if s is None
                else f"{s['seconds']:,.1f} s ({s.get('cpu_seconds', 0):,.1f}) / "
                f"{s['peak_rss_mb']:,.0f}"
            )
        cells.append(str(r.get("search_ms", {}).get("mean", "–")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--vocabulary", type=int, default=VOCABULARY)
    parser.add_argument("--exponent", type=float, default=EXPONENT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--titles", action="store_true", help="give every passage a title")
    parser.add_argument("--steps", type=int, default=100, help="training steps")
    parser.add_argument("--size", default="small", help="model size (dsi.config.MODEL_SIZES)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=8000, help="tokenizer pieces")
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--feedback-sample",
        type=int,
        default=500,
        help="documents read as the feedback table reads them, timed, and extrapolated to all "
        "(0: skip)",
    )
    parser.add_argument("--sample-ms", type=float, default=50.0)
    parser.add_argument("--work", help="folder for the work directory and index (default: temp)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--table", nargs="+", metavar="JSON", help="print the markdown table of saved results"
    )
    args = parser.parse_args(argv)
    if args.table:
        try:
            sys.stdout.write(table([Path(p) for p in args.table]))
        except (OSError, ValueError, KeyError) as exc:
            print(f"Cannot read the results: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.docs < 1 or args.steps < 1 or args.searches < 0:
        print("--docs and --steps must be at least 1 and --searches at least 0.", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(message)s",
    )
    os.environ.setdefault("TQDM_DISABLE", "1")
    result = run(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
