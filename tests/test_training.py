"""The shared training path learns, records its losses, and refuses bad input up front."""

import pytest
from datasets import Dataset

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


@pytest.mark.parametrize("cfg, message", [
    (TrainConfig(learning_rate=0), "learning_rate must be positive"),
    (TrainConfig(learning_rate=-1e-4), "learning_rate must be positive"),
    (TrainConfig(batch_size=0), "batch_size"),
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


def test_micro_batch_must_divide_the_batch(runs_dir):
    with pytest.raises(TrainingInputError, match="micro_batch must divide"):
        train_sft(None, None, _tiny(), TrainConfig(batch_size=8, micro_batch=3))
    assert not runs_dir.exists()
