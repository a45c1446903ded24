"""The semantic-docid finalist on a GPU (issue 28): its examples/s and memorization beside the CPU's.

    python -m experiments.docid_gpu run --minutes 4.5 --eval-every 1.5 --seed 13 \
        --data .gpu/data --work .gpu/work --out $OUT           # on the GPU machine
    python -m experiments.docid_gpu report \
        --gpu experiments/results/docid_gpu/seed13.json experiments/results/docid_gpu/seed14.json \
        --cpu experiments/results/docid_kinds_scifact.json --output experiments/results/docid_gpu

``run`` (on the machine with the GPU) trains what ``experiments.docid_kinds --datasets scifact
--kinds semantic --seed S`` trains (the settings of ``dsi index --docids semantic``; SciFact's
corpus and the training queries left after the 150-query dev split of seed S) for ``--minutes``
of training on whatever device the training finds, with its curve every ``--eval-every`` minutes
on the fixed 500-document memorization sample; then it measures memorization over all documents
(on the GPU, else the CPU) and writes ``OUT/docid_gpu.json``. Test queries are never read.

The GPU machine cannot reach a model hub and MiniLM's weights are too large to carry, so the work
directory travels prepared: the semantic docids (MiniLM embeddings, hierarchical k-means) of the
CPU finalist's build copied in, under the fingerprint of the GPU run's settings
(``dsi.index.build_fingerprint``); a build reads docids from its work directory before it makes
any. ``report`` sets the GPU runs beside the CPU finalist (same settings, 14,184 steps on one CPU
thread): steps, examples/s, dev nDCG@10 and memorization, as ``.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from docid.io import atomic_write_text

KIND = "semantic"
DATASET = "scifact"


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()})"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train (experiments.docid_kinds), then memorization over every document; the record."""
    from dsi.evaluation import memorization
    from dsi.retriever import Retriever
    from experiments import docid_kinds
    from experiments.quality import load_dataset, trained_index

    argv = [
        "--datasets", DATASET, "--kinds", KIND, "--minutes", str(args.minutes),
        "--eval-every", str(args.eval_every), "--seed", str(args.seed),
        "--data", str(args.data), "--work", str(args.work), "--results", str(args.work / "report"),
        "--memorization-sample", str(args.memorization_sample), "--quiet",
        *(f"--set={item}" for item in args.set),
    ]  # fmt: skip
    started = time.monotonic()
    docid_kinds.main(argv)
    trained = json.loads((args.work / DATASET / KIND / "result.json").read_text(encoding="utf-8"))
    record: dict[str, Any] = {
        "command": "python -m experiments.docid_gpu run " + " ".join(args.argv),
        "device": _device_name(),
        "minutes": args.minutes,
        "seed": args.seed,
        "training": trained["training"],
        "curve": trained["curve"],
        "dev": trained["dev"],
        "settings": trained["settings"],
        "provenance": trained["provenance"],
        "run_seconds": round(time.monotonic() - started, 1),
    }
    atomic_write_text(args.out / "docid_gpu.json", json.dumps(record, indent=2) + "\n")

    # The finished build resumes at once from its last checkpoint: the trained index, in memory.
    ns = argparse.Namespace(
        minutes=args.minutes,
        max_steps=None,
        seed=args.seed,
        embedder=None,
        set=args.set,
        quiet=True,
    )
    data = load_dataset(DATASET, args.seed, root=args.data)
    index = trained_index(
        data, docid_kinds.kind_config(KIND, ns), args.work / DATASET / KIND / "build", ns
    )
    for device in ("cuda", "cpu"):
        try:
            clock = time.monotonic()
            retriever = Retriever.for_index(index, device=device)
            found = memorization(retriever, sample=args.final_sample)
        except Exception as exc:  # noqa: BLE001 -- recorded, then measured on the CPU instead
            record.setdefault("memorization_errors", {})[device] = repr(exc)
            continue
        record["memorization_all"] = {
            **found,
            "device": device,
            "seconds": round(time.monotonic() - clock, 1),
        }
        break
    record["run_seconds"] = round(time.monotonic() - started, 1)
    atomic_write_text(args.out / "docid_gpu.json", json.dumps(record, indent=2) + "\n")
    return record


