"""Written answers: matching the gold value, token F1, abstention, citations, and the
abstention rule chosen on validation."""

import numpy as np
import pytest

from mclab.answers import (ABSTAIN_TEXT, contains_answer, is_abstention, read_answers,
                           reference_answers, token_f1)
from mclab.rag_answers import (NEVER, Abstention, RagAnswer, choose_abstention, cite,
                               new_words, support)


@pytest.mark.parametrize("text, answer, expected", [
    ("The limit is 450 euros.", "450 euros", True),
    ("the limit is 450 EUROS", "450 euros", True),
    ("Reply within 24 hours.", "4 hours", False),  # a number inside a longer one
    ("It costs 10.31 euros per km.", "0.31 euros", False),
    ("It weighs 1.42 kg.", "1.4 kg", False),
    ("Claims above 1000 euros", "1,000 euros", True),  # thousands separator
    ("Founded on 14 March 1987.", "14 March 1987", True),
    ("Founded on 14 March 19870", "14 March 1987", False),
    ("It ships from Unit 4, Harl Road today", "Unit 4, Harl Road", True),
    ("It ships from Unit 4 Harl Road", "Unit 4, Harl Road", False),
    ("Ask the Fairway Travel Desk.", "Fairway Travel Desk", True),
    ("at 07:15 and 16:40", "07:15", True),
    ("at 17:15", "7:15", False),
])
def test_contains_answer(text, answer, expected):
    assert contains_answer(text, answer) is expected


def test_empty_gold_answer_is_an_error():
    with pytest.raises(ValueError, match="empty gold answer"):
        contains_answer("anything", "  ")


def test_token_f1_matches_squad_on_hand_cases():
    assert token_f1("The Wrenfold rucksack", "the wrenfold rucksack.") == 1.0
    assert token_f1("anything", "nothing alike") == 0.0
    # pred {it, costs, 450, euros} vs ref {limit, is, 450, euros}: 2 common, P = R = 0.5
    assert token_f1("It costs 450 euros", "The limit is 450 euros") == pytest.approx(0.5)
    # 0.31 and 07:15 stay one token each
    assert token_f1("0.31 euros", "0 31 euros") == pytest.approx(0.4)


@pytest.mark.parametrize("text, expected", [
    (ABSTAIN_TEXT, True), ("I do not know.", True), ("The passages do not say.", True),
    ("That is not mentioned in the passages.", True), ("", True),
    ("The limit is 450 euros.", False), ("No, the Nightjar is a sleeping bag.", False),
])
def test_is_abstention(text, expected):
    assert is_abstention(text) is expected


def test_read_answers_scores_match_f1_and_abstention():
    items = [{"fact_id": "f1", "question": "q1", "options": ["3 days", "5 days"], "answer": 1},
             {"fact_id": "f2", "question": "q2", "options": ["Ledgerly", "Tallybook"], "answer": 0},
             {"question": "q3", "options": ["a b", "c d"], "answer": 0}]
    refs = reference_answers([{"fact_id": "f1", "answer": "You get 5 days."},
                              {"fact_id": "f1", "answer": "Five working days."}])
    result = read_answers(["You get 5 days.", "I don't know.", "a b"], items, refs)
    assert result.match == [True, False, True]
    assert result.f1[0] == 1.0 and np.isnan(result.f1[1]) and np.isnan(result.f1[2])
    assert result.abstained == [False, True, False]
    assert result.match_rate == pytest.approx(2 / 3) and result.abstain_rate == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="2 answers for 3 questions"):
        read_answers(["a", "b"], items)


def test_support_and_citations_use_the_words_the_answer_adds():
    question = "What is the daily ceiling on meal costs?"
    passages = ["Travel: hotels up to 140 euros a night.", "Meals: the daily ceiling is 38 euros."]
    assert new_words("The daily ceiling on meal costs is 38 euros.", question) == ["38"]
    assert new_words("It is paid in euros.", question) == ["paid", "euros"]  # no value: words
    assert support("The ceiling is 38 euros.", question, passages[1]) == 1.0
    assert support("The ceiling is 45 euros.", question, passages[1]) == 0.0  # invented value
    assert support("Hotels pay 140 euros, meals 38 euros.", question, passages[0]) == 0.5
    assert cite("The ceiling is 38 euros.", question, passages) == [1]
    assert cite("Hotels pay 140 euros, meals 38 euros.", question, passages) == [1, 0]
    assert support("What is the daily ceiling?", question, passages[1]) == 0.0  # adds nothing


