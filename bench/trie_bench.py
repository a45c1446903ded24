"""PrefixTrie / TrieLogitsProcessor benchmark; prints one JSON object.

    python -m bench.trie_bench                      # 100k and 1M docids, both schemes
    python -m bench.trie_bench --sizes 100000       # quicker
    python -m bench.trie_bench --one semantic 100000  # one configuration (used internally)

Each trie configuration runs in a fresh subprocess so the resident-memory numbers are its own.
Docids: "semantic" imitates hierarchical k-means ids (k=10 random-sized clusters, split until
a cluster holds <= 10 docs, so depths vary around log10(N)); token = 32000 + 10*position +
digit. "atomic" is one token per doc, 32000 + doc index. EOS (1) is appended to every docid.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from trie import PrefixTrie, TrieLogitsProcessor

EOS, START, PAD, OFFSET = 1, 0, 0, 32000


def semantic_docids(n: int, seed: int = 0, k: int = 10, leaf: int = 10) -> list[tuple[int, ...]]:
    """Random hierarchical-clustering-like docids with position-specific tokens."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, ...]] = []
    stack: list[tuple[tuple[int, ...], int]] = [((), n)]
    while stack:
        prefix, m = stack.pop()
        pos_base = OFFSET + 10 * len(prefix)
        if m <= leaf:
            out.extend(prefix + (pos_base + j, EOS) for j in range(m))
            continue
        sizes = rng.multinomial(m, rng.dirichlet([2.0] * k))
        for digit, size in enumerate(sizes.tolist()):
            if size:
                stack.append((prefix + (pos_base + digit,), size))
    return out


def atomic_docids(n: int) -> list[tuple[int, ...]]:
    return [(OFFSET + i, EOS) for i in range(n)]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_load(path: Path) -> dict:
    """Run in a fresh process: what loading a saved trie costs in time and resident memory."""
    gc.collect()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    trie = PrefixTrie.load(path)
    load_s = time.perf_counter() - t0
    return {"load_s": round(load_s, 3), "loaded_rss_delta_mb": round(rss_mb() - rss0, 1),
            "n": len(trie)}  # fmt: skip


def bench_trie(scheme: str, n: int) -> dict:
    seqs = semantic_docids(n) if scheme == "semantic" else atomic_docids(n)
    depths = [len(s) - 1 for s in seqs]
    gc.collect()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    trie = PrefixTrie.from_sequences(seqs)
    build_s = time.perf_counter() - t0
    gc.collect()
    rss1, peak1 = rss_mb(), peak_mb()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docids.marisa"
        t0 = time.perf_counter()
        trie.save(path)
        save_s = time.perf_counter() - t0
        size = path.stat().st_size
        loaded = run_child(["--load", str(path)])
        trie = PrefixTrie.load(path)

    rng = np.random.default_rng(1)
    picks = rng.integers(0, len(seqs), 20_000)
    prefixes = list({seqs[i][: rng.integers(0, len(seqs[i]))] for i in picks.tolist()})
    trie.clear_cache()
    t0 = time.perf_counter()
    for p in prefixes:
        trie.next_tokens(p)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(5):
        for p in prefixes:
            trie.next_tokens(p)
    cached = (time.perf_counter() - t0) / 5
    return {
        "scheme": scheme,
        "num_docids": len(trie),
        "depth_min_mean_max": [
            min(depths),
            round(float(np.mean(depths)), 2),
            max(depths),
        ],
        "num_nodes": trie.num_nodes,
        "build_s": round(build_s, 3),
        "build_rss_delta_mb": round(rss1 - rss0, 1),
        "build_peak_rss_delta_mb": round(peak1 - rss0, 1),
        "file_mb": round(size / 2**20, 2),
        "save_s": round(save_s, 3),
        "load_s": loaded["load_s"],
        "loaded_rss_delta_mb": loaded["loaded_rss_delta_mb"],
        "lookup_prefixes": len(prefixes),
        "lookups_per_s_cold": round(len(prefixes) / cold),
        "lookups_per_s_cached": round(len(prefixes) / cached),
        "us_per_lookup_cold": round(cold / len(prefixes) * 1e6, 2),
    }


