"""Warnings and errors of fairprune."""

__all__ = ["FairnessToleranceWarning"]


class FairnessToleranceWarning(UserWarning):
    """Training ended with a group's excess accuracy gap above the tolerance ε.

    The tolerance may be infeasible for this model, sparsity and data, or training too short;
    the message gives the final training-set max ψ_g and the worst groups.
    """
