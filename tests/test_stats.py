"""mclab.stats on hand-made cases: p-values known by hand, coverage on a known distribution."""

import numpy as np
import pytest
from scipy.stats import binomtest

from mclab.stats import (Interval, bootstrap_ci, format_p, mcnemar_exact, paired_bootstrap,
                         verdict)


def perplexity(nll, tokens):
    return np.exp(nll.sum() / tokens.sum())


def make_pairs(b: int, c: int, both: int = 3, neither: int = 2):
    """Correct/incorrect arrays with b items only A got right and c only B got right."""
    correct_a = [1] * b + [0] * c + [1] * both + [0] * neither
    correct_b = [0] * b + [1] * c + [1] * both + [0] * neither
    return np.array(correct_a), np.array(correct_b)


@pytest.mark.parametrize("b, c, expected", [
    (5, 4, 1.0),
    (10, 0, 2 * 0.5**10),  # 0.001953125
    (6, 1, 2 * (1 + 7) / 128),  # P(X <= 1) for X ~ Bin(7, 1/2), doubled: 0.125
    (0, 0, 1.0),  # no discordant item: no evidence either way
])
def test_mcnemar_exact_p_values_known_by_hand(b, c, expected):
    result = mcnemar_exact(*make_pairs(b, c))
    assert (result.b, result.c) == (b, c)
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert result.n == b + c + 5
    assert result.difference.estimate == pytest.approx((b - c) / result.n)


def test_mcnemar_exact_takes_lists_tuples_and_bools():
    as_arrays = mcnemar_exact(*make_pairs(6, 1))
    assert mcnemar_exact(*(tuple(x) for x in make_pairs(6, 1))) == as_arrays
    assert mcnemar_exact(*(x.astype(bool).tolist() for x in make_pairs(6, 1))) == as_arrays


def test_mcnemar_exact_matches_binomtest_on_a_random_case():
    rng = np.random.default_rng(7)
    correct_a, correct_b = rng.random(85) < 0.45, rng.random(85) < 0.35
    result = mcnemar_exact(correct_a, correct_b)
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    assert (result.b, result.c) == (b, c)
    assert result.p_value == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
    low, high = result.difference.low, result.difference.high
    assert low <= result.difference.estimate <= high


def test_bootstrap_ci_covers_a_bernoulli_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    datasets = rng.random((200, 85)) < 0.3
    covered = [
        (ci := bootstrap_ci(data, n_resamples=1000, seed=i)).low <= 0.3 <= ci.high
        for i, data in enumerate(datasets)
    ]
    assert 0.90 <= np.mean(covered) <= 0.98


def test_bootstrap_ci_is_deterministic_given_the_seed():
    scores = np.random.default_rng(1).random(68)
    assert bootstrap_ci(scores, seed=3) == bootstrap_ci(scores, seed=3)
    assert bootstrap_ci(scores, seed=3) != bootstrap_ci(scores, seed=4)


def test_vectorised_mean_equals_one_call_per_resample():
    scores = np.random.default_rng(2).random(68)
    fast = bootstrap_ci(scores)
    slow = bootstrap_ci(scores, stat=lambda values: values.mean())
    assert fast.low == pytest.approx(slow.low) and fast.high == pytest.approx(slow.high)


def test_ratio_statistic_resamples_its_arrays_together():
    tokens = np.array([20.0, 35, 50, 80, 120])
    nll = 2.5 * tokens  # every text has the same NLL per token: resampled together, no spread
    ci = bootstrap_ci((nll, tokens), stat=perplexity)
    assert ci.estimate == pytest.approx(np.exp(2.5))
    assert ci.low == pytest.approx(np.exp(2.5)) and ci.high == pytest.approx(np.exp(2.5))


def test_interval_prints_estimate_and_bounds():
    assert str(Interval(0.3412, 0.2471, 0.4468)) == "0.341 [0.247, 0.447]"


def test_paired_bootstrap_of_identical_arrays_is_zero_at_zero():
    scores = np.random.default_rng(3).random(68)
    result = paired_bootstrap(scores, scores)
    assert (result.difference.estimate, result.difference.low, result.difference.high) == (0, 0, 0)
    assert result.p_value == 1.0
    assert verdict(result).startswith("cannot tell A from B on 68 items")


def test_paired_bootstrap_finds_a_clear_shift():
    rng = np.random.default_rng(4)
    scores_b = rng.random(68)
    result = paired_bootstrap(scores_b + 0.1 + rng.normal(0, 0.02, 68), scores_b)
    assert 0 < result.difference.low < 0.1 < result.difference.high
    assert result.p_value < 0.01


