"""DPO and GRPO through the shared path: bad input fails first, rewards behave, training runs."""

import numpy as np
import pytest
from datasets import Dataset

from mclab import rl
from mclab.peft_methods import lora_config
from mclab.training import TrainConfig, TrainingInputError

LEXICON = [{"phrase": "arvo", "meaning": "afternoon", "forms": ["arvo"]},
           {"phrase": "servo", "meaning": "service station", "forms": ["servo"]}]
PAIRS = [{"prompt": "What are you doing later?", "chosen": "Heading to the servo this arvo.",
          "rejected": "I am going to the service station this afternoon."},
         {"prompt": "Coming tonight?", "chosen": "Yeah, keen as!", "rejected": "Yes, I will attend."}]


def test_preference_pairs_are_checked_before_training(runs_dir):
    assert len(rl.preference_dataset(PAIRS)) == 2
    with pytest.raises(TrainingInputError, match="chosen' equals 'rejected"):
        rl.preference_dataset([{**PAIRS[0], "rejected": PAIRS[0]["chosen"]}])
    with pytest.raises(TrainingInputError, match="empty"):
        rl.preference_dataset([])
    with pytest.raises(TrainingInputError, match="missing"):
        rl.check_preference_rows(Dataset.from_list([{"prompt": "a", "chosen": "b"}]))
    data = rl.preference_dataset(PAIRS)
    for cfg, kwargs, message in [(TrainConfig(learning_rate=0), {}, "learning_rate"),
                                 (TrainConfig(learning_rate=-1e-5), {}, "learning_rate"),
                                 (TrainConfig(), {"beta": 0}, "beta must be positive")]:
        with pytest.raises(TrainingInputError, match=message):
            rl.train_dpo(None, None, data, cfg, **kwargs)
    assert not runs_dir.exists()


def test_grpo_input_checks(runs_dir):
    prompts = rl.rewrite_prompts([{"neutral": "See you later.", "local": "Catch ya."}], str)
    funcs = rl.make_reward_funcs(LEXICON, None)
    for kwargs, message in [({"num_generations": 1}, "num_generations"),
                            ({"num_generations": 3}, "multiple of num_generations"),
                            ({"reward_weights": [1.0]}, "reward weights"),
                            ({"beta": -1.0}, "beta")]:
        with pytest.raises(TrainingInputError, match=message):
            rl.train_grpo(None, None, prompts, funcs, TrainConfig(batch_size=8), **kwargs)
    with pytest.raises(TrainingInputError, match="empty"):
        rl.rewrite_prompts([], str)
    with pytest.raises(TrainingInputError, match="rank"):
        rl.train_grpo(None, None, prompts, funcs, TrainConfig(batch_size=8),
                      peft_config=lora_config(r=0))
    assert not runs_dir.exists()


def test_rewards_and_advantages(embedder):
    assert rl.style_reward(["See ya this arvo", "See you this afternoon"], LEXICON) == [1.0, 0.0]
    assert rl.brevity_reward(["one two three", " ".join(["w"] * 30), ""],
                             ["one two three"] * 3) == [1.0, 0.0, 0.0]
    chat = [[{"role": "assistant", "content": "Heading to the servo"}]]
    assert rl.style_reward(chat, LEXICON) == [1.0]  # trl's conversational completions
    meaning = rl.meaning_reward(["See ya this arvo at the servo.", "I like turtles."],
                                ["See you this arvo at the servo."] * 2, embedder)
    assert meaning[0] > 0.8 > meaning[1]
    adv = rl.group_advantages([1.0, 0.0, 1.0, 1.0, 1.0, 1.0], 3)
    assert adv[0] > 0 > adv[1] and np.allclose(adv[3:], 0.0)
    with pytest.raises(ValueError):
        rl.group_advantages([1.0, 2.0, 3.0], 2)
    with pytest.raises(TrainingInputError):
        rl.RewardWeights(style=-1).as_list()
    assert rl.dpo_loss([0.0], 0.1) == pytest.approx(np.log(2))
    assert rl.dpo_loss([5.0], 0.5) < rl.dpo_loss([-5.0], 0.5)


