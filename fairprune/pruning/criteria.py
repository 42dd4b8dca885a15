"""Pruning criteria: which weights a pruning update keeps.

The one place where a criterion lives. A criterion is a small object with the estimator's
parameter ``pruning_criterion`` (a name or an instance, so its options can be set):

* :class:`Magnitude` — gradual magnitude pruning (Zhu & Gupta, 2017), the paper's criterion;
* :class:`FairGRAPE` — group-balanced importance with a greedy per-layer choice (Lin et al.,
  ECCV 2022; :mod:`fairprune.pruning.fairgrape`);
* :class:`BiLevel` — learned scores with straight-through top-k masks, updated every step of
  the pruning phase under a fairness term (our interpretation of Dai et al., 2023, on BiP's
  template; :mod:`fairprune.pruning.bilevel`).

The schedule (when updates happen and at which sparsity) belongs to the estimator; a criterion
answers ``masks(context, sparsity)`` at every update, and :class:`BiLevel` also moves its masks
between updates (``after_backward``). A new criterion subclasses :class:`PruningCriterion`
and is added to :data:`CRITERIA`. Plain PyTorch, no skorch: the context carries what a
criterion may read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from .bilevel import MaskScores
from .fairgrape import greedy_keep_mask, group_importance
from .masks import MaskSet, magnitude_masks

__all__ = ["CRITERIA", "BiLevel", "FairGRAPE", "Magnitude", "PruningContext",
           "PruningCriterion", "check_criterion", "fairgrape_defaults"]


@dataclass
class PruningContext:
    """What a criterion may read at a pruning update.

    Attributes
    ----------
    module : torch.nn.Module
        The model being pruned (current masks applied).
    layer_names : list of str
        Layers to prune.
    masks : MaskSet
        The current masks (empty before the first update).
    scope : {"layerwise", "global"}
        How the kept count is spread over the layers.
    n_groups : int
        Number of groups (constraint cells).
    batches : callable, optional
        ``batches(batch_size)`` yields ``(x, y, group_ids)`` over the training rows, in their
        order.
    loss_fn, forward : callable, optional
        Per-sample loss ``loss_fn(logits, y)``; ``forward(module, x) -> logits``.
    """

    module: nn.Module
    layer_names: list[str]
    masks: MaskSet
    scope: str = "layerwise"
    n_groups: int = 1
    batches: Callable[[int], Iterable[tuple]] | None = None
    loss_fn: Callable | None = None
    forward: Callable | None = None
    extra: dict = field(default_factory=dict)

    @property
    def weight_names(self) -> list[str]:
        return [f"{name}.weight" for name in self.layer_names]


class PruningCriterion:
    """Base class of pruning criteria (see the module's notes).

    Class attributes: ``name`` (the string that selects it), ``supports_channels`` (whether
    ``pruning="channel"`` is defined for it), ``fairness`` (the fairness term of the training
    objective during the pruning phase: None, ``"penalty"`` or ``"lagrangian"``).
    """

    name = "criterion"
    supports_channels = False
    fairness: str | None = None

    def check(self, *, pruning: str, pruning_scope: str, method: str) -> None:
        """Raise ``ValueError`` naming ``pruning_criterion`` for a combination it does not
        define."""
        if pruning == "channel" and not self.supports_channels:
            raise ValueError(
                f"pruning_criterion={self.name!r} selects single weights; it is not defined for "
                "pruning='channel'. Use pruning='unstructured', or pruning_criterion='magnitude' "
                "for channels.")

    def check_groups(self, n_groups: int) -> None:
        """Raise ``ValueError`` when the criterion cannot work with ``n_groups`` groups."""

    def masks(self, context: PruningContext, sparsity: float) -> dict[str, torch.Tensor]:
        """Unstructured masks of ``context.layer_names`` at ``sparsity``."""
        raise NotImplementedError

    def start(self, context: PruningContext):
        """State kept between updates (learned criteria), or None."""
        return None

    def after_backward(self, context: PruningContext, state, sparsity: float) -> None:
        """Called after every backward pass of the pruning phase (learned criteria)."""

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


class Magnitude(PruningCriterion):
    """Keep the largest weights (per layer, or over all layers with a global scope)."""

    name = "magnitude"
    supports_channels = True

    def masks(self, context: PruningContext, sparsity: float) -> dict[str, torch.Tensor]:
        return magnitude_masks(context.module, context.layer_names, sparsity, context.scope)


class FairGRAPE(PruningCriterion):
    """FairGRAPE's group-balanced importance and greedy per-layer choice (Lin et al., 2022).

    At every pruning update: each group's importance of each weight, ``(|w| ·
    |∂L_k/∂w|)²`` summed over mini-batches of the training rows (the current masked model,
    training mode with BatchNorm statistics restored, mean loss of the group's rows in the
    batch); then per layer, with the same kept count as magnitude pruning
    (``n − round(sparsity · n)``), the greedy choice of
    :func:`~fairprune.pruning.fairgrape.greedy_keep_mask` among the weights still kept.

    Parameters
    ----------
    batch_size : int, default=64
        Rows per mini-batch of the importance pass (FairGRAPE's 64).
    max_batches : int or None, default=None
        Stop the pass after this many mini-batches (FairGRAPE's ``stop_batch``; None: every
        training row).
    para_batch : int, default=1
        Weights added per choice of a group.
    relative : bool, default=False
        Rank by relative importance (FairGRAPE's ``delta_p``).
    max_rounds : int, default=1024
        At most this many greedy choices per layer (a choice then adds
        ``ceil(kept / max_rounds)`` weights).
    """

    name = "fairgrape"

    def __init__(self, batch_size: int = 64, max_batches: int | None = None,
                 para_batch: int = 1, relative: bool = False, max_rounds: int = 1024) -> None:
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.para_batch = para_batch
        self.relative = relative
        self.max_rounds = max_rounds

    def check(self, *, pruning: str, pruning_scope: str, method: str) -> None:
        super().check(pruning=pruning, pruning_scope=pruning_scope, method=method)
        if pruning_scope != "layerwise":
            raise ValueError(
                "pruning_criterion='fairgrape' balances importance within each layer (uniform "
                f"per-layer sparsity); pruning_scope={pruning_scope!r} is not defined for it. "
                "Use pruning_scope='layerwise'.")
        for option in ("batch_size", "para_batch", "max_rounds"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"pruning_criterion=FairGRAPE({option}=...) must be an int "
                                 f">= 1; got {value!r}.")

    def importance(self, context: PruningContext) -> dict[str, torch.Tensor]:
        """``{weight name: (G, *shape)}`` importance of the current model."""
        batches = context.batches(self.batch_size)
        if self.max_batches is not None:
            batches = _first(batches, self.max_batches)
        return group_importance(context.module, context.weight_names, batches,
                                context.n_groups, context.loss_fn, context.forward)

    def masks(self, context: PruningContext, sparsity: float) -> dict[str, torch.Tensor]:
        current = dict(context.masks.items())
        if sparsity == 0 and not current:  # nothing to choose: skip the importance pass
            return {name: torch.ones_like(context.module.get_parameter(name))
                    for name in context.weight_names}
        importance = self.importance(context)
        masks = {}
        for name, scores in importance.items():
            weight = context.module.get_parameter(name)
            previous = current.get(name)
            candidates = (torch.ones_like(weight, dtype=torch.bool) if previous is None
                          else previous.bool())
            n_keep = min(weight.numel() - round(sparsity * weight.numel()),
                         int(candidates.sum()))
            masks[name] = greedy_keep_mask(scores, candidates, n_keep,
                                           para_batch=self.para_batch, relative=self.relative,
                                           max_rounds=self.max_rounds).to(weight.dtype)
        return masks


class BiLevel(PruningCriterion):
    """Learned masks: scores, straight-through top-k masks, BiP's first-order implicit
    gradient, with a fairness term in both levels (an interpretation of Dai et al., 2023).

    During the pruning phase the weights take the ordinary training step on ``ℓ + F`` and,
    after every backward pass, the scores take one Adam step (:class:`MaskScores`) and the
    masks become the top-k scores at the schedule's current sparsity. After the pruning phase
    the masks stay fixed and fine-tuning follows ``method``.

    Parameters
    ----------
    fairness : {"lagrangian", "penalty"}, default="lagrangian"
        ``F``: CEAG's proxy Lagrangian with its multipliers (any number of groups; needs
        ``method="ceag"``, whose multipliers then start learning with the pruning phase), or
        the paper's fixed-weight penalty for two groups, ``|L_a − L_b|`` (the absolute gap of
        the two groups' mean losses in the batch, weight 1).
    score_lr : float, default=1e-3
        Adam's step on the scores.
    init : {"magnitude", "random"}, default="magnitude"
        Where the scores start (the paper: a random start).
    gamma : float, default=1.0
        ``γ`` of the implicit gradient's first-order term.
    """

    name = "bilevel"

    def __init__(self, fairness: str = "lagrangian", score_lr: float = 1e-3,
                 init: str = "magnitude", gamma: float = 1.0) -> None:
        self.fairness = fairness
        self.score_lr = score_lr
        self.init = init
        self.gamma = gamma

    def check(self, *, pruning: str, pruning_scope: str, method: str) -> None:
        super().check(pruning=pruning, pruning_scope=pruning_scope, method=method)
        if self.fairness not in ("lagrangian", "penalty"):
            raise ValueError("pruning_criterion=BiLevel(fairness=...) must be 'lagrangian' or "
                             f"'penalty'; got {self.fairness!r}.")
        if self.init not in ("magnitude", "random"):
            raise ValueError("pruning_criterion=BiLevel(init=...) must be 'magnitude' or "
                             f"'random'; got {self.init!r}.")
        for option in ("score_lr", "gamma"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"pruning_criterion=BiLevel({option}=...) must be a float > 0;"
                                 f" got {value!r}.")
        if self.fairness == "lagrangian" and method != "ceag":
            raise ValueError(
                "pruning_criterion='bilevel' with fairness='lagrangian' learns the mask under "
                f"CEAG's multipliers, which method={method!r} does not have. Use method='ceag', "
                "or pruning_criterion=BiLevel(fairness='penalty') (two groups).")

    def check_groups(self, n_groups: int) -> None:
        if self.fairness == "penalty" and n_groups != 2:
            raise ValueError(
                "pruning_criterion=BiLevel(fairness='penalty') is the two-group parity penalty "
                f"of the bi-level paper; the data has {n_groups} groups. Use "
                "fairness='lagrangian' (any number of groups).")

    def start(self, context: PruningContext) -> MaskScores:
        return MaskScores(context.module, context.weight_names, init=self.init,
                          lr=self.score_lr, gamma=self.gamma)

    def masks(self, context: PruningContext, sparsity: float) -> dict[str, torch.Tensor]:
        state = context.extra["state"]
        state.remember(context.module, context.masks)
        return state.masks(sparsity, context.scope)

    def after_backward(self, context: PruningContext, state: MaskScores, sparsity: float) -> None:
        state.remember(context.module, context.masks)
        state.step(context.module, context.masks)
        if len(context.masks):
            state.install(context.module, context.masks, state.masks(sparsity, context.scope))


#: The criteria selected by name.
CRITERIA: dict[str, type[PruningCriterion]] = {
    "magnitude": Magnitude, "fairgrape": FairGRAPE, "bilevel": BiLevel}


def check_criterion(value) -> PruningCriterion:
    """The criterion a ``pruning_criterion`` value selects (a name or an instance)."""
    if isinstance(value, PruningCriterion):
        return value
    if isinstance(value, str) and value in CRITERIA:
        return CRITERIA[value]()
    raise ValueError(
        f"The 'pruning_criterion' parameter must be one of {sorted(CRITERIA)} or a "
        f"PruningCriterion instance (e.g. FairGRAPE(batch_size=64)); got {value!r}.")


def _first(iterable: Iterable, count: int):
    for position, item in enumerate(iterable):
        if position >= count:
            return
        yield item


def fairgrape_defaults(sparsity: float = 0.9, keep_per_iteration: float = 0.9) -> dict:
    """FairGRAPE's own schedule as :class:`~fairprune.FairPrunedClassifier` parameters.

    FairGRAPE prunes iteratively, keeping ``keep_per_iteration`` of the remaining weights each
    time (0.9 by default, 0.975 in its UTKFace example) for ``ceil(log(1 − sparsity) /
    log(keep))`` iterations, with 3 epochs of Adam at 1e-5 after each, then fine-tunes with
    Adam at 1e-4 / 1e-5 / 1e-6 for 13 / 3 / 3 epochs, batch 64, every Conv/Linear layer
    pruned, and naive fine-tuning. Here: a geometric schedule of that many updates, 3 epochs
    apart (``pruning_schedule="geometric"``: each update keeps the same fraction,
    ``(1 − sparsity)^(1/iterations)``, which differs from ``keep_per_iteration`` only because
    the last iteration lands on ``sparsity`` exactly), ``pruning_lr=1e-5``, and the
    fine-tuning milestones as fractions of all epochs.

    Parameters
    ----------
    sparsity : float, default=0.9
        The final sparsity (returned among the parameters).
    keep_per_iteration : float, default=0.9
        Fraction of the remaining weights each iteration keeps, in (0, 1).

    Returns
    -------
    dict
        Keyword arguments of ``FairPrunedClassifier`` (``groups`` and ``tolerance`` excluded).

    Examples
    --------
    >>> params = fairgrape_defaults(0.9, keep_per_iteration=0.9)
    >>> params["pruning_epochs"], params["max_epochs"], params["lr"], params["pruning_lr"]
    (66, 19, 0.0001, 1e-05)
    """
    if not 0 < keep_per_iteration < 1:
        raise ValueError(f"keep_per_iteration must be in (0, 1); got {keep_per_iteration!r}.")
    if not 0 < sparsity < 1:
        raise ValueError(f"sparsity must be in (0, 1); got {sparsity!r}.")
    iterations = math.ceil(math.log(1 - sparsity) / math.log(keep_per_iteration) - 1e-12)
    pruning_epochs = 3 * iterations
    total = pruning_epochs + 19
    return {
        "sparsity": sparsity,
        "pruning_criterion": "fairgrape",
        "method": "nft",
        "pruning_schedule": "geometric",
        "pruning_epochs": pruning_epochs,
        "pruning_frequency": 3,
        "pruning_lr": 1e-5,
        "max_epochs": 19,
        "lr": 1e-4,
        "lr_milestones": ((pruning_epochs + 13) / total, (pruning_epochs + 16) / total),
        "lr_gamma": 0.1,
        "batch_size": 64,
        "dense_layers": (),
        "optimizer": torch.optim.Adam,
    }
