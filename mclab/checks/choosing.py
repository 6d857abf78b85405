"""Checks for 08_choosing_a_method."""

import pandas as pd

from ..choosing import QUALITY, best_within, gains_over_base
from . import exercise, fail, passed


@exercise("08 easy: the cheapest method that beats the base on company knowledge")
def check_cheapest_company(answer, table: pd.DataFrame, margin: float = 0.0, *,
                           title: str) -> None:
    """`margin`: the gain a winner must exceed (the eval's noise; 0 counts any gain)."""
    gains = gains_over_base(table, "company_knowledge")
    winners = gains[gains > margin]
    if answer not in table.index:
        fail(title, f"{answer!r} is not a method in the table",
             "use a name from `table.index`, e.g. 'RAG (hybrid, k=2)'")
    if answer in gains.index and 0 < gains[answer] <= margin:
        fail(title, f"{answer!r} gains {gains[answer]:+.3f} over the base, not more than the "
             f"noise ({margin:.3f})", "keep the methods whose gain is larger than `margin`")
    if answer not in winners.index:
        fail(title, f"{answer!r} does not beat the base on company knowledge "
             f"({table.loc[answer, 'company_knowledge']:.3f} vs {table.loc['base', 'company_knowledge']:.3f})",
             "keep the methods whose company_knowledge is above the base row's")
    cheapest = table.loc[winners.index, "train_seconds"].astype(float)
    tied = cheapest[cheapest == cheapest.min()].index
    if answer not in tied:
        fail(title, f"{answer!r} beats the base but trains for "
             f"{table.loc[answer, 'train_seconds']:.0f} s; another winner costs less",
             "sort the winners by train_seconds")
    return passed(title, f"{answer} (+{winners[answer]:.3f}, {cheapest[answer]:.0f} s of training).")


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
    for metric in QUALITY:
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
