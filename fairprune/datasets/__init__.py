"""Support for the paper's settings and the examples, apart from the library core.

* :mod:`~fairprune.datasets.adult`: bundled digits with groups, UCI Adult (from a file or
  fetched once into the data home) and its preprocessing;
* :mod:`~fairprune.datasets.utkface`: the UTKFace faces, decoded once into a cache;
* :mod:`~fairprune.datasets.models`: model factories (MLP, small CNNs, the face CNN,
  MobileNetV2) and dense training through skorch;
* :mod:`~fairprune.datasets.transforms`: the flip augmentation layer;
* :mod:`~fairprune.datasets.paper`: the paper's hyperparameters;
* :mod:`~fairprune.datasets.fetch`: one checked, atomic download into the data home.

The loaders are importable from here: ``from fairprune.datasets import load_adult``.
"""

from .adult import (ADULT_CATEGORIES, ADULT_COLUMNS, ADULT_MISSING, ADULT_UNKNOWN_GROUP,
                    ADULT_URL, adult_preprocessor, fetch_adult, load_adult, load_digits_groups)
from .utkface import (UTKFACE_AGE_BUCKETS, UTKFACE_GENDERS, UTKFACE_RACES, UTKFACE_TARGETS,
                      get_data_home, load_utkface)

__all__ = [
    "ADULT_CATEGORIES",
    "ADULT_COLUMNS",
    "ADULT_MISSING",
    "ADULT_UNKNOWN_GROUP",
    "ADULT_URL",
    "UTKFACE_AGE_BUCKETS",
    "UTKFACE_GENDERS",
    "UTKFACE_RACES",
    "UTKFACE_TARGETS",
    "adult_preprocessor",
    "fetch_adult",
    "get_data_home",
    "load_adult",
    "load_digits_groups",
    "load_utkface",
]
