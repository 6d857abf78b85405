"""Choose 03's forgetting setting on validation texts (never the held-out evals).

Trains `recipes.CPT.forgetting` on dermatology text with the last training paragraphs held
back (`pretraining.medical_split`), at the learning rates given, and records medical and
general perplexity every two steps on validation texts: the held-back paragraphs, and a few
company documents (text from outside dermatology that no eval uses for general
perplexity). The last rate also runs with replay. Writes reports/forgetting_sweep.json.

    PYTHONPATH=. python tools/forgetting_sweep.py [lr ...]
"""

from __future__ import annotations

import gc
import json
import sys
import time

from mclab import recipes
from mclab.config import get_settings, setup
from mclab.curves import LiveCurves
from mclab.data import load_scenario
from mclab.models import load_model
from mclab.pretraining import (generate_replay, medical_corpus, medical_split, mix_replay,
                               pieces, train_cpt)

N_GENERAL_VAL = 4  # company documents used as general validation


def validation_sets(medical, company):
    """Probe texts (the held-back dermatology paragraphs of `medical_split`, a few company
    documents) and the dermatology training prose that is left."""
    left, held = medical_split(medical)
    general = [f"{d['title']}. {d['text']}" for d in list(company["documents"])[:N_GENERAL_VAL]]
    return {"medical (val)": held, "general (val)": general}, left["train_prose"]


def main(lrs):
    settings = setup()
    cpt = recipes.CPT
    medical, company = load_scenario("medical"), load_scenario("company")
    model, tokenizer = load_model()
    probes, train_prose = validation_sets(medical, company)
    corpus = pieces(medical_corpus({**medical, "train_prose": train_prose}), tokenizer,
                    cpt.training.max_length)
    replay = generate_replay(model, tokenizer, n=cpt.replay_texts.get(),
                             max_new_tokens=cpt.replay_tokens.get())
    del model
    runs = {}
    plan = [(f"medical lr={lr:g}", lr, corpus) for lr in lrs]
    plan += [(f"medical + replay lr={lr:g}", lr, mix_replay(corpus, replay, cpt.replay_ratio,
                                                             seed=settings.seed))
             for lr in lrs[-1:]]
    for name, lr, texts in plan:
        model, _ = load_model()
        curves = LiveCurves(probes=probes, tokenizer=tokenizer, probe_every=2, live=False)
        start = time.perf_counter()
        train_cpt(model, tokenizer, texts, cpt.forgetting.config("sweep", learning_rate=lr,
                                                                  save=False),
                  callbacks=[curves])
        runs[name] = {"rows": curves.rows, "seconds": time.perf_counter() - start,
                      "probe_seconds": curves.probe_seconds}
        first, last = curves.rows[0], [r for r in curves.rows if "ppl/general (val)" in r][-1]
        print(name, {k: (round(first[k], 2), round(last[k], 2)) for k in first if "ppl" in k},
              f"{runs[name]['seconds']:.0f} s", flush=True)
        del model, curves
        gc.collect()
    out = get_settings().reports_dir / "forgetting_sweep.json"
    out.write_text(json.dumps({"mode": settings.mode, "runs": runs}, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main([float(a) for a in sys.argv[1:]] or [2e-4, 1e-3, 3e-3])
