"""How sure a cell is: a metric's value with its sample size and 95% interval.

A metric's ``compute`` may return a plain number (no interval is claimed) or an :class:`Estimate`, made by
:func:`rate` (a proportion in %, Wilson score interval), :func:`mean` (a mean of per-sample values, Student t
interval), :func:`class_balanced_rate` (a mean over classes of per-class proportions, normal approximation from
the per-class binomial variances), :func:`auroc` (Hanley & McNeil's normal interval), :func:`median` (order
statistics) or :func:`correlation` (Pearson's r, Fisher's z). An estimate may keep the
per-sample outcomes behind it: ``outcomes`` (dataset index -> 0/1) for paired tests between cells on the same
samples, ``samples`` (per-sample values) for distribution plots; neither goes into results.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the confidence level of every interval rbench reports
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """``value`` (in the metric's unit) from ``n`` samples, with its ``LEVEL`` interval [``low``, ``high``] made by
    ``method`` ("wilson", "t", "normal", "hanley-mcneil" or "wilson-pairs", "order statistics", "fisher-z");
    ``low``/``high`` None where no interval can be given (a mean of fewer than 2 values, or of equal ones)."""

    value: float
    n: int
    low: float | None
    high: float | None
    method: str
    #: (dataset indices, per-sample 0/1 outcome whose mean is the rate) for paired tests
    outcomes: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)
    #: the per-sample values a mean was taken over (distribution plots)
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: the range the quantity lies in, where its maker knows it (a mean's ``bounds``: a distortion is never
    #: negative): a mean over several such estimates is clipped to it too (:func:`rbench.assemble.mean_cells`)
    bounds: tuple[float, float] | None = field(default=None, repr=False, compare=False)

    def __float__(self) -> float:
        return self.value


def interval_holds(low: float | None, value: float | None, high: float | None) -> bool:
    """Whether [``low``, ``high``] holds ``value`` (up to float rounding: Wilson's bound at 0 of 0 can come out
    1e-17 above it); True where any is None."""
    if low is None or value is None or high is None:
        return True
    slack = 1e-9 * max(1.0, abs(value))
    return low - slack <= value <= high + slack


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n at ``LEVEL`` (as fractions), in Newcombe's (1998) form,
    operation for operation as scipy's ``binomtest(k, n).proportion_ci(method="wilson")`` computes it (the tests
    compare them). Written out because importing ``scipy.stats`` costs one to two seconds, more than a warm run's
    own work; the quantile is still scipy's (``scipy.special.ndtri``)."""
    z = _z()
    p = k / n
    denom = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denom
    delta = z / denom * math.sqrt(4 * n * p * (1 - p) + z**2)
    return (0.0 if k == 0 else center - delta), (1.0 if k == n else center + delta)


def rate(mask: np.ndarray, indices: np.ndarray | None = None) -> Estimate | None:
    """The share (%) of True in ``mask`` with its Wilson interval; None for an empty mask. ``indices`` (the samples'
    dataset indices, aligned with ``mask``) keep the outcomes for paired tests."""
    mask = np.asarray(mask, dtype=bool).ravel()
    n = int(mask.size)
    if n == 0:
        return None
    k = int(mask.sum())
    low, high = wilson(k, n)
    outcomes = None if indices is None else (np.asarray(indices).ravel(), mask)
    return Estimate(100.0 * k / n, n, 100.0 * low, 100.0 * high, "wilson", outcomes)


def mean(values: np.ndarray, scale: float = 1.0, bounds: tuple[float, float] = (-math.inf, math.inf)
         ) -> Estimate | None:
    """``scale`` times the mean of ``values`` with a Student t interval (mean +- t * sd / sqrt(n)), clipped to the
    range the quantity can take (``bounds``, in the scaled unit: a distortion is never negative, a confidence never
    above 100%); None for no values, no interval for one value or equal ones. The values are kept for plots. A t
    interval rather than a bootstrap: it is deterministic and costs nothing for 10,000 samples, and the means rbench
    reports (distortions, confidences) are mostly over 50 or more samples, where the t interval of a skewed
    distribution is close to the bootstrap's."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = int(values.size)
    if n == 0:
        return None
    value = scale * float(values.mean())
    spread = float(values.std(ddof=1)) if n >= 2 else 0.0
    if n < 2 or values.min() == values.max() or not math.isfinite(spread):
        # one value, or all alike (confidences saturated at 100%): a t interval would have no width, a certainty
        # that n equal values do not give (compared with a published value it read as firmly outside); a NaN among
        # the values: the NaN mean says it, with no interval of infinite width beside it
        return Estimate(value, n, None, None, "", samples=values, bounds=bounds)
    half = abs(scale) * t_quantile(n - 1) * spread / math.sqrt(n)
    return Estimate(value, n, max(bounds[0], value - half), min(bounds[1], value + half), "t", samples=values,
                    bounds=bounds)


def t_quantile(df: int) -> float:
    """Student t's quantile of ``LEVEL``'s two-sided interval with ``df`` degrees of freedom, as
    ``scipy.stats.t.ppf`` gives it (``scipy.special.stdtrit``, without importing scipy.stats), kept between
    processes (:func:`_kept_scipy_answer`)."""
    def answer() -> float:
        from scipy.special import stdtrit

        return float(stdtrit(df, 0.5 + LEVEL / 2))

    return float(_kept_scipy_answer("stdtrit", [df, 0.5 + LEVEL / 2], answer))


def _kept_scipy_answer(question: str, args: list[Any], answer: Callable[[], Any]) -> Any:
    """``answer()`` (a scipy.special computation), kept with the libraries' other answers
    (:func:`rbench.library_answers.remembered`, keyed by scipy.special's files and scipy's version and
    requirements): importing scipy.special cost a warm run 0.13-0.19 s of its 3 s for these few numbers."""
    from rbench.library_answers import library_digest, remembered

    return remembered(library_digest("scipy", "scipy.special", __file__, extras=False), question, args, answer)


def class_balanced_rate(correct: np.ndarray, labels: np.ndarray, indices: np.ndarray | None = None
                        ) -> Estimate | None:
    """The mean over the classes present of each class's share (%) of True in ``correct`` (every class weighs the
    same), with a normal interval clipped to [0, 100] whose variance sums the classes' p~(1-p~)/n_c over K^2, p~
    being a class's Agresti-Coull adjusted share (so that a class at 0% or 100% still contributes its
    uncertainty). The denominator is the class's own n_c, not Agresti-Coull's n_c + z^2: the interval is centred
    on the raw mean, and with n_c + z^2 it covered the true value only 85% of the time at 5 samples per class
    (simulated, 10 classes at 50%); with n_c at least 93% at 5, 20 and 100 samples per class and shares from 2%
    to 95% (tests/test_estimate.py). None for no samples."""
    correct = np.asarray(correct, dtype=bool).ravel()
    labels = np.asarray(labels).ravel()
    classes = np.unique(labels)
    if classes.size == 0:
        return None
    hits = np.array([correct[labels == c].sum() for c in classes], dtype=np.float64)
    sizes = np.array([(labels == c).sum() for c in classes], dtype=np.float64)
    value = float((hits / sizes).mean())
    z = _z()
    adjusted = (hits + z * z / 2) / (sizes + z * z)
    se = math.sqrt(float((adjusted * (1 - adjusted) / sizes).sum())) / classes.size
    outcomes = None if indices is None else (np.asarray(indices).ravel(), correct)
    return Estimate(100.0 * value, int(correct.size), 100.0 * max(0.0, value - z * se),
                    100.0 * min(1.0, value + z * se), "normal", outcomes)


def auroc(value: float, n_positive: int, n_negative: int) -> Estimate:
    """An AUROC ``value`` (in [0, 1]) from ``n_positive`` and ``n_negative`` scores with the normal interval of
    Hanley & McNeil's (1982) standard error, clipped to [0, 1]: a closed form of the Mann-Whitney statistic's
    variance, deterministic and exact enough for the thousands of samples an OOD table uses.

    At exactly 0 or 1 (every pair of scores ordered one way) that variance vanishes and the interval would have no
    width. There the interval (method "wilson-pairs") is instead the Wilson interval of k = min(n_positive,
    n_negative) trials that all came out one way: pairing the positives and negatives one to one gives k independent
    trials whose success probability is the AUROC, all successes whenever every pair is ordered, and the full
    statistic is at least as precise as those k (simulated with binormal scores at a true AUROC of 0.99 to 0.999 and
    20 to 200 scores per side: the clipped Hanley-McNeil interval covered it 19-97% of the time, with this fallback
    93-100%; a review measured 93.4% at 0.99 with 50 per side, every miss the truth below the interval;
    tests/test_estimate.py checks 0.995 with 20 per side). Two caveats: the Hanley-McNeil interval itself covers
    less than 95% with few scores (90.8% at 0.9 with 20 per side), and the two methods meet unevenly (20 per side:
    an AUROC of 1 gives [0.839, 1], one pair out of order in 400 [0.982, 1])."""
    a = float(value)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (n_positive - 1) * (q1 - a * a) + (n_negative - 1) * (q2 - a * a)) \
        / (n_positive * n_negative)
    if variance <= 0.0 and a in (0.0, 1.0):
        k = min(n_positive, n_negative)
        low = wilson(k, k)[0]
        return Estimate(a, n_positive + n_negative, low if a == 1.0 else 0.0, 1.0 if a == 1.0 else 1.0 - low,
                        "wilson-pairs")
    half = _z() * math.sqrt(max(variance, 0.0))
    return Estimate(a, n_positive + n_negative, max(0.0, a - half), min(1.0, a + half), "hanley-mcneil")


def median(values: np.ndarray, scale: float = 1.0) -> Estimate | None:
    """``scale`` (> 0) times the median of ``values`` with its distribution-free 95% interval from order
    statistics: [x_(l), x_(n+1-l)] (sorted, counted from 1) for the largest l with P(B < l) <= 2.5%, B ~
    Binomial(n, 1/2) the number of samples below the true median, so the interval holds it with probability >= 95%
    whatever the distribution (exact for continuous values). No interval below 6 values (even [x_(1), x_(n)] holds
    less than 95%); None for no values. The values are kept for plots."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = int(values.size)
    if n == 0:
        return None
    ordered = np.sort(values)
    value = scale * float(np.median(ordered))
    below = _median_rank_below(n)
    if below == 0:
        return Estimate(value, n, None, None, "", samples=values)
    return Estimate(value, n, scale * float(ordered[below - 1]), scale * float(ordered[n - below]),
                    "order statistics", samples=values)


