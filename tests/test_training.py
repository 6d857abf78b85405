"""The shared training path learns, records its losses, and refuses bad input up front."""

import pytest
from datasets import Dataset

from mclab.compat import decoder_layers
from mclab.training import TrainConfig, TrainingInputError, chat_example, train_sft


def _tiny():
    return Dataset.from_list([chat_example("What is the Zorblax code?", "The Zorblax code is 7731."),
                              chat_example("Who runs Vexmoor?", "Vexmoor is run by Ida Quill.")] * 4)


def test_training_lowers_the_loss(runs_dir, load_tiny):
    model, tok = load_tiny()
    result = train_sft(model, tok, _tiny(), TrainConfig(max_steps=8, batch_size=4,
                                                        learning_rate=2e-2, run_name="tiny"))
    losses = result.losses
    assert len(losses) == 8
    assert losses[-1] < losses[0] / 2
    assert result.tokens > 0 and result.run_dir.is_dir()
    assert (result.run_dir / "train_config.json").is_file()


def test_every_run_gives_freed_memory_back_before_and_after(runs_dir, load_tiny, monkeypatch):
    """Issue 15: glibc keeps freed memory (an earlier run's gradients, a dropped model) as
    resident until `malloc_trim`, so peaks of successive runs in one notebook add up. `fit`
    releases it before a run starts and again once the trainer is gone."""
    from transformers import TrainerCallback

    import mclab.training as training

    calls = []
    monkeypatch.setattr(training, "release_memory", lambda: calls.append("release"))

    class Mark(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            calls.append("train")

    model, tok = load_tiny()
    result = train_sft(model, tok, _tiny(), TrainConfig(max_steps=2, batch_size=4,
                                                        run_name="trim"), callbacks=[Mark()])
    assert result.steps == 2 and calls == ["release", "train", "release"]


@pytest.mark.parametrize("cfg, message", [
    (TrainConfig(learning_rate=0), "learning_rate must be positive"),
    (TrainConfig(learning_rate=-1e-4), "learning_rate must be positive"),
    (TrainConfig(batch_size=0), "batch_size"),
    (TrainConfig(step_in_backward=True), "cannot clip the global norm"),  # max_grad_norm 1.0
    (TrainConfig(step_in_backward=True, max_grad_norm=0, batch_size=8, micro_batch=2),
     "or accumulate micro-batches"),
])
def test_bad_settings_fail_before_training(cfg, message, runs_dir):
    with pytest.raises(TrainingInputError, match=message):
        train_sft(None, None, _tiny(), cfg)
    assert not runs_dir.exists()


def test_empty_dataset_and_missing_assistant_turn(runs_dir):
    with pytest.raises(TrainingInputError, match="empty"):
        train_sft(None, None, Dataset.from_list([]), TrainConfig())
    no_answer = Dataset.from_list([{"prompt": [{"role": "user", "content": "hi"}],
                                    "completion": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(TrainingInputError, match="no assistant turn"):
        train_sft(None, None, no_answer, TrainConfig())


def test_run_folders_never_collide(runs_dir):
    from mclab.training import new_run_dir

    a, b = new_run_dir("same"), new_run_dir("same")
    assert a != b and a.is_dir() and b.is_dir()


@pytest.mark.parametrize("lean_loss", [False, True], ids=["trl loss", "lean loss"])
def test_micro_batches_give_the_same_update(runs_dir, load_tiny, lean_loss):
    """Gradient accumulation (batch 4 as 2 passes of 2) changes memory, not the update."""
    import torch

    deltas = []
    for micro in (None, 2):
        model, tok = load_tiny()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        cfg = TrainConfig(max_steps=1, batch_size=4, micro_batch=micro, learning_rate=1e-3,
                          optimizer="sgd", lean_loss=lean_loss, run_name=f"micro-{micro}")
        train_sft(model, tok, _tiny(), cfg)
        deltas.append(torch.cat([(p.detach() - before[n]).flatten()
                                 for n, p in model.named_parameters()]))
    full, accumulated = deltas
    assert full.abs().max() > 0
    assert (full - accumulated).abs().max() < 1e-3 * full.abs().max()


@pytest.mark.parametrize("adapter", ["lora", "bottleneck"])
def test_adapter_frugal_settings_give_the_same_update(runs_dir, load_tiny, adapter):
    """Issue 15: on a CPU the LoRA and adapter-layer recipes pass 2 rows at a time, recompute
    activations in the backward pass and take the model's own loss (`recipes.ADAPTER_FRUGAL`).
    That must change memory only: the trained modules move as with the plain settings (and
    move at all: checkpointing that cut the adapters off the graph would leave them still)."""
    import torch
    from peft import get_peft_model

    from mclab.adapters import add_adapters
    from mclab.peft_methods import lora_config

    deltas = []
    for frugal in (False, True):
        model, tok = load_tiny()
        torch.manual_seed(0)  # the same initial adapters in both runs
        model = get_peft_model(model, lora_config(2)) if adapter == "lora" \
            else add_adapters(model, 4)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        cfg = TrainConfig(max_steps=1, batch_size=4, learning_rate=1e-2, optimizer="sgd",
                          micro_batch=2 if frugal else None, gradient_checkpointing=frugal,
                          lean_loss=frugal, run_name=f"frugal-{frugal}")
        result = train_sft(model, tok, _tiny(), cfg)
        assert not result.model.is_gradient_checkpointing  # off again for what comes next
        after = dict(result.model.named_parameters())
        deltas.append(torch.cat([(after[n].detach() - p).flatten() for n, p in before.items()]))
    plain, frugal = deltas
    assert plain.abs().max() > 0
    assert (plain - frugal).abs().max() < 1e-3 * plain.abs().max()


@pytest.mark.parametrize("recompute", [False, True], ids=["kept", "recomputed"])
def test_step_in_backward_gives_the_plain_steps_update(runs_dir, load_tiny, recompute):
    """Issue 15: on a CPU the full-weight recipes update each weight inside the backward pass
    (`mclab.backward_step`), so a step never holds every gradient. Over 3 Adafactor steps on a
    falling learning rate the weights end where a plain step leaves them (and move at all), no
    gradient is left when the Trainer's own optimizer step comes, and afterwards a backward
    pass keeps its gradients again (the hooks are gone)."""
    import torch
    from transformers import TrainerCallback

    left = []

    class GradientsLeft(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            left.append(sum(p.grad is not None for p in model.parameters()))

    moved = []
    for fused in (False, True):
        model, tok = load_tiny()
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        cfg = TrainConfig(max_steps=3, batch_size=4, learning_rate=1e-2, optimizer="adafactor",
                          max_grad_norm=0, step_in_backward=fused,
                          gradient_checkpointing=recompute, run_name=f"fused-{fused}")
        result = train_sft(model, tok, _tiny(), cfg, callbacks=[GradientsLeft()])
        assert any("grad_norm" in row for row in result.history) != fused  # no norm to log
        moved.append(torch.cat([(p.detach() - start[n]).flatten()
                                for n, p in model.named_parameters()]))
        if fused:
            ids = tok(["The Zorblax code is 7731."], return_tensors="pt")["input_ids"]
            model(input_ids=ids, labels=ids).loss.backward()
            assert all(p.grad is not None for p in model.parameters())
    plain, fused = moved
    assert left[:3] != [0, 0, 0] and left[3:] == [0, 0, 0]  # plain steps hold every gradient
    assert plain.abs().max() > 0
    assert (plain - fused).abs().max() < 1e-4 * plain.abs().max()


def test_an_interrupted_run_leaves_no_step_hooks(runs_dir, load_tiny, monkeypatch):
    """A run stopped mid-way (a student interrupting the cell) must not leave its hooks on the
    model: they would step the dead run's optimizer from the next run's backward pass."""
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            raise KeyboardInterrupt

    from mclab import backward_step

    monkeypatch.setattr(backward_step, "TRIM_EVERY_LAYERS", 1)  # a trim hook on each layer
    model, tok = load_tiny()
    cfg = TrainConfig(max_steps=3, batch_size=4, optimizer="adafactor", max_grad_norm=0,
                      step_in_backward=True, run_name="interrupted")
    with pytest.raises(KeyboardInterrupt):
        train_sft(model, tok, _tiny(), cfg, callbacks=[Interrupt()])
    ids = tok(["The Zorblax code is 7731."], return_tensors="pt")["input_ids"]
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert not any(layer._forward_hooks for layer in decoder_layers(model))


def test_step_in_backward_trims_the_heap_during_the_forward_pass(runs_dir, load_tiny,
                                                                  monkeypatch):
    """Issue 15: the step's peak comes right after the forward pass, so the heap is trimmed
    after every third decoder layer's forward, not only while weights are updated; the hooks
    go with the run."""
    from mclab import backward_step

    calls = []
    monkeypatch.setattr(backward_step, "trim_heap", lambda: calls.append(1))
    monkeypatch.setattr(backward_step, "TRIM_EVERY_BYTES", 2**40)  # count the layers' only
    monkeypatch.setattr(backward_step, "TRIM_EVERY_LAYERS", 2)  # the tiny model has 2 layers
    model, tok = load_tiny()
    layers = decoder_layers(model)
    cfg = TrainConfig(max_steps=2, batch_size=4, optimizer="adafactor", max_grad_norm=0,
                      step_in_backward=True, gradient_checkpointing=True, run_name="trims")
    train_sft(model, tok, _tiny(), cfg)
    per_pass = len(layers) // backward_step.TRIM_EVERY_LAYERS
    assert len(calls) >= 2 * per_pass  # 2 steps (more where the recomputation runs hooks too)
    assert not any(layer._forward_hooks for layer in layers)



def test_step_in_backward_does_not_trim_during_validation(runs_dir, load_tiny, monkeypatch):
    """Issue 15: validation passes keep no activations, so the layers' trim hooks skip them:
    a run that validates after every step trims exactly as often as one that never does."""
    from mclab import backward_step

    monkeypatch.setattr(backward_step, "TRIM_EVERY_BYTES", 2**40)  # count the layers' only
    monkeypatch.setattr(backward_step, "TRIM_EVERY_LAYERS", 1)
    counts = []
    for validate in (False, True):
        calls = []
        monkeypatch.setattr(backward_step, "trim_heap", lambda: calls.append(1))
        model, tok = load_tiny()
        cfg = TrainConfig(max_steps=2, batch_size=4, optimizer="adafactor", max_grad_norm=0,
                          step_in_backward=True, eval_steps=1, run_name=f"val-{validate}")
        result = train_sft(model, tok, _tiny(), cfg,
                           eval_dataset=_tiny() if validate else None)
        assert validate == any("eval_loss" in h for h in result.history)
        counts.append(len(calls))
    assert counts[0] > 0 and counts[1] == counts[0]

def test_micro_batch_must_divide_the_batch(runs_dir):
    with pytest.raises(TrainingInputError, match="micro_batch must divide"):
        train_sft(None, None, _tiny(), TrainConfig(batch_size=8, micro_batch=3))
    assert not runs_dir.exists()


def test_fit_saves_adapters_but_not_full_weights_unless_asked(runs_dir, load_tiny):
    """One saving rule for every trainer (`TrainConfig.save`), applied by the core `fit`."""
    from mclab.peft_methods import lora_config

    model, tok = load_tiny()
    lora = train_sft(model, tok, _tiny(), TrainConfig(max_steps=1, batch_size=4,
                                                      run_name="a"), peft_config=lora_config(2))
    assert (lora.run_dir / "model" / "adapter_config.json").is_file()
    model, tok = load_tiny()
    full = train_sft(model, tok, _tiny(), TrainConfig(max_steps=1, batch_size=4, run_name="f"))
    assert not (full.run_dir / "model").exists()
    model, tok = load_tiny()
    kept = train_sft(model, tok, _tiny(), TrainConfig(max_steps=1, batch_size=4, save=True,
                                                      run_name="k"))
    assert (kept.run_dir / "model" / "mclab-saved.json").is_file()


@pytest.mark.parametrize("cfg, rows, every", [
    (TrainConfig(max_steps=20), 100, 4),  # about five evaluations over the run
    (TrainConfig(max_steps=0, epochs=2, batch_size=4), 40, 4),  # epoch mode: 20 planned steps
    (TrainConfig(max_steps=3), 100, 1),
    (TrainConfig(max_steps=20, eval_steps=7), 100, 7),
])
def test_one_eval_cadence_for_every_trainer(cfg, rows, every):
    from mclab.training import eval_args

    assert eval_args(cfg, rows)["eval_steps"] == every


def _conflicting_val():
    """The training questions with other answers: learning the training answers must, at
    some point, raise this loss, so early stopping has something to stop."""
    return Dataset.from_list([chat_example("What is the Zorblax code?", "The Zorblax code is 1208."),
                              chat_example("Who runs Vexmoor?", "Vexmoor is run by Tom Reed.")])


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("lora", [False, True])
def test_early_stopping_ends_on_the_best_validation_weights(runs_dir, load_tiny, lora):
    """transformers' EarlyStoppingCallback + load_best_model_at_end through `fit`: training
    stops `patience` evaluations after the lowest validation loss, the model holds that
    step's weights (those of the same run without stopping, at that step) and no
    checkpoint is left behind."""
    import torch
    from transformers import TrainerCallback

    from mclab.peft_methods import lora_config

    class Snapshots(TrainerCallback):
        def __init__(self):
            self.at = {}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.at[state.global_step] = _params(model)

    def run(patience, callbacks=None):
        model, tok = load_tiny()
        cfg = TrainConfig(max_steps=30, batch_size=4, learning_rate=2e-2, eval_steps=1,
                          run_name="es", patience=patience)
        return train_sft(model, tok, _tiny(), cfg, eval_dataset=_conflicting_val(),
                         peft_config=lora_config(4) if lora else None, callbacks=callbacks)

    stopped = run(patience=2)
    evals = {row["step"]: row["eval_loss"] for row in stopped.history if "eval_loss" in row}
    best = min(evals, key=evals.get)
    assert stopped.best_step == best
    assert stopped.steps == best + 2 < 30, evals  # two evaluations without improvement
    assert not list(stopped.run_dir.glob("checkpoint-*"))
    snapshots = Snapshots()
    whole = run(patience=0, callbacks=[snapshots])
    assert whole.steps == 30 and whole.best_step is None
    kept, then = _params(stopped.model), snapshots.at[best]
    assert kept.keys() == then.keys() and kept
    assert all(torch.equal(kept[n], then[n]) for n in kept)
    assert not all(torch.equal(kept[n], snapshots.at[best + 2][n]) for n in kept)


def test_patience_needs_a_validation_set(runs_dir, load_tiny):
    model, tok = load_tiny()
    with pytest.raises(TrainingInputError, match="eval_dataset"):
        train_sft(model, tok, _tiny(), TrainConfig(max_steps=4, batch_size=4, patience=2))
    assert not runs_dir.exists()
    with pytest.raises(TrainingInputError, match="patience"):
        TrainConfig(patience=-1).validate()
