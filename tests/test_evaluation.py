"""Knowledge score, perplexity and locality on tiny known cases."""

import numpy as np
import pytest

from mclab.evaluation import (MEANING_FLOOR, knowledge_prompt, knowledge_score, lexicon_hits,
                              locality_score, meaning_floor, option_logprobs, perplexity,
                              plain_reading)
from mclab.generation import ContextWindowError, format_chat, generate

ITEMS = [
    {"question": "What is the capital of France?", "options": ["Berlin", "Paris", "Madrid",
                                                                "Rome"], "answer": 1},
    {"question": "How many days are in a week?", "options": ["seven", "three", "twelve",
                                                              "forty"], "answer": 0},
]


def test_knowledge_score_picks_the_known_answer(model_and_tokenizer):
    model, tok = model_and_tokenizer
    result = knowledge_score(model, tok, ITEMS)
    assert result.predictions == [1, 0] and result.accuracy == 1.0
    assert all(abs(p.sum() - 1) < 1e-6 for p in result.probs)


def test_context_passage_changes_the_answer(model_and_tokenizer):
    model, tok = model_and_tokenizer
    item = {"question": "What colour is the Vexmoor company van?",
            "options": ["teal", "orange", "black", "white"], "answer": 1}
    ctx = "The Vexmoor company van is painted bright orange."
    with_ctx = knowledge_score(model, tok, [item], contexts=[ctx])
    assert with_ctx.predictions == [1]


def test_shared_prefix_matches_scoring_each_sequence_whole(model_and_tokenizer):
    import torch

    model, tok = model_and_tokenizer
    prompt = format_chat(tok, "Name a colour.") + "Answer:"
    options = [" red", " a deep shade of ultramarine"]
    other = format_chat(tok, "A much longer question, so that the prompts need padding?") + "A:"
    fast = option_logprobs(model, tok, [prompt, other], [options, options], normalize="sum")[0]
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    for opt, got in zip(options, fast):
        o = tok(opt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([p + o])).logits[0], -1)
        naive = sum(logp[len(p) - 1 + i, t].item() for i, t in enumerate(o))
        assert got == pytest.approx(naive, abs=1e-3)


def test_budget_batches_bound_items_times_copies_times_longest():
    from mclab.evaluation import budget_batches

    assert budget_batches([50] * 20, 8, 8192, copies=4) == [
        list(range(8)), list(range(8, 16)), list(range(16, 20))]
    assert budget_batches([1300] * 3, 8, 8192, copies=4) == [[0], [1], [2]]  # 2 x 5,200 > 8,192
    assert budget_batches([9000, 10], 8, 8192, copies=4) == [[1], [0]]  # over budget: alone
    # shortest first, so a long prompt does not pad a batch of short ones
    assert budget_batches([600, 40, 700, 30], 8, 5000, copies=4) == [[3, 1], [0], [2]]
    assert budget_batches([100] * 12, 8, 1024) == [list(range(8)), list(range(8, 12))]
    assert budget_batches([300] * 4, 8, 1024) == [[0, 1, 2], [3]]
    with pytest.raises(ValueError, match="max_tokens"):
        budget_batches([10], 8, 0)


def test_long_prompts_are_scored_in_smaller_batches_with_the_same_scores(model_and_tokenizer,
                                                                        monkeypatch):
    """Issue 15: 01's peak was four 1,300-token prompts x 4 options of repeated cache. A
    token budget cuts such batches; the scores stay those of each item scored alone."""
    import mclab.evaluation as ev

    model, tok = model_and_tokenizer
    long_ctx = " ".join(["The Vexmoor depot opens at nine and closes at five."] * 12)
    prompts = [format_chat(tok, knowledge_prompt(q, ctx)) + "Answer:"
               for q, ctx in [("Colour?", None), ("When does the depot open?", long_ctx),
                              ("Size?", None), ("When does it close?", long_ctx)]]
    options = [[" red", " blue", " green"]] * 4
    seen = []
    real = ev._score_batch

    def spy(model, tokenizer, prompt_ids, opts, normalize):
        seen.append(len(prompt_ids) * len(opts[0]) * max(map(len, prompt_ids)))
        return real(model, tokenizer, prompt_ids, opts, normalize)

    monkeypatch.setattr(ev, "_score_batch", spy)
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    budget = 3 * max(lengths) + 10  # one long prompt's 3 options fit, two do not
    batched = option_logprobs(model, tok, prompts, options, max_tokens=budget)
    assert len(seen) == 3 and max(seen) <= budget  # short pair, then each long one alone
    seen.clear()
    alone = option_logprobs(model, tok, prompts, options, batch_size=1)
    assert len(seen) == 4
    for got, want in zip(batched, alone):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_perplexity_prefers_fluent_text(model_and_tokenizer):
    model, tok = model_and_tokenizer
    fluent = perplexity(model, tok, ["The weather today is sunny and warm, so we went to the beach."])
    scrambled = perplexity(model, tok, ["beach sunny went the warm today so weather and we is to"])
    assert 1 < fluent < scrambled


