"""Checks for 07_ensembling."""

import numpy as np

from ..ensembling import average_probs, fit_weights, greedy_selection, majority_vote, select
from ..evaluation import KnowledgeResult
from . import exercise, fail, passed


def _member(probs, answers) -> KnowledgeResult:
    probs = [np.asarray(p, dtype=float) for p in probs]
    preds = [int(np.argmax(p)) for p in probs]
    return KnowledgeResult(float(np.mean([p == a for p, a in zip(preds, answers)])), preds,
                           list(answers), probs)


@exercise("07 easy: one question's weighted average")
def check_weighted_average(func, *, title: str) -> None:
    probs = [np.array([.6, .3, .1]), np.array([.2, .7, .1]), np.array([.1, .1, .8])]
    for weights in ([1, 1, 1], [2, 1, 1], [0, 3, 1]):
        want = np.average(probs, axis=0, weights=weights)
        got = func([p.copy() for p in probs], list(weights))
        got = np.asarray(got, dtype=float) if got is not None else None
        if got is None or got.shape != want.shape:
            fail(title, f"expected {len(want)} probabilities (one per option), got "
                 f"{None if got is None else got.shape}",
                 "return one number per option: the weighted mean over the members")
        if np.allclose(got, np.mean(probs, axis=0)) and not np.allclose(want, got):
            fail(title, f"with weights {weights} you returned the plain mean",
                 "multiply each member's probabilities by its weight")
        if np.allclose(got, sum(w * p for w, p in zip(weights, probs))) and sum(weights) != 1:
            fail(title, f"with weights {weights} the probabilities sum to {got.sum():g}, not 1",
                 "divide by the sum of the weights")
        if not np.allclose(got, want):
            fail(title, f"with weights {weights} you returned {np.round(got, 3)}, "
                 f"not {np.round(want, 3)}", "sum(w_i * p_i) / sum(w_i)")
    return passed(title, "this is what `average_probs` does for every question.")


@exercise("07 medium: choose ensemble weights on the validation half")
def check_weights(weights, members, val, test, *, title: str) -> None:
    n = len(members)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        fail(title, f"expected {n} weights (one per member: {', '.join(members)}), got "
             f"{w.shape[0] if w.ndim == 1 else w.shape}", "one number per member, in order")
    if (w < 0).any():
        fail(title, f"negative weight in {weights}", "weights of an average are >= 0")
    if abs(w.sum() - 1) > 1e-6:
        fail(title, f"the weights sum to {w.sum():g}", "make them sum to 1")
    on_val = {k: select(r, val) for k, r in members.items()}
    on_test = {k: select(r, test) for k, r in members.items()}
    best_val = fit_weights(on_val, 0.1)[1]
    got_val = average_probs(on_val, w).accuracy
    if got_val < best_val - 1e-9:
        best_test = fit_weights(on_test, 0.1)[1]
        val_fit_test = average_probs(on_test, fit_weights(on_val, 0.1)[0]).accuracy
        if average_probs(on_test, w).accuracy >= best_test - 1e-9 > val_fit_test - 1e-9:
            fail(title, f"these weights are the best on the TEST half (validation {got_val:.3f})",
                 "fit on `val` only: the test half must stay unseen, or its score is no "
                 "longer an honest estimate")
        fail(title, f"validation accuracy {got_val:.3f} with these weights; a 0.1 grid reaches "
             f"{best_val:.3f}", "try every pair (w, 1 - w) for w = 0, 0.1, ..., 1 on the "
             "validation half and keep the best")
    test_acc = average_probs(on_test, w).accuracy
    best_member = max(r.accuracy for r in on_test.values())
    return passed(title, f"validation {got_val:.3f}; on the test half {test_acc:.3f} against "
                  f"{best_member:.3f} for the better member alone.")


