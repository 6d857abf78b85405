"""Merging LoRA adapters with peft (mclab.merging), on a tiny random Llama."""

import math

import pytest
import torch

from mclab.merging import MergeError, MergeSpec, check_merge, interference, kept_share, merge


def _tiny(ranks=(4, 4), targets=(("q_proj", "v_proj"), ("q_proj", "v_proj"))):
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from mclab.peft_methods import lora_config

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    model = get_peft_model(LlamaForCausalLM(config), lora_config(ranks[0], 8, targets[0]),
                           adapter_name="one")
    model.add_adapter("two", lora_config(ranks[1], 8, targets[1]))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: give both adapters a real update
            torch.nn.init.normal_(param, std=0.5)
    return model.eval()


def _logits(model, adapter):
    model.set_adapter(adapter)
    with torch.no_grad():
        return model(torch.arange(12).reshape(2, 6)).logits


def test_linear_with_weights_one_zero_is_the_first_adapter():
    model = _tiny()
    want = _logits(model, "one")
    assert not torch.allclose(want, _logits(model, "two"), atol=1e-3)  # the test can fail
    merge(model, ["one", "two"], MergeSpec("linear", (1.0, 0.0)), "mix")
    assert model.active_adapter == "mix"
    assert torch.allclose(_logits(model, "mix"), want, atol=1e-5)


def test_linear_has_cross_terms_and_cat_is_the_exact_sum():
    model = _tiny()
    merge(model, ["one", "two"], MergeSpec("cat", (1.0, 1.0)), "cat")
    merge(model, ["one", "two"], MergeSpec("linear", (1.0, 1.0)), "linear")
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    total = layer.get_delta_weight("one") + layer.get_delta_weight("two")
    assert torch.allclose(layer.get_delta_weight("cat"), total, atol=1e-5)
    assert not torch.allclose(layer.get_delta_weight("linear"), total, atol=1e-3)