def _row(
    name: str, seed: int, training: dict[str, Any], dev: dict[str, Any], mem: dict[str, Any]
) -> str:
    cells = [
        name,
        str(seed),
        f"{training['steps']:,}",
        f"{training['seconds'] / 60:.1f}",
        f"{training['examples_per_second']:,.0f}",
        f"{dev['nDCG@10']:.3f}",
        f"{dev['Hits@10']:.3f}",
        f"{mem['memorization@1']:.3f}",
        f"{mem['memorization@10']:.3f}",
        f"{mem['memorization_documents']:,}",
    ]
    return "| " + " | ".join(cells) + " |"


def report(args: argparse.Namespace) -> None:
    """``--output``.json / .md: the GPU runs beside the CPU finalist."""
    gpus = [json.loads(path.read_text(encoding="utf-8")) for path in args.gpu]
    cpu_rows = json.loads(args.cpu.read_text(encoding="utf-8"))["results"]
    cpu = next(r for r in cpu_rows if r.get("name") == KIND and "training" in r)
    cpu_seed = cpu["settings"]["train"]["seed"]
    if args.cpu_memorization:
        cpu["memorization_all"] = json.loads(args.cpu_memorization.read_text())["dsi"]
    lines = [
        "# Semantic docids on a GPU and on the CPU (SciFact dev, issue 28)",
        "",
        "The same settings (`dsi index --docids semantic`'s; the training queries left after "
        "`experiments/quality.py`'s 150-query dev split, whose seed is the run's seed, so the "
        "seeds' dev sets differ); rankings are the docids' log-probabilities alone. Memorization "
        "over all 5,183 documents where measured, else the curve's 500-document sample. GPU: "
        f"{gpus[0]['device']}, a time budget of {gpus[0]['minutes']:g} training minutes; CPU: one "
        "thread of this machine (2 vCPUs, another run beside it), the finalist's 14,184 steps.",
        "",
        "| run | seed | steps | train min | examples/s | dev nDCG@10 | dev Hits@10 | "
        "memorization@1 | memorization@10 | documents |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for gpu in gpus:
        mem = gpu.get("memorization_all") or gpu["dev"]
        lines.append(_row("GPU", gpu["seed"], gpu["training"], gpu["dev"], mem))
    lines.append(
        _row(
            "CPU, 1 thread",
            cpu_seed,
            cpu["training"],
            cpu["dev"],
            cpu.get("memorization_all") or cpu["dev"],
        )
    )
    for gpu in gpus:
        lines += [
            "",
            f"GPU, seed {gpu['seed']}: the curve (memorization on the 500-document sample):",
            "",
            "| minutes | dev nDCG@10 | memorization@1 | memorization@10 |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {p['minutes']} | {p['nDCG@10']:.3f} | {p['memorization@1']:.3f} | "
            f"{p['memorization@10']:.3f} |"
            for p in gpu["curve"]
        ]
    out = {
        "command": "python -m experiments.docid_gpu report " + " ".join(args.argv),
        "gpu": gpus,
        "cpu": {k: cpu[k] for k in ("training", "dev", "settings", "curve") if k in cpu},
    }
    if "memorization_all" in cpu:
        out["cpu"]["memorization_all"] = cpu["memorization_all"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output.with_suffix(".json"), json.dumps(out, indent=2) + "\n")
    atomic_write_text(args.output.with_suffix(".md"), "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    import logging
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train and measure (on the GPU machine)")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--eval-every", type=float, default=1.25)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--memorization-sample", type=int, default=500, help="of each curve point")
    p.add_argument("--final-sample", type=int, default=None, help="at the end (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data", type=Path, required=True, help="folder holding scifact/")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report", help="the GPU run beside the CPU finalist")
    r.add_argument("--gpu", type=Path, nargs="+", required=True, help="docid_gpu.json of runs")
    r.add_argument("--cpu", type=Path, required=True, help="docid_kinds_scifact.json of the CPU")
    r.add_argument(
        "--cpu-memorization", type=Path, default=None,
        help="`dsi eval --memorization` JSON of the CPU finalist (all documents)",
    )  # fmt: skip
    r.add_argument("--output", type=Path, default=Path("experiments/results/docid_gpu"))
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "run":
        args.out.mkdir(parents=True, exist_ok=True)
        run(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
