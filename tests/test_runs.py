"""Run folders: the disk check before a save, and pruning old runs."""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mclab import runs
from mclab.__main__ import main
from mclab.training import new_run_dir, save_model, warn_if_no_room_to_save


def _tiny_model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def _weights_bytes(folder):
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def test_model_bytes_matches_what_save_pretrained_writes(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = _tiny_model()
    model.save_pretrained(tmp_path / "full")
    header = 16 * 1024  # safetensors' json header, not counted by model_bytes
    assert 0 <= _weights_bytes(tmp_path / "full") - runs.model_bytes(model) < header
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    assert 0 <= _weights_bytes(tmp_path / "adapter") - runs.model_bytes(peft_model) < header
    assert runs.model_bytes(peft_model) < runs.model_bytes(model) / 10
    peft_model.requires_grad_(False)  # a loaded, frozen adapter still has to be written
    assert 0 <= _weights_bytes(tmp_path / "adapter") - runs.model_bytes(peft_model) < header


def test_save_on_a_full_disk_fails_before_writing(runs_dir, monkeypatch):
    run_dir = new_run_dir("full-disk")
    monkeypatch.setattr(runs, "free_bytes", lambda folder: 1024 * 1024)
    with pytest.raises(runs.DiskSpaceError, match=r"needs about .* MB on disk but only 1 MB"
                       r"[\s\S]*mclab runs --keep 1"):
        save_model(_tiny_model(), None, run_dir)
    assert list(run_dir.iterdir()) == []  # nothing half-written
    with pytest.warns(UserWarning, match="Training goes on"):
        warn_if_no_room_to_save(_tiny_model())
    monkeypatch.undo()
    assert (save_model(_tiny_model(), None, run_dir) / "model.safetensors").is_file()


def _fake_run(root, stamp, name, config_name=None):
    folder = root / f"{stamp}-{name}"
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"x" * 1000)
    if config_name:
        (folder / "train_config.json").write_text(json.dumps({"run_name": config_name}))
    return folder


def test_prune_keeps_the_newest_runs_of_each_name(runs_dir):
    a1 = _fake_run(runs_dir, "20261129-100000", "sft", "sft")
    a2 = _fake_run(runs_dir, "20261129-110000", "sft", "sft")
    a3 = _fake_run(runs_dir, "20261129-110000", "sft-1", "sft")  # same second: suffixed
    b1 = _fake_run(runs_dir, "20261129-100500", "lora-r8")  # no config yet (interrupted)
    c1 = _fake_run(runs_dir, "20261129-100500", "cpt-2", "cpt-2")  # a name ending in a digit
    (runs_dir / "notes").mkdir()  # not a run folder: never touched
    listed = runs.list_runs()
    assert [r.name for r in listed] == ["sft", "cpt-2", "lora-r8", "sft", "sft"]
    assert runs.prune_runs(1, dry_run=True) and a1.exists()
    gone = runs.prune_runs(1)
    assert sorted(r.path for r in gone) == [a1, a2]
    assert all(p.exists() for p in (a3, b1, c1, runs_dir / "notes"))
    assert [r.path for r in runs.prune_runs(0)] == [c1, b1, a3]
    assert [p.name for p in runs_dir.iterdir()] == ["notes"]
    with pytest.raises(ValueError, match="keep must be >= 0"):
        runs.prune_runs(-1)


def test_runs_command_lists_and_prunes(runs_dir, capsys):
    _fake_run(runs_dir, "20261129-100000", "sft", "sft")
    newest = _fake_run(runs_dir, "20261129-110000", "sft", "sft")
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "2 run folder(s)" in out and newest.name in out and "MB free" in out
    assert main(["runs", "--keep", "1", "--dry-run"]) == 0
    assert "would delete 20261129-100000-sft" in capsys.readouterr().out
    assert len(runs.list_runs()) == 2
    assert main(["runs", "--keep", "1"]) == 0
    assert "deleted 1 run folder(s)" in capsys.readouterr().out
    assert [r.path for r in runs.list_runs()] == [newest]
    assert main(["runs", "--keep", "-1"]) == 2
    assert "error: --keep must be >= 0, got -1" in capsys.readouterr().err


def test_maxrss_is_read_in_each_systems_unit(monkeypatch):
    """`ru_maxrss` is kilobytes on Linux and bytes on macOS: 512 MB either way."""
    from types import SimpleNamespace

    from mclab.measure import maxrss_mb

    monkeypatch.setattr("sys.platform", "linux")
    assert maxrss_mb(SimpleNamespace(ru_maxrss=512 * 1024)) == 512
    monkeypatch.setattr("sys.platform", "darwin")
    assert maxrss_mb(SimpleNamespace(ru_maxrss=512 * 2**20)) == 512
