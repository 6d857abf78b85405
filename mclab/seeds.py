"""More than one training seed for the report's trained rows (issue 13).

One training run is one draw: another seed shuffles the data and initialises the adapters
differently, and on 85 questions that alone can move a score by a few items. With
`python -m mclab report --seeds 3`, every row whose method trains (`trainable_params` > 0)
is run again with `MCLAB_SEED` = seed + 1 and seed + 2, each into
`rows/seeds/<row>.seed-<seed>.json` (resumable, like the rows). The report then combines
them (`combine`):

- each headline score is the **mean over the seeds**, with the per-seed values and their
  min-max (`<metric>_seeds`, `<metric>_seed_range`);
- per item (question, sentence, held-out text) the seeds are averaged first: the share of
  seeds that answered a question right, the mean locality of a sentence, the mean
  log-likelihood of a text. Intervals bootstrap over items of those averages, and a paired
  verdict between rows where one has several seeds is a paired bootstrap over the same items
  (a share is not a yes/no, so exact McNemar no longer applies);
- the shares the table gives without a verdict (`report_table.ITEM_SHARES`: answer F1,
  false abstentions, style rate, swap rate, meaning, answers supported) are averaged item
  by item too, for their intervals; where a seed's row kept no per-item values
  (`MEAN_ONLY`), the column is the mean of the seeds' (each over the same items);
- costs, written answers' texts and option probabilities (the ensemble's members) stay
  those of the first seed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .report_table import ANSWER_EVALS, ITEM_SHARES, KNOWLEDGE_EVALS, correct_items, share_items
from .stats import pooled_perplexity

SEEDS_DIR = "seeds"
# the columns that get a seed range in the table
SEEDED_COLUMNS = ("company_knowledge", "company_uncovered", "medical_knowledge",
                  "company_answer_match", "locality", "medical_perplexity")
# shares over the same items that a row keeps as one number, not per item: their mean over
# the seeds is the share over every seed's items
MEAN_ONLY = ("style_rate", "swap_rate", "meaning", "company_answer_f1", "false_abstain",
             "answers_supported")


def seed_path(out: Path, slug: str, seed: int) -> Path:
    return Path(out) / "rows" / SEEDS_DIR / f"{slug}.seed-{seed}.json"


def load_seed_rows(out: Path, slug: str, mode: str) -> list[dict]:
    """The extra seeds' rows of one method (this mode only), by seed."""
    folder = Path(out) / "rows" / SEEDS_DIR
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{slug}.seed-*.json"))]
    return sorted((r for r in rows if r.get("mode") == mode), key=lambda r: r["seed"])


def is_trained(row: dict) -> bool:
    return bool(row.get("trainable_params"))


def combine(row: dict, extra: list[dict]) -> dict:
    """`row` (the first seed) with the `extra` seeds' results folded in, as the module says.
    Without extra seeds the row is returned as it is."""
    if not extra:
        return row
    runs = [row, *extra]
    seeds = [r.get("seed", 0) for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{row['method']}: the same seed twice among {seeds}")
    out = {**row, "seeds": seeds, "seed_items": {}}

    def fold(column, per_run):
        if any(a is None for a in per_run):
            return  # a part some seed did not score: keep the first seed's alone
        if len({len(a) for a in per_run}) != 1:
            raise ValueError(f"{row['method']}: the seeds scored different numbers of items "
                             f"for {column}")
        stacked = np.vstack(per_run)
        # nan-aware: an answer F1 is NaN for a fact with no reference answer, which the
        # row's own mean skips (AnswerResult.f1_mean)
        out[f"{column}_seeds"] = [float(np.nanmean(a)) for a in per_run]
        out[column] = float(np.nanmean(stacked))
        with warnings.catch_warnings():  # an item NaN in every seed stays NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(stacked, axis=0)

    for key, column in KNOWLEDGE_EVALS:
        correct = [c if (c := correct_items(r, key)) is None else c.astype(float) for r in runs]
        if (mean := fold(column, correct)) is not None:
            out["seed_items"][key] = mean.tolist()
    for key, column in ANSWER_EVALS:
        arrays = [np.array(r[key], dtype=float) if r.get(key) else None for r in runs]
        if (mean := fold(column, arrays)) is not None:
            out["seed_items"][key] = mean.tolist()
    locality = [np.array(r["locality_items"], dtype=float) if r.get("locality_items") else None
                for r in runs]
    if (mean := fold("locality", locality)) is not None:
        out["locality_items"] = mean.tolist()
    if all(r.get("medical_nll") for r in runs):
        nll = np.vstack([np.array(r["medical_nll"], dtype=float) for r in runs])
        tokens = np.array(row["medical_tokens"], dtype=float)
        out["medical_perplexity_seeds"] = [pooled_perplexity(n, tokens) for n in nll]
        out["medical_nll"] = nll.mean(axis=0).tolist()
        out["medical_perplexity"] = pooled_perplexity(nll.mean(axis=0), tokens)
    for key, column in ITEM_SHARES:  # a share with per-item parts: averaged item by item
        arrays = [np.array(items, dtype=float) if (items := share_items(r, key)) else None
                  for r in runs]
        if (mean := fold(column, arrays)) is not None:
            out["seed_items"][key] = mean.tolist()
    for column in MEAN_ONLY:
        values = [r.get(column) for r in runs]
        if f"{column}_seeds" not in out and all(v is not None for v in values):
            out[f"{column}_seeds"] = [float(v) for v in values]
            out[column] = float(np.mean(values))
    for column in SEEDED_COLUMNS:
        if f"{column}_seeds" in out:
            values = out[f"{column}_seeds"]
            out[f"{column}_seed_range"] = [min(values), max(values)]
    return out
