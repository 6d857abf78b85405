"""Choosing the RAG settings on the training Q&A only (validation), never on the held-out evals.

Two stages, both on validation questions (`tools/choose_rag_settings.py` runs them and
writes `reports/rag_settings.json`; `recipes.Rag` holds the choice):

1. retrieval: for every chunking, retriever and k, the share of training questions with a
   retrieved chunk that holds the answer (answer-span recall@k: all of the row's
   `answer_terms` in one chunk) and the context's length in tokens;
2. reading: the 135M model answers validation multiple-choice items built from the same
   Q&A (`validation_items`) with each chunking and k, through the retriever that found the
   answer most often for that chunking and k.

The rule (`choose`): among the candidates of stage 2, the one with the fewest context tokens
whose validation accuracy is within one standard error of the best (the "one-standard-error
rule"): a shorter context is cheaper and holds fewer distractors, and differences smaller
than the noise of the validation set are not evidence.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .chunking import RetrievalError
from .files import write_json_atomic
from .evaluation import knowledge_score
from .rag import (CHUNKINGS, RAG_SYSTEM, RETRIEVER_CHOICES, DenseIndex, build_context,
                  chunks_from_recipe, recipe_with, retriever_from_recipe)
from .retrieval_metrics import answer_span, answer_terms, doc_recall_at_k, span_hits

KS = (1, 2, 3, 4)
# cheapest first: on a tie in span recall the cheaper retriever is kept
RETRIEVER_ORDER = ("bm25", "dense", "hybrid", "hybrid + sentence rerank", "hybrid + LM rerank")
RULE = ("Among (chunking, k) pairs, each with the retriever of best validation span recall@k, "
        "take the one with the fewest mean context tokens whose validation multiple-choice "
        "accuracy is within one standard error of the best accuracy (one-standard-error rule).")

# The LM reranker scores every (question, passage) pair with the 135M model: on the first two
# chunkings it took about 13 minutes per chunking for the 255 training questions on this
# machine (over 300 times hybrid retrieval) and found the answer less often at k=1 than the
# sentence reranker (reports/rag_settings.json holds both). It is measured on these chunkings only;
# the others keep the four cheaper retrievers.
LM_RERANK_CHUNKINGS = ("60 words, overlap 20", "1 sentence")

MONTHS = ("january february march april may june july august september october november "
          "december").split()


class Checkpoint:
    """Results computed so far, in a JSON file, so a run that is stopped resumes where it was.

    Saved results count only for the same inputs (`key`); without a path nothing is saved.
    """

    def __init__(self, path=None, key: str = ""):
        self.path, self.key, self.results = (Path(path) if path else None), key, {}
        if self.path and self.path.is_file():
            saved = json.loads(self.path.read_text())
            if saved.get("key") == key:
                self.results = saved["results"]

    def get(self, name: str):
        return self.results.get(name)

    def put(self, name: str, value):
        self.results[name] = value
        if self.path:
            write_json_atomic(self.path, {"key": self.key, "results": self.results})
        return value


def inputs_key(*parts) -> str:
    """A fingerprint of the inputs a checkpoint's results were computed from."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------- validation items

def fact_spans(train_qa) -> dict[str, str]:
    """Each fact's answer span: the most common `answer_span` of its rows (ties: shortest)."""
    spans: dict[str, Counter] = {}
    for row in train_qa:
        span = answer_span(row["question"], row["answer"])
        spans.setdefault(row["fact_id"], Counter())[span] += 1
    return {fact: min(counts, key=lambda s: (-counts[s], len(s))) for fact, counts in spans.items()}


def span_kind(span: str) -> tuple[str, str]:
    """(coarse kind, fine kind) of an answer span: a distractor should look like the answer.

    "07:15" -> time; "14 March 1987" -> date; "1.42 kg" -> number/kg; "Ledgerly" -> name.
    """
    words = span.lower().split()
    if re.search(r"\d:\d\d", span):
        return "time", "time"
    if any(w.strip(",") in MONTHS for w in words):
        return "date", "date"
    if any(c.isdigit() for c in span):
        after = [w for w in words if not any(c.isdigit() for c in w)]
        return "number", after[0] if after else ""
    return "name", "name"


def _distractors(fact: str, spans: dict[str, str], rng: np.random.Generator, n: int) -> list[str]:
    coarse, fine = span_kind(spans[fact])
    others = {f: s for f, s in spans.items() if f != fact and s.lower() != spans[fact].lower()}
    tiers = [[s for s in others.values() if span_kind(s) == (coarse, fine)],
             [s for s in others.values() if span_kind(s)[0] == coarse],
             list(others.values())]
    chosen: list[str] = []
    for tier in tiers:  # same kind and unit first, then same kind, then any
        pool = sorted(set(tier) - set(chosen))
        rng.shuffle(pool)
        chosen += pool[:n - len(chosen)]
    return chosen


