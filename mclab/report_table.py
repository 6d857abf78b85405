"""The report's table: its columns, the rows written so far, the ensemble row, and the
files `comparison.json`, `comparison.md` and `quality_vs_cost.png` (and reading them back).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import recipes
from .config import committed_report, get_settings
from .files import atomic_path, write_json_atomic, write_text_atomic

# One row per method: these columns, documented in the README ("What `make report` writes").
COLUMNS = {
    "method": "name of the method",
    "family": "branch of the taxonomy (prompting, retrieval, continued pre-training, ...)",
    "trained_on": "the scenario whose data changed the model or prompt ('-' for the base)",
    "company_knowledge": "company multiple-choice accuracy (chance 0.25), higher is better",
    "company_knowledge_ci": "95% interval of company_knowledge: percentile bootstrap over the "
                            "questions (2,000 resamples, seed 0)",
    "company_uncovered": "company multiple-choice accuracy on facts that the documents state "
                         "but no training Q&A covers (eval_uncovered_mc.jsonl), higher is better",
    "company_uncovered_ci": "95% interval of company_uncovered (bootstrap, as above)",
    "company_answer_match": "share of company questions whose *written* answer (no options "
                            "shown) contains the correct option's text, higher is better",
    "company_answer_match_ci": "95% interval of company_answer_match (bootstrap, as above)",
    "company_answer_f1": "token F1 of the written answers against the training answers of "
                         "the same fact (best of three), higher is better",
    "company_answer_f1_ci": "95% interval of company_answer_f1 (bootstrap over the questions)",
    "false_abstain": "share of those answerable company questions the method declined "
                     "(\"I don't know\"), lower is better",
    "false_abstain_ci": "95% interval of false_abstain (bootstrap, as above)",
    "abstain_unanswerable": "share of questions the knowledge base cannot answer "
                            "(eval_unanswerable.jsonl) that the method declined, higher is "
                            "better; the rest are invented answers",
    "abstain_unanswerable_ci": "95% interval of abstain_unanswerable (bootstrap, as above)",
    "answers_supported": "RAG only: share of company questions whose retrieved passages "
                         "contain the correct option's text (an answer can be faithful to them)",
    "answers_supported_ci": "95% interval of answers_supported (bootstrap over the questions)",
    "medical_perplexity": "perplexity on held-out dermatology prose, lower is better; "
                          "null where the weights are the base's (same as the base row)",
    "medical_perplexity_ci": "95% interval of medical_perplexity: percentile bootstrap over "
                             "the held-out texts (total log-likelihood / total tokens)",
    "medical_knowledge": "medical term multiple-choice accuracy (a reworded definition -> "
                         "its term, chance 0.25), higher is better; null where not scored",
    "medical_knowledge_ci": "95% interval of medical_knowledge (bootstrap over the questions)",
    "locality": "local-English rewrite score, higher is better: mean over the sentences of "
                "(a local phrase replaced words of the sentence: swap) x (meaning kept); "
                "null where the method has no rewrite variant",
    "locality_ci": "95% interval of locality: percentile bootstrap over the sentences",
    "style_rate": "share of rewrites that use a phrase of the local lexicon the sentence lacks",
    "style_rate_ci": "95% interval of style_rate: percentile bootstrap over the sentences",
    "swap_rate": "share of rewrites where such a phrase stands in for words of the sentence "
                 "(some word of the sentence is gone, and the phrase read as its gloss brings "
                 "the rewrite closer to the sentence than leaving it out): only these earn "
                 "credit",
    "swap_rate_ci": "95% interval of swap_rate (bootstrap over the sentences)",
    "meaning": "meaning kept: cosine of the rewrite (local phrases read as their glosses) to "
               "the neutral sentence, rescaled so an unrelated sentence scores 0 and the "
               "sentence itself 1",
    "meaning_ci": "95% interval of meaning (bootstrap over the sentences)",
    "seeds": "training seeds behind the row (MCLAB_SEED; `report --seeds N`): with more than "
             "one, each score is the mean over the seeds, intervals and paired tests use the "
             "per-item mean over the seeds, and costs are the first seed's",
    "company_knowledge_seed_range": "min and max of company_knowledge over the seeds",
    "company_uncovered_seed_range": "min and max of company_uncovered over the seeds",
    "company_answer_match_seed_range": "min and max of company_answer_match over the seeds",
    "medical_knowledge_seed_range": "min and max of medical_knowledge over the seeds",
    "locality_seed_range": "min and max of locality over the seeds",
    "medical_perplexity_seed_range": "min and max of medical_perplexity over the seeds",
    "trainable_params": "parameters the method trained (0: none)",
    "train_seconds": "wall seconds of training (0: none)",
    "peak_memory_mb": "peak resident memory of the whole method's process, MB",
    "ms_per_answer": "milliseconds per company question (retrieval and longer prompts "
                     "included): the median of the timing pass's rounds (reports/timing.json: "
                     "the same questions for every method, a warm-up, interleaved rounds); "
                     "null where the pass was not clean, with the reason there; for the "
                     "ensemble, the sum of its members' (they answer one after another)",
    "ms_per_answer_range": "min and max of ms_per_answer over the timing pass's rounds (the "
                           "ensemble: the sums of its members' min and max)",
    "storage_mb": "disk the method adds beside the base model, MB",
}


# Rows that bound the locality score instead of being methods (scorecard.reference_rewrites):
# they sit under "references" in comparison.json, never among the methods' rows, so no
# choice of a best method, paired verdict or ensemble can pick them up.
REFERENCES = ("copy the sentence", 'copy + ", mate"', "reference rewrites (ceiling)")


class ReportError(ValueError):
    """A method name or an output folder the report cannot use."""


RAG_NAME = recipes.RAG.method_name  # "RAG (hybrid, k=2)": the row carries its settings
ENSEMBLE = (RAG_NAME, "full SFT", "LoRA r=16")  # averaged option probabilities
ENSEMBLE_NAME = "ensemble (RAG + SFT + LoRA)"
# retrieval over the training Q&A: at few-shot's k, and at RAG's (the same-k comparison)
QA_RETRIEVAL = recipes.FEW_SHOT.retrieval_name()
QA_RETRIEVAL_SAME_K = recipes.FEW_SHOT.retrieval_name(recipes.RAG.k)
# the multiple-choice evals a row may carry per question: row key prefix -> table column
KNOWLEDGE_EVALS = (("company", "company_knowledge"), ("uncovered", "company_uncovered"),
                   ("medical", "medical_knowledge"))
# CPT before SFT on the medical scenario: the pipeline against each of its halves
MEDICAL_SFT, CPT_THEN_SFT, MEDICAL_CPT = ("medical SFT", "CPT + replay, then medical SFT",
                                          "CPT + replay")
MEDICAL_PAIRS = ((CPT_THEN_SFT, MEDICAL_SFT), (CPT_THEN_SFT, MEDICAL_CPT),
                 (MEDICAL_SFT, MEDICAL_CPT))
# per-question yes/no results of the written answers: row key -> table column
ANSWER_EVALS = (("answer_match_items", "company_answer_match"),
                ("unanswerable_abstained", "abstain_unanswerable"))
# shares the table gives with an interval but no verdict (each a part of a score that has
# one, or a side measure): the row's per-item field, and its column
ITEM_SHARES = (("answer_f1_items", "company_answer_f1"), ("answer_abstained", "false_abstain"),
               ("style_items", "style_rate"), ("swap_items", "swap_rate"),
               ("meaning_items", "meaning"), ("answers_supported_items", "answers_supported"))


def share_items(row: dict, key: str) -> list | None:
    """An ITEM_SHARES field of a row: its per-item values, or None. RAG's passages that hold
    the answer are read from its written answers (`rag_answers`, one per company question)."""
    if key == "answers_supported_items" and row.get("rag_answers"):
        return [a["context_has_answer"] for a in row["rag_answers"]]
    return row.get(key)


# the scenario each metric measures: a method is "best for X" only among those made for X
# (trained on X's data) and those that train nothing ("-")
SCENARIO = {"company_knowledge": "company", "company_uncovered": "company",
            "company_answer_match": "company", "abstain_unanswerable": "company",
            "medical_perplexity": "medical", "medical_knowledge": "medical", "locality": "local"}


def made_for(trained_on, metric: str) -> bool:
    """Whether a row trained on `trained_on` competes for `metric`'s "best for X"."""
    return str(trained_on) == "-" or SCENARIO[metric] in str(trained_on)


