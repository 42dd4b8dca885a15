"""Warnings and errors of fairprune."""

__all__ = ["DenseModelWarning", "FairnessToleranceWarning", "GMPCacheWarning",
           "PrunedModelCollapseWarning", "SmallGroupWarning"]


class FairnessToleranceWarning(UserWarning):
    """Training ended with a group's excess accuracy gap above the tolerance ε.

    The tolerance may be infeasible for this model, sparsity and data, or training too short;
    the message gives the final training-set max ψ_g and the worst groups.
    """


class GMPCacheWarning(UserWarning):
    """The GMP cache (``memory=``) was bypassed or an entry was recomputed.

    A corrupted or truncated entry, a folder that cannot be written, or parameters that cannot
    be hashed into a key: the fit runs the GMP phase itself and the results are unaffected.
    """


class SmallGroupWarning(UserWarning):
    """A report holds groups with fewer rows than
    :data:`fairprune.intervals.MIN_GROUP_SIZE`: their figures are noisy and their intervals
    do not reach their nominal coverage."""


class DenseModelWarning(UserWarning):
    """The dense module does not look like a trained classifier of this data: its accuracy
    on the fit data is within 0.02 of always predicting the majority class (untrained, or X
    is not what it was trained on), or its outputs are probabilities where logits are
    expected (a final ``Softmax``)."""


class PrunedModelCollapseWarning(UserWarning):
    """The fine-tuned sparse model collapsed: it predicts one class for (almost) every row
    while the dense model does not, or it is no more accurate than the majority class. The
    fit's ``fit_status_`` is ``"collapsed"``; the message gives the multipliers' sum, the
    predicted-class share and the sparsity."""
