"""Constrained fine-tuning: replay buffers, CEAG, equalized loss and NFT on Cooper.

Plain PyTorch + cooper-optim, independent of skorch: usable in a hand-written training loop.
"""

from .engine import FineTuningEngine, GradientAscent, make_dual_optimizer
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
    "FineTuningEngine",
    "GradientAscent",
    "NaiveFineTuning",
    "ReplayBuffer",
    "SignedEqualizedLossProblem",
    "StepInputs",
    "batch_group_stats",
    "make_dual_optimizer",
    "project_capped_simplex",
]
