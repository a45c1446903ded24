"""Bounded load test of ``dsi serve`` on loopback; prints one JSON object.

    python -m bench.load_test                              # a tiny-config index built here
    python -m bench.load_test --index runs/tiny            # an existing index
    python -m bench.load_test --index runs/tiny --max-batch 1   # micro-batching off, to compare

Starts ``dsi serve`` as a subprocess on 127.0.0.1 (a free port), then N concurrent clients
(asyncio + httpx, one connection each) send ``POST /search`` back to back for T seconds, each with
``--queries-per-request`` queries drawn from examples/tiny/queries.jsonl. Reports requests/s,
queries/s, latency percentiles, errors (any non-200 or transport failure) and, from the server's
``/stats``, how many decode calls served the load. Exits 1 if any request failed.

    python -m bench.load_test --index runs/cran --distinct 10000 --rss-at 1000,10000

``--distinct N`` sends N distinct queries instead, each once (spans of 3 to 12 words of the
index's own documents, drawn with a fixed seed), and reports the server's resident memory
(``/proc/PID/status``) when 1,000, ... queries have been answered (``--rss-at``): memory
that grows with the number of distinct queries shows there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def build_tiny_index(directory: Path, n_docs: int) -> Path:
    """A tiny-config index (the test suite's model size) over the first documents of examples/tiny."""
    import torch

    from dsi.config import IndexConfig, ModelConfig, TrainConfig
    from dsi.data import load_corpus
    from dsi.index import GenerativeIndex

    torch.set_num_threads(1)
    corpus = load_corpus(REPO / "examples" / "tiny")
    corpus = corpus.subset(corpus.doc_ids[:n_docs])
    config = IndexConfig(
        docids="semantic",
        docid_options={"k": 3, "c": 3, "embedder": "tfidf"},
        model_config=ModelConfig(size="tiny", vocab_size=400),
        train=TrainConfig(
            max_steps=20, max_minutes=None, batch_size=8, warmup_steps=2, learning_rate=3e-3
        ),
        num_beams=5,
    )
    return GenerativeIndex.build(corpus, config, progress_bar=False).save(directory)


def start_server(index: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "dsi.cli", "serve", "--index", str(index), "--port", "0"]
    command += ["--quiet", "--threads", str(args.threads), "--max-k", str(max(args.k, 100))]
    command += ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        sys.exit(f"load_test: dsi serve exited with status {proc.returncode} before serving.")
    url = json.loads(line)["serving"]
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5, trust_env=False).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            sys.exit("load_test: dsi serve did not become healthy within 60 s.")
        time.sleep(0.1)


