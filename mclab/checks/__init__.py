"""Exercise auto-checks with specific feedback: one module per notebook, shared helpers here.

Conventions (shared with tools/make_student.py):
- an exercise cell starts its answer as `None`, then the solution between nbgrader's
  `### BEGIN SOLUTION` / `### END SOLUTION` markers, then a `check_*` call;
- the student notebook has the solution replaced by a stub, so the answer stays `None`:
  the check prints "not solved yet" and the notebook runs on;
- a wrong answer raises `ExerciseFailed` with what is wrong and a hint (as an nbgrader
  test cell would); a right one prints a tick.
Each notebook's checks live in their own module (`foundation.py` for 00, ...), each check
registered with `@exercise(title)`: the decorator answers the stub's `None` itself and hands
the check its title as the keyword `title`, so a check starts with its real work.
"""

from __future__ import annotations

import functools

REGISTRY: dict[str, str] = {}  # check name -> exercise title, for the coverage test


class ExerciseFailed(AssertionError):
    """The answer is wrong; the message says what and gives a hint."""


def exercise(title: str):
    """Register a check under its exercise title; `None` (the stub) prints "not solved yet".

    The check is written as `check_x(answer, ..., *, title)` and called as `check_x(answer, ...)`.
    """
    def wrap(func):
        REGISTRY[func.__name__] = title

        @functools.wraps(func)
        def check(answer, *args, **kwargs):
            if answer is None:
                return not_solved(title)
            return func(answer, *args, title=title, **kwargs)
        return check
    return wrap


def not_solved(title: str) -> None:
    """Report an exercise whose answer is still the stub's `None`; never raises."""
    print(f"○ {title}: not solved yet. Replace the `# YOUR CODE HERE` line and run the cell again.")


def passed(title: str, detail: str = "") -> None:
    print(f"✓ {title}: correct. {detail}".rstrip())


def fail(title: str, what: str, hint: str):
    """Raise `ExerciseFailed` with what is wrong and a hint."""
    raise ExerciseFailed(f"✗ {title}: {what}\nHint: {hint}")


def expect_number(title: str, value, hint: str) -> None:
    """Fail with the hint unless `value` is an int or a float."""
    if not isinstance(value, (int, float)):
        fail(title, f"expected a number, got {type(value).__name__}", hint)
