"""Grid search over the tolerance on a Dask cluster through joblib's "dask" backend.

A ``distributed.LocalCluster`` with two worker processes stands in for a multi-machine cluster:
the estimator, the data and the GMP cache directory travel the same way.
"""

import os

import numpy as np
import pytest
from joblib import Memory, parallel_backend
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from fairprune import FairPrunedClassifier
from fairprune.groups import by_target
from fairprune.scorers import neg_max_excess_accuracy_gap_scorer

distributed = pytest.importorskip("distributed")

SMALL = dict(sparsity=0.9, dense_layers=(), pruning_epochs=2, max_epochs=1, lr=0.05, verbose=0)


@pytest.fixture(scope="module")
def client():
    # distributed writes its workers' settings (OMP_NUM_THREADS=1, PYTHONHASHSEED, ...) into
    # this process's environment, where later subprocesses would inherit them: restore it
    saved = dict(os.environ)
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster:
            with distributed.Client(cluster) as dask_client:
                yield dask_client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def search(dense, memory, n_jobs):
    clf = FairPrunedClassifier(dense, groups=by_target, memory=memory, **SMALL)
    return GridSearchCV(
        clf, {"tolerance": [0.01, 0.05]}, cv=StratifiedKFold(2, shuffle=True, random_state=0),
        scoring={"accuracy": "accuracy", "max_excess_accuracy_gap": neg_max_excess_accuracy_gap_scorer},
        refit="accuracy", error_score="raise", n_jobs=n_jobs,
    )


def test_grid_search_runs_on_the_cluster_like_locally(client, digits, digits_dense, tmp_path):
    X, y = digits
    local = search(digits_dense, None, n_jobs=None).fit(X, y)
    with distributed.get_task_stream(client) as tasks, parallel_backend("dask"):
        remote = search(digits_dense, Memory(tmp_path, verbose=0), n_jobs=-1).fit(X, y)
    workers = {task["worker"] for task in tasks.data}
    assert len(tasks.data) >= 4 and workers <= set(client.scheduler_info()["workers"])
    # both folds' GMP phases were stored by the workers in the shared cache directory
    assert sum(1 for _ in tmp_path.rglob("*.gmp.pt")) >= 2
    for key in ("mean_test_accuracy", "mean_test_max_excess_accuracy_gap", "split0_test_accuracy"):
        np.testing.assert_allclose(remote.cv_results_[key], local.cv_results_[key], atol=1e-6)
    np.testing.assert_allclose(remote.best_estimator_.predict_proba(X),
                               local.best_estimator_.predict_proba(X), atol=1e-5)
