"""`generate` reads the prompts' shared start once per batch: the same answers as reading
every prompt whole, with fewer tokens through the model."""

import torch

import pytest

from mclab.generation import (_generate_batches, can_share_prefix, format_chat, generate,
                              shared_prefix_length, token_chunks)

PROMPTS = ["Rewrite this sentence in casual English: I am very tired today.",
           "Rewrite this sentence in casual English: The shop closes at five.",
           "Rewrite this sentence in casual English: We walked along the beach for a long time "
           "and then went home.",
           "Rewrite this sentence in casual English: Thanks."]


def test_shared_prefix_length():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]], minimum=1) == 3
    # every row keeps one token of its own, even when one row is the start of another
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]], minimum=1) == 2
    assert shared_prefix_length([[7, 7], [7, 7]], minimum=1) == 1
    assert shared_prefix_length([[1, 2], [3, 4]], minimum=1) == 0
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]], minimum=4) == 0  # too short to pay
    assert shared_prefix_length([], minimum=1) == 0


def plain(model, tok, prompts, **kw):
    """Every prompt read whole, padded on the left: the path without the shared start."""
    texts = [format_chat(tok, p) for p in prompts]
    old, tok.padding_side = tok.padding_side, "left"
    try:
        with torch.no_grad():
            return _generate_batches(model, tok, texts, kw.get("max_new_tokens", 10),
                                     kw.get("temperature", 0.0), kw.get("batch_size", 3))
    finally:
        tok.padding_side = old


def token_counter(model):
    """Counts the tokens the model reads (its embedding layer's inputs)."""
    seen = []
    model.get_input_embeddings().register_forward_hook(
        lambda _m, args, _out: seen.append(args[0].numel()))
    return seen


def test_same_answers_and_fewer_tokens_read(load_tiny):
    model, tok = load_tiny()
    model.eval()
    seen = token_counter(model)
    slow = plain(model, tok, PROMPTS)
    read_whole, seen[:] = sum(seen), []
    fast = generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=3, details=True)
    assert [g.text for g in fast] == [g.text for g in slow]
    assert [g.new_tokens for g in fast] == [g.new_tokens for g in slow]
    assert [g.prompt_tokens for g in fast] == [g.prompt_tokens for g in slow]
    ids = [tok(format_chat(tok, p), add_special_tokens=False)["input_ids"] for p in PROMPTS]
    shared = shared_prefix_length(ids)
    assert shared >= 20  # the chat template's system turn and the instruction
    # two batches (3 rows, 1 row), each reads the shared start once instead of once a row
    assert sum(seen) <= read_whole - shared * (len(PROMPTS) - 2)


def test_first_step_scores_match(load_tiny):
    """The next-token scores after each prompt agree to float rounding."""
    model, tok = load_tiny()
    model.eval()
    kw = dict(max_new_tokens=1, output_scores=True, return_dict_in_generate=True)
    texts = [format_chat(tok, p) for p in PROMPTS]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    shared = shared_prefix_length(ids)
    from mclab.compat import generate_cache_argument, repeat_cache

    with torch.no_grad():
        for row in ids:
            whole = model.generate(input_ids=torch.tensor([row]), **kw, do_sample=False)
            cache = repeat_cache(model(input_ids=torch.tensor([row[:shared]]),
                                       use_cache=True).past_key_values, 1)
            part = model.generate(input_ids=torch.tensor([row]), do_sample=False, **kw,
                                  **{generate_cache_argument(model): cache})
            assert torch.allclose(whole.scores[0], part.scores[0], atol=1e-4)


def test_seeded_sampling_is_unchanged(load_tiny):
    model, tok = load_tiny()
    model.eval()
    torch.manual_seed(3)
    slow = plain(model, tok, PROMPTS, temperature=1.0)
    fast = generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=3, temperature=1.0,
                    seed=3, details=True)
    assert [g.text for g in fast] == [g.text for g in slow]


def test_prompt_learning_reads_prompts_whole(load_tiny):
    from peft import PrefixTuningConfig, get_peft_model

    model, tok = load_tiny()
    assert can_share_prefix(model)
    prefixed = get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM",
                                                        num_virtual_tokens=4))
    assert not can_share_prefix(prefixed)


def test_token_chunks_keep_order_and_bound_rows_times_longest():
    assert token_chunks([135] * 20, 16, 4096) == [(0, 16), (16, 20)]  # 16 x 135 fits
    assert token_chunks([650] * 10, 16, 4096) == [(0, 6), (6, 10)]  # 01's 8-shot prompts
    assert token_chunks([10, 5000, 10, 10], 16, 4096) == [(0, 1), (1, 2), (2, 4)]
    assert token_chunks([], 4) == []
    with pytest.raises(ValueError, match="max_tokens"):
        token_chunks([1], 4, 0)


def test_a_token_budget_splits_batches_without_changing_answers(load_tiny, monkeypatch):
    """Issue 15: long prompts go a few at a time (`MAX_BATCH_TOKENS`); greedy answers stay
    those of the prompts batched by count alone (seeded samples too, where it does not cut:
    `test_seeded_sampling_is_unchanged`)."""
    import mclab.generation as generation

    model, tok = load_tiny()
    model.eval()
    whole = generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=4, details=True)
    calls = []
    real = generation.token_chunks
    monkeypatch.setattr(generation, "token_chunks",
                        lambda lengths, size: calls.append(real(lengths, size, 1))
                        or calls[-1])
    cut = generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=4, details=True)
    assert calls[-1] == [(i, i + 1) for i in range(len(PROMPTS))]  # one prompt a batch
    assert [g.text for g in cut] == [g.text for g in whole]
    assert [g.prompt_tokens for g in cut] == [g.prompt_tokens for g in whole]
