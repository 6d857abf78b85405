"""The report's figure: labels that do not overlap each other or the legend."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.text import Text  # noqa: E402

from mclab.plotting import plot_quality_vs_cost  # noqa: E402

REPORT = Path(__file__).resolve().parent.parent / "reports" / "comparison.json"


def _rows(n: int) -> list[dict]:
    """`n` methods crowded into one corner: the same cost, scores 0.001 apart."""
    return [{"method": f"method number {i}", "train_seconds": 100.0, "peak_memory_mb": 2000,
             "company_knowledge": 0.2 + i / 1000, "company_knowledge_ci": [0.1, 0.3],
             "locality": 0.0} for i in range(n)]


def _labels_and_legends(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        texts = [Text.get_window_extent(t, renderer) for t in ax.texts]
        yield ax, texts, ax.get_legend().get_window_extent(renderer)


def test_crowded_labels_are_separated_from_each_other_and_the_legend():
    report = json.loads(REPORT.read_text())
    for rows, refs in ((report["rows"], report.get("references")), (_rows(12), None)):
        fig = plot_quality_vs_cost(rows, references=refs)
        for ax, boxes, legend in _labels_and_legends(fig):
            assert boxes, "every point is labelled"
            for i, box in enumerate(boxes):
                assert not box.overlaps(legend), ax.texts[i].get_text()
                for j in range(i + 1, len(boxes)):
                    assert not box.overlaps(boxes[j]), (ax.texts[i].get_text(),
                                                        ax.texts[j].get_text())
        matplotlib.pyplot.close(fig)