def test_dpo_learns_the_preference_and_saves_its_adapter(load_tiny, runs_dir):
    from peft import PeftModel

    from mclab.peft_methods import detach_adapter

    model, tok = load_tiny()
    data = rl.preference_dataset(PAIRS)
    result = rl.train_dpo(model, tok, data, TrainConfig(learning_rate=5e-3, max_steps=3,
                                                        batch_size=2, micro_batch=1,
                                                        run_name="t-dpo"),
                          beta=0.1, peft_config=lora_config(4, 8))
    assert result.steps == 3 and result.losses[0] == pytest.approx(np.log(2), abs=1e-3)
    # the live curves draw the keys trl logs: every DPO_CURVES key has a point per step
    for key in rl.DPO_CURVES:
        assert result.curves.series(key)[0] == [1, 2, 3], key
    margins = rl.preference_margins(result.model, tok, data)
    assert (margins > 0).all()  # both training pairs now ranked the human way
    assert (result.run_dir / "model" / "adapter_config.json").is_file()
    base = detach_adapter(result.model)
    reloaded = PeftModel.from_pretrained(base, result.run_dir / "model")
    assert np.allclose(rl.preference_margins(reloaded, tok, data), margins, atol=1e-3)
    detach_adapter(reloaded)


def test_grpo_runs_with_a_written_reward(model_and_tokenizer, runs_dir):
    model, tok = model_and_tokenizer
    prompts = rl.rewrite_prompts([{"neutral": "I will see you this afternoon.",
                                   "local": "See ya this arvo."}] * 4,
                                 lambda s: f"Rewrite casually: {s}")

    def short(prompts, completions, **kwargs):
        return [1.0 if len(rl.completion_text(c).split()) < 6 else 0.0 for c in completions]

    result = rl.train_grpo(model, tok, prompts, [short], TrainConfig(
        learning_rate=1e-4, max_steps=1, batch_size=4, micro_batch=2, run_name="t-grpo"),
        num_generations=2, max_completion_length=8, peft_config=lora_config(2, 4))
    from mclab.peft_methods import detach_adapter

    detach_adapter(result.model)
    assert result.steps == 1
    assert any("reward" in row for row in result.history)
    assert result.curves.series("reward")[0] == [1] and result.curves.keys == rl.GRPO_CURVES
    assert (result.run_dir / "model" / "adapter_config.json").is_file()


def test_grpo_recomputing_activations_changes_memory_not_the_run(load_tiny, runs_dir):
    """Issue 15: GRPO on a CPU recomputes activations in the backward pass (recipes.GRPO).
    The same samples, rewards and losses as without, and the model comes back with
    recomputation off (trl turns it off around generation; `fit` after training)."""
    prompts = rl.rewrite_prompts([{"neutral": "I will see you this afternoon.",
                                   "local": "See ya this arvo."}] * 4,
                                 lambda s: f"Rewrite casually: {s}")

    def length(prompts, completions, **kwargs):
        return [float(len(rl.completion_text(c))) for c in completions]

    runs = []
    for checkpointing in (False, True):
        model, tok = load_tiny()
        result = rl.train_grpo(model, tok, prompts, [length], TrainConfig(
            learning_rate=1e-2, max_steps=2, batch_size=4, micro_batch=2, seed=3,
            gradient_checkpointing=checkpointing, run_name=f"t-grpo-{checkpointing}"),
            num_generations=2, max_completion_length=8, peft_config=lora_config(2, 4))
        assert not result.model.is_gradient_checkpointing
        runs.append([(row["grad_norm"], row["reward"]) for row in result.history
                     if "grad_norm" in row])
    plain, recomputed = runs  # (GRPO's loss itself is 0 here: a fresh policy's ratio is 1)
    assert len(plain) == 2 and all(norm > 0 for norm, _ in plain)
    assert np.allclose(recomputed, plain, rtol=1e-5, atol=1e-6)


