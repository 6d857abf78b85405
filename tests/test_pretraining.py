"""Continued pre-training: corpora, replay mixing, a short run, bad input, the panel."""

import pytest

from mclab.data import load_scenario
from mclab.pretraining import (chunk_text, company_corpus, medical_corpus, mix_replay,
                               relative_change, replay_prompts, text_dataset, train_cpt)
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
    assert len(texts) == len(medical["train_prose"]) + -(-len(medical["glossary"]) // 6)
    held_out = set(medical["heldout_prose"]["text"])
    assert not held_out & set(texts)
    plain = company_corpus(company)
    para = company_corpus(company, paraphrases=True)
    assert len(plain) == len(company["documents"]) and para[:len(plain)] == plain
    joined = " ".join(para[len(plain):])
    assert all(row["answer"] in joined for row in company["train_qa"])
    # eval questions never leak into the training text
    assert not any(item["question"] in joined for item in company["eval_mc"])


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


def test_bad_input_fails_before_training(runs_dir):
    with pytest.raises(TrainingInputError, match="learning_rate must be positive"):
        train_cpt(None, None, ["some text"], TrainConfig(learning_rate=0))
    with pytest.raises(TrainingInputError, match="empty"):
        train_cpt(None, None, ["", "  "], TrainConfig())
    assert not runs_dir.exists()


def test_a_short_cpt_run_lowers_the_loss(runs_dir, load_tiny):
    model, tok = load_tiny()
    texts = ["The Zorblax lesion is a violet plaque on the Quenmar fold of the left elbow."] * 4
    result = train_cpt(model, tok, texts, TrainConfig(learning_rate=1e-2, max_steps=4,
                                                      batch_size=2, max_length=32,
                                                      optimizer="adafactor", run_name="cpt"))
    assert len(result.losses) == 4 and result.losses[-1] < result.losses[0]
    assert result.tokens > 0 and (result.run_dir / "train_config.json").is_file()


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
