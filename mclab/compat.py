"""Every use of a library's private or version-specific behaviour, in one place.

Each function names the library and the version it was written for (the versions of
requirements.lock: transformers 5.24.0, peft 0.21.2, trl 1.16.0, torch 2.13,
sentence-transformers 6.2.0) and why the
course needs it. `tests/test_compat.py` exercises each one against the installed libraries
on a tiny random Llama; `make test-latest` runs `tests/` on the newest releases, so a release
that changes one of these behaviours fails there, in a test named after the function.
The other modules call these functions and touch no library internals themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import types

import torch


# ---------------------------------------------------------------- transformers: the KV cache

def cache_argument(model) -> str:
    """The name of the forward argument that takes a KV cache.

    transformers 5.24 renamed `past_key_values` to `cache` (the old name is deprecated and
    ignored when both are given); earlier releases only know `past_key_values`.
    """
    return "cache" if "cache" in inspect.signature(model.forward).parameters \
        else "past_key_values"


def generate_cache_argument(model) -> str:
    """The name under which `generate` takes a ready KV cache: `cache_argument` of the
    model that generates (a peft wrapper passes its keywords on to the model it wraps)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return cache_argument(inner)


def repeat_cache(cache, repeats: int):
    """Repeat every batch row of a cache `repeats` times, in place (row i -> rows i*r..i*r+r-1).

    transformers 5.24's `Cache.batch_repeat_interleave`, the method beam search uses; the
    course shares one prompt's cache among its answer options with it. Returns the cache.
    """
    cache.batch_repeat_interleave(repeats)
    return cache