def leader_pair(values: dict, trained_on: dict, metric: str,
                higher_is_better: bool = True) -> tuple[str, str] | None:
    """The two methods made for `metric`'s scenario with the best `values` (the best first,
    the earlier row on a tie): the pair a "highest score" claim rests on, which the report
    tests like its other comparisons. None with fewer than two."""
    eligible = [n for n, v in values.items() if v is not None and made_for(trained_on[n], metric)]
    ranked = sorted(eligible, key=values.get, reverse=higher_is_better)
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


def _with_leaders(pairs: list, lead) -> list:
    if lead and lead not in pairs and lead[::-1] not in pairs:
        return [*pairs, lead]
    return pairs


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def load_row(out: Path, name: str) -> dict | None:
    path = Path(out) / "rows" / f"{slug(name)}.json"
    if not path.exists():
        return None
    row = json.loads(path.read_text())
    return row if row.get("mode") == get_settings().mode else None


def ensemble_row(rows: dict, seed_rows: dict | None = None) -> dict | None:
    """Average the option probabilities of the ENSEMBLE members, if all have run.

    `rows` are the members' first-seed rows (or rows combined over seeds, which keep the
    first seed's probabilities). Where every trained member also ran extra seeds
    (`seed_rows`: method -> its extra seeds' rows), seed s's ensemble averages seed s's
    members (a member that does not train, RAG, is the same every time), and the row is
    those ensembles combined like any seeded row (`mclab.seeds.combine`): compared with a
    member's mean over seeds, the ensemble is a mean over the same seeds, not one draw."""
    from .seeds import combine, is_trained

    if not all(n in rows for n in ENSEMBLE):
        return None
    first = _ensemble_of({n: rows[n] for n in ENSEMBLE})
    trained = [n for n in ENSEMBLE if is_trained(rows[n])]
    seed_rows = seed_rows or {}
    by_seed = {n: {r["seed"]: r for r in seed_rows.get(n, [])} for n in trained}
    common = sorted(set.intersection(*(set(s) for s in by_seed.values()))) if trained else []
    if not common:
        return first
    first["seed"] = rows[trained[0]].get("seed", 0)
    extra = [{**_ensemble_of({n: by_seed[n][s] if n in by_seed else rows[n]
                              for n in ENSEMBLE}), "seed": s} for s in common]
    return combine(first, extra)


