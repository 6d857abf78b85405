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


def _tiny_prefix_model(tokens: int, layers: int = 3, heads: int = 4, kv_heads: int = 2,
                       head_dim: int = 6):
    """A random tiny Llama with a peft prefix of random values: shapes all differ, so a
    transposed or swapped axis shows."""
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..peft_methods import prefix_config

    import warnings

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=heads * head_dim, intermediate_size=16,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, head_dim=head_dim)
    with warnings.catch_warnings():  # peft 0.21 calls a deprecated transformers 5.24 name
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(LlamaForCausalLM(config), prefix_config(tokens))
    encoder = model.prompt_encoder[model.active_adapter]
    with torch.no_grad():
        encoder.embedding.weight.normal_()
    return model, encoder.embedding.weight.detach().clone(), config


@exercise("06 medium: prefix tuning's virtual keys and values")
def check_prefix_kv(func, *, title: str) -> None:
    from ..compat import cache_layer_kv

    model, weight, c = _tiny_prefix_model(tokens=3)
    with torch.no_grad():
        cache = model.get_prompt(batch_size=1)
    want = [tuple(t[0] for t in cache_layer_kv(cache, i)) for i in range(c.num_hidden_layers)]
    got = func(weight.clone(), c.num_hidden_layers, c.num_key_value_heads, c.head_dim)
    if not isinstance(got, (list, tuple)) or len(got) != len(want):
        size = f" of length {len(got)}" if hasattr(got, "__len__") else ""
        fail(title, f"expected a list of {len(want)} (keys, values) pairs, one per layer; got "
             f"{type(got).__name__}{size}",
             "return [(keys_0, values_0), (keys_1, values_1), ...]")
    shape = tuple(want[0][0].shape)
    for i, (pair, (k, v)) in enumerate(zip(got, want)):
        if len(pair) != 2 or any(tuple(getattr(t, "shape", ())) != shape for t in pair):
            fail(title, f"layer {i}: expected keys and values each of shape {shape} (kv heads, "
                 f"virtual tokens, head dim), got {[tuple(getattr(t, 'shape', ())) for t in pair]}",
                 "view the table as (tokens, layers * 2, kv heads, head dim), then move the "
                 "axes with permute so heads come before tokens")
        gk, gv = pair
        if torch.allclose(gk, v) and torch.allclose(gv, k):
            fail(title, f"layer {i}: keys and values are swapped",
                 "along the 'layers * 2' axis, entry 2i is layer i's keys and 2i+1 its values")
        flat = [t for layer in want for t in layer]
        for name, mine, right in (("keys", gk, k), ("values", gv, v)):
            if torch.allclose(mine, right):
                continue
            for j, t in enumerate(flat):
                if torch.allclose(mine, t):
                    fail(title, f"your layer {i} {name} are peft's "
                         f"{'keys' if j % 2 == 0 else 'values'} of layer {j // 2}",
                         "the 'layers * 2' axis interleaves: [layer 0 keys, layer 0 values, "
                         "layer 1 keys, ...]")
            bad = (~torch.isclose(mine, right)).nonzero()
            fail(title, f"layer {i}: your {name} differ from peft's in {len(bad)} of "
                 f"{right.numel()} numbers, first at head {int(bad[0, 0])}, token "
                 f"{int(bad[0, 1])}", "each row of the table is one virtual token: "
                 "weight.view(tokens, layers * 2, kv_heads, head_dim), then .permute(1, 2, 0, 3)")
    return passed(title, f"the cache peft's get_prompt builds: {c.num_hidden_layers} layers of "
                  f"{shape[0]} key/value heads x {shape[1]} virtual tokens x {shape[2]} numbers, "
                  "each layer's attention reads them before the real tokens.")
