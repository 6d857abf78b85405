"""Matplotlib figures shared by the notebooks: method vs method on the same axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.text import Text
from matplotlib.transforms import Bbox

# metric -> (axis label, higher is better)
METRICS = {
    "company_knowledge": ("company knowledge (accuracy)", True),
    "medical_knowledge": ("medical terms (accuracy)", True),
    "medical_perplexity": ("medical perplexity", False),
    "general_perplexity": ("general perplexity", False),
    "locality": ("locality score", True),
}
CHANCE = {"company_knowledge": 0.25, "medical_knowledge": 0.25}


def plot_scorecards(cards: dict, metrics=tuple(METRICS), title: str | None = None):
    """One bar panel per metric, one bar per model; chance level drawn where it exists."""
    names = list(cards)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        label, higher = METRICS[metric]
        values = [getattr(cards[n], metric) if not isinstance(cards[n], dict)
                  else cards[n][metric] for n in names]
        bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
        ax.bar_label(bars, fmt="%.2f" if max(values) < 10 else "%.1f", fontsize=8)
        if metric in CHANCE:
            ax.axhline(CHANCE[metric], ls="--", c="gray", lw=1, label="chance")
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title(label + (" ↑" if higher else " ↓"), fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: list[dict], keys=("loss",), title: str | None = None, ax=None):
    """Curves of logged values (loss, eval_loss, reward, ...) against the step."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for key in keys:
        rows = [r for r in history if key in r]
        if rows:
            ax.plot([r["step"] for r in rows], [float(r[key]) for r in rows], marker=".",
                    label=key)
    ax.set_xlabel("step")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_probe_curves(curves: dict, keys=("ppl/general", "ppl/medical"), titles=None):
    """One panel per probe (e.g. general and medical perplexity), one line per run.

    `curves` maps a run's name to its `mclab.curves.LiveCurves` (or anything with
    `.series(key) -> (steps, values)`), so runs of different lengths share the axes.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.4), squeeze=False)
    for ax, key, title in zip(axes[0], keys, titles or keys):
        for i, (name, run) in enumerate(curves.items()):
            steps, values = run.series(key)
            if steps:
                ax.plot(steps, values, marker=".", color=f"C{i}", label=name)
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_series(x, series: dict, xlabel: str, ylabel: str, title: str | None = None, ax=None):
    """Several lines over the same x (e.g. score against number of shots)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def separate_labels(ax, labels, markers=None, step: float = 2.0,
                    reach: float = 80.0) -> None:
    """Place each point's label inside the axes where it overlaps no other label, no other
    method's point and not the legend: beside its point if that is free, else the nearest
    free height up or down (in steps of `step` points, up to `reach`), on the right of the
    point or on its left; a thin leader line joins a moved label to its point.

    The nearest free height wins, on either side (the right first at equal heights).
    `markers`: per label, its point's marker as (x, y, size) in data units and scatter's
    `s` (points squared); a label may touch its own marker, where its leader line starts.
    Labels are placed top to bottom, each against those placed before it (greedy: no
    back-and-forth). Call it once the figure's layout is final (after `tight_layout`): the
    labels sit at offsets in points from their data points, and a layout that shrinks the
    axes moves the points closer together."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72  # points to pixels
    dots = []
    for x, y, size in markers or []:
        cx, cy = ax.transData.transform((x, y))
        r = (size ** 0.5) / 2 * scale  # scatter's s is the marker's area in points^2
        dots.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    frame = ax.get_window_extent(renderer)  # labels stay inside the axes
    legend = ax.get_legend()
    blocked = [legend.get_window_extent(renderer)] if legend else []
    heights = [0.0] + [sign * k * step for k in range(1, int(reach / step) + 1)
                       for sign in (1, -1)]
    order = sorted(range(len(labels)), key=lambda i: -ax.transData.transform(labels[i].xy)[1])
    placed = []
    for i in order:
        label, start = labels[i], labels[i].xyann
        obstacles = placed + blocked + [d for j, d in enumerate(dots) if j != i]
        sides = ((start[0], "left"), (-start[0], "right"))  # right of the point, then left
        for dy, (dx, align) in ((h, side) for h in heights for side in sides):
            label.xyann = (dx, start[1] + dy)
            label.set_ha(align)
            box = Text.get_window_extent(label, renderer).expanded(1.0, 1.05)
            inside = (frame.x0 <= box.x0 and box.x1 <= frame.x1
                      and frame.y0 <= box.y0 and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(o) for o in obstacles):
                break
        else:  # nowhere free within reach: beside the point, as drawn
            label.xyann = start
            label.set_ha("left")
            box = Text.get_window_extent(label, renderer)
        placed.append(box)


REFERENCE_STYLE = {"copy the sentence": dict(ls=":", c="C3"),
                   'copy + ", mate"': dict(ls="-.", c="C1"),
                   "reference rewrites (ceiling)": dict(ls="--", c="C2")}


def draw_references(ax, references: list[dict], metric: str) -> None:
    """A horizontal line per reference row inside the methods' range; one far above it (the
    hand-written rewrites' ceiling) is named in the legend instead, so that the methods'
    points are not squashed into the bottom of the panel."""
    top = ax.get_ylim()[1]
    for ref in references:
        if (value := ref.get(metric)) is None:
            continue
        style = REFERENCE_STYLE.get(ref["method"], dict(ls="--", c="k"))
        label = f"reference: {ref['method']} ({value:.3f})"
        if value <= top:
            ax.axhline(value, lw=1, label=label, **style)
        else:
            ax.plot([], [], lw=1, label=f"{label}, above this axis", **style)


def plot_quality_vs_cost(rows: list[dict], cost: str = "train_seconds",
                         references: list[dict] | None = None):
    """Quality against cost, one point per method: company knowledge and locality panels.

    A method without a number for a panel's metric (e.g. RAG has no rewrite variant) is left
    out of that panel. The cost axis is logarithmic (1 + seconds: untrained methods sit at 1).
    `references` (the report's rows that bound a score, such as copying the sentence or the
    hand-written rewrites) are horizontal lines, not points: they cost nothing because they
    are not methods, and a point at cost 0 would read as a free method.
    """
    panels = [("company_knowledge", "company knowledge (accuracy)"),
              ("locality", "locality score")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))  # height: room to label crowded points
    panel_labels = []
    for ax, (metric, label) in zip(axes, panels):
        points = [r for r in rows if r.get(metric) is not None]
        labels, markers = [], []
        for i, r in enumerate(points):
            x = 1 + (r.get(cost) or 0)
            size = 30 + (r.get("peak_memory_mb") or 0) / 15
            ax.scatter(x, r[metric], s=size, color=f"C{i % 10}", alpha=0.8, edgecolor="k",
                       lw=0.5)
            markers.append((x, r[metric], size))
            if r.get(f"{metric}_ci"):  # the 95% interval over items
                low, high = r[f"{metric}_ci"]
                ax.vlines(x, low, high, color=f"C{i % 10}", lw=1.2)
            # a thin leader line shows which point a label belongs to once it is moved
            labels.append(ax.annotate(r["method"], (x, r[metric]), fontsize=7, xytext=(6, 0),
                                      textcoords="offset points", va="center",
                                      arrowprops=dict(arrowstyle="-", color="0.55", lw=0.4,
                                                      shrinkA=0, shrinkB=4)))
        panel_labels.append((ax, labels, markers))
        base = next((r[metric] for r in rows if r["method"] == "base"), None)
        if base is not None:
            ax.axhline(base, ls=":", c="gray", lw=1, label="base model")
        if metric in CHANCE:
            ax.axhline(CHANCE[metric], ls="--", c="lightgray", lw=1, label="chance")
        draw_references(ax, references or [], metric)
        ax.set_xscale("log")
        ax.margins(y=0.15)  # room inside the axes for a stack of labels at the lowest score
        ax.set_xlabel(f"1 + {cost.replace('_', ' ')} (log scale)")
        ax.set_ylabel(label)
        # the legend sits under the axes, where no point or label can be
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.suptitle("Quality vs training cost (marker size: peak memory; bars: 95% intervals)",
                 fontsize=11)
    fig.tight_layout()
    for ax, labels, markers in panel_labels:  # after the layout, which moves the points
        separate_labels(ax, labels, markers=markers)
    return fig
