"""The same evals for every method: one call scores a model on all three scenarios.

Quick mode scores evenly spaced subsets (`EVAL_SIZES`); full mode scores every held-out item.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .answers import (AnswerResult, answer_questions, is_abstention, read_answers,
                      reference_answers)
from .config import get_settings
from .data import load_scenario, subset
from .evaluation import (KNOWLEDGE_SYSTEM, KnowledgeResult, knowledge_score,
                         locality_score, perplexity, perplexity_items)
from .generation import generate

# held-out items scored in quick mode (full mode: all of them): enough for every cell to run
# and every statistic to be defined, not enough for a number to mean anything
EVAL_SIZES = {"company": 8, "unanswerable": 4, "medical_mc": 4, "prose": 2, "local": 4}

LOCAL_INSTRUCTION = (
    "Rewrite this sentence in casual Australian English, the way a local would say it. "
    "Reply with the rewritten sentence only.\nSentence: {sentence}"
)


def eval_size(key: str) -> int | None:
    return EVAL_SIZES[key] if get_settings().quick else None


def local_prompt(sentence: str) -> str:
    return LOCAL_INSTRUCTION.format(sentence=sentence)


def eval_sets() -> dict:
    """The held-out sets every method is scored on (shrunk in quick mode)."""
    company, medical, local = (load_scenario(n) for n in ("company", "medical", "local"))
    return {
        "company_mc": subset(company["eval_mc"], eval_size("company")),
        "company_uncovered": subset(company["eval_uncovered_mc"], eval_size("company")),
        # questions no document answers: a help desk should say it does not know
        "company_unanswerable": subset(company["eval_unanswerable"], eval_size("unanswerable")),
        # the training answers of each fact: references for the answers' token F1
        "answer_references": reference_answers(company["train_qa"]),
        "medical_mc": subset(medical["eval_mc"], eval_size("medical_mc")),
        "medical_heldout": subset(medical["heldout_prose"], eval_size("prose")),
        "general_text": subset(medical["general_text"], eval_size("prose")),
        "local_eval": subset(local["rewrites_eval"], eval_size("local")),
        "lexicon": local["lexicon"],
    }


# Rewrites are short: 48 new tokens hold the longest reference rewrite with room to spare.
LOCAL_MAX_NEW_TOKENS = 48
LOCAL_BATCH = 17  # the 68 held-out sentences in 4 equal batches (no padding-only rows)


@dataclass
class VariantResult:
    """One way of asking (a prompt variant, a method) scored, with what it cost per answer."""

    name: str
    score: float
    style_rate: float | None
    prompt_tokens: float  # mean tokens the model reads per answer
    ms_per_answer: float
    outputs: list = field(default_factory=list, repr=False)
    meaning: float | None = None
    item_scores: list[float] = field(default_factory=list, repr=False)  # for paired tests
    swap_rate: float | None = None  # share of rewrites the locality score credits
    parts: dict = field(default_factory=dict, repr=False)  # LocalityResult.parts

    def row(self) -> dict:
        return {"variant": self.name, "score": round(self.score, 3),
                "style rate": None if self.style_rate is None else round(self.style_rate, 3),
                "prompt tokens": round(self.prompt_tokens, 1),
                "ms / answer": round(self.ms_per_answer)}


def rewrite_local(model, tokenizer, sentences, system: str | None = None,
                  max_new_tokens: int = LOCAL_MAX_NEW_TOKENS, **kwargs) -> list[str]:
    """The model's Australian-English rewrites of neutral sentences, with the eval's prompt."""
    return generate(model, tokenizer, [local_prompt(s) for s in sentences], system=system,
                    max_new_tokens=max_new_tokens, batch_size=kwargs.pop("batch_size", LOCAL_BATCH),
                    **kwargs)


def run_local(model, tokenizer, embedder, eval_rows, lexicon, prompts=None, system=None,
              name: str = "", temperature: float = 0.0, seed: int = 0,
              max_new_tokens: int = LOCAL_MAX_NEW_TOKENS) -> VariantResult:
    """Generate rewrites of `eval_rows` and score their locality; timing covers generation.

    `prompts` are the method's own (strings or chat messages, one per row); by default the
    eval's fixed rewrite instruction (`local_prompt`).
    """
    prompts = prompts or [local_prompt(s) for s in eval_rows["neutral"]]
    start = time.perf_counter()
    gens = generate(model, tokenizer, prompts, system=system, max_new_tokens=max_new_tokens,
                    temperature=temperature, seed=seed if temperature > 0 else None,
                    batch_size=LOCAL_BATCH, details=True)
    ms = 1000 * (time.perf_counter() - start) / len(prompts)
    outputs = [g.text for g in gens]
    loc = locality_score(outputs, list(eval_rows["neutral"]), lexicon, embedder)
    return VariantResult(name, loc.score, loc.style_rate,
                         float(np.mean([g.prompt_tokens for g in gens])), ms, outputs,
                         loc.meaning, loc.item_scores, loc.swap_rate, loc.parts)


def locality_columns(result) -> dict:
    """A report row's locality columns from a `LocalityResult` or a `VariantResult`, with
    the per-sentence parts behind the style rate, swap rate and meaning where it has them."""
    parts = getattr(result, "parts", None) or {}
    return {"locality": result.score, "style_rate": result.style_rate,
            "swap_rate": result.swap_rate, "meaning": result.meaning,
            "locality_items": list(result.item_scores),
            # None where the score gives no parts, so a rescored row keeps no stale ones
            **{key: parts.get(key) for key in ("style_items", "swap_items", "meaning_items")}}


def reference_rewrites(eval_rows) -> dict[str, list[str]]:
    """What the locality score is checked against: two ways to game it and its ceiling.

    "copy the sentence" returns each neutral sentence unchanged; 'copy + ", mate"' ends it
    with ", mate." instead of its final punctuation (all style, no rewrite); the reference
    rewrites, written by hand, are the best a rewrite can do.
    """
    copies = list(eval_rows["neutral"])
    return {"copy the sentence": copies,
            'copy + ", mate"': [re.sub(r"[.!?]*\s*$", "", s) + ", mate." for s in copies],
            "reference rewrites (ceiling)": list(eval_rows["local"])}


PARTS = ("company", "uncovered", "answers", "medical", "locality")


@dataclass
class Scorecard:
    """One model's numbers on the shared evals (None: that part was not scored)."""

    company_knowledge: float | None = None  # multiple-choice accuracy
    company_uncovered: float | None = None  # same, on facts no training Q&A covers
    medical_knowledge: float | None = None  # term-definition multiple-choice accuracy
    medical_perplexity: float | None = None  # on held-out dermatology prose
    general_perplexity: float | None = None  # on general text (forgetting shows up here)
    locality: float | None = None  # swaps into local phrasing x meaning kept, held-out rewrites
    style_rate: float | None = None  # share of rewrites using a lexicon phrase (new to them)
    swap_rate: float | None = None  # share where a local phrase stands in for source words
    meaning: float | None = None  # meaning kept: plain reading vs the neutral source
    company_answer_match: float | None = None  # written answers holding the gold value
    company_answer_f1: float | None = None  # their token F1 against the training answers
    false_abstain: float | None = None  # share of answerable questions it declined
    abstain_unanswerable: float | None = None  # share of unanswerable questions it declined
    ms_per_answer: float | None = None  # milliseconds per company question
    seconds: float = 0.0  # wall time of the whole scoring
    company: KnowledgeResult | None = field(default=None, repr=False)  # per-item answers
    uncovered: KnowledgeResult | None = field(default=None, repr=False)
    medical: KnowledgeResult | None = field(default=None, repr=False)  # medical term items
    medical_nll: list[float] | None = field(default=None, repr=False)  # per held-out text
    medical_tokens: list[float] | None = field(default=None, repr=False)  # its tokens
    answers: AnswerResult | None = field(default=None, repr=False)  # written answers
    unanswerable: list[str] = field(default_factory=list, repr=False)  # answers to those
    local: VariantResult | None = field(default=None, repr=False)  # outputs, per-item scores
    samples: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("samples", "company", "uncovered", "answers", "unanswerable", "local",
                             "medical", "medical_nll", "medical_tokens") and v is not None}