def _ensemble_of(members: dict) -> dict:
    from .ensembling import average_probs

    combined = average_probs({n: row_result(r) for n, r in members.items()})
    parts = list(members.values())
    # the facts no training Q&A covers, where every member was scored on them
    uncovered = {n: row_result(r, "uncovered") for n, r in members.items()}
    on_uncovered = None if None in uncovered.values() else average_probs(uncovered)
    return {"method": ENSEMBLE_NAME, "family": "ensembling", "trained_on": "company",
            "company_knowledge": combined.accuracy, "medical_perplexity": None,
            "locality": None, "company_answers": combined.answers,
            "company_probs": [p.tolist() for p in combined.probs],
            **({"company_uncovered": on_uncovered.accuracy,
                "uncovered_answers": on_uncovered.answers,
                "uncovered_probs": [p.tolist() for p in on_uncovered.probs]}
               if on_uncovered is not None else {}),
            "trainable_params": sum(r["trainable_params"] for r in parts),
            "train_seconds": sum(r["train_seconds"] for r in parts),
            # members answer one after another, so the largest member's memory is the peak
            "peak_memory_mb": max(r["peak_memory_mb"] for r in parts),
            # members answer one after another: their times add up (null if one is null)
            "ms_per_answer": (None if any(r["ms_per_answer"] is None for r in parts)
                              else sum(r["ms_per_answer"] for r in parts)),
            "ms_per_answer_range": (None if any(not r.get("ms_per_answer_range")
                                                for r in parts) else
                                    [sum(r["ms_per_answer_range"][i] for r in parts)
                                     for i in (0, 1)]),
            "storage_mb": sum(r["storage_mb"] for r in parts),
            "mode": parts[0]["mode"]}