async def run_clients(url: str, queries: list[str], args: argparse.Namespace) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    sent_queries = 0
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)

    async with httpx.AsyncClient(
        base_url=url, timeout=30, trust_env=False, limits=limits
    ) as client:

        async def one_client(seed: int, until: float, record: bool) -> None:
            nonlocal sent_queries
            rng = random.Random(seed)
            while time.perf_counter() < until:
                batch = rng.sample(queries, args.queries_per_request)
                started = time.perf_counter()
                try:
                    reply = await client.post("/search", json={"queries": batch, "k": args.k})
                    ok = reply.status_code == 200 and len(reply.json()["results"]) == len(batch)
                    problem = None if ok else f"{reply.status_code}: {reply.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if not record:
                    continue
                if problem:
                    errors.append(problem)
                else:
                    latencies.append(time.perf_counter() - started)
                    sent_queries += len(batch)

        warm_until = time.perf_counter() + args.warmup
        await asyncio.gather(*(one_client(-i - 1, warm_until, False) for i in range(args.clients)))
        before = (await client.get("/stats")).json()
        started = time.perf_counter()
        until = started + args.seconds
        await asyncio.gather(*(one_client(i, until, True) for i in range(args.clients)))
        elapsed = time.perf_counter() - started
        after = (await client.get("/stats")).json()
        health = (await client.get("/health")).json()

    latencies.sort()

    def pct(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

    batches = after["decode_batches"] - before["decode_batches"]
    decoded = after["queries"] - before["queries"]
    return {
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "queries_per_request": args.queries_per_request,
        "k": args.k,
        "requests": len(latencies),
        "queries": sent_queries,
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "queries_per_s": round(sent_queries / elapsed, 2),
        "latency_ms": {
            "p50": pct(0.50),
            "p90": pct(0.90),
            "p99": pct(0.99),
            "max": pct(1.0),
            "mean": round(1000 * statistics.fmean(latencies), 2) if latencies else None,
        },
        "errors": len(errors),
        "first_errors": errors[:3],
        "decode_batches": batches,
        "queries_per_decode_batch": round(decoded / batches, 2) if batches else None,
        "server_healthy_after": health["status"] == "ok",
    }


def distinct_queries(index: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct spans of 3 to 12 words of the index's documents."""
    with open(index / "documents.jsonl", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"].split() for line in handle if line.strip()]
    rng = random.Random(seed)
    out: dict[str, None] = {}
    attempts = 0
    while len(out) < n and attempts < 50 * n:
        attempts += 1
        words = rng.choice(texts)
        length = rng.randint(3, 12)
        start = rng.randint(0, max(len(words) - length, 0))
        out.setdefault(" ".join(words[start : start + length])[:2000], None)
    return [q for q in out if q]


def server_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def run_distinct(
    url: str, queries: list[str], pid: int, marks: list[int], args: argparse.Namespace
) -> dict:
    """Send every query once (``args.clients`` at a time); the server's RSS at each mark."""
    rss: dict[str, float] = {"0": server_rss_mb(pid)}
    errors: list[str] = []
    answered = 0
    pending = iter(queries)
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(
        base_url=url, timeout=120, trust_env=False, limits=limits
    ) as client:

        async def one_client() -> None:
            nonlocal answered
            for query in pending:
                try:
                    reply = await client.post("/search", json={"queries": [query], "k": args.k})
                    if reply.status_code != 200:
                        errors.append(f"{reply.status_code}: {reply.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                answered += 1
                if answered in marks:
                    rss[str(answered)] = server_rss_mb(pid)
                    elapsed = round(time.perf_counter() - started, 1)
                    print(f"{answered} queries, {elapsed} s, RSS {rss[str(answered)]} MB",
                          file=sys.stderr, flush=True)  # fmt: skip

        await asyncio.gather(*(one_client() for _ in range(args.clients)))
        health = (await client.get("/health")).json()
    elapsed = time.perf_counter() - started
    return {
        "distinct_queries": len(queries),
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "queries_per_s": round(len(queries) / elapsed, 2),
        "rss_mb_at": rss,
        "errors": len(errors),
        "first_errors": errors[:3],
        "server_healthy_after": health["status"] == "ok",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", default=None, help="index directory (default: build a tiny one)")
    parser.add_argument("--docs", type=int, default=100, help="documents of the built index")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--queries-per-request", type=int, default=1)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument(
        "--distinct", type=int, default=0, help="send this many distinct queries, each once"
    )
    parser.add_argument(
        "--rss-at", default="1000,10000", help="with --distinct: answered counts to read RSS at"
    )
    args = parser.parse_args()

    lines = (REPO / "examples" / "tiny" / "queries.jsonl").read_text().splitlines()
    queries = [json.loads(line)["text"] for line in lines if line.strip()]
    with tempfile.TemporaryDirectory(prefix="dsi-load-") as scratch:
        if args.index:
            index, built = Path(args.index), None
        else:
            started = time.perf_counter()
            index = build_tiny_index(Path(scratch) / "idx", args.docs)
            built = round(time.perf_counter() - started, 1)
        manifest = json.loads((index / "manifest.json").read_text())
        proc, url = start_server(index, args)
        try:
            if args.distinct:
                marks = [int(m) for m in args.rss_at.split(",") if m]
                wanted = distinct_queries(index, args.distinct)
                report = asyncio.run(run_distinct(url, wanted, proc.pid, marks, args))
            else:
                report = asyncio.run(run_clients(url, queries, args))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    result = {
        "index": str(args.index) if args.index else f"built: tiny config, {args.docs} docs",
        "index_build_seconds": built,
        "num_docs": manifest["num_docs"],
        "parameters": manifest.get("parameters"),
        "server": {
            "threads": args.threads,
            "max_batch": args.max_batch,
            "max_wait_ms": args.max_wait_ms,
        },
        **report,
    }
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 and result["server_healthy_after"] else 1


if __name__ == "__main__":
    sys.exit(main())
