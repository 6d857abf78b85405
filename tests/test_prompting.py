"""mclab.prompting: example selection, prompts, context stuffing, and the cost records."""

import numpy as np
import pytest

from mclab.data import load_scenario, subset
from mclab.evaluation import lexicon_hits
from mclab.generation import format_chat
from mclab.prompting import (ExampleSelector, context_check, delimited_context,
                             engineered_local_prompt, few_shot_messages, frequent_local_phrases,
                             local_few_shot_prompts, run_few_shot_knowledge, run_few_shot_local,
                             run_knowledge, stuffed_context)


@pytest.fixture(scope="module")
def local():
    return load_scenario("local")


@pytest.fixture(scope="module")
def company():
    return load_scenario("company")


def test_similar_selection_finds_the_near_duplicate(embedder):
    pool = ["The cat sat on the mat.", "I am going to the service station this afternoon.",
            "Interest rates rose again.", "We had breakfast by the beach."]
    selector = ExampleSelector(pool, embedder)
    ids = selector.select(["Let's stop at the service station this afternoon."], 2, "similar")[0]
    assert ids[-1] == 1  # best match last, nearest the question
    assert len(ids) == 2


def test_true_few_shot_never_shows_the_questions_own_fact(embedder):
    """Excluding a fact's own Q&A turns retrieval of the answer into examples of the format."""
    from mclab.prompting import few_shot_contexts

    qa = [{"fact_id": "f1", "question": "When did the shop open?", "answer": "In 1987."},
          {"fact_id": "f1", "question": "What year did the shop open?", "answer": "1987."},
          {"fact_id": "f2", "question": "Who runs the warehouse?", "answer": "Ida Quill."},
          {"fact_id": "f3", "question": "How long is the warranty?", "answer": "Two years."}]
    selector = ExampleSelector([r["question"] for r in qa], embedder)
    question = ["In which year did the shop first open?"]
    similar = few_shot_contexts(selector, qa, question, 2)[0]
    other = few_shot_contexts(selector, qa, question, 2, facts=["f1"])[0]
    assert "1987" in similar and "1987" not in other
    assert "Ida Quill" in other and "Two years" in other
    assert "1987" not in few_shot_contexts(selector, qa, question, 2, "random", facts=["f1"])[0]


def test_random_selection_is_seeded_and_varies_per_query():
    selector = ExampleSelector([str(i) for i in range(50)])
    a = selector.select(["q1", "q2"], 4, "random", seed=3)
    assert a == selector.select(["q1", "q2"], 4, "random", seed=3)
    assert a[0] != a[1] and len(set(a[0])) == 4
    assert selector.select(["q"], 0, "random") == [[]]


@pytest.mark.parametrize("k,strategy,match", [(99, "random", "between 0"),
                                              (2, "best", "unknown selection")])
def test_selection_rejects_bad_input(k, strategy, match):
    with pytest.raises(ValueError, match=match):
        ExampleSelector(["a", "b"]).select(["q"], k, strategy)


def test_few_shot_prompt_holds_the_examples_as_chat_turns(local, embedder):
    pool = list(local["rewrites_train"])[:20]
    selector = ExampleSelector([r["neutral"] for r in pool], embedder)
    prompts = local_few_shot_prompts(["I will see you this afternoon."], pool, selector, 2)
    messages = prompts[0]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2 + ["user"]
    assert messages[1]["content"] in {r["local"] for r in pool}
    assert few_shot_messages("x", [])[-1] == {"role": "user", "content": "x"}


def test_hint_phrases_come_from_training_and_are_lexicon_phrases(local):
    phrases = frequent_local_phrases(local["rewrites_train"], local["lexicon"], 5)
    assert len(phrases) == 5
    prompt = engineered_local_prompt("Hello there.", phrases)
    assert "<<<Hello there.>>>" in prompt and phrases[0] in prompt
    assert lexicon_hits(phrases[0], local["lexicon"])


def test_stuffed_context_contains_the_gold_document_and_grows(company):
    docs = list(company["documents"])
    small = stuffed_context(docs, "doc-005", 1)
    big = stuffed_context(docs, "doc-005", 8)
    gold = next(d["text"] for d in docs if d["id"] == "doc-005")
    assert gold in small and gold in big and len(big) > 4 * len(small)
    assert big == stuffed_context(docs, "doc-005", 8)  # seeded
    with pytest.raises(ValueError, match="n_docs"):
        stuffed_context(docs, "doc-005", 0)


def test_overflowing_context_gives_a_message_not_a_crash(model_and_tokenizer, company):
    model, tok = model_and_tokenizer
    everything = "\n\n".join(d["text"] for d in company["documents"]) * 2
    message = context_check(model, tok, everything, "When was the company founded?")
    assert message.startswith("⚠") and "context window" in message
    assert context_check(model, tok, "short", "q?").startswith("fits")
    assert "</document>" in delimited_context("text", "Title")


def test_knowledge_and_few_shot_records_carry_their_cost(model_and_tokenizer, company, embedder):
    model, tok = model_and_tokenizer
    items = list(subset(company["eval_mc"], 3))
    closed = run_knowledge(model, tok, items, name="closed")
    assert 0 <= closed.score <= 1 and closed.prompt_tokens > 10 and closed.ms_per_answer > 0
    qa = list(company["train_qa"])
    selector = ExampleSelector([r["question"] for r in qa], embedder)
    shot = run_few_shot_knowledge(model, tok, items, qa, selector, 2, "similar")
    assert shot.prompt_tokens > closed.prompt_tokens
    assert shot.row()["variant"] == "2-shot similar"


def test_few_shot_local_runs_and_reports_tokens(model_and_tokenizer, local, embedder):
    model, tok = model_and_tokenizer
    rows = subset(local["rewrites_eval"], 2)
    pool = list(local["rewrites_train"])
    zero = run_few_shot_local(model, tok, embedder, rows, pool, local["lexicon"], 0)
    two = run_few_shot_local(model, tok, embedder, rows, pool, local["lexicon"], 2, "similar",
                             system="  ")
    assert len(two.outputs) == 2 and two.prompt_tokens > zero.prompt_tokens
    assert 0 <= two.score <= 1
    n = len(tok(format_chat(tok, "hi"), add_special_tokens=False)["input_ids"])
    assert zero.prompt_tokens > n
    with pytest.raises(ValueError, match="temperature"):
        run_few_shot_local(model, tok, embedder, rows, pool, local["lexicon"], 0,
                           temperature=5)