def validation_items(train_qa, per_fact: int | None = None, seed: int = 0) -> list[dict]:
    """Multiple-choice items from the training Q&A, for choosing settings (never scoring).

    Each row's question; options: its fact's answer span (`fact_spans`) and the spans of 3
    other facts of the same kind ("450 euros" against "140 euros", "38 euros", ...), which
    are often in the same document, as the held-out distractors often are. `per_fact` keeps
    the first rows of each fact (all by default).
    """
    rows = list(train_qa)
    spans = fact_spans(rows)
    seen: Counter = Counter()
    items = []
    for row in rows:
        seen[row["fact_id"]] += 1
        if per_fact is not None and seen[row["fact_id"]] > per_fact:
            continue
        rng = np.random.default_rng([seed, len(items)])
        options = [spans[row["fact_id"]], *_distractors(row["fact_id"], spans, rng, 3)]
        order = rng.permutation(len(options))
        items.append({"id": row["id"], "fact_id": row["fact_id"], "doc_id": row["doc_id"],
                      "question": row["question"], "options": [options[i] for i in order],
                      "answer": int(np.argmax(order == 0))})
    return items


# ---------------------------------------------------------------------------- stage 1: retrieval

def context_tokens(tokenizer, ranked, chunks, k: int) -> float:
    """Mean length in tokens of the `build_context` of each question's top `k` chunks."""
    return float(np.mean([len(tokenizer(build_context(ids[:k], chunks),
                                        add_special_tokens=False)["input_ids"]) for ids in ranked]))


PART = 64  # questions ranked between two checkpoints (the LM reranker takes minutes a part)


def _rank(retriever, questions, k, checkpoint: Checkpoint, name: str) -> dict:
    """Each question's top-k ids and the ms per question, `PART` questions at a time."""
    ranked, seconds = [], 0.0
    for part, start in enumerate(range(0, len(questions), PART)):
        done = checkpoint.get(f"{name}|part {part}")
        if done is None:
            begin = time.perf_counter()
            done = checkpoint.put(f"{name}|part {part}", {
                "ranked": retriever.retrieve(questions[start:start + PART], k),
                "seconds": time.perf_counter() - begin})
        ranked += done["ranked"]
        seconds += done["seconds"]
    return {"ranked": ranked, "ms": 1000 * seconds / len(questions)}


def retrieval_grid(documents, embedder, train_qa, model, tokenizer, chunkings=None,
                   retrievers=None, ks=KS, log=print,
                   checkpoint: Checkpoint | None = None) -> tuple[list[dict], dict]:
    """Stage 1: validation span recall@k, document recall@k and context tokens per setting.

    Returns (rows, rankings) where rankings[(chunking, retriever)] holds each question's top
    max(ks) chunk ids, for stage 2 to reuse.
    """
    rows_qa, checkpoint = list(train_qa), checkpoint or Checkpoint()
    questions, gold = [r["question"] for r in rows_qa], [r["doc_id"] for r in rows_qa]
    terms = [answer_terms(r["question"], r["answer"]) for r in rows_qa]
    rows, rankings = [], {}
    for chunking in chunkings or list(CHUNKINGS):
        chunks = chunks_from_recipe(documents, recipe_with(chunking=chunking))
        index = DenseIndex.build(chunks, embedder)
        for name in retrievers or list(RETRIEVER_CHOICES):
            if name == "hybrid + LM rerank" and chunking not in LM_RERANK_CHUNKINGS:
                continue
            recipe = recipe_with(chunking=chunking, retriever=name)
            retriever = retriever_from_recipe(documents, embedder, recipe, model, tokenizer, index)
            done = _rank(retriever, questions, max(ks), checkpoint, f"rank|{chunking}|{name}")
            ranked, ms = done["ranked"], done["ms"]
            rankings[(chunking, name)] = ranked
            for k in ks:
                top = [r[:k] for r in ranked]
                rows.append({"chunking": chunking, "retriever": name, "k": k,
                             "span_recall": float(np.mean(span_hits(top, chunks, terms))),
                             "doc_recall": doc_recall_at_k(top, chunks, gold),
                             "context_tokens": context_tokens(tokenizer, ranked, chunks, k),
                             "ms_per_question": ms, "chunks": len(chunks)})
            recalls = " ".join(f"{r['span_recall']:.3f}" for r in rows[-len(ks):])
            log(f"{chunking:>24} · {name:<24} span recall@k {recalls} · {ms:.0f} ms/q")
    return rows, rankings


def best_retrievers(rows: list[dict]) -> list[dict]:
    """For each (chunking, k), the row of the retriever with the best span recall (ties: the
    cheaper retriever, `RETRIEVER_ORDER`)."""
    best: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda r: RETRIEVER_ORDER.index(r["retriever"])):
        key = (row["chunking"], row["k"])
        if key not in best or row["span_recall"] > best[key]["span_recall"]:
            best[key] = row
    return list(best.values())


# ---------------------------------------------------------------------------- stage 2: reading

