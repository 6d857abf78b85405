"""Choose the RAG settings (chunking, retriever, k) on the training Q&A: validation only.

Runs `mclab.rag_tuning.choose_settings`: answer-span recall@k of every chunking x retriever x k
on the training questions, then the model's accuracy on validation multiple-choice items
built from the same Q&A, then the rule. The held-out evals are never read here.

    python tools/choose_rag_settings.py [--per-fact 1] [--out reports/rag_settings.json]

Full mode (the default outside MCLAB_QUICK) uses all 255 training questions and writes
reports/rag_settings.json, which `recipes.Rag` cites; quick mode uses a few questions, two
chunkings and no LM reranking, and writes under the runs folder, never over the report.
Each finished step is kept in .rag_settings-partial.json beside the output: a stopped run
resumes where it was (--fresh starts over); the file goes once the report is written.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from mclab.config import get_settings, setup
from mclab.data import load_scenario, subset
from mclab.files import write_json_atomic
from mclab.models import load_embedder, load_model


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-fact", type=int, default=1,
                        help="validation MC items per fact for the reader stage (of 3)")
    default_out = (settings.runs_dir / "rag_settings-quick.json" if settings.quick
                   else settings.reports_dir / "rag_settings.json")
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the finished steps of an earlier, stopped run")
    args = parser.parse_args()

    from mclab.rag_tuning import choose_settings

    setup()
    start = time.perf_counter()
    model, tokenizer = load_model()
    embedder = load_embedder()
    company = load_scenario("company")
    train_qa = subset(company["train_qa"], 12) if settings.quick else company["train_qa"]
    quick = dict(chunkings=["60 words, overlap 20", "2 sentences, overlap 1"],
                 retrievers=["bm25", "hybrid"]) if settings.quick else {}
    checkpoint = args.out.with_name(f".{args.out.stem}-partial.json")
    if args.fresh:
        checkpoint.unlink(missing_ok=True)
    result = choose_settings(company["documents"], embedder, train_qa, model, tokenizer,
                             per_fact=args.per_fact, checkpoint_path=checkpoint, **quick)
    checkpoint.unlink(missing_ok=True)  # the finished report holds it all
    result["run"] = {"mode": settings.mode, "threads": settings.threads,
                     "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                     "machine": platform.machine(), "cpus": os.cpu_count(),
                     "seconds_total": time.perf_counter() - start}
    write_json_atomic(args.out, result)
    chosen = result["chosen"]
    print(f"chosen: {chosen['chunking']} · {chosen['retriever']} · k={chosen['k']} "
          f"(validation span recall {chosen['span_recall']:.3f}, MC accuracy "
          f"{chosen['mc_accuracy']:.3f} ± {chosen['mc_se']:.3f}, "
          f"{chosen['context_tokens']:.0f} context tokens) -> {args.out}")


if __name__ == "__main__":
    main()
