"""FairPrunedClassifier: prune a trained classifier without disparate impact (skorch estimator)."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring, EpochTimer, PassthroughScoring, PrintLog
from skorch.dataset import Dataset as SkorchDataset
from skorch.dataset import unpack_data
from skorch.utils import is_dataset
from skorch.helper import SliceDict
from skorch.utils import TeeGenerator, to_tensor
from torch.nn.parameter import is_lazy
from torch.utils.data import DataLoader, Subset, default_convert
from torch.utils.data import Dataset as TorchDataset

from . import _params
from ._validation import check_label_array, check_vector
from .callbacks import (
    EpochSelection,
    FairnessLogger,
    GradualPruning,
    MilestoneLR,
    NonFiniteLossGuard,
)
from .constraints import (
    CEAGProblem,
    EqualizedLossProblem,
    FairnessState,
    FineTuningEngine,
    NaiveFineTuning,
    SignedEqualizedLossProblem,
    make_dual_optimizer,
)
from ._gmp_cache import run_or_load_gmp
from .exceptions import FairnessToleranceWarning
from .groups import GroupEncoder, drop_group_columns, locate_groups
from .paper import paper_defaults
from .pruning import MaskSet, export_module, prunable_layers, sparsity_table
from .report import disparity_report

__all__ = ["FairPrunedClassifier"]

_X_KEY = "__fairprune_X__"
_G_KEY = "__fairprune_groups__"
_NOT_SHOWN = ("multipliers", "train_eag", "phase", "lr", "selected")

#: ``dual_lr="auto"`` for CEAG is ``AUTO_DUAL_STEP / (n_groups · fine-tuning steps)``: over the
#: fine-tuning phase a multiplier facing a steady violation ``v`` gathers at most
#: ``AUTO_DUAL_STEP · v / n_groups``, whatever the schedule's length (ablation in the docs).
AUTO_DUAL_STEP = 100.0
#: The same for equalized loss, whose loss-gap violations rarely vanish.
AUTO_DUAL_STEP_EL = 10.0


def _reject_sparse(X) -> None:
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "Sparse input is not supported: pass a dense numpy array or tensor as X "
            "(X.toarray()), the module receives dense tensors."
        )


def _check_finite_array(X) -> None:
    """Reject empty feature sets and NaN/inf in numeric array inputs."""
    values = X.values() if isinstance(X, Mapping) else [X]
    for value in values:
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
            continue
        if array.ndim == 2 and array.shape[1] == 0:
            raise ValueError(
                f"X has 0 feature(s) (shape={array.shape}) while a minimum of 1 is required."
            )
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ValueError(
                "X contains NaN or infinity; impute or drop those values before fitting."
            )


def _fetches_batches(dataset) -> bool:
    """Whether ``dataset[list_of_indices]`` returns a whole batch (skorch's array datasets)."""
    if isinstance(dataset, Subset):
        return _fetches_batches(dataset.dataset)
    return type(dataset) is SkorchDataset and not dataset.X_is_ndframe


class _BatchFetcher(TorchDataset):
    """A view of a dataset whose ``__getitems__`` (called by the DataLoader when present)
    fetches a whole batch with one indexing."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]

    def __getitems__(self, indices):
        return self.dataset[list(indices)]


class FairPrunedClassifier(NeuralNetClassifier):
    """Prune a trained PyTorch classifier so that no group pays disproportionately.

    ``fit(X, y, groups=g)`` deep-copies ``dense_module`` (the user's module is never modified),
    prunes the copy with gradual magnitude pruning (GMP, cubic schedule) during
    ``pruning_epochs`` epochs of plain fine-tuning, then fine-tunes it for ``max_epochs`` epochs
    with the chosen ``method``:

    * ``"ceag"`` — constrained excess accuracy gaps (Hashemizadeh et al., ICLR 2024): one
      constraint per group, ``ψ_g = Δ_g − Δ <= ε``, where ``Δ_g`` is the accuracy group ``g``
      lost to pruning and ``Δ`` the overall loss, solved with Lagrange multipliers (cooper-optim).
      The primal gradient uses the excess *loss* gap as a differentiable proxy; the multipliers
      move with the true accuracy gaps, estimated from per-group replay buffers.
    * ``"equalized_loss"`` — one constraint per group ``|L_g − L| <= loss_tolerance``
      (``replay_buffer_size=0`` gives the paper's EL baseline; > 0 its EL+RB variant).
    * ``"nft"`` — naive fine-tuning, no constraint.

    Parameters
    ----------
    dense_module : torch.nn.Module
        The trained dense classifier (outputs logits of shape ``(n, n_classes)``). Deep-copied.
    sparsity : float, default=0.9
        Target fraction of prunable weights set to zero, in [0, 1). With
        ``pruning="channel"``, the fraction of output channels removed per coupled group.
    tolerance : float, default=0.05
        ε, the largest excess accuracy gap allowed to any group, as a fraction (0.05 = 5
        accuracy points). Used by CEAG and by the reports of every method.
    groups : None, str, list of str or callable, default=None
        Where group labels come from when ``fit``/``score`` get no ``groups``: a column of a
        DataFrame X (or key of a dict/``SliceDict`` X), several columns (intersectional groups),
        or ``f(X, y) -> labels`` such as :func:`fairprune.groups.by_target`. Group columns are
        removed before the data reaches the module.
    method : {"ceag", "equalized_loss", "nft"}, default="ceag"
        Fine-tuning method after pruning.
    replay_buffer_size : int, default=40
        Per-group replay buffer capacity ``k`` (the paper's 40). 0 estimates group accuracies
        (CEAG) or losses (EL) from each mini-batch instead.
    dual_lr : float or "auto", default="auto"
        Step size of the multipliers (plain gradient ascent). ``"auto"`` scales the step to
        the run: ``AUTO_DUAL_STEP / (n_groups · fine-tuning steps)`` for CEAG, so that the
        total a multiplier can gather over the fine-tuning phase for a steady violation
        ``v`` is ``AUTO_DUAL_STEP · v / n_groups`` whether the phase has 6 epochs or 45, and
        ``AUTO_DUAL_STEP_EL / (n_groups · fine-tuning steps)`` for equalized loss, whose loss
        gaps rarely vanish. The paper uses a fixed 1e-4 on UTKFace (1e-2 on CIFAR-100 and
        FairFace; see :meth:`paper_defaults`); the ablation behind the automatic step is in
        the docs (results, face settings). The value used is in ``dual_lr_``.
    dual_optimizer : {"sgd", "nupi"}, default="sgd"
        Projected gradient ascent (the paper) or Cooper's nuPI controller, which damps
        multiplier oscillations.
    max_multiplier_sum : float or None, default=None
        An extension of the paper, off by default: after every dual step the multipliers are
        projected (Euclidean projection) onto ``{λ >= 0, Σ λ <= max_multiplier_sum}``. The
        Lagrangian weighs the overall loss by ``1 − Σ λ_g``; an infeasible constraint (a
        class the sparse model no longer predicts) can grow its multiplier past 1 and push
        the overall loss up. ``None`` (the paper) leaves the multipliers unbounded above.
    loss_tolerance : float, default=0.0
        Band of the equalized-loss constraints ``|L_g − L| <= loss_tolerance``, in loss units
        (0 is the form of the paper's UTKFace configuration).
    loss_constraint : {"band", "equality"}, default="band"
        Equalized loss as a band ``|L_g − L| <= loss_tolerance`` (non-negative multipliers),
        or as the signed equality ``L_g − L = 0`` (signed multipliers; the default form of
        the paper's code).
    pruning : {"unstructured", "channel"}, default="unstructured"
        Magnitude pruning of single weights, or removal of whole output channels (neurons of
        Linear layers) by L2 norm, coupled through BatchNorm and residual connections.
    pruning_scope : {"layerwise", "global"}, default="layerwise"
        Unstructured pruning: each layer at the target sparsity (the paper) or one global
        magnitude threshold. Channel pruning always works per coupled group.
    dense_layers : tuple of str, default=("first", "last")
        Layers kept dense: names from ``named_modules()`` or the tokens ``"first"`` (stem) and
        ``"last"`` (classifier), the paper's choice. ``()`` prunes every Conv/Linear layer.
    pruning_epochs : int, default=15
        Epochs of GMP (with plain fine-tuning); the sparsity ramps from 0 at the first to
        ``sparsity`` at the last. 1 is one-shot pruning.
    pruning_frequency : int, default=1
        Epochs between two GMP updates.
    max_epochs : int, default=45
        Epochs of fine-tuning with ``method`` after GMP.
    lr : float, default=0.01
        Learning rate of the weights.
    batch_size : int, default=128
        Mini-batch size.
    lr_milestones : tuple of float or None, default=(0.6, 0.8, 0.9)
        Fractions of all epochs (GMP included) at which the learning rate is multiplied by
        ``lr_gamma``, as in the paper. ``None`` keeps it constant.
    lr_gamma : float, default=0.1
        Learning-rate decay factor at each milestone (the paper's 0.1).
    epoch_selection : {None, "accuracy"}, default=None
        ``"accuracy"`` keeps, among the fine-tuning epochs, the one with the best accuracy on
        the validation split (``train_split`` is then required) and restores its weights at
        the end of ``fit``; with ``method="nft"`` this is the paper's NFT+ES baseline, with
        the epoch chosen on held-out *training* data (never on test data). The chosen epoch
        (1-based) is in ``selected_epoch_``. ``None`` keeps the last epoch.
    random_state : int or None, default=0
        Seed of the shuffling and of any randomness in the module, used inside a forked RNG
        so the global torch RNG is left untouched. Same seed, same CPU result.
    memory : None, str, path or joblib.Memory, default=None
        Cache of the GMP phase (as ``memory`` of a scikit-learn ``Pipeline``): a directory or a
        :class:`joblib.Memory`. The pruning epochs do not depend on ``tolerance``, ``method``
        or the dual parameters, so fits that differ only in those — a grid search over ε —
        run GMP once per data fold and load it afterwards, with results identical to
        running it. The key covers the data, the dense weights and every other parameter.
        Use a directory every worker can reach (a shared file system on a cluster).
    mixed_precision : {None, "bf16", "fp16"}, default=None
        Autocast of the training forward pass and loss (as ``mixed_precision`` of
        Accelerate). Weights, replay buffers, multipliers and the dense reference stay in
        float32, and per-sample losses are cast to float32 before any group statistic.
        ``"bf16"`` needs no loss scaling and adds no host synchronisation; ``"fp16"`` uses a
        ``torch.amp.GradScaler`` on the primal step, whose inf/NaN check costs one host sync
        per step (as in any fp16 PyTorch loop). Evaluation and prediction run in float32.
    device : str or torch.device, default="cpu"
        Where training runs, e.g. ``"cuda"``.
    criterion : type, default=torch.nn.CrossEntropyLoss
        Loss class on logits; instantiated with ``reduction="none"``.
    optimizer : type, default=torch.optim.SGD
        Optimizer class of the weights. For SGD the paper's ``momentum=0.9`` and
        ``weight_decay=1e-4`` (on all weights) are used unless ``optimizer__momentum`` /
        ``optimizer__weight_decay`` are given.
    train_split : callable or None, default=None
        skorch's validation split (e.g. ``skorch.dataset.ValidSplit(0.2, stratified=True,
        random_state=0)``); None trains on all data, as the paper does. Groups are sliced
        together with X.
    **kwargs
        Any other skorch parameter (``callbacks``, ``verbose``, ``optimizer__nesterov`` ...).
        Data loading: ``iterator_train__num_workers``, ``iterator_train__pin_memory``,
        ``iterator_train__persistent_workers``. ``compile=True`` (with ``compile__mode``,
        ``compile__backend`` ...) runs the training forward pass through ``torch.compile``;
        ``module_`` itself stays a plain module (masks, export and pickling are unchanged).
        Unlike skorch's default, training batches are shuffled every epoch (seeded by
        ``random_state``), as in the paper; pass ``iterator_train__shuffle=False`` for a
        fixed order, or your own ``iterator_train__sampler``.

    Attributes
    ----------
    module_ : torch.nn.Module
        The sparse model (masks applied).
    dense_module_ : torch.nn.Module
        Frozen copy of ``dense_module``, the reference for reports and scorers.
    masks_ : MaskSet
        The pruning masks.
    groups_ : numpy.ndarray
        Group labels seen in fit, in code order.
    dense_group_accuracy_ : pandas.Series
        Accuracy of the dense model on the training data, per group.
    multipliers_ : pandas.Series
        Final Lagrange multipliers per group (0 for NFT, and for constraints never violated).
    sparsity_ : float
        Achieved fraction of zeros among the prunable weights.
    dual_lr_ : float
        The multipliers' step size used.
    train_report_ : pandas.DataFrame
        :meth:`disparity_report` of the final model on the training data.
    history : skorch.History
        Per epoch: ``train_loss``, ``train_acc``, ``sparsity``, ``phase``, ``train_max_eag``
        (max ψ_g), ``train_psi_pw`` (Ψ_PW), ``multipliers``, ``max_multiplier``,
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
    >>> report = clf.disparity_report(X, y, groups=y)
    >>> list(report.columns)[:4]
    ['group', 'n', 'dense_accuracy', 'sparse_accuracy']
    """

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
        dense_layers=("first", "last"),
        pruning_epochs=15,
        pruning_frequency=1,
        max_epochs=45,
        lr=0.01,
        batch_size=128,
        lr_milestones=(0.6, 0.8, 0.9),
        lr_gamma=0.1,
        epoch_selection=None,
        random_state=0,
        memory=None,
        mixed_precision=None,
        device="cpu",
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        train_split=None,
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
        self.dense_layers = dense_layers
        self.pruning_epochs = pruning_epochs
        self.pruning_frequency = pruning_frequency
        self.lr_milestones = lr_milestones
        self.lr_gamma = lr_gamma
        self.epoch_selection = epoch_selection
        self.random_state = random_state
        self.memory = memory
        self.mixed_precision = mixed_precision
        super().__init__(
            module=dense_module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            device=device,
            **kwargs,
        )

    @staticmethod
    def paper_defaults(dataset: str = "utkface") -> dict:
        """The paper's hyperparameters for ``dataset`` (see :func:`fairprune.paper.paper_defaults`).

        ``FairPrunedClassifier(dense, sparsity=0.9, **FairPrunedClassifier.paper_defaults())``
        runs the paper's UTKFace configuration.
        """
        return paper_defaults(dataset)

    # -- skorch's `module` is our `dense_module` (one parameter, not two) -------------------
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

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("gmp", GradualPruning()),
            ("lr_milestones", MilestoneLR()),
            ("nonfinite_guard", NonFiniteLossGuard()),
            ("fairness_log", FairnessLogger()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_acc", EpochScoring("accuracy", name="valid_acc", lower_is_better=False)),
            ("epoch_selection", EpochSelection()),
            ("print_log", PrintLog(keys_ignored=_NOT_SHOWN)),
        ]

    # -- initialisation -----------------------------------------------------------------
    def initialize_module(self):
        if self.get_params_for("module"):
            raise ValueError(
                "module__* parameters are not supported: dense_module is an instance that is "
                "deep-copied, not a class to instantiate."
            )
        # a new module starts a new fit (here, not in initialize(): skorch's AccelerateMixin
        # replaces initialize() without calling it)
        self.engines_ = {}
        self.grad_scaler_ = None
        self.fairness_ = None
        self.snapshot_data_ = None
        dense = copy.deepcopy(self.dense_module).to(self.device)
        dense.eval()
        for param in dense.parameters():
            if not is_lazy(param):  # lazy modules materialise at the first forward
                param.requires_grad_(False)
        self.dense_module_ = dense
        self.module_ = copy.deepcopy(self.dense_module).to(self.device)
        return self

    def initialize_criterion(self):
        kwargs = self.get_params_for("criterion")
        kwargs["reduction"] = "none"
        self.criterion_ = self.criterion(**kwargs)
        if isinstance(self.criterion_, torch.nn.Module):
            self.criterion_ = self.criterion_.to(self.device)
        return self

    def initialize_optimizer(self, triggered_directly=None):
        args, kwargs = self.get_params_for_optimizer("optimizer", self.get_all_learnable_params())
        if self.optimizer is torch.optim.SGD:
            kwargs.setdefault("momentum", 0.9)
            kwargs.setdefault("weight_decay", 1e-4)
        self.optimizer_ = self.optimizer(*args, **kwargs)
        self.engines_ = {}
        return self

    def torch_compile(self, module, name):
        """skorch compiles every module at initialisation; here ``module_`` stays plain and
        only the training forward pass is compiled (see :meth:`_training_module`)."""
        return module

    def _training_module(self) -> torch.nn.Module:
        """``module_``, or its ``torch.compile`` wrapper when ``compile=True``."""
        if not self.compile:
            return self.module_
        compiled = self.__dict__.get("_compiled_module")
        if compiled is None or compiled._orig_mod is not self.module_:
            compiled = torch.compile(self.module_, **self.get_params_for("compile"))
            object.__setattr__(self, "_compiled_module", compiled)
        return compiled

    def _autocast(self):
        """Autocast context of the training forward pass (``mixed_precision``)."""
        if self.mixed_precision is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype)

    def get_iterator(self, dataset, training=False):
        """skorch's DataLoader, fetching each batch with one indexing of the arrays.

        skorch's default fetches samples one by one and collates them, which costs more than
        the training step of a small model (half of an epoch on digits). Here the DataLoader
        (same sampler, same batches, same RNG draws) reads ``dataset[indices]`` through
        ``__getitems__``. Used for skorch's own datasets of arrays when no custom sampler or
        ``collate_fn`` is given; works with skorch's ``AccelerateMixin``, whose sharded
        samplers go through the same hook.
        """
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        iterator = self.iterator_train if training else self.iterator_valid
        custom = {"sampler", "batch_sampler", "collate_fn"} & kwargs.keys()
        if iterator is not DataLoader or custom or not _fetches_batches(dataset):
            return super().get_iterator(dataset, training=training)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        batch_size = len(dataset) if batch_size == -1 else batch_size
        return DataLoader(_BatchFetcher(dataset), batch_size=batch_size,
                          collate_fn=default_convert, **kwargs)

    def get_params_for(self, prefix):
        params = super().get_params_for(prefix)
        if prefix == "iterator_train" and not {"sampler", "batch_sampler"} & params.keys():
            params.setdefault("shuffle", True)  # shuffled SGD, as in the paper
        return params

    def get_all_learnable_params(self):
        """Only the sparse model learns (not the dense copy, masks or multipliers)."""
        yield from self.module_.named_parameters()


    # -- data --------------------------------------------------------------------------
    def _features(self, X):
        """X without the locator's group columns, in the form the module takes."""
        if isinstance(X, Mapping) and _G_KEY in X:
            return X  # already packed by fit
        if X is None:
            raise ValueError("'X' is required; got None.")
        _reject_sparse(X)
        X = drop_group_columns(self.groups, X)
        if isinstance(X, pd.DataFrame):
            non_numeric = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
            if non_numeric:
                raise ValueError(
                    f"X has non-numeric columns {non_numeric[:5]} left after removing the group "
                    "columns; encode them first (e.g. a ColumnTransformer in a Pipeline)."
                )
            X = X.to_numpy(dtype=np.float32)
        elif not isinstance(X, (np.ndarray, torch.Tensor, Mapping)) and not is_dataset(X):
            X = np.asarray(X)
        if isinstance(X, np.ndarray):
            if np.iscomplexobj(X):
                raise ValueError("Complex data not supported: X must be real-valued.")
            if X.dtype == object:
                try:
                    X = X.astype(np.float32)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"X of dtype object could not be converted to float: {exc}")
            if X.ndim == 1:
                raise ValueError(
                    "Expected 2D array, got 1D array instead. Reshape your data either using "
                    "X.reshape(-1, 1) if your data has a single feature or X.reshape(1, -1) if "
                    "it contains a single sample."
                )
            if X.dtype == np.float64:
                X = X.astype(np.float32)
        _check_finite_array(X)
        return X

    def _resolve_groups(self, X, y, groups):
        """Labels from the direct argument and/or the locator; they must agree."""
        located = locate_groups(self.groups, X, y)
        if groups is None:
            return located
        direct = check_label_array(groups, "groups")
        if located is not None:
            if len(located) != len(direct) or not all(
                a == b for a, b in zip(located.tolist(), direct.tolist())
            ):
                raise ValueError(
                    f"'groups' were given both to fit and through the locator "
                    f"groups={self.groups!r}, with different values. Give them one way."
                )
        return direct

    def _n_samples(self, X) -> int:
        if isinstance(X, Mapping):
            return len(next(iter(X.values())))
        return len(X)

    @torch.no_grad()
    def _probe_module(self, X_features) -> torch.Tensor:
        """Run the dense module on two samples: clear errors for X that does not fit."""
        probe = (
            {k: v[:2] for k, v in X_features.items()}
            if isinstance(X_features, Mapping)
            else X_features[:2]
        )
        module = self.dense_module_  # the deep copy: the user's module is never run here
        was_training = module.training
        try:
            module.eval()
            device = next(module.parameters()).device
            x = to_tensor(probe, device=device)
            out = module(**x) if isinstance(x, Mapping) else module(x)
            if any(is_lazy(p) for p in self.module_.parameters()):
                self.module_.eval()
                self.module_(**x) if isinstance(x, Mapping) else self.module_(x)
                self.module_.load_state_dict(module.state_dict())
                for param in module.parameters():
                    param.requires_grad_(False)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            shape = getattr(X_features, "shape", None)
            raise ValueError(
                f"X{'' if shape is None else ' of shape ' + str(tuple(shape))} does not fit "
                f"dense_module ({type(module).__name__}): {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            module.train(was_training)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise ValueError(
                "dense_module must return logits of shape (n_samples, n_classes); got "
                f"{type(out).__name__}{'' if not isinstance(out, torch.Tensor) else tuple(out.shape)}."
            )
        return out

    def _check_targets(self, y, n_classes: int, n_samples: int) -> np.ndarray:
        y = check_vector(y, "y")
        if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity; every sample needs a class index.")
        if len(y) != n_samples:
            raise ValueError(f"X has {n_samples} samples but y has {len(y)}.")
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
            raise ValueError(
                "Unknown label type: continuous. 'y' must hold class indices 0 .. n_classes-1 "
                "matching dense_module's outputs."
            )
        if not np.issubdtype(y.dtype, np.number):
            raise ValueError(
                "'y' must hold class indices 0 .. n_classes-1 matching dense_module's outputs; "
                f"got values of dtype {y.dtype} (e.g. {y[:3].tolist()}). Encode labels with "
                "the mapping used to train the dense model."
            )
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(
                f"'y' has classes outside 0 .. {n_classes - 1}, the outputs of dense_module "
                f"(found min {y.min()}, max {y.max()})."
            )
        return y

    def _prepare_fit_data(self, X, y, groups):
        prunable_layers(self.dense_module, tuple(self.dense_layers))  # bad names fail first
        if y is None:
            raise ValueError(
                "FairPrunedClassifier requires y to be passed, but the target y is None "
                "(class indices 0 .. n_classes-1 are expected)."
            )
        labels = self._resolve_groups(X, y, groups)
        if labels is None:
            raise ValueError(
                "FairPrunedClassifier.fit needs group labels: pass fit(X, y, groups=g), set a "
                "locator (groups='column', groups=['a', 'b'] or groups=by_target), or route "
                "them with set_fit_request(groups=True) under metadata routing."
            )
        features = self._predict_features(X) if self.fairness_ is not None else self._features(X)
        n_samples = self._n_samples(features)
        if len(labels) != n_samples:
            raise ValueError(f"'groups' has {len(labels)} labels but X has {n_samples} samples.")
        logits = self._probe_module(features)
        y = self._check_targets(y, logits.shape[1], n_samples)
        if self.fairness_ is None:
            self.group_encoder_ = GroupEncoder().fit(labels)
        codes = self.group_encoder_.transform(labels)
        packed = (
            SliceDict(**features, **{_G_KEY: codes})
            if isinstance(features, Mapping)
            else SliceDict(**{_X_KEY: features, _G_KEY: codes})
        )
        self.n_classes_ = int(logits.shape[1])
        if isinstance(features, np.ndarray) and features.ndim == 2:
            self.n_features_in_ = features.shape[1]
        return packed, y

    # -- fit -----------------------------------------------------------------------------
    def fit(self, X, y=None, groups=None, **fit_params):
        """Prune ``dense_module`` with GMP, then fine-tune it with ``method``.

        Parameters
        ----------
        X : array-like, DataFrame, dict or SliceDict
            Training inputs (with the group columns when a locator is set).
        y : array-like of shape (n_samples,)
            Class indices ``0 .. n_classes-1`` as output by ``dense_module``.
        groups : array-like of shape (n_samples,), optional
            Group label of every sample (any hashable). Optional when a locator is set.
        **fit_params
            Passed to the module's ``forward`` (as in skorch).

        Returns
        -------
        self
        """
        _params.validate_params(self)
        if not self.warm_start or not self.initialized_:
            self.initialize()
        return self._train(X, y, groups, fit_params)

    def partial_fit(self, X, y=None, classes=None, groups=None, **fit_params):
        """Continue training (GMP then fine-tuning, counted from the first epoch)."""
        _params.validate_params(self)
        if not self.initialized_:
            self.initialize()
        return self._train(X, y, groups, fit_params)

    def _train(self, X, y, groups, fit_params):
        """Shared body of fit and partial_fit, after validation and initialisation."""
        seed = self.random_state
        devices = [torch.device(self.device)] if str(self.device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            packed, y = self._prepare_fit_data(X, y, groups)
            if self.fairness_ is None:
                self._initialize_fairness(packed, y)
            super().partial_fit(packed, y, **fit_params)
            # iterating a DataLoader draws a seed from the global RNG: keep it in the fork
            self._finish_fit(packed, y)
        return self

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Run the epochs left of ``pruning_epochs + max_epochs`` (all of them for a fresh
        model, the rest after resuming from a checkpoint); a finished model trains
        ``max_epochs`` more."""
        if epochs is None:
            total, done = self.pruning_epochs + self.max_epochs, len(self.history)
            epochs = total - done if done < total else self.max_epochs
        if self.memory is not None and not len(self.history) and epochs >= self.pruning_epochs:
            run_or_load_gmp(self, X, y, fit_params)
            epochs -= self.pruning_epochs
        return self._run_epochs(X, y, epochs, fit_params)

    def _run_epochs(self, X, y, epochs: int, fit_params: dict):
        """skorch's epoch loop, for ``epochs`` epochs."""
        return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        if self.random_state is not None:
            # one seed per epoch: shuffles do not depend on how the run was split into calls,
            # so a run resumed from a checkpoint matches an uninterrupted one
            torch.manual_seed(self.random_state * 1_000_003 + len(self.history))

    def _initialize_fairness(self, packed, y) -> None:
        dataset_train, _ = self.get_split_datasets(packed, y)
        n_groups = self.group_encoder_.n_groups
        constrained = self.method != "nft"
        buffer_size = self.replay_buffer_size if constrained else 0
        loss, correct, group_ids = self._evaluate(self.dense_module_, dataset_train)
        with self._current_init_context("module"):
            self.fairness_ = FairnessState(n_groups, buffer_size, constrained, self.device)
            self.fairness_.reference.fill(loss, correct, group_ids)
            self.masks_ = MaskSet()
            self.masks_.target_sparsity = 0.0
        self.prunable_layers_ = prunable_layers(self.module_, tuple(self.dense_layers))
        if self.pruning == "channel":
            first = dataset_train[0][0] if len(dataset_train) else None
            x = first[_X_KEY] if isinstance(first, Mapping) and _X_KEY in first else None
            if x is None or not hasattr(x, "shape"):
                raise ValueError(
                    "pruning='channel' needs array inputs X (one tensor per sample) to trace "
                    "the module's channel dependencies."
                )
            example = to_tensor(np.stack([np.asarray(x)] * 2), device=self.device)
            self.example_input_ = example
        if self.mixed_precision == "fp16":
            self.grad_scaler_ = torch.amp.GradScaler(torch.device(self.device).type)
        steps_per_epoch = max(1, math.ceil(len(dataset_train) / self.batch_size))
        self.dual_lr_ = self._auto_dual_lr(n_groups, steps_per_epoch)
        if constrained:
            with self._current_init_context("optimizer"):
                self.dual_optimizer_ = make_dual_optimizer(
                    self.dual_optimizer, self.fairness_.multiplier.parameters(), self.dual_lr_
                )

    def _auto_dual_lr(self, n_groups: int, steps_per_epoch: int) -> float:
        if self.dual_lr != "auto":
            return float(self.dual_lr)
        scale = AUTO_DUAL_STEP_EL if self.method == "equalized_loss" else AUTO_DUAL_STEP
        return scale / (n_groups * steps_per_epoch * max(1, self.max_epochs))

    @torch.no_grad()
    def _evaluate(self, module, dataset):
        """Per-sample loss, correctness and group ids of ``module`` on a dataset."""
        losses, correct, groups = [], [], []
        was_training = module.training
        module.eval()
        try:
            for batch in self.get_iterator(dataset, training=False):
                Xi, yi = unpack_data(batch)
                yi = to_tensor(yi, device=self.device)
                logits = self._forward(module, Xi)
                losses.append(self.criterion_(logits, yi).float())
                correct.append((logits.argmax(dim=1) == yi).float())
                groups.append(to_tensor(Xi[_G_KEY], device=self.device).long())
        finally:
            module.train(was_training)
        return torch.cat(losses), torch.cat(correct), torch.cat(groups)

    def _forward(self, module, x):
        x = to_tensor(x, device=self.device)
        if isinstance(x, Mapping):
            x = {k: v for k, v in x.items() if k != _G_KEY}
            if _X_KEY in x:
                return module(x[_X_KEY])
            return module(**x)
        return module(x)

    def infer(self, x, **fit_params):
        if fit_params:
            if isinstance(x, Mapping):
                x = {k: v for k, v in x.items() if k != _G_KEY}
                if _X_KEY in x:
                    return self.module_(to_tensor(x[_X_KEY], device=self.device), **fit_params)
            return super().infer(x, **fit_params)
        return self._forward(self.module_, x)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = to_tensor(y_true, device=self.device)
        return self.criterion_(y_pred, y_true).mean()

    # -- training step -------------------------------------------------------------------
    def current_phase_(self) -> str:
        """``"gmp"`` during the pruning epochs, then the method's name."""
        epoch = len(self.history) - 1
        return "gmp" if epoch < self.pruning_epochs else self.method

    def _engine(self, phase: str) -> FineTuningEngine:
        key = (phase, id(self.optimizer_), id(self.masks_))
        engine = self.engines_.get(key)
        if engine is None:
            if phase in ("gmp", "nft"):
                problem = NaiveFineTuning(self.fairness_, self.tolerance)
            elif phase == "ceag":
                problem = CEAGProblem(self.fairness_, self.tolerance)
            elif self.loss_constraint == "equality":
                problem = SignedEqualizedLossProblem(self.fairness_)
            else:
                problem = EqualizedLossProblem(self.fairness_, self.loss_tolerance)
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
        Xi, yi = unpack_data(batch)
        group_ids = to_tensor(Xi[_G_KEY], device=self.device).long()
        yi = to_tensor(yi, device=self.device)
        with self._autocast():
            if fit_params:
                logits = self.infer(Xi, **fit_params)
            else:
                logits = self._forward(self._training_module(), Xi)
            per_sample = self.criterion_(logits, yi)
        per_sample = per_sample.float()  # group statistics, buffers and multipliers: float32
        logits = logits.detach().float()
        correct = (logits.argmax(dim=1) == yi).float()

        def on_grad():
            self.notify(
                "on_grad_computed",
                named_parameters=TeeGenerator(self.get_all_learnable_params()),
                batch=batch,
                training=True,
            )

        loss = self._engine(self.current_phase_()).step(
            self.module_, per_sample, correct, group_ids, on_grad=on_grad
        )
        return {"loss": loss, "y_pred": logits}

    # -- masks and snapshots ---------------------------------------------------------------
    def set_masks_(self, masks: MaskSet) -> None:
        """Install new pruning masks and apply them to ``module_``."""
        with self._current_init_context("module"):
            self.masks_ = masks
        masks.apply_(self.module_)
        self.engines_ = {}

    def snapshot_(self) -> None:
        """Keep a copy of the trainable state (restored if the loss becomes NaN/inf)."""
        self.snapshot_data_ = {
            "module": copy.deepcopy(self.module_.state_dict()),
            "fairness": copy.deepcopy(self.fairness_.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer_.state_dict()),
        }

    def restore_snapshot_(self) -> None:
        if self.snapshot_data_ is None:
            return
        self.module_.load_state_dict(self.snapshot_data_["module"])
        self.fairness_.load_state_dict(self.snapshot_data_["fairness"])
        self.optimizer_.load_state_dict(self.snapshot_data_["optimizer"])

    # -- after training ------------------------------------------------------------------
    def _finish_fit(self, packed, y) -> None:
        self.snapshot_data_ = None
        if not len(self.history):
            return
        dataset_train, _ = self.get_split_datasets(packed, y)
        sparse_pred, dense_pred, labels = self._train_predictions(dataset_train)
        self.train_report_ = disparity_report(
            labels["y"], dense_pred, sparse_pred, self.groups_[labels["g"]], self.tolerance
        )
        worst = self.train_report_.attrs["max_excess_accuracy_gap"]
        if self.method == "ceag" and worst > self.tolerance:
            top = self.train_report_.nlargest(3, "excess_accuracy_gap")
            names = ", ".join(
                f"{g!r} ({v:+.3f})" for g, v in zip(top["group"], top["excess_accuracy_gap"])
            )
            warnings.warn(
                f"Training ended with max excess accuracy gap {worst:.4f} > tolerance "
                f"{self.tolerance:g} on the training data (worst groups: {names}). The "
                "tolerance may be infeasible at this sparsity, or training too short; see "
                "clf.train_report_ and history[:, 'train_max_eag'].",
                FairnessToleranceWarning,
                stacklevel=3,
            )

    @torch.no_grad()
    def _train_predictions(self, dataset):
        sparse, dense, ys, gs = [], [], [], []
        self.module_.eval()
        for batch in self.get_iterator(dataset, training=False):
            Xi, yi = unpack_data(batch)
            sparse.append(self._forward(self.module_, Xi).argmax(1).cpu())
            dense.append(self._forward(self.dense_module_, Xi).argmax(1).cpu())
            ys.append(torch.as_tensor(np.asarray(yi)))
            gs.append(torch.as_tensor(np.asarray(Xi[_G_KEY])))
        return (
            torch.cat(sparse).numpy(),
            torch.cat(dense).numpy(),
            {"y": torch.cat(ys).numpy(), "g": torch.cat(gs).numpy()},
        )

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
        return pd.Series(values, index=pd.Index(self.groups_, name="group"), name="multiplier")

    @property
    def sparsity_(self) -> float:
        self.check_is_fitted(["masks_"])
        return sparsity_table(self.module_, self.prunable_layers_).attrs["prunable_sparsity"]

    def sparsity_table(self) -> pd.DataFrame:
        """Per-layer sparsity of the sparse model (see :func:`fairprune.pruning.sparsity_table`)."""
        self.check_is_fitted(["masks_"])
        return sparsity_table(self.module_, self.prunable_layers_)

    # -- prediction and reports ------------------------------------------------------------
    def _predict_features(self, X):
        """X for a model fitted before: the feature count must not change."""
        self.check_is_fitted(["module_"])
        X = self._features(X)
        expected = getattr(self, "n_features_in_", None)
        if expected is not None and isinstance(X, np.ndarray) and X.shape[1] != expected:
            raise ValueError(
                f"X has {X.shape[1]} features, but FairPrunedClassifier is expecting "
                f"{expected} features as input."
            )
        return X

    def predict_proba(self, X):
        """Class probabilities of the sparse model."""
        return super().predict_proba(self._predict_features(X))

    def predict(self, X):
        """Class indices predicted by the sparse model."""
        return self.predict_proba(X).argmax(axis=1)

    @torch.no_grad()
    def predict_dense_proba(self, X):
        """Class probabilities of the dense reference model."""
        dataset = self.get_dataset(self._predict_features(X))
        outputs = []
        self.dense_module_.eval()
        for batch in self.get_iterator(dataset, training=False):
            Xi, _ = unpack_data(batch)
            outputs.append(torch.softmax(self._forward(self.dense_module_, Xi), dim=1).cpu())
        return torch.cat(outputs).numpy()

    def predict_dense(self, X):
        """Class indices predicted by the dense reference model."""
        return self.predict_dense_proba(X).argmax(axis=1)

    def disparity_report(self, X, y, groups=None) -> pd.DataFrame:
        """Per-group accuracy of the dense and sparse models on ``(X, y)``.

        Parameters
        ----------
        X : array-like, DataFrame, dict or SliceDict
            Inputs (train or test data).
        y : array-like of shape (n_samples,)
            True class indices.
        groups : array-like, optional
            Group labels; defaults to the locator. Groups never seen in fit are reported with
            ``seen_in_fit=False``.

        Returns
        -------
        pandas.DataFrame
            The table of :func:`fairprune.report.disparity_report` with ``tolerance``, plus a
            ``seen_in_fit`` column.
        """
        self.check_is_fitted(["fairness_"])
        labels = self._resolve_groups(X, y, groups)
        if labels is None:
            raise ValueError(
                "disparity_report needs group labels: pass groups=... or set a locator."
            )
        report = disparity_report(y, self.predict_dense(X), self.predict(X), labels, self.tolerance)
        known = set(self.groups_.tolist())
        report["seen_in_fit"] = [g in known for g in report["group"]]
        return report

    def export(self) -> torch.nn.Module:
        """The sparse model as a plain ``nn.Module`` (channel pruning: physically smaller)."""
        self.check_is_fitted(["masks_"])
        return export_module(self.module_, self.masks_).eval()

    # -- persistence -----------------------------------------------------------------------
    def load_params(self, *args, **kwargs):
        """skorch's ``load_params``; also refuses masks that do not fit ``module_``."""
        super().load_params(*args, **kwargs)
        masks = getattr(self, "masks_", None)
        if isinstance(masks, MaskSet):
            masks.check_compatible(self.module_)
            masks.apply_(self.module_)
            self.engines_ = {}
        return self

    def __getstate__(self):
        state = super().__getstate__()
        state["engines_"] = {}
        state["snapshot_data_"] = None
        state.pop("_compiled_module", None)  # rebuilt on demand; compiled code does not pickle
        return state
