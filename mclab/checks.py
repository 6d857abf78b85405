"""Exercise auto-checks with specific feedback.

Conventions (shared with tools/make_student.py):
- an exercise cell starts its answer as `None`, then the solution between nbgrader's
  `### BEGIN SOLUTION` / `### END SOLUTION` markers, then a `check_*` call;
- the student notebook has the solution replaced by a stub, so the answer stays `None`:
  the check prints "not solved yet" and returns False, and the notebook runs on;
- a wrong answer raises `ExerciseFailed` with what is wrong and a hint (as an nbgrader
  test cell would); a right one prints a tick and returns True.
"""

from __future__ import annotations

import numpy as np

REGISTRY: dict[str, str] = {}  # check name -> exercise title, for the coverage test


class ExerciseFailed(AssertionError):
    """The answer is wrong; the message says what and gives a hint."""


def exercise(title: str):
    """Register a check function under its exercise title."""
    def wrap(func):
        REGISTRY[func.__name__] = title
        return func
    return wrap


def _not_solved(title: str) -> bool:
    print(f"○ {title}: not solved yet. Replace the `# YOUR CODE HERE` line and run the cell again.")
    return False


def _passed(title: str, detail: str = "") -> bool:
    print(f"✓ {title}: correct. {detail}".rstrip())
    return True


def _fail(title: str, what: str, hint: str):
    raise ExerciseFailed(f"✗ {title}: {what}\nHint: {hint}")


# --- 00_foundation_model -----------------------------------------------------------------

@exercise("00 easy: parameters in millions")
def check_param_millions(answer, model) -> bool:
    title = REGISTRY["check_param_millions"]
    if answer is None:
        return _not_solved(title)
    true = sum(p.numel() for p in model.parameters()) / 1e6
    if not isinstance(answer, (int, float)):
        _fail(title, f"expected a number, got {type(answer).__name__}",
              "sum p.numel() over model.parameters() and divide by 1e6")
    if abs(answer - true) > 0.5:
        if abs(answer - true * 1e6) < 1e3:
            _fail(title, "that is the raw count, not millions", "divide by 1e6")
        _fail(title, f"{answer:.1f} M is off (the model has about {round(true)} M)",
              "count every parameter tensor once: sum(p.numel() for p in model.parameters())")
    return _passed(title, f"{true:.1f} M parameters.")


@exercise("00 medium: tokens the chat template adds")
def check_template_overhead(answer, tokenizer) -> bool:
    title = REGISTRY["check_template_overhead"]
    if answer is None:
        return _not_solved(title)
    message = "Hello"
    plain = len(tokenizer(message, add_special_tokens=False)["input_ids"])
    chat = tokenizer.apply_chat_template([{"role": "user", "content": message}],
                                         add_generation_prompt=True, tokenize=False)
    true = len(tokenizer(chat, add_special_tokens=False)["input_ids"]) - plain
    if answer != true:
        hint = ("the template also adds a default system turn; format with "
                "apply_chat_template(..., tokenize=False, add_generation_prompt=True), "
                "tokenize that string and subtract the tokens of 'Hello' alone")
        _fail(title, f"you said {answer}, but the template adds {true} tokens", hint)
    return _passed(title, f"{true} tokens of wrapping around a one-token message.")


@exercise("00 hard: accuracy from option log-likelihoods")
def check_accuracy_from_scores(func, scores, answers, expected: float) -> bool:
    title = REGISTRY["check_accuracy_from_scores"]
    if func is None:
        return _not_solved(title)
    got = func(scores, answers)
    if not isinstance(got, (float, int, np.floating)):
        _fail(title, f"the function returned {type(got).__name__}, not a number",
              "return the share of items whose highest-scoring option is the answer")
    if abs(float(got) - expected) > 1e-9:
        _fail(title, f"your accuracy {float(got):.3f} differs from knowledge_score's "
              f"{expected:.3f}", "for each item take np.argmax of its scores, compare "
              "with the answer index, and average the matches")
    # a second, hand-made case guards against answers that only fit this data
    tiny = [np.array([-1.0, -0.5]), np.array([-0.2, -3.0])]
    if abs(float(func(tiny, [1, 1])) - 0.5) > 1e-9:
        _fail(title, "it fails a two-item case (scores [-1,-0.5] and [-0.2,-3], answers "
              "[1,1]; the accuracy is 0.5)", "the highest score is the largest number "
              "(log-likelihoods are negative; closer to zero is more likely)")
    return _passed(title, f"accuracy {expected:.3f}, the same as mclab's.")