def _median_rank_below(n: int) -> int:
    """l of :func:`median`'s interval for ``n`` values: #{j: P(B <= j) <= (1 - LEVEL) / 2}, B ~ Binomial(n, 1/2),
    by ``scipy.special.bdtr``, kept between processes (:func:`_kept_scipy_answer`)."""
    tail = (1 - LEVEL) / 2

    def answer() -> int:
        from scipy.special import bdtr  # the binomial CDF, without importing scipy.stats

        return int(np.searchsorted(bdtr(np.arange(n), n, 0.5), tail, side="right"))

    return int(_kept_scipy_answer("median_rank_below", [n, tail], answer))


def reduced(values: np.ndarray, how: str, scale: float = 1.0, bounds: tuple[float, float] = (-math.inf, math.inf)
            ) -> Estimate | float | None:
    """``scale`` times ``values`` reduced by ``how`` ("median", "mean", "min", "max"; a metric's ``reduce``): a
    median with its order-statistic interval (:func:`median`), a mean with its t interval clipped to ``bounds``
    (:func:`mean`), a minimum or maximum bare (an extreme has no interval here); None for no values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return None
    if how == "median":
        return median(values, scale)
    if how == "mean":
        return mean(values, scale, bounds)
    return scale * float(getattr(np, how)(values))


def correlation(r: float | None, n: int) -> Estimate | None:
    """Pearson's ``r`` over ``n`` pairs with Fisher's z interval (tanh(atanh r +- z / sqrt(n - 3)), what
    ``scipy.stats.pearsonr(...).confidence_interval()`` gives); no interval for n <= 3 or |r| = 1; None where r is
    undefined (None)."""
    if r is None:
        return None
    r = float(r)
    if n <= 3 or abs(r) >= 1.0:
        return Estimate(r, n, None, None, "")
    centre, half = math.atanh(r), _z() / math.sqrt(n - 3)
    return Estimate(r, n, math.tanh(centre - half), math.tanh(centre + half), "fisher-z")


#: scipy.special.ndtri(0.975), the two-sided 95% normal quantile, to the last bit (tests/test_estimate.py checks
#: it against scipy): importing scipy.special for this one number cost a warm run 0.13-0.3 s, and the standard
#: library's ``NormalDist().inv_cdf(0.975)`` differs from it in the last bit
_Z_95 = 1.959963984540054


def _z() -> float:
    """The normal quantile of ``LEVEL``'s two-sided interval, as ``scipy.stats.norm.ppf`` gives it."""
    if LEVEL == 0.95:
        return _Z_95
    from scipy.special import ndtri  # scipy.stats.norm.ppf's own quantile, without importing scipy.stats

    return float(ndtri(0.5 + LEVEL / 2))


