"""Combining several customized models' answers: voting and probability averaging.

Members are scored separately on the same multiple-choice items (`KnowledgeResult`s);
combining them needs no more model calls. Weights are fitted on a validation half of
the eval set and reported on the other half, so the ensemble is never tuned on its test.
`merge_adapters` is the contrast: it mixes LoRA adapters' weights into one model.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from .evaluation import KNOWLEDGE_SYSTEM, KnowledgeResult, knowledge_score


class EnsembleError(ValueError):
    """Members that cannot be combined (different items, bad weights)."""


def _check_members(members: dict[str, KnowledgeResult]) -> list[KnowledgeResult]:
    if len(members) < 2:
        raise EnsembleError(f"an ensemble needs at least 2 members, got {len(members)}")
    results = list(members.values())
    answers = results[0].answers
    for name, result in members.items():
        if result.answers != answers:
            raise EnsembleError(f"member {name!r} was scored on other items; score every "
                                "member on the same list of questions")
    return results


def _normalize(weights, n: int) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise EnsembleError(f"weights must be {n} non-negative numbers, not all zero; got {weights}")
    return w / w.sum()


def _result(probs: list[np.ndarray], answers: list[int]) -> KnowledgeResult:
    preds = [int(np.argmax(p)) for p in probs]
    acc = float(np.mean([p == a for p, a in zip(preds, answers)]))
    return KnowledgeResult(acc, preds, list(answers), probs)


def average_probs(members: dict[str, KnowledgeResult], weights=None) -> KnowledgeResult:
    """Weighted mean of the members' option probabilities, item by item."""
    results = _check_members(members)
    w = _normalize(weights, len(results))
    probs = [sum(wi * r.probs[i] for wi, r in zip(w, results)) for i in range(results[0].n)]
    return _result(probs, results[0].answers)


def majority_vote(members: dict[str, KnowledgeResult], weights=None) -> KnowledgeResult:
    """Each member votes for its answer (weighted); ties go to the highest mean probability."""
    results = _check_members(members)
    w = _normalize(weights, len(results))
    probs = []
    for i in range(results[0].n):
        votes = np.zeros(len(results[0].probs[i]))
        for wi, r in zip(w, results):
            votes[r.predictions[i]] += wi
        mean_prob = np.mean([r.probs[i] for r in results], axis=0)
        probs.append(votes + 1e-6 * mean_prob)  # the tiny term only breaks ties
    return _result([p / p.sum() for p in probs], results[0].answers)


def select(result: KnowledgeResult, indices) -> KnowledgeResult:
    """The same result restricted to some items (e.g. the validation half)."""
    indices = list(indices)
    return _result([result.probs[i] for i in indices], [result.answers[i] for i in indices])