def test_verdict_on_a_tie_and_on_clear_cases():
    assert verdict(mcnemar_exact(*make_pairs(5, 4))) == (
        "cannot tell A from B on 14 items (exact McNemar p = 1.0, 5 vs 4 discordant items)")
    assert verdict(mcnemar_exact(*make_pairs(10, 0)), names=("RAG", "SFT"), n=85) == (
        "RAG beats SFT (exact McNemar p = 0.002, 10 vs 0 discordant items)")
    assert verdict(mcnemar_exact(*make_pairs(0, 10)), names=("RAG", "SFT")) == (
        "SFT beats RAG (exact McNemar p = 0.002, 10 vs 0 discordant items)")
    # 6 vs 1 is a clear majority but p = 0.125: not enough items to tell
    assert verdict(mcnemar_exact(*make_pairs(6, 1))).startswith("cannot tell")


def test_lower_is_better_flips_the_winner():
    rng = np.random.default_rng(5)
    tokens = rng.integers(20, 120, size=12).astype(float)
    nll_a = tokens * rng.uniform(2.0, 2.2, size=12)
    nll_b = tokens * rng.uniform(2.6, 2.8, size=12)  # B's perplexity is clearly higher
    result = paired_bootstrap((nll_a, tokens), (nll_b, tokens), stat=perplexity)
    assert result.difference.high < 0
    higher = verdict(result, names=("CPT", "base"))
    lower = verdict(result, names=("CPT", "base"), higher_is_better=False)
    assert higher.startswith("base beats CPT") and "difference (base − CPT) +" in higher
    assert lower.startswith("CPT beats base") and "difference (CPT − base) -" in lower
    # the interval is the named difference's: base − CPT's perplexity is positive
    low = float(higher.split("CI [")[1].split(",")[0])
    assert low > 0


@pytest.mark.parametrize("p, text", [
    (1.0, "p = 1.0"), (0.125, "p = 0.125"), (0.5, "p = 0.5"), (0.0123, "p = 0.012"),
    (0.001953125, "p = 0.002"), (0.0004, "p < 0.001"),
])
def test_format_p(p, text):
    assert format_p(p) == text


@pytest.mark.parametrize("call, message", [
    (lambda: mcnemar_exact([1, 0, 1], [1, 0]), "3 items, correct_b has 2"),
    (lambda: mcnemar_exact([], []), "no items"),
    (lambda: mcnemar_exact([1, 0, 2], [1, 0, 1]), "0/1"),
    (lambda: mcnemar_exact([1, 0, 0.5], [1, 0, 1]), "0/1"),
    (lambda: paired_bootstrap([0.1, 0.2], [0.3]), "same items"),
    (lambda: paired_bootstrap(([1.0], [2.0]), [1.0]), "per-item arrays"),
    (lambda: bootstrap_ci([0.1, np.nan]), "NaN"),
    (lambda: bootstrap_ci(([1.0, 2.0], [3.0])), "differ in length"),
    (lambda: bootstrap_ci((0.1, 0.2)), "1-D"),
    (lambda: bootstrap_ci([0.1, 0.2], n_resamples=100), "at least 1000"),
    (lambda: bootstrap_ci([0.1, 0.2], level=95), "between 0 and 1"),
])
def test_bad_input_raises_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_pooled_perplexity_weighs_texts_by_their_tokens():
    from mclab.stats import pooled_perplexity

    # 2 nats over 1 token and 4 over 3: exp(6 / 4), not the mean of exp(2) and exp(4 / 3)
    assert pooled_perplexity([2.0, 4.0], [1, 3]) == pytest.approx(np.exp(1.5))


def test_paired_perplexity_names_the_lower_one_the_winner():
    from mclab.stats import paired_perplexity, perplexity_ci

    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 150, size=16).astype(float)
    nll_b = tokens * rng.uniform(2.0, 2.6, size=16)
    nll_a = nll_b - 0.2 * tokens  # a predicts every text better
    ci = perplexity_ci(nll_a, tokens)
    assert ci.low < ci.estimate < ci.high
    assert ci.estimate == pytest.approx(perplexity(nll_a, tokens))
    result = paired_perplexity((nll_a, tokens), (nll_b, tokens))
    assert result.difference.estimate < 0 and result.difference.high < 0 and result.p_value < 0.01
    text = verdict(result, names=("CPT", "SFT"), higher_is_better=False)
    assert text.startswith("CPT beats SFT")
    same = paired_perplexity((nll_a, tokens), (nll_a, tokens))
    assert same.p_value == 1.0 and verdict(same, names=("a", "b"), higher_is_better=False) \
        .startswith("cannot tell a from b on 16 items")
