"""Score the chosen RAG settings on the held-out evals, once, after choosing: only to report.

The settings come from `recipes.RAG` (chosen on the training Q&A by
tools/choose_rag_settings.py); nothing here feeds back into them. Writes
reports/rag_heldout.json:

- answer-span recall@k (k = 1, 2, 4, 8) of each retriever with the chosen chunking, on
  eval_mc (85 items) and eval_uncovered_mc (48);
- RAG multiple-choice accuracy (`rag_knowledge`) at the chosen settings, timed, and the
  previous recipe (60-word windows, hybrid, k=2) on the same items with a paired test;
- the distractor ablation (`mclab.rag_analysis.distractor_ablation`).

    python tools/score_rag_heldout.py [--out reports/rag_heldout.json] [--skip-ablation]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

from mclab import recipes
from mclab.config import get_settings, setup
from mclab.data import load_scenario, subset
from mclab.files import write_json_atomic
from mclab.models import load_embedder, load_model

PREVIOUS = recipes.Rag(chunking="words", chunk_size=60, overlap=20, retriever="hybrid",
                       rerank=None, k=2)  # the recipe before issue 14


def rag_row(model, tokenizer, embedder, documents, items, recipe) -> tuple[dict, list[bool]]:
    from mclab.rag import chunking_label, rag_knowledge, retriever_from_recipe, retriever_label

    retriever = retriever_from_recipe(documents, embedder, recipe, model, tokenizer)
    result = rag_knowledge(model, tokenizer, items, retriever, k=recipe.k)
    row = {"chunking": chunking_label(recipe), "retriever": retriever_label(recipe),
           "k": recipe.k, "items": len(items), "accuracy": result.accuracy,
           "correct": int(sum(result.correct)), "span_recall": result.span_recall,
           "doc_recall": result.recall, "seconds": result.seconds,
           "retrieval_ms_per_question": result.retrieval_ms,
           "context_tokens": result.prompt_tokens}
    print(row)
    return row, result.correct


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = (settings.runs_dir / "rag_heldout-quick.json" if settings.quick
                   else settings.reports_dir / "rag_heldout.json")
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--skip-ablation", action="store_true")
    args = parser.parse_args()

    from mclab.rag import retriever_from_recipe
    from mclab.rag_analysis import distractor_ablation, heldout_span_table
    from mclab.stats import format_p, mcnemar_exact

    setup()
    model, tokenizer = load_model()
    embedder = load_embedder()
    company = load_scenario("company")
    documents = list(company["documents"])
    size = 8 if settings.quick else None
    evals = {name: list(subset(company[name], size)) for name in ("eval_mc", "eval_uncovered_mc")}
    recipe = recipes.RAG
    out = {"recipe": dataclasses.asdict(recipe), "mode": settings.mode,
           "threads": settings.threads, "omp_threads": os.environ.get("OMP_NUM_THREADS")}

    start = time.perf_counter()
    out["span_recall"] = {name: heldout_span_table(documents, embedder, items, recipe,
                                                   model=model, tokenizer=tokenizer)
                          for name, items in evals.items()}
    out["span_recall_seconds"] = time.perf_counter() - start
    print(out["span_recall"])

    out["rag_mc"], correct = {}, {}
    for name, items in evals.items():
        out["rag_mc"][name], correct[name] = rag_row(model, tokenizer, embedder, documents,
                                                     items, recipe)
    out["previous_recipe"], before = rag_row(model, tokenizer, embedder, documents,
                                             evals["eval_mc"], PREVIOUS)
    test = mcnemar_exact(correct["eval_mc"], before)
    out["paired_test_eval_mc"] = {"chosen_only": test.b, "previous_only": test.c,
                                  "p_value": test.p_value, "p": format_p(test.p_value)}

    if not args.skip_ablation:
        retriever = retriever_from_recipe(documents, embedder, recipe, model, tokenizer)
        table = distractor_ablation(model, tokenizer, evals["eval_mc"], documents, retriever,
                                    recipe.k)
        print(table.round(3).to_string())
        out["ablation"] = table.reset_index().to_dict(orient="records")
    write_json_atomic(args.out, out)
    print("->", args.out)


if __name__ == "__main__":
    main()
