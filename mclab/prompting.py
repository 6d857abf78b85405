"""Prompt-based customization: prompt engineering, in-context knowledge, few-shot examples.

Nothing is trained; every method changes only what the model reads. Each helper returns the
score together with its cost (prompt tokens and milliseconds per answer), because a longer
prompt is what these methods pay with.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import numpy as np

from .evaluation import KNOWLEDGE_SYSTEM, knowledge_prompt, knowledge_score, lexicon_hits
from .generation import ContextWindowError, check_fits, format_chat
from .scorecard import VariantResult, local_prompt, run_local  # noqa: F401 (notebooks)

STRATEGIES = ("random", "similar")

# ---------------------------------------------------------------------------- prompts

LOCAL_ROLE = ("You are Shazza, a friendly local from Brisbane. You talk in relaxed, casual "
              "Australian English, the way mates text each other.")
COMPANY_ROLE = ("You are the internal help desk of Kestrel & Ashdown Outfitters, an outdoor "
                "gear company. Answer staff questions about the company's policies, products, "
                "people and procedures briefly and precisely.")


def engineered_local_prompt(sentence: str, hint_phrases=()) -> str:
    """Instruction + output format + delimiters (+ optional example words) for a rewrite."""
    hints = ""
    if hint_phrases:
        hints = ("Use at least one Australian word or phrase, for example: "
                 + ", ".join(hint_phrases) + ". ")
    return ("Rewrite the sentence between <<< and >>> in casual Australian English, the way a "
            f"local would say it. Keep the meaning. {hints}"
            "Reply with the rewritten sentence only: one sentence, no quotes, no explanation.\n"
            f"<<<{sentence}>>>")


def frequent_local_phrases(train_rows, lexicon, n: int = 8) -> list[str]:
    """The lexicon phrases used most often in the TRAINING rewrites (never the eval)."""
    counts = Counter(p for row in train_rows for p in lexicon_hits(row["local"], lexicon))
    return [phrase for phrase, _ in counts.most_common(n)]


def delimited_context(text: str, title: str | None = None) -> str:
    """A context passage fenced by tags, so the model can tell document from question."""
    head = f'<document title="{title}">' if title else "<document>"
    return f"{head}\n{text}\n</document>"


# ---------------------------------------------------------------------------- examples

class ExampleSelector:
    """Picks few-shot examples from a training pool: at random or the most similar ones.

    "Most similar" embeds the pool once and takes the highest cosine similarities to the
    query (a brute-force inner-product search over unit vectors, what FAISS's IndexFlatIP
    does). The best match goes last, nearest the question.
    """

    def __init__(self, pool_texts, embedder=None):
        self.pool_texts = list(pool_texts)
        if not self.pool_texts:
            raise ValueError("the example pool is empty; pass the training rows")
        self.embedder = embedder
        self._vectors = None

    def _pool_vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = self.embedder.encode(self.pool_texts, normalize_embeddings=True,
                                                 convert_to_numpy=True, show_progress_bar=False)
        return self._vectors

    def select(self, queries, k: int, strategy: str = "similar", seed: int = 0,
               exclude: list[set[int]] | None = None) -> list[list[int]]:
        """`k` pool indices per query; `exclude[i]`: pool rows query i may not use."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown selection strategy {strategy!r}; choose one of "
                             f"{', '.join(STRATEGIES)}")
        if not 0 <= k <= len(self.pool_texts):
            raise ValueError(f"number of shots must be between 0 and the pool size "
                             f"({len(self.pool_texts)}), got {k}")
        queries = list(queries)
        if k == 0:
            return [[] for _ in queries]
        exclude = exclude or [set() for _ in queries]
        if strategy == "random":
            return [random.Random(seed * 100_003 + i).sample(
                        [j for j in range(len(self.pool_texts)) if j not in exclude[i]], k)
                    for i in range(len(queries))]
        if self.embedder is None:
            raise ValueError("'similar' selection needs an embedder (load_embedder())")
        q = self.embedder.encode(queries, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
        sims = q @ self._pool_vectors().T
        for i, banned in enumerate(exclude):
            sims[i, list(banned)] = -np.inf
        top = np.argsort(-sims, axis=1)[:, :k]
        return [[int(i) for i in row[::-1]] for row in top]  # best match last


def few_shot_messages(prompt: str, examples: list[tuple[str, str]]) -> list[dict]:
    """Examples as earlier chat turns (user asks, assistant answers), then the real prompt."""
    messages = []
    for user, assistant in examples:
        messages += [{"role": "user", "content": user},
                     {"role": "assistant", "content": assistant}]
    return messages + [{"role": "user", "content": prompt}]


# ---------------------------------------------------------------------------- local rewrites

def local_few_shot_prompts(sentences, pool_rows, selector: ExampleSelector | None, shots: int,
                           strategy: str = "similar", seed: int = 0, engineered: bool = False,
                           hint_phrases=()) -> list:
    """One prompt per sentence: the rewrite instruction, with `shots` worked examples before it."""
    make = (lambda s: engineered_local_prompt(s, hint_phrases)) if engineered else local_prompt
    if shots == 0:
        return [make(s) for s in sentences]
    chosen = selector.select(sentences, shots, strategy, seed)
    return [few_shot_messages(make(s), [(make(pool_rows[i]["neutral"]), pool_rows[i]["local"])
                                        for i in ids])
            for s, ids in zip(sentences, chosen)]


def run_few_shot_local(model, tokenizer, embedder, eval_rows, pool_rows, lexicon, shots: int,
                       strategy: str = "similar", system: str | None = None,
                       temperature: float = 0.0, seed: int = 0,
                       selector: ExampleSelector | None = None) -> VariantResult:
    """Locality score of few-shot rewrites (the widget's work, and the sweep's)."""
    if system is not None and not system.strip():
        system = None  # an emptied text box means "the template's default system prompt"
    if not 0 <= temperature <= 2:
        raise ValueError(f"temperature must be between 0 and 2, got {temperature}")
    selector = selector or ExampleSelector([r["neutral"] for r in pool_rows], embedder)
    prompts = local_few_shot_prompts(list(eval_rows["neutral"]), pool_rows, selector, shots,
                                     strategy, seed)
    return run_local(model, tokenizer, embedder, eval_rows, lexicon, prompts, system,
                     f"{shots}-shot {strategy}" if shots else "0-shot", temperature, seed)


# ---------------------------------------------------------------------------- knowledge

def run_knowledge(model, tokenizer, items, contexts=None, system=KNOWLEDGE_SYSTEM,
                  name: str = "", batch_size: int = 8) -> VariantResult:
    """Knowledge score with its cost: mean prompt tokens and milliseconds per question."""
    items = list(items)
    contexts = contexts or [None] * len(items)
    tokens = [len(tokenizer(format_chat(tokenizer, knowledge_prompt(it["question"], c), system),
                            add_special_tokens=False)["input_ids"])
              for it, c in zip(items, contexts)]
    start = time.perf_counter()
    result = knowledge_score(model, tokenizer, items, contexts, system=system,
                             batch_size=batch_size)
    ms = 1000 * (time.perf_counter() - start) / len(items)
    return VariantResult(name, result.accuracy, None, float(np.mean(tokens)), ms,
                         result.correct, item_scores=[float(c) for c in result.correct])


def stuffed_context(documents, gold_id: str, n_docs: int, seed: int = 0) -> str:
    """The gold document plus `n_docs - 1` others, in a shuffled order, as one context."""
    if not 1 <= n_docs <= len(documents):
        raise ValueError(f"n_docs must be between 1 and {len(documents)}, got {n_docs}")
    rng = random.Random(f"{seed}-{gold_id}-{n_docs}")
    gold = [d for d in documents if d["id"] == gold_id]
    if not gold:
        raise ValueError(f"no document has id {gold_id!r}")
    others = rng.sample([d for d in documents if d["id"] != gold_id], n_docs - 1)
    chosen = gold + others
    rng.shuffle(chosen)
    return "\n\n".join(f"# {d['title']}\n{d['text']}" for d in chosen)


def context_check(model, tokenizer, context: str, question: str,
                  system: str | None = KNOWLEDGE_SYSTEM) -> str:
    """'fits (N tokens)' or the ContextWindowError message, before any model work."""
    prompt = format_chat(tokenizer, knowledge_prompt(question, context), system)
    n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    try:
        check_fits(model, n, max_new_tokens=16)
    except ContextWindowError as err:
        return f"⚠ {err}"
    return f"fits: {n} tokens"


def qa_examples_context(examples: list[tuple[str, str]]) -> str:
    """Few-shot question/answer pairs written as a context block."""
    return "Examples of questions and answers:\n" + "\n".join(
        f"Q: {q}\nA: {a}" for q, a in examples)


def few_shot_contexts(selector: ExampleSelector, qa_rows, questions, shots: int,
                      strategy: str = "similar", seed: int = 0, facts=None) -> list[str]:
    """For each question, `shots` training Q/A pairs (random or most similar) as a context
    (None for 0 shots: the question alone).

    With `facts` (each question's `fact_id`), examples about the question's own fact are
    never chosen: the shots then show the format, not the answer.
    """
    if shots == 0:
        return [None] * len(list(questions))
    exclude = None
    if facts is not None:
        by_fact: dict = {}
        for j, row in enumerate(qa_rows):
            by_fact.setdefault(row["fact_id"], set()).add(j)
        exclude = [by_fact.get(f, set()) for f in facts]
    chosen = selector.select(list(questions), shots, strategy, seed, exclude)
    return [qa_examples_context([(qa_rows[i]["question"], qa_rows[i]["answer"]) for i in ids])
            for ids in chosen]


def run_few_shot_knowledge(model, tokenizer, items, qa_rows, selector: ExampleSelector,
                           shots: int, strategy: str, seed: int = 0,
                           system=KNOWLEDGE_SYSTEM, other_facts: bool = False) -> VariantResult:
    """Company knowledge with `shots` training Q/A pairs (random or most similar) in front."""
    items = list(items)
    if shots == 0:
        return run_knowledge(model, tokenizer, items, None, system, "0-shot")
    facts = [it["fact_id"] for it in items] if other_facts else None
    contexts = few_shot_contexts(selector, qa_rows, [it["question"] for it in items], shots,
                                 strategy, seed, facts=facts)
    name = f"{shots}-shot {strategy}" + (", other facts" if other_facts else "")
    return run_knowledge(model, tokenizer, items, contexts, system, name)


# ---------------------------------------------------------------------------- widget

def few_shot_panel(model, tokenizer, embedder, eval_rows, pool_rows, lexicon,
                   reference: dict | None = None):
    """Shots, selection strategy, temperature and an editable system prompt; re-scores."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from .widgets import panel

    controls = {
        "shots": w.IntSlider(value=4, min=0, max=8, description="shots", continuous_update=False),
        "strategy": w.Dropdown(options=list(STRATEGIES), value="similar", description="selection"),
        "temperature": w.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.1,
                                     description="temperature", continuous_update=False),
        "system": w.Textarea(value=LOCAL_ROLE, description="system", layout=w.Layout(width="90%")),
    }
    selector = ExampleSelector([r["neutral"] for r in pool_rows], embedder)

    def compute(shots, strategy, temperature, system):
        return run_few_shot_local(model, tokenizer, embedder, eval_rows, pool_rows, lexicon,
                                  shots, strategy, system, temperature, selector=selector)

    def render(res, values):
        bars = {**(reference or {}), "your setting": res.score}
        fig, ax = plt.subplots(figsize=(5, 2.6))
        ax.bar(list(bars), list(bars.values()), color=[f"C{i}" for i in range(len(bars))])
        ax.set_ylabel("locality score")
        ax.set_title(f"{res.name}, T={values['temperature']} on {len(eval_rows)} sentences",
                     fontsize=9)
        plt.show()
        print(f"style rate {res.style_rate:.2f} · {res.prompt_tokens:.0f} prompt tokens · "
              f"{res.ms_per_answer:.0f} ms per answer")
        for neutral, text in list(zip(eval_rows["neutral"], res.outputs))[:3]:
            print(f"  {neutral}\n  → {text}")

    # the system prompt is re-read on "Run"; the knobs re-run on release
    return panel(controls, compute, render, button="Run",
                 run_on_change=["shots", "strategy", "temperature"],
                 layout=[["shots", "strategy", "temperature", "button"], "system"])
