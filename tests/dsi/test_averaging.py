"""The moving average of the weights: its arithmetic, and training that keeps one."""

from __future__ import annotations

import copy
import dataclasses
import random

import pytest
import torch
from safetensors.torch import load_file

from dsi.averaging import WeightAverage
from dsi.config import TrainConfig
from dsi.examples import ExampleSet
from dsi.index import GenerativeIndex
from dsi.train import AVERAGE_FILE, train
from tests.conftest import random_corpus, tiny_config


def test_average_follows_the_ramped_decay_and_swaps_back():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.5)
    expected = torch.zeros(1, 2)
    for step, value in enumerate([1.0, 2.0, 4.0, 8.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model, step)
        decay = min(0.5, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * value
    assert torch.allclose(average.average[0], expected)
    with pytest.raises(RuntimeError), average.swapped_in(model):
        assert torch.allclose(model.weight, expected)
        raise RuntimeError("an evaluation that fails")
    assert torch.all(model.weight == 8.0)
    restored = WeightAverage(model, decay=0.5)
    restored.load_state_dict(average.state_dict())
    restored.copy_to(model)
    assert torch.allclose(model.weight, expected)
    with pytest.raises(ValueError, match="another model"):
        restored.load_state_dict({"0": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(model, decay=1.0)


def _model_and_examples():
    index = GenerativeIndex.build(
        random_corpus(random.Random(3), 8), tiny_config("atomic", steps=1), progress_bar=False
    )
    pairs = [([5 + i, 6 + i, 1], [index.docid_offset + i % 8, 1]) for i in range(16)]
    examples = ExampleSet([s for s, _ in pairs], [t for _, t in pairs], ["index"] * len(pairs))
    return index.model, examples


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # On the CPU: train() leaves a model on its accelerator, checkpoints read back on the CPU.
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def test_training_with_an_average_trains_the_same_and_returns_the_average(tmp_path):
    model, examples = _model_and_examples()
    plain_model, averaged_model = copy.deepcopy(model), copy.deepcopy(model)
    plain = TrainConfig(max_steps=8, max_minutes=None, batch_size=4, warmup_steps=1, seed=5)
    averaged = dataclasses.replace(plain, weight_average_decay=0.6)
    train(plain_model, examples, plain, progress_bar=False)
    seen = []

    def monitor(live, seconds):
        seen.append(_weights(live))

    train(
        averaged_model,
        examples,
        averaged,
        checkpoint_dir=tmp_path / "ckpt",
        progress_bar=False,
        monitor=monitor,
        monitor_minutes=1e-9,
    )
    assert len(seen) >= 6
    # The live weights, left in the checkpoint to resume from, are those of plain training:
    # the average and the evaluations that see it do not touch them.
    live = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    plain_weights = _weights(plain_model)
    for name, value in plain_weights.items():
        if name in live:
            assert torch.allclose(live[name], value), name
    returned = _weights(averaged_model)
    assert any(not torch.allclose(returned[k], plain_weights[k]) for k in returned)
    assert (tmp_path / "ckpt" / AVERAGE_FILE).exists()
    # A finished run resumed trains no more and returns the same average, read back.
    again = copy.deepcopy(model)
    stats = train(again, examples, averaged, checkpoint_dir=tmp_path / "ckpt", progress_bar=False)
    assert stats.resumed_from_step == 8
    for name, value in _weights(again).items():
        assert torch.allclose(value, returned[name]), name
