"""SFT data, the memory plan and its measurement, saving and loading, the lean loss."""

import pytest
import torch
from datasets import Dataset

from mclab.data import load_scenario
from mclab.evaluation import KNOWLEDGE_SYSTEM
from mclab.finetuning import (PeakMemory, company_examples, memory_plan, sft_data,
                              split_by_paraphrase, style_examples)
from mclab.scorecard import local_prompt
from mclab.training import (TrainConfig, TrainingInputError, chat_example, load_saved,
                            save_model, train_sft)


def test_paraphrase_split_keeps_wordings_apart():
    qa = load_scenario("company")["train_qa"]
    train, val = split_by_paraphrase(qa)
    assert len(val) == 85 and len(train) == 170
    assert {r["fact_id"] for r in val} == {r["fact_id"] for r in train}
    assert not {r["question"] for r in val} & {r["question"] for r in train}
    one, _ = split_by_paraphrase(qa, train_on=(0,))
    assert len(one) == 85
    with pytest.raises(TrainingInputError, match="cannot both"):
        split_by_paraphrase(qa, held_out=0, train_on=(0,))
    every, none = split_by_paraphrase(qa, held_out=None, train_on=(0, 1, 2))
    assert len(every) == 255 and none == []
    train3, val3 = sft_data("company", train_on=(0, 1, 2))
    assert len(train3) == 255 and len(val3) == 0


def test_chats_use_the_eval_formats():
    row = {"question": "Who runs Vexmoor?", "answer": "Ida Quill runs Vexmoor."}
    ex = company_examples([row])[0]
    assert ex["prompt"][0] == {"role": "system", "content": KNOWLEDGE_SYSTEM}
    assert ex["prompt"][1]["content"] == "Question: Who runs Vexmoor?"
    assert ex["completion"] == [{"role": "assistant", "content": "Ida Quill runs Vexmoor."}]
    pair = {"neutral": "I am tired.", "local": "I'm stuffed, mate."}
    expected = chat_example(local_prompt("I am tired."), "I'm stuffed, mate.")
    assert style_examples([pair])[0] == expected


def test_sft_data_sizes_and_errors():
    train, val = sft_data("local", n_train=10, n_val=4)
    assert len(train) == 10 and len(val) == 4
    held = set(load_scenario("local")["rewrites_eval"]["neutral"])
    assert not any(local_prompt(n) in str(r["prompt"]) for r in train for n in held)
    with pytest.raises(TrainingInputError, match="unknown SFT dataset"):
        sft_data("legal")


def test_memory_plan(model_and_tokenizer):
    model, _ = model_and_tokenizer
    # full fine-tuning trains every weight; the shared model may come back frozen from a
    # peft test in the same session (peft freezes the base, unloading leaves it frozen)
    model.requires_grad_(True)
    adamw = memory_plan(model, "adamw_torch", 8, 64)
    ada = memory_plan(model, "adafactor", 8, 64)
    assert adamw.optimizer_mb == pytest.approx(2 * adamw.weights_mb)
    assert ada.optimizer_mb == 0 and ada.gradients_mb == pytest.approx(ada.weights_mb)
    assert memory_plan(model, "adafactor", 16, 64).activations_mb == pytest.approx(
        2 * ada.activations_mb)
    assert 400 < ada.weights_mb < 600
    with pytest.raises(ValueError, match="no plan"):
        memory_plan(model, "lion", 8, 64)


def test_peak_memory_sees_a_temporary_allocation():
    import mmap

    with PeakMemory() as mem:
        # fresh anonymous pages, every one touched: malloc could hand back pages this process
        # already holds (it did, in a pytest-xdist worker), an mmap cannot
        block = mmap.mmap(-1, 40 * 2**20)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        import time
        deadline = time.time() + 5  # the sampler is a thread: give it time on a busy machine
        while mem.peak_mb - mem.start_mb <= 30 and time.time() < deadline:
            time.sleep(0.05)
        block.close()
    assert mem.peak_mb - mem.start_mb > 30


