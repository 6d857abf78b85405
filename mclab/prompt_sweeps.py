"""Choosing the prompt settings on validation data (issue 13, point 5): how many training Q&A
the company rows read, how many worked rewrites the local few-shot prompt shows, and how
many local phrases the engineered prompt names. The held-out evals are never read.

- **Company questions.** Multiple-choice items built from the training Q&A
  (`rag_tuning.validation_items`, one per fact: the first row of each fact, with options
  from other facts of the same kind, as RAG's settings were chosen). Each item's examples
  come from the *other* training Q&A (its own row left out), so a fact's other two wordings
  stand where an eval question has three. "Retrieval over training Q&A" may read the
  item's own fact; few-shot never does (`prompting.few_shot_contexts`).
- **Local rewrites.** The validation rewrites of the local SFT's split
  (`finetuning.local_split`, every 8th training pair), scored with the report's locality;
  worked examples and hint phrases come from the split's training rewrites only.

The rule, as for RAG's k (`rag_tuning.choose`): the fewest examples (or phrases) whose
validation score is within one standard error of the best setting's, so that a longer
prompt must earn its tokens.
"""

from __future__ import annotations

import numpy as np

COMPANY_KS = (1, 2, 4, 8)  # training Q&A in front of the question
LOCAL_SHOTS = (1, 2, 4, 8)  # worked rewrites before the sentence (0 is the plain prompt)
HINTS = (0, 4, 8, 16)  # local phrases the engineered prompt names
RULE = ("the fewest examples (or phrases) whose validation score is within one standard "
        "error (of the best setting's per-item scores) of the best score")


def standard_error(scores) -> float:
    scores = np.asarray(scores, dtype=float)
    return float(scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0


def choose(trials: list[dict], key: str) -> dict:
    """The trial `RULE` picks among `trials` (each with `key`, `score` and `items`)."""
    if not trials:
        raise ValueError("no trials to choose from")
    best = max(trials, key=lambda t: t["score"])
    bar = best["score"] - standard_error(best["items"])
    return min((t for t in trials if t["score"] >= bar), key=lambda t: t[key])


def _trial(key: str, value: int, result) -> dict:
    return {key: value, "score": float(result.score), "items": list(result.item_scores),
            "prompt_tokens": float(result.prompt_tokens)}


def company_trials(model, tokenizer, embedder, train_qa, ks=COMPANY_KS,
                   n_items: int | None = None) -> dict[str, list[dict]]:
    """{"retrieval": trials, "few_shot": trials}: validation accuracy at each k."""
    from .data import subset
    from .prompting import ExampleSelector, few_shot_contexts, run_knowledge
    from .rag_tuning import validation_items

    rows = list(train_qa)
    items = list(subset(validation_items(rows, per_fact=1), n_items))
    asked = {it["id"] for it in items}
    pool = [r for r in rows if r["id"] not in asked]  # an item never reads its own row
    selector = ExampleSelector([r["question"] for r in pool], embedder)
    questions = [it["question"] for it in items]
    out = {}
    for kind, facts in (("retrieval", None), ("few_shot", [it["fact_id"] for it in items])):
        out[kind] = [_trial("k", k, run_knowledge(
            model, tokenizer, items,
            few_shot_contexts(selector, pool, questions, k, "similar", facts=facts)))
            for k in ks]
    return out


def local_trials(model, tokenizer, embedder, rewrites_train, lexicon, shots=LOCAL_SHOTS,
                 hints=HINTS, n_items: int | None = None) -> dict[str, list[dict]]:
    """{"few_shot": trials, "hint_phrases": trials}: validation locality at each setting,
    as the report's rows prompt (few-shot: the plain instruction with the most similar worked
    rewrites; prompt engineering: the engineered prompt and the local role)."""
    from .data import subset
    from .finetuning import local_split
    from .prompting import (LOCAL_ROLE, ExampleSelector, engineered_local_prompt,
                            frequent_local_phrases, local_few_shot_prompts)
    from .scorecard import run_local

    train, val = local_split(rewrites_train)
    val = list(subset(val, n_items))
    rows = {"neutral": [r["neutral"] for r in val], "local": [r["local"] for r in val]}
    selector = ExampleSelector([r["neutral"] for r in train], embedder)
    few = [_trial("shots", n, run_local(
        model, tokenizer, embedder, rows, lexicon,
        local_few_shot_prompts(rows["neutral"], train, selector, n, "similar")))
        for n in shots]
    phrases = [_trial("hint_phrases", n, run_local(
        model, tokenizer, embedder, rows, lexicon,
        [engineered_local_prompt(s, frequent_local_phrases(train, lexicon, n=n))
         for s in rows["neutral"]], system=LOCAL_ROLE))
        for n in hints]
    return {"few_shot": few, "hint_phrases": phrases}


def record(company: dict, local: dict) -> dict:
    """The sweep's record: every trial and each choice (`RULE`)."""
    choices = {"company_retrieval_k": choose(company["retrieval"], "k")["k"],
               "company_few_shot_k": choose(company["few_shot"], "k")["k"],
               "local_few_shot_shots": choose(local["few_shot"], "shots")["shots"],
               "hint_phrases": choose(local["hint_phrases"], "hint_phrases")["hint_phrases"]}
    return {"rule": RULE, "choices": choices,
            "trials": {"company_retrieval": company["retrieval"],
                       "company_few_shot": company["few_shot"],
                       "local_few_shot": local["few_shot"],
                       "hint_phrases": local["hint_phrases"]}}
