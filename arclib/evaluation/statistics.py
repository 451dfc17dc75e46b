"""Statistics of a multi-seed ablation: intervals, paired comparisons and a multiple-comparison correction.

A result of one arm is a (seeds, tasks) array: one value per training seed and task (a task's mean over its
queries). Seeds and tasks are crossed: every seed trains on every task, and seed s gives every arm the same
episodes, so two arms pair cell by cell.

arm_interval       mean over seeds and tasks (each task weighs the same), 95% bootstrap interval resampling
                   seeds and tasks independently (the "pigeonhole" bootstrap for crossed designs, Owen 2007)
wilson_interval    a pooled count of exact grids as a proportion, Wilson interval (scipy.stats.binomtest)
paired_difference  mean of (B - A) per cell, a t interval and a two-sided p-value whose standard error comes
                   from the crossed random-effects ANOVA (seed, task and residual mean squares), degrees of
                   freedom by Satterthwaite
holm               Holm's step-down adjustment of a family of p-values

Why not a permutation test of the cells: the cells of one seed share that seed's training run, so a run that
trained a little better lifts every task at once. Flipping the signs of single cells treats the 3 x 14 cells as
independent and, with seed-to-seed variation, finds differences that are not there (tests/test_statistics.py
measures it). Flipping whole seeds is exact but with 3 seeds its smallest two-sided p-value is 0.25. The ANOVA
standard error counts both sources, and its few degrees of freedom (about S - 1 when seeds dominate) widen the
t interval accordingly. scipy has no crossed-design bootstrap or test, hence the few lines here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def covers(self, value: float = 0.0) -> bool:
        return self.low <= value <= self.high

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (b - a) over seeds and tasks, its standard error, t interval and two-sided p-value."""

    estimate: float
    low: float
    high: float
    se: float
    df: float
    p_value: float
    n_seeds: int
    n_tasks: int

    @property
    def interval(self) -> Interval:
        return Interval(self.estimate, self.low, self.high)

    def as_dict(self) -> dict:
        return asdict(self)


def _check_grid(values, name: str = "values") -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"{name}: expected a non-empty (seeds, tasks) array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: {int((~np.isfinite(values)).sum())} non-finite value(s)")
    return values


def arm_interval(
    values, confidence: float = CONFIDENCE, n_resamples: int = 10_000, seed: int = 0
) -> Interval:
    """Mean of a (seeds, tasks) array with a percentile bootstrap interval resampling seeds and tasks.

    Each resample draws seeds with replacement and, independently, tasks with replacement, and takes the mean
    of the crossed cells. With one seed (or one task) only the other axis varies.
    """
    values = _check_grid(values)
    n_seeds, n_tasks = values.shape
    rng = np.random.default_rng(seed)
    # Counts of each seed and task in each resample; the mean of the crossed cells is then a bilinear form.
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_resamples)  # (B, S)
    task_counts = rng.multinomial(n_tasks, np.full(n_tasks, 1 / n_tasks), size=n_resamples)  # (B, T)
    means = np.einsum("bs,st,bt->b", seed_counts, values, task_counts) / (n_seeds * n_tasks)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(values.mean()), float(low), float(high))


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """successes / trials with its Wilson score interval."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes} / {trials}")
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence, method="wilson")
    return Interval(successes / trials, float(ci.low), float(ci.high))


def paired_difference(a, b, confidence: float = CONFIDENCE) -> PairedDifference:
    """Mean of b - a over matched (seed, task) cells, with a t interval and two-sided p-value.

    The variance of the mean of d = b - a under crossed random effects (seed, task, residual) is
    (MS_seed + MS_task - MS_residual) / (S T), each variance component clipped at zero; with one seed it is
    MS_task / T, the paired t-test over tasks (and symmetrically with one task).
    """
    a, b = _check_grid(a, "a"), _check_grid(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"arms must pair cell by cell: shapes {a.shape} and {b.shape}")
    d = b - a
    n_seeds, n_tasks = d.shape
    if d.size < 2:
        raise ValueError("a paired difference needs at least 2 cells (seeds x tasks)")
    grand = d.mean()
    seed_means, task_means = d.mean(axis=1), d.mean(axis=0)
    # (mean square, degrees of freedom) of the seed and task effects that the data support
    terms = []
    if n_seeds > 1:
        terms.append((n_tasks * np.sum((seed_means - grand) ** 2) / (n_seeds - 1), n_seeds - 1))
    if n_tasks > 1:
        terms.append((n_seeds * np.sum((task_means - grand) ** 2) / (n_tasks - 1), n_tasks - 1))
    if len(terms) == 2:
        residual = d - seed_means[:, None] - task_means[None, :] + grand
        res_df = (n_seeds - 1) * (n_tasks - 1)
        ms_res = np.sum(residual**2) / res_df
        kept = [(ms, df) for ms, df in terms if ms > ms_res]  # a component estimated below zero counts zero
        terms = [(ms, df) for ms, df in kept] + [((1 - len(kept)) * ms_res, res_df)]
    combination = sum(ms for ms, _ in terms)
    se = float(np.sqrt(max(combination, 0.0) / d.size))
    nonzero = [(ms, df) for ms, df in terms if ms != 0]
    df = combination**2 / sum(ms**2 / df for ms, df in nonzero) if nonzero else float(d.size - 1)
    if se == 0:  # every cell differs by the same amount
        p = 1.0 if grand == 0 else 0.0
        return PairedDifference(float(grand), float(grand), float(grand), 0.0, float(df), p, n_seeds, n_tasks)
    t_crit = stats.t.ppf(0.5 + confidence / 2, df)
    p = float(2 * stats.t.sf(abs(grand) / se, df))
    return PairedDifference(
        float(grand),
        float(grand - t_crit * se),
        float(grand + t_crit * se),
        se,
        float(df),
        p,
        n_seeds,
        n_tasks,
    )


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values, in the order given: reject where adjusted < alpha (FWER <= alpha)."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted
