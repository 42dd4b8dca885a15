"""Which layers of a module are pruned."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["PRUNABLE_TYPES", "prunable_layers"]

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable_layers(module: nn.Module, dense_layers: Sequence[str] = ("first", "last")) -> list[str]:
    """Names of the Conv/Linear layers to prune, in module order.

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    dense_layers : sequence of str, default=("first", "last")
        Layers kept dense: qualified layer names (as in ``module.named_modules()``) or the tokens
        ``"first"`` (the first Conv/Linear layer, usually the stem convolution) and ``"last"``
        (the last one, usually the classifier). ``()`` prunes every Conv/Linear layer.

    Returns
    -------
    list of str
        Names of the layers to prune.

    Raises
    ------
    ValueError
        If a name in ``dense_layers`` is not a Conv/Linear layer of ``module``, or if no layer
        is left to prune.
    """
    if isinstance(dense_layers, str) or not isinstance(dense_layers, Sequence):
        raise TypeError(
            "The 'dense_layers' parameter must be a tuple/list of layer names or the tokens "
            f"'first'/'last'; got {dense_layers!r} of type {type(dense_layers).__name__}."
        )
    candidates = [name for name, layer in module.named_modules() if isinstance(layer, PRUNABLE_TYPES)]
    if not candidates:
        raise ValueError(
            f"The module {type(module).__name__} has no prunable layer (Conv1d/2d/3d or Linear); "
            "nothing can be pruned."
        )
    excluded = set()
    for entry in dense_layers:
        if entry == "first":
            excluded.add(candidates[0])
        elif entry == "last":
            excluded.add(candidates[-1])
        elif entry in candidates:
            excluded.add(entry)
        else:
            import difflib

            close = difflib.get_close_matches(str(entry), candidates, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"The 'dense_layers' parameter names {entry!r}, which is not a Conv/Linear layer "
                f"of {type(module).__name__}. Use 'first', 'last' or one of: "
                f"{', '.join(candidates[:8])}{' ...' if len(candidates) > 8 else ''}.{hint}"
            )
    selected = [name for name in candidates if name not in excluded]
    if not selected:
        raise ValueError(
            f"dense_layers={tuple(dense_layers)!r} keeps every prunable layer of "
            f"{type(module).__name__} dense; nothing is left to prune."
        )
    return selected
