"""The same evals for every method: one call scores a model on all three scenarios.

Quick mode scores evenly spaced subsets (`EVAL_SIZES`); full mode scores every held-out item.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .config import get_settings
from .data import load_scenario, subset
from .evaluation import knowledge_score, locality_score, perplexity
from .generation import generate

# held-out items scored in quick mode (full mode: all of them): enough for every cell to run
# and every statistic to be defined, not enough for a number to mean anything
EVAL_SIZES = {"company": 8, "medical_mc": 4, "prose": 2, "local": 4}

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
        "medical_mc": subset(medical["eval_mc"], eval_size("medical_mc")),
        "medical_heldout": subset(medical["heldout_prose"], eval_size("prose")),
        "general_text": subset(medical["general_text"], eval_size("prose")),
        "local_eval": subset(local["rewrites_eval"], eval_size("local")),
        "lexicon": local["lexicon"],
    }


@dataclass
class Scorecard:
    """One model's numbers on the shared evals."""

    company_knowledge: float  # multiple-choice accuracy, closed book
    medical_knowledge: float  # term-definition multiple-choice accuracy
    medical_perplexity: float  # on held-out dermatology prose
    general_perplexity: float  # on general text (forgetting shows up here)
    locality: float  # local phrasing x meaning kept, on held-out rewrites
    style_rate: float  # share of rewrites using a lexicon phrase
    meaning: float  # similarity of rewrites to the reference
    seconds: float  # wall time of the whole scoring
    samples: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "samples"}


def rewrite_local(model, tokenizer, sentences, system: str | None = None,
                  max_new_tokens: int = 48, **kwargs) -> list[str]:
    """The model's Australian-English rewrites of neutral sentences."""
    return generate(model, tokenizer, [local_prompt(s) for s in sentences], system=system,
                    max_new_tokens=max_new_tokens, **kwargs)


def score_model(model, tokenizer, embedder, sets: dict | None = None) -> Scorecard:
    """Score a model on company and medical knowledge, perplexity and locality."""
    sets = sets or eval_sets()
    start = time.perf_counter()
    company = knowledge_score(model, tokenizer, sets["company_mc"])
    medical = knowledge_score(model, tokenizer, sets["medical_mc"])
    ppl_med = perplexity(model, tokenizer, sets["medical_heldout"]["text"])
    ppl_gen = perplexity(model, tokenizer, sets["general_text"]["text"])
    local_eval = sets["local_eval"]
    outputs = rewrite_local(model, tokenizer, local_eval["neutral"])
    loc = locality_score(outputs, local_eval["local"], sets["lexicon"], embedder)
    return Scorecard(company.accuracy, medical.accuracy, ppl_med, ppl_gen, loc.score,
                     loc.style_rate, loc.meaning, time.perf_counter() - start,
                     list(zip(local_eval["neutral"], outputs)))
