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


class RowLog:
    """The rows of a long study, appended to a JSON-lines file as they are computed, so that
    an interrupted run started again with the same arguments skips the runs it already has.

    ``key(row)`` names a run (setting, sparsity, method, seed); a file written with other
    arguments is ignored (its first line records them).
    """

    def __init__(self, path, arguments: dict) -> None:
        import json
        from pathlib import Path

        self.path, self.arguments = Path(path), arguments
        self.rows: list[dict] = []
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            if lines and json.loads(lines[0]) == {"arguments": arguments}:
                self.rows = [json.loads(line) for line in lines[1:] if line.strip()]
        if not self.rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"arguments": arguments}) + "\n")

    @staticmethod
    def key(row: dict) -> tuple:
        return (row["setting"], float(row["sparsity"]), row["method"], int(row["seed"]))

    def done(self, setting: str, sparsity: float, method: str, seed: int) -> dict | None:
        """The row of that run when it was computed before, else None."""
        wanted = (setting, float(sparsity), method, int(seed))
        return next((row for row in self.rows if self.key(row) == wanted), None)

    def add(self, row: dict) -> None:
        import json

        self.rows.append(row)
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
