"""Honest numbers: a 95% interval on every score, a paired test behind every "A beats B".

Items are the unit of resampling: methods are scored on the same held-out items, so a
comparison resamples item indices once and applies them to both methods (a paired test).

A statistic may read several per-item arrays resampled together: pass them as a tuple and
`stat` receives them in that order, e.g. perplexity over texts of different lengths:

    bootstrap_ci((nll, tokens), stat=lambda nll, tok: np.exp(nll.sum() / tok.sum()))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

# below this the 2.5% tails of a 95% interval rest on fewer than 25 resamples each
MIN_RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = 0.95  # coverage the interval was built for

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class PairedResult:
    """stat(A) - stat(B) on the same items, with its paired bootstrap p-value."""

    difference: Interval
    p_value: float
    n: int  # items both methods were scored on


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test of two methods' correct/incorrect answers on the same items."""

    b: int  # items A got right and B got wrong
    c: int  # items A got wrong and B got right
    p_value: float
    difference: Interval  # accuracy(A) - accuracy(B), paired bootstrap interval
    n: int


def as_columns(values) -> list[np.ndarray]:
    """One float array per per-item column: a tuple means several columns, anything else one."""
    columns = list(values) if isinstance(values, tuple) else [values]
    if not columns:
        raise ValueError("an empty tuple: pass one per-item array, or a tuple of them")
    arrays = [np.asarray(column, dtype=float) for column in columns]
    if any(array.ndim != 1 for array in arrays):
        raise ValueError("each per-item array must be 1-D (a tuple means several arrays; "
                         "pass a list or an array for a single one)")
    if len({len(array) for array in arrays}) > 1:
        raise ValueError(f"per-item arrays differ in length: {[len(a) for a in arrays]}")
    if len(arrays[0]) == 0:
        raise ValueError("no items: cannot compute a statistic on an empty array")
    if any(np.isnan(array).any() for array in arrays):
        raise ValueError("per-item values contain NaN: score every item or drop it on both sides")
    return arrays


def check_settings(n_resamples: int, level: float) -> None:
    """Raise before any work if the bootstrap settings cannot give a trustworthy interval."""
    if n_resamples < MIN_RESAMPLES:
        raise ValueError(f"n_resamples={n_resamples}: use at least {MIN_RESAMPLES}")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: must lie strictly between 0 and 1")


def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) item indices drawn with replacement; shared by both sides of a pair."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def resample_stat(columns: list[np.ndarray], stat, indices: np.ndarray) -> np.ndarray:
    """stat on every resample: one vectorised mean for the common case, else one call each."""
    if stat is np.mean and len(columns) == 1:
        return columns[0][indices].mean(axis=1)
    return np.array([stat(*(column[row] for column in columns)) for row in indices], float)