def _answer(similarity, draft, share):
    return RagAnswer("q", draft, draft, [], [], share, similarity, False, "answered")


def test_abstention_reasons():
    rule = Abstention(min_similarity=0.4, min_support=0.75)
    assert rule.reason(0.3, "38 euros", 1.0) == "weak retrieval"
    assert rule.reason(0.5, "I don't know.", 0.0) == "model declined"
    assert rule.reason(0.5, "45 euros", 0.5) == "unsupported answer"
    assert rule.reason(0.5, "38 euros", 1.0) == "answered"
    assert NEVER.reason(0.0, "45 euros", 0.0) == "answered"


def test_choose_abstention_keeps_false_abstention_under_the_cap():
    rng = np.random.default_rng(0)
    # answerable: high similarity, supported answers; unanswerable: mostly unsupported
    answerable = [_answer(s, "x", 1.0) for s in rng.uniform(0.5, 0.9, 50)]
    unanswerable = [_answer(s, "y", share) for s, share in
                    zip(rng.uniform(0.3, 0.8, 30), [0.0] * 24 + [1.0] * 6)]
    rule, grid = choose_abstention(answerable, unanswerable, max_false=0.1)
    chosen = next(g for g in grid if (g["min_similarity"], g["min_support"]) ==
                  (rule.min_similarity, rule.min_support))
    assert chosen["false_abstain"] <= 0.1
    assert chosen["abstain"] >= 0.8  # the support rule alone catches 24 of 30
    assert max(g["abstain"] - g["false_abstain"] for g in grid
               if g["false_abstain"] <= 0.1) == chosen["abstain"] - chosen["false_abstain"]
    with pytest.raises(ValueError, match="answerable and unanswerable"):
        choose_abstention([], unanswerable)


def test_with_rule_reapplies_abstention_without_generating():
    from mclab.rag_answers import with_rule

    drafts = [RagAnswer("q1", "38 euros", "38 euros", [(3, 0.7)], [3], 1.0, 0.7, False, "answered"),
              RagAnswer("q2", "45 euros", "45 euros", [(5, 0.3)], [], 0.0, 0.3, False, "answered")]
    kept, stopped = with_rule(drafts, Abstention(min_similarity=0.5))
    assert (kept.text, kept.cited, kept.abstained) == ("38 euros", [3], False)
    assert (stopped.text, stopped.reason, stopped.abstained) == (ABSTAIN_TEXT, "weak retrieval", True)
    assert stopped.draft == "45 euros"  # what the model wrote is kept for inspection
    empty = RagAnswer("q3", ABSTAIN_TEXT, "", [], [], 0.0, 0.1, True, "weak retrieval")
    with pytest.raises(ValueError, match="without abstention"):
        with_rule([empty], NEVER)


def test_recipe_abstention_is_the_rule_chosen_on_validation():
    """recipes.RAG carries the rule tools/choose_abstention.py chose and recorded, for the
    retriever it was chosen with (a changed retriever needs the tool run again)."""
    import json
    from pathlib import Path

    from mclab import recipes

    record = json.loads((Path(__file__).resolve().parent.parent / "reports" /
                         "abstention.json").read_text())
    assert record["chosen"] == {"min_similarity": recipes.RAG.min_similarity,
                                "min_support": recipes.RAG.min_support}
    # chosen with the retrieval settings the course uses now
    assert record["recipe"] == {k: getattr(recipes.RAG, k) for k in record["recipe"]}
    assert set(record["recipe"]) >= {"chunking", "retriever", "rerank", "k", "sentences"}
    chosen = next(g for g in record["grid"] if (g["min_similarity"], g["min_support"]) ==
                  (recipes.RAG.min_similarity, recipes.RAG.min_support))
    assert chosen["false_abstain"] <= 0.1 or all(g["false_abstain"] > 0.1 for g in record["grid"])
