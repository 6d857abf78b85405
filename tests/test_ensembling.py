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


# ---------------------------------------------------------------- diversity, selection, split

def test_oracle_and_agreement():
    from mclab.ensembling import agreement, oracle_accuracy

    assert oracle_accuracy({"a": A, "b": B}) == 1.0
    assert oracle_accuracy({"a": A, "a2": A}) == A.accuracy  # a copy adds nothing
    m = agreement({"a": A, "b": B, "c": C})
    assert np.allclose(np.diag(m), 1) and np.allclose(m, m.T)
    assert m[0, 1] == pytest.approx(1 / 3)  # a and b agree only on the third item


def test_greedy_selection_stops_and_picks_the_useful_member():
    from mclab.checks.ensembling import _selection_cases
    from mclab.ensembling import greedy_selection

    (abc, _), (with_worse, _), (everything, _) = _selection_cases()
    assert greedy_selection(abc) == ["a", "b"]
    assert greedy_selection(with_worse) == ["a"]
    # c comes before b and is as accurate alone, but b fixes a's mistake
    assert greedy_selection(everything) == ["a", "b"]


def test_evaluate_ensembles_fits_weights_on_validation_and_sums_costs():
    from mclab.ensembling import evaluate_ensembles, verdict

    # a is right on the validation items (0, 1), b (hesitantly) on the test items (2, 3)
    answers = [0, 0, 0, 0]
    a = member([[.9, .1], [.9, .1], [.2, .8], [.2, .8]], answers)
    b = member([[.4, .6], [.4, .6], [.55, .45], [.55, .45]], answers)
    rows = {r["method"]: r for r in evaluate_ensembles({"a": a, "b": b}, [0, 1], [2, 3],
                                                         {"a": 10.0, "b": 30.0})}
    weighted = rows["average (weights fit on val)"]
    assert weighted["weights"] == "a 0.5, b 0.5"  # the most even of the weights that fit val
    assert rows["a"]["val"] == 1.0 and rows["a"]["test"] == 0.0
    assert weighted["ms / question"] == 40.0 and rows["majority vote"]["members"] == 2
    assert rows["b"]["test"] == 1.0 and rows["average (plain)"]["test"] == 0.0
    sentence = verdict(list(rows.values()))
    assert "falls short of" in sentence and "cannot tell" in sentence  # 2 items decide nothing


def test_panel_numbers_and_bad_choices():
    from mclab.ensembling import panel_numbers

    ms = {"a": 1.0, "b": 2.0, "c": 3.0}
    both = panel_numbers({"a": A, "b": B, "c": C}, ["a", "b", "c"], [1, 1, 1], [0, 1, 2], ms)
    assert both["ensemble"] == 1.0 and both["ms / question"] == 6.0 and both["members"] == 3
    alone = panel_numbers({"a": A, "b": B}, ["b"], [0.3], [0, 1, 2], ms)
    assert alone["ensemble"] == B.accuracy and alone["best member"] == "b"
    for chosen, weights, method, message in [([], [], "average", "at least one"),
                                             (["a", "z"], [1, 1], "average", "unknown members"),
                                             (["a", "b"], [1, 1], "mean", "unknown method"),
                                             (["a", "b"], [0, 0], "vote", "not all zero")]:
        with pytest.raises(EnsembleError, match=message):
            panel_numbers({"a": A, "b": B}, chosen, weights, [0, 1, 2], ms, method)


def test_panel_redraws_from_cached_probabilities(capsys):
    import matplotlib

    matplotlib.use("Agg")
    from mclab.ensembling import ensemble_panel

    panel = ensemble_panel({"a": A, "b": B, "c": C}, {"a": 1.0, "b": 1.0, "c": 1.0}, [0, 1, 2])
    assert "ensemble: 1.000" in capsys.readouterr().out
    rows = panel.children[:3]
    for row in rows:  # untick every member: the error, not a crash
        row.children[0].value = False
    assert "choose at least one member" in capsys.readouterr().out
    rows[2].children[0].value = True  # c alone
    assert f"ensemble: {C.accuracy:.3f}" in capsys.readouterr().out