def row_result(row: dict, key: str = "company"):
    """The `KnowledgeResult` a row kept for `key`'s eval (its option probabilities and the
    right answers), or None where the method was not scored on it."""
    from .evaluation import KnowledgeResult

    if not row.get(f"{key}_probs"):
        return None
    probs = [np.array(p) for p in row[f"{key}_probs"]]
    answers = row[f"{key}_answers"]
    predictions = [int(np.argmax(p)) for p in probs]
    accuracy = float(np.mean([p == a for p, a in zip(predictions, answers)]))
    return KnowledgeResult(accuracy, predictions, answers, probs)


def correct_items(row: dict, key: str = "company") -> np.ndarray | None:
    """Per question of `key`'s eval, whether the row's method answered it right (None: not
    scored)."""
    result = row_result(row, key)
    return None if result is None else np.array(result.correct)


def yes_no_items(row: dict, key: str) -> np.ndarray | None:
    """Per question, a multiple-choice eval's correct answers (`key` a KNOWLEDGE_EVALS prefix)
    or a written-answer result (`key` an ANSWER_EVALS field); None where not scored."""
    if key in row.get("seed_items", {}):  # several training seeds: the share right per item
        return np.array(row["seed_items"][key], dtype=float)
    if key in dict(ANSWER_EVALS):
        return np.array(row[key], dtype=bool) if row.get(key) else None
    return correct_items(row, key)


def comparisons(names: list[str], accuracy: dict[str, float]) -> list[tuple[str, str]]:
    """The pairs the course states verdicts on: every method against the base, then the
    rules of thumb (LoRA vs full SFT, paraphrases for SFT and for CPT, RAG vs fine-tuning,
    retrieval over training Q&A vs RAG at few-shot's k and at RAG's own, ensemble vs its best
    member), each as (challenger, reference) when both rows exist."""
    pairs = [(n, "base") for n in names if n != "base"]
    members = [m for m in ENSEMBLE if m in accuracy]
    if members:
        pairs.append((ENSEMBLE_NAME, max(members, key=accuracy.get)))
    pairs += [("LoRA r=16", "full SFT"), ("full SFT, 3 paraphrases", "full SFT"),
              ("CPT documents + paraphrases", "CPT documents"),
              (RAG_NAME, "full SFT"), (RAG_NAME, "CPT documents + paraphrases"),
              (QA_RETRIEVAL, RAG_NAME), (QA_RETRIEVAL_SAME_K, RAG_NAME),
              ("few-shot (4 other facts)", "prompt engineering"), *MEDICAL_PAIRS]
    return list(dict.fromkeys((a, b) for a, b in pairs if a in accuracy and b in accuracy))


