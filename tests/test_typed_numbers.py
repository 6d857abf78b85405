"""No measured figure is typed into a notebook: results are text built from the run's numbers.

The course's rule (issue 13, "Honest verdicts"): every sentence that states a result is
built from values computed in that run, e.g. ``display(Markdown(f"... {acc:.3f} ..."))``,
and a conclusion is chosen by those values (if/else) or stated as a hypothesis to check.
A number typed into prose goes stale the moment a setting, a seed or a library changes.

What is scanned, in every ``solutions/*.ipynb``:

* markdown cells, without their inline code spans (`` `...` ``: code, not prose) and
  without link targets (``](...)``);
* in code cells, only string literals and comments (code itself is not prose). In an
  f-string the replacement fields ``{...}`` are computed, so they are removed first.

What is flagged, a *typed measurement*:

1. a number with a decimal point: ``0.871``, ``4.1``, ``-0.03``;
2. a number with a unit: a percent (``92%``), a size (``2 GB``, ``520 MB``), a time
   (``843 s``, ``1,952 ms``, ``3 min``), a rate (``40 tokens/s``), a factor written against the number (``4x``,
   ``4.0x``; not ``8 x 128``, a product) or accuracy points (``5 points``).

What is not flagged, by rule:

* a number glued to a name or written in e-notation: ``SmolLM2``, ``fp32``, ``1.7B``,
  ``v1.5``, ``2e-4``, ``5e-5`` (names, sizes of named models, and settings);
* version numbers: ``3.11.2`` (three parts) and a number right after ``Python``,
  ``version`` or a library's name (``transformers 5.24``, ``peft 0.21``, ``trl 1.16``);
* plain integers without a unit: counts, steps, years, citations (``EMNLP 2024``).

Everything else that is flagged but is a setting or a definition (chance level 0.25, a
temperature of 0.7, an example in an exercise's wording) goes in ``ALLOWED`` below: per
notebook, a phrase that contains the number as written, with a reason. A hit is allowed
when its line contains one of its notebook's phrases and that phrase contains the hit.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))

CHANCE = "chance with four options: a definition, not a result"
BUDGET = "the course's memory budget (a Binder session): a setting, not a result"

# notebook number ("03") -> {phrase containing the number: reason}
ALLOWED: dict[str, dict[str, str]] = {
    "00": {"Chance is 25 %": CHANCE},
    "01": {"chance is 0.25": CHANCE},
    "02": {"chance 0.25": CHANCE,
           '"4 hours" is not found': "an example of the matcher's rule, not a result",
           'in "24 hours")': "an example of the matcher's rule, not a result",
           '"95% interval"': "the interval's confidence level: a setting",
           "at least 80% and at most 10%": "issue 14's abstention targets: settings"},
    "03": {"chance 25%": CHANCE, "chance is 0.25": CHANCE, "fit 2 GB": BUDGET,
           "a 10x larger learning": "a setting to try in the panel",
           "replay 0 vs 0.5": "settings to try in the panel",
           "-0.25 means 25% lower": "the exercise's example of the sign convention"},
    "04": {"fits 2 GB": BUDGET, "2 GB session": BUDGET, "chance 0.25": CHANCE,
           "a 10x larger learning": "a setting to try in the panel"},
    "05": {"2 GB budget": BUDGET, "5-minute, 2 GB CPU budget": BUDGET,
           "log 2 ≈ 0.693": "a mathematical constant (DPO's loss at step 1)",
           "1.5× the source": "the reward's definition", "0 at 3×": "the reward's definition",
           '"50%"': "chance for a pair: a definition",
           "**1.0** when": "the exercise's specification", "**0.5** when": "the exercise's "
           "specification", "**0.0** when": "the exercise's specification"},
    "06": {"2 GB budget": BUDGET,
           "sampled every 20 ms": "PeakMemory's sampling interval (mclab/measure.py): a setting"},
    "07": {"step 0.1": "the weight grid's step: a setting",
           "w = 0, 0.1, …, 1": "the exercise's weight grid: a setting",
           '"0.35"': "a matplotlib grey level (a bar colour), not a number",
           '"0.6"': "a matplotlib grey level (a bar colour), not a number",
           "0.5·ΔW1 + 0.5·ΔW2": "the merge weights [0.5, 0.5] set in the same cell"},
    "08": {"(chance 0.25)": CHANCE,
           "with its 95% interval": "the interval's confidence level: a setting",
           "paired test (p < 0.05)": "the test's significance level: a setting"},
}

UNITS = (r"(?<=\d)[x×](?!\s*\d)|%|GB|GiB|MB|MiB|KB|kB|KiB|TB|ms|s|sec|secs|seconds?|min|mins|minutes?|h|hours?"
         r"|tokens/s|it/s|points?|pp")
NUMBER = re.compile(
    r"(?<![\w.])[-+−]?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?"
    rf"(?P<unit>\s?(?:{UNITS})(?![\w/]))?")
VERSION_BEFORE = re.compile(
    r"(?:python|version|torch|transformers|peft|trl|datasets|accelerate|numpy)\s*$", re.I)


def typed_numbers(text: str) -> list[re.Match]:
    """The typed measurements in a line of prose (see the module docstring)."""
    hits = []
    for match in NUMBER.finditer(text):
        end = match.end()
        rest = text[end:]
        if not match["unit"]:
            if rest[:1].isalpha() or rest[:1] == "_":
                continue  # glued to a name or e-notation: SmolLM2-1.7B, 2e-4
            if re.match(r"\.\d", rest):
                continue  # a version number: 3.11.2
        if VERSION_BEFORE.search(text[:match.start()]):
            continue
        if match["frac"] or match["unit"]:
            hits.append(match)
    return hits


def strip_fields(literal: str) -> str:
    """An f-string literal without its replacement fields (computed values)."""
    out, depth, i = [], 0, 0
    while i < len(literal):
        ch = literal[i]
        if depth == 0 and literal.startswith(("{{", "}}"), i):
            out.append(ch)
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            out.append(" ")
        elif depth == 0:
            out.append(ch)
        i += 1
    return "".join(out)


def _literal_text(token_text: str) -> str:
    prefix = re.match(r"[A-Za-z]*", token_text).group()
    return strip_fields(token_text) if "f" in prefix.lower() else token_text


def code_prose(source: str) -> list[tuple[int, str]]:
    """(line number, text) of every string literal and comment in a code cell."""
    # IPython magics and shell lines are not Python: blank them, keeping line numbers
    lines = ["" if line.lstrip().startswith(("%", "!")) else line
             for line in source.splitlines(keepends=True)]
    code = "".join(lines)
    tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    out, fstring_start, depth = [], None, 0
    offsets = [0]
    for line in code.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))

    def pos(row_col):
        return offsets[row_col[0] - 1] + row_col[1]

    for tok in tokens:
        name = tokenize.tok_name[tok.type]
        if name == "FSTRING_START":  # Python >= 3.12 splits f-strings into tokens
            if depth == 0:
                fstring_start = tok.start
            depth += 1
        elif name == "FSTRING_END":
            depth -= 1
            if depth == 0:
                out.append((fstring_start[0], _literal_text(code[pos(fstring_start):pos(tok.end)])))
        elif depth:
            continue
        elif tok.type == tokenize.STRING:
            out.append((tok.start[0], _literal_text(tok.string)))
        elif tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string))
    return out


def markdown_prose(source: str) -> list[tuple[int, str]]:
    text = re.sub(r"`[^`\n]*`", " ", source)  # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    return list(enumerate(text.splitlines(), start=1))


def _lines(cell) -> list[str]:
    if cell.cell_type == "markdown":
        pieces = markdown_prose(cell.source)
    elif cell.cell_type == "code":
        pieces = code_prose(cell.source)
    else:
        return []
    return [line for _, text in pieces for line in text.splitlines()]


def _covered(match: re.Match, line: str, phrase: str) -> bool:
    """Whether an occurrence of `phrase` in `line` spans the hit."""
    return any(m.start() <= match.start() and match.end() <= m.end()
               for m in re.finditer(re.escape(phrase), line))


def cell_hits(cell, allowed: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(number as written, its line) for every typed measurement in a cell that no
    phrase of `allowed` covers."""
    return [(match.group().strip(), line.strip()) for line in _lines(cell)
            for match in typed_numbers(line)
            if not any(_covered(match, line, phrase) for phrase in allowed or {})]


