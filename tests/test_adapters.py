"""Bottleneck adapters built from scratch (`mclab.adapters`): identity at the start, only the
adapters train, the parameter formula, removal restores the base, saving round-trips."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mclab import adapters as ad
from mclab.training import TrainingInputError


def _tiny():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


IDS = torch.randint(0, 128, (2, 7), generator=torch.Generator().manual_seed(1))


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def _perturb(model, std=0.05):
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".bottleneck.up." in name:
                p.normal_(0, std)


def test_module_is_the_identity_at_init_and_residual_after():
    module = ad.BottleneckAdapter(8, 3)
    h = torch.randn(2, 5, 8)
    assert torch.equal(module(h), h)
    torch.nn.init.normal_(module.up.weight)
    expected = h + module.up(torch.nn.functional.silu(module.down(h)))
    assert torch.allclose(module(h), expected)
    assert not torch.equal(module(h), h)


@pytest.mark.parametrize("where", [("attention",), ("mlp",), ("attention", "mlp")])
def test_identity_at_init_and_removal_restores_the_base(where):
    model = _tiny()
    base = _logits(model)
    ad.add_adapters(model, 4, where)
    assert torch.equal(_logits(model), base)  # up projection starts at zero: exactly the base
    _perturb(model)
    assert not torch.allclose(_logits(model), base)  # the hooks really sit in the forward pass
    ad.remove_adapters(model)
    assert torch.equal(_logits(model), base)
    assert not any(".bottleneck." in n for n, _ in model.named_parameters())


def test_only_adapters_train_and_the_count_formula():
    model = _tiny()
    total = sum(p.numel() for p in model.parameters())
    ad.add_adapters(model, 4, ("attention", "mlp"))
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".bottleneck." in n for n in trainable)
    d, layers = 32, 2
    assert sum(trainable.values()) == layers * 2 * (2 * d * 4 + 4 + d)
    assert sum(trainable.values()) == ad.adapter_parameter_count(model, 4, ("attention", "mlp"))
    assert sum(p.numel() for p in model.parameters()) == total + sum(trainable.values())
    assert ad.adapter_parameter_count(model, 4, ("mlp",)) == sum(trainable.values()) // 2


def test_loss_goes_down_on_one_batch_and_base_weights_stay():
    model = _tiny().train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    ad.add_adapters(model, 8)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    losses = []
    for _ in range(15):
        loss = model(input_ids=IDS, labels=IDS).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n


def test_save_and_load_round_trip(tmp_path):
    model = _tiny()
    ad.add_adapters(model, 4, ("mlp",))
    _perturb(model)
    adapted = _logits(model)
    folder = ad.save_adapters(model, tmp_path / "adapters")
    files = {p.name for p in folder.iterdir()}
    assert files == {ad.WEIGHTS, ad.CONFIG}  # the adapters only, not the base model
    assert ad.folder_size_mb(folder) * 2**20 < 4 * ad.adapter_parameter_count(model, 4, ("mlp",)) \
        + 4096
    fresh = ad.load_adapters(_tiny(), folder)
    assert torch.equal(_logits(fresh), adapted)


@pytest.mark.parametrize("size, where, message", [
    (0, ("mlp",), "positive integer"), (4, (), "adapters go after"),
    (4, ("ffn",), "adapters go after")])
def test_bad_settings_raise_before_changing_the_model(size, where, message):
    model = _tiny()
    with pytest.raises(TrainingInputError, match=message):
        ad.add_adapters(model, size, where)
    assert not ad.has_adapters(model) and all(p.requires_grad for p in model.parameters())


def test_twice_or_nothing_to_remove_is_refused(tmp_path):
    model = _tiny()
    with pytest.raises(TrainingInputError, match="no bottleneck adapters"):
        ad.remove_adapters(model)
    with pytest.raises(TrainingInputError, match="no bottleneck adapters to detach"):
        with ad.detached(model):
            pass
    with pytest.raises(TrainingInputError, match="holds no adapters"):
        ad.load_adapters(model, tmp_path)
    ad.add_adapters(model, 4)
    with pytest.raises(TrainingInputError, match="already has"):
        ad.add_adapters(model, 4)


def test_trains_through_the_shared_path_and_generates(load_tiny, runs_dir):
    from mclab.training import TrainConfig, chat_dataset, chat_example

    model, tok = load_tiny()
    base = model(input_ids=IDS).logits.detach()
    data = chat_dataset([chat_example("Say hi", "G'day mate")] * 4)
    cfg = TrainConfig(learning_rate=1e-2, max_steps=3, batch_size=2, run_name="adapter")
    result, row = ad.train_bottleneck(model, tok, data, cfg, 4, ("attention", "mlp"),
                                      ["Say hi"], ["G'day mate"])
    assert result.losses[-1] < result.losses[0]
    assert row["trainable"] == ad.adapter_parameter_count(model, 4)
    assert (result.run_dir / "model" / ad.WEIGHTS).is_file()
    assert row["val_loss"] > 0 and row["adapter_kb"] > 0
    trained = result.model(input_ids=IDS).logits.detach()
    assert not torch.allclose(trained, base)
    with ad.detached(result.model) as bare:  # 06's stand-in for a merged model: the base's work
        assert torch.allclose(bare(input_ids=IDS).logits, base)
    assert torch.equal(result.model(input_ids=IDS).logits, trained)  # the adapters back on
    times = ad.time_generation({"adapted": result.model,
                                "detached": lambda: ad.detached(result.model)}, tok, "Say hi",
                               new_tokens=3, repeats=2)
    for t in times.values():
        assert 0 < t["min"] <= t["median"] <= t["max"]
    assert torch.equal(result.model(input_ids=IDS).logits, trained)
    ad.remove_adapters(result.model)
    assert torch.allclose(result.model(input_ids=IDS).logits, base)


def test_report_storage_is_the_adapters_not_the_model():
    from types import SimpleNamespace

    from mclab.methods import training_costs

    model = ad.add_adapters(_tiny(), 4)
    result = SimpleNamespace(model=model, seconds=1.5)
    costs = training_costs(result, save=lambda p: ad.save_adapters(model, p))
    n = ad.adapter_parameter_count(model, 4)
    assert costs["trainable_params"] == n and costs["train_seconds"] == 1.5
    assert n * 4 <= costs["storage_mb"] * 2**20 < n * 4 + 8192  # fp32 weights + headers
    full = training_costs(result)["storage_mb"]  # save_pretrained: every weight
    assert full > 2 * costs["storage_mb"]
