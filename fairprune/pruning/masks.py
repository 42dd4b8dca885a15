"""Pruning masks that hold through training, deep-copies and pickling.

Masks are explicit tensors kept in a :class:`MaskSet` (an ``nn.Module`` of buffers, so it moves
with ``.to(device)`` and pickles with the model) and re-applied after every optimizer step.
No ``torch.nn.utils.prune`` forward hooks (they break ``copy.deepcopy``, PyTorch issue 37322)
and no parametrizations (they break pickling): the pruned model keeps its class and
``state_dict`` keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .layers import PRUNABLE_TYPES

__all__ = ["MaskSet", "channel_masks", "keep_largest", "magnitude_masks", "top_k_masks"]


def _buffer_name(param_name: str) -> str:
    return param_name.replace(".", "__")


class MaskSet(nn.Module):
    """Masks keyed by parameter name; multiplying a parameter by its mask prunes it.

    Parameters
    ----------
    masks : dict of str to Tensor, optional
        ``{parameter name: mask}``, masks of the parameter's shape with 0 (pruned) and 1 (kept).
    channel_plan : list of (str, list of int), optional
        For structured pruning: the root layer of every pruned channel group and the pruned
        output-channel indices, used by :func:`~fairprune.pruning.export.export_module`.
    example_input_shape : tuple of int, optional
        Shape of one input sample, needed to trace the dependency graph at export.
    """

    def __init__(
        self,
        masks: dict[str, torch.Tensor] | None = None,
        channel_plan: list[tuple[str, list[int]]] | None = None,
        example_input_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.param_names: list[str] = []
        self.channel_plan = list(channel_plan or [])
        self.example_input_shape = example_input_shape
        for name, mask in (masks or {}).items():
            self.param_names.append(name)
            self.register_buffer(_buffer_name(name), mask.detach().clone())
        self._bound: tuple[int, list[nn.Parameter]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_bound"] = None
        return state

    def __deepcopy__(self, memo):
        clone = MaskSet(
            {n: m.clone() for n, m in self.items()}, self.channel_plan, self.example_input_shape
        )
        if hasattr(self, "target_sparsity"):
            clone.target_sparsity = self.target_sparsity
        return clone

    # -- state_dict round trip: the set of masks is part of the state --------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "param_names": list(self.param_names),
            "channel_plan": [(name, list(idxs)) for name, idxs in self.channel_plan],
            "example_input_shape": self.example_input_shape,
            "target_sparsity": getattr(self, "target_sparsity", None),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.channel_plan = [(name, list(idxs)) for name, idxs in state["channel_plan"]]
        self.example_input_shape = state["example_input_shape"]
        if state.get("target_sparsity") is not None:
            self.target_sparsity = state["target_sparsity"]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None:  # create the buffers the saved masks need before loading them
            for name in list(self.param_names):
                delattr(self, _buffer_name(name))
            self.param_names = list(extra["param_names"])
            for name in self.param_names:
                saved = state_dict[prefix + _buffer_name(name)]
                self.register_buffer(_buffer_name(name), torch.empty_like(saved))
            self._bound = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [(name, getattr(self, _buffer_name(name))) for name in self.param_names]

    def __len__(self) -> int:
        return len(self.param_names)

    def _params(self, module: nn.Module) -> list[nn.Parameter]:
        if self._bound is None or self._bound[0] != id(module):
            params = [module.get_parameter(name) for name in self.param_names]
            self._bound = (id(module), params)
        return self._bound[1]

    def check_compatible(self, module: nn.Module) -> None:
        """Raise ``ValueError`` if a mask has no parameter of the same shape in ``module``."""
        named = dict(module.named_parameters())
        for name, mask in self.items():
            if name not in named:
                raise ValueError(
                    f"The pruning masks do not match the module: it has no parameter {name!r}."
                )
            if named[name].shape != mask.shape:
                raise ValueError(
                    f"The pruning masks do not match the module: mask {name!r} has shape "
                    f"{tuple(mask.shape)}, the parameter {tuple(named[name].shape)}."
                )

    @torch.no_grad()
    def apply_(self, module: nn.Module) -> None:
        """Zero the pruned entries of ``module``'s parameters, in place (one fused op)."""
        if not self.param_names:
            return
        params = self._params(module)
        torch._foreach_mul_(params, [mask for _, mask in self.items()])

    def density(self) -> float:
        """Fraction of masked entries that are kept."""
        total = sum(m.numel() for _, m in self.items())
        kept = sum(float(m.sum()) for _, m in self.items())
        return kept / total if total else 1.0


def check_sparsity(sparsity, name: str = "sparsity") -> float:
    """A fraction in [0, 1), or a ValueError/TypeError naming the argument."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"{name!r} must be a float in [0, 1); got {sparsity!r}.")
    if not 0 <= sparsity < 1:
        raise ValueError(f"{name!r} must be a float in [0, 1); got {sparsity!r}.")
    return float(sparsity)


def _weight_name(layer_name: str) -> str:
    return f"{layer_name}.weight"


def keep_largest(scores: torch.Tensor, n_pruned: int) -> torch.Tensor:
    """1 everywhere but at the ``n_pruned`` smallest scores (ties: lowest index first)."""
    flat = scores.flatten()
    mask = torch.ones_like(flat)
    if n_pruned > 0:
        order = torch.argsort(flat, stable=True)
        mask[order[:n_pruned]] = 0
    return mask.view_as(scores)


@torch.no_grad()
def top_k_masks(scores: dict[str, torch.Tensor], sparsity: float,
                scope: str = "layerwise") -> dict[str, torch.Tensor]:
    """Masks keeping the largest ``scores``: exactly ``round(sparsity · n)`` entries pruned per
    tensor (``scope="layerwise"``) or over all of them together (``scope="global"``, one
    threshold); ties at the threshold are broken by position (the lowest pruned first), so the
    result is deterministic. Masks have the scores' dtype."""
    check_sparsity(sparsity)
    if scope == "layerwise":
        return {name: keep_largest(s, round(sparsity * s.numel())).to(s.dtype)
                for name, s in scores.items()}
    if scope == "global":
        flat = torch.cat([s.flatten().float() for s in scores.values()])
        keep = keep_largest(flat, round(sparsity * flat.numel()))
        masks, offset = {}, 0
        for name, s in scores.items():
            masks[name] = keep[offset: offset + s.numel()].view_as(s).to(s.dtype)
            offset += s.numel()
        return masks
    raise ValueError(f"The 'pruning_scope' must be 'layerwise' or 'global'; got {scope!r}.")


