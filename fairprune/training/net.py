"""How fairprune plugs into skorch's ``NeuralNet``: two modules, per-sample losses, the
paper's optimizer defaults, fast batches, per-epoch seeding, the GMP cache and persistence.

:class:`FineTuningNet` is the base of :class:`~fairprune.FairPrunedClassifier`; it holds the
skorch hooks so that the estimator module keeps only the public API and the training step.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import NotFittedError
from skorch import NeuralNetClassifier
from torch.nn.parameter import is_lazy

from skorch.dataset import unpack_data
from skorch.utils import to_tensor

from .._data import GROUPS_KEY, forward, iter_logits, make_iterator, module_inputs
from ..constraints import FairnessState
from ..pruning import MaskSet, sparsity_table
from .engine import FineTuningEngine
from .gmp_cache import run_or_load_gmp
from .methods import make_problem
from .phases import epochs_to_run, includes_whole_gmp_phase
from .precision import autocast

__all__ = ["FineTuningNet"]


class FineTuningNet(NeuralNetClassifier):
    """skorch plumbing shared by fairprune's estimators (see the module docstring).

    ``module`` is an alias of ``dense_module``: one constructor parameter, an *instance* that
    is deep-copied twice at initialisation, into ``dense_module_`` (frozen, eval mode: the
    reference) and ``module_`` (the model that is pruned and fine-tuned).
    """

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
        self.unusable_ = None
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
        self.engines_ = {}

    def set_masks_(self, masks: MaskSet) -> None:
        """Install new pruning masks and apply them to ``module_``."""
        with self._current_init_context("module"):
            self.masks_ = masks
        masks.apply_(self.module_)
        self.engines_ = {}

    @contextlib.contextmanager
    def kept_if_no_epoch_runs(self):
        """Put the previous fitted state back when the block fails before any epoch starts
        (bad data or set-up on a refit), so that a failed refit never destroys a model."""
        previous = dict(self.__dict__)
        history = previous.get("history_")
        rows = list(history) if history is not None else None  # skorch clears it in place
        try:
            yield
        except BaseException:
            if previous.get("initialized_") and not len(getattr(self, "history", ())):
                self.__dict__.clear()
                self.__dict__.update(previous)
                if history is not None:
                    history[:] = rows
            raise

    def check_is_fitted(self, attributes=None, *args, **kwargs):
        """skorch's check, plus a refusal to use a model that a fault left unusable."""
        super().check_is_fitted(attributes, *args, **kwargs)
        reason = self.__dict__.get("unusable_")
        if reason:
            raise NotFittedError(f"This {type(self).__name__} cannot be used: {reason}. Fit it "
                                 "again.")

    @torch.no_grad()
    def restore_invariants_(self) -> None:
        """Re-apply what every completed step guarantees: pruned weights are zero, and
        inequality multipliers are >= 0 (and within ``max_multiplier_sum``). Idempotent; used
        at the end of training, where a KeyboardInterrupt may have stopped a step half-way."""
        self.masks_.apply_(self.module_)
        multiplier = self.fairness_.multiplier
        if getattr(multiplier, "constraint_type", None) is not None:  # set once constrained
            multiplier.post_step_()
            self.fairness_.bound_multipliers_(self.max_multiplier_sum)

    # -- the training forward pass ----------------------------------------------------------
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
        key = (phase, id(self.optimizer_), id(self.masks_))
        engine = self.engines_.get(key)
        if engine is None:
            problem = make_problem(phase, self.fairness_, tolerance=self.tolerance,
                                   loss_tolerance=self.loss_tolerance,
                                   loss_constraint=self.loss_constraint,
                                   constraint_data=self.constraint_data)
            dual = getattr(self, "dual_optimizer_", None) if problem.constrained else None
            engine = FineTuningEngine(problem, self.optimizer_, dual, self.masks_,
                                      max_multiplier_sum=self.max_multiplier_sum,
                                      grad_scaler=self.grad_scaler_)
            self.engines_ = {key: engine}
        return engine

    def validation_step(self, batch, **fit_params):
        """skorch's validation step; also counts, per group, the held-out rows the sparse
        model gets right (for ``valid_max_eag``)."""
        step = super().validation_step(batch, **fit_params)
        Xi, yi = unpack_data(batch)
        if self.fairness_ is not None and isinstance(Xi, Mapping) and GROUPS_KEY in Xi:
            y_true = to_tensor(yi, device=self.device)
            logits = step["y_pred"]
            correct = (logits.argmax(dim=1) == y_true).float()
            loss = self.criterion_(logits, y_true).float()  # per sample (reduction="none")
            self.fairness_.record(to_tensor(Xi[GROUPS_KEY], device=self.device).long(),
                                  correct, heldout=True, loss=loss)
        return step

    def infer(self, x, **fit_params):
        if fit_params:
            return super().infer(module_inputs(x), **fit_params)
        return forward(self.module_, x, self.device)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = to_tensor(y_true, device=self.device)
        return self.criterion_(y_pred, y_true).mean()

    # -- data loading and the epoch loop ----------------------------------------------------
    def get_iterator(self, dataset, training=False):
        """skorch's DataLoader, fetching each batch of an array dataset with one indexing
        (see :func:`fairprune._data.make_iterator`); works with skorch's ``AccelerateMixin``,
        whose sharded samplers go through the same hook."""
        # BatchNorm cannot train on a batch of one sample: a last training batch of one
        # is dropped (a different sample each epoch, as batches are shuffled)
        self.__dict__["drop_single_tail_"] = training and _single_sample_tail(self, dataset)
        return make_iterator(self, dataset, training=training, default_iterator=lambda: (
            super(FineTuningNet, self).get_iterator(dataset, training=training)))

    def get_params_for(self, prefix):
        params = super().get_params_for(prefix)
        if prefix == "iterator_train" and not {"sampler", "batch_sampler"} & params.keys():
            params.setdefault("shuffle", True)  # shuffled SGD, as in the paper
            if self.__dict__.get("drop_single_tail_"):
                params.setdefault("drop_last", True)
        return params

    def get_all_learnable_params(self):
        """Only the sparse model learns (not the dense copy, masks or multipliers)."""
        yield from self.module_.named_parameters()

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Run the epochs left of ``pruning_epochs + max_epochs``, loading the GMP phase from
        ``memory`` when it was run before."""
        if epochs is None:
            epochs = epochs_to_run(self)
        if self.memory is not None and includes_whole_gmp_phase(self, epochs):
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

    # -- predictions ------------------------------------------------------------------------
    def logits(self, module: torch.nn.Module, X) -> torch.Tensor:
        """Logits of ``module`` on checked features ``X`` (CPU, float32)."""
        dataset = self.get_dataset(X)
        return torch.cat([out.float().cpu() for out, _, _ in iter_logits(self, module, dataset)])

    # -- learned attributes -----------------------------------------------------------------
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

    # -- parameters and display ----------------------------------------------------------
    def get_params(self, deep=True, **kwargs):
        """skorch's parameters without its private bookkeeping (names starting with ``_``)."""
        params = super().get_params(deep=deep, **kwargs)
        return {key: value for key, value in params.items() if not key.startswith("_")}

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

    # -- persistence -----------------------------------------------------------------------
    def load_params(self, *args, **kwargs):
        """skorch's ``load_params``; checks a :class:`~fairprune.callbacks.FairCheckpoint`
        against its manifest first, and refuses masks that do not fit ``module_``."""
        verify = getattr(kwargs.get("checkpoint"), "verify", None)
        if verify is not None:
            verify(self)
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
        state.pop("_compiled_module", None)  # rebuilt on demand; compiled code does not pickle
        return state


def _single_sample_tail(net, dataset) -> bool:
    """Whether the last training batch would hold one sample and the model has BatchNorm."""
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
             torch.nn.SyncBatchNorm)
    has_norm = any(isinstance(m, norms) for m in net.module_.modules())
    batch_size = net.get_params_for("iterator_train").get("batch_size", net.batch_size)
    if not has_norm or batch_size in (None, -1):
        return False
    if len(dataset) == 1 or batch_size == 1:
        raise ValueError(
            "dense_module has BatchNorm layers, which cannot train on batches of one sample: "
            f"use batch_size >= 2 and at least 2 training samples (got batch_size="
            f"{batch_size} and {len(dataset)} training sample(s)).")
    return len(dataset) % batch_size == 1
