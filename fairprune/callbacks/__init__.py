"""The skorch callbacks a :class:`~fairprune.FairPrunedClassifier` installs, one job each.

In the order they run: :class:`FairnessSetup` (dense reference, fairness state, dual step),
:class:`GradualPruning` (GMP masks), :class:`MilestoneLR` (the paper's learning-rate
schedule), :class:`NonFiniteLossGuard` (stop on NaN/inf, restore the last good state),
:class:`FairnessLogger` (per-epoch ψ_g and multipliers in the history),
:class:`EpochSelection` (NFT+ES) and :class:`PhaseProgressBar` (a progress bar labelled with
the phase, in terminals and notebooks). :func:`fair_checkpoint` is skorch's ``Checkpoint`` configured for resuming a fit.
"""

from skorch.callbacks import EpochScoring, EpochTimer, PassthroughScoring

from .checkpoint import CheckpointError, FairCheckpoint, fair_checkpoint
from .guard import NonFiniteLossGuard
from .logging import FairnessLogger, PhaseProgressBar, PlainPrintLog
from .lr import MilestoneLR
from .pruning import GradualPruning
from .selection import EpochSelection
from .setup import FairnessSetup

__all__ = [
    "CheckpointError",
    "EpochSelection",
    "FairCheckpoint",
    "FairnessLogger",
    "FairnessSetup",
    "GradualPruning",
    "MilestoneLR",
    "NonFiniteLossGuard",
    "PhaseProgressBar",
    "default_callbacks",
    "fair_checkpoint",
]


def default_callbacks(keys_ignored=()) -> list:
    """The ``(name, callback)`` pairs a FairPrunedClassifier installs, in running order
    (skorch's own timing, scoring and printing included; ``keys_ignored`` for PrintLog)."""
    return [
        ("epoch_timer", EpochTimer()),
        ("fairness_setup", FairnessSetup()),
        ("gmp", GradualPruning()),
        ("lr_milestones", MilestoneLR()),
        ("nonfinite_guard", NonFiniteLossGuard()),
        ("fairness_log", FairnessLogger()),
        ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
        ("valid_loss", PassthroughScoring(name="valid_loss")),
        ("valid_acc", EpochScoring("accuracy", name="valid_acc", lower_is_better=False)),
        ("epoch_selection", EpochSelection()),
        ("progress_bar", PhaseProgressBar()),  # closed before the epoch's row is printed
        ("print_log", PlainPrintLog(keys_ignored=keys_ignored)),
    ]