def test_feedback_knobs(embedder):
    samples = {"I will see you this afternoon.": ("See ya this arvo.",
                                                  ["See ya this arvo.", "See you later.",
                                                   "Catch ya this arvo, mate.", "Goodbye."])}
    dpo, table = rl.feedback_knobs([0.5, -0.2, 1.0], samples, LEXICON, embedder, 0.1, 4,
                                   rl.RewardWeights())
    assert dpo["held-out reward accuracy"] == pytest.approx(2 / 3)
    assert len(table) == 4 and table["reward"].iloc[0] > table["reward"].iloc[1]
    with pytest.raises(ValueError, match="at most"):
        rl.feedback_knobs([0.5], samples, LEXICON, embedder, 0.1, 6, rl.RewardWeights())


def test_grpo_stops_on_the_reward_of_its_validation_prompts(load_tiny, runs_dir):
    """Issue 13: GRPO has no validation loss; with validation prompts and patience it stops
    on the mean reward of their sampled completions (trl's eval_reward, higher is better)
    and keeps the weights of the best evaluation."""
    rows = [{"neutral": f"I will see you this afternoon, number {i}.", "local": "See ya."}
            for i in range(6)]
    prompts = rl.rewrite_prompts(rows[:4], lambda s: f"Rewrite casually: {s}")
    val = rl.rewrite_prompts(rows[4:], lambda s: f"Rewrite casually: {s}")

    def length(prompts, completions, **kwargs):
        return [float(len(rl.completion_text(c))) for c in completions]

    with pytest.raises(TrainingInputError, match="validation prompt set is empty"):
        rl.train_grpo(None, None, prompts, [length], TrainConfig(batch_size=4),
                      num_generations=2, eval_prompts=val.select([]))
    model, tok = load_tiny()
    result = rl.train_grpo(model, tok, prompts, [length], TrainConfig(
        learning_rate=5e-2, max_steps=6, batch_size=4, micro_batch=2, seed=3, eval_steps=1,
        patience=1, run_name="t-grpo-stop"), num_generations=2, max_completion_length=8,
        peft_config=lora_config(2, 4), eval_prompts=val)
    from mclab.methods import _early_stopped
    from mclab.peft_methods import detach_adapter

    stopped = _early_stopped(result, stage="grpo")
    curve = stopped["grpo_validation_reward"]
    assert [step for step, _ in curve] == list(range(1, result.steps + 1))  # every step
    # the kept step is the highest reward's (the first of equal ones), not the lowest loss's
    best = max(curve, key=lambda c: c[1])
    assert result.best_step == best[0]
    # it ran to the cap, or stopped after exactly `patience` (1) evaluations without a gain
    assert result.steps == 6 or result.steps == best[0] + 1
    detach_adapter(result.model)


def test_dpo_stops_on_its_validation_pairs(load_tiny, runs_dir):
    model, tok = load_tiny()
    held_out = [{"prompt": "Where are you off to?", "chosen": "Off to the servo, mate.",
                 "rejected": "I am going to the service station."}]
    result = rl.train_dpo(model, tok, rl.preference_dataset(PAIRS), TrainConfig(
        learning_rate=5e-3, max_steps=6, batch_size=2, micro_batch=1, eval_steps=1, patience=1,
        run_name="t-dpo-stop"), beta=0.1, peft_config=lora_config(4, 8),
        eval_dataset=rl.preference_dataset(held_out))
    from mclab.methods import _early_stopped
    from mclab.peft_methods import detach_adapter

    stopped = _early_stopped(result, stage="dpo")
    curve = stopped["dpo_validation_loss"]
    assert [step for step, _ in curve] == list(range(1, result.steps + 1))
    assert stopped["dpo_best_step"] == min(curve, key=lambda c: c[1])[0]
    assert result.steps == 6 or result.steps == stopped["dpo_best_step"] + 1
    detach_adapter(result.model)
