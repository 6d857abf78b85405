"""Choose the prompt settings (examples and hint phrases) on validation data.

Runs `mclab.prompt_sweeps` with the base model: the company rows' number of training Q&A
(retrieval over them and true few-shot) on multiple-choice items built from the training
Q&A, and the local few-shot shots and the engineered prompt's hint phrases on the local
SFT's validation rewrites. The held-out evals are never read.

    python tools/choose_prompt_settings.py [--out reports/settings/PROMPTS.json]

Full mode writes reports/settings/PROMPTS.json, which `recipes.FewShot` and
`recipes.PromptEngineering` cite (tests/test_recipes.py keeps them in step); quick mode
uses a few items and writes under the runs folder, never over the report.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mclab.config import get_settings, setup  # noqa: E402
from mclab.files import write_json_atomic  # noqa: E402


def main(argv=None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = (settings.runs_dir / "settings" / "PROMPTS.json" if settings.quick
               else settings.reports_dir / "settings" / "PROMPTS.json")
    parser.add_argument("--out", type=Path, default=default)
    args = parser.parse_args(argv)
    setup()
    from mclab import prompt_sweeps as ps
    from mclab.data import load_scenario
    from mclab.models import load_embedder, load_model

    start = time.perf_counter()
    model, tok = load_model()
    embedder = load_embedder()
    company, local = load_scenario("company"), load_scenario("local")
    n = 8 if settings.quick else None
    record = ps.record(
        ps.company_trials(model, tok, embedder, company["train_qa"], n_items=n),
        ps.local_trials(model, tok, embedder, local["rewrites_train"], local["lexicon"],
                        n_items=n))
    record.update(mode=settings.mode, seconds=time.perf_counter() - start,
                  machine=f"{platform.machine()}, {os.cpu_count()} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, record)
    for name, trials in record["trials"].items():
        print(name, [(t.get("k", t.get("shots", t.get("hint_phrases"))), round(t["score"], 3))
                     for t in trials])
    print(f"chosen: {record['choices']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
