"""Training with accelerate: one multi-task run over indexing and retrieval examples.

Optionally a pool is mixed in (a fresh sample of it every epoch: old documents when adding,
copy pairs when building) and updates use sharpness-aware minimisation (``TrainConfig.sam``,
see ``dsi.sam``).

Checkpoints are plain safetensors + JSON (no pickle), written atomically, so a killed run resumes
from the last one with the same data order.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file, load_model, save_file, save_model
from tqdm.auto import tqdm

from docid.guard import Kind
from docid.io import atomic_write_text, publish_dir, published, staging_dir
from dsi.averaging import WeightAverage
from dsi.config import TrainConfig
from dsi.examples import Chain, Examples
from dsi.sam import SAM

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
# A checkpoint folder is recognised by its state.json, which is written last.
CHECKPOINT_KIND = Kind("a training checkpoint", "state.json")
AVERAGE_FILE = "weight_average.safetensors"
# The loss history keeps one point (the mean loss since the last) every this many steps, and one
# at the end: a few hundred points for an hour's training.
LOG_EVERY_STEPS = 50
# glibc's mallopt parameters, and their defaults to restore after training.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
# Free heap above this stays in the process while training (the activations of the next step
# reuse it).
TRAINING_TRIM_THRESHOLD = 1 << 30
# The bar of a time budget counts per cent of the budget; its rate would read "%/s", so it shows
# elapsed<remaining instead, and steps/s in the postfix.
TIMED_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}"


@dataclass
class TrainStats:
    steps: int
    examples: int
    seconds: float
    examples_per_second: float
    epochs_completed: int
    final_loss: float | None
    stopped_by: str
    resumed_from_step: int
    # Steps are optimizer updates; SAM makes each update cost two forward/backward passes.
    optimizer_updates: int
    forward_backward_passes: int
    # (step, seconds, epoch, loss) points of the main process; kept out of the lineage entry
    # (an index writes them to training_log.jsonl) and out of the log line.
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, object]:
        """The figures without the history: what lineage entries and summaries record."""
        return {k: v for k, v in asdict(self).items() if k != "history"}


@dataclass
class _Position:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seconds: float = 0.0
    examples: int = 0
    passes: int = 0
    # The loss history so far, saved in checkpoints so a resumed run keeps its first points.
    history: list[dict[str, float]] = field(default_factory=list)


def epoch_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    world: int,
    indices: Sequence[int] | np.ndarray | None = None,
) -> list[np.ndarray]:
    """The batches of one epoch (arrays of example indices), identical on every process and on
    resume.

    Examples (all of them, or ``indices``) are shuffled, then sorted by length inside windows of
    50 batches so that a batch holds similar lengths (less padding), then the batches are
    shuffled again.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    lengths = np.asarray(lengths)
    # random.shuffle of a list, as ever, so that an epoch's order stays what it was.
    shuffled = list(range(len(lengths))) if indices is None else list(indices)
    rng.shuffle(shuffled)
    order = np.asarray(shuffled, dtype=np.int64)
    del shuffled
    window = batch_size * 50
    for start in range(0, len(order), window):
        part = order[start : start + window]
        # Stable, as sorted() is: equal lengths keep their shuffled order.
        order[start : start + window] = part[np.argsort(lengths[part], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    usable = len(batches) - len(batches) % world if len(batches) >= world else len(batches)
    return batches[:usable]


def replay_sample(pool_size: int, count: int, seed: int, epoch: int) -> list[int]:
    """``count`` indices into a replay pool for one epoch: without repetition while it lasts."""
    if pool_size == 0 or count <= 0:
        return []
    rng = random.Random(seed * 7_919 + epoch * 104_729 + 1)
    whole, rest = divmod(count, pool_size)
    picked = list(range(pool_size)) * whole + rng.sample(range(pool_size), rest)
    return sorted(picked)


def collate(examples: Examples, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """The padded batch of the examples at ``indices``."""
    pairs = examples.pairs(indices)
    src_len = max(len(s) for s, _ in pairs)
    tgt_len = max(len(t) for _, t in pairs)
    input_ids = np.full((len(pairs), src_len), pad_id, dtype=np.int64)
    labels = np.full((len(pairs), tgt_len), -100, dtype=np.int64)
    for row, (s, t) in enumerate(pairs):
        input_ids[row, : len(s)] = s
        labels[row, : len(t)] = t
    inputs = torch.from_numpy(input_ids)
    return {
        "input_ids": inputs,
        "attention_mask": inputs.ne(pad_id).long(),
        "labels": torch.from_numpy(labels),
    }


@contextmanager
def steady_heap() -> Iterator[None]:
    """Keep the memory a training step frees for the next step, and hand it back after.

    By default glibc serves every block above a few MB (a step's logits and activations, 100+
    MB for a batch of 128 over an 8,000-token vocabulary) by a fresh ``mmap`` and returns it on
    ``free``: each step then faults in every page of them again (~22,000 minor faults a step,
    ~10% of the CPU time in the kernel). Inside this block large blocks come from the heap and
    freed heap is not trimmed, so steps reuse the same pages; on exit the defaults are restored
    and the free heap is returned (``malloc_trim``). Not glibc, or the user set glibc's malloc
    tunables: nothing changes.
    """
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(M_TRIM_THRESHOLD, TRAINING_TRIM_THRESHOLD)
    libc.mallopt(M_MMAP_MAX, 0)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    """glibc, when this process runs on it and its malloc settings are left to us."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(
        name.startswith("MALLOC_") and name.endswith("_") for name in os.environ
    ):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _steady_heap(function: Callable[..., TrainStats]) -> Callable[..., TrainStats]:
    """Run ``function`` inside :func:`steady_heap`."""

    @functools.wraps(function)
    def run(*args, **kwargs) -> TrainStats:
        with steady_heap():
            return function(*args, **kwargs)

    return run


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up, then linear decay to 10% of the peak as the budget is used up."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    return config.learning_rate * warm * (1.0 - 0.9 * min(1.0, progress))


@_steady_heap
def train(
    model: torch.nn.Module,
    examples: Examples,
    config: TrainConfig,
    checkpoint_dir: Path | None = None,
    pad_id: int = 0,
    accelerator: Accelerator | None = None,
    progress_bar: bool = True,
    replay: Examples | None = None,
    replay_per_epoch: int = 0,
    monitor: Callable[[torch.nn.Module, float], None] | None = None,
    monitor_minutes: float = 5.0,
) -> TrainStats:
    """Train ``model`` on ``examples`` until an epoch, step or time budget runs out.

    With ``replay`` (old documents' examples when adding, or a pool of copy pairs), every epoch
    also holds ``replay_per_epoch`` examples drawn from it afresh (the same draw on every process
    and on resume); ``examples`` may then be empty. ``monitor(model, training_seconds)`` is
    called on the main process every ``monitor_minutes`` of training (e.g. to evaluate on a dev
    set); the time it takes does not count against the budget.
    """
    drawing = replay is not None and len(replay) > 0 and replay_per_epoch > 0
    if len(examples) == 0 and not drawing:
        raise ValueError("There are no training examples: the corpus produced no inputs.")
    fresh = len(examples)
    if drawing:
        # Read in place: the pool's examples follow the fresh ones' indices.
        examples = Chain([examples, replay])
    else:
        replay, replay_per_epoch = None, 0

    def epoch_indices(epoch: int) -> np.ndarray | None:
        if replay is None:
            return None
        drawn = replay_sample(len(replay), replay_per_epoch, config.seed, epoch)
        return np.concatenate(
            [np.arange(fresh, dtype=np.int64), fresh + np.asarray(drawn, dtype=np.int64)]
        )

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    accelerator = accelerator or make_accelerator(config)
    accumulation = accelerator.gradient_accumulation_steps
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    pos = _Position()
    # Resolved once: the state and the average are read from the same published directory.
    last_checkpoint = published(checkpoint_dir) if checkpoint_dir is not None else None
    if last_checkpoint is not None and (last_checkpoint / "state.json").exists():
        pos = _load_checkpoint(last_checkpoint, model, optimizer)
        log.info("Resuming training from step %d (epoch %d).", pos.step, pos.epoch)
    resumed_from = pos.step
    # Accelerate leaves a model it prepared before as it is: a model trained again in the same
    # process (``add`` after ``build``) would stay on the CPU, and out of DDP, without this.
    model.__dict__.pop("_is_accelerate_prepared", None)
    model, optimizer = accelerator.prepare(model, optimizer)
    sam = SAM(optimizer, rho=config.sam_rho) if config.sam else None
    average = None
    if config.weight_average_decay:
        average = WeightAverage(accelerator.unwrap_model(model), config.weight_average_decay)
        saved = last_checkpoint / AVERAGE_FILE if pos.step else None  # resumed: it is set
        if saved is not None and saved.exists():
            average.load_state_dict(load_file(str(saved)))
    model.train()

    world, rank = accelerator.num_processes, accelerator.process_index
    lengths = examples.lengths()
    # Steps are optimizer updates: `accumulation` micro-batches each.
    steps_per_epoch = max(
        1,
        len(epoch_batches(lengths, config.batch_size, config.seed, 0, world, epoch_indices(0)))
        // world
        // accumulation,
    )
    budget_steps = config.max_steps or config.max_epochs * steps_per_epoch
    budget_seconds = config.max_minutes * 60 if config.max_minutes else math.inf
    # Under a time budget the bar counts per cent of the budget, the larger of the steps' and
    # the time's share, so that whichever budget ends first decides the ETA.
    timed = budget_seconds != math.inf
    bar = tqdm(
        total=100 if timed else budget_steps,
        initial=_percent(pos.step, budget_steps, pos.seconds, budget_seconds)
        if timed
        else pos.step,
        desc="training",
        unit="%" if timed else "step",
        bar_format=TIMED_BAR_FORMAT if timed else None,
        disable=not (progress_bar and accelerator.is_main_process),
        dynamic_ncols=True,
    )
    last_checkpoint = time.monotonic()
    started = time.monotonic() - pos.seconds
    next_monitor = (math.floor(pos.seconds / 60 / monitor_minutes) + 1) * monitor_minutes * 60
    loss_value: float | None = None
    # Read back only when shown: float() on every step would wait for the GPU and stop the host
    # from queueing the next step while the device works.
    last_loss: torch.Tensor | None = None
    # Summed on the device between history points, read back only at a point, for the same reason.
    loss_sum: torch.Tensor | None = None
    loss_steps = 0
    # Micro-batches whose gradients wait for the next update: budgets, checkpoints and monitors
    # act only between updates (pending == 0), so a checkpoint never holds half an update.
    pending = 0

    def log_point() -> None:
        nonlocal loss_sum, loss_steps
        if loss_sum is not None and loss_steps:
            point = {"step": pos.step, "seconds": round(pos.seconds, 2), "epoch": pos.epoch}
            pos.history.append({**point, "loss": round(float(loss_sum) / loss_steps, 5)})
        loss_sum, loss_steps = None, 0

    stopped_by = "epochs"
    while pos.epoch < config.max_epochs:
        batches = epoch_batches(
            lengths, config.batch_size, config.seed, pos.epoch, world, epoch_indices(pos.epoch)
        )
        mine = batches[rank::world]
        while pos.batch_in_epoch < len(mine):
            if pending == 0:
                elapsed = _agreed(accelerator, time.monotonic() - started)
                progress = max(pos.step / budget_steps, elapsed / budget_seconds)
                if pos.step >= budget_steps:
                    stopped_by = "steps"
                    break
                if elapsed >= budget_seconds:
                    stopped_by = "time"
                    break
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(config, pos.step, progress)
            batch = collate(examples, mine[pos.batch_in_epoch], pad_id)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            # accumulate() counts micro-batches, syncs gradients (DDP) only on the last of an
            # update, and backward() divides the loss by their number, so the update is that of
            # the mean loss over all of them.
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                pos.passes += 1
                updating = accelerator.sync_gradients
                if sam is not None:
                    # Second pass at the sharpest nearby weights; its gradient makes the update.
                    # (TrainConfig refuses SAM with accumulation: every micro-batch updates.)
                    sam.first_step()
                    accelerator.backward(model(**batch).loss)
                    pos.passes += 1
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                    sam.second_step()
                elif updating:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            last_loss = loss.detach()
            loss_sum = last_loss if loss_sum is None else loss_sum + last_loss
            loss_steps += 1
            pos.batch_in_epoch += 1
            # This micro-batch's batches on every process (the same list everywhere, dealt
            # round-robin).
            done = pos.batch_in_epoch - 1
            pos.examples += sum(map(len, batches[done * world : (done + 1) * world]))
            pos.seconds = time.monotonic() - started
            if not updating:
                pending += 1
                continue
            pending = 0
            if average is not None:
                average.update(accelerator.unwrap_model(model), pos.step)
            pos.step += 1
            if pos.step % LOG_EVERY_STEPS == 0:
                log_point()
            if timed:
                bar.update(_percent(pos.step, budget_steps, pos.seconds, budget_seconds) - bar.n)
            else:
                bar.update(1)
            # From the first step on, so a slow start shows its loss and rates too.
            if (pos.step % 10 == 0 or pos.step == 1) and not bar.disable:
                loss_value = float(last_loss)
                rates = {"steps_s": f"{pos.step / max(pos.seconds, 1e-9):.1f}"} if timed else {}
                bar.set_postfix(
                    loss=f"{loss_value:.3f}",
                    epoch=pos.epoch,
                    ex_s=f"{pos.examples / max(pos.seconds, 1e-9):.0f}",
                    **rates,
                )
            if monitor is not None and pos.seconds >= next_monitor:
                paused = time.monotonic()
                if accelerator.is_main_process:
                    live = accelerator.unwrap_model(model)
                    with nullcontext() if average is None else average.swapped_in(live):
                        monitor(live, pos.seconds)
                    # A monitor may search on another device; training goes on where it was.
                    live.to(accelerator.device)
                    model.train()
                accelerator.wait_for_everyone()
                next_monitor += monitor_minutes * 60
                started += time.monotonic() - paused
            due = time.monotonic() - last_checkpoint >= config.checkpoint_minutes * 60
            if checkpoint_dir is not None and _agreed(accelerator, float(due)) > 0:
                _save_checkpoint(accelerator, checkpoint_dir, model, optimizer, pos, average)
                last_checkpoint = time.monotonic()
        else:
            pos.epoch += 1
            pos.batch_in_epoch = 0
            continue
        break
    bar.close()
    if last_loss is not None:
        loss_value = float(last_loss)
    pos.seconds = time.monotonic() - started
    log_point()
    if checkpoint_dir is not None:
        _save_checkpoint(accelerator, checkpoint_dir, model, optimizer, pos, average)
    if average is not None:
        # The checkpoint keeps the live weights to resume from; the trained model is the average.
        average.copy_to(accelerator.unwrap_model(model))
    stats = TrainStats(
        steps=pos.step,
        examples=pos.examples,
        seconds=round(pos.seconds, 2),
        examples_per_second=round(pos.examples / max(pos.seconds, 1e-9), 2),
        epochs_completed=pos.epoch,
        final_loss=loss_value,
        stopped_by=stopped_by,
        resumed_from_step=resumed_from,
        optimizer_updates=pos.step,
        forward_backward_passes=pos.passes,
        history=list(pos.history),
    )
    log.info("Training finished: %s", stats)
    accelerator.wait_for_everyone()
    return stats


def make_accelerator(config: TrainConfig) -> Accelerator:
    """An ``Accelerator`` with the config's mixed precision and gradient accumulation.

    "no" leaves a launcher's setting (``accelerate launch --mixed_precision``) as it is.
    """
    wanted = config.mixed_precision
    if wanted == "no":
        wanted = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    settings = {
        "mixed_precision": wanted,
        "gradient_accumulation_steps": config.grad_accumulation_steps,
    }
    try:
        return Accelerator(**settings)
    except ValueError as exc:
        if "already been initialized" not in str(exc):
            raise
    # accelerate keeps one precision per process and refuses another once set (by an earlier
    # training, e.g. the query generator's): set its state up again, keeping the process group.
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(**settings)


def _percent(step: int, budget_steps: int, seconds: float, budget_seconds: float) -> float:
    """The share of the budget used, in per cent: the larger of the steps' and the time's."""
    return min(100.0, 100.0 * max(step / budget_steps, seconds / budget_seconds))


def _agreed(accelerator: Accelerator, value: float) -> float:
    """The maximum of ``value`` over processes, so that all of them stop and decay together."""
    if accelerator.num_processes == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.gather(tensor).max())


def _save_checkpoint(
    accelerator,
    directory: Path,
    model,
    optimizer,
    pos: _Position,
    average: WeightAverage | None = None,
) -> None:
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    stage = staging_dir(directory)
    save_model(accelerator.unwrap_model(model), str(stage / "model.safetensors"))
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{name}": value.detach().cpu().contiguous()
        for index, slots in state["state"].items()
        for name, value in slots.items()
    }
    save_file(tensors, str(stage / "optimizer.safetensors"))
    if average is not None:
        save_file(average.state_dict(), str(stage / AVERAGE_FILE))
    meta = {
        "version": CHECKPOINT_VERSION,
        "position": asdict(pos),
        "param_groups": state["param_groups"],
        "torch_rng": torch.get_rng_state().tolist(),
        # One state per visible GPU; absent on a machine without CUDA.
        **(
            {"cuda_rng": [s.tolist() for s in torch.cuda.get_rng_state_all()]}
            if torch.cuda.is_available()
            else {}
        ),
    }
    atomic_write_text(stage / "state.json", json.dumps(meta))
    publish_dir(stage, directory, kind=CHECKPOINT_KIND)


def _load_checkpoint(directory: Path, model, optimizer) -> _Position:
    meta = json.loads((directory / "state.json").read_text())
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"Checkpoint {directory} has version {meta.get('version')}, this library reads "
            f"version {CHECKPOINT_VERSION}; delete it to start training afresh."
        )
    load_model(model, str(directory / "model.safetensors"))
    flat = load_file(str(directory / "optimizer.safetensors"))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
    cuda_rng = meta.get("cuda_rng")
    if cuda_rng and torch.cuda.is_available():
        states = [torch.tensor(s, dtype=torch.uint8) for s in cuda_rng]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
        else:  # resumed with another number of GPUs: the states cannot be matched to them
            log.warning(
                "The checkpoint holds the random state of %d GPUs, this machine has %d; "
                "their random streams start afresh.",
                len(states),
                torch.cuda.device_count(),
            )
    return _Position(**meta["position"])
