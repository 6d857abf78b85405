"""Chat formatting and batched generation: greedy by default, seeded sampling on request."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import get_settings
from .device import model_device
from .models import lora_merged

Messages = list[dict]
# Quick mode (tests, CI) proves that every cell runs; it does not produce numbers. Decoding is
# most of a quick run's time, so there answers stop after this many new tokens.
QUICK_MAX_NEW_TOKENS = 16


def new_token_budget(max_new_tokens: int) -> int:
    """`max_new_tokens`, capped at `QUICK_MAX_NEW_TOKENS` in quick mode (full mode: as asked)."""
    return min(max_new_tokens, QUICK_MAX_NEW_TOKENS) if get_settings().quick else max_new_tokens


class ContextWindowError(ValueError):
    """A prompt does not fit the model's context window."""


def to_messages(prompt: str | Messages, system: str | None = None) -> Messages:
    """A user string (or a ready message list) as chat messages, with an optional system turn."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = list(prompt)
    if system and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def format_chat(tokenizer, prompt: str | Messages, system: str | None = None) -> str:
    """The exact text the model sees, ending where the assistant starts to answer."""
    return tokenizer.apply_chat_template(
        to_messages(prompt, system), tokenize=False, add_generation_prompt=True
    )


def context_window(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


def check_fits(model, n_tokens: int, max_new_tokens: int = 0) -> None:
    """Raise a clear error when a prompt plus its answer would overflow the context."""
    limit = context_window(model)
    if n_tokens + max_new_tokens > limit:
        raise ContextWindowError(
            f"The prompt is {n_tokens} tokens and the answer may add {max_new_tokens}, "
            f"but the model's context window is {limit} tokens. Shorten the prompt "
            "(fewer documents or examples, or retrieve only the relevant passages with RAG)."
        )


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int


@torch.no_grad()
def generate(model, tokenizer, prompts: list, system: str | None = None,
             max_new_tokens: int = 64, temperature: float = 0.0, seed: int | None = None,
             batch_size: int = 16, details: bool = False) -> list:
    """Answers to a list of prompts (strings or message lists).

    Greedy when `temperature` is 0; otherwise sampling, seeded by `seed` so the same call
    gives the same text twice. With `details=True`, `Generation` records with token counts.
    In quick mode at most `QUICK_MAX_NEW_TOKENS` are generated.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    max_new_tokens = new_token_budget(max_new_tokens)
    if isinstance(prompts, str):
        prompts = [prompts]
    texts = [format_chat(tokenizer, p, system) for p in prompts]
    if seed is not None:
        torch.manual_seed(seed)
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        with lora_merged(model):  # a LoRA answers at the base model's speed
            results = _generate_batches(model, tokenizer, texts, max_new_tokens, temperature,
                                        batch_size)
    finally:
        tokenizer.padding_side = old_side
    return results if details else [r.text for r in results]


def _generate_batches(model, tokenizer, texts, max_new_tokens, temperature, batch_size):
    """`generate`'s batches, in order, as `Generation` records."""
    results = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], return_tensors="pt",
                          padding=True, add_special_tokens=False).to(model_device(model))
        check_fits(model, batch["input_ids"].shape[1], max_new_tokens)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} \
            if temperature > 0 else {"do_sample": False, "temperature": None, "top_p": None,
                                     "top_k": None}
        out = model.generate(**batch, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
        prompt_len = batch["input_ids"].shape[1]
        for row, mask in zip(out, batch["attention_mask"]):
            new = row[prompt_len:]
            text = tokenizer.decode(new, skip_special_tokens=True).strip()
            n_new = int((new != tokenizer.pad_token_id).sum())
            results.append(Generation(text, int(mask.sum()), n_new))
    return results
