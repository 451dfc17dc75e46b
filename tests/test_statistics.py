"""Each statistic against a case whose answer is known, and the paired test's false-positive rate."""

import numpy as np
import pytest
from scipy import stats

from arclib.evaluation.statistics import arm_interval, holm, paired_difference, wilson_interval


def test_wilson_interval_known_values():
    # The figures: 0/70 is [0, 0.052], 2/70 is [0.008, 0.098].
    zero, two = wilson_interval(0, 70), wilson_interval(2, 70)
    assert (
        zero.estimate == 0
        and zero.low == pytest.approx(0, abs=1e-12)
        and zero.high == pytest.approx(0.052, abs=5e-4)
    )
    assert (two.low, two.high) == pytest.approx((0.008, 0.098), abs=5e-4)
    # closed form: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    k, n, z = 7, 20, stats.norm.ppf(0.975)
    p = k / n
    centre, half = p + z**2 / (2 * n), z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    ci = wilson_interval(k, n)
    assert (ci.low, ci.high) == pytest.approx(
        ((centre - half) / (1 + z**2 / n), (centre + half) / (1 + z**2 / n))
    )
    with pytest.raises(ValueError, match="trials"):
        wilson_interval(3, 0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)


def test_holm_known_adjustment():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2]) == pytest.approx([0.2]) and holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([0.01, 0.01]) == pytest.approx([0.02, 0.02])  # ties
    assert holm([]).size == 0


def test_paired_difference_with_one_seed_is_the_paired_t_test():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1, 14)), rng.normal(0.3, 1, size=(1, 14))
    result = paired_difference(a, b)
    reference = stats.ttest_rel(b[0], a[0])
    ci = reference.confidence_interval()
    assert result.p_value == pytest.approx(reference.pvalue)
    assert (result.low, result.high) == pytest.approx((ci.low, ci.high))
    assert result.df == pytest.approx(13) and (result.n_seeds, result.n_tasks) == (1, 14)
    by_seed = paired_difference(a.T, b.T)  # one task, 14 seeds: the same test over seeds
    assert by_seed.p_value == pytest.approx(reference.pvalue)


def test_paired_difference_hand_computed_crossed_case():
    # d = seed effect + task effect, no residual: MS_seed = 3 * (1 + 1) = 6, MS_task = 2 * (1 + 0 + 1) / 2 = 2,
    # se^2 = (6 + 2) / 6, Satterthwaite df = 8^2 / (6^2 / 1 + 2^2 / 2) = 64 / 38.
    a = np.zeros((2, 3))
    b = np.array([[0.0, 1, 2], [2, 3, 4]])
    result = paired_difference(a, b)
    assert result.estimate == 2 and result.se == pytest.approx(np.sqrt(8 / 6))
    assert result.df == pytest.approx(64 / 38)
    t_crit = stats.t.ppf(0.975, 64 / 38)
    assert result.high - result.estimate == pytest.approx(t_crit * np.sqrt(8 / 6))
    assert result.p_value == pytest.approx(2 * stats.t.sf(2 / np.sqrt(8 / 6), 64 / 38))


def test_paired_difference_with_only_residual_variation():
    # seed and task means all equal: MS_seed = MS_task = 0 fall below MS_res = 1, so both components are
    # clipped to zero and se^2 = MS_res / (S T) = 1 / 4 on the residual's 1 degree of freedom.
    result = paired_difference(np.zeros((2, 2)), np.array([[1.0, 0], [0, 1]]))
    assert result.estimate == 0.5 and result.se == pytest.approx(0.5) and result.df == pytest.approx(1)
    assert result.p_value == pytest.approx(0.5)


