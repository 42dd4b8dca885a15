"""Per-epoch fairness diagnostics in the skorch history."""

from __future__ import annotations

import re
import sys

import numpy as np
import torch
from skorch.callbacks import Callback, PrintLog, ProgressBar

from ..cells import gap_name
from ..metrics import disparity_of_excess
from ..training.phases import current_epoch, phase_of, stage_of

__all__ = ["FairnessLogger", "PhaseProgressBar", "PlainPrintLog", "is_terminal", "plain_text_sink"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal (a stream without ``isatty`` is not)."""
    return bool(getattr(stream, "isatty", lambda: False)())


def plain_text_sink(text: str) -> None:
    """``print``, without colour codes when standard output is not a terminal (logs, CI)."""
    print(text if is_terminal(sys.stdout) else _ANSI.sub("", text))


class PlainPrintLog(PrintLog):
    """skorch's ``PrintLog`` (silent when ``verbose=0``), printing through
    :func:`plain_text_sink`: no colour codes in logs that are not a terminal."""

    def _sink(self, text, verbose):
        if verbose:
            plain_text_sink(text)


def is_interactive() -> bool:
    """Whether a person watches the output: standard error is a terminal, or a Jupyter
    kernel runs the code."""
    return is_terminal(sys.stderr) or "ipykernel" in sys.modules


class PhaseProgressBar(ProgressBar):
    """skorch's ``ProgressBar`` (tqdm, on standard error), labelled with the stage of the
    epoch in progress (``"gmp 2/15"``, ``"ceag 1/45"``).

    Shown only when ``verbose > 0`` and a person watches (a terminal or a notebook): logs
    and CI output get the per-epoch table alone, without carriage-return noise. Reads the
    batch losses skorch already recorded: no extra host synchronisation.
    """

    def __init__(self) -> None:
        super().__init__(detect_notebook=False, postfix_keys=["train_loss"])

    def initialize(self):
        self.active_ = False
        return super().initialize()

    def on_train_begin(self, net, **kwargs):
        self.active_ = bool(net.verbose) and is_interactive()

    def on_epoch_begin(self, net, **kwargs):
        if self.active_:
            super().on_epoch_begin(net, **kwargs)
            self.pbar_.set_description(stage_of(net, current_epoch(net)))

    def on_batch_end(self, net, **kwargs):
        if self.active_:
            super().on_batch_end(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        if self.active_:
            super().on_epoch_end(net, **kwargs)


class FairnessLogger(Callback):
    """Record per-epoch fairness diagnostics in the history.

    Keys: ``phase`` ("gmp" or the method), ``stage`` (the phase and the epoch within it, e.g.
    ``"gmp 2/15"``, ``"ceag 1/45"``: the printed table's first column), ``train_acc`` (accuracy of the epoch's training
    predictions), ``train_excess_accuracy_gap`` (ψ_g per group, NaN for a group not seen in
    the epoch), ``train_max_excess_accuracy_gap`` (max ψ_g) and ``train_pairwise_disparity``
    (Ψ_PW) of the epoch's training
    predictions against the dense model's training accuracy, ``multipliers`` (one float per
    group, JSON-serialisable), ``max_multiplier`` and ``n_violated`` (groups with ψ_g > ε in
    the epoch). With a ``gap_metric`` other than accuracy, the gap keys follow it
    (``train_excess_tpr_gap``, ``train_max_excess_tpr_gap``; ``tnr_gap``; ``rate_gap`` for
    equalized odds), one value per constraint cell (``clf.constraint_index_``), and no Ψ_PW.
    One host synchronisation per epoch.

    The ``train_*`` values are running estimates: each sample is scored in training mode
    (augmentation, BatchNorm batch statistics) when its batch is trained on, while the weights
    still change; ``train_report_`` scores the final weights in eval mode, so the two differ.
    With a validation split (``train_split``) the keys ``valid_excess_accuracy_gap``,
    ``valid_max_excess_accuracy_gap`` and ``valid_pairwise_disparity`` give the same for the held-out rows, scored in eval mode at the end of the
    epoch (during skorch's validation pass: no extra forward pass) against the dense model's
    accuracy on those rows (computed once per fit); ``valid_acc`` is skorch's.
    """

    def on_epoch_begin(self, net, **kwargs):
        net.fairness_.reset_epoch()

    def on_epoch_end(self, net, **kwargs):
        state = net.fairness_
        correct, count = state.epoch_totals()
        epoch = current_epoch(net)
        phase = phase_of(net, epoch)
        net.history.record("phase", phase)
        net.history.record("stage", stage_of(net, epoch))  # the printed table's first column
        net.history.record("train_acc", float(correct.sum() / count.sum().clamp(min=1)))
        name = gap_name(net.gap_metric)
        psi = _record_gaps(net.history, "train", state.epoch_excess_gaps(), name)
        heldout = state.epoch_excess_gaps(split="valid")
        if bool((~torch.isnan(heldout)).any()):  # a validation split was evaluated this epoch
            _record_gaps(net.history, "valid", heldout, name)
        multipliers = state.multiplier_values().cpu().numpy().astype(np.float32)
        net.history.record("multipliers", [round(float(v), 7) for v in multipliers])
        net.history.record("max_multiplier", float(multipliers.max()))
        net.history.record("n_violated", int(np.nansum(psi > net.tolerance)))


def _record_gaps(history, prefix: str, gaps, name: str = "accuracy_gap") -> np.ndarray:
    """Record ψ_g (``<prefix>_excess_<name>``, NaN for groups not seen), its max
    (``<prefix>_max_excess_<name>``) and, for accuracy, Ψ_PW (``<prefix>_pairwise_disparity``);
    return ψ_g in float64, where comparisons with any valid tolerance (1e300 included) stay
    exact. ``name`` follows the constrained metric (``tpr_gap``, ``tnr_gap``, ``rate_gap``)."""
    psi = gaps.cpu().numpy().astype(np.float64)
    max_excess, pairwise = disparity_of_excess(psi)
    history.record(f"{prefix}_excess_{name}", [round(float(v), 6) for v in psi])
    history.record(f"{prefix}_max_excess_{name}", max_excess)
    if name == "accuracy_gap":
        history.record(f"{prefix}_pairwise_disparity", pairwise)
    return psi
