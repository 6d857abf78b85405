"""Continued pre-training: corpora, replay mixing, a short run, bad input, the panel."""

import pytest

from mclab.data import load_scenario
from mclab.finetuning import split_by_paraphrase
from mclab.pretraining import (chunk_text, company_corpus, company_validation, medical_corpus,
                               medical_split, mix_replay, relative_change, replay_prompts,
                               text_dataset, train_cpt)
from mclab.training import TrainConfig, TrainingInputError


def test_chunks_respect_the_token_limit(model_and_tokenizer):
    _, tok = model_and_tokenizer
    text = load_scenario("medical")["train_prose"][0]["text"]
    pieces = chunk_text(text, tok, 40)
    assert len(pieces) > 1
    assert all(len(tok(p)["input_ids"]) <= 40 or ". " not in p for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_corpora():
    medical, company = load_scenario("medical"), load_scenario("company")
    texts = medical_corpus(medical)
    validates = {row["term"] for row in medical["sft_val"]}
    kept = [g for g in medical["glossary"] if g["term"] not in validates]
    assert len(kept) < len(medical["glossary"])
    assert len(texts) == len(medical["train_prose"]) + -(-len(kept) // 6)
    # SFT after CPT stops on sft_val: CPT never reads those answers (the eval's terms it does)
    joined = " ".join(texts)
    assert not any(row["answer"] in joined for row in medical["sft_val"])
    assert all(row["answer"] in joined for row in medical["sft_train"])
    held_out = set(medical["heldout_prose"]["text"])
    assert not held_out & set(texts)
    plain = company_corpus(company)
    para = company_corpus(company, paraphrases=True)
    assert len(plain) == len(company["documents"]) and para[:len(plain)] == plain
    joined = " ".join(para[len(plain):])
    trains, validates = split_by_paraphrase(company["train_qa"])  # wordings 0 and 1; 2
    assert trains and all(row["answer"] in joined for row in trains)
    # eval questions never leak into the training text
    assert not any(item["question"] in joined for item in company["eval_mc"])


def test_company_cpt_validates_on_a_wording_it_never_reads():
    """The third wording of every fact is CPT's validation text, and (where it differs from
    the other two) is not in what CPT on the documents and fact sheets trains on."""
    company = load_scenario("company")
    trains, validates = split_by_paraphrase(company["train_qa"])
    val = " ".join(company_validation(company))
    assert validates and all(row["answer"] in val for row in validates)
    training = " ".join(company_corpus(company, paraphrases=True))
    trained_answers = {row["answer"] for row in trains}
    new_words = [row["answer"] for row in validates if row["answer"] not in trained_answers]
    assert len(new_words) > len(validates) / 2
    assert not any(answer in training for answer in new_words)


def test_medical_cpt_validates_on_held_back_paragraphs():
    medical = load_scenario("medical")
    left, held = medical_split(medical, n_val=4)
    prose = list(medical["train_prose"]["text"])
    assert held == prose[-4:] and list(left["train_prose"]["text"]) == prose[:-4]
    training = " ".join(medical_corpus(left))
    assert not any(text[:80] in training for text in held)
    assert len(medical["train_prose"]) == len(prose)  # the scenario itself is untouched
    for bad in (0, len(prose)):
        with pytest.raises(TrainingInputError, match="hold back between 1 and"):
            medical_split(medical, n_val=bad)


@pytest.mark.parametrize("n, ratio, extra", [(30, 0.0, 0), (30, 0.25, 10), (10, 0.5, 10),
                                              (9, 0.1, 1)])
def test_replay_mix_has_the_asked_share(n, ratio, extra):
    mixed = mix_replay([f"d{i}" for i in range(n)], ["r1", "r2", "r3"], ratio, seed=1)
    assert len(mixed) == n + extra
    assert sum(t.startswith("r") for t in mixed) == extra
    assert mixed == mix_replay([f"d{i}" for i in range(n)], ["r1", "r2", "r3"], ratio, seed=1)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 2])
def test_bad_replay_ratio(ratio):
    with pytest.raises(TrainingInputError, match="replay ratio"):
        mix_replay(["d"], ["r"], ratio)


def test_replay_needs_texts_and_domain():
    with pytest.raises(TrainingInputError, match="needs replay texts"):
        mix_replay(["d"] * 4, [], 0.5)
    with pytest.raises(TrainingInputError, match="empty"):
        mix_replay([], ["r"], 0.5)


