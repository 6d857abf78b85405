"""Curves while training: one Trainer callback that records and draws them live.

`LiveCurves` records every number the Trainer logs (train loss, eval loss, DPO's reward
margins, GRPO's reward and KL, ...) and, optionally, the perplexity of a few small text
sets every few steps ("probes": how forgetting shows up while it happens). In a Jupyter
notebook it draws them in one figure that is redrawn in place (an IPython display
handle), at most every `min_interval` seconds, so a long run costs a handful of redraws.
Outside a notebook (tests, `python -m mclab report`) it only records: no display, no
error, nothing drawn.
"""

from __future__ import annotations

import io
import math
import time

from matplotlib.figure import Figure
from transformers import TrainerCallback

# logged values that are bookkeeping, not curves
SKIP = {"epoch", "learning_rate", "grad_norm", "num_tokens", "step", "total_flos",
        "train_runtime", "train_samples_per_second", "train_steps_per_second",
        "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "train_loss"}


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a figure can be displayed and updated)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LiveCurves(TrainerCallback):
    """Record logged values and probe perplexities per step; draw them live in a notebook.

    Args:
        keys: logged values to draw in the first panel (those never logged are skipped).
        probes: name -> a few texts whose perplexity is measured at step 0, every
            `probe_every` steps and at the end (needs `tokenizer`). Keep them small: each
            probe is a forward pass over its texts.
        live: draw in the notebook; None: only when running inside a Jupyter kernel.
        min_interval: seconds between two redraws (the last one is always drawn).
    """

    def __init__(self, keys=("loss", "eval_loss"), probes: dict | None = None, tokenizer=None,
                 probe_every: int = 1, probe_max_length: int = 128, live: bool | None = None,
                 min_interval: float = 5.0, title: str | None = None):
        if probes and tokenizer is None:
            raise ValueError("perplexity probes need the tokenizer: LiveCurves(..., tokenizer=tok)")
        if probe_every < 1:
            raise ValueError(f"probe_every must be >= 1 step, got {probe_every}")
        self.keys = tuple(keys)
        self.probes = {name: list(texts) for name, texts in (probes or {}).items()}
        self.tokenizer = tokenizer
        self.probe_every = probe_every
        self.probe_max_length = probe_max_length
        self.live = in_notebook() if live is None else live
        self.min_interval = min_interval
        self.title = title
        self.rows: list[dict] = []  # {"step": s, key: value, ...} in the order they came
        self.probe_seconds = 0.0  # time spent on probes (what they add to the run)
        self.draw_seconds = 0.0  # time spent drawing
        self._handle = None
        self._last_draw = -math.inf
        self._last_probe = None

    # ------------------------------------------------------------------ recording
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.probes and model is not None:
            self.probe(model, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {k: float(v) for k, v in (logs or {}).items()
                  if k not in SKIP and isinstance(v, (int, float)) and math.isfinite(v)}
        if values:
            self.rows.append({"step": state.global_step, **values})
            self.refresh()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.probes and model is not None and state.global_step % self.probe_every == 0:
            self.probe(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.probes and model is not None and self._last_probe != state.global_step:
            self.probe(model, state.global_step)
        self.refresh(force=True)

    def probe(self, model, step: int) -> dict:
        """Perplexity of every probe set now (eval mode, no gradients), recorded at `step`."""
        from .evaluation import perplexity

        start = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            row = {f"ppl/{name}": perplexity(model, self.tokenizer, texts,
                                             max_length=self.probe_max_length)
                   for name, texts in self.probes.items()}
        finally:
            model.train(was_training)
        self.rows.append({"step": step, **row})
        self._last_probe = step
        self.probe_seconds += time.perf_counter() - start
        self.refresh()
        return row

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one recorded key, e.g. "loss" or "ppl/general"."""
        rows = [r for r in self.rows if key in r]
        return [r["step"] for r in rows], [r[key] for r in rows]

    # ------------------------------------------------------------------ drawing
    def figure(self) -> Figure:
        """A figure of what is recorded: logged values, then one panel of probe perplexities.

        A `matplotlib.figure.Figure` outside pyplot, so a notebook shows it only where it is
        displayed (no duplicate at the end of the cell).
        """
        keys = [k for k in self.keys if self.series(k)[0]]
        probes = [f"ppl/{name}" for name in self.probes if self.series(f"ppl/{name}")[0]]
        panels = [p for p in (keys, probes) if p] or [[]]
        fig = Figure(figsize=(4.6 * len(panels), 3.0))
        for i, panel in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            for key in panel:
                steps, values = self.series(key)
                ax.plot(steps, values, marker=".", label=key.removeprefix("ppl/"))
            ax.set_xlabel("step")
            ax.set_ylabel("perplexity" if panel is probes else "logged value")
            if panel:
                ax.legend(fontsize=8)
        if self.title:
            fig.suptitle(self.title, fontsize=10)
        fig.tight_layout()
        return fig

    def refresh(self, force: bool = False) -> None:
        """Redraw in place if live and `min_interval` seconds have passed (or `force`)."""
        if not self.live or (not force and time.monotonic() - self._last_draw < self.min_interval):
            return
        from IPython.display import Image, display

        start = time.perf_counter()
        # a PNG made here, not the figure: a kernel shows a bare Figure as text until pyplot's
        # inline backend has been activated by some earlier plot
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=80)
        image = Image(data=buffer.getvalue(), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
        self._last_draw = time.monotonic()
        self.draw_seconds += time.perf_counter() - start
