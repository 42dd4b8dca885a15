"""Export a pruned model as a plain module, and account for its sparsity and cost."""

from __future__ import annotations

import copy

import pandas as pd
import torch
from torch import nn

from .layers import PRUNABLE_TYPES
from .masks import MaskSet, dependency_graph, root_handler

__all__ = ["count_flops", "export_module", "sparsity_table"]


@torch.no_grad()
def export_module(module: nn.Module, masks: MaskSet) -> nn.Module:
    """A plain ``nn.Module`` with the masks folded in.

    Unstructured masks give a module of the same class and ``state_dict`` keys whose pruned
    weights are 0. A channel plan (structured pruning) is applied physically with Torch-Pruning:
    the module becomes smaller and its outputs equal the masked model's.
    """
    exported = copy.deepcopy(module)
    masks.check_compatible(exported)
    masks.apply_(exported)
    if masks.channel_plan:
        if masks.example_input_shape is None:
            raise ValueError("A channel plan needs example_input_shape to trace the module.")
        device = next(exported.parameters()).device
        example = torch.zeros((2, *masks.example_input_shape), device=device)
        graph = dependency_graph(exported, example)
        layers = dict(exported.named_modules())
        for root_name, idxs in masks.channel_plan:
            root = layers[root_name]
            graph.get_pruning_group(root, root_handler(root), list(idxs)).prune()
    for param in exported.parameters():
        param.requires_grad_(True)
    return exported


@torch.no_grad()
def sparsity_table(module: nn.Module, layer_names: list[str] | None = None) -> pd.DataFrame:
    """Per-layer parameter counts and sparsity of Conv/Linear weights.

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    layer_names : list of str, optional
        The prunable layers; the ``prunable`` column marks them. All Conv/Linear layers by
        default.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer, n_weights, n_zero, sparsity, prunable``; ``attrs`` holds
        ``prunable_sparsity`` (zeros among prunable weights), ``total_sparsity`` (zeros among
        all parameters) and ``n_parameters``.
    """
    rows = []
    for name, layer in module.named_modules():
        if isinstance(layer, PRUNABLE_TYPES):
            weight = layer.weight
            zeros = int((weight == 0).sum())
            rows.append(
                {
                    "layer": name,
                    "n_weights": weight.numel(),
                    "n_zero": zeros,
                    "sparsity": zeros / weight.numel(),
                    "prunable": layer_names is None or name in layer_names,
                }
            )
    table = pd.DataFrame(rows, columns=["layer", "n_weights", "n_zero", "sparsity", "prunable"])
    prunable = table[table["prunable"]]
    n_params = sum(p.numel() for p in module.parameters())
    n_zero_all = sum(int((p == 0).sum()) for p in module.parameters())
    table.attrs["prunable_sparsity"] = (
        float(prunable["n_zero"].sum() / prunable["n_weights"].sum()) if len(prunable) else 0.0
    )
    table.attrs["total_sparsity"] = n_zero_all / n_params if n_params else 0.0
    table.attrs["n_parameters"] = n_params
    return table


@torch.no_grad()
def count_flops(module: nn.Module, example_input: torch.Tensor) -> dict[str, float]:
    """Multiply-accumulate count of one forward pass of one sample, dense and sparse.

    The dense count is that of every Conv/Linear layer at full size; the sparse count scales
    each layer by the fraction of its weights that are non-zero (what a sparse kernel could
    skip). Other layers (norms, activations) are not counted.
    """
    counts = {"dense": 0.0, "sparse": 0.0}

    def hook(layer, inputs, output):
        weight = layer.weight
        if isinstance(layer, nn.Linear):
            per_output = weight.shape[1]
            outputs = output.numel() / output.shape[0]
        else:
            per_output = weight[0].numel()
            outputs = output.numel() / output.shape[0]
        dense = per_output * outputs
        counts["dense"] += dense
        counts["sparse"] += dense * float((weight != 0).float().mean())

    handles = [
        layer.register_forward_hook(hook)
        for layer in module.modules()
        if isinstance(layer, PRUNABLE_TYPES)
    ]
    was_training = module.training
    module.eval()
    try:
        module(example_input[:1])
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    return counts
