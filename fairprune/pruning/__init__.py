"""Gradual magnitude pruning: schedule, masks (unstructured and channel), export, accounting.

Self-contained (no skorch): usable in any PyTorch training loop.
"""

from .export import count_flops, export_module, sparsity_table
from .layers import PRUNABLE_TYPES, prunable_layers
from .masks import MaskSet, channel_masks, magnitude_masks
from .schedule import cubic_sparsity

__all__ = [
    "PRUNABLE_TYPES",
    "MaskSet",
    "channel_masks",
    "count_flops",
    "cubic_sparsity",
    "export_module",
    "magnitude_masks",
    "prunable_layers",
    "sparsity_table",
]
