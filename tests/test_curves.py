"""LiveCurves records train/val points and probe perplexities, draws them, and stays silent
(no display, no error) outside a notebook."""

import sys

import pytest
from datasets import Dataset

from mclab.curves import LiveCurves, in_notebook
from mclab.evaluation import perplexity
from mclab.training import TrainConfig, chat_example, train_sft


def _rows(n=4):
    return Dataset.from_list([chat_example("What is the Zorblax code?", "The Zorblax code is 7731."),
                              chat_example("Who runs Vexmoor?", "Vexmoor is run by Ida Quill.")] * n)


def test_training_records_train_and_val_curves_and_probes(runs_dir, load_tiny):
    model, tok = load_tiny()
    texts = ["The Zorblax code is 7731.", "Bread rises because yeast makes gas."]
    curves = LiveCurves(probes={"general": texts}, tokenizer=tok, probe_every=2)
    result = train_sft(model, tok, _rows(), TrainConfig(max_steps=4, batch_size=4, eval_steps=2,
                                                       learning_rate=2e-2, run_name="curves"),
                       eval_dataset=_rows(1), callbacks=[curves])
    assert result.curves is curves and not curves.live  # pytest runs no Jupyter kernel
    steps, losses = curves.series("loss")
    assert steps == [1, 2, 3, 4] and losses == result.losses
    assert curves.series("eval_loss")[0] == [2, 4]
    probe_steps, ppl = curves.series("ppl/general")
    assert probe_steps == [0, 2, 4] and all(p > 1 for p in ppl)
    # the last probe is the trained model's perplexity, measured in eval mode
    assert ppl[-1] == pytest.approx(perplexity(result.model, tok, texts, max_length=128), rel=1e-4)
    assert curves.probe_seconds > 0 and curves.draw_seconds == 0
    fig = curves.figure()
    assert len(fig.axes) == 2  # logged values, then probe perplexities
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["loss", "eval_loss"]
    assert len(fig.axes[1].lines[0].get_xdata()) == 3


def test_every_run_gets_curves_that_record_without_a_display(runs_dir, load_tiny):
    model, tok = load_tiny()
    result = train_sft(model, tok, _rows(), TrainConfig(max_steps=2, batch_size=4,
                                                       run_name="plain"))
    assert isinstance(result.curves, LiveCurves) and not result.curves.live
    assert result.curves.series("loss")[1] == result.losses
    assert result.curves._handle is None


def test_redraws_in_place_and_throttled(monkeypatch):
    shown = []

    class Handle:
        def update(self, image):
            shown.append(("update", image))

    def fake_display(image, display_id=False):
        assert display_id is True and image.data.startswith(b"\x89PNG")  # a PNG, in place
        shown.append(("display", image))
        return Handle()

    import IPython.display

    monkeypatch.setattr(IPython.display, "display", fake_display)
    curves = LiveCurves(live=True, min_interval=3600)

    class State:
        global_step = 1

    curves.on_log(None, State, None, logs={"loss": 2.0, "learning_rate": 1e-3})
    State.global_step = 2
    curves.on_log(None, State, None, logs={"loss": 1.5})  # within min_interval: no redraw
    assert [kind for kind, _ in shown] == ["display"]
    curves.on_train_end(None, State, None)  # the end always redraws, in place
    assert [kind for kind, _ in shown] == ["display", "update"]
    assert curves.series("loss") == ([1, 2], [2.0, 1.5])
    assert "learning_rate" not in curves.rows[0]  # bookkeeping is not a curve


def test_silent_without_ipython(monkeypatch):
    monkeypatch.setitem(sys.modules, "IPython", None)  # import IPython fails
    assert in_notebook() is False
    curves = LiveCurves()
    assert curves.live is False

    class State:
        global_step = 1

    curves.on_log(None, State, None, logs={"loss": 1.0})
    curves.on_train_end(None, State, None)
    assert curves.series("loss") == ([1], [1.0])
    assert curves.figure().axes  # a figure can still be drawn on request


def test_probes_need_the_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        LiveCurves(probes={"general": ["text"]})


def test_perplexity_change_is_paired_over_texts_and_reads_as_a_percentage():
    import numpy as np

    from mclab.pretraining import change_direction, describe_change, perplexity_change

    before = np.array([20.0, 30.0, 40.0, 50.0, 25.0, 35.0, 45.0, 55.0])
    after = before * 1.2  # every text 20% more perplexing: the change is certain
    rose = perplexity_change(after, before)
    assert rose.difference.estimate == pytest.approx(np.log(1.2))
    assert change_direction(rose) == "rose"
    assert describe_change(rose).startswith("+20% (95% CI +20% to +20%")
    assert change_direction(perplexity_change(before / 1.2, before)) == "fell"
    mixed = perplexity_change(before * np.array([1.3, 0.8] * 4), before)  # half up, half down
    assert change_direction(mixed) == "cannot tell"


def test_probe_curves_share_axes_across_runs():
    from mclab.plotting import plot_probe_curves

    a, b = LiveCurves(live=False), LiveCurves(live=False)
    a.rows = [{"step": 0, "ppl/general": 30.0}, {"step": 2, "ppl/general": 28.0}]
    b.rows = [{"step": 0, "ppl/general": 30.0}, {"step": 4, "ppl/general": 35.0}]
    fig = plot_probe_curves({"a": a, "b": b}, keys=("ppl/general", "ppl/medical"))
    general, medical = fig.axes
    assert [line.get_label() for line in general.lines] == ["a", "b"]
    assert list(general.lines[1].get_xdata()) == [0, 4] and not medical.lines