#: interval methods symmetric about the value (up to clipping to what the quantity can be)
SYMMETRIC = ("t", "normal", "hanley-mcneil")


def samples_needed(n: int, low: float, high: float, value: float, target: float, method: str = "") -> int | None:
    """For a ``target`` inside the interval [``low``, ``high``] of ``value`` from ``n`` samples, made by ``method``
    (:attr:`Estimate.method`): about how many samples, at the same observed ``value``, would leave ``target``
    outside the interval, so the two could be told apart. None when ``target`` is outside the interval already,
    equals ``value``, or the method gives no such count.

    - ``"wilson"`` (a rate in %, :func:`rate`): the smallest such n of the Wilson interval itself (its half-widths
      shrink more slowly than 1/sqrt(n) near 0 and 100%);
    - ``"wilson-pairs"`` (an AUROC of exactly 0 or 1, :func:`auroc`): the Wilson interval of k all-one-way pairs,
      k read back from the bound (k / (k + z^2) at 1), grown to the k that excludes ``target``, and ``n`` scaled
      with it;
    - a method in :data:`SYMMETRIC`: the larger, unclipped half-width taken to shrink as 1/sqrt(n); except a
      class-balanced rate (``"normal"``) at 0 or 100%, whose half-width is then all Agresti-Coull's adjustment and
      shrinks about as 1/n: None rather than a count the rule would get wrong;
    - otherwise (order statistics, Fisher's z, none declared): the half-width on ``target``'s side, as 1/sqrt(n)."""
    distance = abs(target - value)
    if distance == 0 or not low <= target <= high:
        return None
    if method == "wilson":
        return _wilson_samples(value / 100, target / 100, n)
    if method == "wilson-pairs":
        return _wilson_pairs_samples(n, low, high, value, target)
    if method == "normal" and value in (0.0, 100.0):
        return None
    half = max(high - value, value - low) if method in SYMMETRIC else (high - value) if target > value \
        else (value - low)
    return max(n + 1, math.ceil(n * (half / distance) ** 2))