def test_perplexity_items_are_each_texts_own_and_pool_to_the_perplexity(load_tiny):
    """Per-text parts (what the paired bootstrap resamples): padding in a batch adds nothing,
    and pooled they give `perplexity`."""
    import math

    from mclab.evaluation import perplexity_items

    model, tok = load_tiny()
    texts = ["A short one.", "A longer text that needs padding beside the short one here.",
             "Third."]
    nll, tokens = perplexity_items(model, tok, texts, batch_size=2)
    for i, text in enumerate(texts):
        alone_nll, alone_tokens = perplexity_items(model, tok, [text])
        assert tokens[i] == alone_tokens[0] == len(tok(text)["input_ids"]) - 1
        assert nll[i] == pytest.approx(alone_nll[0], rel=1e-4)
    assert perplexity(model, tok, texts) == pytest.approx(math.exp(nll.sum() / tokens.sum()))


def test_lexicon_hits_whole_words_only():
    lexicon = [{"phrase": "arvo", "forms": ["arvo"]}, {"phrase": "ta", "forms": ["ta"]}]
    assert lexicon_hits("See you this Arvo!", lexicon) == ["arvo"]
    assert lexicon_hits("a table and a tart", lexicon) == []
    assert lexicon_hits("Ta, mate", lexicon) == ["ta"]


LEXICON = [{"phrase": "arvo", "meaning": "afternoon", "forms": ["arvo", "this arvo"]},
           {"phrase": "servo", "meaning": "service station, petrol station", "forms": ["servo"]},
           {"phrase": "reckon", "meaning": "think, suppose", "forms": ["reckon", "i reckon"]},
           {"phrase": "mate", "meaning": "friend; friendly form of address", "forms": ["mate"]}]


def test_plain_reading_uses_the_first_gloss_and_keeps_the_form_s_other_words():
    assert plain_reading("I reckon we'll hit the servo this arvo, mate.", LEXICON) == \
        "I think we'll hit the service station this afternoon, friend."
    assert plain_reading("No slang here.", LEXICON) == "No slang here."


def test_locality_credits_a_swap_not_a_copy_a_tag_or_a_random_slang_word(embedder):
    source = "I will see you this afternoon at the service station."
    outputs = ["See ya this arvo at the servo.",  # a rewrite: both phrases replace words
               source,  # a copy: no local phrase
               "I will see you this afternoon at the service station, mate.",  # a tag
               "I will see you this mate at the service station.",  # slang for a random word
               "G'day mate, I like trains."]  # local, but another sentence
    result = locality_score(outputs, [source] * len(outputs), LEXICON, embedder)
    # the unrelated sentence may count as a swap ("mate" read as "friend" fits "I like
    # trains"), but it keeps none of the meaning, so it earns nothing either way
    assert result.swaps[:4] == [True, False, False, False]
    assert [bool(h) for h in result.hits] == [True, False, True, True, True]
    assert result.style_rate == 0.8
    assert result.similarities[1] == pytest.approx(1.0)  # the copy keeps all the meaning
    assert result.similarities[0] > 0.5 and result.similarities[4] == 0.0  # below the floor
    assert result.item_scores == [result.similarities[0], 0.0, 0.0, 0.0, 0.0]
    assert result.score == pytest.approx(result.similarities[0] / 5)
    # the parts the report gives intervals for: each column is its items' mean
    parts = result.parts
    assert parts["style_items"] == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert np.mean(parts["swap_items"]) == result.swap_rate
    assert np.mean(parts["meaning_items"]) == pytest.approx(result.meaning)


def test_a_phrase_the_source_already_uses_is_not_new(embedder):
    source = "See you this arvo at the service station."
    result = locality_score(["See you this arvo at the servo."], [source], LEXICON, embedder)
    assert result.hits == [["servo"]] and result.swaps == [True]
    with pytest.raises(ValueError, match="as many outputs as sources"):
        locality_score(["a", "b"], [source], LEXICON, embedder)


