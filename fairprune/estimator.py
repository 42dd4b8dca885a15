"""FairPrunedClassifier: prune a trained classifier without disparate impact (skorch estimator).

The public API only; skorch plumbing in :mod:`fairprune.training.net`, the phases' work in
:mod:`fairprune.callbacks`, input checks in ``_data``, the parameter table in ``_params``.
"""

from __future__ import annotations

import pandas as pd
import torch
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator, to_tensor

from ._data import (GROUPS_KEY, check_features, check_targets, forward, prepare_fit_data,
                    resolve_groups)
from ._params import validate_params
from .callbacks import default_callbacks
from .groups import either_labels
from .paper import paper_defaults
from .pruning import export_module
from .report import disparity_report
from .training.net import FineTuningNet
from .training.phases import current_epoch, phase_of

__all__ = ["FairPrunedClassifier"]

_NOT_SHOWN = ("multipliers", "train_eag", "valid_eag", "phase", "lr", "selected")  # not printed


class FairPrunedClassifier(FineTuningNet):
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
        ε, the largest excess accuracy gap allowed to any group (0.05 = 5 accuracy points).
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
        Magnitude pruning of single weights, or of whole output channels (L2 norm, coupled
        through BatchNorm and residual connections).
    pruning_scope : {"layerwise", "global"}, default="layerwise"
        Unstructured pruning per layer (the paper) or with one global threshold.
    dense_layers : tuple of str, default=("first", "last")
        Layers kept dense: module names or the tokens ``"first"``/``"last"`` (the paper's
        choice); ``()`` prunes every Conv/Linear layer.
    pruning_epochs : int, default=15
        Epochs of GMP, ramping the sparsity from 0 to ``sparsity``; 1 is one-shot pruning.
    pruning_frequency : int, default=1
        Epochs between two GMP updates.
    max_epochs : int, default=45
        Epochs of fine-tuning with ``method`` after GMP.
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
    constraint_data : {"train", "heldout"}, default="train"
        Multipliers' estimates from training batches (the paper) or the last validation pass
        (Cotter et al., 2019; ``train_split`` required), which changes once per epoch: then
        pass about a tenth of the automatic ``dual_lr`` (held-out study in the docs).
    random_state : int or None, default=0
        Seed of shuffling and module randomness, in a forked RNG. Same seed, same CPU result.
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
    >>> int(clf.disparity_report(X, y, groups=y)["n"].sum())
    1797
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
        pruning_epochs=15, pruning_frequency=1, max_epochs=45,
        lr=0.01, batch_size=128, lr_milestones=(0.6, 0.8, 0.9), lr_gamma=0.1,
        epoch_selection=None, constraint_data="train",
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
        self.dense_layers = dense_layers
        self.pruning_epochs = pruning_epochs
        self.pruning_frequency = pruning_frequency
        self.lr_milestones = lr_milestones
        self.lr_gamma = lr_gamma
        self.epoch_selection = epoch_selection
        self.constraint_data = constraint_data
        self.random_state = random_state
        self.memory = memory
        self.mixed_precision = mixed_precision
        super().__init__(module=dense_module, criterion=criterion, optimizer=optimizer, lr=lr,
                         max_epochs=max_epochs, batch_size=batch_size, train_split=train_split,
                         device=device, **kwargs)

    @staticmethod
    def paper_defaults(dataset: str = "utkface") -> dict:
        """The paper's hyperparameters for ``dataset`` (:func:`fairprune.paper.paper_defaults`):
        ``FairPrunedClassifier(dense, sparsity=0.9, **FairPrunedClassifier.paper_defaults())``."""
        return paper_defaults(dataset)

    @property
    def _default_callbacks(self):
        return default_callbacks(keys_ignored=_NOT_SHOWN)

    # -- fit -----------------------------------------------------------------------------
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
        """
        validate_params(self)
        with self.kept_if_no_epoch_runs():  # bad data on a refit leaves the fitted model
            self.__dict__.update(fit_mode_="continue" if self.warm_start else "fresh")
            if not self.warm_start or not self.initialized_:
                self.initialize()
            return self._train(X, y, either_labels(groups, sensitive_features), fit_params)

    def partial_fit(self, X, y=None, classes=None, groups=None, sensitive_features=None, **kw):
        """Continue training (GMP then fine-tuning, counted from the first epoch)."""
        validate_params(self)
        self.__dict__.update(fit_mode_="continue")
        if not self.initialized_:
            self.initialize()
        return self._train(X, y, either_labels(groups, sensitive_features), kw, classes)

    def _train(self, X, y, groups, fit_params, classes=None):
        """Check and pack the data, then skorch's loop (the callbacks do the rest), inside a
        seeded fork of the torch RNG."""
        seed = self.random_state
        devices = [torch.device(self.device)] if str(self.device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            packed, y = prepare_fit_data(self, X, y, groups, fit_params, classes)
            super().partial_fit(packed, y, **fit_params)
        return self

    def train_step(self, batch, **fit_params):
        """One step: forward, per-sample losses, dual then primal update, masks."""
        self._set_training(True)
        self.dense_module_.eval()
        Xi, yi = unpack_data(batch)
        group_ids = to_tensor(Xi[GROUPS_KEY], device=self.device).long()
        yi = to_tensor(yi, device=self.device)
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
        loss = engine.step(self.module_, per_sample, correct, group_ids, on_grad=on_grad)
        return {"loss": loss, "y_pred": logits}

    # -- prediction and reports ------------------------------------------------------------
    def predict_proba(self, X):
        """Class probabilities of the sparse model."""
        self.check_is_fitted(["module_"])
        return super().predict_proba(check_features(self, X, reset=False))

    def predict(self, X):
        """Class indices predicted by the sparse model."""
        return self.predict_proba(X).argmax(axis=1)

    def predict_dense_proba(self, X):
        """Class probabilities of the dense reference model."""
        self.check_is_fitted(["module_"])
        logits = self.logits(self.dense_module_, check_features(self, X, reset=False))
        return torch.softmax(logits, dim=1).numpy()

    def predict_dense(self, X):
        """Class indices predicted by the dense reference model."""
        return self.predict_dense_proba(X).argmax(axis=1)

    def disparity_report(self, X, y, groups=None, sensitive_features=None) -> pd.DataFrame:
        """Per-group accuracy of the dense and sparse models on ``(X, y)``.

        Parameters
        ----------
        X, y : inputs and true class indices (train or test data).
        groups, sensitive_features : array-like, optional
            Group labels under either name; defaults to the locator.

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
        report = disparity_report(y, self.predict_dense(X), self.predict(X), labels, self.tolerance)
        known = set(self.groups_.tolist())
        report["seen_in_fit"] = [g in known for g in report["group"]]
        return report

    def export(self) -> torch.nn.Module:
        """The sparse model as a plain ``nn.Module`` (channel pruning: physically smaller)."""
        self.check_is_fitted(["masks_"])
        return export_module(self.module_, self.masks_).eval()