# ---------------------------------------------------------------- members and merging

def test_context_builders():
    from mclab.ensembling import rag_contexts
    from mclab.prompting import few_shot_contexts

    class Retriever:
        chunks = [type("Chunk", (), {"text": f"chunk {i}", "doc_id": "d"})() for i in range(3)]

        def retrieve(self, queries, k):
            return [[0, 2][:k] for _ in queries]

    class Selector:
        def select(self, queries, k, strategy, seed=0, exclude=None):
            return [[1] * k for _ in queries]

    items = [{"question": "q1"}, {"question": "q2"}]
    contexts = rag_contexts(Retriever(), items, 2)
    assert len(contexts) == 2 and "chunk 0" in contexts[0] and "chunk 2" in contexts[0]
    qa = [{"question": "Q0", "answer": "A0"}, {"question": "Q1", "answer": "A1"}]
    shots = few_shot_contexts(Selector(), qa, [it["question"] for it in items], 1)
    assert "Q1" in shots[0] and "A1" in shots[0] and "Q0" not in shots[0]
    assert few_shot_contexts(Selector(), qa, [it["question"] for it in items], 0) == [None, None]


def _tiny_peft_model():
    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from mclab.peft_methods import lora_config

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    model = get_peft_model(LlamaForCausalLM(config), lora_config(2, 4), adapter_name="one")
    model.add_adapter("two", lora_config(4, 4))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: give both adapters a real update
            torch.nn.init.normal_(param)
    return model


def test_merge_adapters_is_the_weighted_sum_of_updates():
    import torch

    from mclab.ensembling import merge_adapters

    model = _tiny_peft_model()
    merge_adapters(model, ["one", "two"], [0.25, 0.75], "mix")
    assert model.active_adapter == "mix"
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    want = 0.25 * layer.get_delta_weight("one") + 0.75 * layer.get_delta_weight("two")
    assert torch.allclose(layer.get_delta_weight("mix"), want, atol=1e-6)
    merge_adapters(model, ["one", "two"], [1, 0], "mix")  # the same name again replaces it
    assert torch.allclose(layer.get_delta_weight("mix"), layer.get_delta_weight("one"), atol=1e-6)


@pytest.mark.parametrize("names, weights, message", [
    (["one"], [1], "at least 2 adapters"),
    (["one", "three"], [1, 1], "no adapter named"),
    (["one", "two"], [1], "2 finite numbers"),
    (["one", "two"], [0, 0], "not all zero"),
])
def test_merge_adapters_bad_input(names, weights, message):
    from mclab.ensembling import merge_adapters

    with pytest.raises(EnsembleError, match=message):
        merge_adapters(_tiny_peft_model(), names, weights)


# ---------------------------------------------------------------- the exercise checks

def test_checks_say_what_is_wrong(capsys):
    from mclab.checks import ExerciseFailed
    from mclab.checks import ensembling as checks
    from mclab.ensembling import greedy_selection

    checks.check_weights(None, {}, [], [])
    assert "not solved yet" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="plain mean"):
        checks.check_weighted_average(lambda probs, weights: np.mean(probs, axis=0))
    checks.check_weighted_average(lambda p, w: np.average(p, axis=0, weights=w))
    # a is right on validation, b on test; the val-fitted average is wrong on test
    answers = [0] * 6
    a = member([[.9, .1]] * 3 + [[.1, .9]] * 3, answers)
    b = member([[.4, .6]] * 3 + [[.6, .4]] * 3, answers)
    with pytest.raises(ExerciseFailed, match="best on the TEST half"):
        checks.check_weights([0.0, 1.0], {"a": a, "b": b}, [0, 1, 2], [3, 4, 5])

    def never_stops(members):
        chosen = greedy_selection(members)
        return chosen + [n for n in members if n not in chosen]

    with pytest.raises(ExerciseFailed, match="kept adding"):
        checks.check_selection(never_stops)
    checks.check_selection(greedy_selection)
