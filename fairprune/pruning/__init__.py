"""Pruning: schedules, criteria (magnitude, FairGRAPE, learned masks), masks (unstructured and
channel), export, accounting.

Self-contained (no skorch): usable in any PyTorch training loop.
"""

from .export import count_flops, export_module, sparsity_table
from .layers import PRUNABLE_TYPES, prunable_layers
from .masks import MaskSet, channel_masks, magnitude_masks, top_k_masks
from .criteria import (CRITERIA, BiLevel, FairGRAPE, Magnitude, PruningContext, PruningCriterion,
                       check_criterion, fairgrape_defaults)
from .schedule import cubic_sparsity, geometric_sparsity

__all__ = [
    "CRITERIA",
    "BiLevel",
    "FairGRAPE",
    "Magnitude",
    "PRUNABLE_TYPES",
    "PruningContext",
    "PruningCriterion",
    "check_criterion",
    "fairgrape_defaults",
    "geometric_sparsity",
    "MaskSet",
    "channel_masks",
    "count_flops",
    "cubic_sparsity",
    "export_module",
    "magnitude_masks",
    "prunable_layers",
    "sparsity_table",
    "top_k_masks",
]
