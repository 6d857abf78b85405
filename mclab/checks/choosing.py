"""Checks for 08_choosing_a_method."""

import pandas as pd

from ..choosing import QUALITY, best_within, find_verdict, gains_over_base, paired_winners
from . import exercise, fail, passed


@exercise("08 easy: the cheapest method that a paired test finds better than the base")
def check_cheapest_company(answer, table: pd.DataFrame, verdicts: list[dict], *,
                           title: str) -> None:
    """`verdicts`: the report's paired tests (`result["verdicts"]`)."""
    from ..stats import format_p

    winners = paired_winners(verdicts, "company_knowledge")
    if answer not in table.index:
        fail(title, f"{answer!r} is not a method in the table",
             f"use a name from `table.index`, e.g. {table.index[0]!r}")
    if answer not in winners:
        test = find_verdict(verdicts, answer, "base", "company_knowledge")
        if test is not None and test["difference"] > 0:
            fail(title, f"{answer!r} scores above the base, but the paired test cannot tell "
                 f"them apart ({format_p(test['p_value'])})",
                 "keep the verdicts against the base with p_value < 0.05 and a positive "
                 "difference")
        fail(title, f"{answer!r} does not beat the base on company knowledge",
             "keep the verdicts against the base with p_value < 0.05 and a positive difference")
    cheapest = table.loc[winners, "train_seconds"].astype(float)
    tied = cheapest[cheapest == cheapest.min()].index
    if answer not in tied:
        fail(title, f"{answer!r} beats the base but trains for "
             f"{table.loc[answer, 'train_seconds']:.0f} s; another winner costs less",
             "sort the winners by train_seconds")
    return passed(title, f"{answer}: {find_verdict(verdicts, answer, 'base', 'company_knowledge')['verdict']}, "
                  f"{cheapest[answer]:.0f} s of training.")


@exercise("08 medium: gain per training minute")
def check_gain_per_minute(answer, table: pd.DataFrame, *, title: str) -> None:
    if not isinstance(answer, pd.Series):
        fail(title, f"expected a pandas Series indexed by method, got {type(answer).__name__}",
             "start from gains_over_base(table, 'locality')")
    gains = gains_over_base(table, "locality")
    minutes = table.loc[gains.index, "train_seconds"].astype(float) / 60
    trained = minutes > 0
    want = (gains[trained] / minutes[trained]).sort_values(ascending=False)
    got = answer.dropna()
    if set(got.index) != set(want.index):
        extra, missing = set(got.index) - set(want.index), set(want.index) - set(got.index)
        fail(title, f"the methods differ: extra {sorted(extra)}, missing {sorted(missing)}",
             "keep only methods that trained (train_seconds > 0) and have a locality score")
    if not ((got.reindex(want.index) - want).abs() < 1e-6).all():
        if ((got.reindex(want.index) * 60 - want).abs() < 1e-6).all():
            fail(title, "the values are per second, not per minute", "divide seconds by 60")
        fail(title, "some values differ from gain / training minutes",
             "gain = locality - base locality; minutes = train_seconds / 60")
    if list(got.index) != list(want.index):
        fail(title, "the values are right but not sorted best first",
             "use .sort_values(ascending=False)")
    return passed(title, f"best value for time: {want.index[0]} ({want.iloc[0]:+.4f} per minute).")


@exercise("08 hard: a method chooser with budgets")
def check_chooser(func, table: pd.DataFrame, *, title: str) -> None:
    cases = []
    for metric in [m for m in QUALITY if m in table]:  # a report may predate a column
        for seconds in (0, 60, float(table["train_seconds"].median()), 1e9):
            for memory in (float(table["peak_memory_mb"].min()), 1800, 1e9):
                cases.append((metric, {"train_seconds": seconds, "peak_memory_mb": memory}))
    for metric, budgets in cases:
        want = best_within(table, metric, budgets)
        got = func(table, metric, budgets)
        if got != want:
            why = "perplexity is better when lower" if metric == "medical_perplexity" else \
                  "skip methods with no number for the metric; budgets are inclusive (<=)"
            if want is None:
                why = "return None when no method fits every budget"
            fail(title, f"for {metric} within {budgets} you chose {got!r}, expected {want!r}",
                 why)
    return passed(title, f"agrees with mclab.choosing.best_within on {len(cases)} budgets.")


def _mcnemar_cases():
    import numpy as np

    rng = np.random.default_rng(0)
    cases = [([1, 1, 0, 1, 1, 0, 1, 1], [1, 0, 0, 0, 1, 1, 0, 0], "b=4 only-A items, c=1 only-B"),
             ([1, 0, 1, 0], [1, 0, 1, 0], "identical answers: no discordant item"),
             ([0, 0, 0, 1, 0], [1, 1, 1, 1, 1], "b=0, c=4")]
    a = rng.random(85) < 0.7
    b = np.where(rng.random(85) < 0.8, a, ~a)
    cases.append((a.astype(int).tolist(), b.astype(int).tolist(), "85 random paired items"))
    return cases


@exercise("08 hard: the exact McNemar p-value behind every verdict")
def check_mcnemar(func, *, title: str) -> None:
    from math import comb

    import numpy as np

    from scipy.stats import binomtest

    for a, b, what in _mcnemar_cases():
        only = (sum(x and not y for x, y in zip(a, b)), sum(y and not x for x, y in zip(a, b)))
        # what mclab.stats.mcnemar_exact returns as p_value (without its bootstrap interval)
        want = 1.0 if sum(only) == 0 else float(binomtest(only[0], sum(only), 0.5).pvalue)
        got = func(list(a), list(b))
        if not isinstance(got, (int, float, np.floating)):
            fail(title, f"expected a p-value (a number), got {type(got).__name__}",
                 "return a float between 0 and 1")
        if abs(float(got) - want) < 1e-9:
            continue
        only_a = sum(x and not y for x, y in zip(a, b))
        only_b = sum(y and not x for x, y in zip(a, b))
        n = only_a + only_b
        one_sided = sum(comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n if n else 1.0
        if abs(float(got) - one_sided) < 1e-9:
            fail(title, f"{what}: {float(got):.4f} is one-sided; the two-sided p-value is "
                 f"{want:.4f}",
                 "double the tail (and cap at 1): either method could have been the better one")
        if float(got) > 1:
            fail(title, f"{what}: {float(got):.4f} is above 1", "cap the doubled tail at 1")
        fail(title, f"{what}: your p-value {float(got):.4f} differs from scipy's binomial test "
             f"{want:.4f} (only A right: {only_a}, only B right: {only_b})",
             "keep only the discordant items (one method right, the other wrong); under 'no "
             "difference' each is A's with probability 1/2: p = min(1, 2 * P(X <= min(b, c))) "
             "for X ~ Binomial(b + c, 1/2); with no discordant item p = 1")
    return passed(title, "the same p-values as scipy's binomtest, which "
                  "mclab.stats.mcnemar_exact uses: items both methods got right or both wrong "
                  "say nothing about which is better.")
