"""mclab.compat against the installed libraries: one test per function, on the tiny Llama.

Each test asserts the behaviour the course relies on, so a release that changes it fails
here (and in `make test-latest`), in the test named after the function to revisit.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from mclab import compat


def _ids(tok, texts):
    return tok(texts, return_tensors="pt", add_special_tokens=False)["input_ids"]


@torch.no_grad()
def test_cache_argument_is_the_one_the_forward_uses(load_tiny):
    model, tok = load_tiny()
    ids = _ids(tok, ["The capital of France is Paris"])
    full = model(input_ids=ids).logits[0, -1]
    head = model(input_ids=ids[:, :-1], use_cache=True).past_key_values
    name = compat.cache_argument(model)
    tail = model(input_ids=ids[:, -1:], **{name: head}).logits[0, -1]
    torch.testing.assert_close(tail, full, atol=1e-4, rtol=1e-4)  # the cache was used, not ignored


@torch.no_grad()
def test_repeat_cache_repeats_each_row_in_place(load_tiny):
    model, tok = load_tiny()
    ids = _ids(tok, ["one two three", "four five six"])
    assert ids.shape[0] == 2
    cache = model(input_ids=ids, use_cache=True).past_key_values
    before = [tuple(t.clone() for t in compat.cache_layer_kv(cache, i)) for i in range(2)]
    assert compat.repeat_cache(cache, 3) is cache
    for layer, (keys, values) in enumerate(before):
        got_keys, got_values = compat.cache_layer_kv(cache, layer)
        torch.testing.assert_close(got_keys, keys.repeat_interleave(3, dim=0))
        torch.testing.assert_close(got_values, values.repeat_interleave(3, dim=0))


@torch.no_grad()
def test_cache_layer_kv_holds_the_layers_keys_and_values(load_tiny):
    model, tok = load_tiny()
    cfg = model.config
    heads, head_dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    ids = _ids(tok, ["a short text to cache"])
    seen = {}
    hooks = [getattr(model.model.layers[1].self_attn, name).register_forward_hook(
        lambda _m, _i, out, name=name: seen.__setitem__(name, out)) for name in ("k_proj", "v_proj")]
    try:
        cache = model(input_ids=ids, use_cache=True).past_key_values
    finally:
        for hook in hooks:
            hook.remove()
    keys, values = compat.cache_layer_kv(cache, 1)
    n = ids.shape[1]
    assert keys.shape == values.shape == (1, heads, n, head_dim)
    fresh = {name: out.view(1, n, heads, head_dim).transpose(1, 2) for name, out in seen.items()}
    torch.testing.assert_close(values, fresh["v_proj"])  # values are stored as projected
    # keys are stored after the rotary embedding, which is the identity at position 0
    torch.testing.assert_close(keys[:, :, 0], fresh["k_proj"][:, :, 0])


def test_checkpointing_argument_is_a_field_that_does_not_warn(tmp_path):
    import dataclasses

    from transformers import TrainingArguments
    from trl import DPOConfig, SFTConfig

    for config_cls in (TrainingArguments, SFTConfig, DPOConfig):
        name = compat.checkpointing_argument(config_cls)
        assert name in {f.name for f in dataclasses.fields(config_cls)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True,
                         **{compat.checkpointing_argument(SFTConfig): True})
    assert getattr(args, compat.checkpointing_argument(SFTConfig)) is True
    assert not [w for w in caught if "checkpointing" in str(w.message)], \
        [str(w.message) for w in caught]


def test_accepts_loss_kwargs_reads_the_trainers_choice(load_tiny, tmp_path):
    from transformers import Trainer, TrainingArguments

    model, _ = load_tiny()
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path),
                                                          report_to="none", use_cpu=True))
    # a Llama forward takes the loss kwargs (num_items_in_batch), so the trainer passes them
    assert compat.accepts_loss_kwargs(trainer) is True


def test_embedding_dimension_is_the_vectors_length(embedder):
    assert compat.embedding_dimension(embedder) == len(embedder.encode(["a sentence"])[0])


def test_is_injected_tuner_tells_lora_from_prefix(load_tiny):
    from peft import get_peft_model

    from mclab.peft_methods import lora_config, prefix_config

    model, _ = load_tiny()
    assert not compat.is_injected_tuner(model)
    lora = get_peft_model(model, lora_config(2, 4))
    assert compat.is_injected_tuner(lora)
    model = lora.unload()
    assert not any("lora" in name for name, _ in model.named_modules())
    prefix = get_peft_model(model, prefix_config(2))
    assert not compat.is_injected_tuner(prefix)


@torch.no_grad()
def test_write_prefix_weights_is_the_cache_peft_builds(load_tiny):
    from peft import get_peft_model

    from mclab.peft_methods import prefix_config

    model, _ = load_tiny()
    cfg = model.config
    heads, head_dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    wrapped = get_peft_model(model, prefix_config(3))
    torch.manual_seed(1)
    layers_kv = [(torch.randn(heads, 3, head_dim), torch.randn(heads, 3, head_dim))
                 for _ in range(cfg.num_hidden_layers)]
    compat.write_prefix_weights(wrapped, layers_kv)
    cache = wrapped.get_prompt(batch_size=2)
    for layer, (keys, values) in enumerate(layers_kv):
        got_keys, got_values = compat.cache_layer_kv(cache, layer)
        torch.testing.assert_close(got_keys, keys.expand(2, -1, -1, -1))
        torch.testing.assert_close(got_values, values.expand(2, -1, -1, -1))


def test_adapter_disabled_inside_disable_adapter(load_tiny):
    from peft import get_peft_model

    from mclab.peft_methods import prefix_config

    wrapped = get_peft_model(load_tiny()[0], prefix_config(2))
    assert not compat.adapter_disabled(wrapped)
    with wrapped.disable_adapter():
        assert compat.adapter_disabled(wrapped)
    assert not compat.adapter_disabled(wrapped)


@torch.no_grad()
def test_patch_prefix_generate_makes_generate_use_the_prefix(load_tiny):
    from peft import get_peft_model

    from mclab.peft_methods import prefix_config

    model, tok = load_tiny()
    ids = _ids(tok, ["Tell me a story about a dog"])
    settings = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False,
                    pad_token_id=tok.pad_token_id)
    plain = model.generate(input_ids=ids, **settings)
    torch.manual_seed(0)
    wrapped = get_peft_model(model, prefix_config(4))
    with torch.no_grad():  # a prefix large enough to move a random model's greedy choice
        wrapped.prompt_encoder["default"].embedding.weight.mul_(5)
    # the bug the patch works around: peft's generate ignores the prefix
    assert torch.equal(wrapped.generate(input_ids=ids, **settings), plain), \
        "peft's own generate now uses the prefix: patch_prefix_generate may be dropped"
    compat.patch_prefix_generate(wrapped)
    fixed = wrapped.generate(input_ids=ids, **settings)
    manual = ids  # greedy decoding with the prefix model's forward, which uses the prefix
    for _ in range(5):
        manual = torch.cat([manual, wrapped(input_ids=manual).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(fixed, manual)
    assert not torch.equal(fixed[:, -5:], plain[:, -5:])  # the prefix changed the answer
    with wrapped.disable_adapter():
        assert torch.equal(wrapped.generate(input_ids=ids, **settings), plain)


def test_lm_head_tile_gives_trls_loss_in_smaller_tiles(load_tiny, monkeypatch):
    """compat.lm_head_tile: trl's fused loss really runs in the course's tiles on a CPU (the
    size reaches trl's kernel), gives the same loss and gradient as trl's own size, and trl's
    size comes back after the block."""
    import trl.trainer.utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    kernel = trl_utils._ChunkedLogProbFunction
    seen = []

    class Recording:  # trl's kernel, recording the tile width it is called with
        @staticmethod
        def apply(*args):
            seen.append(args[5])  # (hidden, weight, bias, targets, temperature, chunk_size, ...)
            return kernel.apply(*args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Recording)
    model, tok = load_tiny()
    add_fused_lm_head(model)
    ids = _ids(tok, ["The capital of France is Paris"])
    own = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    results = []
    for columns in (None, compat.LM_HEAD_TILE_ON_CPU):
        model.zero_grad()
        with compat.lm_head_tile(columns):
            loss = model(input_ids=ids, labels=ids, fused_lm_head=True).loss
        loss.backward()
        results.append((loss.detach(), model.get_output_embeddings().weight.grad.clone()))
        assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == own
    assert seen == [own, compat.LM_HEAD_TILE_ON_CPU]
    (loss, grad), (tiled_loss, tiled_grad) = results
    assert model.config.vocab_size > compat.LM_HEAD_TILE_ON_CPU  # the tiles cut the vocabulary
    torch.testing.assert_close(tiled_loss, loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tiled_grad, grad, atol=1e-5, rtol=1e-4)
    assert grad.abs().max() > 0



@pytest.mark.parametrize("count", [None, 7], ids=["mean", "summed over a step's 7 tokens"])
def test_loss_at_labelled_positions_is_the_models_own_loss(load_tiny, count):
    """Issue 15 (plan lever L6): the head applied only where a label is gives the model's own
    loss and gradients, and holds logits for the labelled positions only."""
    torch.manual_seed(0)
    model, tok = load_tiny()
    ids = _ids(tok, ["one two three four five six", "seven eight nine ten eleven twelve"])
    labels = ids.clone()
    labels[0, :4] = -100  # a prompt, masked as trl masks it
    labels[1, :2] = -100
    labels[1, -1] = -100  # padding at the end
    mask = torch.ones_like(ids)
    n = None if count is None else torch.tensor(count)
    grads = []
    for lean in (False, True):
        model.zero_grad()
        inputs = {"input_ids": ids, "attention_mask": mask}
        if lean:
            loss, out = compat.loss_at_labelled_positions(model, inputs, labels, n)
            shifted = labels[:, 1:]
            assert out.logits.shape[0] == int((shifted != -100).sum())  # kept positions only
        else:
            kwargs = {} if n is None else {"num_items_in_batch": n}
            loss = model(**inputs, labels=labels, **kwargs).loss
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[1][1], grads[0][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_loss_at_labelled_positions_gives_a_prompt_tuning_model_its_own_loss(load_tiny):
    """Virtual tokens before the input would not fit a mask over the input: such a model
    takes its own loss (the same number) instead of failing."""
    from peft import PromptTuningConfig, get_peft_model

    model, tok = load_tiny()
    peft_model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM",
                                                          num_virtual_tokens=3))
    ids = _ids(tok, ["one two three four five six"])
    labels = ids.clone()
    labels[0, :3] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    loss, _ = compat.loss_at_labelled_positions(peft_model, inputs, labels)
    torch.testing.assert_close(loss, peft_model(**inputs, labels=labels).loss)


def test_loss_scale_across_processes_is_transformers_own():
    """transformers 5.24's compute_loss scales a loss summed over every process's tokens by
    the number of data-parallel processes; 1 in one process or without that averaging."""
    from types import SimpleNamespace

    def trainer(processes, average=True, n_gpu=1, tp=1):
        return SimpleNamespace(args=SimpleNamespace(average_tokens_across_devices=average,
                                                    n_gpu=n_gpu),
                               accelerator=SimpleNamespace(num_processes=processes),
                               get_tp_size=lambda: tp)

    assert compat.loss_scale_across_processes(trainer(1)) == 1
    assert compat.loss_scale_across_processes(trainer(2)) == 2
    assert compat.loss_scale_across_processes(trainer(4, tp=2)) == 2
    assert compat.loss_scale_across_processes(trainer(2, average=False)) == 1
    assert compat.loss_scale_across_processes(trainer(1, n_gpu=2)) == 2
    from transformers import Trainer

    assert hasattr(Trainer, "get_tp_size")  # the method the scale reads

def test_trl_sft_labels_mask_the_prompt_and_padding(load_tiny):
    """compat.trl_sft_labels (the oracle) is trl's own batch: the loss falls on the answer only."""
    from mclab.compat import trl_sft_labels
    from mclab.training import chat_example

    tok = load_tiny()[1]
    batch = trl_sft_labels(tok, [chat_example("Hi", "G'day"),
                                 chat_example("A longer question?", "Yes")])
    for r, answer in enumerate(("G'day", "Yes")):
        kept = batch["labels"][r][batch["labels"][r] != -100].tolist()
        assert tok.decode(kept).startswith(answer)
    assert batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][:, 0] == -100).all()  # the prompt carries no loss
    assert batch["labels"][0, -1] == -100  # the shorter row's padding carries none either


def test_trl_dpo_loss_is_the_margin_loss():
    """compat.trl_dpo_loss runs trl's own loss code; it equals mclab.rl.dpo_loss on margins."""
    from mclab import rl
    from mclab.compat import trl_dpo_loss

    pc, pr, rc, rr = torch.randn(4, 5)
    loss, metrics = trl_dpo_loss(pc, pr, rc, rr, 0.2)
    margins = ((pc - rc) - (pr - rr)).numpy()
    assert loss == pytest.approx(rl.dpo_loss(margins, 0.2), abs=1e-6)
    assert metrics["rewards/margins"] == pytest.approx(0.2 * margins.mean(), abs=1e-5)
    assert trl_dpo_loss(pc, pr, pc, pr, 0.5)[0] == pytest.approx(math.log(2), abs=1e-6)
