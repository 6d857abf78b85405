"""The prompt settings' sweep (`mclab.prompt_sweeps`): its rule, and that it reads only
validation data the way the report's rows prompt."""

import pytest

from mclab import prompt_sweeps as ps


def _t(k, score, items):
    return {"k": k, "score": score, "items": items}


def test_the_fewest_examples_within_one_standard_error_of_the_best_win():
    best = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]  # 0.75, standard error 0.164
    assert ps.standard_error(best) == pytest.approx(0.1637, abs=1e-4)
    trials = [_t(1, 0.5, [0.5] * 8), _t(2, 0.6, [0.6] * 8), _t(4, 0.75, best),
              _t(8, 0.7, [0.7] * 8)]
    assert ps.choose(trials, "k")["k"] == 2  # 0.6 >= 0.75 - 0.164; 0.5 is not
    tight = [_t(1, 0.5, [0.5] * 8), _t(4, 0.75, [0.75] * 8)]  # no spread: the best only
    assert ps.choose(tight, "k")["k"] == 4
    assert ps.choose([_t(8, 0.2, [0.2]), _t(1, 0.9, [0.9])], "k")["k"] == 1
    with pytest.raises(ValueError, match="no trials"):
        ps.choose([], "k")


def test_company_trials_read_the_training_qa_never_an_items_own_row(load_tiny, embedder,
                                                                    monkeypatch):
    """Each validation item is a training question; its examples come from the other rows,
    retrieval may show its own fact (another wording), few-shot never does."""
    from mclab import prompting
    from mclab.data import load_scenario

    seen = []
    real = prompting.few_shot_contexts

    def spy(selector, pool, questions, k, strategy="similar", seed=0, facts=None):
        contexts = real(selector, pool, questions, k, strategy, seed, facts)
        seen.append((k, facts is not None, list(questions), contexts))
        return contexts

    monkeypatch.setattr(prompting, "few_shot_contexts", spy)
    model, tok = load_tiny()
    rows = list(load_scenario("company")["train_qa"])
    out = ps.company_trials(model, tok, embedder, rows, ks=(1, 2), n_items=4)
    assert [t["k"] for t in out["retrieval"]] == [1, 2] == [t["k"] for t in out["few_shot"]]
    assert all(len(t["items"]) == 4 and 0 <= t["score"] <= 1 for t in out["retrieval"])
    fact_of = {r["question"]: r["fact_id"] for r in rows}
    for k, excludes, questions, contexts in seen:
        for q, c in zip(questions, contexts):
            shown = [line[3:] for line in c.splitlines() if line.startswith("Q: ")]
            assert len(shown) == k and q not in shown  # never the item's own row
            if excludes:
                assert fact_of[q] not in {fact_of[s] for s in shown}
    assert len(seen) == 4


def test_local_trials_score_validation_rewrites_with_training_examples(load_tiny, embedder):
    from mclab.data import load_scenario
    from mclab.finetuning import local_split

    model, tok = load_tiny()
    local = load_scenario("local")
    out = ps.local_trials(model, tok, embedder, local["rewrites_train"], local["lexicon"],
                          shots=(1,), hints=(0, 4), n_items=3)
    assert [t["shots"] for t in out["few_shot"]] == [1]
    assert [t["hint_phrases"] for t in out["hint_phrases"]] == [0, 4]
    assert all(len(t["items"]) == 3 for t in out["few_shot"] + out["hint_phrases"])
    # more hint phrases make a longer prompt: the phrases are in it
    assert out["hint_phrases"][1]["prompt_tokens"] > out["hint_phrases"][0]["prompt_tokens"]
    train, val = local_split(local["rewrites_train"])
    assert len(val) == 28 and not {r["neutral"] for r in val} & {r["neutral"] for r in train}
    record = ps.record({"retrieval": [_t(1, 0.5, [0.5])], "few_shot": [_t(2, 0.5, [0.5])]},
                       out)
    assert set(record["choices"]) == {"company_retrieval_k", "company_few_shot_k",
                                      "local_few_shot_shots", "hint_phrases"}