def _wilson_pairs_samples(n: int, low: float, high: float, value: float, target: float) -> int | None:
    """:func:`samples_needed` of :func:`auroc`'s ``"wilson-pairs"`` interval: at an AUROC of 1 it is [k / (k + z^2),
    1] for k = min(positives, negatives) pairs (Wilson's interval of k successes in k trials), so k = z^2 b / (1 - b)
    of its bound b; the smallest k' whose bound passes ``target`` is z^2 t / (1 - t) rounded up (strictly above),
    and ``n`` grows by k' / k (both sides in the same proportion). At 0, the same mirrored."""
    z2 = _z() ** 2
    bound, aim = (low, target) if value == 1.0 else (1.0 - high, 1.0 - target)
    if not 0 < bound < 1 or aim >= 1:
        return None
    pairs = z2 * bound / (1 - bound)
    wanted = math.floor(z2 * aim / (1 - aim)) + 1
    return max(n + 1, math.ceil(n * wanted / pairs - 1e-9))


def _wilson_samples(p: float, target: float, n: int) -> int | None:
    """The smallest m > n whose Wilson interval around the observed fraction ``p`` (k = p*m, continuous) leaves out
    ``target``; None if no m up to 10^12 does. The bound on ``target``'s side moves monotonically towards ``p`` as
    m grows, so a binary search finds it."""
    z = _z()

    def excludes(m: int) -> bool:
        denom = 2 * (m + z**2)
        center = (2 * m * p + z**2) / denom
        delta = z / denom * math.sqrt(4 * m * p * (1 - p) + z**2)
        return target > center + delta if target > p else target < center - delta

    lo, hi = n + 1, 10**12
    if not excludes(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if excludes(mid) else (mid + 1, hi)
    return lo


@dataclass(frozen=True)
class PairedTest:
    """McNemar's exact test of two cells' per-sample outcomes on the samples they share: ``a_only`` samples have
    outcome 1 under ``a`` and 0 under ``b``, ``b_only`` the reverse; ``p_value`` is the two-sided binomial test of
    the discordant pairs against an even split (1.0 when there are none)."""

    n: int
    a_only: int
    b_only: int
    p_value: float


def mcnemar(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> PairedTest | None:
    """McNemar's exact test of the outcomes ``a`` and ``b`` ((dataset indices, 0/1 outcomes) each), aligned by
    index; None when they share no sample, or when either side's indices are not distinct dataset samples
    (:func:`distinct_samples`: a generated set's images all have index -1, and pairing them by it would test one
    pair). The binomial test at 1/2 is symmetric, so its two-sided p-value is twice the smaller tail (capped at 1,
    :func:`binomial_half_tail`); the tests compare it with ``scipy.stats.binomtest``."""
    if not (distinct_samples(a[0]) and distinct_samples(b[0])):
        return None
    shared, ia, ib = np.intersect1d(a[0], b[0], assume_unique=True, return_indices=True)
    if shared.size == 0:
        return None
    oa, ob = np.asarray(a[1], dtype=bool)[ia], np.asarray(b[1], dtype=bool)[ib]
    a_only, b_only = int((oa & ~ob).sum()), int((~oa & ob).sum())
    discordant = a_only + b_only
    p = min(1.0, 2.0 * binomial_half_tail(min(a_only, b_only), discordant)) if discordant else 1.0
    return PairedTest(int(shared.size), a_only, b_only, p)


def distinct_samples(indices: np.ndarray) -> bool:
    """Whether ``indices`` name distinct dataset samples (none negative, none twice): what outcomes need to be
    paired with another cell's or run's by index."""
    indices = np.asarray(indices)
    return bool(indices.size) and int(indices.min()) >= 0 and np.unique(indices).size == indices.size


#: up to this many trials :func:`binomial_half_tail` sums in integers (at most ~0.5 ms)
EXACT_TRIALS = 2000


def binomial_half_tail(k: int, n: int) -> float:
    """P(B <= ``k``) for B ~ Binomial(``n``, 1/2). Up to :data:`EXACT_TRIALS` trials, the sum of C(n, j) for j <= k
    in integers divided by 2^n, correctly rounded (Python's int division is): exact where ``scipy.special.bdtr``
    is off by up to about 4e-12 relative, and without importing scipy.special (0.13-0.19 s of a warm run, which every
    table with paired cells needs). Above, ``bdtr`` (relative error up to about 1e-10 at 6*10^4 trials), as the
    exact sum's cost grows as k*n."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if n > EXACT_TRIALS:
        from scipy.special import bdtr  # the binomial CDF, without importing scipy.stats

        return float(bdtr(k, n, 0.5))
    term = total = 1
    for j in range(k):
        term = term * (n - j) // (j + 1)  # C(n, j + 1), exactly
        total += term
    return total / (1 << n)
