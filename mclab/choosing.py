"""Reading the comparison table: gains over the base, the best method within a budget, and
the panel of notebook 08. Pure functions of the table that `mclab.report` writes."""

from __future__ import annotations

import math

import pandas as pd

# metric -> higher is better?
QUALITY = {"company_knowledge": True, "company_uncovered": True, "company_answer_match": True,
           "abstain_unanswerable": True, "medical_perplexity": False, "medical_knowledge": True,
           "locality": True}
COSTS = ("train_seconds", "peak_memory_mb", "ms_per_answer", "storage_mb", "trainable_params")


class ChoiceError(ValueError):
    """A metric, cost or budget the table cannot answer."""


def _check_metric(metric: str) -> None:
    if metric not in QUALITY:
        raise ChoiceError(f"unknown metric {metric!r}; choose one of {', '.join(QUALITY)}")


def gains_over_base(table: pd.DataFrame, metric: str) -> pd.Series:
    """Each method's improvement over the base row (positive = better, whatever the metric's
    direction); methods without a number for the metric are left out."""
    _check_metric(metric)
    if "base" not in table.index:
        raise ChoiceError("the table has no 'base' row to compare with")
    values = table[metric].dropna().astype(float)
    gain = values - values["base"]
    return (gain if QUALITY[metric] else -gain).drop("base")


def within_budgets(table: pd.DataFrame, budgets: dict | None = None) -> pd.Series:
    """True for each method within every `{cost: limit}` budget (limits inclusive)."""
    fits = pd.Series(True, index=table.index)
    for cost, limit in (budgets or {}).items():
        if cost not in COSTS:
            raise ChoiceError(f"unknown cost {cost!r}; choose from {', '.join(COSTS)}")
        if limit is None or (isinstance(limit, float) and math.isnan(limit)) or limit < 0:
            raise ChoiceError(f"the budget for {cost} must be a number >= 0, got {limit!r}")
        fits &= table[cost].astype(float) <= limit
    return fits


def best_within(table: pd.DataFrame, metric: str, budgets: dict | None = None) -> str | None:
    """The method with the best `metric` among those within every `{cost: limit}` budget;
    None if no method qualifies."""
    _check_metric(metric)
    fits = within_budgets(table, budgets)
    rows = table[table[metric].notna() & fits]
    if rows.empty:
        return None
    values = rows[metric].astype(float)
    return str(values.idxmax() if QUALITY[metric] else values.idxmin())


def cheapest_gain(table: pd.DataFrame, metric: str, cost: str = "train_seconds",
                  min_gain: float = 0.0, winners=None) -> str | None:
    """Among methods that beat the base on `metric`, the one with the lowest `cost`.

    `winners`: the methods a paired test found better than the base (`paired_winners`);
    without it, every method whose gain exceeds `min_gain` counts.
    """
    gains = gains_over_base(table, metric)
    better = gains[gains > min_gain].index
    if winners is not None:
        better = [m for m in better if m in set(winners)]
    if not len(better):
        return None
    return str(table.loc[list(better), cost].astype(float).idxmin())


def find_verdict(verdicts: list[dict], a: str, b: str, metric: str) -> dict | None:
    """The report's paired test of `a` against `b` on `metric` (None if not run)."""
    return next((v for v in verdicts if (v["a"], v["b"], v["metric"]) == (a, b, metric)), None)


def against_runner_up(table: pd.DataFrame, verdicts: list[dict], metric: str) -> str:
    """The paired test behind "the best score among `table`'s methods" (the highest, or the
    lowest for perplexity): the leader against the runner-up (the report tests that pair,
    `report_table.leader_pair`), as a sentence; "cannot tell" when the test cannot."""
    best = best_within(table, metric)
    second = best_within(table.drop(index=best), metric) if best is not None else None
    if second is None:
        return "no other method to compare it with"
    v = find_verdict(verdicts, best, second, metric) or find_verdict(verdicts, second, best,
                                                                      metric)
    if v is None:
        return f"no paired test of {best} against {second}, the next, in this report"
    return f"against the next, {second}: **{v['verdict']}**"


