"""PEFT helpers: the notebook's LoRA layer matches peft, prefix generation uses the prefix,
bad settings fail before training, adapters are small and load back."""

from pathlib import Path

import nbformat
import pytest
import torch
from datasets import Dataset

from mclab import peft_methods as pm
from mclab.training import TrainConfig, TrainingInputError, chat_example, train_sft

NOTEBOOK = Path(__file__).resolve().parent.parent / "solutions" / "06_parameter_efficient.ipynb"


def _notebook_lora_class():
    """The LoRALinear class exactly as notebook 06 defines it."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = next(c.source for c in nb.cells
                  if c.cell_type == "code" and "class LoRALinear" in c.source)
    namespace = {"torch": torch}
    exec(source, namespace)
    return namespace["LoRALinear"]


def test_notebook_lora_layer_matches_peft():
    from peft.tuners.lora import Linear as PeftLoraLinear

    LoRALinear = _notebook_lora_class()
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 12)
    ours = LoRALinear(base, r=4, alpha=8)
    assert sum(p.numel() for p in ours.parameters() if p.requires_grad) == 4 * (16 + 12)
    x = torch.randn(3, 16)
    assert torch.allclose(ours(x), base(x))  # B starts at zero: training starts at the model
    torch.nn.init.normal_(ours.B)
    theirs = PeftLoraLinear(torch.nn.Linear(16, 12), "default", pm.lora_config(4, 8, ("x",)),
                            r=4, lora_alpha=8)
    with torch.no_grad():
        theirs.base_layer.load_state_dict(base.state_dict())
        theirs.lora_A["default"].weight.copy_(ours.A)
        theirs.lora_B["default"].weight.copy_(ours.B)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    assert not torch.allclose(ours(x), base(x))


@pytest.mark.parametrize("make, message", [
    (lambda: pm.lora_config(r=0), "rank must be a positive integer"),
    (lambda: pm.lora_config(r=4, alpha=0), "alpha must be positive"),
    (lambda: pm.lora_config(r=4, targets=()), "at least one target"),
    (lambda: pm.prefix_config(0), "num_virtual_tokens"),
])
def test_bad_peft_settings_raise(make, message):
    with pytest.raises(TrainingInputError, match=message):
        make()


def test_parameter_counts_match_peft(model_and_tokenizer):
    from peft import get_peft_model

    model, _ = model_and_tokenizer
    for config, expected in [(pm.lora_config(4, 8, ("q_proj", "v_proj")),
                              pm.lora_parameter_count(model, 4, ("q_proj", "v_proj"))),
                             (pm.prefix_config(5), pm.prefix_parameter_count(model, 5))]:
        wrapped = get_peft_model(model, config)
        trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        model = pm.detach_adapter(wrapped)
        assert trainable == expected
    costs = pm.adapter_costs(model, 8, 16, 10)
    assert costs["LoRA scaling alpha / r"] == 2.0
    with pytest.raises(ValueError):
        pm.adapter_costs(model, 0, 16, 10)


def test_panel_keeps_the_shapes_not_the_weights(model_and_tokenizer):
    """06 frees its merged model after building the panel (issue 15: its peak): the panel
    must count from a weightless skeleton and keep no reference to the model it was given."""
    import gc
    import weakref

    from transformers import LlamaConfig, LlamaForCausalLM

    from mclab.models import skeleton

    model, _ = model_and_tokenizer
    shapes = skeleton(model)
    assert all(p.is_meta for p in shapes.parameters())
    for targets in [("q_proj", "v_proj"), pm.LORA_TARGETS["MLP (gate, up, down)"]]:
        assert pm.adapter_costs(shapes, 8, 16, 10, targets) == pm.adapter_costs(
            model, 8, 16, 10, targets)
    small = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, vocab_size=128))
    alive = weakref.ref(small)
    panel = pm.peft_panel(small)
    del small
    gc.collect()
    assert alive() is None, "the panel keeps the real model (and its weights) alive"
    assert panel is not None


def test_prefix_generation_uses_the_prefix(model_and_tokenizer):
    from peft import get_peft_model

    from mclab.generation import format_chat, generate

    model, tok = model_and_tokenizer
    wrapped = get_peft_model(model, pm.prefix_config(4))
    prompts = ["What is the capital of France?"]
    with wrapped.disable_adapter():
        plain = generate(wrapped, tok, prompts, max_new_tokens=6)
    pm.enable_prefix_generation(wrapped)
    fixed = generate(wrapped, tok, prompts, max_new_tokens=6)
    with wrapped.disable_adapter():  # the patch respects a disabled adapter
        assert generate(wrapped, tok, prompts, max_new_tokens=6) == plain
    ids = tok(format_chat(tok, prompts[0]), return_tensors="pt", add_special_tokens=False)["input_ids"]
    start = ids.shape[1]
    with torch.no_grad():  # reference: greedy decoding with the prefix model's own forward
        for _ in range(6):
            nxt = wrapped(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
            if nxt.item() == tok.eos_token_id:
                break
    manual = tok.decode(ids[0, start:], skip_special_tokens=True).strip()
    pm.detach_adapter(wrapped)
    assert fixed == [manual]
    assert fixed != plain  # a random prefix changes the answer


def test_completion_loss_and_training_saves_a_small_adapter(model_and_tokenizer, runs_dir):
    from peft import PeftModel

    model, tok = model_and_tokenizer
    data = Dataset.from_list([chat_example("Say the code.", "The code is 7731.")] * 4)
    before = pm.completion_loss(model, tok, ["Say the code."], ["The code is 7731."])
    expected = pm.lora_parameter_count(model, 4, ("q_proj", "v_proj"))
    result, row = pm.train_adapter(model, tok, data,
                                   TrainConfig(learning_rate=3e-3, max_steps=4, batch_size=2,
                                               run_name="t-lora"),
                                   pm.lora_config(4, 8), ["Say the code."], ["The code is 7731."])
    assert row["val_loss"] < before
    assert Path(row["path"]).is_dir() and row["adapter_kb"] < 1024  # kilobytes, not megabytes
    assert row["trainable"] == expected
    assert row["peak_mb"] > 0 and row["seconds"] > 0
    base = pm.detach_adapter(result.model)
    reloaded = PeftModel.from_pretrained(base, row["path"])
    again = pm.completion_loss(reloaded, tok, ["Say the code."], ["The code is 7731."])
    pm.detach_adapter(reloaded)
    assert again == pytest.approx(row["val_loss"], rel=1e-4)


def test_train_sft_refuses_rank_zero_before_training(runs_dir):
    data = Dataset.from_list([chat_example("a", "b")])
    with pytest.raises(TrainingInputError, match="rank"):
        train_sft(None, None, data, TrainConfig(), peft_config=pm.lora_config(r=0))
    assert not runs_dir.exists()


def test_peak_memory_and_sizes(tmp_path):
    with pm.PeakMemory() as mem:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB
        del block
    assert mem.peak_mb >= mem.start_mb and mem.seconds >= 0
    (tmp_path / "a.bin").write_bytes(b"x" * 2**20)
    assert pm.folder_size_mb(tmp_path) == pytest.approx(1.0)


def test_prefix_init_from_text_starts_near_the_model(model_and_tokenizer):
    from peft import get_peft_model

    model, tok = model_and_tokenizer
    prompt, answer = ["Rewrite casually: I will see you later."], ["See ya later."]
    base = pm.completion_loss(model, tok, prompt, answer)
    wrapped = get_peft_model(model, pm.prefix_config(4))
    random_start = pm.completion_loss(wrapped, tok, prompt, answer)
    pm.init_prefix_from_text(wrapped, tok, "Casual Australian English.")
    text_start = pm.completion_loss(wrapped, tok, prompt, answer)
    pm.detach_adapter(wrapped)
    assert abs(text_start - base) < abs(random_start - base)
