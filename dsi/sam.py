"""Sharpness-aware minimisation (Foret et al., 2021) as a wrapper around any torch optimizer.

One SAM update takes two forward/backward passes: the gradient at the weights ``w`` gives the
ascent direction, the weights move to ``w + rho * g / ||g||`` (the worst nearby point), the
gradient there is computed, the weights go back to ``w`` and the base optimizer steps with that
second gradient. DSI++ uses it to flatten the loss surface so that later additions forget less.

Typical use::

    sam = SAM(torch.optim.AdamW(model.parameters()), rho=0.05)
    loss_fn().backward(); sam.first_step()      # perturb, clear gradients
    loss_fn().backward(); sam.second_step()     # restore, base optimizer step, clear gradients

or ``sam.step(closure)`` where ``closure`` zeroes nothing and returns ``loss`` after backward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class SAM:
    """Perturbs the parameters of ``optimizer`` before the second gradient of each update.

    The base optimizer keeps its own state (and is what checkpoints save); this wrapper holds
    only the perturbation between ``first_step`` and ``second_step``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, rho: float = 0.05) -> None:
        if rho <= 0:
            raise ValueError(f"SAM's rho must be positive, got {rho}.")
        self.optimizer = optimizer
        self.rho = rho
        self._perturbation: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Move the weights to ``w + rho * g / ||g||`` using the gradients now in ``.grad``."""
        if self._perturbation:
            raise RuntimeError("SAM.first_step was called twice without second_step.")
        params = self._params()
        if not params:
            return
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad.detach(), 2) for p in params]), 2
        )
        scale = self.rho / (norm + 1e-12)
        for p in params:
            e = p.grad.detach() * scale.to(p.grad.device)
            p.add_(e)
            self._perturbation.append((p, e))
        if zero_grad:
            self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def restore(self) -> None:
        """Put the weights back where ``first_step`` found them (gradients are kept)."""
        for p, e in self._perturbation:
            p.sub_(e)
        self._perturbation = []

    def second_step(self, zero_grad: bool = True) -> None:
        """Restore the weights and let the base optimizer step with the perturbed gradient."""
        self.restore()
        self.optimizer.step()
        if zero_grad:
            self.optimizer.zero_grad(set_to_none=True)

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One full SAM update; ``closure`` runs forward and backward and returns the loss."""
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)
