"""Free-text answers, scored the way a help-desk user reads them.

Multiple choice (`evaluation.knowledge_score`) asks which of four options the model finds most
likely; a user never sees options. Here the model *writes* its answer, and three measures read
it:
- `contains_answer`: the gold value (the correct option's text) appears in the answer,
  after normalising case, spacing, quotes and thousands separators; a number never matches
  inside a longer one ("4 hours" is not found in "24 hours");
- `token_f1`: SQuAD's token overlap with a reference answer sentence (for a company fact,
  the best of its training answers), partial credit for a near answer;
- `is_abstention`: the answer declines ("I don't know", "the passages do not say").
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .evaluation import KNOWLEDGE_SYSTEM, knowledge_prompt
from .generation import generate

# A company answer is a phrase or one sentence; 40 tokens hold the longest gold sentence.
ANSWER_TOKENS = 40
ANSWER_BATCH = 16
ABSTAIN_TEXT = "I don't know: the knowledge base does not say."
_ABSTAIN = re.compile(
    r"\b(i don'?t know|i do not know|not (?:mentioned|stated|specified|given|provided|"
    r"included|in the (?:passages?|knowledge base))|no information|"
    r"(?:does|do) not (?:say|mention|specify|state|contain)|doesn'?t (?:say|mention|specify|"
    r"state|contain)|cannot (?:find|answer|tell)|can'?t (?:find|answer|tell)|i'?m not sure)\b",
    re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """Lowercase, one kind of quote and dash, no thousands separators, single spaces."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[\u2010-\u2015]", "-", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return " ".join(text.split())


def contains_answer(text: str, answer: str) -> bool:
    """The answer's words appear in `text` as a whole phrase (see the module docstring)."""
    needle = normalize(answer).strip(string.punctuation + " ")
    if not needle:
        raise ValueError("empty gold answer: every item needs the text of its correct answer")
    # a phrase starting or ending with a letter or digit must not continue a longer word/number
    pattern = (r"(?<![\w.])" if needle[0].isalnum() else "") + re.escape(needle) + \
        (r"(?![\w]|\.\d)" if needle[-1].isalnum() else "")
    return re.search(pattern, normalize(text)) is not None


def words(text: str) -> list[str]:
    text = normalize(text)
    text = "".join(ch if ch not in string.punctuation or ch in ".:" else " " for ch in text)
    text = re.sub(r"(?<!\d)[.:]|[.:](?!\d)", " ", text)  # keep 0.31 and 07:15 whole
    return _ARTICLES.sub(" ", text).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1: harmonic mean of token precision and recall (articles, punctuation
    and case ignored)."""
    pred, ref = words(prediction), words(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def is_abstention(text: str) -> bool:
    return bool(_ABSTAIN.search(text)) or not text.strip()


@dataclass
class AnswerResult:
    """Generated answers to multiple-choice items, read without the options."""

    texts: list[str]
    match: list[bool]  # the correct option's text is in the answer
    f1: list[float]  # best token F1 against the fact's reference sentences (nan: none)
    abstained: list[bool]
    extra: dict = field(default_factory=dict, repr=False)  # a method's own details (citations)

    @property
    def match_rate(self) -> float:
        return float(np.mean(self.match))

    @property
    def f1_mean(self) -> float | None:
        scored = [f for f in self.f1 if not np.isnan(f)]
        return float(np.mean(scored)) if scored else None

    @property
    def abstain_rate(self) -> float:
        return float(np.mean(self.abstained))


def reference_answers(train_qa) -> dict[str, list[str]]:
    """fact_id -> the training answer sentences that state it (the F1 references)."""
    refs: dict[str, list[str]] = {}
    for row in train_qa:
        refs.setdefault(row["fact_id"], []).append(row["answer"])
    return refs


def read_answers(texts: list[str], items, references: dict[str, list[str]] | None = None,
                 ) -> AnswerResult:
    """Score answers to `items` (with `options`, `answer`, optionally `fact_id`)."""
    items = list(items)
    if len(texts) != len(items):
        raise ValueError(f"got {len(texts)} answers for {len(items)} questions")
    references = references or {}
    match, f1 = [], []
    for text, item in zip(texts, items):
        match.append(contains_answer(text, item["options"][item["answer"]]))
        refs = references.get(item.get("fact_id"), [])
        f1.append(max(token_f1(text, r) for r in refs) if refs else float("nan"))
    return AnswerResult(list(texts), match, f1, [is_abstention(t) for t in texts])


def answer_questions(model, tokenizer, questions, contexts=None,
                     system: str | None = KNOWLEDGE_SYSTEM,
                     max_new_tokens: int = ANSWER_TOKENS) -> list[str]:
    """Greedy answers to questions, each with its context (passages, examples) if given: the
    same user message as the multiple-choice score, without the options."""
    questions = list(questions)
    contexts = contexts or [None] * len(questions)
    if len(contexts) != len(questions):
        raise ValueError(f"got {len(contexts)} contexts for {len(questions)} questions")
    prompts = [knowledge_prompt(q, c) for q, c in zip(questions, contexts)]
    return generate(model, tokenizer, prompts, system=system, max_new_tokens=max_new_tokens,
                    batch_size=ANSWER_BATCH)
