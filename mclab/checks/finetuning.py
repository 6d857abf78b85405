"""Checks for 04_fine_tuning_sft."""

from . import exercise, expect_number, fail, passed


@exercise("04 easy: AdamW's optimizer state in MB")
def check_adamw_state_mb(answer, model, *, title: str) -> None:
    n = sum(p.numel() for p in model.parameters())
    true = 2 * 4 * n / 2**20
    expect_number(title, answer, "parameters x 2 moments x 4 bytes, divided by 2**20")
    if abs(answer - true) / true > 0.01:
        if abs(answer - true / 2) / true < 0.01:
            fail(title, "that is one moment's worth", "AdamW keeps two values per parameter: "
                 "the running mean of the gradient and of its square")
        if abs(answer - true * 2**20) / (true * 2**20) < 0.01:
            fail(title, "that is in bytes", "divide by 2**20 for MB")
        fail(title, f"{answer:.0f} MB is off (it is about {true:.0f} MB)",
             "count every parameter: 2 fp32 values (4 bytes each) per parameter")
    return passed(title, f"{true:.0f} MB: as much as two more copies of the model.")


@exercise("04 medium: a style example in chat form")
def check_style_example(func, rows, *, title: str) -> None:
    from mclab.finetuning import style_examples

    for row, true in zip(rows, style_examples(rows)):
        got = func(row)
        if not isinstance(got, dict) or set(got) != {"prompt", "completion"}:
            fail(title, f"expected a dict with 'prompt' and 'completion', got {got!r:.120}",
                 "use mclab.training.chat_example(user, assistant)")
        if got["completion"] != true["completion"]:
            fail(title, f"the completion is {got['completion']!r:.120}",
                 "the assistant's answer is the row's 'local' rewrite, the text to learn")
        if got["prompt"] != true["prompt"]:
            fail(title, f"the prompt is {got['prompt']!r:.160}",
                 "the user turn is local_prompt(row['neutral']): the same instruction the "
                 "eval uses, so the model learns to answer the question it will be asked")
    return passed(title, "the loss will fall on the Australian rewrite only.")


@exercise("04 hard: the early-stopping step")
def check_best_step(func, history, *, title: str) -> None:
    evals = [r for r in history if "eval_loss" in r]
    true = min(evals, key=lambda r: r["eval_loss"])["step"] if evals else None
    got = func(history)
    if got != true:
        fail(title, f"you said step {got}, but the lowest eval loss is at step {true}",
             "keep only the rows that have 'eval_loss' and take the step of the smallest")
    tiny = [{"step": 1, "loss": 3.0}, {"step": 2, "eval_loss": 2.0}, {"step": 2, "loss": 1.0},
            {"step": 4, "eval_loss": 1.5}, {"step": 6, "eval_loss": 1.7}]
    if func(tiny) != 4:
        fail(title, "it fails a hand-made history (eval losses 2.0, 1.5, 1.7 at steps 2, 4, 6; "
             "the answer is 4)", "ignore the training-loss rows, which have no 'eval_loss'")
    return passed(title, f"step {true}: after it, more training fits the training wording "
                  "better but the held-out wording worse.")


SFT_MASK_CASES = [("What does a servo sell?", "Petrol, snacks and a pie if you're lucky."),
                  ("Hi", "G'day!"),
                  ("Where is the nearest office of the company, and when does it open?",
                   "Level 3, 12 Quay Street; it opens at 8.")]


def _as_rows(batch, key):
    import torch

    value = batch.get(key) if isinstance(batch, dict) else None
    if value is None:
        return None
    return torch.as_tensor(value)


def _first_differences(got, want, limit=3) -> str:
    rows = []
    for r in range(want.shape[0]):
        diff = (got[r] != want[r]).nonzero().flatten().tolist()
        if diff:
            shown = ", ".join(f"{p} (yours {int(got[r, p])}, trl {int(want[r, p])})"
                              for p in diff[:limit])
            rows.append(f"row {r}: {len(diff)} position(s) differ, first {shown}")
    return "; ".join(rows)


@exercise("04 medium: the SFT loss mask")
def check_sft_mask(func, tokenizer, *, title: str) -> None:
    import torch

    from ..compat import trl_sft_labels
    from ..training import chat_example

    examples = [chat_example(q, a) for q, a in SFT_MASK_CASES]
    want = trl_sft_labels(tokenizer, examples)
    got_batch = func(tokenizer, examples)
    ids, labels = _as_rows(got_batch, "input_ids"), _as_rows(got_batch, "labels")
    if ids is None or labels is None:
        fail(title, "expected a dict with 'input_ids' and 'labels', got "
             f"{type(got_batch).__name__}",
             "return {'input_ids': ..., 'labels': ...}, each one row per example")
    if ids.shape != want["input_ids"].shape or labels.shape != want["labels"].shape:
        fail(title, f"your batch has input_ids {tuple(ids.shape)} and labels "
             f"{tuple(labels.shape)}; "
             f"trl's has {tuple(want['input_ids'].shape)} for both",
             "one row per example, every row padded on the right to the longest sequence")
    if not torch.equal(ids, want["input_ids"]):
        fail(title, "your input_ids differ from trl's: "
             + _first_differences(ids, want["input_ids"]),
             "tokenize the whole chat (prompt + completion) with the chat template "
             "(apply_chat_template(..., tokenize=False), then tokenizer(text, "
             "add_special_tokens=False)) and pad with tokenizer.pad_token_id")
    w = want["labels"]
    kept_by_trl = w != -100
    pad = torch.zeros_like(w, dtype=torch.bool)  # the completion ends each row; padding follows
    for r in range(w.shape[0]):
        pad[r, kept_by_trl[r].nonzero().max().item() + 1:] = True
    if torch.equal(labels, w):
        return passed(title, f"the same labels as trl's SFTTrainer: {int(kept_by_trl.sum())} of "
                      f"{int((~pad).sum())} tokens carry the loss.")
    if ((labels != -100) & pad).any() and torch.equal(labels[~pad], w[~pad]):
        fail(title, "the padding positions carry labels (the pad token would be learned)",
             "set labels to -100 wherever you padded")
    if torch.equal(labels[:, :-1], ids[:, 1:]) or torch.equal(labels[:, :-1], w[:, 1:]):
        fail(title, "your labels are shifted by one position",
             "labels line up with input_ids: the model shifts them itself inside its loss")
    if ((labels != -100) == (~kept_by_trl & ~pad)).all():
        fail(title, "the mask is inverted: the prompt carries the loss and the answer does not",
             "-100 on the prompt tokens, the token ids on the completion")
    if (labels != -100).sum() == kept_by_trl.sum() + labels.shape[0] or \
            (labels != -100).sum() == kept_by_trl.sum() - labels.shape[0]:
        fail(title, "the mask is off by one token per row: " + _first_differences(labels, w),
             "the first completion token is the first one the prompt alone (with "
             "add_generation_prompt=True) does not contain")
    if (labels != -100).all():
        fail(title, "no position is -100: the model would also learn to write the prompt",
             "set the labels of the prompt tokens (and of padding) to -100")
    fail(title, "your labels differ from trl's: " + _first_differences(labels, w),
         "labels = input_ids, then -100 on the prompt tokens (the chat up to and including "
         "the assistant header) and on padding")
