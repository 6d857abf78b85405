"""Measurements on the held-out items, once the settings are chosen: never used to choose.

- `heldout_span_table`: answer-span recall@k of each retriever with the chosen chunking;
- `distractor_ablation`: why a value of another option in the gold document misleads the
  135M reader, and what context helps: the whole document, the answer sentence alone, the
  answer sentence with the distractor's sentence, the retrieved passages, and k passages.
"""

from __future__ import annotations

import time

import numpy as np

from .chunking import split_sentences
from .evaluation import knowledge_score
from .rag import (RAG_SYSTEM, RETRIEVER_CHOICES, DenseIndex, build_context, chunks_from_recipe,
                  recipe_with, retriever_from_recipe)
from .retrieval_metrics import contains_answer, mc_answers, span_recall_table


def retrievers_for(documents, embedder, recipe=None, labels=None, model=None, tokenizer=None):
    """{label: retriever} for `RETRIEVER_CHOICES` labels over the recipe's chunks, sharing one
    dense index."""
    recipe = recipe or recipe_with()
    index = DenseIndex.build(chunks_from_recipe(documents, recipe), embedder)
    return {label: retriever_from_recipe(documents, embedder, recipe_with(recipe, retriever=label),
                                         model, tokenizer, index)
            for label in labels or list(RETRIEVER_CHOICES)}


def heldout_span_table(documents, embedder, items, recipe=None, ks=(1, 2, 4, 8), labels=None,
                       model=None, tokenizer=None) -> dict:
    """{retriever: {k: answer-span recall@k}} on multiple-choice items (answer: the correct
    option's text), with the recipe's chunking."""
    items = list(items)
    retrievers = retrievers_for(documents, embedder, recipe, labels, model, tokenizer)
    return span_recall_table(retrievers, [it["question"] for it in items], mc_answers(items), ks)


def distractor_options(item, document) -> list[str]:
    """The wrong options of an item whose text is in its gold document."""
    text = f"{document['title']}: {document['text']}"
    return [o for j, o in enumerate(item["options"])
            if j != item["answer"] and contains_answer(text, o)]


def sentences_with(document, phrases) -> str:
    """The document's sentences that contain any of the phrases, in document order."""
    return " ".join(s for s in split_sentences(document["text"])
                    if any(contains_answer(s, p) for p in phrases))


def answer_sentences(items, documents, with_distractor: bool = False) -> list[str]:
    """Each item's context cut from its gold document: "Title: " and the sentence(s) holding
    the answer, plus, with `with_distractor`, those holding the other options it states."""
    docs = {d["id"]: d for d in documents}
    contexts = []
    for item, answer in zip(items, mc_answers(items)):
        doc = docs[item["doc_id"]]
        phrases = [answer, *distractor_options(item, doc)] if with_distractor else [answer]
        contexts.append(f"{doc['title']}: {sentences_with(doc, phrases)}")
    return contexts


def distractor_items(items, documents) -> list:
    """The items whose gold document also states another option's value."""
    docs = {d["id"]: d for d in documents}
    return [it for it in items if distractor_options(it, docs[it["doc_id"]])]


def _row(model, tokenizer, name: str, items, contexts) -> dict:
    start = time.perf_counter()
    result = knowledge_score(model, tokenizer, items, contexts, system=RAG_SYSTEM)
    tokens = np.mean([len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in contexts])
    return {"context": name, "items": result.n, "correct": int(sum(result.correct)),
            "accuracy": result.accuracy, "context_tokens": float(tokens),
            "seconds": time.perf_counter() - start}


def distractor_ablation(model, tokenizer, items, documents, retriever, k: int,
                        ks=(1, 2, 4)):
    """Multiple-choice accuracy of the reader with different contexts (a pandas table).

    On the items whose gold document contains another option's text: (i) the whole gold
    document, (ii) the sentence(s) holding the answer, (iii) those plus the sentence(s)
    holding the distractor, (iv) the top-`k` retrieved passages. On all items: the answer
    sentence alone (the reader's ceiling with a perfect retriever), the whole document, and
    the top 1, 2, 4 passages. A measurement on held-out items, not a way to choose settings.
    """
    import pandas as pd

    items, docs = list(items), {d["id"]: d for d in documents}
    gold = [docs[it["doc_id"]] for it in items]
    ranked = retriever.retrieve([it["question"] for it in items], max(k, *ks))
    whole = [f"{d['title']}: {d['text']}" for d in gold]
    alone = answer_sentences(items, documents)
    passages = {n: [build_context(r[:n], retriever.chunks) for r in ranked] for n in {k, *ks}}
    hard = [i for i, (it, d) in enumerate(zip(items, gold)) if distractor_options(it, d)]
    pick = lambda values: [values[i] for i in hard]  # noqa: E731
    both = answer_sentences(pick(items), documents, with_distractor=True)
    rows = [("distractor in gold doc", "(i) whole gold document", pick(whole)),
            ("distractor in gold doc", "(ii) answer sentence only", pick(alone)),
            ("distractor in gold doc", "(iii) answer + distractor sentences", both),
            ("distractor in gold doc", f"(iv) retrieved, k={k}", pick(passages[k])),
            ("all items", "answer sentence only", alone),
            ("all items", "whole gold document", whole)]
    rows += [("all items", f"retrieved, k={n}", passages[n]) for n in ks]
    table = []
    for subset_name, name, contexts in rows:
        subset_items = items if subset_name == "all items" else pick(items)
        if subset_items:
            table.append({"items from": subset_name,
                          **_row(model, tokenizer, name, subset_items, contexts)})
    return pd.DataFrame(table).set_index(["items from", "context"])
