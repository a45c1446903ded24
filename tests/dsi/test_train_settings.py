"""TrainConfig.mixed_precision and grad_accumulation_steps, and the random states in checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import json
import random

import pytest
import torch

from docid.io import published
from dsi.config import IndexConfig, TrainConfig
from dsi.examples import ExampleSet
from dsi.index import GenerativeIndex
from dsi.train import make_accelerator, train
from tests.conftest import random_corpus, tiny_config


@pytest.fixture(scope="module")
def model_and_examples():
    index = GenerativeIndex.build(
        random_corpus(random.Random(3), 8), tiny_config("atomic", steps=1), progress_bar=False
    )
    # Sources and targets of one length: a batch's mean loss is then the mean of its halves'.
    pairs = [([5 + i, 6 + i, 7, 1], [index.docid_offset + i, 1]) for i in range(8)]
    examples = ExampleSet([s for s, _ in pairs], [t for _, t in pairs], ["index"] * len(pairs))
    return index.model, examples


def _config(**changes) -> TrainConfig:
    base = TrainConfig(
        max_steps=1,
        max_minutes=None,
        batch_size=8,
        warmup_steps=1,
        learning_rate=1e-2,
        checkpoint_minutes=60,
    )
    return dataclasses.replace(base, **changes)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_accumulated_micro_batches_make_the_update_of_one_batch(model_and_examples):
    start, examples = model_and_examples
    whole = copy.deepcopy(start)
    stats_whole = train(whole, examples, _config(batch_size=8), progress_bar=False)
    halves = copy.deepcopy(start)
    stats_halves = train(
        halves, examples, _config(batch_size=4, grad_accumulation_steps=2), progress_bar=False
    )
    one_half = copy.deepcopy(start)
    train(one_half, examples, _config(batch_size=4), progress_bar=False)

    assert (stats_whole.steps, stats_whole.forward_backward_passes) == (1, 1)
    # One update (a step) of two micro-batches that saw all eight examples.
    assert (stats_halves.steps, stats_halves.forward_backward_passes) == (1, 2)
    assert stats_halves.examples == 8
    before = _weights(start)
    moved = _max_difference(_weights(whole), before)
    assert moved > 1e-3
    assert _max_difference(_weights(halves), _weights(whole)) < 1e-3 * moved
    # Half the batch alone is another update: the comparison above can fail.
    assert _max_difference(_weights(one_half), _weights(whole)) > 0.05 * moved


def test_accumulation_counts_steps_as_updates(model_and_examples):
    start, examples = model_and_examples
    model = copy.deepcopy(start)
    stats = train(
        model,
        examples,
        _config(batch_size=2, grad_accumulation_steps=2, max_steps=3),
        progress_bar=False,
    )
    assert stats.steps == stats.optimizer_updates == 3
    assert stats.forward_backward_passes == 6
    assert stats.examples == 12
    assert stats.stopped_by == "steps"


def test_bf16_mixed_precision_trains_and_the_next_run_is_full_precision(model_and_examples):
    start, examples = model_and_examples
    model = copy.deepcopy(start)
    accelerator = make_accelerator(_config(mixed_precision="bf16"))
    assert accelerator.mixed_precision == "bf16"
    stats = train(model, examples, _config(mixed_precision="bf16"), progress_bar=False)
    assert stats.steps == 1 and stats.final_loss is not None
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # accelerate keeps one precision per process: a later "no" must not inherit bf16.
    assert make_accelerator(_config()).mixed_precision == "no"


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("mixed_precision", "fp32", "train.mixed_precision must be 'no', 'fp16' or 'bf16'"),
        ("grad_accumulation_steps", 0, "train.grad_accumulation_steps must be an integer >= 1"),
        ("grad_accumulation_steps", 1.5, "train.grad_accumulation_steps must be an integer"),
    ],
)
def test_bad_settings_are_refused_with_one_sentence(setting, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{setting: value})
    with pytest.raises(ValueError, match=message):
        IndexConfig().updated({f"train.{setting}": value})
    with pytest.raises(ValueError, match="sam does not combine"):
        TrainConfig(sam=True, grad_accumulation_steps=2)


def test_the_new_settings_are_index_settings_saved_and_fingerprinted():
    from dsi.config import TRAIN_CONSTANTS
    from dsi.data import Corpus
    from dsi.index import build_fingerprint

    saved = IndexConfig().to_dict()["train"]
    assert saved["mixed_precision"] == "no" and saved["grad_accumulation_steps"] == 1
    assert not {"mixed_precision", "grad_accumulation_steps"} & set(TRAIN_CONSTANTS)
    changed = IndexConfig().updated({"train.grad_accumulation_steps": 4})
    assert IndexConfig.from_dict(changed.to_dict()) == changed
    corpus = Corpus(["d1"], [""], ["a document"])
    # A work directory of another accumulation is not resumed as this one's.
    assert build_fingerprint(corpus, changed, None) != build_fingerprint(
        corpus, IndexConfig(), None
    )


def test_checkpoint_carries_cuda_random_states_and_resume_restores_them(
    model_and_examples, tmp_path, monkeypatch
):
    """On a machine without CUDA, the CUDA calls are the only part that cannot run: they are
    replaced by a recorder of two fake GPUs; the checkpoint and resume paths are the real ones."""
    start, examples = model_and_examples
    fake = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    restored: list[list[torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    # The device stays the CPU: accelerate is told so, whatever is_available now says.
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    checkpoints = tmp_path / "checkpoint"
    model = copy.deepcopy(start)
    train(model, examples, _config(max_steps=2, batch_size=4), checkpoints, progress_bar=False)
    state = json.loads((published(checkpoints) / "state.json").read_text())
    assert state["cuda_rng"] == [s.tolist() for s in fake]
    resumed = train(
        copy.deepcopy(start),
        examples,
        _config(max_steps=3, batch_size=4),
        checkpoints,
        progress_bar=False,
    )
    assert resumed.resumed_from_step == 2 and resumed.steps == 3
    assert [[s.tolist() for s in states] for states in restored] == [[s.tolist() for s in fake]]


def test_checkpoint_without_cuda_has_no_cuda_states_and_resumes(model_and_examples, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    start, examples = model_and_examples
    checkpoints = tmp_path / "checkpoint"
    first = copy.deepcopy(start)
    train(first, examples, _config(max_steps=2, batch_size=4), checkpoints, progress_bar=False)
    state = json.loads((published(checkpoints) / "state.json").read_text())
    assert "cuda_rng" not in state and state["torch_rng"]
    again = copy.deepcopy(start)
    resumed = train(
        again, examples, _config(max_steps=4, batch_size=4), checkpoints, progress_bar=False
    )
    assert resumed.resumed_from_step == 2 and resumed.steps == 4
    assert _max_difference(_weights(again), _weights(start)) > 0


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("query_repeats", 0, "train.query_repeats must be an integer >= 1, got 0"),
        ("query_repeats", 1.5, "train.query_repeats must be an integer >= 1"),
        ("max_windows_per_doc", -1, "train.max_windows_per_doc must be an integer >= 0"),
    ],
)
def test_bad_lever_values_are_refused_with_one_sentence(setting, value, message):
    with pytest.raises(ValueError, match=message):
        IndexConfig().updated({f"train.{setting}": value})


def test_views_and_query_repeats_are_settings_that_change_the_examples():
    """DSI's two example levers: indexing views per document, retrieval examples per query."""
    import random as random_module

    from dsi.data import Corpus
    from dsi.index import GenerativeIndex, TrainingQueries
    from tests.conftest import WORDS, tiny_config

    rng = random_module.Random(0)
    # Long documents: every one has more than two sliding windows beyond its lead.
    texts = [" ".join(rng.choices(WORDS, k=200)) for _ in range(4)]
    corpus = Corpus([f"d{i}" for i in range(4)], [""] * 4, texts)
    queries = TrainingQueries({f"q{i}": t[:30] for i, t in enumerate(texts)},
                              {f"q{i}": {f"d{i}": 1} for i in range(4)})  # fmt: skip

    def examples(**train):
        config = tiny_config("atomic", steps=1).updated({f"train.{k}": v for k, v in train.items()})
        assert IndexConfig.from_dict(config.to_dict()) == config  # saved in index.json
        index = GenerativeIndex.build(corpus, config, queries, progress_bar=False)
        return index.lineage[-1]["examples"]

    default = examples()
    assert default["retrieve"] == 4 * 2 and default["index"] > 4 * 3
    assert examples(query_repeats=3, max_windows_per_doc=0) == {"index": 4, "retrieve": 12}
    assert examples(max_windows_per_doc=2)["index"] == 4 * 3