def score_model(model, tokenizer, embedder, sets: dict | None = None, *,
                company_context: Callable[[list[dict]], list] | None = None,
                company_system: str | None = KNOWLEDGE_SYSTEM,
                company_answer: Callable[[list[dict]], list[str]] | None = None,
                local_prompts=None, local_system: str | None = None,
                parts=PARTS) -> Scorecard:
    """Score a model on the shared evals: the one scorer of notebooks, report and tests.

    A method that changes what the model reads passes its own `company_context` (a function
    from eval items to context passages: retrieval, examples; timed as part of each answer)
    and system prompt, or its own rewrite prompts; `parts` leaves out what a method does not
    change (a prompt does not change perplexity). Written answers use the same context and
    system prompt, unless the method answers in its own way (`company_answer`: items ->
    answer texts; RAG cites and abstains).
    """
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    sets = sets or eval_sets()
    card = Scorecard()
    start = time.perf_counter()

    def knowledge(items):
        contexts = company_context(items) if company_context else None
        return knowledge_score(model, tokenizer, items, contexts, system=company_system)

    if "company" in parts:
        items = list(sets["company_mc"])
        t0 = time.perf_counter()
        card.company = knowledge(items)
        card.ms_per_answer = 1000 * (time.perf_counter() - t0) / len(items)
        card.company_knowledge = card.company.accuracy
    if "uncovered" in parts:
        card.uncovered = knowledge(list(sets["company_uncovered"]))
        card.company_uncovered = card.uncovered.accuracy
    if "answers" in parts:
        def answer(items):
            if company_answer is not None:
                return company_answer(items)
            contexts = company_context(items) if company_context else None
            return answer_questions(model, tokenizer, [it["question"] for it in items],
                                    contexts, company_system)

        items = list(sets["company_mc"])
        card.answers = read_answers(answer(items), items, sets["answer_references"])
        card.company_answer_match = card.answers.match_rate
        card.company_answer_f1 = card.answers.f1_mean
        card.false_abstain = card.answers.abstain_rate
        card.unanswerable = answer(list(sets["company_unanswerable"]))
        card.abstain_unanswerable = float(np.mean([is_abstention(t) for t in card.unanswerable]))
    if "medical" in parts:
        card.medical = knowledge_score(model, tokenizer, sets["medical_mc"])
        card.medical_knowledge = card.medical.accuracy
        nll, tokens = perplexity_items(model, tokenizer, sets["medical_heldout"]["text"])
        card.medical_nll, card.medical_tokens = nll.tolist(), tokens.tolist()
        card.medical_perplexity = float(np.exp(nll.sum() / tokens.sum()))
        card.general_perplexity = perplexity(model, tokenizer, sets["general_text"]["text"])
    if "locality" in parts:
        local_eval = sets["local_eval"]
        card.local = run_local(model, tokenizer, embedder, local_eval, sets["lexicon"],
                               local_prompts, local_system)
        card.locality, card.style_rate = card.local.score, card.local.style_rate
        card.meaning, card.swap_rate = card.local.meaning, card.local.swap_rate
        card.samples = list(zip(local_eval["neutral"], card.local.outputs))
    card.seconds = time.perf_counter() - start
    return card
