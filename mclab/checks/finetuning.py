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
