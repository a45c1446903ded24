"""Time and memory of semantic docid assignment (hierarchical k-means) on synthetic embeddings.

    python -m bench.semantic_bench --n 100000 1000000

Each size runs in a fresh process (so ``ru_maxrss`` deltas are not masked by an earlier size)
and prints one JSON line. Embeddings are a unit-normalised Gaussian mixture (``--centers``
means plus noise), float32, generated in chunks before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def maxrss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(n: int, dim: int, centers: int, seed: int, chunk: int = 10_000) -> np.ndarray:
    """Unit float32 vectors around ``centers`` random means, built chunk by chunk."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centers, dim)).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        rows = means[rng.integers(0, centers, stop - start)]
        rows += 0.5 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        x[start:stop] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return x


def run_one(args: argparse.Namespace, n: int) -> dict[str, object]:
    import faiss

    from docid import fit_docids
    from docid.semantic import hierarchical_kmeans

    x = synthetic(n, args.dim, args.centers, args.seed)
    new = synthetic(args.add, args.dim, args.centers, args.seed + 1)
    ids = [f"d{i}" for i in range(n)]
    base = maxrss_mb()
    options = {
        "niter": args.niter,
        "max_points_per_centroid": args.max_points_per_centroid,
        "threads": args.threads,
    }

    start = time.perf_counter()
    tree, leaf_of, _ = hierarchical_kmeans(x, args.k, args.c, seed=args.seed, **options)
    kmeans_s = time.perf_counter() - start
    kmeans_rss = maxrss_mb()

    start = time.perf_counter()
    m = fit_docids("semantic", ids, None, embeddings=x, k=args.k, c=args.c, **options)
    fit_s = time.perf_counter() - start
    fit_rss = maxrss_mb()

    start = time.perf_counter()
    m.add([f"new{i}" for i in range(args.add)], embeddings=new)
    add_s = time.perf_counter() - start

    leaves = np.bincount(leaf_of)
    leaves = leaves[leaves > 0]
    return {
        "n": n,
        "dim": args.dim,
        "k": args.k,
        "c": args.c,
        "niter": args.niter,
        "max_points_per_centroid": args.max_points_per_centroid,
        "threads": args.threads or faiss.omp_get_max_threads(),
        "embeddings_mb": round(x.nbytes / 2**20, 1),
        "hkmeans_s": round(kmeans_s, 2),
        "hkmeans_peak_rss_delta_mb": round(kmeans_rss - base, 1),
        "fit_docids_s": round(fit_s, 2),
        "fit_docids_peak_rss_delta_mb": round(fit_rss - base, 1),
        "tree_nodes": len(tree.parent),
        "leaves": len(leaves),
        "max_leaf": int(leaves.max()),
        "mean_leaf": round(float(leaves.mean()), 1),
        "max_docid_length": m.max_sequence_length,
        "symbols": len(m.symbols),
        "add_docs": args.add,
        "add_s": round(add_s, 2),
        "unique": len(set(m.sequences)) == len(m),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--c", type=int, default=100)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--max-points-per-centroid", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="faiss threads (0: all)")
    parser.add_argument("--centers", type=int, default=1000, help="Gaussian mixture components")
    parser.add_argument("--add", type=int, default=1000, help="new documents placed by add()")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process:
        print(json.dumps(run_one(args, args.n[0])), flush=True)
        return
    for n in args.n:
        # The last --n wins, so the child runs this one size.
        child = list(argv if argv is not None else sys.argv[1:])
        cmd = [sys.executable, "-m", "bench.semantic_bench", *child, "--n", str(n), "--in-process"]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
