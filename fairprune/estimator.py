"""FairPrunedClassifier: prune a trained classifier without disparate impact (skorch estimator).

One class, laid out in sections as skorch's ``NeuralNet`` is: construction and parameters,
initialisation, fit, the training step, inference, reports and fitted attributes, export and
persistence. What varies during a fit lives in callbacks (:mod:`fairprune.callbacks`), the
step's algebra in :mod:`fairprune.training.engine` and :mod:`fairprune.constraints`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import pickle
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from skorch import NeuralNetClassifier
from skorch.utils import TeeGenerator, to_tensor
from torch.nn.parameter import is_lazy

from ._validation import (InvalidParameterError, check_features, check_parameters,
                          check_targets, describe, n_samples)
from .callbacks import default_callbacks
from .cells import GAP_METRICS, ConstraintCells, gap_name
from .callbacks.checkpoint import CheckpointError, FairCheckpoint, checkpoint_lock
from .constraints import FairnessState
from .exceptions import (DenseModelWarning, FairnessToleranceWarning, GMPCacheWarning,
                         PrunedModelCollapseWarning, SmallGroupWarning)
from .groups import (GroupEncoder, MarginalGroupEncoder, drop_group_columns, either_labels,
                     is_packed, label_attributes, pack_groups, resolve_groups, unpack_groups)
from .datasets.paper import paper_defaults
from .pruning import (CRITERIA, MaskSet, PruningCriterion, check_criterion, export_module,
                      fairgrape_defaults, prunable_layers, sparsity_table)
from .report import constraint_report, disparity_report
from .training.engine import FineTuningEngine
from .training.evaluation import (batch_tensors, check_finite_outputs, forward, iter_logits,
                                  predicted_classes, probe_module)
from .training.fingerprint import FingerprintError, data_digest, module_digest, parameter_digests
from .training.gmp_cache import run_or_load_gmp
from .training.loading import make_iterator, single_sample_tail
from .training.methods import METHODS, make_problem
from .training.phases import current_epoch, epochs_to_run, includes_whole_gmp_phase, phase_of
from .training.precision import MIXED_PRECISION, autocast
from .training.state import kept_if_no_epoch_runs

__all__ = ["FairPrunedClassifier"]

#: history keys left out of the printed epoch table (lists, or repeated elsewhere)
_NOT_SHOWN = ("multipliers", "phase", "lr", "selected",
              *(f"{split}_excess_{name}" for split in ("train", "valid")
                for name in ("accuracy_gap", "tpr_gap", "tnr_gap", "rate_gap")))
_POSITIVE = Interval(Real, 0, None, closed="neither")
#: steps are multiplied into float32 weights: larger values cannot even be represented there
_STEP = Interval(Real, 0, float(np.finfo(np.float32).max), closed="right")
_NON_NEGATIVE = Interval(Real, 0, None, closed="left")


class FairPrunedClassifier(NeuralNetClassifier):
    """Prune a trained PyTorch classifier so that no group pays disproportionately.

    ``fit(X, y, groups=g)`` prunes a deep copy of ``dense_module`` with gradual magnitude
    pruning (GMP, cubic schedule) over ``pruning_epochs`` epochs of plain fine-tuning, then
    fine-tunes it for ``max_epochs`` epochs with ``method``: ``"ceag"`` (Hashemizadeh et al.,
    ICLR 2024: ``ψ_g = Δ_g − Δ <= ε`` for every group, Lagrange multipliers driven by
    replay-buffer accuracy estimates, excess loss gaps as the differentiable proxy),
    ``"equalized_loss"`` (``|L_g − L| <= loss_tolerance``; EL, or EL+RB with buffers) or
    ``"nft"`` (naive fine-tuning).

    Parameters
    ----------
    dense_module : torch.nn.Module
        The trained dense classifier (outputs logits of shape ``(n, n_classes)``). Deep-copied.
    sparsity : float, default=0.9
        Target fraction of prunable weights set to zero, in [0, 1) (of output channels with
        ``pruning="channel"``).
    tolerance : float, default=0.05
        ε, the largest excess accuracy gap allowed to any group, a fraction in [0, 1]
        (0.05 = 5 accuracy points; 2 is refused as a likely percentage).
    groups : None, str, list of str or callable, default=None
        Locator of the group labels when ``fit``/``score`` get none: a column (or key) of X,
        several columns (intersectional groups), or ``f(X, y) -> labels`` such as
        :func:`fairprune.groups.by_target`. Group columns never reach the module.
    method : {"ceag", "equalized_loss", "nft"}, default="ceag"
    replay_buffer_size : int, default=40
        Per-group replay buffer capacity (the paper's 40); 0 uses each mini-batch instead.
    dual_lr : float or "auto", default="auto"
        Step of the multipliers (gradient ascent). ``"auto"``: ``100 / (n_groups ·
        fine-tuning steps)`` for CEAG, ``10 / ...`` for EL, whatever the schedule's length
        (ablation in the docs; the paper: 1e-4 on UTKFace). Used: ``dual_lr_``.
    dual_optimizer : {"sgd", "nupi"}, default="sgd"
        Projected gradient ascent (the paper) or Cooper's nuPI controller, which damps
        multiplier oscillations.
    max_multiplier_sum : float or None, default=None
        Our extension, off by default: project the multipliers onto
        ``{λ >= 0, Σ λ <= max_multiplier_sum}`` after every dual step (past ``Σ λ = 1`` the
        Lagrangian pushes the overall loss up). ``None`` (the paper) leaves them unbounded.
    loss_tolerance : float, default=0.0
        Band of the equalized-loss constraints ``|L_g − L| <= loss_tolerance``, in loss units
        (0 is the form of the paper's UTKFace configuration).
    loss_constraint : {"band", "equality"}, default="band"
        Equalized loss as the band ``|L_g − L| <= loss_tolerance`` or the signed equality
        ``L_g − L = 0`` (signed multipliers; the default form of the paper's code).
    pruning : {"unstructured", "channel"}, default="unstructured"
        Pruning of single weights, or of whole output channels (L2 norm, coupled through
        BatchNorm and residual connections).
    pruning_scope : {"layerwise", "global"}, default="layerwise"
        Unstructured pruning per layer (the paper) or with one global threshold.
    pruning_criterion : {"magnitude", "fairgrape", "bilevel"} or PruningCriterion, \
default="magnitude"
        Which weights a pruning update keeps (:mod:`fairprune.pruning.criteria`), chosen
        independently of ``method``: the largest (GMP, the paper); FairGRAPE's group-balanced
        importance (Lin et al., 2022; unstructured, per layer); or masks learned with the
        weights under a fairness term (``"bilevel"``, our interpretation of Dai et al., 2023:
        CEAG's Lagrangian by default, so ``method="ceag"``). An instance sets the options,
        e.g. ``FairGRAPE(batch_size=64)`` or ``BiLevel(fairness="penalty")``.
    pruning_schedule : {"cubic", "geometric"}, default="cubic"
        When the pruning updates happen and at which sparsity: the cubic ramp of GMP (from 0
        at the first epoch to ``sparsity`` at the last pruning epoch), or FairGRAPE's
        iterative pruning (every ``pruning_frequency`` epochs the same fraction of the weights
        goes, the first update already pruning); see :func:`fairprune.fairgrape_defaults`.
    dense_layers : tuple of str, default=("first", "last")
        Layers kept dense: module names or the tokens ``"first"``/``"last"`` (the paper's
        choice); ``()`` prunes every Conv/Linear layer.
    pruning_epochs : int, default=15
        Epochs of GMP, ramping the sparsity from 0 to ``sparsity``; 1 is one-shot pruning.
    pruning_frequency : int, default=1
        Epochs between two pruning updates.
    pruning_lr : float or None, default=None
        A constant learning rate of the pruning epochs (FairGRAPE: 1e-5 between its pruning
        iterations); None: the pruning epochs follow ``lr`` and ``lr_milestones`` like the rest.
    max_epochs : int, default=45
        Epochs of fine-tuning with ``method`` **after** GMP. Unlike skorch's ``max_epochs``
        (every epoch of a fit), it does not count the pruning epochs: a fit runs
        ``pruning_epochs + max_epochs`` epochs in all, and ``len(clf.history)`` is that sum.
    lr, batch_size : float, int, default=0.01, 128
        Learning rate of the weights, mini-batch size.
    lr_milestones : tuple of float or None, default=(0.6, 0.8, 0.9)
        Fractions of all epochs (GMP included) at which the learning rate is multiplied by
        ``lr_gamma``, as in the paper. ``None`` keeps it constant.
    lr_gamma : float, default=0.1
        Learning-rate decay factor in (0, 1] at each milestone (the paper's 0.1).
    epoch_selection : {None, "accuracy", "fair"}, default=None
        Keep a fine-tuning epoch chosen on the validation split (``train_split`` required):
        the most accurate (with ``method="nft"``, the paper's NFT+ES), or ``"fair"``: the
        most accurate whose held-out max ψ_g <= ε, else the lowest held-out max ψ_g. The
        chosen epoch (1-based) is in ``selected_epoch_``.
    selection_bound : {"point", "upper"}, default="point"
        What ``epoch_selection="fair"`` compares with ε: the held-out max ψ_g itself, or its
        one-sided 95% upper bound (a paired, group-stratified bootstrap of the validation
        rows, 1,000 resamples, as :meth:`disparity_report`), recorded per epoch as
        ``valid_max_excess_accuracy_gap_upper``. ``"upper"`` keeps an epoch only when the
        held-out rows leave little doubt that it meets ε; it runs the dense model on the
        validation split every epoch too. The default stays the point estimate: with a
        validation split of a few hundred rows per group the bound is several points wide
        and often rules out every epoch (then the epoch with the lowest bound is kept).
    constraint_data : {"train", "heldout"}, default="train"
        Multipliers' estimates from training batches (the paper) or from held-out rows
        (Cotter et al., 2019; ``train_split`` required): every training step also runs one
        batch of the validation split through the sparse model (eval mode, no gradient) into
        held-out replay buffers, which drive the dual step while the weights learn from
        training data only. Costs one evaluation forward pass per step.
    group_mode : {"intersectional", "marginal"}, default="intersectional"
        With several attributes (``groups=["race", "sex"]`` or a several-column frame of
        labels): one group per combination of their values (the paper), or one group per value
        of each attribute (the reference code's ``intersectional=False``), every sample counted
        once per attribute in the constraints, buffers, statistics and reports. Marginal
        groups are named ``(attribute, value)``.
    gap_metric : {"accuracy", "tpr", "tnr", "equalized_odds"}, default="accuracy"
        What every constraint bounds (``method="ceag"``): the excess accuracy gap (the paper),
        or the excess drop of the true-positive rate (per group, against the drop over all
        positives), of the true-negative rate, or of both (equalized odds). Multiclass
        ``"tpr"`` bounds each class's recall drop per group, one constraint per (group,
        class) with training rows. Constraints are then ``(group, rate)`` cells
        (``constraint_index_``, ``constraint_report``); see :mod:`fairprune.cells`.
    pos_label : int or None, default=None
        The positive class of a binary target for ``gap_metric`` (None: the larger class
        index, 1, as scikit-learn's metrics).
    random_state : int or None, default=0
        Seed in [0, 2**32 - 1] (as scikit-learn's) of shuffling and module randomness, in a
        forked RNG. Same seed, same CPU result.
    memory : None, str, path or joblib.Memory, default=None
        Cache of the GMP phase (as ``memory`` of a scikit-learn ``Pipeline``). GMP does not
        depend on ``tolerance``, ``method`` or the dual parameters, so a grid search over ε
        runs it once per fold, with results identical to running it every time.
    mixed_precision : {None, "bf16", "fp16"}, default=None
        Autocast of the training forward pass and loss (statistics stay float32; ``"fp16"``
        adds a ``GradScaler``, one host sync per step).
    device : str or torch.device, default="cpu"
        Where training runs, e.g. ``"cuda"``.
    criterion : type, default=torch.nn.CrossEntropyLoss
        Loss class on logits (``reduction="none"``).
    optimizer : type, default=torch.optim.SGD
        Optimizer class of the weights; SGD gets the paper's ``momentum=0.9`` and
        ``weight_decay=1e-4`` unless ``optimizer__*`` says otherwise.
    train_split : callable or None, default=None
        skorch's validation split (e.g. ``ValidSplit(0.2, stratified=True)``); None trains
        on all data, as the paper does.
    **kwargs
        Any other skorch parameter (``callbacks``, ``verbose``, ``optimizer__nesterov``,
        ``iterator_train__num_workers``, ``compile=True`` for a compiled training forward
        pass ...). Training batches are shuffled every epoch (seeded by ``random_state``),
        as in the paper; ``iterator_train__shuffle=False`` gives a fixed order.

    Attributes
    ----------
    module_, dense_module_ : torch.nn.Module
        The sparse model (masks applied) and the frozen dense reference.
    masks_ : MaskSet
        The pruning masks.
    groups_ : numpy.ndarray
        Group labels seen in fit, in code order.
    dense_group_accuracy_, multipliers_ : pandas.Series
        Per group: the dense model's training accuracy; the final Lagrange multipliers.
    sparsity_, dual_lr_ : float
        Achieved fraction of zeros among the prunable weights; the multipliers' step used.
    n_features_in_, feature_names_in_
        As in scikit-learn, for array and DataFrame inputs.
    train_report_ : pandas.DataFrame
        :meth:`disparity_report` of the final model on the training data.
    selected_epoch_ : int
        With ``epoch_selection``: the 1-based number of the epoch kept.
    run_params_ : dict
        The parameters that define the run (sparsity, method, pruning and groups settings)
        as the fresh fit saw them; a warm start or ``partial_fit`` refuses to continue with
        other values. ``tolerance``, the loss-constraint parameters, ``max_multiplier_sum``
        and a numeric ``dual_lr`` may change between calls and act from the next step.
    run_fingerprint_ : dict
        With a :class:`~fairprune.callbacks.FairCheckpoint`: digests of the parameters that
        change the result, the dense module, the data and the groups, recorded in the
        checkpoint's manifest and compared on resume.
    fit_status_ : str
        How the fit ended: ``"ok"``; ``"tolerance_not_met"`` (CEAG with a training max ψ_g
        above ε: :class:`~fairprune.FairnessToleranceWarning`); ``"collapsed"`` (the sparse
        model predicts one class, or keeps less than 10% of the dense model's accuracy above
        the majority-class rate: :class:`~fairprune.PrunedModelCollapseWarning`). Also in ``train_report_.attrs``.
    constraint_cells_ : ConstraintCells
        Which rows each constraint reads (the groups themselves for ``gap_metric="accuracy"``).
    constraint_index_ : pandas.Index
        The constraints' names, the index of ``multipliers_``: the groups, or ``(group, rate)``.
    train_constraint_report_ : pandas.DataFrame
        :meth:`constraint_report` of the final model on the training data.
    fairness_ : FairnessState
        Multipliers, replay buffers, the dense reference and the epoch's sums (a module).
    optimizer_, dual_optimizer_ : torch.optim.Optimizer
        The weights' optimizer; the multipliers' (constrained methods).
    group_encoder_ : GroupEncoder or MarginalGroupEncoder
        The encoding of the group labels (codes ``0 .. n_groups - 1``; one code per attribute
        and sample with ``group_mode="marginal"``).
    n_classes_, classes_ : int, numpy.ndarray
        The dense module's number of outputs; ``arange(n_classes_)``.
    prunable_layers_ : list of str
        The layers pruned (all Conv/Linear layers but ``dense_layers``).
    history : skorch.History
        Per epoch: ``train_loss``, ``train_acc``, ``sparsity``, ``phase``,
        ``train_max_excess_accuracy_gap`` (max ψ_g), ``train_pairwise_disparity`` (Ψ_PW), ``multipliers``, ``max_multiplier``,
        ``n_violated``, ``lr`` and timings.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from fairprune import FairPrunedClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X / 16).astype("float32")
    >>> dense = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
    ...                             torch.nn.Linear(32, 10))
    >>> clf = FairPrunedClassifier(dense, sparsity=0.5, tolerance=0.05, dense_layers=(),
    ...                            pruning_epochs=1, max_epochs=1, verbose=0)
    >>> clf = clf.fit(X, y, groups=y)
    >>> round(clf.sparsity_, 2)
    0.5
    >>> int(clf.disparity_report(X, y, groups=y)["n"].sum())
    1797
    """

    #: Accepted values of every parameter (scikit-learn's constraint objects), checked at the
    #: start of ``fit``; ``groups`` is checked where it is read (:func:`~fairprune.groups.locate_groups`)
    #: and the rules that span parameters are in :meth:`_check_params`.
    _parameter_constraints: dict = {
        "dense_module": [torch.nn.Module],
        "sparsity": [Interval(Real, 0, 1, closed="left")],
        "tolerance": [Interval(Real, 0, 1, closed="both")],  # a fraction: 0.02 = 2 points
        "method": [StrOptions(set(METHODS))],
        "replay_buffer_size": [Interval(Integral, 0, None, closed="left")],
        "dual_lr": [_STEP, StrOptions({"auto"})],
        "dual_optimizer": [StrOptions({"sgd", "nupi"})],
        "max_multiplier_sum": [None, _POSITIVE],
        "loss_tolerance": [_NON_NEGATIVE],
        "loss_constraint": [StrOptions({"band", "equality"})],
        "epoch_selection": [None, StrOptions({"accuracy", "fair"})],
        "selection_bound": [StrOptions({"point", "upper"})],
        "constraint_data": [StrOptions({"train", "heldout"})],
        "pruning": [StrOptions({"unstructured", "channel"})],
        "pruning_criterion": [StrOptions(set(CRITERIA)), PruningCriterion],
        "pruning_schedule": [StrOptions({"cubic", "geometric"})],
        "pruning_lr": [None, _STEP],
        "group_mode": [StrOptions({"intersectional", "marginal"})],
        "gap_metric": [StrOptions(set(GAP_METRICS))],
        "pos_label": [None, Interval(Integral, 0, None, closed="left")],
        "pruning_scope": [StrOptions({"layerwise", "global"})],
        "dense_layers": [tuple, list],
        "pruning_epochs": [Interval(Integral, 1, None, closed="left")],
        "pruning_frequency": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "lr": [_STEP],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr_milestones": [None, tuple, list],
        "lr_gamma": [Interval(Real, 0, 1, closed="right")],  # a decay factor
        # as sklearn.utils.check_random_state: a 32-bit seed (epoch seeds derive from it)
        "random_state": [None, Interval(Integral, 0, 2**32 - 1, closed="both")],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "mixed_precision": [None, StrOptions(set(MIXED_PRECISION))],
    }

    def __init__(
        self,
        dense_module,
        sparsity=0.9,
        tolerance=0.05,
        groups=None,
        method="ceag",
        replay_buffer_size=40,
        dual_lr="auto",
        dual_optimizer="sgd",
        max_multiplier_sum=None,
        loss_tolerance=0.0,
        loss_constraint="band",
        pruning="unstructured",
        pruning_scope="layerwise",
        pruning_criterion="magnitude",
        pruning_schedule="cubic",
        dense_layers=("first", "last"),
        pruning_epochs=15, pruning_frequency=1, pruning_lr=None, max_epochs=45,
        lr=0.01, batch_size=128, lr_milestones=(0.6, 0.8, 0.9), lr_gamma=0.1,
        epoch_selection=None, selection_bound="point", constraint_data="train",
        group_mode="intersectional", gap_metric="accuracy", pos_label=None,
        random_state=0, memory=None, mixed_precision=None, device="cpu",
        criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.SGD, train_split=None,
        **kwargs,
    ):
        # set before skorch's __init__ so that the module is not registered as a component
        object.__setattr__(self, "dense_module", dense_module)
        self.sparsity = sparsity
        self.tolerance = tolerance
        self.groups = groups
        self.method = method
        self.replay_buffer_size = replay_buffer_size
        self.dual_lr = dual_lr
        self.dual_optimizer = dual_optimizer
        self.max_multiplier_sum = max_multiplier_sum
        self.loss_tolerance = loss_tolerance
        self.loss_constraint = loss_constraint
        self.pruning = pruning
        self.pruning_scope = pruning_scope
        self.pruning_criterion = pruning_criterion
        self.pruning_schedule = pruning_schedule
        self.dense_layers = dense_layers
        self.pruning_epochs = pruning_epochs
        self.pruning_frequency = pruning_frequency
        self.pruning_lr = pruning_lr
        self.lr_milestones = lr_milestones
        self.lr_gamma = lr_gamma
        self.epoch_selection = epoch_selection
        self.selection_bound = selection_bound
        self.constraint_data = constraint_data
        self.group_mode = group_mode
        self.gap_metric = gap_metric
        self.pos_label = pos_label
        self.random_state = random_state
        self.memory = memory
        self.mixed_precision = mixed_precision
        super().__init__(module=dense_module, criterion=criterion, optimizer=optimizer, lr=lr,
                         max_epochs=max_epochs, batch_size=batch_size, train_split=train_split,
                         device=device, **kwargs)

    # =====================================================================================
    # Construction and parameters
    # =====================================================================================
    # skorch's `module` is our `dense_module`: one constructor parameter, an *instance* that is
    # deep-copied twice at initialisation, into `dense_module_` (frozen, eval mode: the
    # reference) and `module_` (the model that is pruned and fine-tuned)
    @property
    def module(self):
        return self.dense_module

    @module.setter
    def module(self, value):
        object.__setattr__(self, "dense_module", value)

    def __setattr__(self, name, value):
        if name == "dense_module":
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    @staticmethod
    def paper_defaults(dataset: str = "utkface") -> dict:
        """The paper's hyperparameters for ``dataset`` (:func:`fairprune.paper_defaults`):
        ``FairPrunedClassifier(dense, sparsity=0.9, **FairPrunedClassifier.paper_defaults())``."""
        return paper_defaults(dataset)

    @staticmethod
    def fairgrape_defaults(sparsity: float = 0.9, keep_per_iteration: float = 0.9) -> dict:
        """FairGRAPE's own schedule (:func:`fairprune.fairgrape_defaults`):
        ``FairPrunedClassifier(dense, **FairPrunedClassifier.fairgrape_defaults(0.9))``."""
        return fairgrape_defaults(sparsity, keep_per_iteration)

    @property
    def _default_callbacks(self):
        return default_callbacks(keys_ignored=_NOT_SHOWN)

    def get_params(self, deep=True, **kwargs):
        """skorch's parameters without its private bookkeeping (names starting with ``_``)."""
        params = super().get_params(deep=deep, **kwargs)
        return {key: value for key, value in params.items() if not key.startswith("_")}

    def _check_params(self) -> None:
        """Check every parameter against :attr:`_parameter_constraints`, then the rules that
        span parameters or need the machine. Raises scikit-learn's ``InvalidParameterError``
        (a ``ValueError`` and a ``TypeError``) naming the parameter, what was expected and
        what came."""
        owner = type(self).__name__
        tolerance = self.tolerance
        if (isinstance(tolerance, Real) and not isinstance(tolerance, bool)
                and 1 < tolerance <= 100):
            raise InvalidParameterError(
                f"The 'tolerance' parameter of {owner} must be a fraction in [0, 1] (0.02 = 2 "
                f"accuracy points). Got {tolerance!r} instead; did you mean "
                f"{tolerance / 100:g}?")
        check_parameters(owner, self._parameter_constraints,
                         {name: getattr(self, name) for name in self._parameter_constraints})
        if not all(isinstance(layer, str) for layer in self.dense_layers):
            raise InvalidParameterError(
                f"The 'dense_layers' parameter of {owner} must be a tuple of layer names or the "
                f"tokens 'first'/'last' (() prunes every layer). Got {describe(self.dense_layers)} "
                "instead.")
        for value in self.lr_milestones or ():
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 1:
                raise InvalidParameterError(
                    f"The 'lr_milestones' parameter of {owner} must be None or a sequence of "
                    f"fractions of all epochs in (0, 1]. Got {describe(self.lr_milestones)} "
                    "instead.")
        for name, value in (("epoch_selection", self.epoch_selection),
                            ("constraint_data", self.constraint_data)):
            if value not in (None, "train") and self.train_split is None:
                raise InvalidParameterError(
                    f"The {name!r} parameter of {owner} is {value!r}, which needs held-out "
                    "training data, but 'train_split' is None. Pass train_split="
                    "skorch.dataset.ValidSplit(0.1, stratified=True, random_state=0).")
        if self.selection_bound == "upper" and self.epoch_selection != "fair":
            raise InvalidParameterError(
                f"The 'selection_bound' parameter of {owner} is 'upper', which bounds the "
                "held-out max excess accuracy gap of epoch_selection='fair'; got "
                f"epoch_selection={self.epoch_selection!r}. Pass epoch_selection='fair', or "
                "leave selection_bound='point'.")
        if self.gap_metric != "accuracy" and self.method == "equalized_loss":
            raise InvalidParameterError(
                f"The 'gap_metric' parameter of {owner} is {self.gap_metric!r}, which CEAG "
                "constrains; equalized loss bounds the gap between each group's loss and the "
                "overall loss on all rows. Use method='ceag', or gap_metric='accuracy'.")
        if self.gap_metric != "accuracy" and self.selection_bound == "upper":
            raise InvalidParameterError(
                f"The 'selection_bound' parameter of {owner} is 'upper', whose bootstrap bound "
                f"is of the excess accuracy gap; gap_metric={self.gap_metric!r} selects on the "
                "point estimate only. Leave selection_bound='point'.")
        check_criterion(self.pruning_criterion).check(
            pruning=self.pruning, pruning_scope=self.pruning_scope, method=self.method)
        if not any(p.requires_grad for p in self.dense_module.parameters()):
            raise InvalidParameterError(
                f"The 'dense_module' parameter of {owner} has no trainable parameters (none, "
                "or all with requires_grad=False): there is nothing to prune or fine-tune. "
                "Unfreeze the layers to prune (param.requires_grad_(True)).")
        prunable_layers(self.dense_module, tuple(self.dense_layers))  # names that do not exist
        try:
            if self.device is not None:  # None: skorch leaves placement to e.g. Accelerate
                torch.device(self.device)
        except (RuntimeError, TypeError, ValueError):
            raise InvalidParameterError(
                f"The 'device' parameter of {owner} must be a torch device such as 'cpu', "
                f"'cuda', 'cuda:0' or 'mps'. Got {describe(self.device)} instead.") from None
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise InvalidParameterError(
                f"The 'device' parameter of {owner} is {str(self.device)!r}, but CUDA is not "
                "available on this machine. Use device='cpu'.")

    # =====================================================================================
    # Initialisation (skorch's initialize_* hooks) and the state a fit installs
    # =====================================================================================
    def initialize_module(self):
        # a new module starts a new fit (here, not in initialize(): skorch's AccelerateMixin
        # replaces initialize() without calling it)
        if self.get_params_for("module"):
            raise InvalidParameterError(
                "module__* parameters are not supported: dense_module is an instance that is "
                "deep-copied, not a class to instantiate.")
        self.engines_ = {}
        self.grad_scaler_ = None
        self.fairness_ = None
        self.unusable_ = None
        dense = copy.deepcopy(self.dense_module).to(self.device)
        dense.eval()
        for param in dense.parameters():
            if not is_lazy(param):  # lazy modules materialise at the first forward
                param.requires_grad_(False)
        self.dense_module_ = dense
        self.module_ = copy.deepcopy(self.dense_module).to(self.device)
        # the user's module (a parameter) and the multipliers' optimizer pickle in skorch's
        # device-aware part too: a model pickled on a GPU loads on a CPU, and the optimizer
        # keeps stepping the very multipliers of the fairness state after a round trip
        self._pickle_with_device_mapping("dense_module", "dual_optimizer_")
        return self

    def _pickle_with_device_mapping(self, *names: str) -> None:
        """Add ``names`` to skorch's ``cuda_dependent_attributes_`` (pickled together, loaded
        onto the machine's device)."""
        missing = [name for name in names if name not in self.cuda_dependent_attributes_]
        if missing:
            self.cuda_dependent_attributes_ = [*self.cuda_dependent_attributes_, *missing]

    def initialize_criterion(self):
        kwargs = self.get_params_for("criterion")
        kwargs["reduction"] = "none"
        self.criterion_ = self.criterion(**kwargs)
        if isinstance(self.criterion_, torch.nn.Module):
            self.criterion_ = self.criterion_.to(self.device)
        return self

    def initialize_optimizer(self, triggered_directly=None):
        args, kwargs = self.get_params_for_optimizer("optimizer", self.get_all_learnable_params())
        if self.optimizer is torch.optim.SGD:  # the paper's momentum and weight decay
            kwargs.setdefault("momentum", 0.9)
            kwargs.setdefault("weight_decay", 1e-4)
        self.optimizer_ = self.optimizer(*args, **kwargs)
        self.engines_ = {}
        return self

    def get_all_learnable_params(self):
        """Only the sparse model learns (not the dense copy, masks or multipliers)."""
        yield from self.module_.named_parameters()

    def set_fairness_state_(self, state: FairnessState, masks: MaskSet) -> None:
        """Install the fairness state and masks of a new fit (registered as modules, so
        ``save_params(f_fairness=..., f_masks=...)`` and checkpoints find them)."""
        with self._current_init_context("module"):
            self.fairness_ = state
        self.set_masks_(masks)

    def set_dual_optimizer_(self, optimizer) -> None:
        """Install the multipliers' optimizer (registered for ``f_dual_optimizer``)."""
        with self._current_init_context("optimizer"):
            self.dual_optimizer_ = optimizer
        self._pickle_with_device_mapping("dual_optimizer_")
        self.engines_ = {}

    def set_masks_(self, masks: MaskSet) -> None:
        """Install new pruning masks and apply them to ``module_``."""
        with self._current_init_context("module"):
            self.masks_ = masks
        masks.apply_(self.module_)
        self.engines_ = {}

    def set_selected_epoch_(self, epoch: int) -> None:
        """Record the fine-tuning epoch (1-based) whose state epoch selection kept."""
        self.selected_epoch_ = int(epoch)

    def mark_unusable_(self, reason: str) -> None:
        """Refuse every later use of this model (``check_is_fitted`` says ``reason``)."""
        self.unusable_ = reason

    # =====================================================================================
    # Fit
    # =====================================================================================
    # routing sends `groups` (the CV splitter's) to fit only on request; sensitive_features
    __metadata_request__fit = {"groups": False}
    __metadata_request__partial_fit = {"groups": False}

    def fit(self, X, y=None, groups=None, sensitive_features=None, **fit_params):
        """Prune ``dense_module`` with GMP, then fine-tune it with ``method``.

        Parameters
        ----------
        X : array-like, DataFrame, dict or SliceDict
            Training inputs (with the group columns when a locator is set).
        y : array-like of shape (n_samples,)
            Class indices ``0 .. n_classes-1`` as output by ``dense_module``.
        groups, sensitive_features : array-like of shape (n_samples,), optional
            Group label of every sample, under either name; route ``sensitive_features``
            (fairlearn's name). Optional when a locator is set.
        **fit_params
            Passed to the module's ``forward`` (as in skorch).

        Returns
        -------
        self
        """
        self._check_params()
        with kept_if_no_epoch_runs(self):  # bad data on a refit leaves the fitted model
            self.__dict__.update(fit_mode_="continue" if self.warm_start else "fresh")
            if not self.warm_start or not self.initialized_:
                self.initialize()
            return self._train(X, y, either_labels(groups, sensitive_features), fit_params)

    def partial_fit(self, X, y=None, classes=None, groups=None, sensitive_features=None, **kw):
        """Continue training (GMP then fine-tuning, counted from the first epoch)."""
        self._check_params()
        self.__dict__.update(fit_mode_="continue")
        if not self.initialized_:
            self.initialize()
        return self._train(X, y, either_labels(groups, sensitive_features), kw, classes)

    def _train(self, X, y, groups, fit_params, classes=None):
        """Check and pack the data, run skorch's loop (the callbacks do the rest) inside a
        seeded fork of the torch RNG, holding the lock of every FairCheckpoint folder, then
        summarise the fit."""
        seed = self.random_state
        devices = [torch.device(self.device)] if str(self.device).startswith("cuda") else []
        with contextlib.ExitStack() as context:
            for checkpoint in self._fair_checkpoints():  # one fit per checkpoint folder
                context.enter_context(checkpoint_lock(checkpoint.dirname))
            context.enter_context(torch.random.fork_rng(devices=devices,
                                                        enabled=seed is not None))
            if seed is not None:
                torch.manual_seed(seed)
            packed, y = self._prepare_fit_data(X, y, groups, fit_params, classes)
            if self._fair_checkpoints():
                self.__dict__["run_fingerprint_"] = self._run_fingerprint(packed, y)
            super().partial_fit(packed, y, **fit_params)
            if len(self.history):
                self._summarize_fit(packed, y)
        return self

    def _fair_checkpoints(self) -> list:
        """The :class:`~fairprune.callbacks.FairCheckpoint` callbacks of this net."""
        return [cb for _, cb in getattr(self, "callbacks_", []) if isinstance(cb, FairCheckpoint)]

    def _run_fingerprint(self, packed, y) -> dict:
        """What a checkpoint's run is: digests of the parameters that change the result, the
        dense module (code and weights), the data and the groups."""
        params = {name: value for name, value in self.get_params(deep=False).items()
                  if name not in _NOT_IN_FINGERPRINT and not name.startswith("_")
                  and not name.startswith("callbacks")}
        features, codes = unpack_groups(packed)
        try:
            return {"parameters": parameter_digests(params),
                    "dense_module": module_digest(self.dense_module),
                    "data": data_digest(features, np.asarray(y)),
                    "groups": data_digest(codes, np.asarray(self.groups_, dtype=str))}
        except FingerprintError as exc:
            raise CheckpointError(
                f"A FairCheckpoint records a fingerprint of its run, and this one cannot be "
                f"computed: {exc}. Define the module in a file (or notebook cell) whose source "
                "Python can read.") from None

    def _prepare_fit_data(self, X, y, groups, fit_params, classes):
        """Check a fit's inputs and pack features with group codes: ``(packed, y)``.

        A fresh fit encodes the groups and records the feature count; a fit that continues
        (``warm_start``, ``partial_fit``) checks the data against them. ``sample_weight`` is
        refused (the constraints weigh groups, not samples), and ``classes`` (``partial_fit``)
        must be the dense module's classes ``0 .. n_classes - 1``.
        """
        if fit_params and "sample_weight" in fit_params:
            raise TypeError(
                "FairPrunedClassifier does not support sample_weight: the losses, group "
                "accuracies and constraints weigh every training sample equally. Resample the "
                "data instead, or drop sample_weight.")
        if y is None:
            check_targets(None, 0, 0)
        labels = resolve_groups(self.groups, X, y, groups)
        if labels is None:
            raise ValueError(
                "FairPrunedClassifier.fit needs group labels: pass fit(X, y, groups=g), set a "
                "locator (groups='column', groups=['a', 'b'] or groups=by_target), or route "
                "them with set_fit_request(sensitive_features=True) under metadata routing.")
        fresh = self.fairness_ is None
        if fresh:
            self.run_params_ = {name: getattr(self, name) for name in _RUN_DEFINING}
        else:
            self._check_continuation()
        features = self._features(X, reset=fresh)
        if len(labels) != n_samples(features):
            raise ValueError(
                f"'groups' has {len(labels)} labels but X has {n_samples(features)} samples.")
        logits = probe_module(self.dense_module_, self.module_, features)
        y = check_targets(y, logits.shape[1], n_samples(features))
        if fresh and _look_like_probabilities(logits):
            warnings.warn(
                "dense_module's outputs look like probabilities (non-negative rows that sum "
                "to 1), but fairprune expects logits: the losses, their gradients and the "
                "constraints' proxy are computed with log-softmax on top. Remove the final "
                "Softmax layer (predict_proba applies softmax itself).",
                DenseModelWarning, stacklevel=4)
        if fresh:
            self.group_encoder_ = (
                MarginalGroupEncoder().fit(labels, label_attributes(self.groups, groups))
                if self.group_mode == "marginal" else GroupEncoder().fit(labels))
        self.n_classes_ = int(logits.shape[1])
        if classes is not None and not np.array_equal(np.unique(classes),
                                                      np.arange(self.n_classes_)):
            raise ValueError(
                f"'classes' must be the dense module's classes 0 .. {self.n_classes_ - 1} (its "
                f"{self.n_classes_} outputs); got {np.unique(classes).tolist()[:10]}.")
        codes = self.group_encoder_.transform(labels)
        if fresh:
            self.constraint_cells_ = ConstraintCells(
                self.gap_metric, self.n_classes_, self.pos_label).fit(
                    codes, y, self.group_encoder_.n_groups)
        cells = self.constraint_cells_
        if cells.identity:
            return pack_groups(features, codes), y
        return pack_groups(features, cells.transform(codes, y), report_codes=codes), y

    def _check_continuation(self) -> None:
        """A fit that continues (``warm_start``, ``partial_fit``) continues the same run:
        a changed parameter that defines the run (:data:`_RUN_DEFINING`) is refused, and a
        new numeric ``dual_lr`` is applied to the multipliers' optimizer (the tolerance and
        the other constraint parameters reach the next step through :meth:`engine_for`)."""
        recorded = self.__dict__.get("run_params_") or {}
        changed = {name: (old, getattr(self, name)) for name, old in recorded.items()
                   if not _same_value(old, getattr(self, name))}
        if changed:
            what = "; ".join(f"{name} was {old!r}, is now {new!r}"
                             for name, (old, new) in changed.items())
            raise ValueError(
                f"{type(self).__name__} cannot continue its fit with other run parameters "
                f"({what}): a warm start or partial_fit continues the same pruning run. Set "
                "them back, or fit afresh (warm_start=False, or sklearn.base.clone(clf)).")
        optimizer = getattr(self, "dual_optimizer_", None)
        if optimizer is not None and self.dual_lr != "auto" and self.dual_lr != self.dual_lr_:
            for group in optimizer.param_groups:
                group["lr"] = float(self.dual_lr)
            self.dual_lr_ = float(self.dual_lr)

    def _features(self, X, *, reset: bool):
        """X without the locator's group columns, checked (``reset=True`` in fit records
        ``n_features_in_``; later calls check X against it). Packed X passes as it is."""
        if is_packed(X):
            return X
        return check_features(self, drop_group_columns(self.groups, X), reset=reset)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Run the epochs left of ``pruning_epochs + max_epochs``, loading the GMP phase from
        ``memory`` when it was run before."""
        if epochs is None:
            epochs = epochs_to_run(self)
        if self.memory is not None and includes_whole_gmp_phase(self, epochs):
            if check_criterion(self.pruning_criterion).fairness == "lagrangian":
                warnings.warn(
                    "memory= is not used for this fit: the pruning criterion learns its masks "
                    "under CEAG's multipliers, so the pruning phase depends on the tolerance "
                    "and the dual parameters, and its multipliers are not cached.",
                    GMPCacheWarning, stacklevel=3)
            else:
                run_or_load_gmp(self, X, y, fit_params)
                epochs -= self.pruning_epochs
        return self.run_epochs(X, y, epochs, fit_params)

    def run_epochs(self, X, y, epochs: int, fit_params: dict):
        """skorch's epoch loop for ``epochs`` epochs (no GMP cache)."""
        return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        if self.random_state is not None:
            # one seed per epoch: shuffles do not depend on how the run was split into calls,
            # so a run resumed from a checkpoint matches an uninterrupted one
            torch.manual_seed(self.random_state * 1_000_003 + len(self.history))
        # held-out constraints: the validation split's batches in order, from its first one
        # every epoch (so a resumed or cached run sees the same ones), cycled within the epoch
        self.__dict__["_heldout_batches"] = (
            self._cycle(dataset_valid) if self.constraint_data == "heldout"
            and dataset_valid is not None and len(dataset_valid) else None)

    def _cycle(self, dataset):
        """The evaluation batches of ``dataset``, again from the start when they run out."""
        while True:
            yield from self.get_iterator(dataset, training=False)

    @torch.no_grad()
    def _observe_heldout_batch(self, problem) -> None:
        """One held-out batch through ``module_`` in eval mode (no gradient, BatchNorm
        statistics untouched) into the held-out replay buffers of ``problem``."""
        batches = self.__dict__.get("_heldout_batches")
        if batches is None:
            return
        Xi, yi, group_ids = batch_tensors(next(batches), self.device)
        module = self.module_
        module.eval()
        try:
            logits = forward(module, Xi, self.device).float()
        finally:
            module.train()
        loss = self.criterion_(logits, yi).float()
        problem.observe_heldout(group_ids, (logits.argmax(dim=1) == yi).float(), loss)

    def get_iterator(self, dataset, training=False):
        """skorch's DataLoader, fetching each batch of an array dataset with one indexing
        (:func:`fairprune.training.loading.make_iterator`); works with skorch's
        ``AccelerateMixin``, whose sharded samplers go through the same hook."""
        if training:
            batch_size = self.get_params_for("iterator_train").get("batch_size", self.batch_size)
            self.__dict__["drop_single_tail_"] = single_sample_tail(self.module_, dataset,
                                                                    batch_size)
        return make_iterator(self, dataset, training=training, default_iterator=lambda: (
            super(FairPrunedClassifier, self).get_iterator(dataset, training=training)))

    def get_params_for(self, prefix):
        params = super().get_params_for(prefix)
        if prefix == "iterator_train" and not {"sampler", "batch_sampler"} & params.keys():
            params.setdefault("shuffle", True)  # shuffled SGD, as in the paper
            if self.__dict__.get("drop_single_tail_"):
                params.setdefault("drop_last", True)
        return params

    def _summarize_fit(self, packed, y) -> None:
        """The end of a fit: the step's invariants again (an interrupt may have stopped a
        step half-way), ``train_report_`` (the final model on the training split, eval mode)
        and, with CEAG, a :class:`FairnessToleranceWarning` naming the worst groups when
        ``max ψ_g`` exceeds the tolerance there."""
        self.restore_invariants_()
        dataset_train, _ = self.get_split_datasets(packed, y)
        try:
            y_true, dense, sparse, codes = predicted_classes(self, dataset_train)
        except FloatingPointError as exc:  # never returned as a fitted model
            self.mark_unusable_("its outputs on the fit data are NaN/inf")
            raise FloatingPointError(f"Training ended with a model that is not usable: {exc}"
                                     ) from None
        with warnings.catch_warnings():  # small groups: said by the user's own reports
            warnings.simplefilter("ignore", SmallGroupWarning)
            cells_report = constraint_report(y_true, dense, sparse, codes,
                                             self.constraint_cells_, self.groups_,
                                             self.tolerance)
            report = self._report(y_true, dense, sparse, self._labels_of_codes(codes),
                                  cells_report=cells_report)
        self.train_report_ = report
        self.train_constraint_report_ = cells_report
        collapse = _collapse(y_true, dense, sparse)
        self.fit_status_ = "ok"
        if collapse is not None:
            self.fit_status_ = report.attrs["fit_status"] = "collapsed"
            total = float(self.fairness_.multiplier_values().sum())
            warnings.warn(
                f"The pruned model collapsed: {collapse}, at sparsity_={self.sparsity_:.3f} "
                f"with multipliers summing to {total:.3g}. Its reports are not meaningful. "
                "Try a lower sparsity, keeping the first and last layers dense "
                "(dense_layers=('first', 'last')), a smaller dual_lr, or "
                "max_multiplier_sum=1 (past 1 the multipliers push the overall loss up).",
                PrunedModelCollapseWarning, stacklevel=4)
            return
        accuracy = self.constraint_cells_.identity
        worst = (report.attrs["max_excess_accuracy_gap"] if accuracy
                 else cells_report.attrs["max_excess_gap"])
        if self.method != "ceag" or worst <= self.tolerance:
            report.attrs["fit_status"] = self.fit_status_
            return
        self.fit_status_ = report.attrs["fit_status"] = "tolerance_not_met"
        if accuracy:
            top = report.nlargest(3, "excess_accuracy_gap")
            labels = (top["attribute"] + "=" + top["group"].astype(str) if "attribute" in top
                      else top["group"])
            values = top["excess_accuracy_gap"]
        else:
            top = cells_report.nlargest(3, "excess_gap")
            labels = [f"{group} {rate}" for group, rate in zip(top["group"], top["rate"])]
            values = top["excess_gap"]
        names = ", ".join(f"{g!r} ({v:+.3f})" for g, v in zip(labels, values))
        buffer = self.fairness_.buffer
        ready = (None if buffer is None
                 else buffer.ready().cpu().numpy()[: self.fairness_.n_reported])
        idle = [] if ready is None else self.constraint_index_[~ready].tolist()
        if not self.max_epochs:
            cause = "No fine-tuning epoch ran (max_epochs=0): the constraints never acted."
        elif idle:
            cause = (f"The constraints of {idle[:5]} never acted: their replay buffers never "
                     "filled (no training sample after the split?).")
        else:
            cause = "The tolerance may be infeasible at this sparsity, or training too short."
        warnings.warn(
            f"Training ended with max excess {gap_name(self.gap_metric).replace('_', ' ')} "
            f"{worst:.4f} > tolerance "
            f"{self.tolerance:g} on the training data (worst groups: {names}). {cause} See "
            "clf.train_report_ and history[:, 'train_max_excess_accuracy_gap'].",
            FairnessToleranceWarning,
            stacklevel=4,  # the user's call: _summarize_fit, _train, fit or partial_fit
        )

    @torch.no_grad()
    def restore_invariants_(self) -> None:
        """Re-apply what every completed step guarantees: pruned weights are zero, and
        inequality multipliers are >= 0 (and within ``max_multiplier_sum``). Idempotent."""
        self.masks_.apply_(self.module_)
        multiplier = self.fairness_.multiplier
        if getattr(multiplier, "constraint_type", None) is not None:  # set once constrained
            multiplier.post_step_()
            self.fairness_.bound_multipliers_(self.max_multiplier_sum)

    # =====================================================================================
    # The training step
    # =====================================================================================
    def torch_compile(self, module, name):
        """skorch compiles every module at initialisation; here ``module_`` stays plain and
        only the training forward pass is compiled (see :meth:`training_module`)."""
        return module

    def training_module(self) -> torch.nn.Module:
        """``module_``, or its ``torch.compile`` wrapper when ``compile=True``."""
        if not self.compile:
            return self.module_
        compiled = self.__dict__.get("_compiled_module")
        if compiled is None or compiled._orig_mod is not self.module_:
            compiled = torch.compile(self.module_, **self.get_params_for("compile"))
            object.__setattr__(self, "_compiled_module", compiled)
        return compiled

    def autocast(self):
        """Autocast context of the training forward pass (``mixed_precision``)."""
        return autocast(self.mixed_precision, self.device)

    def engine_for(self, phase: str) -> FineTuningEngine:
        """The training step of ``phase`` (rebuilt when the optimizer or masks change)."""
        key = (phase, id(self.optimizer_), id(self.masks_),
               id(getattr(self, "dual_optimizer_", None)), id(self.grad_scaler_),
               self.tolerance, self.loss_tolerance, self.loss_constraint,
               self.max_multiplier_sum)
        engine = self.engines_.get(key)
        if engine is None:
            problem = make_problem(phase, self.fairness_, tolerance=self.tolerance,
                                   loss_tolerance=self.loss_tolerance,
                                   loss_constraint=self.loss_constraint,
                                   constraint_data=self.constraint_data,
                                   pruning_fairness=check_criterion(
                                       self.pruning_criterion).fairness)
            dual = getattr(self, "dual_optimizer_", None) if problem.constrained else None
            engine = FineTuningEngine(problem, self.optimizer_, dual, self.masks_,
                                      max_multiplier_sum=self.max_multiplier_sum,
                                      grad_scaler=self.grad_scaler_)
            self.engines_ = {key: engine}
        return engine

    def train_step(self, batch, **fit_params):
        """One step: forward, per-sample losses, dual then primal update, masks."""
        self._set_training(True)
        self.dense_module_.eval()
        Xi, yi, group_ids = batch_tensors(batch, self.device)
        with self.autocast():
            if fit_params:
                logits = self.infer(Xi, **fit_params)
            else:
                logits = forward(self.training_module(), Xi, self.device)
            per_sample = self.criterion_(logits, yi)
        per_sample = per_sample.float()  # group statistics, buffers and multipliers: float32
        logits = logits.detach().float()
        correct = (logits.argmax(dim=1) == yi).float()

        def on_grad():
            self.notify("on_grad_computed", batch=batch, training=True,
                        named_parameters=TeeGenerator(self.get_all_learnable_params()))

        engine = self.engine_for(phase_of(self, current_epoch(self)))
        if engine.problem.dual_from_heldout:  # Cotter et al.: a held-out batch every step
            self._observe_heldout_batch(engine.problem)
        loss = engine.step(self.module_, per_sample, correct, group_ids, on_grad=on_grad)
        return {"loss": loss, "y_pred": logits}

    def validation_step(self, batch, **fit_params):
        """skorch's validation step; also counts, per group, the held-out rows the sparse
        model gets right (for the held-out excess accuracy gaps and held-out constraints)."""
        step = super().validation_step(batch, **fit_params)
        Xi, y_true, group_ids = batch_tensors(batch, self.device)
        if self.fairness_ is not None and group_ids is not None:
            logits = step["y_pred"]
            correct = (logits.argmax(dim=1) == y_true).float()
            loss = self.criterion_(logits, y_true).float()  # per sample (reduction="none")
            dense_correct = None
            if self.selection_bound == "upper":  # paired rows for the bootstrap's bound
                with torch.no_grad():
                    dense_logits = forward(self.dense_module_, Xi, self.device)
                dense_correct = dense_logits.argmax(dim=1) == y_true
            self.fairness_.record(group_ids, correct, split="valid", loss=loss,
                                  dense_correct=dense_correct)
        return step

    def infer(self, x, **fit_params):
        if fit_params:
            return super().infer(unpack_groups(x)[0], **fit_params)
        return forward(self.module_, x, self.device)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = to_tensor(y_true, device=self.device)
        return self.criterion_(y_pred, y_true).mean()

    # =====================================================================================
    # Inference
    # =====================================================================================
    def check_is_fitted(self, attributes=None, *args, **kwargs):
        """skorch's check, plus a refusal to use a model that a fault left unusable."""
        super().check_is_fitted(attributes, *args, **kwargs)
        reason = self.__dict__.get("unusable_")
        if reason:
            raise NotFittedError(f"This {type(self).__name__} cannot be used: {reason}. Fit it "
                                 "again.")

    def logits(self, module: torch.nn.Module, X) -> torch.Tensor:
        """Logits of ``module`` on checked features ``X`` (CPU, float32)."""
        dataset = self.get_dataset(X)
        return torch.cat([out.float().cpu() for out, _, _ in iter_logits(self, module, dataset)])

    def predict_proba(self, X):
        """Class probabilities of the sparse model."""
        self.check_is_fitted(["module_"])
        proba = super().predict_proba(self._features(X, reset=False))
        check_finite_outputs(torch.as_tensor(np.isfinite(proba).all(axis=1)),
                             "sparse model (module_)")
        return proba

    def predict(self, X):
        """Class indices predicted by the sparse model."""
        return self.predict_proba(X).argmax(axis=1)

    def predict_dense_proba(self, X):
        """Class probabilities of the dense reference model."""
        self.check_is_fitted(["module_"])
        logits = self.logits(self.dense_module_, self._features(X, reset=False))
        return torch.softmax(logits, dim=1).numpy()

    def predict_dense(self, X):
        """Class indices predicted by the dense reference model."""
        return self.predict_dense_proba(X).argmax(axis=1)

    # =====================================================================================
    # Reports and fitted attributes
    # =====================================================================================
    def disparity_report(self, X, y, groups=None, sensitive_features=None, *, n_boot=0,
                         ci=0.95, random_state=None) -> pd.DataFrame:
        """Per-group accuracy of the dense and sparse models on ``(X, y)``.

        Parameters
        ----------
        X, y : inputs and true class indices (train or test data).
        groups, sensitive_features : array-like, optional
            Group labels under either name; defaults to the locator.
        n_boot, ci, random_state
            Paired, group-stratified bootstrap intervals, as in
            :func:`fairprune.report.disparity_report` (``n_boot=1000`` for a report on unseen
            data you act on).

        Returns
        -------
        pandas.DataFrame
            :func:`fairprune.report.disparity_report` with ``tolerance``, plus ``seen_in_fit``
            (False for groups never seen in fit).
        """
        self.check_is_fitted(["fairness_"])
        labels = resolve_groups(self.groups, X, y, either_labels(groups, sensitive_features))
        if labels is None:
            raise ValueError("disparity_report needs group labels: pass sensitive_features=... "
                             "(or groups=...) or set a locator.")
        y = check_targets(y, self.n_classes_, len(labels))
        report = self._report(y, self.predict_dense(X), self.predict(X), labels, n_boot=n_boot,
                              ci=ci, random_state=random_state)
        known = set(self.groups_.tolist())
        names = (zip(report["attribute"], report["group"]) if "attribute" in report
                 else report["group"])
        report["seen_in_fit"] = [g in known for g in names]
        return report

    def _report(self, y_true, dense, sparse, labels, cells_report=None,
                **bootstrap) -> pd.DataFrame:
        """:func:`fairprune.report.disparity_report` with this estimator's tolerance and
        group mode; with a ``gap_metric`` other than accuracy, ``violates`` marks the groups
        with a constraint cell over ε (:meth:`constraint_report`, or ``cells_report`` when the
        caller has it for the same rows)."""
        attributes = getattr(self.group_encoder_, "attributes_", None)
        report = disparity_report(y_true, dense, sparse, labels, self.tolerance,
                                  group_mode=self.group_mode, attributes=attributes, **bootstrap)
        cells = self.__dict__.get("constraint_cells_")
        report.attrs["gap_metric"] = self.gap_metric
        if cells is None or cells.identity:
            return report
        violating = (self._cells_report(y_true, dense, sparse, labels) if cells_report is None
                     else cells_report)
        over = set(violating.loc[violating["violates"].fillna(False).astype(bool), "group"])
        names = (zip(report["attribute"], report["group"]) if "attribute" in report
                 else report["group"])
        report["violates"] = pd.array([g in over for g in names], dtype="boolean")
        report.attrs["n_violating"] = int(report["violates"].sum())
        report.attrs["max_excess_gap"] = violating.attrs["max_excess_gap"]
        return report

    def _cells_report(self, y_true, dense, sparse, labels) -> pd.DataFrame:
        """:func:`fairprune.report.constraint_report` of the rows whose groups fit saw."""
        codes = self.group_encoder_.transform(labels, unseen="ignore")
        seen = (codes >= 0) if codes.ndim == 1 else (codes >= 0).all(axis=1)
        y_true, dense, sparse = (np.asarray(v)[seen] for v in (y_true, dense, sparse))
        return constraint_report(y_true, dense, sparse, codes[seen], self.constraint_cells_,
                                 self.groups_, self.tolerance)

    def constraint_report(self, X, y, groups=None, sensitive_features=None) -> pd.DataFrame:
        """One row per constraint (a group, or with ``gap_metric`` a (group, rate) cell) on
        ``(X, y)``: its rows, both models' rate, the drop and its excess over the drop of
        the cell's family (all rows, all positives, all negatives, or a class's rows).

        Rows of groups fit never saw are left out. See
        :func:`fairprune.report.constraint_report`.
        """
        self.check_is_fitted(["fairness_"])
        labels = resolve_groups(self.groups, X, y, either_labels(groups, sensitive_features))
        if labels is None:
            raise ValueError("constraint_report needs group labels: pass "
                             "sensitive_features=... (or groups=...) or set a locator.")
        y = check_targets(y, self.n_classes_, len(labels))
        return self._cells_report(y, self.predict_dense(X), self.predict(X), labels)

    def _labels_of_codes(self, codes: np.ndarray) -> np.ndarray:
        """Group labels of the fit's codes: the labels themselves, or for marginal groups
        the tuple of each sample's values."""
        classes = self.groups_
        if np.ndim(codes) == 1:
            return classes[codes]
        labels = np.empty(len(codes), dtype=object)
        labels[:] = [tuple(classes[code][1] for code in row) for row in codes.tolist()]
        return labels

    @property
    def groups_(self) -> np.ndarray:
        self.check_is_fitted(["group_encoder_"])
        return self.group_encoder_.classes_

    @property
    def classes_(self):
        self.check_is_fitted(["n_classes_"])
        return np.arange(self.n_classes_)

    @property
    def dense_group_accuracy_(self) -> pd.Series:
        self.check_is_fitted(["fairness_"])
        values = self.fairness_.reference.group_accuracy.cpu().numpy()
        return pd.Series(values, index=pd.Index(self.groups_, name="group"), name="dense_accuracy")

    @property
    def multipliers_(self) -> pd.Series:
        self.check_is_fitted(["fairness_"])
        values = self.fairness_.multiplier_values().cpu().numpy()
        return pd.Series(values, index=self.constraint_index_, name="multiplier")

    @property
    def constraint_index_(self) -> pd.Index:
        """The constraints' names: the groups (``gap_metric="accuracy"``), else
        ``(group, rate)`` cells such as ``("Female", "tpr")``."""
        self.check_is_fitted(["group_encoder_"])
        cells = self.__dict__.get("constraint_cells_")
        if cells is None or cells.identity:
            return pd.Index(self.groups_, name="group")
        return pd.MultiIndex.from_tuples([(self.groups_[g], rate) for g, rate in cells.names_],
                                         names=["group", "rate"])

    @property
    def sparsity_(self) -> float:
        self.check_is_fitted(["masks_"])
        return sparsity_table(self.module_, self.prunable_layers_).attrs["prunable_sparsity"]

    def sparsity_table(self) -> pd.DataFrame:
        """Per-layer sparsity of the sparse model (see :func:`fairprune.pruning.sparsity_table`)."""
        self.check_is_fitted(["masks_"])
        return sparsity_table(self.module_, self.prunable_layers_)

    def __repr__(self) -> str:
        """``FairPrunedClassifier(dense_module=MLP, sparsity=0.8, ...)``: the parameters that
        differ from their defaults, then what a fit learned."""
        defaults = {}
        for cls in type(self).__mro__:  # ours, then skorch's classifier and net defaults
            if "__init__" in vars(cls):
                for name, p in inspect.signature(cls.__init__).parameters.items():
                    defaults.setdefault(name, p.default)
        shown = [f"dense_module={type(self.dense_module).__name__}"]
        for name, value in self.get_params(deep=False).items():
            if name in ("dense_module", "module") or "__" in name:
                continue
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = default is not inspect.Parameter.empty and bool(value == default)
            except Exception:  # noqa: BLE001 - arrays, modules: show them
                same = False
            if not same:
                text = repr(value)
                shown.append(f"{name}={text if len(text) <= 40 else text[:37] + '...'}")
        text = f"{type(self).__name__}({', '.join(shown)})"
        if getattr(self, "fairness_", None) is not None and len(self.history):
            text += (f"\n  fitted: {len(self.history)} epochs, {len(self.groups_)} groups, "
                     f"sparsity_={self.sparsity_:.3f}")
        return text

    # =====================================================================================
    # Export and persistence
    # =====================================================================================
    def export(self) -> torch.nn.Module:
        """The sparse model as a plain ``nn.Module`` (channel pruning: physically smaller)."""
        self.check_is_fitted(["masks_"])
        return export_module(self.module_, self.masks_).eval()

    def load_params(self, *args, **kwargs):
        """skorch's ``load_params``; checks a :class:`~fairprune.callbacks.FairCheckpoint`
        against its manifest first, and refuses masks that do not fit ``module_``."""
        checkpoint = kwargs.get("checkpoint")
        verify = getattr(checkpoint, "verify", None)
        folder = verify(self) if verify is not None else None
        dirname = getattr(checkpoint, "dirname", None)
        try:
            if folder is not None:  # the manifest's generation
                checkpoint.dirname = str(folder)
            super().load_params(*args, **kwargs)
        except pickle.UnpicklingError as exc:
            where = f" in {folder}" if folder is not None else ""
            raise CheckpointError(
                f"A file{where} holds objects other than tensors and plain containers, which "
                f"fairprune does not load (they could run code): {str(exc).splitlines()[0]}"
            ) from None
        finally:
            if folder is not None:
                checkpoint.dirname = dirname
        masks = getattr(self, "masks_", None)
        if isinstance(masks, MaskSet):
            masks.check_compatible(self.module_)
            masks.apply_(self.module_)
            self.engines_ = {}
        return self

    def __getstate__(self):
        state = super().__getstate__()
        state["engines_"] = {}
        state.pop("_compiled_module", None)  # rebuilt on demand; compiled code does not pickle
        state.pop("_heldout_batches", None)  # a generator: rebuilt at the next epoch
        return state


def _look_like_probabilities(logits: torch.Tensor) -> bool:
    """Whether outputs are non-negative rows summing to 1 (a final Softmax), not logits."""
    logits = logits.detach().float()
    return bool((logits >= 0).all()) and bool(
        torch.allclose(logits.sum(dim=1), torch.ones(len(logits), device=logits.device),
                       atol=1e-4))


#: Parameters left out of a checkpoint's fingerprint: they do not change the result (or,
#: like the callbacks, hold the checkpoint itself).
_NOT_IN_FINGERPRINT = frozenset({"dense_module", "module", "verbose", "memory", "warm_start",
                                 "device", "callbacks"})

#: Parameters that define a run: a fit that continues it (warm start, ``partial_fit``)
#: refuses a change of any of them (:meth:`FairPrunedClassifier._check_continuation`).
_RUN_DEFINING = ("sparsity", "method", "pruning", "pruning_scope", "pruning_criterion",
                 "pruning_schedule", "dense_layers", "pruning_epochs", "pruning_frequency",
                 "replay_buffer_size", "constraint_data", "dual_optimizer", "groups",
                 "group_mode", "gap_metric", "pos_label", "mixed_precision")


def _same_value(a, b) -> bool:
    """Equality of two parameter values that never raises (tuples and lists of layer names
    compare as sequences)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays or objects without a plain equality
        return a is b


#: A sparse model keeping less than this share of the dense model's accuracy above the
#: majority-class rate has collapsed (``fit_status_ == "collapsed"``).
COLLAPSE_LIFT = 0.1


def _collapse(y_true: np.ndarray, dense: np.ndarray, sparse: np.ndarray) -> str | None:
    """What shows that the sparse model collapsed on the fit rows, or None: it predicts one
    class for at least 99% of them while the dense model does not, or it keeps less than
    :data:`COLLAPSE_LIFT` of the dense model's accuracy above the majority-class rate (at or
    below that rate included) while the dense model has some."""
    majority = np.bincount(y_true).max() / len(y_true)
    sparse_share = np.bincount(sparse).max() / len(sparse)
    dense_share = np.bincount(dense).max() / len(dense)
    sparse_accuracy, dense_accuracy = (sparse == y_true).mean(), (dense == y_true).mean()
    if sparse_share >= 0.99 and dense_share < 0.99:
        top = int(np.bincount(sparse).argmax())
        return (f"it predicts class {top} for {sparse_share:.1%} of the training rows "
                f"(the dense model: at most {dense_share:.1%} for one class)")
    if dense_accuracy > majority:
        kept = (sparse_accuracy - majority) / (dense_accuracy - majority)
        if kept < COLLAPSE_LIFT:
            return (f"its training accuracy {sparse_accuracy:.3f} keeps {max(kept, 0.0):.0%} of "
                    f"the dense model's lead over always predicting the majority class "
                    f"(majority rate {majority:.3f}, dense model {dense_accuracy:.3f})")
    return None
