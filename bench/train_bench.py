"""Training throughput: ``dsi.train.train`` vs a bare PyTorch loop; prints one JSON object.

    python -m bench.train_bench                       # default model, CPU, 2 threads
    python -m bench.train_bench --size t5-small --device cuda

Both train the same freshly initialised model (same seed) on the same batches: random token
ids with realistic lengths (sources 48-64 tokens, targets 4-6 including EOS, as document views
and docids are), batch 64. The bare loop is what one would write by hand: pre-collated
tensors, AdamW with the trainer's settings, gradient clipping to 1.0 (the trainer clips too),
no accelerate, no learning-rate schedule, no progress bar, no loss read back per step.

Each side runs ``--steps`` steps after ``--warmup`` untimed ones, ``--repeats`` times
interleaved; the median is reported. The trainer's own clock (``TrainStats``) starts before its
first step, so its timed run is a separate ``train`` call whose stats are taken as they are.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time

import torch

from dsi.config import MODEL_SIZES, ModelConfig, ModelShape, TrainConfig
from dsi.examples import ExampleSet
from dsi.model import PAD_ID, build_model, num_parameters
from dsi.train import collate, epoch_batches, train

# name -> (shape, text vocabulary)
SIZES: dict[str, tuple[ModelShape, int]] = {
    "default": (MODEL_SIZES["small"], ModelConfig().vocab_size),
    # t5-small's shape: d_model 512, d_ff 2048, 6+6 layers, 8 heads of 64, 32k vocabulary.
    "t5-small": (
        ModelShape(
            d_model=512,
            d_ff=2048,
            d_kv=64,
            num_heads=8,
            num_layers=6,
            num_decoder_layers=6,
            dropout_rate=0.1,
        ),
        32_000,
    ),
}


def synthetic_examples(n: int, text_vocab: int, symbols: int, seed: int = 0) -> ExampleSet:
    """Sources of 48-64 text tokens ending in EOS; targets of 3-5 docid tokens plus EOS."""
    rng = random.Random(seed)
    eos = 1
    sources, targets = [], []
    for _ in range(n):
        sources.append([rng.randrange(3, text_vocab) for _ in range(rng.randint(47, 63))] + [eos])
        targets.append([text_vocab + rng.randrange(symbols) for _ in range(rng.randint(3, 5))])
        targets[-1].append(eos)
    return ExampleSet(sources, targets, ["index"] * n)


def fresh_model(size: str, symbols: int, seed: int):
    torch.manual_seed(seed)
    shape, vocab_size = SIZES[size]
    return build_model(shape, vocab_size, symbols)


def bare_loop(model, batches: list[dict], config: TrainConfig, device: torch.device) -> float:
    """Seconds for a hand-written loop over ``batches`` (already collated)."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    sync(device)
    started = time.perf_counter()
    for batch in batches:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - started


def ours(model, examples: ExampleSet, config: TrainConfig, device: torch.device) -> dict:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=device.type == "cpu")
    stats = train(model, examples, config, accelerator=accelerator, progress_bar=False)
    return {"examples_per_s": stats.examples_per_second, "steps": stats.steps}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--symbols", type=int, default=1000, help="docid symbols in the vocabulary")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    text_vocab = SIZES[args.size][1]
    # Enough examples that one epoch holds every step, so the epoch loop never wraps.
    n = args.batch_size * (args.steps + args.warmup + 1)
    examples = synthetic_examples(n, text_vocab, args.symbols)
    config = TrainConfig(
        batch_size=args.batch_size,
        max_steps=args.steps,
        max_minutes=None,
        warmup_steps=1,
        max_epochs=1,
        checkpoint_minutes=1e9,
    )
    lengths = [len(s) + len(t) for s, t in zip(examples.sources, examples.targets, strict=True)]
    order = epoch_batches(lengths, config.batch_size, config.seed, 0, 1)
    batches = [collate(examples, ix, PAD_ID) for ix in order[: args.steps]]
    warm_batches = [collate(examples, ix, PAD_ID) for ix in order[: args.warmup]]
    warm_config = dataclasses.replace(config, max_steps=args.warmup)

    ours_runs, bare_runs = [], []
    for repeat in range(args.repeats):
        model = fresh_model(args.size, args.symbols, seed=repeat)
        if args.warmup:
            ours(model, examples, warm_config, device)
        model = fresh_model(args.size, args.symbols, seed=repeat)
        ours_runs.append(ours(model, examples, config, device))
        model = fresh_model(args.size, args.symbols, seed=repeat)
        if args.warmup:
            bare_loop(model, warm_batches, config, device)
        model = fresh_model(args.size, args.symbols, seed=repeat)
        bare_runs.append(bare_loop(model, batches, config, device))
        del model
    examples_timed = sum(len(b["input_ids"]) for b in batches)
    ours_eps = statistics.median(r["examples_per_s"] for r in ours_runs)
    bare_eps = statistics.median(examples_timed / s for s in bare_runs)
    report = {
        "size": args.size,
        "model_config": {**dataclasses.asdict(SIZES[args.size][0]), "vocab_size": text_vocab},
        "parameters": num_parameters(fresh_model(args.size, args.symbols, 0)),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "mean_source_tokens": round(statistics.mean(map(len, examples.sources)), 1),
        "mean_target_tokens": round(statistics.mean(map(len, examples.targets)), 1),
        "ours_examples_per_s": round(ours_eps, 2),
        "bare_examples_per_s": round(bare_eps, 2),
        "ours_over_bare": round(ours_eps / bare_eps, 3),
        "ours_runs_examples_per_s": [r["examples_per_s"] for r in ours_runs],
        "bare_runs_examples_per_s": [round(examples_timed / s, 2) for s in bare_runs],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
