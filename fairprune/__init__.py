"""fairprune: prune PyTorch classifiers without disparate impact.

Implements "Balancing Act: Constraining Disparate Impact in Sparse Models" (Hashemizadeh et
al., ICLR 2024) as a scikit-learn/skorch estimator.
"""

from importlib.metadata import PackageNotFoundError, version

from .estimator import FairPrunedClassifier
from .exceptions import (DenseModelWarning, FairnessToleranceWarning, GMPCacheWarning,
                         PrunedModelCollapseWarning, SmallGroupWarning)
from .datasets.paper import paper_defaults
from .pruning.criteria import fairgrape_defaults
from .report import disparity_report, plot_disparity, plot_history

try:
    __version__ = version("fairprune")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DenseModelWarning",
    "FairPrunedClassifier",
    "FairnessToleranceWarning",
    "GMPCacheWarning",
    "PrunedModelCollapseWarning",
    "SmallGroupWarning",
    "__version__",
    "disparity_report",
    "fairgrape_defaults",
    "paper_defaults",
    "plot_disparity",
    "plot_history",
]