def test_replay_prompts_are_seeded():
    assert replay_prompts(5, 0) == replay_prompts(5, 0)
    assert len(set(replay_prompts(30, 0))) >= 20


def test_cpt_plus_replay_data_has_the_recipes_replay_share(load_tiny, monkeypatch):
    """The report's CPT + replay data (`medical_cpt_texts`, also what its sweep trains on):
    a quarter of the training pieces are replay, as in 03, and validation is the held-back
    paragraphs, which training never reads."""
    from mclab import pretraining, recipes

    _, tok = load_tiny()
    replay = [f"General paragraph number {i} about bread, rain and trains." for i in range(5)]
    monkeypatch.setattr(pretraining, "generate_replay", lambda *a, **k: replay)
    train, val = pretraining.medical_cpt_texts(None, tok, recipes.CPT, seed=0)
    n_replay = sum(t in replay for t in train)
    assert n_replay == round((len(train) - n_replay) * recipes.CPT.replay_ratio
                             / (1 - recipes.CPT.replay_ratio))
    _, held = medical_split(load_scenario("medical"))
    assert val and " ".join(val).split() == " ".join(held).split()
    assert not any(piece in train for piece in val)


def test_bad_input_fails_before_training(runs_dir):
    with pytest.raises(TrainingInputError, match="learning_rate must be positive"):
        train_cpt(None, None, ["some text"], TrainConfig(learning_rate=0))
    with pytest.raises(TrainingInputError, match="empty"):
        train_cpt(None, None, ["", "  "], TrainConfig())
    with pytest.raises(TrainingInputError, match="stops on a validation set"):
        train_cpt(None, None, ["some text"], TrainConfig(patience=2, eval_steps=4))
    assert not runs_dir.exists()


def test_a_short_cpt_run_lowers_the_loss(runs_dir, load_tiny):
    model, tok = load_tiny()
    texts = ["The Zorblax lesion is a violet plaque on the Quenmar fold of the left elbow."] * 4
    result = train_cpt(model, tok, texts, TrainConfig(learning_rate=1e-2, max_steps=4,
                                                      batch_size=2, max_length=32,
                                                      optimizer="adafactor", run_name="cpt"))
    assert len(result.losses) == 4 and result.losses[-1] < result.losses[0]
    assert result.tokens > 0 and (result.run_dir / "train_config.json").is_file()


def test_cpt_stops_on_its_validation_texts(runs_dir, load_tiny):
    """With eval_texts and patience, CPT logs the loss on them and keeps its best step."""
    model, tok = load_tiny()
    texts = ["The Zorblax lesion is a violet plaque on the Quenmar fold of the left elbow."] * 4
    result = train_cpt(model, tok, texts, TrainConfig(learning_rate=5e-2, max_steps=6,
                                                      batch_size=2, max_length=32,
                                                      optimizer="adafactor", run_name="cpt",
                                                      eval_steps=1, patience=1),
                       eval_texts=["A violet plaque on the elbow fold is a Zorblax lesion."])
    losses = [(row["step"], row["eval_loss"]) for row in result.history if "eval_loss" in row]
    assert losses and result.best_step == min(losses, key=lambda s: s[1])[0]
    assert not list(result.run_dir.glob("checkpoint-*"))


def test_relative_change_and_text_dataset():
    assert relative_change(40.0, 30.0) == pytest.approx(-0.25)
    assert text_dataset(["a", " ", "b"])["text"] == ["a", "b"]


def test_cpt_panel_trains_on_press_and_reports_bad_input(capsys):
    from mclab.pretraining import cpt_panel

    calls = []

    def run(learning_rate, steps, replay_ratio):
        calls.append((learning_rate, steps, replay_ratio))
        if replay_ratio >= 0.5:
            raise TrainingInputError("replay ratio too high for this test")
        return {"medical perplexity": 30.0}

    panel = cpt_panel(run, default={"medical perplexity": 31.0}, steps=3, replay_ratio=0.25)
    assert calls == []  # opens on the default run's numbers, trains only on a press
    panel.train()
    assert calls == [(pytest.approx(1e-4), 3, 0.25)]
    controls = panel.children[0].children
    controls[2].value = 0.6
    panel.train()
    # outside a kernel the Output widget does not capture, and the text reaches stdout
    shown = "".join(o.get("text", "") for o in panel.children[2].outputs) + capsys.readouterr().out
    assert "⚠ replay ratio too high" in shown