def simulate_decode(proc, batch: int, beams: int, vocab: int, steps: int, seed: int):
    """Beam search on random log-probs; returns per-step processor seconds and the ids seen."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.full((batch * beams, 1), START, dtype=torch.long)
    beam_scores = torch.zeros(batch, beams)
    beam_scores[:, 1:] = -1e9  # as transformers: only the first beam is live at step 0
    times, seen = [], []
    for _ in range(steps):
        logp = torch.randn(batch * beams, vocab, generator=gen).log_softmax(-1)
        seen.append((ids.clone(), logp.clone()))
        t0 = time.perf_counter()
        masked = proc(ids, logp)
        times.append(time.perf_counter() - t0)
        total = (beam_scores.view(-1, 1) + masked).view(batch, beams * vocab)
        top = total.topk(beams, dim=-1)
        src = top.indices // vocab + torch.arange(batch).view(-1, 1) * beams
        ids = torch.cat([ids[src.view(-1)], (top.indices % vocab).view(-1, 1)], dim=1)
        beam_scores = top.values
    return times, seen


def bench_processor(scheme: str, n: int, vocab: int, steps: int = 5) -> dict:
    import torch
    from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

    from bench.decode_bench_peer import build_genre_trie, genre_prefix_allowed_tokens_fn

    torch.set_num_threads(1)
    batch, beams = 32, 10
    seqs = semantic_docids(n) if scheme == "semantic" else atomic_docids(n)
    trie = PrefixTrie.from_sequences(seqs)
    proc = TrieLogitsProcessor(trie, START, EOS, PAD)
    cold, seen = simulate_decode(proc, batch, beams, vocab, steps, seed=0)
    warm, _ = simulate_decode(proc, batch, beams, vocab, steps, seed=0)
    proc_inplace = TrieLogitsProcessor(trie, START, EOS, PAD, inplace=True)
    warm_inplace, _ = simulate_decode(proc_inplace, batch, beams, vocab, steps, seed=0)
    peer = PrefixConstrainedLogitsProcessor(
        genre_prefix_allowed_tokens_fn(build_genre_trie(seqs), START, fallback=[PAD]),
        beams,
    )
    peer_times = []
    for ids, logp in seen:
        t0 = time.perf_counter()
        peer(ids, logp)
        peer_times.append(time.perf_counter() - t0)
    # Reference cost of one dense pass over the scores (what any mask must at least touch).
    logp = seen[0][1]
    t0 = time.perf_counter()
    for _ in range(5):
        torch.full_like(logp, float("-inf"))
    fill_ms = (time.perf_counter() - t0) / 5 * 1e3

    def ms(xs: list[float]) -> list[float]:
        return [round(x * 1e3, 3) for x in xs]

    return {
        "scheme": scheme,
        "num_docids": n,
        "rows": batch * beams,
        "vocab": vocab,
        "steps": steps,
        "torch_threads": 1,
        "ms_per_step_cold": ms(cold),
        "ms_per_step_cached": ms(warm),
        "ms_total_cold": round(sum(cold) * 1e3, 2),
        "ms_total_cached": round(sum(warm) * 1e3, 2),
        "ms_per_step_cached_inplace": ms(warm_inplace),
        "ms_total_cached_inplace": round(sum(warm_inplace) * 1e3, 2),
        "genre_peer_ms_per_step": ms(peer_times),
        "genre_peer_ms_total": round(sum(peer_times) * 1e3, 2),
        "full_like_ms_reference": round(fill_ms, 3),
        "dead_rows": proc.dead_rows,
    }


def run_child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.trie_bench", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--one", nargs=2, metavar=("SCHEME", "N"))
    parser.add_argument("--processor", nargs=3, metavar=("SCHEME", "N", "VOCAB"))
    parser.add_argument("--load", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(measure_load(args.load)))
        return
    if args.one:
        print(json.dumps(bench_trie(args.one[0], int(args.one[1]))))
        return
    if args.processor:
        scheme, n, vocab = args.processor
        print(json.dumps(bench_processor(scheme, int(n), int(vocab))))
        return
    result = {
        "tries": [
            run_child(["--one", scheme, str(n)])
            for n in args.sizes
            for scheme in ("semantic", "atomic")
        ],
        "processor": [
            run_child(["--processor", "semantic", "100000", "40000"]),
            run_child(["--processor", "atomic", "100000", str(OFFSET + 100_000 + 100)]),
        ],
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