def test_meaning_floor_is_what_the_training_rewrites_give(embedder):
    """MEANING_FLOOR is not tuned by hand: it is meaning_floor on the training rewrites."""
    from mclab.data import load_scenario

    local = load_scenario("local")
    train = local["rewrites_train"]
    floor = meaning_floor(train["neutral"], train["local"], local["lexicon"], embedder)
    assert floor == pytest.approx(MEANING_FLOOR, abs=0.005)


def test_generation_is_greedy_and_seeded(model_and_tokenizer):
    model, tok = model_and_tokenizer
    prompt = ["Name a fruit."]
    assert generate(model, tok, prompt, max_new_tokens=8) == \
        generate(model, tok, prompt, max_new_tokens=8)
    a = generate(model, tok, prompt, temperature=1.0, seed=3, max_new_tokens=12)
    b = generate(model, tok, prompt, temperature=1.0, seed=3, max_new_tokens=12)
    assert a == b


def test_overlong_prompt_is_a_clear_error(model_and_tokenizer):
    model, tok = model_and_tokenizer
    with pytest.raises(ContextWindowError, match="context window"):
        generate(model, tok, ["word " * 9000], max_new_tokens=4)


def test_quick_mode_caps_generated_tokens_and_full_mode_does_not(load_tiny, monkeypatch):
    """Quick mode's answers stop at QUICK_MAX_NEW_TOKENS; full mode generates what is asked.
    (The tiny random model never says end-of-turn, so every answer runs to its limit.)"""
    from mclab.generation import QUICK_MAX_NEW_TOKENS

    model, tok = load_tiny()
    monkeypatch.setenv("MCLAB_QUICK", "1")
    quick = generate(model, tok, ["Say hi."], max_new_tokens=40, details=True)[0]
    monkeypatch.delenv("MCLAB_QUICK")
    full = generate(model, tok, ["Say hi."], max_new_tokens=40, details=True)[0]
    assert quick.new_tokens == QUICK_MAX_NEW_TOKENS < 40 == full.new_tokens


def test_answer_logprobs_match_the_models_own_loss(model_and_tokenizer):
    """The one answer scorer agrees with transformers' cross-entropy on the answer tokens."""
    import torch

    from mclab.evaluation import answer_logprobs

    model, tok = model_and_tokenizer
    prompts = ["What is the capital of France?", [{"role": "user", "content": "Say hi."}]]
    answers = ["Paris is the capital.", "Hi there!"]
    sums, counts = answer_logprobs(model, tok, prompts, answers, batch_size=2)
    for prompt, answer, total, n in zip(prompts, answers, sums, counts):
        head = tok(format_chat(tok, prompt), add_special_tokens=False)["input_ids"]
        tail = tok(answer + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([head + tail])
        labels = torch.tensor([[-100] * len(head) + tail])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        assert n == len(tail)
        assert total == pytest.approx(-loss * n, rel=1e-4)
    # a token budget (issue 15: 06's completion loss peaked 540 MB over its model) splits the
    # batch, longest last, and gives each answer back in its place with the same score
    alone, _ = answer_logprobs(model, tok, prompts[::-1], answers[::-1], max_tokens=1)
    np.testing.assert_allclose(alone[::-1], sums, rtol=1e-4)
    with pytest.raises(ValueError, match="as many answers"):
        answer_logprobs(model, tok, prompts, answers[:1])


def test_one_scorer_scores_the_parts_asked_with_the_methods_own_context(load_tiny, embedder):
    """scorecard.score_model: notebooks, the report and tests score through it."""
    from mclab.scorecard import eval_sets, score_model

    model, tok = load_tiny()
    sets = eval_sets()
    seen = []

    def context(items):  # a method's own context (retrieval, examples), per eval item
        seen.append(len(items))
        return [f"Note: {it['options'][it['answer']]} is right." for it in items]

    card = score_model(model, tok, embedder, sets, company_context=context,
                       parts=("company", "uncovered"))
    assert seen == [len(sets["company_mc"]), len(sets["company_uncovered"])]
    assert card.company.n == len(sets["company_mc"]) and card.ms_per_answer > 0
    assert card.company_uncovered is not None and card.locality is None
    assert card.medical_perplexity is None and "locality" not in card.as_dict()
    with pytest.raises(ValueError, match="unknown parts"):
        score_model(model, tok, embedder, sets, parts=("vibes",))