def test_paired_difference_degenerate_and_bad_inputs():
    same = np.ones((3, 4))
    assert paired_difference(same, same).p_value == 1 and paired_difference(same, same).interval.covers(0)
    shifted = paired_difference(same, same + 0.5)
    assert shifted.p_value == 0 and (shifted.low, shifted.high) == (0.5, 0.5)
    with pytest.raises(ValueError, match="pair cell by cell"):
        paired_difference(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        paired_difference(np.ones((3, 4)), np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="at least 2 cells"):
        paired_difference(np.ones((1, 1)), np.ones((1, 1)))


def _simulated_arms(rng, n_seeds, n_tasks, seed_sd, task_sd, noise_sd, delta=0.0):
    """Two arms sharing seed and task effects (same episodes, same tasks), each with its own seed-level,
    task-level and cell-level variation; the second shifted by delta."""
    shared = rng.normal(size=(n_seeds, 1)) + rng.normal(size=(1, n_tasks))

    def arm():
        return (
            shared
            + seed_sd * rng.normal(size=(n_seeds, 1))
            + task_sd * rng.normal(size=(1, n_tasks))
            + noise_sd * rng.normal(size=(n_seeds, n_tasks))
        )

    return arm(), arm() + delta


@pytest.mark.parametrize(
    "seed_sd, task_sd, noise_sd",
    [(1.0, 0.0, 0.3), (0.0, 1.0, 0.3), (0.5, 0.5, 0.5)],
    ids=["seeds dominate", "tasks dominate", "mixed"],
)
def test_same_distribution_false_positive_rate_is_near_alpha(seed_sd, task_sd, noise_sd):
    rng = np.random.default_rng(11)
    reps, ours, naive = 1000, 0, 0
    for _ in range(reps):
        a, b = _simulated_arms(rng, 3, 14, seed_sd, task_sd, noise_sd)
        ours += paired_difference(a, b).p_value < 0.05
        naive += stats.ttest_1samp((b - a).ravel(), 0).pvalue < 0.05  # treats the 42 cells as independent
    assert 0.02 <= ours / reps <= 0.08, ours / reps
    # negative control: ignoring that a seed's (or task's) cells move together finds many false differences
    assert naive / reps > 0.2, naive / reps


def test_paired_difference_detects_a_real_shift():
    rng = np.random.default_rng(12)
    found = sum(
        paired_difference(*_simulated_arms(rng, 3, 14, 0.2, 0.2, 0.2, delta=1.0)).p_value < 0.05
        for _ in range(200)
    )
    assert found / 200 > 0.75  # measured 0.855: with 3 seeds the t has few degrees of freedom


def test_arm_interval_constant_additive_and_one_seed():
    assert arm_interval(np.full((3, 5), 0.25)).as_dict() == {"estimate": 0.25, "low": 0.25, "high": 0.25}
    # additive data: a resample's mean is (mean of resampled seed effects) + (mean of resampled task effects),
    # so its variance is var(a)/S + var(b)/T with population variances
    a, b = np.array([0.0, 1.0, 2.0]), np.linspace(0, 1, 14)
    interval = arm_interval(a[:, None] + b[None, :], n_resamples=40_000)
    sd = np.sqrt(a.var() / 3 + b.var() / 14)
    assert interval.estimate == pytest.approx(a.mean() + b.mean())
    assert (interval.high - interval.low) / (2 * 1.96 * sd) == pytest.approx(1, abs=0.1)
    one_seed = arm_interval(b[None, :], n_resamples=40_000)  # only tasks vary
    assert (one_seed.high - one_seed.low) / (2 * 1.96 * b.std() / np.sqrt(14)) == pytest.approx(1, abs=0.1)
    with pytest.raises(ValueError, match="seeds, tasks"):
        arm_interval(np.ones(4))


def test_arm_interval_coverage():
    # Measured coverage of the nominal 95% interval under crossed normal effects (seed, task, cell all sd 1):
    # close to nominal with 10 seeds x 30 tasks; with 3 seeds x 14 tasks it is lower (about 0.87), which the
    # report states next to the arm table.
    rng = np.random.default_rng(13)
    for (n_seeds, n_tasks), (low, high) in {(10, 30): (0.91, 0.99), (3, 14): (0.8, 0.93)}.items():
        covered = 0
        for i in range(200):
            values = (
                rng.normal(size=(n_seeds, 1))
                + rng.normal(size=(1, n_tasks))
                + rng.normal(size=(n_seeds, n_tasks))
            )
            covered += arm_interval(values, n_resamples=2000, seed=i).covers(0)
        assert low <= covered / 200 <= high, (n_seeds, n_tasks, covered / 200)