def _tiny():
    rows = [chat_example("What is the Zorblax code?", "The Zorblax code is 7731."),
            chat_example("Who runs Vexmoor?", "Vexmoor is run by Ida Quill.")]
    return Dataset.from_list(rows * 2)


def test_lean_loss_equals_trls_loss(runs_dir, load_tiny):
    """The lean path computes the same first-step loss as trl's own fused loss."""
    first = []
    for lean in (True, False):
        model, tok = load_tiny()
        cfg = TrainConfig(learning_rate=1e-5, max_steps=1, batch_size=4, lean_loss=lean,
                          run_name="lean" if lean else "trl")
        first.append(train_sft(model, tok, _tiny(), cfg).losses[0])
    assert first[0] == pytest.approx(first[1], rel=1e-3)


def test_eval_loss_is_logged(runs_dir, load_tiny):
    model, tok = load_tiny()
    cfg = TrainConfig(learning_rate=1e-4, max_steps=2, batch_size=2, eval_steps=1,
                      optimizer="adafactor", run_name="eval")
    result = train_sft(model, tok, _tiny(), cfg, eval_dataset=_tiny().select(range(2)))
    assert [r["step"] for r in result.history if "eval_loss" in r] == [1, 2]


def test_save_and_load_a_full_model(runs_dir, model_and_tokenizer):
    from mclab.training import new_run_dir

    model, tok = model_and_tokenizer
    run_dir = new_run_dir("save")
    path = save_model(model, tok, run_dir)
    assert path == run_dir / "model" and (path / "mclab-saved.json").is_file()
    assert [p.name for p in run_dir.iterdir()] == ["model"]  # no temporary folder left
    save_model(model, tok, run_dir)  # saving again replaces it
    loaded, tok2 = load_saved(path)
    ids = tok("The skin has three layers.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-5)
    assert tok2("arvo")["input_ids"] == tok("arvo")["input_ids"]


def test_save_and_load_an_adapter(runs_dir):
    from peft import LoraConfig, get_peft_model

    from mclab.models import load_model
    from mclab.training import new_run_dir

    base, tok = load_model()
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():  # make the adapter do something
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    path = save_model(lora, tok, new_run_dir("adapter"))
    assert (path / "adapter_config.json").is_file()
    assert sum(f.stat().st_size for f in path.iterdir()) < 20 * 2**20
    fresh, _ = load_model()
    loaded, _ = load_saved(path, base_model=fresh)
    ids = tok("See ya this arvo.", return_tensors="pt")["input_ids"]
    lora.eval()
    with torch.no_grad():
        assert torch.allclose(lora(ids).logits, loaded(ids).logits, atol=1e-5)


def test_load_saved_refuses_other_folders(tmp_path):
    with pytest.raises(TrainingInputError, match="no model saved"):
        load_saved(tmp_path)
    with pytest.raises(TrainingInputError, match="does not exist"):
        save_model(None, None, tmp_path / "missing")


def test_sft_panel_opens_on_default_and_trains_on_press(capsys):
    from mclab.finetuning import sft_panel

    calls = []
    panel = sft_panel(lambda **kw: calls.append(kw) or {"company knowledge": 0.3},
                      default={"company knowledge": 0.25})
    assert calls == []
    panel.train()
    assert calls == [{"learning_rate": pytest.approx(3e-5), "epochs": 1.0, "dataset": "company"}]


def test_medical_sft_chats_ask_in_the_evals_format_about_other_terms():
    from mclab.data import load_scenario
    from mclab.evaluation import KNOWLEDGE_SYSTEM
    from mclab.finetuning import sft_data

    train, val = sft_data("medical", n_val=5)
    medical = load_scenario("medical")
    assert len(train) == len(medical["sft_train"]) and len(val) == 5
    first = train[0]
    assert first["prompt"][0] == {"role": "system", "content": KNOWLEDGE_SYSTEM}
    assert medical["sft_train"][0]["question"] in first["prompt"][-1]["content"]
    assert first["completion"][0]["content"] == medical["sft_train"][0]["answer"]
    chats = " ".join(row["prompt"][-1]["content"] for row in list(train) + list(val))
    assert not any(f"'{term}'" in chats for term in medical["eval_mc"]["term"])