@torch.no_grad()
def magnitude_masks(
    module: nn.Module, layer_names: Sequence[str], sparsity: float, scope: str = "layerwise"
) -> dict[str, torch.Tensor]:
    """Unstructured magnitude masks of the weights of ``layer_names``.

    Exactly ``round(sparsity · n)`` weights are pruned per layer (``scope="layerwise"``) or over
    all listed layers together (``scope="global"``, one threshold); ties at the threshold are
    broken by position, so the result is deterministic (:func:`top_k_masks` of ``|w|``).
    """
    weights = {_weight_name(n): module.get_parameter(_weight_name(n)) for n in layer_names}
    return top_k_masks({name: w.detach().abs() for name, w in weights.items()}, sparsity, scope)


def dependency_graph(module: nn.Module, example_inputs: torch.Tensor):
    import torch_pruning as tp

    was_training = module.training
    module.eval()
    try:
        with torch.enable_grad():  # the graph is traced through autograd
            graph = tp.DependencyGraph().build_dependency(module, example_inputs=example_inputs)
    finally:
        module.train(was_training)
    return graph


def root_handler(layer: nn.Module):
    import torch_pruning as tp

    if isinstance(layer, nn.Linear):
        return tp.prune_linear_out_channels
    return tp.prune_conv_out_channels


@torch.no_grad()
def _output_layer(module: nn.Module, example_inputs) -> nn.Module | None:
    """The last Conv/Linear layer to run in a forward pass of ``module`` (eval mode, no
    gradient, module mode restored): the layer whose output channels are the logits."""
    order: list[nn.Module] = []
    hooks = [layer.register_forward_hook(lambda layer, args, out: order.append(layer))
             for layer in module.modules() if isinstance(layer, PRUNABLE_TYPES)]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(**example_inputs) if isinstance(example_inputs, dict) else module(example_inputs)
    finally:
        module.train(was_training)
        for hook in hooks:
            hook.remove()
    return order[-1] if order else None


def channel_masks(
    module: nn.Module,
    layer_names: Sequence[str],
    fraction: float,
    example_inputs: torch.Tensor,
) -> tuple[dict[str, torch.Tensor], list[tuple[str, list[int]]]]:
    """Structured masks: remove whole output channels (neurons for Linear layers).

    Channels are coupled through the dependency graph of Torch-Pruning (BatchNorm after a
    convolution, residual additions, depthwise convolutions); each coupled group loses the
    ``round(fraction · C)`` channels of smallest L2 norm (averaged over the group), at most
    ``C - 1``. The output channels of the layer that computes the logits (the last Conv/Linear
    layer to run) are never pruned, whatever ``layer_names`` says: they are the classes. The masks
    zero the out-channel rows of every coupled Conv/Linear weight and bias and the BatchNorm
    scale and shift, so a masked channel outputs exactly 0 and physical removal at export
    leaves outputs unchanged.

    Returns
    -------
    masks : dict of str to Tensor
        Masks per parameter name.
    plan : list of (str, list of int)
        Root layer name and pruned channel indices of every group.
    """
    import torch_pruning as tp

    if check_sparsity(fraction, "fraction") == 0:
        return {}, []
    output_layer = _output_layer(module, example_inputs)
    graph = dependency_graph(module, example_inputs)
    name_of = {layer: name for name, layer in module.named_modules()}
    selected = set(layer_names)
    ignored = [
        layer
        for name, layer in module.named_modules()
        if isinstance(layer, PRUNABLE_TYPES) and (name not in selected or layer is output_layer)
    ]
    importance = tp.importance.MagnitudeImportance(p=2, group_reduction="mean")
    masks: dict[str, torch.Tensor] = {}
    plan: list[tuple[str, list[int]]] = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=PRUNABLE_TYPES):
        root = group[0].dep.target.module
        scores = importance(group)
        # at least one channel stays: a layer of C channels loses at most C - 1
        n_pruned = min(round(fraction * scores.numel()), scores.numel() - 1)
        if n_pruned <= 0:
            continue
        idxs = torch.argsort(scores.float().cpu(), stable=True)[:n_pruned].tolist()
        plan.append((name_of[root], sorted(idxs)))
        pruning_group = graph.get_pruning_group(root, root_handler(root), idxs)
        for item in pruning_group:
            layer, rows = item.dep.target.module, item.idxs
            if item.dep.handler.__name__ != "prune_out_channels" or layer not in name_of:
                continue
            if not isinstance(layer, (*PRUNABLE_TYPES, nn.modules.batchnorm._BatchNorm)):
                continue
            for pname in ("weight", "bias"):
                param = getattr(layer, pname, None)
                if param is None:
                    continue
                full = f"{name_of[layer]}.{pname}"
                mask = masks.get(full)
                if mask is None:
                    mask = torch.ones_like(param)
                mask[list(rows)] = 0
                masks[full] = mask
    return masks, plan