def split_halves(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """A fixed random split of item indices into validation and test halves."""
    order = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return sorted(order[:half].tolist()), sorted(order[half:].tolist())


def fit_weights(members: dict[str, KnowledgeResult], step: float = 0.1,
                combine=average_probs) -> tuple[np.ndarray, float]:
    """Grid search over weights on the simplex; return the best weights and their accuracy.

    Fit on validation items only; ties prefer the most even weights.
    """
    if not 0 < step <= 0.5:
        raise EnsembleError(f"step must be in (0, 0.5], got {step}")
    n = len(_check_members(members))
    ticks = round(1 / step)
    best, best_acc, best_spread = None, -1.0, np.inf
    for combo in itertools.product(range(ticks + 1), repeat=n):
        if sum(combo) != ticks:
            continue
        w = np.array(combo, dtype=float) / ticks
        acc = combine(members, w).accuracy
        spread = float(np.std(w))
        if acc > best_acc + 1e-12 or (abs(acc - best_acc) <= 1e-12 and spread < best_spread):
            best, best_acc, best_spread = w, acc, spread
    return best, best_acc


# ---------------------------------------------------------------- diversity and selection

def oracle_accuracy(members: dict[str, KnowledgeResult]) -> float:
    """Share of items that at least one member gets right: the ceiling of any combination."""
    results = _check_members(members)
    return float(np.mean([any(r.correct[i] for r in results) for i in range(results[0].n)]))


def agreement(members: dict[str, KnowledgeResult]) -> np.ndarray:
    """Share of items on which each pair of members gives the same answer (a matrix)."""
    results = _check_members(members)
    preds = np.array([r.predictions for r in results])
    return (preds[:, None, :] == preds[None, :, :]).mean(axis=2)


def greedy_selection(members: dict[str, KnowledgeResult], combine=average_probs) -> list[str]:
    """Forward selection (Caruana et al., 2004): start from the most accurate member, add
    the member that raises the combined accuracy most, stop when none raises it.

    Run it on validation items. Ties go to the member listed first.
    """
    _check_members(members)
    chosen = [max(members, key=lambda n: members[n].accuracy)]  # max keeps the first of ties
    best = members[chosen[0]].accuracy
    while len(chosen) < len(members):
        scores = {n: combine({m: members[m] for m in chosen + [n]}).accuracy
                  for n in members if n not in chosen}
        name = max(scores, key=scores.get)
        if scores[name] <= best:
            break
        chosen.append(name)
        best = scores[name]
    return chosen


# ---------------------------------------------------------------- comparing on a split

COMBINERS = {"average": average_probs, "vote": majority_vote}


def evaluate_ensembles(members: dict[str, KnowledgeResult], val, test,
                       ms_per_question: dict[str, float] | None = None,
                       step: float = 0.1) -> list[dict]:
    """Every member and every combination, scored on the `test` items.

    The weighted average gets its weights from `fit_weights` on the `val` items only.
    Each row has the validation and test accuracy (and `test_correct`, per test item, for
    paired tests), the weights and the inference cost
    (the sum of the milliseconds per question of the members it runs: all of them, except
    those a fitted weight of 0 drops).
    """
    _check_members(members)
    ms = ms_per_question or {}
    on_val = {n: select(r, val) for n, r in members.items()}
    on_test = {n: select(r, test) for n, r in members.items()}
    names = list(members)
    rows = [{"method": n, "members": 1, "val": on_val[n].accuracy, "test": on_test[n].accuracy,
             "ms / question": ms.get(n, np.nan), "weights": "", "ensemble": False,
             "test_correct": on_test[n].correct}
            for n in names]
    weights, _ = fit_weights(on_val, step)
    for label, combine, w in [("average (plain)", average_probs, None),
                              ("average (weights fit on val)", average_probs, weights),
                              ("majority vote", majority_vote, None)]:
        shown = "" if w is None else ", ".join(f"{n} {x:.1f}" for n, x in zip(names, w))
        used = names if w is None else [n for n, x in zip(names, w) if x > 0]
        on_test_combined = combine(on_test, w)
        rows.append({"method": label, "members": len(used),
                     "val": combine(on_val, w).accuracy, "test": on_test_combined.accuracy,
                     "ms / question": sum(ms.get(n, np.nan) for n in used), "weights": shown,
                     "ensemble": True, "test_correct": on_test_combined.correct})
    return rows


def verdict(rows: list[dict]) -> str:
    """Does the best ensemble beat the best member on the test items? Decided by an exact
    McNemar test on the same questions, so "cannot tell" is a possible answer."""
    from .stats import mcnemar_exact, verdict as paired_verdict

    members = [r for r in rows if not r["ensemble"]]
    ensembles = [r for r in rows if r["ensemble"]]
    best_m = max(members, key=lambda r: r["test"])
    best_e = max(ensembles, key=lambda r: r["test"])
    gap = best_e["test"] - best_m["test"]
    how = "scores above" if gap > 0 else ("ties with" if gap == 0 else "falls short of")
    test = mcnemar_exact(best_e["test_correct"], best_m["test_correct"])
    return (f"The best ensemble here, {best_e['method']} ({best_e['test']:.3f}), {how} the best "
            f"single member, {best_m['method']} ({best_m['test']:.3f}), on the test half "
            f"({gap:+.3f}); paired on the same questions: "
            f"{paired_verdict(test, names=(best_e['method'], best_m['method']))}. It runs "
            f"{best_e['members']} member(s), "
            f"{best_e['ms / question'] / best_m['ms / question']:.1f}x the inference time.")


# ---------------------------------------------------------------- members and merging

def timed_knowledge(model, tokenizer, items, contexts=None, system=None,
                    batch_size: int = 4) -> tuple:
    """A member's knowledge result (with option probabilities) and its ms per question.

    Batches of 4: with retrieved passages in the prompt, 8 pushed the notebook to 2 GB.
    """
    items = list(items)
    start = time.perf_counter()
    result = knowledge_score(model, tokenizer, items, contexts,
                             system=KNOWLEDGE_SYSTEM if system is None else system,
                             batch_size=batch_size)
    return result, 1000 * (time.perf_counter() - start) / len(items)


def rag_contexts(retriever, items, k: int = 2) -> list[str]:
    """The top-`k` retrieved chunks of each question, as the RAG prompt's context."""
    from .rag import build_context

    retrieved = retriever.retrieve([it["question"] for it in items], k)
    return [build_context(ids, retriever.chunks) for ids in retrieved]


def merge_adapters(peft_model, names, weights, merged_name: str = "merged"):
    """Add one adapter whose update is sum_i weights[i] * (update of adapter i), and use it.

    peft's `add_weighted_adapter` with `combination_type="cat"` stacks the adapters'
    low-rank factors, so the merged update is exactly the weighted sum (rank = sum of
    ranks). The result is one model: one forward pass per question, not one per adapter.
    `mclab.merging` has the other combinations (linear, TIES, DARE).
    """
    from .merging import MergeError, MergeSpec, merge

    try:
        return merge(peft_model, names, MergeSpec("cat", tuple(np.atleast_1d(weights))),
                     merged_name)
    except MergeError as err:
        raise EnsembleError(str(err)) from err


# ---------------------------------------------------------------- widget

def panel_numbers(members: dict[str, KnowledgeResult], chosen, weights, test,
                  ms_per_question: dict[str, float], method: str = "average") -> dict:
    """The panel's work: combine the chosen members' cached probabilities on the test items."""
    if method not in COMBINERS:
        raise EnsembleError(f"unknown method {method!r}; choose one of {list(COMBINERS)}")
    chosen = list(chosen)
    if not chosen:
        raise EnsembleError("choose at least one member")
    unknown = [n for n in chosen if n not in members]
    if unknown:
        raise EnsembleError(f"unknown members {unknown}; choose from {list(members)}")
    on_test = {n: select(members[n], test) for n in chosen}
    if len(chosen) == 1:
        acc = on_test[chosen[0]].accuracy
    else:
        acc = COMBINERS[method](on_test, weights).accuracy
    best = max(on_test, key=lambda n: on_test[n].accuracy)
    return {"ensemble": acc, "best member": best, "best member score": on_test[best].accuracy,
            "members": len(chosen), "ms / question": sum(ms_per_question[n] for n in chosen)}


def plot_panel(members: dict[str, KnowledgeResult], numbers: dict, test, ax=None):
    """Bars: every member's test accuracy and the chosen ensemble's, on one axis."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6.5, 3))[1]
    names = list(members) + ["ensemble"]
    values = [select(members[n], test).accuracy for n in members] + [numbers["ensemble"]]
    bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(members))] + ["k"])
    ax.bar_label(bars, fmt="%.2f")
    ax.axhline(numbers["best member score"], ls="--", c="gray", lw=1, label="best chosen member")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("knowledge score (test half)")
    ax.set_title(f"{numbers['members']} member(s), {numbers['ms / question']:.0f} ms / question",
                 fontsize=9)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.legend(fontsize=8, loc="upper left")
    return ax


def ensemble_panel(members: dict[str, KnowledgeResult], ms_per_question: dict[str, float], test):
    """Tick members, set their weights, choose average or vote; redraws at once (no model calls)."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from .widgets import panel

    controls = {}
    for n in members:
        controls[f"use {n}"] = w.Checkbox(value=True, description=n, indent=False)
        controls[f"weight {n}"] = w.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05,
                                                description="weight", continuous_update=False)
    controls["method"] = w.ToggleButtons(options=list(COMBINERS), value="average",
                                         description="combine")

    def compute(method, **knobs):
        chosen = [n for n in members if knobs[f"use {n}"]]
        return panel_numbers(members, chosen, [knobs[f"weight {n}"] for n in chosen], test,
                             ms_per_question, method)

    def render(numbers, _values):
        print(", ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}"
                        for k, v in numbers.items()))
        plot_panel(members, numbers, test)
        plt.show()

    return panel(controls, compute, render,
                 layout=[[f"use {n}", f"weight {n}"] for n in members] + ["method"])