def notebook_key(path: Path) -> str:
    return path.name[:2]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_no_typed_measurements(path):
    allowed = ALLOWED.get(notebook_key(path), {})
    nb = nbformat.read(path, as_version=4)
    problems = [f"cell {index} ({cell.cell_type}): {hit!r} in {line!r}"
                for index, cell in enumerate(nb.cells) for hit, line in cell_hits(cell, allowed)]
    assert not problems, (
        f"{path.name}: typed measurements; build the sentence from computed values "
        "(display(Markdown(f'...'))), or, for a setting or definition, add the phrase to "
        "ALLOWED with a reason:\n" + "\n".join(problems))


def test_allow_list_entries_are_used():
    """An entry no notebook needs any more is removed, so the list stays small."""
    unused = []
    for key, allowed in ALLOWED.items():
        paths = [p for p in SOLUTIONS if notebook_key(p) == key]
        cells = [cell for p in paths for cell in nbformat.read(p, as_version=4).cells]
        unused += [f"{key}: {phrase!r}" for phrase in allowed
                   if all(cell_hits(cell, {phrase: ""}) == cell_hits(cell) for cell in cells)]
    assert not unused, f"allow-list entries that match nothing: {unused}"


def _cell(cell_type, source):
    make = nbformat.v4.new_markdown_cell if cell_type == "markdown" else nbformat.v4.new_code_cell
    return make(source)


