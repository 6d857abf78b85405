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
