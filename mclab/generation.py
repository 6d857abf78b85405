"""Chat formatting and batched generation: greedy by default, seeded sampling on request.

Prompts of one call often share their first tokens (the chat template's system turn and
an instruction: 54 of the 71 tokens of a locality rewrite prompt). `generate` runs that
shared part once per batch and gives each row a copy of its key/value cache, so the model
reads only each row's own tokens (`shared_prefix_length`); the answers are those of
reading every prompt whole, up to float rounding (tests/test_generation_prefix.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import get_settings
from .device import model_device

Messages = list[dict]
# Quick mode (tests, CI) proves that every cell runs; it does not produce numbers. Decoding is
# most of a quick run's time, so there answers stop after this many new tokens.
QUICK_MAX_NEW_TOKENS = 16
# A shared start shorter than this is read with each prompt (its saving would not pay for
# the extra forward pass that reads it once).
MIN_SHARED_PREFIX = 8
# A generation batch holds every row's key/value cache up to its last new token, about 46 KB
# a token for SmolLM2-135M in fp32: rows x (longest prompt + new tokens) within this many
# tokens keeps it near 190 MB. 16 locality prompts (71 + 64 tokens) still go together;
# 01's 8-shot prompts (586 tokens) go 6 at a time instead of 16 (issue 15).
MAX_BATCH_TOKENS = 4096


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
        results = _generate_batches(model, tokenizer, texts, max_new_tokens, temperature,
                                    batch_size, shared_prefix=can_share_prefix(model))
    finally:
        tokenizer.padding_side = old_side
    return results if details else [r.text for r in results]


def token_chunks(lengths: list[int], batch_size: int,
                 max_tokens: int = MAX_BATCH_TOKENS) -> list[tuple[int, int]]:
    """Consecutive batches `(start, end)` in the prompts' own order (so seeded sampling
    draws as before wherever the budget does not cut): at most `batch_size` rows, and rows x
    the batch's longest length within `max_tokens` (a row over the budget goes alone)."""
    if batch_size < 1 or max_tokens < 1:
        raise ValueError(f"batch_size and max_tokens must be >= 1, got {batch_size} and "
                         f"{max_tokens}")
    chunks, start, longest = [], 0, 0
    for i, n in enumerate(lengths):
        longest_with = max(longest, n)
        if i > start and (i - start >= batch_size or (i - start + 1) * longest_with > max_tokens):
            chunks.append((start, i))
            start, longest_with = i, n
        longest = longest_with
    if lengths:
        chunks.append((start, len(lengths)))
    return chunks


def shared_prefix_length(rows: list[list[int]], minimum: int = MIN_SHARED_PREFIX) -> int:
    """How many leading tokens all `rows` share, leaving every row at least one token of
    its own (generation must feed something past the cache); 0 if fewer than `minimum`."""
    if not rows:
        return 0
    first, limit = rows[0], min(map(len, rows)) - 1
    n = 0
    while n < limit and all(row[n] == first[n] for row in rows):
        n += 1
    return n if n >= minimum else 0


def can_share_prefix(model) -> bool:
    """False for prompt-learning adapters (prefix or prompt tuning): their virtual tokens
    own the start of the cache."""
    config = getattr(model, "active_peft_config", None)
    return not getattr(config, "is_prompt_learning", False)


def _sampling(temperature: float) -> dict:
    if temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_p": 0.95}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def _generate_batches(model, tokenizer, texts, max_new_tokens, temperature, batch_size,
                      shared_prefix: bool = False):
    """`generate`'s batches, in order, as `Generation` records."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    if shared_prefix:
        start = shared_prefix_length(ids)
        if start:
            return _generate_after_prefix(model, tokenizer, ids, start, max_new_tokens,
                                          temperature, batch_size)
    results = []
    for start, end in token_chunks([len(r) + max_new_tokens for r in ids], batch_size):
        batch = tokenizer(texts[start:end], return_tensors="pt",
                          padding=True, add_special_tokens=False).to(model_device(model))
        check_fits(model, batch["input_ids"].shape[1], max_new_tokens)
        out = model.generate(**batch, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, **_sampling(temperature))
        results += _records(tokenizer, out, batch["attention_mask"])
    return results


def _records(tokenizer, out, attention_mask) -> list[Generation]:
    prompt_len, records = attention_mask.shape[1], []
    for row, mask in zip(out, attention_mask):
        new = row[prompt_len:]
        text = tokenizer.decode(new, skip_special_tokens=True).strip()
        n_new = int((new != tokenizer.pad_token_id).sum())
        records.append(Generation(text, int(mask.sum()), n_new))
    return records


def _generate_after_prefix(model, tokenizer, ids, shared, max_new_tokens, temperature,
                           batch_size):
    """Each batch: the shared `ids[:shared]` read once, its cache copied to every row, then
    the rows' own tokens, padded on the left of that part: [shared | pads | own]. The
    attention mask hides the pads and the positions count only real tokens, as they do
    for a prompt padded on the left."""
    from .compat import generate_cache_argument, repeat_cache

    device, pad = model_device(model), tokenizer.pad_token_id
    head = torch.tensor([ids[0][:shared]], device=device)
    results = []
    for start, end in token_chunks([len(r) + max_new_tokens for r in ids], batch_size):
        rows = ids[start:end]
        width = max(len(r) for r in rows) - shared
        check_fits(model, shared + width, max_new_tokens)
        input_ids = torch.tensor([r[:shared] + [pad] * (shared + width - len(r)) + r[shared:]
                                  for r in rows], device=device)
        mask = torch.tensor([[1] * shared + [0] * (shared + width - len(r))
                             + [1] * (len(r) - shared) for r in rows], device=device)
        cache = model(input_ids=head, use_cache=True).past_key_values
        cache = repeat_cache(cache, len(rows))
        out = model.generate(input_ids=input_ids, attention_mask=mask,
                             max_new_tokens=max_new_tokens, pad_token_id=pad,
                             **{generate_cache_argument(model): cache}, **_sampling(temperature))
        results += _records(tokenizer, out, mask)
    return results