def cache_layer_kv(cache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values a cache holds for one layer, each (batch, kv heads, tokens, head dim).

    transformers 5.24's `DynamicCache` keeps them as `cache.layers[i].keys` / `.values`
    (4.x had `key_cache[i]` / `value_cache[i]`); prefix initialisation reads them.
    """
    return cache.layers[layer].keys, cache.layers[layer].values


# ---------------------------------------------------------------- transformers / trl: training

def checkpointing_argument(config_cls) -> str:
    """The training-arguments field that turns on activation (gradient) checkpointing.

    transformers 5.24 renamed `gradient_checkpointing` to `activation_checkpointing` and warns
    (a FutureWarning on every run) on the old name; trl 1.16's configs inherit the field.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    return "activation_checkpointing" if "activation_checkpointing" in names else \
        "gradient_checkpointing"


def accepts_loss_kwargs(trainer) -> bool:
    """Whether the trainer passes `num_items_in_batch` to the model's loss.

    transformers 5.24's `Trainer.__init__` sets the undocumented `model_accepts_loss_kwargs`
    from the model's signature; a `compute_loss` override must follow it to keep the loss
    summed over a step's micro-batches and divided once.
    """
    return bool(trainer.model_accepts_loss_kwargs)


def loss_at_labelled_positions(model, inputs: dict, labels: torch.Tensor,
                               num_items_in_batch=None):
    """A causal LM's own loss with its output head applied only where a label is.

    transformers 5.24 takes `logits_to_keep` as a boolean (batch, length) mask and returns
    the kept positions' logits flattened (`slice_logits_to_keep`); its `ForCausalLMLoss`
    takes the targets already shifted (`shift_labels`). So the head, about a fifth of a
    135M model's weights, multiplies only the positions whose next token is trained on,
    and the logits held for the backward pass shrink by the same share. Same loss as
    `model(**inputs, labels=labels)` up to float rounding: the same cross-entropy over the
    same targets, averaged the same way (`num_items_in_batch`, or the mean when None). A
    prompt-learning peft model (virtual tokens before the input) takes the model's own loss.
    """
    from transformers.loss.loss_utils import ForCausalLMLoss

    if getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
        # virtual tokens in front of the input would not fit a mask over the input alone
        return loss_at_every_position(model, inputs, labels, num_items_in_batch)
    targets = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
    keep = targets != -100
    outputs = model(**inputs, logits_to_keep=keep)
    vocab = outputs.logits.shape[-1]
    loss = ForCausalLMLoss(outputs.logits, None, vocab, num_items_in_batch=num_items_in_batch,
                           shift_labels=targets[keep])
    return loss, outputs


def loss_at_every_position(model, inputs: dict, labels: torch.Tensor,
                           num_items_in_batch=None):
    """The model's own loss from the logits of every position (`model(..., labels=...)`):
    what `loss_at_labelled_positions` reproduces, and its path for prompt-learning models."""
    kwargs = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
    outputs = model(**inputs, labels=labels, **kwargs)
    return outputs.loss, outputs


def loss_scale_across_processes(trainer) -> int:
    """What transformers 5.24's `Trainer.compute_loss` multiplies a loss by when the model
    took `num_items_in_batch`: with `average_tokens_across_devices` that count covers every
    data-parallel process's tokens, and the gradients are then averaged over the processes,
    so the loss is scaled back up by their number (1 in a single process). A
    `compute_loss` override that passes the count must do the same."""
    args = trainer.args
    if not getattr(args, "average_tokens_across_devices", False):
        return 1
    if args.n_gpu > 1:
        return args.n_gpu
    return trainer.accelerator.num_processes // trainer.get_tp_size()


LM_HEAD_TILE_ON_CPU = 4096  # vocabulary columns per tile of trl's loss on a CPU


def decoder_layers(model) -> list:
    """The model's repeated blocks (transformers' `GradientCheckpointingLayer`, the unit its
    gradient checkpointing recomputes), in order; [] where transformers has no such class."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


@contextlib.contextmanager
def lm_head_tile(columns: int | None):
    """trl's fused loss computes the logits in tiles of this many vocabulary columns, inside
    the block (None: trl's own size).

    trl 1.16's `_ChunkedLogProbFunction` (the loss SFTTrainer and GRPOTrainer use) projects
    up to 4,096 tokens x `trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE` (32,768) columns at
    once, read at each call. On a GPU Triton folds a tile in one pass; on a CPU torch ops
    make several temporaries of the tile's size (a batch of 8 x 128 tokens: about 130 MB
    each). Smaller tiles give the same log-probabilities up to rounding (online logsumexp)
    in less memory: measured, a full-weight step on 8 x 128 tokens added 841 MB over the
    model with 4,096 columns and 1,285 MB with 32,768 (docs/performance.md).
    """
    import trl.trainer.utils as trl_utils

    before = getattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", None)
    if columns is None or before is None:  # a trl without the setting: its own tiles
        yield
        return
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = columns
    try:
        yield
    finally:
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = before


# ---------------------------------------------------------------- sentence-transformers

def embedding_dimension(embedder) -> int:
    """The length of the embedder's vectors.

    sentence-transformers 6.2 names it `get_embedding_dimension()`; 5.x and earlier only have
    `get_sentence_embedding_dimension()`, and the course's ranges still allow 5.x.
    """
    getter = getattr(embedder, "get_embedding_dimension", None) or \
        embedder.get_sentence_embedding_dimension
    return int(getter())


# ---------------------------------------------------------------- peft: adapters and prefixes

def is_injected_tuner(peft_model) -> bool:
    """Whether the adapter is injected into the base model's layers (LoRA and the like).

    peft 0.21: such adapters wrap the model in a `peft.tuners.tuners_utils.BaseTuner` and must
    be `unload()`-ed; prompt-learning adapters (prefix, prompt tuning) leave the base as it was.
    """
    from peft.tuners.tuners_utils import BaseTuner

    return isinstance(getattr(peft_model, "base_model", None), BaseTuner)


def write_prefix_weights(peft_model, layers_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Set a prefix-tuned model's prefix to given keys and values, one (keys, values) a layer.

    Each tensor is (kv heads, virtual tokens, head dim). peft 0.21 stores the prefix (without
    a projection) as one embedding of (virtual tokens, layer x key/value x head x dim) that
    `get_prompt` reshapes into the cache; this writes that layout.
    """
    parts = []
    for keys, values in layers_kv:
        parts += [keys.permute(1, 0, 2), values.permute(1, 0, 2)]  # (tokens, heads, dim)
    weight = torch.stack(parts, dim=1).reshape(parts[0].shape[0], -1)
    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    with torch.no_grad():
        encoder.embedding.weight.copy_(weight)


def adapter_disabled(peft_model) -> bool:
    """True inside peft 0.21's `disable_adapter()` for a prompt-learning model, which swaps the
    instance's `forward` for the base model's (there is no public flag for it)."""
    return peft_model.__dict__.get("forward") == peft_model.base_model.forward


def _prefix_generate(self, input_ids=None, attention_mask=None, **kwargs):
    """generate() for a prefix-tuned PeftModel that really uses the trained prefix.

    The prefix's key/value cache is passed as the cache of the first `n` positions, and `n`
    placeholder tokens are put in front of the prompt so generation skips exactly those.
    """
    if adapter_disabled(self):
        return self.base_model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                        **kwargs)
    n = self.active_peft_config.num_virtual_tokens
    batch = input_ids.shape[0]
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    cache = self.get_prompt(batch_size=batch, max_cache_len=input_ids.shape[1] + n
                            + kwargs.get("max_new_tokens", 0))
    filler = torch.full((batch, n), self.base_model.config.bos_token_id or 0, dtype=input_ids.dtype,
                        device=input_ids.device)
    ids = torch.cat([filler, input_ids], dim=1)
    mask = torch.cat([torch.ones((batch, n), dtype=attention_mask.dtype,
                                 device=attention_mask.device), attention_mask], dim=1)
    out = self.base_model.generate(input_ids=ids, attention_mask=mask,
                                   **{cache_argument(self.base_model): cache}, **kwargs)
    return out[:, n:]