@pytest.mark.parametrize("cell_type, source, expected", [
    ("markdown", "LoRA reached 0.871 accuracy, 92% of full fine-tuning.", ["0.871", "92%"]),
    ("markdown", "Peak memory fell from 4.1 GB to 2.3 GB; 8 steps took 843 s.",
     ["4.1 GB", "2.3 GB", "843 s"]),
    ("markdown", "Generation took 1,952 ms, 4.0x slower.", ["1,952 ms", "4.0x"]),
    ("code", "x = 1  # one epoch: 1e-4 gave 0.034, 3e-4 0.28", ["0.034", "0.28"]),
    ("code", 'display(Markdown("accuracy rose to 0.61"))', ["0.61"]),
    ("code", 'print(f"accuracy {acc:.3f}, typed 0.5")', ["0.5"]),
])
def test_scanner_flags_typed_results(cell_type, source, expected):
    assert [hit for hit, _ in cell_hits(_cell(cell_type, source))] == expected


@pytest.mark.parametrize("cell_type, source", [
    ("markdown", "SmolLM2-135M and SmolLM2-1.7B, fp32, learning rate 2e-4 or 5e-5."),
    ("markdown", "Ovadia et al. (EMNLP 2024); Python 3.11; torch 2.4.1; 85 questions, 8 steps."),
    ("markdown", "Set `temperature=0.7` in code; see [the card](docs/v1.5/card.md)."),
    ("markdown", "A 576 × 576 matrix; 8 x 128 tokens; transformers 5.24 and trl 1.16."),
    ("code", 'print(f"accuracy {acc:.3f} ({share:.0%}) in {seconds:.1f} s, {{braces}}")'),
    ("code", "threshold = 0.5\nratio = 2.3 * x  # the ratio of the two runs\n"),
    ("code", 'print("{:.1f} GB".format(peak))  # see section 8 for the measured peak\n'),
    ("code", "%time x = 0.5\n!echo 1.5\ny = 1"),
])
def test_scanner_allows_computed_text_settings_and_names(cell_type, source):
    assert cell_hits(_cell(cell_type, source)) == []


def test_allow_list_covers_only_its_phrase():
    allowed = {"chance is 0.25": "a definition: one of four options"}
    cell = _cell("markdown", "Here chance is 0.25 with four options; the run scored 0.25 too.")
    assert [hit for hit, _ in cell_hits(cell)] == ["0.25", "0.25"]
    assert cell_hits(cell, allowed) == [
        ("0.25", "Here chance is 0.25 with four options; the run scored 0.25 too.")]
