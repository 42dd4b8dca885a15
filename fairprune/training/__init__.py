"""The training layer: phases of a fit, the shared training step, the GMP cache, mixed
precision, the choice of problem per method, and the skorch plumbing of the estimator.

:mod:`~fairprune.training.engine` (the step) needs only torch and cooper-optim; the rest
connects it to skorch.
"""

from .engine import FineTuningEngine, GradientAscent, make_dual_optimizer, set_dual_gradients
from .methods import AUTO_DUAL_STEP, AUTO_DUAL_STEP_EL, METHODS, auto_dual_lr, make_problem

__all__ = [
    "AUTO_DUAL_STEP",
    "AUTO_DUAL_STEP_EL",
    "METHODS",
    "FineTuningEngine",
    "GradientAscent",
    "auto_dual_lr",
    "make_dual_optimizer",
    "make_problem",
    "set_dual_gradients",
]
