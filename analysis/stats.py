"""Seed statistics: a mean with its confidence interval, and the paired change between two steps.

Runs of two steps with the same seed share their data order and initial random stream, so the change from the
previous adopted step is measured per seed and its interval taken over those paired differences: the seed-to-seed
spread that both steps share cancels. One seed gives a mean and no interval, and resolves nothing.
"""

import math

import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


def t_half_width(values) -> float:
    """Half width of the two-sided Student-t confidence interval of the mean of `values`; NaN for fewer than 2."""
    values = pd.Series(values, dtype=float).dropna()
    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))


def paired_change(step_acc: pd.Series, parent_acc: pd.Series) -> dict:
    """The change from `parent_acc` to `step_acc` (each indexed by seed) over the seeds both have: mean, interval
    half width, number of pairs, and whether the interval excludes zero."""
    differences = (step_acc - parent_acc).dropna()
    half = t_half_width(differences)
    mean = float(differences.mean()) if len(differences) else math.nan
    return {"delta_test_acc1": mean, "delta_ci95": half, "delta_n": len(differences),
            "resolved": bool(abs(mean) > half) if not math.isnan(half) else False}


def spearman(ours: pd.Series, theirs: pd.Series) -> float:
    """Spearman's rank correlation over the entries both have (average ranks for ties); NaN below 3 entries."""
    both = pd.concat([ours, theirs], axis=1).dropna()
    if len(both) < 3:
        return math.nan
    return float(stats.spearmanr(both.iloc[:, 0], both.iloc[:, 1]).statistic)


def pearson(ours: pd.Series, theirs: pd.Series) -> float:
    """Pearson's correlation over the entries both have; NaN below 3 entries or where either is constant."""
    both = pd.concat([ours, theirs], axis=1).dropna()
    if len(both) < 3 or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return math.nan
    return float(stats.pearsonr(both.iloc[:, 0], both.iloc[:, 1]).statistic)


def welch_half_width(a, b) -> float:
    """Half width of the two-sided Welch confidence interval of mean(a) - mean(b), unpaired samples of unequal
    variance; NaN where either has fewer than 2 values."""
    a, b = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    if len(a) < 2 or len(b) < 2:
        return math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return 0.0
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(stats.t.ppf((1 + CONFIDENCE) / 2, dof) * math.sqrt(va + vb))


def one_run_gap_half_width(others) -> float:
    """Half width of the 95% interval of (one run) - mean(others), taking the one run's seed spread to be that of
    `others` (std s over their n seeds): t(n - 1) s sqrt(1 + 1/n); NaN for fewer than 2 others."""
    others = pd.Series(others, dtype=float).dropna()
    n = len(others)
    if n < 2:
        return math.nan
    return float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * others.std(ddof=1) * math.sqrt(1 + 1 / n))
