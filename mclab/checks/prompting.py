"""Checks for 01_prompt_based."""

import numpy as np

from ..generation import format_chat
from . import exercise, fail, passed


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@exercise("01 easy: tokens of a few-shot prompt")
def check_prompt_tokens(answer, tokenizer, messages, *, title: str) -> None:
    true = _n_tokens(tokenizer, format_chat(tokenizer, messages))
    if not isinstance(answer, (int, np.integer)):
        fail(title, f"expected a whole number of tokens, got {type(answer).__name__}",
             "tokenize the formatted chat text and take len(...['input_ids'])")
    last = _n_tokens(tokenizer, messages[-1]["content"])
    if answer == last:
        fail(title, "that counts only the last user message",
             "the examples are earlier chat turns: format ALL messages with format_chat first")
    if answer != true:
        fail(title, f"you said {answer}, but the model reads {true} tokens",
             "format_chat(tokenizer, messages) gives the exact text; tokenize it with "
             "add_special_tokens=False")
    return passed(title, f"{true} tokens, against {last} for the bare request.")


@exercise("01 medium: most similar examples")
def check_top_similar(func, *, title: str) -> None:
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(30, 8))
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    query = pool[7] + 0.1 * rng.normal(size=8)
    query /= np.linalg.norm(query)
    got = func(query, pool, 3)
    want = list(np.argsort(-(pool @ query))[:3])
    try:
        got = [int(i) for i in got]
    except TypeError:
        fail(title, f"expected a list of 3 indices, got {type(got).__name__}",
             "return the row numbers of the pool, e.g. list(np.argsort(...)[:k])")
    if len(got) != 3:
        fail(title, f"asked for 3 examples, got {len(got)}", "take only the first k indices")
    if got == list(np.argsort(pool @ query)[:3]):
        fail(title, "these are the LEAST similar rows", "sort by descending similarity "
             "(np.argsort(-scores))")
    if got != want:
        fail(title, f"got {got}, expected {want} (most similar first)",
             "on unit vectors cosine similarity is the dot product pool @ query")
    return passed(title, "the same ranking as an exact inner-product search.")


@exercise("01 hard: pack documents into a token budget")
def check_pack_documents(func, documents, tokenizer, budget: int, *, title: str) -> None:
    got = func(documents, tokenizer, budget)
    if not isinstance(got, str):
        fail(title, f"expected the context as one string, got {type(got).__name__}",
             "join the chosen documents' texts with blank lines")
    n = _n_tokens(tokenizer, got)
    if n > budget:
        fail(title, f"your context is {n} tokens, over the budget of {budget}",
             "count tokens after each document you add and stop before the budget is passed")
    if documents[0]["text"] not in got:
        fail(title, "the first (most relevant) document is missing",
             "add documents in the given order, starting with the first")
    used = sum(d["text"] in got for d in documents)
    if used < len(documents):
        longer = "\n\n".join(d["text"] for d in documents[:used + 1])
        if _n_tokens(tokenizer, longer) <= budget:
            fail(title, f"{used} documents fit, but {used + 1} would also fit the budget",
                 "keep adding documents while the joined text stays within the budget")
    return passed(title, f"{used} documents in {n} of {budget} tokens.")



@exercise("01 medium: greedy decoding by hand")
def check_greedy(func, model, tokenizer, prompts, n_new: int = 5, *, title: str) -> None:
    """`prompts`: chat messages; the student's loop must give model.generate's greedy tokens."""
    import torch

    from ..device import model_device

    for messages in prompts:
        ids = tokenizer(format_chat(tokenizer, messages), add_special_tokens=False,
                        return_tensors="pt")["input_ids"].to(model_device(model))
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids, device=ids.device),
                                 max_new_tokens=n_new, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        want = out[0, ids.shape[1]:].tolist()
        got = func(model, ids.clone(), len(want))
        try:
            got = [int(t) for t in (got.reshape(-1) if hasattr(got, "reshape") else got)]
        except TypeError:
            fail(title, f"expected a list of token ids, got {type(got).__name__}",
                 "return the new token ids as a list of ints")
        if len(got) == ids.shape[1] + len(want) and got[ids.shape[1]:] == want:
            fail(title, "you return the prompt too", "return only the new tokens")
        if got != want:
            first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w),
                         min(len(got), len(want)))
            shown = tokenizer.decode(want)
            hint = ("each step: run the model on all ids so far, take the logits of the LAST "
                    "position (logits[0, -1]), append their argmax, repeat")
            if len(got) != len(want):
                hint = f"generate exactly n = {len(want)} tokens"
            elif len(set(got)) == 1 and len(set(want)) > 1:
                hint = "append each new token to the ids before the next step"
            fail(title, f"your tokens differ from model.generate's from new token {first} "
                 f"(generate wrote {shown!r}, you {tokenizer.decode(got)!r})", hint)
    return passed(title, "the same tokens as model.generate(do_sample=False); generate adds "
                  "a key/value cache so each step runs only the newest token.")
