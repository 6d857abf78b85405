"""ipywidgets panels. Each panel's work is a plain function, so tests call it directly."""

from __future__ import annotations

from .generation import generate


def sample_answers(model, tokenizer, prompt: str, temperature: float, n: int = 3,
                   seed: int = 0, max_new_tokens: int = 40) -> list[str]:
    """`n` answers to one prompt at a temperature; seeded, so a re-run gives the same text."""
    if not prompt.strip():
        raise ValueError("the prompt is empty; type a question first")
    if not 0 <= temperature <= 2:
        raise ValueError(f"temperature must be between 0 and 2, got {temperature}")
    return [generate(model, tokenizer, [prompt], temperature=temperature, seed=seed + i,
                     max_new_tokens=max_new_tokens)[0] for i in range(n)]


def panel(controls: dict, compute, render, *, button: str | None = None,
          run_on_change=True, run_now: bool = True, layout: list | None = None):
    """A widget panel: `controls` -> `compute(**values)` -> `render(result, values)`.

    Args:
        controls: `{name: ipywidget}`; each value goes to `compute` under its name.
        compute: the panel's work, a plain function; a `ValueError` it raises is shown as
            "⚠ message" in the panel instead of a traceback.
        render: prints or draws the result (inside the panel's output area).
        button: the label of a button that re-runs the panel, if any.
        run_on_change: re-run when a control moves: True (every control), False (none), or
            the names of the controls to watch (the others are read on the button).
        run_now: run once on creation (training panels wait for the button instead).
        layout: rows top to bottom, each a control name or a list of names shown side by
            side; "button" stands for the button. Default: the controls in one row, then
            the button. The output area always comes last.
    Returns the `VBox`, with `.run()` (what the button does) and `.output` (the output area).
    """
    import ipywidgets as w
    from IPython.display import display

    out = w.Output()
    widgets = dict(controls)
    if button:
        widgets["button"] = w.Button(description=button, button_style="primary")
    layout = layout or [list(controls)] + (["button"] if button else [])

    def run(_=None):
        out.clear_output(wait=True)
        with out:
            values = {name: control.value for name, control in controls.items()}
            try:
                result = compute(**values)
            except ValueError as err:
                print(f"⚠ {err}")
                return
            render(result, values)

    if button:
        widgets["button"].on_click(run)
    watched = list(controls) if run_on_change is True else list(run_on_change or ())
    for name in watched:
        controls[name].observe(run, names="value")
    rows = [w.HBox([widgets[n] for n in row]) if isinstance(row, list) else widgets[row]
            for row in layout]
    box = w.VBox([*rows, out])
    box.run, box.output = run, out  # lets a test or a notebook cell press the button
    display(box)
    if run_now:
        run()
    return box


def generation_panel(model, tokenizer, prompt: str = "Suggest a name for a hiking boot."):
    """A prompt box and a temperature slider; shows three sampled answers."""
    import ipywidgets as w

    controls = {
        "prompt": w.Textarea(value=prompt, description="prompt", layout=w.Layout(width="90%")),
        "temperature": w.FloatSlider(value=0.7, min=0.0, max=1.5, step=0.1,
                                     description="temperature", continuous_update=False),
    }

    def render(answers, _values):
        for i, answer in enumerate(answers, 1):
            print(f"[{i}] {answer}\n")

    return panel(controls, lambda prompt, temperature: sample_answers(
                     model, tokenizer, prompt, temperature), render,
                 button="Generate", run_on_change=["temperature"],
                 layout=["prompt", ["temperature", "button"]])


def print_numbers(numbers: dict) -> None:
    """A training run's numbers, one a line, floats to three decimals."""
    for key, value in numbers.items():
        print(f"{key:>30}: {value:.3f}" if isinstance(value, float) else f"{key:>30}: {value}")


def training_panel(run, controls: dict, default: dict | None = None, button: str = "Train"):
    """Knobs (`{name: ipywidget}`) and a button that calls `run(**values)` and prints its dict.

    Training takes minutes, so unlike the other panels this one does not run on creation:
    it opens on `default`, the numbers of the default run above it in the notebook.
    """
    def train(**values):
        print("training with " + ", ".join(f"{k}={v:g}" if isinstance(v, float)
                                           else f"{k}={v}" for k, v in values.items()))
        return run(**values)

    box = panel(controls, train, lambda numbers, _values: print_numbers(numbers),
                button=button, run_on_change=False, run_now=False)
    if default:
        with box.output:
            print(f"default run (press {button} to run your settings):")
            print_numbers(default)
    box.train = box.run  # the name the training notebooks and tests use
    return box
