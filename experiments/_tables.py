"""Summary tables of the reproduction scripts: mean ± std over seeds, methods in a fixed order."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def mean_std(series: pd.Series) -> str:
    """``"0.123 ± 0.004"`` (sample std over seeds), or the value alone for one seed."""
    if len(series) == 1:
        return f"{series.iloc[0]:.3f}"
    return f"{series.mean():.3f} ± {series.std(ddof=1):.3f}"


def summary_table(results: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str],
                  methods: Sequence[str]) -> pd.DataFrame:
    """One row per ``keys`` combination (``keys`` ends with ``"method"``), metrics as mean ±
    std over the other columns (seeds), sorted by setting, sparsity and ``methods`` order."""
    order = {m: i for i, m in enumerate(methods)}
    table = results.groupby(list(keys), sort=False)[list(metrics)].agg(mean_std).reset_index()
    table["_order"] = table["method"].map(order)
    return table.sort_values(["setting", "sparsity", "_order"], kind="stable").drop(columns="_order")
