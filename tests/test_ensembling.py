"""Voting and probability averaging on hand-made members with known answers."""

import numpy as np
import pytest

from mclab.ensembling import (EnsembleError, average_probs, fit_weights, majority_vote,
                              select, split_halves)
from mclab.evaluation import KnowledgeResult


def member(probs, answers):
    probs = [np.array(p, dtype=float) for p in probs]
    preds = [int(np.argmax(p)) for p in probs]
    return KnowledgeResult(float(np.mean([p == a for p, a in zip(preds, answers)])), preds,
                           answers, probs)


ANSWERS = [0, 1, 2]
A = member([[.6, .4, 0], [.5, .4, .1], [.1, .1, .8]], ANSWERS)  # right, wrong, right
B = member([[.4, .6, 0], [.1, .8, .1], [.1, .1, .8]], ANSWERS)  # wrong, right, right
C = member([[.9, .1, 0], [.2, .7, .1], [.6, .2, .2]], ANSWERS)  # right, right, wrong


def test_averaging_can_beat_every_member():
    ens = average_probs({"a": A, "b": B, "c": C})
    assert ens.accuracy == 1.0 > max(A.accuracy, B.accuracy, C.accuracy)


def test_majority_vote_and_weights():
    assert majority_vote({"a": A, "b": B, "c": C}).predictions == [0, 1, 2]
    # all the weight on one member reproduces that member
    assert majority_vote({"a": A, "b": B, "c": C}, [0, 0, 1]).predictions == C.predictions


def test_weights_fitted_on_validation_only():
    weights, acc = fit_weights({"a": A, "c": C}, step=0.25)
    assert weights.sum() == pytest.approx(1.0) and acc >= max(A.accuracy, C.accuracy)
    val, test = split_halves(10, seed=1)
    assert sorted(val + test) == list(range(10)) and not set(val) & set(test)
    assert select(A, [2]).accuracy == 1.0


@pytest.mark.parametrize("members, weights, message", [
    ({"a": A}, None, "at least 2 members"),
    ({"a": A, "b": member([[1, 0, 0]] * 3, [0, 0, 0])}, None, "other items"),
    ({"a": A, "b": B}, [1, -1], "non-negative"),
    ({"a": A, "b": B}, [0, 0], "not all zero"),
])
def test_bad_members_and_weights(members, weights, message):
    with pytest.raises(EnsembleError, match=message):
        average_probs(members, weights)
