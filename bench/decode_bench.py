"""Constrained vs unconstrained beam search, and the GENRE-style peer; prints one JSON object.

    python -m bench.decode_bench                       # SciFact, index built here (1 step)
    python -m bench.decode_bench --index runs/scifact  # a trained index
    python -m bench.decode_bench --synthetic 5000 --device cuda

Same model, same queries, same ``generate`` arguments as ``Retriever.search``; the settings
differ only in the constraint:

- ``unconstrained``: no logits processor;
- ``constrained``: our :class:`TrieLogitsProcessor` (what ``Retriever`` uses);
- ``peer``: transformers' ``prefix_allowed_tokens_fn`` with a GENRE-style nested-dict trie.

Without ``--index`` an index is built over the corpus with the default model
(``IndexConfig().model_config``), TF-IDF semantic docids and ``train.max_steps=1``: the weights
do not change the cost of a decoding step, only how many steps early stopping allows, and the
output reports the generated lengths of every setting so that this can be checked.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.decode_bench_peer import build_genre_trie, genre_prefix_allowed_tokens_fn
from dsi.config import IndexConfig
from dsi.data import Corpus, load_corpus, load_qrels, load_queries
from dsi.index import GenerativeIndex
from dsi.retriever import Retriever

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
MODES = ("unconstrained", "constrained", "peer")


class TimedProcessor:
    """Wraps a logits processor and adds up the seconds spent inside it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.is_cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = self.inner(input_ids, scores)
        if out.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - started
        self.calls += 1
        return out


def synthetic_corpus(n: int, n_queries: int, seed: int = 0) -> tuple[Corpus, list[str]]:
    """``n`` documents of 60-200 Zipf-distributed pseudo-words and queries cut out of them."""
    rng = random.Random(seed)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(20_000)})
    rng.shuffle(words)
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    titles, texts = [], []
    for _ in range(n):
        titles.append(" ".join(rng.choices(words, weights, k=rng.randint(3, 8))))
        texts.append(" ".join(rng.choices(words, weights, k=rng.randint(60, 200))) + ".")
    queries = []
    for doc in rng.choices(range(n), k=n_queries):
        body = texts[doc].split()
        start = rng.randrange(max(1, len(body) - 12))
        queries.append(" ".join(body[start : start + rng.randint(6, 12)]))
    ids = [f"s{i}" for i in range(n)]
    return Corpus(doc_ids=ids, titles=titles, texts=texts, source=f"synthetic:{n}"), queries


def scifact_queries(folder: Path) -> list[str]:
    """SciFact test queries (those with judgements), in query-id order."""
    queries = load_queries(folder / "queries.jsonl")
    judged = load_qrels(folder / "qrels" / "test.tsv")
    return [queries[q] for q in sorted(judged, key=lambda q: (len(q), q)) if q in queries]


def build_index(corpus: Corpus) -> GenerativeIndex:
    config = IndexConfig(docids="semantic", docid_options={"embedder": "tfidf"})
    config.train.max_steps = 1
    config.train.max_minutes = None
    return GenerativeIndex.build(corpus, config, progress_bar=False)


def generate_kwargs(retriever: Retriever, queries: list[str], beams: int) -> dict:
    """Exactly the arguments ``Retriever._search_batch`` passes, minus the logits processor."""
    enc = retriever.index.tokenizer(
        queries,
        max_length=retriever.index.config.train.max_source_length,
        truncation=True,
        padding=True,
        return_tensors="pt",
    ).to(retriever.device)
    return {
        **enc,
        "num_beams": beams,
        "num_return_sequences": beams,
        "max_new_tokens": retriever._max_new_tokens,
        "length_penalty": retriever.length_penalty,
        "do_sample": False,
        "early_stopping": True,
        "output_scores": True,
        "return_dict_in_generate": True,
    }


def run_mode(
    retriever, mode: str, batches: list[list[str]], beams: int, constraint, timed: bool = False
) -> dict:
    """Decode every batch once; seconds, generated lengths (and processor seconds if ``timed``).

    Timing the processor synchronises the GPU around it, so timed runs are kept apart from the
    runs whose queries/s are reported.
    """
    lengths = []
    processor = None
    if mode == "constrained":
        processor = TimedProcessor(retriever._processor) if timed else retriever._processor
    sync = torch.cuda.synchronize if retriever.device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    with torch.inference_mode():
        for queries in batches:
            kwargs = generate_kwargs(retriever, queries, beams)
            if mode == "constrained":
                kwargs["logits_processor"] = [processor]
            elif mode == "peer":
                kwargs["prefix_allowed_tokens_fn"] = constraint
            out = retriever.model.generate(**kwargs)
            lengths.append(out.sequences.shape[1] - 1)
    sync()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "generated_length": lengths,
        "processor_seconds": processor.seconds if timed else None,
    }


