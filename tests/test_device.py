"""One place decides the device and the training precision, and every tensor the package
feeds a model is built on that model's device (issue 16.1).

No GPU here: what a CPU can check is that a bad MCLAB_DEVICE fails clearly, that no module
builds a model input without a device (an AST check, which itself is shown to fail on a
source that breaks the rule), and that the scorers, generation and adapter helpers work on
a model in bfloat16 and agree with fp32 (`test_bf16.py`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import mclab
from mclab.device import ALLOWED, DeviceError, choose_device, model_device

# ---------------------------------------------------------------- MCLAB_DEVICE


def test_auto_is_the_default_and_picks_the_cpu_without_cuda(monkeypatch):
    monkeypatch.delenv("MCLAB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    choice = choose_device()
    assert choice.device == torch.device("cpu") and not choice.bf16
    assert "no CUDA device" in choice.reason and "bf16 needs a CUDA GPU" in choice.dtype_reason
    assert choice.describe().startswith("cpu: ") and "; fp32: " in choice.describe()


def test_auto_takes_a_cuda_gpu_and_bf16_where_it_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    for supported, dtype in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, s=supported: s)
        choice = choose_device("auto")
        assert choice.device.type == "cuda" and choice.train_dtype == dtype
        assert "Tesla T4" in choice.reason


def test_mclab_device_cpu_is_the_cpu_even_beside_a_gpu(monkeypatch):
    monkeypatch.setenv("MCLAB_DEVICE", " CPU ")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    choice = choose_device()
    assert choice.device == torch.device("cpu") and not choice.bf16


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "cuda:", "tpu", "0"])
def test_a_bad_value_names_the_variable_and_the_allowed_values(value, monkeypatch):
    monkeypatch.setenv("MCLAB_DEVICE", value)
    with pytest.raises(DeviceError, match="MCLAB_DEVICE") as err:
        choose_device()
    assert ALLOWED in str(err.value)


@pytest.mark.parametrize("value, count", [("cuda", 0), ("cuda:1", 1)])
def test_a_device_this_machine_lacks_is_a_clear_error(value, count, monkeypatch):
    monkeypatch.setenv("MCLAB_DEVICE", value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(DeviceError, match=f"MCLAB_DEVICE={value} but .*Fix: unset MCLAB_DEVICE"):
        choose_device()


def test_a_bad_value_fails_before_any_model_loads(monkeypatch):
    from mclab import models
    from mclab.config import setup

    monkeypatch.setenv("MCLAB_DEVICE", "gpu")
    monkeypatch.setattr(models, "prefetch_model", lambda *a: pytest.fail("a model was resolved"))
    for call in (setup, models.load_model, models.load_embedder):
        with pytest.raises(DeviceError, match="MCLAB_DEVICE"):
            call()


def test_the_trainer_gets_the_device_and_precision_chosen(monkeypatch, tmp_path):
    from trl import SFTConfig

    from mclab.training import TrainConfig, cpu_args

    monkeypatch.setenv("MCLAB_DEVICE", "cpu")
    args = cpu_args(SFTConfig, TrainConfig(), tmp_path)
    assert args.use_cpu and not args.bf16 and not args.dataloader_pin_memory


def test_load_model_and_the_embedder_are_on_the_chosen_device(load_tiny, embedder):
    model, _ = load_tiny()
    assert model_device(model) == choose_device().device  # the CPU here; a GPU where there is one
    assert embedder.device.type == choose_device().device.type


def test_doctor_prints_the_device_the_dtype_and_why(capsys, monkeypatch):
    from mclab.__main__ import doctor

    monkeypatch.setenv("MCLAB_DEVICE", "cpu")
    doctor()
    out = capsys.readouterr().out
    assert "device        cpu (set by MCLAB_DEVICE=cpu)" in out
    assert "train dtype   fp32 (bf16 needs a CUDA GPU with bf16 support)" in out
    monkeypatch.setenv("MCLAB_DEVICE", "gpu")
    assert doctor() == 1
    out = capsys.readouterr().out
    assert "device        UNUSABLE" in out and "MCLAB_DEVICE='gpu' is not a device" in out


# ---------------------------------------------------------------- no model input without a device

TENSOR_MAKERS = {"tensor", "as_tensor", "zeros", "ones", "full", "arange", "empty", "rand",
                 "randn", "randint", "linspace", "eye", "LongTensor", "FloatTensor"}

# (file under mclab/, function): why that function may build tensors on the CPU, e.g. a
# statistic computed with torch that never meets a model. Empty today: the package's only
# torch-built numbers are model inputs (its statistics use numpy).
CPU_ALLOWED: dict[tuple[str, str], str] = {
    ("adapters.py", "time_generation"): "one prompt for several models: run() moves it to each",
    ("checks/prompting.py", "check_greedy"): "tokenized, then ['input_ids'].to(model's device)",
    ("checks/finetuning.py", "_as_rows"): "the student's labels, compared on the CPU; no model",
    ("checks/pretraining.py", "check_causal_lm_loss"): "hand-made logits for a loss; no model",
    ("checks/rl.py", "check_dpo_from_logps"): "four log-probabilities for a loss; no model",
    ("compat.py", "trl_dpo_loss"): "given log-probabilities through trl's loss; no model",
}


def _builds_a_tensor(call: ast.Call) -> bool:
    func = call.func
    made_by_torch = (isinstance(func, ast.Attribute) and func.attr in TENSOR_MAKERS
                     and isinstance(func.value, ast.Name) and func.value.id == "torch")
    tokenized = any(k.arg == "return_tensors" and isinstance(k.value, ast.Constant)
                    and k.value.value == "pt" for k in call.keywords)
    return made_by_torch or tokenized


def tensors_without_device(source: str) -> list[tuple[str, int]]:
    """(enclosing function, line) of each tensor built with neither `device=` nor `.to(...)`."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _builds_a_tensor(node)):
            continue
        if any(k.arg == "device" for k in node.keywords):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.attr == "to" and \
                isinstance(parents.get(parent), ast.Call):
            continue
        scope = parent
        while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = parents.get(scope)
        found.append((scope.name if scope else "<module>", node.lineno))
    return found


