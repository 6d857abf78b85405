"""`models.lora_merged`: a LoRA answers and scores with its update folded into the weights
(the base model's speed) and gives what the unmerged model gives."""

import pytest
import torch

from mclab.evaluation import _score_batch, option_logprobs
from mclab.generation import _generate_batches, format_chat, generate
from mclab.models import _lora_layers, lora_merged

PROMPTS = ["Question: Who runs the helpdesk?", "Question: When does the office open?",
           "Rewrite this: I am very tired today."]
OPTIONS = [["Ana", "the finance team", "nobody", "Tom"], ["at 8", "at 9", "at noon", "never"],
           ["I'm knackered", "I am tired", "ok", "what"]]


def lora_model(load_tiny):
    """The tiny model with a LoRA on every linear layer whose update is far from zero."""
    from peft import LoraConfig, get_peft_model

    model, tok = load_tiny()
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                        "up_proj", "down_proj"])
    return get_peft_model(model, config).eval(), tok


def lora_a_calls(model):
    """A counter of LoRA A-matrix forward calls (zero when the merged weights answer)."""
    calls = []
    for layer in _lora_layers(model):
        for a in layer.lora_A.values():
            a.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_scores_equal_the_unmerged_model(load_tiny):
    model, tok = lora_model(load_tiny)
    with torch.no_grad():
        slow = _score_batch(model, tok, PROMPTS, OPTIONS, "mean")
    calls = lora_a_calls(model)
    fast = option_logprobs(model, tok, PROMPTS, OPTIONS)
    assert calls == []  # the merged weights answered
    for s, f in zip(slow, fast):
        assert torch.allclose(torch.as_tensor(s), torch.as_tensor(f), atol=1e-4)


def test_generation_equals_the_unmerged_model(load_tiny):
    model, tok = lora_model(load_tiny)
    texts = [format_chat(tok, p) for p in PROMPTS]
    old, tok.padding_side = tok.padding_side, "left"
    with torch.no_grad():
        slow = _generate_batches(model, tok, texts, 12, 0.0, 2)
    tok.padding_side = old
    calls = lora_a_calls(model)
    fast = generate(model, tok, PROMPTS, max_new_tokens=12, batch_size=2, details=True)
    assert calls == []
    assert [g.text for g in fast] == [g.text for g in slow]
    assert [g.new_tokens for g in fast] == [g.new_tokens for g in slow]


def test_the_weights_come_back_unmerged(load_tiny):
    model, tok = lora_model(load_tiny)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generate(model, tok, PROMPTS[:1], max_new_tokens=4)
    with pytest.raises(RuntimeError), torch.no_grad(), lora_merged(model):
        assert all(layer.merged for layer in _lora_layers(model))
        raise RuntimeError("a failing block still unmerges")
    assert not any(layer.merged for layer in _lora_layers(model))
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.allclose(value, after[key], atol=1e-6), key


def test_left_unmerged_when_training_or_disabled(load_tiny):
    model, tok = lora_model(load_tiny)
    with lora_merged(model):  # gradients on: training code must see the adapter as it is
        assert not any(layer.merged for layer in _lora_layers(model))
    model.train()
    with torch.no_grad(), lora_merged(model):
        assert not any(layer.merged for layer in _lora_layers(model))
    model.eval()
    with model.disable_adapter():  # the base model's answers, not the merged adapter's
        with torch.no_grad(), lora_merged(model):
            assert not any(layer.merged for layer in _lora_layers(model))
        base_scores = option_logprobs(model, tok, PROMPTS, OPTIONS)
    lora_scores = option_logprobs(model, tok, PROMPTS, OPTIONS)
    with model.disable_adapter():
        with torch.no_grad():
            reference = _score_batch(model, tok, PROMPTS, OPTIONS, "mean")
    for b, r, lo in zip(base_scores, reference, lora_scores):
        assert torch.allclose(torch.as_tensor(b), torch.as_tensor(r), atol=1e-5)
        assert not torch.allclose(torch.as_tensor(b), torch.as_tensor(lo), atol=1e-3)


def test_a_plain_model_is_left_alone(load_tiny):
    model, tok = load_tiny()
    with torch.no_grad(), lora_merged(model) as same:
        assert same is model