def bench_setting(retriever, queries: list[str], beams: int, batch: int, repeats: int, peer_fn):
    batches = [queries[i : i + batch] for i in range(0, len(queries), batch)]
    for mode in MODES:  # warm-up: allocator, caches, the trie's LRU (as a running server has)
        run_mode(retriever, mode, batches[:1], beams, peer_fn)
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(repeats):  # interleaved, so drift in machine load hits every mode alike
        for mode in MODES:
            runs[mode].append(run_mode(retriever, mode, batches, beams, peer_fn))
    result: dict[str, object] = {"beams": beams, "batch": batch, "queries": len(queries)}
    qps = {}
    for mode in MODES:
        seconds = statistics.median(r["seconds"] for r in runs[mode])
        qps[mode] = len(queries) / seconds
        result[f"{mode}_qps"] = round(qps[mode], 2)
        result[f"{mode}_mean_generated_length"] = round(
            statistics.mean(x for r in runs[mode] for x in r["generated_length"]), 2
        )
    timed = run_mode(retriever, "constrained", batches, beams, peer_fn, timed=True)
    proc, constrained = timed["processor_seconds"], timed["seconds"]
    result["constrained_over_unconstrained_time"] = round(
        qps["unconstrained"] / qps["constrained"], 3
    )
    result["peer_over_unconstrained_time"] = round(qps["unconstrained"] / qps["peer"], 3)
    # Early stopping lets a setting end after fewer steps than another: the same ratio per
    # decoding step (seconds over the sum of the batches' generated lengths).
    per_step = {
        mode: statistics.median(r["seconds"] / sum(r["generated_length"]) for r in runs[mode])
        for mode in MODES
    }
    result["constrained_over_unconstrained_time_per_step"] = round(
        per_step["constrained"] / per_step["unconstrained"], 3
    )
    result["peer_over_unconstrained_time_per_step"] = round(
        per_step["peer"] / per_step["unconstrained"], 3
    )
    result["processor_share_of_constrained_time"] = round(proc / constrained, 3)
    result["processor_ms_per_query"] = round(proc / len(queries) * 1e3, 3)
    # The end-to-end product path (tokenize, constrained generate, docid lookup).
    started = time.perf_counter()
    try:
        retriever.search(
            queries, k=min(beams, retriever.num_docs), batch_size=batch, num_beams=beams
        )
    except Exception as exc:  # report it with the numbers rather than lose the whole run
        result["retriever_search_error"] = f"{type(exc).__name__}: {exc}"
    else:
        result["retriever_search_qps"] = round(len(queries) / (time.perf_counter() - started), 2)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, help="a trained index directory")
    parser.add_argument("--data", type=Path, default=SCIFACT, help="BEIR folder (default SciFact)")
    parser.add_argument("--synthetic", type=int, metavar="N", help="a random corpus of N docs")
    parser.add_argument("--save", type=Path, help="save the index built here, for --index later")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--queries", type=int, default=64, help="queries at batch sizes > 1")
    parser.add_argument("--queries-batch1", type=int, default=16, help="queries at batch 1")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    if args.index:
        index, source = GenerativeIndex.load(args.index), str(args.index)
        queries = scifact_queries(args.data) if args.data.is_dir() else None
        if queries is None:
            rng = random.Random(0)
            queries = [" ".join(t.split()[:12]) for t in rng.sample(index.corpus.texts, 64)]
        trained = True
    else:
        if args.synthetic:
            corpus, queries = synthetic_corpus(
                args.synthetic, max(args.queries, args.queries_batch1)
            )
        elif args.data.is_dir():
            corpus, queries = load_corpus(args.data), scifact_queries(args.data)
        else:
            parser.error(f"{args.data} is absent: pass --synthetic N or --index DIR.")
        index, source, trained = build_index(corpus), corpus.source, False
        if args.save:
            index.save(args.save)
    build_seconds = time.perf_counter() - started
    retriever = Retriever(index, device=args.device)
    offset, eos = index.docid_offset, retriever.model.config.eos_token_id
    genre = build_genre_trie([offset + s for s in seq] + [eos] for seq in index.docids.sequences)
    start_id = retriever.model.config.decoder_start_token_id
    peer_fn = genre_prefix_allowed_tokens_fn(genre, start_id, fallback=[retriever._pad])

    settings = []
    for batch in args.batches:
        n = args.queries_batch1 if batch == 1 else args.queries
        for beams in args.beams:
            settings.append(
                bench_setting(retriever, queries[:n], beams, batch, args.repeats, peer_fn)
            )
            print(json.dumps(settings[-1]), file=sys.stderr, flush=True)
    depths = [len(s) for s in index.docids.sequences]
    report = {
        "corpus": source,
        "documents": len(index.docids),
        "docids": index.docids.scheme,
        "docid_length_min_mean_max": [
            min(depths),
            round(sum(depths) / len(depths), 2),
            max(depths),
        ],
        "vocab_size": int(retriever.model.config.vocab_size),
        "model_config": index.config.to_dict()["model_config"],
        "weights": "trained index" if trained else "train.max_steps=1 (decoding cost only)",
        "index_seconds": round(build_seconds, 1),
        "device": str(retriever.device),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "settings": settings,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
