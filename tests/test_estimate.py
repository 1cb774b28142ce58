"""Uncertainty of cells (rbench.estimate): Wilson intervals of rates, t intervals of means, class-balanced rates,
McNemar's exact test, and how many samples a comparison would need."""

from __future__ import annotations

import numpy as np
import pytest

from rbench.estimate import class_balanced_rate, mcnemar, mean, rate, samples_needed


def test_rate_has_the_wilson_interval():
    est = rate(np.array([True] * 32 + [False] * 18))
    assert est.value == pytest.approx(64.0) and est.n == 50 and est.method == "wilson"
    # Wilson's score interval for 32/50 at 95%: 50.14% .. 75.86% (by the closed form)
    z = 1.959963984540054
    p, n = 0.64, 50
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert est.low == pytest.approx(100 * (centre - half)) and est.high == pytest.approx(100 * (centre + half))
    # at 0% the interval still has width (a plain normal interval would claim certainty)
    none = rate(np.zeros(50, dtype=bool))
    assert none.value == 0.0 and none.low == 0.0 and none.high > 5.0
    assert rate(np.zeros(0, dtype=bool)) is None


def test_intervals_are_scipys_to_the_last_bit_without_importing_scipy_stats():
    import subprocess
    import sys

    from scipy.stats import binomtest, norm, t

    from rbench.estimate import wilson

    for n in (1, 2, 7, 50, 64, 1000, 10000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            assert wilson(k, n) == (float(ci.low), float(ci.high)), (k, n)
    values = np.random.default_rng(1).normal(0.3, 0.1, 37)
    est = mean(values)
    half = float(t.ppf(0.975, 36)) * float(values.std(ddof=1)) / np.sqrt(37)
    assert (est.low, est.high) == (est.value - half, est.value + half)
    from rbench.estimate import _z

    assert _z() == float(norm.ppf(0.975))
    code = ("import sys, numpy as np; from rbench.estimate import rate, mean, class_balanced_rate, auroc, mcnemar; "
            "rate(np.ones(9, bool)); mean(np.arange(5.0)); class_balanced_rate(np.ones(4, bool), np.arange(4)); "
            "auroc(0.9, 10, 10); mcnemar((np.arange(3), np.ones(3, bool)), (np.arange(3), np.zeros(3, bool))); "
            "print('scipy.stats' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_rate_keeps_the_outcomes_only_with_indices():
    mask = np.array([True, False, True])
    assert rate(mask).outcomes is None
    indices, outcomes = rate(mask, np.array([7, 3, 5])).outcomes
    assert indices.tolist() == [7, 3, 5] and outcomes.tolist() == [True, False, True]


def test_mean_has_a_t_interval_and_keeps_its_samples():
    values = np.random.default_rng(0).exponential(0.05, 400)
    est = mean(values)
    se = values.std(ddof=1) / np.sqrt(400)
    assert est.low == pytest.approx(values.mean() - 1.9659 * se, rel=1e-3)
    assert est.high - est.value == pytest.approx(est.value - est.low)
    assert est.samples is values or np.array_equal(est.samples, values)
    scaled = mean(values, scale=100.0)
    assert scaled.value == pytest.approx(100 * est.value) and scaled.high == pytest.approx(100 * est.high)
    one = mean(np.array([0.3]))
    assert one.low is None and one.high is None and one.n == 1
    assert mean(np.array([])) is None
    # a t interval reaching past what the quantity can be is clipped: no negative distortion, no 106% confidence
    small = mean(np.array([0.01, 0.02]), bounds=(0.0, np.inf))
    assert small.low == 0.0 and small.high == pytest.approx(0.015 + 12.706 * 0.00707107 / np.sqrt(2), rel=1e-4)
    sure = mean(np.array([1.0] * 9 + [0.5]), scale=100.0, bounds=(0.0, 100.0))
    assert sure.high == 100.0 and sure.low == pytest.approx(83.69, abs=0.01)


def test_class_balanced_rate_weighs_classes_the_same_and_is_never_certain():
    correct = np.array([True] * 8 + [False] * 2)
    labels = np.array([0] * 8 + [1] * 2)
    est = class_balanced_rate(correct, labels)
    assert est.value == pytest.approx(50.0)  # (100% + 0%) / 2, not 80%
    assert est.low < 50.0 < est.high and est.low >= 0.0 and est.high <= 100.0
    # more samples per class, a narrower interval
    wide = class_balanced_rate(np.tile([True, False], 10), np.repeat([0, 1], 10))
    narrow = class_balanced_rate(np.tile([True, False], 1000), np.repeat([0, 1], 1000))
    assert narrow.high - narrow.low < (wide.high - wide.low) / 5


@pytest.mark.parametrize(("per_class", "share"), [(5, 0.5), (5, 0.3), (20, 0.5), (100, 0.1)])
def test_class_balanced_interval_covers_the_true_value(per_class, share):
    """Simulated: 10 classes of ``per_class`` samples, each right with probability ``share``; the 95% interval
    holds the true class-balanced rate at least 92% of the time (centred on the raw mean with Agresti-Coull's
    n + z^2 denominator it did 85% of the time at 5 per class)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), per_class)
    held = 0
    for _ in range(1500):
        est = class_balanced_rate(rng.random(labels.size) < share, labels)
        held += est.low <= 100 * share <= est.high
    assert held / 1500 >= 0.92


def test_mcnemar_pairs_by_index_and_counts_discordant_pairs():
    a = (np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool))
    # b over the same samples in another order: right only on 8 and 9, wrong on 0..5
    b = (np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool))
    test = mcnemar(a, b)
    assert (test.n, test.a_only, test.b_only) == (10, 6, 2)
    assert test.p_value == pytest.approx(0.2890625)  # two-sided exact binomial: 2 of 8 at p = 1/2
    same = mcnemar(a, a)
    assert (same.a_only, same.b_only, same.p_value) == (0, 0, 1.0)
    assert mcnemar(a, (np.array([20, 21]), np.array([True, False]))) is None


def test_a_p_value_below_the_smallest_float_is_never_shown_as_0():
    """1100 discordant pairs all one way: p = 2^-1099, which underflows a float to 0.0; the text says how small."""
    from rbench.report.reporters import describe_paired

    idx = np.arange(1100)
    test = mcnemar((idx, np.ones(1100, dtype=bool)), (idx, np.zeros(1100, dtype=bool)))
    assert (test.a_only, test.b_only, test.p_value) == (1100, 0, 0.0)
    words = describe_paired({"a": "mlp", "b": "lenet", "along": "fgsm", "metric": "error", **vars(test)})
    assert words.endswith("only on 0 (of 1100 shared); McNemar exact p < 1e-300")
    assert describe_paired({"a": "a", "b": "b", "along": "c", **vars(mcnemar((idx[:8], idx[:8] < 2),
                                                                              (idx[:8], idx[:8] >= 2)))}) \
        .endswith("McNemar exact p = 0.289")


@pytest.mark.parametrize("discordant", [1, 2, 7, 8, 60, 333, 1000, 2001])
def test_mcnemar_p_value_is_scipys_exact_binomial_test(discordant):
    from scipy.stats import binomtest

    for a_only in range(0, discordant + 1, 1 if discordant <= 1000 else 7):
        a = (np.arange(discordant), np.arange(discordant) < a_only)
        expected = binomtest(a_only, discordant, 0.5).pvalue
        assert mcnemar(a, (a[0], ~a[1])).p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("n", [0, 1, 2, 9, 64, 1999, 2000, 2001, 5000])
def test_the_binomial_half_tail_is_exact_up_to_its_limit_and_scipys_above(n):
    """Summed in integers up to EXACT_TRIALS: the correctly rounded value (Fraction's); above, scipy's bdtr."""
    from fractions import Fraction
    from math import comb

    from scipy.special import bdtr

    from rbench.estimate import EXACT_TRIALS, binomial_half_tail

    for k in sorted({0, 1, n // 3, n // 2 - 1, n // 2, n}):
        got = binomial_half_tail(k, n)
        if n <= EXACT_TRIALS:
            assert got == float(Fraction(sum(comb(n, j) for j in range(k + 1)), 2**n)), (k, n)
        else:
            assert got == float(bdtr(k, n, 0.5)), (k, n)
    assert binomial_half_tail(-1, n) == 0.0


def test_samples_needed_shrinks_the_half_width_below_the_distance():
    # a mean of 64 with the t interval [52, 76] from 50 samples: 70 published lies inside, 6 away with 12 of
    # half-width: (12 / 6)^2 = 4 times the samples
    assert samples_needed(50, 52.0, 76.0, 64.0, 70.0) == 200
    # an asymmetric interval of no declared method: the half-width on the target's side
    assert samples_needed(50, 50.14, 75.86, 64.0, 70.0) == int(np.ceil(50 * (11.86 / 6.0) ** 2))
    assert samples_needed(50, 52.0, 76.0, 64.0, 60.0) == int(np.ceil(50 * (12 / 4.0) ** 2))
    assert samples_needed(50, 52.0, 76.0, 64.0, 80.0) is None  # outside already
    assert samples_needed(50, 52.0, 76.0, 64.0, 64.0) is None
    # clipped at what the quantity can be (a confidence of 99.0 +- 2.26 at most 100%): the unclipped half-width
    # counts, not the 1.0 left below the bound (which said 11 samples; it takes about 52)
    sure = mean(np.array([1.0] * 9 + [0.9]), scale=100.0, bounds=(0.0, 100.0))
    assert sure.high == 100.0
    assert samples_needed(10, sure.low, sure.high, sure.value, 100.0, "t") == \
        int(np.ceil(10 * ((sure.value - sure.low) / (100.0 - sure.value)) ** 2)) == 52


def test_auroc_interval_follows_hanley_and_mcneil():
    from rbench.estimate import auroc

    est = auroc(0.9, 100, 100)
    q1, q2 = 0.9 / 1.1, 2 * 0.81 / 1.9
    se = np.sqrt((0.9 * 0.1 + 99 * (q1 - 0.81) + 99 * (q2 - 0.81)) / 10000)
    assert est.high - est.value == pytest.approx(1.959964 * se, rel=1e-5) and est.method == "hanley-mcneil"
    assert auroc(0.9, 1000, 1000).high - 0.9 < (est.high - 0.9) / 3  # ten times the samples, a third the width
    perfect, worst = auroc(1.0, 50, 80), auroc(0.0, 80, 50)  # the closed form has no width at 0 or 1
    assert perfect.high == 1.0 and perfect.low == pytest.approx(50 / (50 + 1.959964**2), rel=1e-6)
    assert perfect.method == "wilson-pairs"  # not Hanley-McNeil's: "samples needed" must not treat it as one
    assert worst.low == 0.0 and worst.high == pytest.approx(1 - perfect.low)


def test_auroc_interval_at_one_covers_the_true_auroc():
    """Binormal scores with a true AUROC of 0.995 and 20 per side give a sample AUROC of exactly 1 about half the
    time; the Hanley-McNeil interval then has no width and misses. Checked by simulation (fixed seed)."""
    from scipy.stats import norm

    from rbench.estimate import auroc

    rng, true, m = np.random.default_rng(0), 0.995, 20
    shift, covered, perfect = np.sqrt(2) * norm.ppf(true), 0, 0
    for _ in range(400):
        pos, neg = rng.normal(shift, 1, m), rng.normal(0, 1, m)
        value = float((pos[:, None] > neg[None, :]).mean())
        est = auroc(value, m, m)
        covered += est.low <= true <= est.high
        perfect += value == 1.0
    assert perfect > 100 and covered / 400 >= 0.95


@pytest.mark.parametrize(("k", "n", "target"), [(23, 200, 10.0), (382, 1000, 37.0), (3, 100, 1.5), (95, 100, 97.5)])
def test_samples_needed_of_a_wilson_rate_is_where_the_wilson_interval_first_leaves_the_target_out(k, n, target):
    """Near 0 or 100% the 1/sqrt(n) rule is optimistic (11.5% of 200 vs 10: it said about 1226 samples; the Wilson
    interval first excludes 10 near 1537). Checked against Wilson intervals of integer counts at that rate."""
    from rbench.estimate import wilson

    est = rate(np.arange(n) < k)
    m = samples_needed(n, est.low, est.high, est.value, target, "wilson")
    assert m is not None and m > n

    def excluded(size: int) -> bool:
        low, high = wilson(round(k / n * size), size)
        return not (100 * low <= target <= 100 * high)

    assert excluded(int(m * 1.05)) and not excluded(int(m * 0.95))  # counts are integers: a few % either side


@pytest.mark.parametrize("n", [6, 7, 10, 31, 100, 1000])
def test_median_interval_is_the_order_statistics_binomial_half_gives(n):
    """[x_(l), x_(n+1-l)] for the largest l with P(B < l) <= 2.5%, B ~ Binomial(n, 1/2), from scipy.stats; and it
    holds the true median of a skewed distribution in >= 95% of draws (fixed seed)."""
    from scipy.stats import binom

    from rbench.estimate import median

    values = np.arange(n, dtype=np.float64) * 3.0  # sorted and distinct: x_(j) = 3 (j - 1)
    lower = max(j for j in range(1, n + 1) if binom.cdf(j - 1, n, 0.5) <= 0.025)
    est = median(values[::-1], scale=2.0)
    assert est.value == 2.0 * float(np.median(values)) and est.method == "order statistics" and est.n == n
    assert (est.low, est.high) == (2.0 * 3.0 * (lower - 1), 2.0 * 3.0 * (n - lower))
    rng = np.random.default_rng(n)
    held = sum(e.low <= np.log(2) <= e.high for e in (median(rng.exponential(size=n)) for _ in range(600)))
    assert held / 600 >= 0.94


def test_kept_quantiles_and_ranks_are_scipys_from_the_library_cache(tmp_path, monkeypatch):
    """t quantiles and the median's ranks come back from the library cache as scipy computed them, for many sizes;
    a second process (here: the answers read back) gets the same numbers without computing them."""
    from scipy.special import bdtr, stdtrit

    from rbench import estimate
    from rbench.library_answers import CACHE_VARIABLE

    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))
    sizes = [1, 2, 5, 6, 7, 9, 17, 64, 99, 1000, 4321]
    expected = {n: (float(stdtrit(n, 0.975)), int(np.searchsorted(bdtr(np.arange(n), n, 0.5), 0.025, side="right")))
                for n in sizes}
    assert {n: (estimate.t_quantile(n), estimate._median_rank_below(n)) for n in sizes} == expected
    assert len(list((tmp_path / "answers").glob("*.json"))) == 2 * len(sizes)
    import scipy.special

    monkeypatch.setattr(scipy.special, "stdtrit", None)  # asked again, scipy would fail: the answers are kept
    monkeypatch.setattr(scipy.special, "bdtr", None)
    assert {n: (estimate.t_quantile(n), estimate._median_rank_below(n)) for n in sizes} == expected


def test_median_of_fewer_than_six_values_has_no_interval():
    from rbench.estimate import median

    assert median(np.array([])) is None
    few = median(np.array([3.0, 1.0, 2.0, 5.0, 4.0]))
    assert few.value == 3.0 and few.low is None and few.high is None


def test_correlation_interval_is_fisher_z_as_scipy_computes_it():
    from scipy.stats import pearsonr

    from rbench.estimate import correlation

    rng = np.random.default_rng(3)
    for n in (4, 10, 200):
        a = rng.normal(size=n)
        b = a + rng.normal(size=n)
        result = pearsonr(a, b)
        ci = result.confidence_interval(0.95)
        est = correlation(float(result.statistic), n)
        assert (est.low, est.high) == pytest.approx((ci.low, ci.high), rel=1e-9) and est.method == "fisher-z"
    assert correlation(None, 10) is None
    assert correlation(0.5, 3).low is None and correlation(-1.0, 50).high is None  # undefined: no interval


def test_the_normal_quantile_is_scipys_at_every_level(monkeypatch):
    """The 95% quantile is written out (no scipy.special import for one number): it must stay scipy's to the last
    bit, and another level must still be computed, not served the 95% one."""
    from scipy.stats import norm

    from rbench import estimate

    assert estimate._z() == float(norm.ppf(0.975))
    monkeypatch.setattr(estimate, "LEVEL", 0.9)
    assert estimate._z() == float(norm.ppf(0.95))


def test_mcnemar_refuses_outcomes_that_are_not_distinct_dataset_samples():
    """A generated set's images all have index -1: intersecting by index kept one pair, and 60 discordant images
    read as p = 1 ("of 1 shared")."""
    generated = np.full(100, -1)
    assert mcnemar((generated, np.arange(100) < 60), (generated, np.zeros(100, bool))) is None
    twice = np.r_[np.arange(50), np.arange(50)]
    assert mcnemar((twice, np.arange(100) < 60), (np.arange(100), np.zeros(100, bool))) is None
    assert mcnemar((np.arange(100), np.arange(100) < 60), (np.arange(100), np.zeros(100, bool))).n == 100


def test_a_mean_of_equal_values_has_no_interval():
    """A t interval of equal values has no width: compared with a published 99, a mean of ten 100s read as firmly
    outside. Equal up to float rounding counts (ten 0.1s have a standard deviation of 1e-17)."""
    for values in (np.full(10, 100.0), np.full(7, 0.1), np.array([1.0, np.nan, 3.0])):
        est = mean(values)
        assert (est.low, est.high, est.method) == (None, None, "")
    assert mean(np.array([1.0, 2.0])).method == "t"


def test_samples_needed_of_an_auroc_at_one_grows_its_pairs():
    """At an AUROC of exactly 1 the interval is Wilson's of k pairs all ordered, [k / (k + z^2), 1]: 20 per side
    give [0.839, 1], and 0.95 first falls outside at 73 per side, 146 scores (the 1/sqrt(n) rule said 416)."""
    from rbench.estimate import auroc, wilson

    for per_side in (20, 50):
        est = auroc(1.0, per_side, per_side)
        needed = samples_needed(est.n, est.low, est.high, est.value, 0.95, "wilson-pairs")
        assert needed == 146, (per_side, needed)
    assert wilson(73, 73)[0] > 0.95 > wilson(72, 72)[0]
    low = auroc(0.0, 30, 90)  # 30 pairs; mirrored at 0; n grows with the pairs
    assert samples_needed(low.n, low.low, low.high, 0.0, 0.05, "wilson-pairs") == 120 * 73 // 30  # 292
    # a class-balanced rate at 100%: its half-width is Agresti-Coull's adjustment, shrinking about as 1/n, so no
    # 1/sqrt(n) count (a review found 184 where 150 was right)
    full = class_balanced_rate(np.ones(100, bool), np.repeat(np.arange(10), 10))
    assert full.low < 95 and samples_needed(full.n, full.low, full.high, 100.0, 95.0, "normal") is None
