"""Checks for 06_parameter_efficient."""

import torch

from ..peft_methods import lora_config, lora_parameter_count, prefix_parameter_count
from . import exercise, fail, passed


@exercise("06 easy: LoRA's trainable parameters")
def check_lora_count(answer, model, *, title: str) -> None:
    true = lora_parameter_count(model, 4, ("q_proj", "v_proj"))
    if not isinstance(answer, int):
        fail(title, f"expected a whole number, got {type(answer).__name__}",
             "sum r * (in_features + out_features) over the targeted layers")
    if answer != true:
        layers = model.config.num_hidden_layers
        if answer * layers == true or answer == true // layers:
            fail(title, f"{answer:,} counts one layer", f"there are {layers} layers")
        if answer == lora_parameter_count(model, 4, ("q_proj",)) or \
                answer == lora_parameter_count(model, 4, ("v_proj",)):
            c = model.config
            h = c.hidden_size
            head = getattr(c, "head_dim", None) or h // c.num_attention_heads
            kv = c.num_key_value_heads * head
            fail(title, f"{answer:,} counts only one of the two projections",
                 f"q_proj maps {h} -> {h} but v_proj maps {h} -> {kv} (grouped-query attention)")
        fail(title, f"{answer:,} is not the {true:,} that peft trains",
             "A is r x in_features and B is out_features x r, for every targeted module")
    return passed(title, f"{true:,} parameters, {true / sum(p.numel() for p in model.parameters()):.3%}"
                  " of the model.")


@exercise("06 medium: prefix tuning's trainable parameters")
def check_prefix_count(answer, model, *, title: str) -> None:
    true = prefix_parameter_count(model, 20)
    c = model.config
    if answer == true * c.num_attention_heads // c.num_key_value_heads:
        fail(title, f"{answer:,} uses all {c.num_attention_heads} query heads",
             f"keys and values exist only for the {c.num_key_value_heads} key/value heads")
    if answer == true // 2:
        fail(title, f"{answer:,} counts keys only", "each virtual token has a key and a value")
    if answer != true:
        fail(title, f"{answer:,} is not the {true:,} that peft trains",
             "tokens x layers x 2 x num_key_value_heads x head_dim")
    return passed(title, f"{true:,} parameters: a 20-token prompt in every layer.")


@exercise("06 hard: merging a LoRA update into the weight")
def check_merge(func, *, title: str) -> None:
    from peft.tuners.lora import Linear as PeftLoraLinear

    torch.manual_seed(0)
    for r, alpha in ((4, 8), (2, 7)):
        layer = PeftLoraLinear(torch.nn.Linear(12, 10, bias=False), "default",
                               lora_config(r, alpha, targets=("proj",)), r=r, lora_alpha=alpha)
        torch.nn.init.normal_(layer.lora_B["default"].weight)
        W = layer.base_layer.weight.detach().clone()
        A = layer.lora_A["default"].weight.detach().clone()
        B = layer.lora_B["default"].weight.detach().clone()
        layer.merge()
        want = layer.base_layer.weight.detach()
        got = func(W, A, B, alpha, r)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            fail(title, f"expected a {tuple(want.shape)} tensor, got "
                 f"{getattr(got, 'shape', type(got).__name__)}",
                 "B (out x r) @ A (r x in) has the shape of W")
        if not torch.allclose(got, want, atol=1e-5):
            if torch.allclose(got, W + B @ A, atol=1e-5):
                fail(title, "the scale alpha / r is missing", "multiply B @ A by alpha / r")
            fail(title, f"with r={r}, alpha={alpha} the merged weight differs from peft's",
                 "W + (alpha / r) * (B @ A)")
    return passed(title, "the same weight peft's merge_and_unload produces.")