@pytest.mark.parametrize("combination", ["ties", "dare_linear", "dare_ties"])
def test_pruning_merges_give_a_valid_adapter(combination):
    model = _tiny()
    before = torch.random.get_rng_state()
    merge(model, ["one", "two"], MergeSpec(combination, (1.0, 1.0), density=0.5), "mix", seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global draw is untouched
    assert model.peft_config["mix"].r == 4
    logits = _logits(model, "mix")
    assert torch.isfinite(logits).all()
    assert not torch.allclose(logits, _logits(model, "one"), atol=1e-4)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    first = layer.lora_A["mix"].weight.clone()
    assert 0 < (first != 0).float().mean() < 1  # pruned, not emptied
    merge(model, ["one", "two"], MergeSpec(combination, (1.0, 1.0), density=0.5), "mix", seed=3)
    assert torch.equal(layer.lora_A["mix"].weight, first)  # same seed, same merge (replaced)


@pytest.mark.parametrize("kwargs, ranks, targets, message", [
    (dict(combination="sum", weights=(1, 1)), (4, 4), None, "unknown combination type"),
    (dict(combination="linear", weights=(1, 1)), (2, 4), None, "same rank"),
    (dict(combination="ties", weights=(1, 1), density=0.5), (2, 4), None, "same rank"),
    (dict(combination="linear", weights=(1, 1)), (4, 4),
     (("q_proj", "v_proj"), ("q_proj",)), "same target modules"),
    (dict(combination="ties", weights=(1, 1)), (4, 4), None, "density"),
    (dict(combination="dare_ties", weights=(1, 1), density=1.5), (4, 4), None, "density"),
    (dict(combination="linear", weights=(1, 1), density=0.5), (4, 4), None, "no density"),
    (dict(combination="linear", weights=(1,)), (4, 4), None, "2 finite numbers"),
    (dict(combination="linear", weights=(0, 0)), (4, 4), None, "not all zero"),
    (dict(combination="ties", weights=(1, 1), density=0.5, majority_sign_method="max"),
     (4, 4), None, "majority_sign_method"),
])
def test_bad_input_is_refused_before_any_adapter_is_built(kwargs, ranks, targets, message):
    model = _tiny(ranks, targets or (("q_proj", "v_proj"),) * 2)
    with pytest.raises(MergeError, match=message):
        merge(model, ["one", "two"], MergeSpec(**kwargs), "mix")
    assert list(model.peft_config) == ["one", "two"]


def test_unknown_adapters_and_cat_of_other_ranks():
    model = _tiny((2, 4))
    with pytest.raises(MergeError, match="no adapter named 'three'"):
        check_merge(model, ["one", "three"], MergeSpec("cat", (1, 1)))
    with pytest.raises(MergeError, match="at least 2 adapters"):
        check_merge(model, ["one"], MergeSpec("cat", (1,)))
    merge(model, ["one", "two"], MergeSpec("cat", (0.5, 0.5)), "mix")  # cat allows any ranks
    assert model.peft_config["mix"].r == 6


def test_interference_of_an_adapter_with_itself_and_its_opposite():
    model = _tiny()
    for (name, param), (_, other) in zip(
            [(n, p) for n, p in model.named_parameters() if ".two." in n],
            [(n, p) for n, p in model.named_parameters() if ".one." in n]):
        with torch.no_grad():  # "two" := "one" with B negated: the opposite update
            param.copy_(-other if "lora_B" in name else other)
    same = interference(model, "one", "one")
    assert same["cosine"] == pytest.approx(1.0) and same["sign_conflict"] == 0
    assert same["overlap"] == pytest.approx(0.2, abs=0.01)
    opposite = interference(model, "one", "two")
    assert opposite["cosine"] == pytest.approx(-1.0) and opposite["sign_conflict"] == 1
    with pytest.raises(MergeError, match="top"):
        interference(model, "one", "two", top=0)


def test_kept_share():
    assert kept_share(2.0, 1.0, 1.5) == pytest.approx(0.5)  # a loss: half the drop kept
    assert kept_share(0.1, 0.5, 0.5) == pytest.approx(1.0)  # a score: all of the gain
    assert math.isnan(kept_share(0.3, 0.3, 0.2))


def test_sweep_scores_on_validation_and_best_settings_picks_the_worst_kept(load_tiny):
    from peft import get_peft_model

    from mclab.merging import best_settings, sweep
    from mclab.peft_methods import lora_config

    model, tokenizer = load_tiny()
    model = get_peft_model(model, lora_config(4, 8), adapter_name="facts")
    model.add_adapter("style", lora_config(4, 8))
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    model.eval()
    val_sets = [(["What is the code?"], ["The code is 42."], None),
                (["Rewrite: good afternoon."], ["G'day, this arvo."], None)]
    specs = [MergeSpec("linear", (1.0, 0.0)), MergeSpec("linear", (0.5, 0.5)),
             MergeSpec("ties", (1.0, 1.0), density=0.5)]
    with pytest.raises(MergeError, match="unknown combination"):  # checked before any loss
        sweep(model, tokenizer, ["facts", "style"], specs + [MergeSpec("mean", (1, 1))], val_sets)
    rows = sweep(model, tokenizer, ["facts", "style"], specs, val_sets)
    assert rows[0]["setting"] == "base" and len(rows) == 4
    assert list(model.peft_config) == ["facts", "style"]  # the candidate is gone
    first = rows[1]  # (1, 0) is the facts adapter itself: all of its change is kept
    if rows[0]["loss facts"] != rows[0]["single facts"]:
        assert first["kept facts"] == pytest.approx(1.0, abs=1e-4)
    chosen = best_settings(rows)
    assert set(chosen) == {"linear", "ties"}
    linear = max(rows[1:3], key=lambda r: r["worst kept"])
    assert chosen["linear"] == linear["spec"]


def test_validation_sets_hold_no_training_or_eval_item():
    from mclab.data import load_scenario
    from mclab.finetuning import sft_data
    from mclab.merging import validation_sets

    company, local = load_scenario("company"), load_scenario("local")
    (c_prompts, c_answers, _), (s_prompts, s_answers, _) = validation_sets(6, company, local)
    assert len(c_prompts) == len(c_answers) == 6 and len(s_prompts) == len(s_answers) == 6
    users = lambda prompts: {m["content"] for p in prompts for m in p if m["role"] == "user"}  # noqa: E731
    trained = (users(sft_data("company", company=company, train_on=(0,))[0]["prompt"])
               | users(sft_data("local", local=local)[0]["prompt"]))
    assert not (users(c_prompts) | users(s_prompts)) & trained
    evals = {it["question"] for it in company["eval_mc"]} | {r["neutral"] for r in local["rewrites_eval"]}
    assert not any(e in u for u in users(c_prompts) | users(s_prompts) for e in evals)
