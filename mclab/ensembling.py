"""Combining several customized models' answers: voting and probability averaging.

Members are scored separately on the same multiple-choice items (`KnowledgeResult`s);
combining them needs no more model calls. Weights are fitted on a validation half of
the eval set and reported on the other half, so the ensemble is never tuned on its test.
"""

from __future__ import annotations

import itertools

import numpy as np

from .evaluation import KnowledgeResult


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
