"""How a rate is written in the reports: its percentage, its 95% interval with k/n, a mean ± sd over seeds.

A rate record is `{"pct", "k", "n", "ci95": [lo, hi]}` (`nlsr_core.eval.stats.Rate.record`); a row maps metric
names to such records.
"""
from __future__ import annotations

import statistics


def pct(row: dict, metric: str) -> float | None:
    """The percentage of a rate record in a row (None when absent)."""
    entry = row.get(metric)
    return entry.get("pct") if isinstance(entry, dict) else None


def ci_text(entry: dict | None) -> str:
    if not entry or entry.get("pct") is None:
        return "–"
    lo, hi = entry["ci95"]
    return f"{entry['pct']:.1f} [{lo:.1f}, {hi:.1f}] ({entry['k']}/{entry['n']})"


def mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {sd:.1f}"