def test_the_check_catches_a_tensor_built_without_a_device():
    bad = ("def score(model, tok, seqs):\n"
           "    ids = torch.tensor(seqs)\n"
           "    batch = tok(['a'], return_tensors='pt')\n"
           "    return model(input_ids=ids, **batch)\n")
    good = ("def score(model, tok, seqs):\n"
            "    ids = torch.tensor(seqs, device=model.device)\n"
            "    batch = tok(['a'], return_tensors='pt').to(model.device)\n"
            "    mask = torch.ones_like(ids)\n"
            "    return model(input_ids=ids, attention_mask=mask, **batch)\n")
    assert tensors_without_device(bad) == [("score", 2), ("score", 3)]
    assert tensors_without_device(good) == []


def offenders(root: Path, allowed: dict) -> list[str]:
    """`file:line in function()` of each tensor under `root` built without a device."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        found += [f"{name}:{line} in {func}()" for func, line in
                  tensors_without_device(path.read_text()) if (name, func) not in allowed]
    return found


def test_every_tensor_the_package_builds_has_a_device():
    found = offenders(Path(mclab.__file__).parent, CPU_ALLOWED)
    assert not found, (
        "tensors built without a device (pass device=model_device(model), or .to() it; a "
        "legitimate CPU tensor goes in CPU_ALLOWED with its reason): " + ", ".join(found))


def test_an_allowed_cpu_tensor_is_let_through_and_nothing_else(tmp_path):
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "boot.py").write_text(
        "def resample(x):\n    return torch.randint(0, len(x), (len(x),))\n"
        "def score(model, x):\n    return model(torch.tensor(x))\n")
    allowed = {("stats/boot.py", "resample"): "indices for a bootstrap; no model sees them"}
    assert offenders(tmp_path, allowed) == ["stats/boot.py:4 in score()"]
