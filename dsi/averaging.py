"""An exponential moving average of a model's weights (Polyak averaging), kept beside training.

The average of the last few thousand updates is a flatter, less noisy point than the last
update alone; with a time budget it is free (one in-place blend per update). Training keeps
updating the live weights; the average is what evaluations see and what the index keeps.

Typical use::

    average = WeightAverage(model, decay=0.999)
    for step, batch in enumerate(batches):
        ...; optimizer.step(); average.update(model, step)
    with average.swapped_in(model):
        evaluate(model)
    average.copy_to(model)  # at the end
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightAverage:
    """The moving average of ``model``'s trainable parameters with the given ``decay``.

    Early updates weigh more (the decay ramps up as ``(1 + step) / (10 + step)``), so the average
    does not hold on to the random initial weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"The weight-average decay must be between 0 and 1, got {decay}.")
        self.decay = decay
        self.average = [p.detach().clone() for p in _trainable(model)]

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Blend in the weights after update number ``step`` (0 for the first)."""
        weight = 1.0 - min(self.decay, (1 + step) / (10 + step))
        for mean, param in zip(self.average, _trainable(model), strict=True):
            mean.lerp_(param.detach(), weight)

    def copy_to(self, model: torch.nn.Module) -> None:
        """Put the averaged weights into ``model``."""
        _assign(model, self.average)

    @contextmanager
    def swapped_in(self, model: torch.nn.Module) -> Iterator[None]:
        """``model`` holds the averaged weights inside the block and its own weights after."""
        live = [p.detach().clone() for p in _trainable(model)]
        self.copy_to(model)
        try:
            yield
        finally:
            _assign(model, live)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {str(i): mean.detach().cpu().contiguous() for i, mean in enumerate(self.average)}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        if len(tensors) != len(self.average):
            raise ValueError(
                f"The saved weight average has {len(tensors)} tensors, the model "
                f"{len(self.average)}: it belongs to another model."
            )
        for i, mean in enumerate(self.average):
            saved = tensors[str(i)]
            if saved.shape != mean.shape:
                raise ValueError(
                    f"The saved weight average's tensor {i} has shape {tuple(saved.shape)}, the "
                    f"model's {tuple(mean.shape)}: it belongs to another model."
                )
            mean.copy_(saved)


def _trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def _assign(model: torch.nn.Module, tensors: list[torch.Tensor]) -> None:
    for param, value in zip(_trainable(model), tensors, strict=True):
        param.copy_(value)
