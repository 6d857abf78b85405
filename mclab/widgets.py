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


def generation_panel(model, tokenizer, prompt: str = "Suggest a name for a hiking boot."):
    """A prompt box and a temperature slider; shows three sampled answers."""
    import ipywidgets as w
    from IPython.display import display

    text = w.Textarea(value=prompt, description="prompt", layout=w.Layout(width="90%"))
    temperature = w.FloatSlider(value=0.7, min=0.0, max=1.5, step=0.1, description="temperature",
                                continuous_update=False)
    button = w.Button(description="Generate", button_style="primary")
    out = w.Output()

    def run(_=None):
        out.clear_output()
        with out:
            try:
                answers = sample_answers(model, tokenizer, text.value, temperature.value)
            except ValueError as err:
                print(f"⚠ {err}")
                return
            for i, answer in enumerate(answers, 1):
                print(f"[{i}] {answer}\n")

    button.on_click(run)
    temperature.observe(run, names="value")
    panel = w.VBox([text, w.HBox([temperature, button]), out])
    display(panel)
    run()
    return panel


def training_panel(run, controls: dict, default: dict | None = None, button: str = "Train"):
    """Knobs (`{name: ipywidget}`) and a button that calls `run(**values)` and prints its dict.

    Training takes minutes, so unlike the other panels this one does not run on creation:
    it opens on `default`, the numbers of the default run above it in the notebook.
    """
    import ipywidgets as w
    from IPython.display import display

    go = w.Button(description=button, button_style="primary")
    out = w.Output()

    def show(numbers: dict):
        for key, value in numbers.items():
            print(f"{key:>30}: {value:.3f}" if isinstance(value, float) else f"{key:>30}: {value}")

    def train(_=None):
        out.clear_output()
        with out:
            values = {name: c.value for name, c in controls.items()}
            print("training with " + ", ".join(f"{k}={v:g}" if isinstance(v, float)
                                               else f"{k}={v}" for k, v in values.items()))
            try:
                show(run(**values))
            except ValueError as err:
                print(f"⚠ {err}")

    go.on_click(train)
    panel = w.VBox([w.HBox(list(controls.values())), go, out])
    display(panel)
    if default:
        with out:
            print(f"default run (press {button} to run your settings):")
            show(default)
    panel.train = train  # lets a test or a notebook cell press the button
    return panel