def patch_prefix_generate(peft_model) -> None:
    """Replace a prefix-tuned PeftModel's `generate` with one that uses the prefix.

    transformers 5.24 takes the generation cache as `cache`; peft 0.21 still injects the
    prefix as `past_key_values`, which the model then ignores ("Both `past_key_values` and
    `cache` are set ... ignoring deprecated past_key_values"), so it generates as if it had
    no prefix. Forward passes (training, scoring) are not affected.
    """
    peft_model.generate = types.MethodType(_prefix_generate, peft_model)


# ---------------------------------------------------------------- trl: oracles for the exercises

def trl_sft_labels(tokenizer, examples: list[dict]) -> dict[str, torch.Tensor]:
    """The batch trl's SFTTrainer trains on for `chat_example` rows: input ids and labels.

    trl 1.16 tokenizes a conversational prompt/completion row in `SFTTrainer._prepare_dataset`
    (the prompt alone with the generation prompt, then prompt + completion; the completion
    starts where the two diverge), sets the labels of the prompt tokens to -100 there, and
    `DataCollatorForLanguageModeling` pads (ids with the pad token, labels with -100). The
    method reads only `_tokenizer`, `completion_only_loss` and `chat_template` from the
    trainer, so it runs here without a model; 04's loss-mask exercise is checked against it.
    """
    from datasets import Dataset, disable_progress_bars, enable_progress_bars
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trainer = types.SimpleNamespace(_tokenizer=tokenizer, completion_only_loss=True,
                                    chat_template=None)
    args = SFTConfig(output_dir="unused", use_cpu=True, bf16=False, report_to=[],
                     max_length=None, **{checkpointing_argument(SFTConfig): False})
    disable_progress_bars()
    try:
        rows = SFTTrainer._prepare_dataset(trainer, Dataset.from_list(list(examples)), tokenizer,
                                           args, False, None, "exercise")
    finally:
        enable_progress_bars()
    collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    batch = collate([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    return {"input_ids": batch["input_ids"], "labels": batch["labels"]}


class _FakeAccelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather


def trl_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                 beta: float) -> tuple[float, dict]:
    """trl's DPO loss (loss type "sigmoid") from the four summed log-probabilities.

    trl 1.16 has no standalone loss function: `DPOTrainer._compute_loss` runs the policy,
    sums the per-token log-probabilities of each completion and applies the loss. This calls
    that method with a stand-in policy whose per-token log-probabilities sum to the given
    values (one completion token each) and precomputed reference log-probabilities, so the
    arithmetic is trl's own. Returns (loss, trl's logged metrics such as rewards/margins).
    """
    from collections import defaultdict

    from trl import DPOTrainer

    chosen, rejected = (torch.as_tensor(x, dtype=torch.float32).reshape(-1)
                        for x in (policy_chosen, policy_rejected))
    n = chosen.numel()
    logps = torch.cat([chosen, rejected]).reshape(-1, 1)  # batch is [chosen, rejected]

    def policy(**_):
        zeros = torch.zeros_like(logps)
        return types.SimpleNamespace(log_probs=logps, entropy=zeros, mean_logits=zeros,
                                     is_top1=zeros.bool(), aux_loss=None)

    trainer = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True), accelerator=_FakeAccelerator(),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
        f_divergence_type="reverse_kl", loss_types=["sigmoid"], loss_weights=[1.0], beta=beta,
        label_smoothing=0.0, use_weighting=False, _metrics={"train": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros((2 * n, 2), dtype=torch.long),
              "attention_mask": torch.ones((2 * n, 2), dtype=torch.long),
              "completion_mask": torch.tensor([[0, 1]] * (2 * n)),
              "ref_chosen_logps": torch.as_tensor(ref_chosen, dtype=torch.float32).reshape(-1),
              "ref_rejected_logps": torch.as_tensor(ref_rejected, dtype=torch.float32).reshape(-1)}
    loss = DPOTrainer._compute_loss(trainer, policy, inputs, False)
    return float(loss), {k: v[-1] for k, v in trainer._metrics["train"].items()}
