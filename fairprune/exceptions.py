"""Warnings and errors of fairprune."""

__all__ = ["FairnessToleranceWarning", "GMPCacheWarning", "SmallGroupWarning"]


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