def reader_grid(model, tokenizer, documents, items, candidates: list[dict], rankings: dict,
                train_questions: list[str], log=print,
                checkpoint: Checkpoint | None = None) -> list[dict]:
    """Stage 2: validation multiple-choice accuracy of the model reading each candidate's
    passages (the rankings of stage 1, looked up by question)."""
    position = {q: i for i, q in enumerate(train_questions)}
    missing = [it["question"] for it in items if it["question"] not in position]
    if missing:
        raise RetrievalError(f"{len(missing)} validation questions were not ranked in stage 1, "
                             f"e.g. {missing[0]!r}; build items from the same training Q&A")
    results, checkpoint = [], checkpoint or Checkpoint()
    for cand in candidates:
        name = f"read|{cand['chunking']}|{cand['retriever']}|{cand['k']}"
        if checkpoint.get(name) is not None:
            results.append(checkpoint.get(name))
            continue
        chunks = chunks_from_recipe(documents, recipe_with(chunking=cand["chunking"]))
        ranked = rankings[(cand["chunking"], cand["retriever"])]
        contexts = [build_context(ranked[position[it["question"]]][:cand["k"]], chunks)
                    for it in items]
        start = time.perf_counter()
        result = knowledge_score(model, tokenizer, items, contexts, system=RAG_SYSTEM)
        seconds = time.perf_counter() - start
        se = float(np.sqrt(result.accuracy * (1 - result.accuracy) / result.n))
        results.append(checkpoint.put(name, {**cand, "mc_accuracy": result.accuracy, "mc_se": se,
                                             "n_items": result.n, "mc_seconds": seconds}))
        log(f"{cand['chunking']:>24} · {cand['retriever']:<24} k={cand['k']} "
            f"accuracy {result.accuracy:.3f} ± {se:.3f} · {seconds:.0f} s")
    return results


def choose(results: list[dict]) -> dict:
    """The rule (`RULE`): fewest context tokens within one standard error of the best accuracy."""
    if not results:
        raise RetrievalError("no reader results to choose from; run stage 2 first")
    best = max(results, key=lambda r: r["mc_accuracy"])
    close = [r for r in results if r["mc_accuracy"] >= best["mc_accuracy"] - best["mc_se"]]
    return min(close, key=lambda r: (r["context_tokens"], -r["mc_accuracy"]))


def gold_doc_coverage(documents, train_qa) -> dict:
    """How many training rows have all their answer terms in their gold document (the
    ceiling of span recall), and the rows that do not."""
    from .retrieval_metrics import contains_answer

    text = {d["id"]: f"{d['title']}: {d['text']}" for d in documents}
    misses = [{"id": r["id"], "question": r["question"], "answer": r["answer"],
               "terms": answer_terms(r["question"], r["answer"])}
              for r in train_qa
              if not all(contains_answer(text[r["doc_id"]], t)
                         for t in answer_terms(r["question"], r["answer"]))]
    n = len(list(train_qa))
    return {"rows": n, "all_terms_in_gold_doc": n - len(misses), "misses": misses}


def choose_settings(documents, embedder, train_qa, model, tokenizer, per_fact: int | None = 1,
                    chunkings=None, retrievers=None, log=print, checkpoint_path=None) -> dict:
    """Both stages and the rule, on the training Q&A: what `tools/choose_rag_settings.py`
    writes. `per_fact`: validation MC items per fact for stage 2 (its cost is the reader's).
    `checkpoint_path`: a JSON file of finished steps, so a stopped run resumes."""
    train_qa, documents = list(train_qa), list(documents)
    start = time.perf_counter()
    checkpoint = Checkpoint(checkpoint_path, inputs_key(train_qa, documents, per_fact))
    grid, rankings = retrieval_grid(documents, embedder, train_qa, model, tokenizer,
                                    chunkings, retrievers, log=log, checkpoint=checkpoint)
    items = validation_items(train_qa, per_fact=per_fact)
    reader = reader_grid(model, tokenizer, documents, items, best_retrievers(grid), rankings,
                         [r["question"] for r in train_qa], log=log, checkpoint=checkpoint)
    chosen = choose(reader)
    return {"rule": RULE, "chosen": chosen, "retrieval_grid": grid, "reader_grid": reader,
            "lm_rerank_chunkings": list(LM_RERANK_CHUNKINGS),
            "validation": {"span_questions": len(train_qa), "mc_items": len(items),
                           "mc_items_per_fact": per_fact},
            "gold_doc_coverage": gold_doc_coverage(documents, train_qa),
            "seconds": time.perf_counter() - start}


def settings_report(path=None) -> dict:
    """The committed reports/rag_settings.json (what `recipes.Rag` was chosen from)."""
    import json
    from pathlib import Path

    from .config import committed_report

    path = Path(path or committed_report("rag_settings.json"))
    if not path.is_file():
        raise RetrievalError(f"{path} does not exist; run tools/choose_rag_settings.py")
    return json.loads(path.read_text())


def grid_table(report: dict, value: str = "span_recall"):
    """The retrieval grid as a table: (chunking, retriever) rows, one column per k."""
    import pandas as pd

    frame = pd.DataFrame(report["retrieval_grid"])
    return frame.pivot_table(index=["chunking", "retriever"], columns="k", values=value,
                             sort=False)
