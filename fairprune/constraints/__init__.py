"""Fairness problems on Cooper: replay buffers, CEAG, equalized loss and NFT.

Plain PyTorch + cooper-optim, independent of skorch and of :mod:`fairprune.pruning`. The
training step that drives these problems is :class:`fairprune.training.FineTuningEngine`.
"""

from .problems import (
    CEAGProblem,
    EqualizedLossProblem,
    FairnessProblem,
    FairnessState,
    NaiveFineTuning,
    SignedEqualizedLossProblem,
    StepInputs,
    project_capped_simplex,
)
from .replay_buffer import ReplayBuffer
from .statistics import DenseReference, batch_group_stats

__all__ = [
    "CEAGProblem",
    "DenseReference",
    "EqualizedLossProblem",
    "FairnessProblem",
    "FairnessState",
    "NaiveFineTuning",
    "ReplayBuffer",
    "SignedEqualizedLossProblem",
    "StepInputs",
    "batch_group_stats",
    "project_capped_simplex",
]
