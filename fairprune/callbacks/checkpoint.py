"""skorch's ``Checkpoint`` with the state a pruned, constrained fit needs to resume."""

from __future__ import annotations

from skorch.callbacks import Checkpoint

__all__ = ["fair_checkpoint"]


def fair_checkpoint(dirname: str, **kwargs) -> Checkpoint:
    """A skorch ``Checkpoint`` saving everything a resumed fit needs, every epoch.

    Model weights, optimizer state, history, pruning masks (``masks.pt``), fairness state —
    multipliers, replay buffers, dense reference — (``fairness.pt``) and the multipliers'
    optimizer (``dual_optimizer.pt``). Pair it with ``skorch.callbacks.LoadInitState``::

        cp = fair_checkpoint("run1")
        clf = FairPrunedClassifier(dense, callbacks=[cp, LoadInitState(cp)])

    Re-running ``fit`` after an interruption then continues from the last saved epoch; with
    the same ``random_state`` the result matches an uninterrupted run (tested on CPU).
    """
    params = dict(monitor=None, f_masks="masks.pt", f_fairness="fairness.pt",
                  f_dual_optimizer="dual_optimizer.pt", f_criterion=None)
    params.update(kwargs)
    return Checkpoint(dirname=dirname, **params)
