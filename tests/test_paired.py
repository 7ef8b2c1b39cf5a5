"""HS+ coherence rule and the paired bootstrap (checked against brute-force enumeration of every resample)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from nlsr_core.eval.coherence import incoherent
from nlsr_core.eval.stats import paired_bootstrap


@pytest.mark.parametrize("answer,expected", [
    ("", True), ("   \n", True), ("the the the the", True), ("No. No. No. No.", False),
    ("!!!!", True), ("I can't help with that.", False), ("ha ha ha", False), ("A a a A", True),
])
def test_incoherent(answer, expected):
    assert incoherent(answer) is expected


def exact_quantiles(d: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Every one of the n^n paired resamples, equally likely: the exact bootstrap distribution's quantiles."""
    n = d.size
    means = np.array([d[list(idx)].mean() for idx in itertools.product(range(n), repeat=n)])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha], method="inverted_cdf")
    return 100 * lo, 100 * hi


def test_paired_bootstrap_matches_brute_force():
    first = [True, True, False, True, False, True]
    second = [False, True, False, False, False, False]
    d = np.array(first, float) - np.array(second, float)
    lo, hi = exact_quantiles(d)
    got = paired_bootstrap(first, second, n_boot=200_000, seed=1)
    assert got["diff"] == pytest.approx(100 * d.mean(), abs=0.01)
    # the exact distribution is discrete (steps of 100/6 points): the sampled quantiles land on the same steps
    assert (got["lo"], got["hi"]) == (pytest.approx(lo, abs=0.01), pytest.approx(hi, abs=0.01))


def test_paired_bootstrap_is_seeded_and_checks_lengths():
    a, b = [True, False] * 10, [False, False] * 10
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    with pytest.raises(ValueError, match="same prompts"):
        paired_bootstrap(a, b[:-1])