def percentile_interval(estimate: float, resampled: np.ndarray, level: float) -> Interval:
    """The percentile bootstrap interval around `estimate`."""
    tail = (1 - level) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def bootstrap_ci(values, stat=np.mean, n_resamples: int = 2000, level: float = 0.95,
                 seed: int = 0) -> Interval:
    """Percentile bootstrap interval of stat over items (a tuple of arrays: stat(*arrays))."""
    columns = as_columns(values)
    check_settings(n_resamples, level)
    indices = resample_indices(len(columns[0]), n_resamples, seed)
    resampled = resample_stat(columns, stat, indices)
    return percentile_interval(stat(*columns), resampled, level)


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided p of "no difference": twice the smaller share of resamples on either side of 0.

    Agrees with the percentile interval (p < 1 - level about when 0 lies outside it). The +1
    counts the observed data as one resample, so p is never reported as exactly 0.
    """
    below = np.count_nonzero(differences <= 0)
    above = np.count_nonzero(differences >= 0)
    return float(min(1.0, 2 * (min(below, above) + 1) / (len(differences) + 1)))


def paired_bootstrap(values_a, values_b, stat=np.mean, n_resamples: int = 2000,
                     level: float = 0.95, seed: int = 0) -> PairedResult:
    """Interval and p-value of stat(A) - stat(B), resampling the same items for both."""
    columns_a, columns_b = as_columns(values_a), as_columns(values_b)
    if len(columns_a) != len(columns_b):
        raise ValueError(f"A has {len(columns_a)} per-item arrays, B has {len(columns_b)}")
    if len(columns_a[0]) != len(columns_b[0]):
        raise ValueError(f"A has {len(columns_a[0])} items, B has {len(columns_b[0])}: "
                         "a paired test needs both scored on the same items")
    check_settings(n_resamples, level)
    indices = resample_indices(len(columns_a[0]), n_resamples, seed)
    differences = resample_stat(columns_a, stat, indices) - resample_stat(columns_b, stat, indices)
    estimate = stat(*columns_a) - stat(*columns_b)
    interval = percentile_interval(estimate, differences, level)
    return PairedResult(interval, bootstrap_p_value(differences), len(columns_a[0]))


def as_correct(values, side: str) -> np.ndarray:
    """A bool array of correct answers, refusing anything but 0/1 per item."""
    # one array of answers, never columns: a tuple of 0/1 is a student's natural input here
    (array,) = as_columns(np.asarray(values))
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"correct_{side} must hold 0/1 (or True/False) per item, "
                         f"got values like {np.setdiff1d(array, (0, 1))[:3].tolist()}")
    return array.astype(bool)


def mcnemar_exact(correct_a, correct_b, n_resamples: int = 2000, level: float = 0.95,
                  seed: int = 0) -> McNemarResult:
    """Exact McNemar test: a binomial test (p = 0.5) on the items only one method got right."""
    a, b_side = as_correct(correct_a, "a"), as_correct(correct_b, "b")
    if len(a) != len(b_side):
        raise ValueError(f"correct_a has {len(a)} items, correct_b has {len(b_side)}: "
                         "a paired test needs both scored on the same items")
    b = int(np.count_nonzero(a & ~b_side))
    c = int(np.count_nonzero(~a & b_side))
    # no discordant item is no evidence either way; binomtest refuses n = 0
    p_value = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    paired = paired_bootstrap(a, b_side, np.mean, n_resamples, level, seed)
    return McNemarResult(b, c, p_value, paired.difference, len(a))


def format_p(p: float) -> str:
    """`p = 0.012`, `p = 1.0`, `p < 0.001`: three decimals at most, as a reader wants them."""
    if p < 0.001:
        return "p < 0.001"
    text = f"{p:.3f}".rstrip("0")
    return f"p = {text}0" if text.endswith(".") else f"p = {text}"


def verdict(result: McNemarResult | PairedResult, alpha: float = 0.05, names=("A", "B"),
            n: int | None = None, higher_is_better: bool = True) -> str:
    """The sentence a notebook prints: who beats whom, or "cannot tell", with the evidence.

    Numbers follow the order the names appear in the sentence (winner first), and the
    sentence says so: "difference (CPT − base) -10.7" where the result's own difference is
    A − B. For a lower-is-better metric (perplexity) pass higher_is_better=False.
    """
    n = result.n if n is None else n
    estimate = result.difference.estimate
    decided = result.p_value < alpha and estimate != 0
    swap = decided and (estimate > 0) != higher_is_better  # B is the winner: name it first
    first, second = names[::-1] if swap else names
    head = (f"{first} beats {second}" if decided
            else f"cannot tell {first} from {second} on {n} items")
    if isinstance(result, McNemarResult):
        ahead, behind = (result.c, result.b) if swap else (result.b, result.c)
        return (f"{head} (exact McNemar {format_p(result.p_value)}, "
                f"{ahead} vs {behind} discordant items)")
    diff = result.difference
    low, high = (-diff.high, -diff.low) if swap else (diff.low, diff.high)
    estimate = -estimate if swap else estimate
    return (f"{head} (paired bootstrap {format_p(result.p_value)}, "
            f"difference ({first} − {second}) {estimate:+.3g}, "
            f"{diff.level:.0%} CI [{low:.3g}, {high:.3g}])")


def pooled_perplexity(nll, tokens) -> float:
    """exp(total negative log-likelihood / total tokens) over texts: the corpus perplexity
    `mclab.evaluation.perplexity` reports, from its per-text parts (`perplexity_items`)."""
    return float(np.exp(np.sum(nll) / np.sum(tokens)))


def perplexity_ci(nll, tokens, **kwargs) -> Interval:
    """Bootstrap interval of the pooled perplexity, resampling texts."""
    return bootstrap_ci((nll, tokens), stat=pooled_perplexity, **kwargs)


def paired_perplexity(a: tuple, b: tuple, **kwargs) -> PairedResult:
    """Perplexity(A) - perplexity(B) on the same texts (each side: per-text nll, tokens),
    paired bootstrap over texts; negative means A predicts the texts better."""
    return paired_bootstrap(tuple(a), tuple(b), stat=pooled_perplexity, **kwargs)