def paired_verdicts(rows: list[dict]) -> list[dict]:
    """Every stated comparison as a paired test on the same items: exact McNemar for the
    company accuracies, paired bootstrap for locality (sentence by sentence), and for an
    accuracy where a row has several training seeds (per item, the share of seeds right:
    not a yes/no, so not McNemar). For each metric, also the two highest rows made for its
    scenario (`leader_pair`), which notebook 08's "highest score" sentence needs."""
    from .stats import mcnemar_exact, paired_bootstrap, paired_perplexity, verdict

    def record(a, b, metric, name, test, **counts):
        out.append({"a": a, "b": b, "metric": metric, "test": name, "n": test.n, **counts,
                    "p_value": test.p_value, "difference": test.difference.estimate,
                    "difference_ci": [test.difference.low, test.difference.high],
                    "verdict": verdict(test, names=(a, b))})

    out = []
    trained_on = {r["method"]: r.get("trained_on", "") for r in rows}
    for key, metric in KNOWLEDGE_EVALS + ANSWER_EVALS:
        correct = {r["method"]: c for r in rows if (c := yes_no_items(r, key)) is not None}
        accuracy = {name: float(c.mean()) for name, c in correct.items()}
        pairs = _with_leaders(comparisons(list(correct), accuracy),
                              leader_pair(accuracy, trained_on, metric))
        for a, b in pairs:
            if correct[a].dtype == bool and correct[b].dtype == bool:
                test = mcnemar_exact(correct[a], correct[b])
                record(a, b, metric, "exact McNemar", test, a_only=test.b, b_only=test.c)
            else:
                record(a, b, metric, "paired bootstrap (per item, mean over seeds)",
                       paired_bootstrap(correct[a].astype(float), correct[b].astype(float)))
    ppl = {r["method"]: (np.array(r["medical_nll"]), np.array(r["medical_tokens"]))
           for r in rows if r.get("medical_nll")}
    perplexity = {r["method"]: r.get("medical_perplexity") for r in rows if r["method"] in ppl}
    pairs = [(n, "base") for n in ppl if n != "base"] + list(MEDICAL_PAIRS)
    for a, b in _with_leaders(pairs, leader_pair(perplexity, trained_on, "medical_perplexity",
                                                 higher_is_better=False)):
        if a in ppl and b in ppl:  # lower is better: a negative difference favours a
            test = paired_perplexity(ppl[a], ppl[b])
            out.append({"a": a, "b": b, "metric": "medical_perplexity",
                        "test": "paired bootstrap", "n": test.n, "p_value": test.p_value,
                        "difference": test.difference.estimate,
                        "difference_ci": [test.difference.low, test.difference.high],
                        "verdict": verdict(test, names=(a, b), higher_is_better=False)})
    local = {r["method"]: np.array(r["locality_items"]) for r in rows if r.get("locality_items")}
    pairs = []
    for a in local:
        for b in [m for m in ("base", "local SFT (LoRA)") if m in local and m != a]:
            if b == "local SFT (LoRA)" and not a.startswith("SFT +"):
                continue  # RL rows are compared with the SFT model they start from
            pairs.append((a, b))
    score = {r["method"]: r.get("locality") for r in rows if r["method"] in local}
    for a, b in _with_leaders(pairs, leader_pair(score, trained_on, "locality")):
        record(a, b, "locality", "paired bootstrap", paired_bootstrap(local[a], local[b]))
    return out


def with_intervals(row: dict) -> dict:
    from .stats import bootstrap_ci, perplexity_ci

    row = dict(row)
    for key, metric in KNOWLEDGE_EVALS + ANSWER_EVALS:
        if (correct := yes_no_items(row, key)) is not None:
            ci = bootstrap_ci(correct.astype(float))
            row[f"{metric}_ci"] = [ci.low, ci.high]
    if row.get("medical_nll"):
        ci = perplexity_ci(np.array(row["medical_nll"]), np.array(row["medical_tokens"]))
        row["medical_perplexity_ci"] = [ci.low, ci.high]
    if row.get("locality_items"):
        ci = bootstrap_ci(np.array(row["locality_items"]))
        row["locality_ci"] = [ci.low, ci.high]
    for key, column in ITEM_SHARES:
        if len(row.get("seeds") or []) > 1 and key not in row.get("seed_items", {}):
            continue  # a seed kept no per-item values: the column is a mean of the seeds'
        items = row.get("seed_items", {}).get(key, share_items(row, key))
        if items and row.get(column) is not None:
            items = np.array(items, dtype=float)
            items = items[~np.isnan(items)]  # answer F1: a fact with no reference answer
            if len(items):
                ci = bootstrap_ci(items)
                row[f"{column}_ci"] = [ci.low, ci.high]
    return row


def course_locality(sets: dict, embedder=None):
    """`score(outputs, eval_rows)`: the course's locality score against the neutral sources."""
    from .evaluation import locality_score

    if embedder is None:
        from .models import load_embedder

        embedder = load_embedder()

    def score(outputs, rows):
        return locality_score(outputs, list(rows["neutral"]), sets["lexicon"], embedder)

    return score


