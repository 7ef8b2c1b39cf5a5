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
