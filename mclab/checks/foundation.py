"""Checks for 00_foundation_model."""

import numpy as np
import torch

from . import exercise, expect_number, fail, passed


@exercise("00 easy: parameters in millions")
def check_param_millions(answer, model, *, title: str) -> None:
    true = sum(p.numel() for p in model.parameters()) / 1e6
    expect_number(title, answer, "sum p.numel() over model.parameters() and divide by 1e6")
    if abs(answer - true) > 0.5:
        if abs(answer - true * 1e6) < 1e3:
            fail(title, "that is the raw count, not millions", "divide by 1e6")
        fail(title, f"{answer:.1f} M is off (the model has about {round(true)} M)",
              "count every parameter tensor once: sum(p.numel() for p in model.parameters())")
    return passed(title, f"{true:.1f} M parameters.")


@exercise("00 medium: tokens the chat template adds")
def check_template_overhead(answer, tokenizer, *, title: str) -> None:
    message = "Hello"
    plain = len(tokenizer(message, add_special_tokens=False)["input_ids"])
    chat = tokenizer.apply_chat_template([{"role": "user", "content": message}],
                                         add_generation_prompt=True, tokenize=False)
    true = len(tokenizer(chat, add_special_tokens=False)["input_ids"]) - plain
    if answer != true:
        hint = ("the template also adds a default system turn; format with "
                "apply_chat_template(..., tokenize=False, add_generation_prompt=True), "
                "tokenize that string and subtract the tokens of 'Hello' alone")
        fail(title, f"you said {answer}, but the template adds {true} tokens", hint)
    return passed(title, f"{true} tokens of wrapping around a one-token message.")


@exercise("00 hard: accuracy from option log-likelihoods")
def check_accuracy_from_scores(func, scores, answers, expected: float, *, title: str) -> None:
    got = func(scores, answers)
    if not isinstance(got, (float, int, np.floating)):
        fail(title, f"the function returned {type(got).__name__}, not a number",
              "return the share of items whose highest-scoring option is the answer")
    if abs(float(got) - expected) > 1e-9:
        fail(title, f"your accuracy {float(got):.3f} differs from knowledge_score's "
              f"{expected:.3f}", "for each item take np.argmax of its scores, compare "
              "with the answer index, and average the matches")
    # a second, hand-made case guards against answers that only fit this data
    tiny = [np.array([-1.0, -0.5]), np.array([-0.2, -3.0])]
    if abs(float(func(tiny, [1, 1])) - 0.5) > 1e-9:
        fail(title, "it fails a two-item case (scores [-1,-0.5] and [-0.2,-3], answers "
              "[1,1]; the accuracy is 0.5)", "the highest score is the largest number "
              "(log-likelihoods are negative; closer to zero is more likely)")
    return passed(title, f"accuracy {expected:.3f}, the same as mclab's.")


@exercise("00 hard: an option's log-likelihood by hand")
def check_option_logprob(func, model, tokenizer, items, *, title: str) -> None:
    """`items`: a few multiple-choice items; each option is scored as knowledge_score does."""
    from ..evaluation import ANSWER_PREFIX, KNOWLEDGE_SYSTEM, knowledge_prompt, option_logprobs
    from ..generation import format_chat

    # fp32: the cached and the whole-sequence forward agree to ~1e-5; bf16 rounds more
    tol = 1e-3 if next(model.parameters()).dtype == torch.float32 else 5e-2
    for item in items:
        prompt = format_chat(tokenizer, knowledge_prompt(item["question"]),
                             KNOWLEDGE_SYSTEM) + ANSWER_PREFIX
        options = [" " + o for o in item["options"]]
        want = option_logprobs(model, tokenizer, [prompt], [options])[0]
        for option, target in zip(options, want):
            got = func(model, tokenizer, prompt, option)
            expect_number(title, got, "return float(...) of the mean log-probability")
            if abs(float(got) - target) < tol:
                continue
            n = len(tokenizer(option, add_special_tokens=False)["input_ids"])
            if n > 1 and abs(float(got) - n * target) < tol:
                fail(title, f"{option!r} ({n} tokens): {float(got):.3f} is the sum; mclab scores "
                     f"the mean, {target:.3f}", "divide by the option's token count, so long "
                     "options are not penalised")
            if float(got) > 0:
                fail(title, f"{option!r}: {float(got):.3f} is positive; a log-probability "
                     "never is", "take log_softmax of the logits, not the logits")
            fail(title, f"option {option!r}: you score {float(got):.3f}, mclab's scorer "
                 f"{target:.3f}", "tokenize prompt and option separately and concatenate the "
                 "ids; the logits at position t predict token t + 1, so option token i is read "
                 "at position len(prompt) - 1 + i; average log_softmax over the option's tokens")
    return passed(title, f"the same numbers as mclab.evaluation.option_logprobs on "
                  f"{len(items)} questions: the highest-scoring option is the model's answer.")
