"""Cubic sparsity schedule of gradual magnitude pruning (Zhu & Gupta, 2017)."""

from __future__ import annotations

import math

__all__ = ["cubic_sparsity", "geometric_sparsity"]


def cubic_sparsity(
    step: int,
    final_sparsity: float,
    end_step: int,
    *,
    initial_sparsity: float = 0.0,
    start_step: int = 0,
    frequency: int = 1,
) -> float:
    """Target sparsity at ``step`` of a cubic schedule.

    ``s_t = s_f + (s_i − s_f) (1 − (t − t0) / (T − t0))^3`` for ``t0 <= t <= T``, where the
    schedule only moves every ``frequency`` steps (``t`` is rounded down to
    ``t0 + k·frequency``). Before ``t0`` the sparsity is ``s_i``; from ``T`` on it is ``s_f``.

    Parameters
    ----------
    step : int
        Current step ``t`` (the estimator uses epochs).
    final_sparsity : float
        ``s_f`` in [0, 1).
    end_step : int
        ``T``, the step at which ``s_f`` is reached. ``T == t0`` means one-shot pruning.
    initial_sparsity : float, default=0.0
        ``s_i``, the sparsity at ``t0``.
    start_step : int, default=0
        ``t0``.
    frequency : int, default=1
        Steps between two sparsity updates.

    Returns
    -------
    float
        The target sparsity.

    Examples
    --------
    >>> [round(cubic_sparsity(t, 0.9, end_step=3), 4) for t in range(5)]
    [0.0, 0.6333, 0.8667, 0.9, 0.9]
    """
    if not 0 <= initial_sparsity <= final_sparsity < 1:
        raise ValueError(
            "cubic_sparsity needs 0 <= initial_sparsity <= final_sparsity < 1; got "
            f"initial_sparsity={initial_sparsity!r}, final_sparsity={final_sparsity!r}."
        )
    if end_step < start_step:
        raise ValueError(f"end_step ({end_step}) must be >= start_step ({start_step}).")
    if frequency < 1:
        raise ValueError(f"frequency must be an int >= 1; got {frequency!r}.")
    if step < start_step:
        return float(initial_sparsity)
    if step >= end_step:
        return float(final_sparsity)
    quantized = start_step + math.floor((step - start_step) / frequency) * frequency
    progress = (quantized - start_step) / (end_step - start_step)
    return float(final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3)


def geometric_sparsity(step: int, final_sparsity: float, n_updates: int, *,
                       frequency: int = 1) -> float:
    """Target sparsity at ``step`` of a geometric schedule (FairGRAPE's iterative pruning).

    Update ``j = step // frequency`` (0-based, at most ``n_updates - 1``) reaches
    ``1 − (1 − s_f)^((j + 1) / n_updates)``: every update keeps the same fraction of the
    weights the previous one kept, and the last one reaches ``s_f``. The first update (step 0)
    already prunes.

    Examples
    --------
    >>> [round(geometric_sparsity(t, 0.75, n_updates=2), 4) for t in range(3)]
    [0.5, 0.75, 0.75]
    """
    if not 0 <= final_sparsity < 1:
        raise ValueError(f"final_sparsity must be in [0, 1); got {final_sparsity!r}.")
    if n_updates < 1 or frequency < 1:
        raise ValueError(f"n_updates and frequency must be >= 1; got {n_updates!r}, "
                         f"{frequency!r}.")
    update = min(max(step, 0) // frequency, n_updates - 1)
    return float(1.0 - (1.0 - final_sparsity) ** ((update + 1) / n_updates))