def _selection_cases():
    answers = [0, 0, 0, 0]
    # a: 3/4; b: 2/4 but right where a is wrong; c: 2/4, the same mistakes as a
    a = _member([[.9, .1], [.8, .2], [.7, .3], [.45, .55]], answers)
    b = _member([[.3, .7], [.4, .6], [.9, .1], [.9, .1]], answers)
    c = _member([[.7, .3], [.2, .8], [.6, .4], [.2, .8]], answers)
    worse = _member([[.1, .9], [.1, .9], [.1, .9], [.1, .9]], answers)
    return [({"c": c, "a": a, "b": b}, "hand-made members c, a, b: b fixes a's mistake"),
            ({"a": a, "worse": worse}, "hand-made members a, worse: adding worse only hurts"),
            ({"a": a, "c": c, "b": b, "worse": worse}, "hand-made members a, c, b, worse")]


@exercise("07 hard: greedy ensemble selection")
def check_selection(func, members=None, *, title: str) -> None:
    cases = _selection_cases() + ([(members, "the notebook's members, validation half")]
                                  if members else [])
    for case, what in cases:
        want = greedy_selection(case)
        got = func(dict(case))
        if not isinstance(got, list):
            fail(title, f"expected a list of member names, got {type(got).__name__}",
                 "return the names in the order they were added")
        if got != want:
            if got and got[0] != want[0]:
                fail(title, f"your selection starts with {got[0]!r}, not {want[0]!r} (on {what})",
                     "start from the single member with the highest accuracy")
            if len(got) > len(want) and got[:len(want)] == want:
                fail(title, f"you kept adding members: {got} instead of {want} (on {what})",
                     "stop as soon as the best addition does not raise the accuracy strictly")
            fail(title, f"you chose {got}, not {want} (on {what})",
                 "at each step try every member not yet chosen, average_probs of chosen + it, "
                 "and add the one with the highest accuracy (the first one on ties)")
    return passed(title, "this is the ensemble selection of Caruana et al. (2004).")


def _vote_cases():
    answers = [0, 1, 2, 0]
    a = _member([[.5, .3, .2], [.1, .8, .1], [.4, .4, .2], [.2, .5, .3]], answers)
    b = _member([[.2, .7, .1], [.6, .3, .1], [.1, .2, .7], [.1, .2, .7]], answers)
    c = _member([[.6, .2, .2], [.3, .6, .1], [.5, .3, .2], [.45, .1, .45]], answers)
    d = _member([[.1, .1, .8], [.2, .2, .6], [.3, .3, .4], [.3, .4, .3]], answers)
    return [({"a": a, "b": b, "c": c}, "three members, no ties"),
            ({"a": a, "b": b}, "two members: every disagreement is a tie"),
            ({"a": a, "b": b, "c": c, "d": d}, "four members, ties on some questions")]


@exercise("07 medium: a majority vote")
def check_majority_vote(func, members=None, *, title: str) -> None:
    cases = _vote_cases() + ([(members, "the notebook's members")] if members else [])
    for case, what in cases:
        want = majority_vote(case).predictions
        got = func(dict(case))
        try:
            got = [int(p) for p in got]
        except TypeError:
            fail(title, f"expected one option index per question, got {type(got).__name__}",
                 "return a list with the winning option of every question")
        if len(got) != len(want):
            fail(title, f"{len(got)} answers for {len(want)} questions ({what})",
                 "one winning option per question")
        wrong = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
        if wrong:
            i = wrong[0]
            votes = [r.predictions[i] for r in case.values()]
            counts = [votes.count(v) for v in set(votes)]
            tie = counts.count(max(counts)) > 1
            fail(title, f"{what}: question {i} (votes {votes}) you chose {got[i]}, "
                 f"mclab's majority_vote {want[i]}; {len(wrong)} question(s) differ",
                 "on a tie, take the tied option with the highest mean probability over the "
                 "members" if tie else "count one vote per member for its predicted option")
    return passed(title, "the same answers as mclab.ensembling.majority_vote.")
