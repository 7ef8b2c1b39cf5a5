"""Proportions with 95% Wilson score intervals (HS, FA and over-refusal are all k-of-n rates).

Wilson (1927): with p̂ = k/n and z = 1.959964 (95%),
    centre = (p̂ + z²/2n) / (1 + z²/n),   half = z·sqrt(p̂(1−p̂)/n + z²/4n²) / (1 + z²/n).
Unlike the normal (Wald) interval it stays inside [0, 1] and is not degenerate at k = 0 or k = n, which
matters at the n = 48-50 of the embedded profile (0/50 is not "exactly 0%": the interval is [0, 7.1]%).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # Φ⁻¹(0.975)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (lo, hi) for k successes out of n, as proportions in [0, 1]."""
    if n <= 0:
        raise ValueError(f"wilson: n={n}; expected at least one trial")
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k={k} outside 0..{n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Rate:
    """k of n, as a percentage with its 95% Wilson interval (percent, rounded to 2 decimals for the record)."""

    k: int
    n: int

    @property
    def pct(self) -> float | None:
        return round(100.0 * self.k / self.n, 2) if self.n else None

    def interval(self) -> tuple[float, float] | None:
        if not self.n:
            return None
        lo, hi = wilson(self.k, self.n)
        return round(100.0 * lo, 2), round(100.0 * hi, 2)

    def record(self) -> dict:
        ci = self.interval()
        return {"k": self.k, "n": self.n, "pct": self.pct,
                "ci95": list(ci) if ci else None}


def rate(flags: list[bool]) -> Rate:
    return Rate(sum(bool(f) for f in flags), len(flags))


def paired_bootstrap(first: list[bool], second: list[bool], n_boot: int = 10000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Difference of two rates measured on the same prompts (first − second, in points) with a paired percentile
    bootstrap interval: prompts are resampled with replacement (the same indices for both), `n_boot` times from a
    generator seeded with `seed`. Returns {"diff", "lo", "hi", "n", "n_boot"}; the quantiles are the inverted
    empirical CDF's (the smallest resampled difference whose CDF reaches the level)."""
    import numpy as np

    if len(first) != len(second) or not first:
        raise ValueError(f"paired_bootstrap: {len(first)} vs {len(second)} flags; expected the same prompts, n >= 1")
    d = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    n = d.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 1000):  # bounded memory: 1000 resamples × n indices at a time
        idx = rng.integers(0, n, size=(min(1000, n_boot - start), n))
        means[start:start + idx.shape[0]] = d[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha], method="inverted_cdf")
    return {"diff": round(100.0 * float(d.mean()), 2), "lo": round(100.0 * float(lo), 2),
            "hi": round(100.0 * float(hi), 2), "n": int(n), "n_boot": int(n_boot)}