def reference_rows(score=None) -> list[dict]:
    """The REFERENCES as report rows: locality columns only, family "reference", no costs."""
    from .scorecard import eval_sets, locality_columns, reference_rewrites

    sets = eval_sets()
    score = score or course_locality(sets)
    return [{"method": name, "family": "reference", "trained_on": "-",
             **locality_columns(score(outputs, sets["local_eval"])), "local_outputs": outputs,
             "mode": get_settings().mode}
            for name, outputs in reference_rewrites(sets["local_eval"]).items()]


def write_reference_rows(out: Path, score=None) -> None:
    for row in reference_rows(score):
        write_json_atomic(Path(out) / "rows" / f"{slug(row['method'])}.json", row)


def rescore_locality(out: Path, score=None) -> list[str]:
    """Recompute the locality columns of every row of this mode under `out`/rows (and of its
    extra seeds' rows) from the rewrites it kept (no method reruns) and rewrite the
    reference rows; returns the methods.

    `score(outputs, eval_rows)` gives a result with score, style_rate, swap_rate, meaning
    and item_scores; by default the course's (`course_locality`).
    """
    from .scorecard import eval_sets, locality_columns

    sets = eval_sets()
    score = score or course_locality(sets)
    done = []
    rows_dir = Path(out) / "rows"
    for path in sorted(rows_dir.glob("*.json")) + sorted(rows_dir.glob("seeds/*.json")):
        row = json.loads(path.read_text())
        if (row.get("mode") != get_settings().mode or not row.get("local_outputs")
                or row.get("family") == "reference"):
            continue
        if len(row["local_outputs"]) != len(sets["local_eval"]):
            raise ReportError(f"{path.name} kept {len(row['local_outputs'])} rewrites, the "
                              f"eval has {len(sets['local_eval'])}: rerun that method")
        row.update(locality_columns(score(row["local_outputs"], sets["local_eval"])))
        write_json_atomic(path, row)
        if path.parent == rows_dir:  # an extra seed's row is rescored, not listed again
            done.append(row["method"])
    write_reference_rows(out, score)
    return done


def load_timing(out: Path) -> dict | None:
    """The timing pass of this mode (`mclab.timing`, reports/timing.json), if it ran."""
    path = Path(out) / "timing.json"
    if not path.exists():
        return None
    timing = json.loads(path.read_text())
    return timing if timing.get("mode") == get_settings().mode else None


