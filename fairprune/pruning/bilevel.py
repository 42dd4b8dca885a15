"""Learned pruning masks: scores, straight-through top-k masks and BiP's first-order
implicit gradient.

An interpretation of bi-level fair pruning (Dai et al., "Coupling Fairness and Pruning in a
Single Run", 2023), which leaves the mask's parametrisation, the implicit gradient and every
hyperparameter open, built on the template it names, BiP (Zhang et al., NeurIPS 2022):

* every prunable weight has a score ``s``; the mask keeps the top-k scores of a layer (or of
  all pruned layers together) at the current sparsity, and the forward pass uses ``m ⊙ θ``;
* the weights ``θ`` are the lower level, trained by the ordinary step on ``ℓ + F``;
* the scores are the upper level: ``s ← s − β (∇_m(ℓ + F) + (dθ*/dm)ᵀ ∇_θ(ℓ + F))`` with the
  straight-through gradient ``∇_m = θ ⊙ g`` (``g`` the gradient at the masked weights) and
  BiP's first-order implicit term: for a lower level with an ``L2`` term ``γ/2 ||θ||²`` and the
  Hessian of the loss neglected, ``dθ*/dm ≈ −diag(g)/γ``, so the term is ``−m ⊙ g² / γ``.

A pruned weight keeps the value it had when it was pruned (the lower level does not move it,
as in BiP); a weight whose score climbs back into the top-k comes back with that value. Both
levels read the gradient of one backward pass: the scores cost a few element-wise operations
per step and a top-k per layer at every mask update. Plain PyTorch, no skorch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .masks import MaskSet, top_k_masks

__all__ = ["MaskScores"]


def _key(name: str) -> str:
    return name.replace(".", "__")


class MaskScores(nn.Module):
    """The upper level's variables: one score per prunable weight, and the values of the
    pruned weights (frozen while they are pruned).

    Parameters
    ----------
    module : torch.nn.Module
        The model whose weights are scored.
    weight_names : sequence of str
        The scored weights (``"layer.weight"``).
    init : {"magnitude", "random"}, default="magnitude"
        Scores start at ``|w|`` divided by the layer's root mean square (the first mask is the
        magnitude mask) or uniform in [0, 1) (edge-popup's random start).
    lr : float, default=1e-3
        Adam's step on the scores.
    gamma : float, default=1.0
        ``γ`` of the implicit term ``−m ⊙ g² / γ``; ``inf`` drops the term.
    """

    def __init__(self, module: nn.Module, weight_names: Sequence[str], init: str = "magnitude",
                 lr: float = 1e-3, gamma: float = 1.0) -> None:
        super().__init__()
        self.weight_names = list(weight_names)
        self.gamma = float(gamma)
        self.scores = nn.ParameterDict()
        self.values = nn.ParameterDict()  # buffers in spirit: never given to an optimizer
        for name in self.weight_names:
            weight = module.get_parameter(name).detach()
            if init == "magnitude":
                magnitude = weight.abs().float()
                score = magnitude / magnitude.square().mean().sqrt().clamp(min=1e-12)
            elif init == "random":
                score = torch.rand(weight.shape, device=weight.device)
            else:
                raise ValueError(f"init must be 'magnitude' or 'random'; got {init!r}.")
            self.scores[_key(name)] = nn.Parameter(score)
            self.values[_key(name)] = nn.Parameter(weight.clone(), requires_grad=False)
        self.optimizer = torch.optim.Adam(self.scores.parameters(), lr=lr)

    def score_tensors(self) -> dict[str, torch.Tensor]:
        """``{weight name: scores}`` (detached)."""
        return {name: self.scores[_key(name)].detach() for name in self.weight_names}

    def masks(self, sparsity: float, scope: str = "layerwise") -> dict[str, torch.Tensor]:
        """Top-k masks of the current scores at ``sparsity``."""
        return top_k_masks(self.score_tensors(), sparsity, scope)

    @torch.no_grad()
    def remember(self, module: nn.Module, masks: MaskSet) -> None:
        """Record the trained values of the weights the masks keep (the pruned ones keep
        the values they had when they were pruned)."""
        current = dict(masks.items())
        for name in self.weight_names:
            weight = module.get_parameter(name)
            mask = current.get(name)
            stored = self.values[_key(name)]
            if mask is None:
                stored.copy_(weight)
            else:
                stored.copy_(torch.where(mask.bool(), weight, stored))

    @torch.no_grad()
    def step(self, module: nn.Module, masks: MaskSet) -> None:
        """One upper-level step from the gradients of the masked weights (``.grad``, read
        after the backward pass): ``∇s = θ ⊙ g − m ⊙ g² / γ``."""
        current = dict(masks.items())
        for name in self.weight_names:
            weight = module.get_parameter(name)
            score = self.scores[_key(name)]
            if weight.grad is None:
                score.grad = None
                continue
            grad = weight.grad.float()
            mask = current.get(name)
            full = self.values[_key(name)].float()
            update = full * grad
            if self.gamma != float("inf"):
                kept = mask.float() if mask is not None else torch.ones_like(grad)
                update = update - kept * grad.square() / self.gamma
            score.grad = update
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def install(self, module: nn.Module, masks: MaskSet, new_masks: dict[str, torch.Tensor]) -> None:
        """Copy ``new_masks`` into ``masks`` (in place: the training step keeps its MaskSet)
        and give the weights they revive their remembered values."""
        current = dict(masks.items())
        for name, new in new_masks.items():
            current[name].copy_(new)
            weight = module.get_parameter(name)
            weight.copy_(self.values[_key(name)].to(weight.dtype) * new.to(weight.dtype))
