"""Data augmentation as layers: they act in ``train()`` mode only, so they work with any
skorch dataset, run on the model's device, and never touch evaluation or the dense reference."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RandomHorizontalFlip"]


class RandomHorizontalFlip(nn.Module):
    """Flip each image of a training batch left-right with probability ``p``.

    Put it first in the model (``nn.Sequential(RandomHorizontalFlip(), cnn)``): in
    ``train()`` mode every sample is flipped independently (the paper's augmentation on
    UTKFace); in ``eval()`` mode — predictions, reports, the dense reference — it is the
    identity. Random draws come from torch's global RNG, which
    :class:`~fairprune.FairPrunedClassifier` seeds per epoch from ``random_state``. Unlike
    ``torchvision.transforms.v2.RandomHorizontalFlip`` applied to a batch tensor (one draw for
    the whole batch), the draw here is per sample. It has no parameters, so it is never pruned
    and :meth:`~fairprune.FairPrunedClassifier.export` keeps it as an identity at inference.

    Parameters
    ----------
    p : float, default=0.5
        Probability of flipping each sample.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1]; got {p!r}.")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        shape = (-1,) + (1,) * (x.dim() - 1)
        return torch.where(flip.view(shape), x.flip(-1), x)

    def extra_repr(self) -> str:
        return f"p={self.p}"
