"""Exercise auto-checks with specific feedback: one module per notebook, shared helpers here.

Conventions (shared with tools/make_student.py):
- an exercise cell starts its answer as `None`, then the solution between nbgrader's
  `### BEGIN SOLUTION` / `### END SOLUTION` markers, then a `check_*` call;
- the student notebook has the solution replaced by a stub, so the answer stays `None`:
  the check prints "not solved yet" and the notebook runs on;
- a wrong answer raises `ExerciseFailed` with what is wrong and a hint (as an nbgrader
  test cell would); a right one prints a tick.
Each notebook's checks live in their own module (`foundation.py` for 00, ...), each check
registered with `@exercise(title)`.
"""

from __future__ import annotations

REGISTRY: dict[str, str] = {}  # check name -> exercise title, for the coverage test


class ExerciseFailed(AssertionError):
    """The answer is wrong; the message says what and gives a hint."""


def exercise(title: str):
    """Register a check function under its exercise title."""
    def wrap(func):
        REGISTRY[func.__name__] = title
        return func
    return wrap


def not_solved(title: str) -> None:
    """Report an exercise whose answer is still the stub's `None`; never raises."""
    print(f"○ {title}: not solved yet. Replace the `# YOUR CODE HERE` line and run the cell again.")


def passed(title: str, detail: str = "") -> None:
    print(f"✓ {title}: correct. {detail}".rstrip())


def fail(title: str, what: str, hint: str):
    """Raise `ExerciseFailed` with what is wrong and a hint."""
    raise ExerciseFailed(f"✗ {title}: {what}\nHint: {hint}")