def paired_winners(verdicts: list[dict], metric: str, against: str = "base",
                   alpha: float = 0.05) -> list[str]:
    """The methods the paired test found better than `against` on `metric` (p < alpha)."""
    sign = 1 if QUALITY.get(metric, True) else -1
    return [v["a"] for v in verdicts if v["metric"] == metric and v["b"] == against
            and v["p_value"] < alpha and sign * v["difference"] > 0]


def cpt_before_sft_advice(verdicts: list[dict], pipeline: str, sft: str,
                          alpha: float = 0.05) -> str:
    """Whether continued pre-training before SFT helped, as the report's paired tests of
    `pipeline` (CPT then SFT) against `sft` (SFT alone) say: it helps only where a test
    finds it better, and "cannot tell" is said with the number of items."""
    found = {m: find_verdict(verdicts, pipeline, sft, m)
             for m in ("medical_knowledge", "medical_perplexity")}
    if not any(found.values()):
        return (f"no paired test of {pipeline} against {sft} in this report: rerun "
                f'`python -m mclab report --only "{sft}" "{pipeline}"`')
    better, worse, unclear = [], [], []
    for metric, v in found.items():
        if v is None:
            continue
        what = "medical terms" if metric == "medical_knowledge" else "held-out perplexity"
        sign = 1 if QUALITY[metric] else -1
        if v["p_value"] >= alpha or v["difference"] == 0:
            unclear.append(f"cannot tell on {v['n']} items ({what})")
        else:
            (better if sign * v["difference"] > 0 else worse).append(what)
    parts = []
    if better:
        parts.append(f"CPT before SFT **helped** here on {' and '.join(better)}")
    if worse:
        parts.append(f"it **hurt** on {' and '.join(worse)}")
    if not better and not worse:
        parts.append("CPT before SFT has **not** shown that it helps here")
    return "; ".join(parts + unclear)


def choice_panel(table: pd.DataFrame):
    """Pick a metric and budgets; the panel names the best method and redraws the scatter."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from .widgets import panel

    controls = {
        "metric": w.Dropdown(options=[m for m in QUALITY if m in table],
                             value="company_knowledge",
                             description="metric"),
        "seconds": w.FloatLogSlider(value=float(table["train_seconds"].max()) + 1, base=10,
                                    min=0, max=math.log10(float(table["train_seconds"].max()) + 10),
                                    step=0.1, description="train s ≤", continuous_update=False),
        "memory": w.IntSlider(value=int(table["peak_memory_mb"].max()) + 1, min=500,
                              max=int(table["peak_memory_mb"].max()) + 1, step=50,
                              description="memory MB ≤", continuous_update=False),
        "latency": w.FloatLogSlider(value=float(table["ms_per_answer"].max()) + 1, base=10, min=1,
                                    max=math.log10(float(table["ms_per_answer"].max()) + 10),
                                    step=0.1, description="ms/answer ≤", continuous_update=False),
    }

    def compute(metric, seconds, memory, latency):
        budgets = {"train_seconds": seconds, "peak_memory_mb": memory, "ms_per_answer": latency}
        rows = table[table[metric].notna()]
        return best_within(table, metric, budgets), rows, within_budgets(rows, budgets)

    def render(result, values):
        best, rows, fits = result
        metric = values["metric"]
        fig, ax = plt.subplots(figsize=(7, 3.6))
        x = 1 + rows["train_seconds"].astype(float)
        ax.scatter(x[~fits], rows.loc[~fits, metric], c="lightgray", label="over budget")
        ax.scatter(x[fits], rows.loc[fits, metric], c="C0", label="within budget")
        if best is not None:
            ax.scatter([1 + table.loc[best, "train_seconds"]], [table.loc[best, metric]],
                       s=160, facecolors="none", edgecolors="C3", lw=2, label="best")
        for name, xv, yv in zip(rows.index, x, rows[metric]):
            ax.annotate(name, (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("1 + training seconds (log)")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
        plt.show()
        print(f"best within budget on {metric}: {best or 'none qualifies'}")

    return panel(controls, compute, render, layout=[["metric", "seconds"], ["memory", "latency"]])