def write_report(out: Path, provenance: dict | None = None) -> dict:
    """comparison.json, comparison.md and quality_vs_cost.png from the finished rows.

    `provenance` (generated, cpus, threads) keeps when and where the methods ran, for a
    report rewritten from stored rows (`rescore_locality`) rather than from a new run.
    """
    out = Path(out)
    from .methods import METHODS
    from .seeds import combine, load_seed_rows
    from .timing import apply_timing

    timing = load_timing(out)
    mode = get_settings().mode
    extra = {m.name: load_seed_rows(out, slug(m.name), mode) for m in METHODS}
    done = {m.name: combine(r, extra[m.name]) for m in METHODS if (r := load_row(out, m.name))}
    done = {r["method"]: r for r in apply_timing(list(done.values()), timing)}
    rows = list(done.values())
    if (ens := ensemble_row(done, extra)) is not None:
        rows.append(ens)
    rows = [with_intervals(r) for r in rows]
    table = [{col: r.get(col) for col in COLUMNS} for r in rows]
    references = [with_intervals(r) for name in REFERENCES if (r := load_row(out, name))]
    references = [{col: r.get(col) for col in COLUMNS} for r in references]
    settings = get_settings()
    report = {"mode": settings.mode, "generated": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "cpus": os.cpu_count(), "threads": settings.threads,
        **(provenance or {}),
        **({"timing": {k: v for k, v in timing.items() if k != "methods"}} if timing else {}),
        "company_items": max((len(r.get("company_probs", [])) for r in rows), default=0),
        "columns": COLUMNS, "rows": table, "references": references,
        "verdicts": paired_verdicts(rows)}
    write_json_atomic(out / "comparison.json", report)
    write_text_atomic(out / "comparison.md", markdown_table(report))
    if table:
        from .plotting import plot_quality_vs_cost

        fig = plot_quality_vs_cost(table, references=references)
        with atomic_path(out / "quality_vs_cost.png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        import matplotlib.pyplot as plt

        plt.close(fig)
    return report


SHARES = ("company_knowledge", "company_uncovered", "medical_knowledge", "company_answer_match", "company_answer_f1",
          "false_abstain", "abstain_unanswerable", "answers_supported", "locality",
          "style_rate", "swap_rate", "meaning")


def rewrite_with_new_locality(out: Path, score=None) -> dict:
    """Rescore the locality of the stored rows (`rescore_locality`) and rewrite the report,
    keeping when and where the methods ran: nothing but the locality columns is measured."""
    out = Path(out)
    previous = out / "comparison.json"
    provenance = {k: v for k, v in json.loads(previous.read_text()).items()
                  if k in ("generated", "cpus", "threads")} if previous.exists() else {}
    rescore_locality(out, score)
    provenance["locality_rescored"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return write_report(out, provenance)


def _fmt(value, col: str) -> str:
    if value is None:
        return "-"
    if col.endswith("_ci"):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    if col.endswith("_range"):
        spec = ".3f" if col.removesuffix("_seed_range") in SHARES else ",.1f"
        return f"[{value[0]:{spec}}, {value[1]:{spec}}]"
    if col == "seeds":
        return ", ".join(map(str, value))
    if col in ("trainable_params",):
        return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}" if col in SHARES else f"{value:,.1f}"
    return str(value)


def markdown_table(report: dict) -> str:
    cols = list(report["columns"])
    lines = [f"# Every method on the same evals ({report['mode']} mode, {report['cpus']} CPUs, "
             f"{report['generated']})", ""]
    if report.get("locality_rescored"):
        lines += [f"Locality columns rescored from the stored rewrites on "
                  f"{report['locality_rescored']} (`python -m mclab report --rescore-locality`).",
                  ""]
    if report.get("timing"):
        t = report["timing"]
        lines += [f"`ms_per_answer`: one timing pass on {t['date']} ({t['machine']}, "
                  f"{t['threads']} threads): the same {t['items']} company questions for every "
                  f"method, {t['warm_up_rounds']} warm-up round and {t['repeats']} interleaved "
                  f"rounds, the median with its range; load average "
                  f"{t['load_average_before'][0]:.2f} before and "
                  f"{t['load_average_after'][0]:.2f} after (reports/timing.json).", ""]
    else:
        lines += ["`ms_per_answer`: each method's own run, not a dedicated timing pass: not "
                  "comparable between rows (`python -m mclab report --timing`).", ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c), c) for c in cols) + " |" for r in report["rows"]]
    if report.get("references"):
        local = ["method", "locality", "locality_ci", "style_rate", "swap_rate", "meaning"]
        lines += ["", "Reference rows for the locality score (not methods: two ways to game "
                      "it and its ceiling, the hand-written reference rewrites):", "",
                  "| " + " | ".join(local) + " |", "|" + "---|" * len(local)]
        lines += ["| " + " | ".join(_fmt(r.get(c), c) for c in local) + " |"
                  for r in report["references"]]
    if report.get("verdicts"):
        lines += ["", "Paired verdicts on the same items (alpha 0.05; exact McNemar for "
                      "accuracies, paired bootstrap for locality, perplexity and the "
                      "accuracies of rows with several training seeds, per item the share "
                      "of seeds right):", ""]
        lines += [f"- {v['metric']}: {v['verdict']}" for v in report["verdicts"]]
    lines += ["", "Columns:", ""] + [f"- `{c}`: {d}" for c, d in report["columns"].items()]
    return "\n".join(lines) + "\n"


def load_report(path=None) -> dict:
    """A written comparison.json (by default the committed full-mode one in reports/)."""
    path = Path(path or committed_report())
    if not path.exists():
        raise ReportError(f"no report at {path}; run `make report` (hours of CPU: README) or "
                          "`python -m mclab report --only base`")
    return json.loads(path.read_text())


def frame(report: dict):
    """The report's rows as a pandas DataFrame indexed by method."""
    import pandas as pd

    return pd.DataFrame(report["rows"]).set_index("method")
