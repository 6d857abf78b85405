"""Choose RAG's abstention rule on validation questions and record it.

Answers the validation questions (one training question per fact, and
`val_unanswerable.jsonl`) with the RAG recipe's retriever, without abstaining, then picks the
rule of `mclab.rag_answers.choose_abstention` (the largest gap between abstention on
unanswerable and on answerable questions, among rules that abstain on at most 10% of the
answerable ones). Writes `reports/abstention.json`; copy the chosen values
into `recipes.Rag` (`tests/test_answers.py` checks that they agree). Held-out evals are not
read.

    python tools/choose_abstention.py [--out reports/abstention.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mclab import recipes  # noqa: E402
from mclab.config import setup  # noqa: E402
from mclab.data import load_scenario  # noqa: E402
from mclab.files import write_json_atomic  # noqa: E402
from mclab.models import load_embedder, load_model  # noqa: E402
from mclab.rag import retriever_from_recipe  # noqa: E402
from mclab.rag_answers import ChunkSimilarity, choose_on_validation  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "reports" / "abstention.json"))
    args = parser.parse_args(argv)
    settings = setup()
    if settings.quick:
        print("error: run in full mode (unset MCLAB_QUICK): the rule is chosen on every "
              "validation question", file=sys.stderr)
        return 2
    start = time.perf_counter()
    model, tokenizer = load_model()
    embedder = load_embedder()
    company = load_scenario("company")
    retriever = retriever_from_recipe(list(company["documents"]), embedder, recipes.RAG,
                                      model, tokenizer)
    rule, grid = choose_on_validation(model, tokenizer, company, retriever, recipes.RAG.k,
                                      ChunkSimilarity(embedder, retriever.chunks))
    record = {"chosen": {"min_similarity": rule.min_similarity, "min_support": rule.min_support},
              "rule": "the largest abstention on val_unanswerable minus false abstention, "
                      "among rules with false abstention <= 0.1 on one training question per "
                      "fact",
              # the retrieval settings the rule was chosen with (tests keep them in step)
              "recipe": {k: v for k, v in dataclasses.asdict(recipes.RAG).items()
                         if k not in ("notebook", "min_similarity", "min_support")},
              "grid": grid, "seconds": round(time.perf_counter() - start, 1)}
    write_json_atomic(Path(args.out), record)
    print(record["chosen"], f"in {record['seconds']} s ->", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
