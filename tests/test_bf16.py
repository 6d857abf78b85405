"""The scorers, generation, adapter helpers and the one scorer the report recipes use, on a
model in bfloat16 (issue 16.1).

A GPU trains in bf16, and nothing here has one; this runs the same code on a bf16 copy of
the model on the CPU and compares it with fp32, within the tolerances below. bf16 matmuls
are slow on a CPU without native support (the knowledge items take most of the module's
time), so the sets are small and the perplexity texts cut short.
"""

import numpy as np
import pytest
import torch

from mclab import peft_methods as pm
from mclab.data import load_company
from mclab.device import model_device
from mclab.evaluation import answer_logprobs, knowledge_score, perplexity
from mclab.generation import generate

# Measured on 12 company items: the same choice on all 12, option probabilities at most
# 0.02 apart, perplexity 0.3% apart. The tolerances leave room for another CPU's kernels.
N_ITEMS = 5
MAX_DIFFERENT_CHOICES = 1  # of the N_ITEMS: two options of an item can be 0.01 apart
PROB_ATOL = 0.05
PPL_RELATIVE = 0.02
NATS_PER_TOKEN = 0.25  # answer log-probability; measured up to 0.16 (bf16 keeps 3 digits)

PROMPTS, ANSWERS = ["Say hello.", "What is the capital of France?"], ["Hello!", "Paris."]


@pytest.fixture(scope="module")
def bf16_model():
    from mclab.models import load_model

    model, _ = load_model(dtype=torch.bfloat16)
    return model


@pytest.fixture(scope="module")
def company():
    return load_company()


def test_load_model_in_bf16_keeps_the_dtype_and_the_device(bf16_model, model_and_tokenizer):
    assert bf16_model.dtype == torch.bfloat16
    assert model_device(bf16_model) == model_device(model_and_tokenizer[0])


def test_knowledge_choices_agree_with_fp32(bf16_model, model_and_tokenizer, company):
    model, tok = model_and_tokenizer
    items = [company["eval_mc"][i] for i in range(N_ITEMS)]
    full, half = knowledge_score(model, tok, items), knowledge_score(bf16_model, tok, items)
    different = sum(a != b for a, b in zip(full.predictions, half.predictions))
    assert different <= MAX_DIFFERENT_CHOICES, (full.predictions, half.predictions)
    assert max(np.abs(a - b).max() for a, b in zip(full.probs, half.probs)) < PROB_ATOL


def test_perplexity_and_answer_scores_agree_with_fp32(bf16_model, model_and_tokenizer, company):
    model, tok = model_and_tokenizer
    texts = [d["text"] for d in company["documents"]][:2]
    full, half = (perplexity(m, tok, texts, max_length=64) for m in (model, bf16_model))
    assert half == pytest.approx(full, rel=PPL_RELATIVE)
    (full, counts), (half, _) = (answer_logprobs(m, tok, PROMPTS, ANSWERS)
                                 for m in (model, bf16_model))
    assert np.abs(half - full).max() / counts.min() < NATS_PER_TOKEN, (full, half)


def test_greedy_generation_runs_in_bf16(bf16_model, model_and_tokenizer):
    tok = model_and_tokenizer[1]
    texts = generate(bf16_model, tok, PROMPTS, max_new_tokens=8)
    assert len(texts) == 2 and all(isinstance(t, str) and t for t in texts)


def test_a_fresh_lora_adapter_on_bf16_scores_like_its_base(bf16_model, model_and_tokenizer):
    from peft import get_peft_model

    tok = model_and_tokenizer[1]
    base_loss = pm.completion_loss(bf16_model, tok, PROMPTS, ANSWERS)
    lora = get_peft_model(bf16_model, pm.lora_config(4))
    try:
        # lora_B starts at zero, so the adapter changes nothing yet
        assert pm.completion_loss(lora, tok, PROMPTS, ANSWERS) == pytest.approx(base_loss,
                                                                               rel=1e-3)
    finally:
        pm.detach_adapter(lora)


def test_prefix_helpers_run_on_bf16(bf16_model, model_and_tokenizer):
    tok = model_and_tokenizer[1]
    prefixed = pm.prefix_from_text(bf16_model, tok, pm.prefix_config(4), "The company Kestrel")
    pm.enable_prefix_generation(prefixed)
    assert np.isfinite(pm.completion_loss(prefixed, tok, PROMPTS, ANSWERS))
    text = generate(prefixed, tok, PROMPTS[:1], max_new_tokens=6)[0]
    assert isinstance(text, str) and text


def test_the_one_scorer_runs_every_part_in_bf16(tiny_model_dir, embedder):
    """scorecard.score_model, which every report recipe scores through, on a bf16 model (the
    tiny random Llama: its numbers mean nothing, the point is that every part runs)."""
    from mclab.data import subset
    from mclab.models import load_model
    from mclab.scorecard import PARTS, eval_sets, score_model

    model, tok = load_model(str(tiny_model_dir), dtype=torch.bfloat16)
    sets = {name: rows if name in ("lexicon", "answer_references") else subset(rows, 2)
            for name, rows in eval_sets().items()}
    card = score_model(model, tok, embedder, sets, parts=PARTS)
    assert card.company.n == 2 and np.isfinite(card.medical_perplexity)
    assert card.locality is not None and len(card.samples) == 2
