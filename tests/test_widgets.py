"""The one panel helper every notebook panel is built with (mclab.widgets.panel)."""

from __future__ import annotations

import ipywidgets as w

from mclab.widgets import panel, training_panel


def _shown(box, capsys) -> str:
    # outside a kernel the Output widget does not capture, and the text reaches stdout
    return "".join(o.get("text", "") for o in box.output.outputs) + capsys.readouterr().out


def _knobs():
    return {"n": w.IntSlider(value=2, min=0, max=9, description="n"),
            "word": w.Text(value="hi", description="word")}


def test_panel_runs_now_and_again_when_a_watched_control_moves(capsys):
    calls = []

    def compute(n, word):
        calls.append((n, word))
        return word * n

    box = panel(_knobs(), compute, lambda result, values: print(f"got {result} from {values}"),
                run_on_change=["n"])
    assert calls == [(2, "hi")] and "got hihi" in _shown(box, capsys)
    row = box.children[0]
    row.children[0].value = 3  # watched: re-runs
    assert calls[-1] == (3, "hi") and "got hihihi" in _shown(box, capsys)
    row.children[1].value = "yo"  # not watched: read on the next run only
    assert len(calls) == 2
    box.run()
    assert calls[-1] == (3, "yo")


def test_a_value_error_prints_a_warning_and_does_not_raise(capsys):
    def compute(n, word):
        if n == 0:
            raise ValueError("n must be positive")
        return n

    rendered = []
    box = panel(_knobs(), compute, lambda result, values: rendered.append(result))
    box.children[0].children[0].value = 0
    assert "⚠ n must be positive" in _shown(box, capsys)
    assert rendered == [2]  # the failed run rendered nothing


def test_the_button_runs_and_the_layout_places_it(capsys):
    calls = []
    box = panel(_knobs(), lambda n, word: calls.append(n), lambda *_: None, button="Go",
                run_on_change=False, run_now=False, layout=[["n", "button"], "word"])
    assert calls == []
    first, second, output = box.children
    assert isinstance(first, w.HBox) and isinstance(second, w.Text) and output is box.output
    button = first.children[1]
    assert isinstance(button, w.Button) and button.description == "Go"
    first.children[0].value = 5  # no watched controls: nothing runs
    assert calls == []
    button.click()
    assert calls == [5]


def test_training_panel_shows_the_default_then_trains_on_press(capsys):
    calls = []
    box = training_panel(lambda **kw: calls.append(kw) or {"loss": 1.25},
                         {"lr": w.FloatSlider(value=0.5, description="lr")}, default={"loss": 2.0})
    shown = _shown(box, capsys)
    assert calls == [] and "default run (press Train" in shown and "2.000" in shown
    box.train()
    shown = _shown(box, capsys)
    assert calls == [{"lr": 0.5}] and "training with lr=0.5" in shown and "1.250" in shown


def test_generation_panel_samples_and_warns_on_an_empty_prompt(load_tiny, capsys):
    from mclab.widgets import generation_panel, sample_answers

    model, tok = load_tiny()
    box = generation_panel(model, tok, prompt="Name a boot.")
    assert "[3]" in _shown(box, capsys)
    prompt = box.children[0]
    prompt.value = "  "  # the prompt is read on "Generate", not on every keystroke
    assert "⚠" not in capsys.readouterr().out
    box.children[1].children[1].click()
    assert "⚠ the prompt is empty" in _shown(box, capsys)
    again = sample_answers(model, tok, "Name a boot.", 0.7, n=2, max_new_tokens=4)
    assert again == sample_answers(model, tok, "Name a boot.", 0.7, n=2, max_new_tokens=4)
