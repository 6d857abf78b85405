"""Each method's settings live once (`mclab.recipes`): notebooks and the report read them.

A notebook may turn a recipe's knobs inside a function (a widget, a sweep), never in the
run it teaches and the report repeats: that run takes the recipe as it is.
"""

import ast
import json
from pathlib import Path

import pytest

from mclab import recipes, rl_sweeps
from mclab.methods import METHODS

SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"


def _code(notebook: str) -> ast.Module:
    nb = json.loads((SOLUTIONS / f"{notebook}.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    return ast.parse("\n".join(line for cell in cells for line in cell.splitlines()
                               if not line.lstrip().startswith(("%", "!"))))


def _recipes_read(tree: ast.Module) -> set[str]:
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "recipes"}


def _top_level_calls(tree: ast.Module):
    """Calls outside any function body: the runs a notebook teaches."""
    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.Call):
            yield node
        for child in ast.iter_child_nodes(node):
            yield from visit(child)
    yield from visit(tree)


# a recipe's budgets: the report's (`training`), and 03's shorter ones
TRAINING_FIELDS = ("training", "demo", "forgetting")


def settings_drift(tree: ast.Module) -> list[str]:
    """Top-level trainings that do not take a recipe as it is (empty: none)."""
    problems = []
    for call in _top_level_calls(tree):
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "TrainConfig":
            problems.append(f"line {call.lineno}: TrainConfig(...) typed in the notebook")
        receiver = func.value if isinstance(func, ast.Attribute) else None
        if name == "config" and isinstance(receiver, ast.Attribute) \
                and receiver.attr in TRAINING_FIELDS and call.keywords:
            knobs = ", ".join(k.arg or "**" for k in call.keywords)
            problems.append(f"line {call.lineno}: recipe overridden ({knobs})")
    return problems


TEACHING = sorted({r.notebook for r in recipes.BY_NAME.values() if r.notebook})


@pytest.mark.parametrize("notebook", TEACHING)
def test_notebook_reads_its_recipes(notebook):
    mine = {name for name, r in recipes.BY_NAME.items() if r.notebook == notebook}
    missing = mine - _recipes_read(_code(notebook))
    assert not missing, f"{notebook} does not read recipes {sorted(missing)}"


@pytest.mark.parametrize("notebook", TEACHING)
def test_notebook_trains_with_the_recipes_settings(notebook):
    assert settings_drift(_code(notebook)) == []


def test_the_drift_check_can_fail():
    drifted = ast.parse("cfg = recipes.CPT.training.config('x', learning_rate=1e-3)\n"
                        "other = TrainConfig(learning_rate=1e-3)\n"
                        "def knob(lr):\n    return recipes.CPT.training.config('w', learning_rate=lr)\n"
                        "demo = recipes.CPT.demo.config('d', max_steps=3)\n")
    problems = settings_drift(drifted)
    assert len(problems) == 3 and "learning_rate" in problems[0] and "TrainConfig" in problems[1]
    assert "max_steps" in problems[2]


@pytest.mark.parametrize("quick", ["1", "0"])
def test_every_recipe_gives_a_valid_config_in_both_modes(quick, monkeypatch):
    monkeypatch.setenv("MCLAB_QUICK", quick)
    for name, recipe in recipes.BY_NAME.items():
        for field in TRAINING_FIELDS:
            if hasattr(recipe, field):
                getattr(recipe, field).config(name).validate()
    full, fast = recipes.CPT.training.max_steps.full, recipes.CPT.training.max_steps.quick
    assert recipes.CPT.training.config("x").max_steps == (fast if quick == "1" else full)


def test_every_reported_method_is_built_from_recipes():
    import inspect

    from mclab import methods

    own = {n: f for n, f in vars(methods).items()
           if inspect.isfunction(f) and f.__module__ == methods.__name__}

    def reached(source: str, seen: set) -> str:
        """`source` with the source of every function of methods it calls, transitively."""
        for name, function in own.items():
            if name not in seen and f"{name}(" in source:
                seen.add(name)
                source += reached(inspect.getsource(function), seen)
        return source

    for m in METHODS[1:]:  # the base model has no settings
        assert "recipes." in reached(inspect.getsource(m.run), set()), m.name


def recorded(name: str) -> dict:
    """A recipe's full-mode sweep record (reports/settings/<name>.json), or skip the test."""
    from mclab import sweeps

    record = sweeps.recorded_choice(name)
    if record is None:
        pytest.skip(f"reports/settings/{name}.json not written: run tools/choose_settings.py")
    return record


def test_company_sft_settings_are_the_ones_chosen_on_validation():
    """tools/choose_settings.py chose each company SFT recipe's learning rate with early
    stopping on the held-out wording (reports/settings/<RECIPE>.json, full mode); the recipe
    trains that rate under the same cap, cadence and patience, on the same validation chats.
    "full SFT, 3 paraphrases" has no wording left to validate on: it trains the steps the
    one-wording run chose, at its rate (each fact seen as often, in three wordings)."""
    for name in ("FULL_SFT", "LORA_SFT"):
        record = recorded(name)
        training = getattr(recipes, name).training
        assert training.learning_rate == record["choice"]["learning_rate"], name
        budget = record["budget"]
        assert training.max_steps.full == budget["max_steps"], name
        assert training.eval_steps.full == budget["eval_steps"], name
        assert training.patience == budget["patience"], name
        assert getattr(recipes, name).n_val.full is None, name  # every held-out wording
    chosen = recorded("FULL_SFT")
    three = recipes.FULL_SFT_PARAPHRASES
    assert three.train_on == (0, 1, 2) and three.training.patience == 0
    assert three.training.max_steps.full == chosen["choice_steps"]
    assert three.training.learning_rate == recipes.FULL_SFT.training.learning_rate
    assert three.training.batch_size == recipes.FULL_SFT.training.batch_size


def test_lora_keeps_its_cap_because_a_longer_one_validated_worse():
    """Company LoRA's validation loss was lowest at its cap of 44 steps, in the sweep and in
    every seed. Its two best rates under twice the cap (reports/settings/checks/, the same
    split, cadence and patience) both stopped early above that loss: with a linear schedule
    the cap is part of the schedule, and 44 is the cap validation chose. Fails if the longer
    cap ever validates lower (then the recipe should move to it)."""
    from mclab.sweeps import record_path

    chosen = recorded("LORA_SFT")
    path = record_path("LORA_SFT").parent / "checks" / "LORA_SFT-cap88.json"
    if not path.exists():
        pytest.skip(f"{path} not written: see docs/how-settings-were-chosen.md")
    longer = json.loads(path.read_text())
    assert longer["budget"] == {**chosen["budget"], "max_steps": 2 * chosen["budget"]["max_steps"]}
    assert (longer["training_rows"], longer["validation_rows"]) == (
        chosen["training_rows"], chosen["validation_rows"])
    best = min(t["best_validation_loss"] for t in chosen["trials"])
    assert min(t["best_validation_loss"] for t in longer["trials"]) > best
    assert chosen["choice"]["learning_rate"] in {t["setting"]["learning_rate"]
                                                 for t in longer["trials"]}
    assert recipes.LORA_SFT.training.max_steps.full == chosen["budget"]["max_steps"]


def _stops_on_the_sweeps_split(name: str, record: dict):
    """The recipe's report row trains on the split its sweep validated on, until that
    validation loss stops falling, under a cap at least the sweep's: a budget that validation
    ends, not the cap."""
    from mclab.sweeps import data

    recipe = getattr(recipes, name)
    train, val = data(name, recipe)
    assert (len(train), len(val)) == (record["training_rows"], record["validation_rows"]), name
    training = recipe.training
    assert training.patience >= 1 and training.eval_steps.full >= 1, name
    assert training.max_steps.full >= record["budget"]["max_steps"], name


@pytest.mark.parametrize("name", ["LOCAL_SFT", "STYLE_SFT"])
def test_style_sft_rate_is_the_one_chosen_on_validation(name, monkeypatch):
    """tools/choose_settings.py trained each rate on the training rewrites with every 8th
    pair held out, with the recipe's early stopping and cap (reports/settings/<name>.json):
    05's LoRA (LOCAL_SFT, also 06's LoRA) and 04's full-weight style SFT (STYLE_SFT, also
    06's full SFT). The recipe trains the chosen rate on the same split."""
    monkeypatch.setenv("MCLAB_QUICK", "0")
    record = recorded(name)
    training = getattr(recipes, name).training
    assert training.learning_rate == record["choice"]["learning_rate"], name
    _stops_on_the_sweeps_split(name, record)
    # swept under the recipe's own budget: the chosen trial is the recipe's training run
    assert record["budget"] == {"max_steps": training.max_steps.full,
                                "eval_steps": training.eval_steps.full,
                                "patience": training.patience}, name
    rates = sorted(t["setting"]["learning_rate"] for t in record["trials"]
                   if "learning_rate" in t["setting"])
    assert rates[0] < training.learning_rate < rates[-1], name  # the rate is bracketed
    lora = getattr(getattr(recipes, name), "lora", None)
    if lora is not None:  # rank and targets: the chosen trial's (a rate trial: the recipe's)
        chosen = record["choice"]
        assert lora.r == chosen.get("r", lora.r) and lora.alpha == chosen.get("alpha", lora.alpha)
        assert list(lora.targets) == list(chosen.get("targets", lora.targets))
        ranks = {t["setting"].get("r", lora.r) for t in record["trials"]}
        assert len(ranks) == 1 or min(ranks) < lora.r < max(ranks)  # the rank is bracketed


def test_06_trains_the_style_recipes_of_04_and_05():
    """06's LoRA and full SFT are 05's and 04's style recipes (one epoch in 06): their
    settings were chosen once, by those recipes' sweeps."""
    assert recipes.STYLE_LORA.training == recipes.LOCAL_SFT.training
    assert recipes.STYLE_LORA.lora == recipes.LOCAL_SFT.lora
    assert recipes.STYLE_FULL.training == recipes.STYLE_SFT.training


def test_adapter_settings_are_the_ones_chosen_on_validation(monkeypatch):
    """tools/choose_settings.py BOTTLENECK trained each width x rate on 06's training
    rewrites and scored it on the 30 validation rewrites of `finetuning.style_split`
    (reports/settings/BOTTLENECK.json). The recipe trains the chosen pair on the same split,
    with early stopping."""
    monkeypatch.setenv("MCLAB_QUICK", "0")
    record = recorded("BOTTLENECK")
    recipe = recipes.BOTTLENECK
    assert record["choice"] == {"size": recipe.size, "learning_rate": recipe.training.learning_rate}
    _stops_on_the_sweeps_split("BOTTLENECK", record)


def test_one_pass_is_the_recipe_without_validation():
    """06 compares the adapters at one epoch each (`Training.one_pass`): only the budget
    changes, never the rate or the batches."""
    recipe = recipes.PREFIX.training
    once = recipe.one_pass()
    assert (once.max_steps.full, once.epochs, once.eval_steps, once.patience) == (0, 1, 0, 0)
    assert once.max_steps.quick == recipe.max_steps.quick  # quick mode stays a few steps
    assert once.learning_rate == recipe.learning_rate and once.batch_size == recipe.batch_size
    assert recipe.patience > 0  # the report's row itself stops on validation


def test_prefix_settings_are_the_ones_chosen_on_validation(monkeypatch):
    """tools/choose_settings.py PREFIX chose the rate and the number of virtual tokens on the
    same validation rewrites (reports/settings/PREFIX.json); the recipe, and the report row's
    name, carry the choice, and the row trains on that split with early stopping."""
    from mclab import methods

    monkeypatch.setenv("MCLAB_QUICK", "0")
    record = recorded("PREFIX")
    recipe = recipes.PREFIX
    assert record["choice"] == {"virtual_tokens": recipe.virtual_tokens,
                                "learning_rate": recipe.training.learning_rate}
    assert record["validation_rows"] == recipe.n_val.full
    assert f"({recipe.virtual_tokens} tokens)" in methods.PREFIX_NAME
    tried = {t["setting"]["virtual_tokens"] for t in record["trials"]}
    assert min(tried) < recipe.virtual_tokens < max(tried)  # the length is bracketed
    _stops_on_the_sweeps_split("PREFIX", record)


@pytest.mark.parametrize("name", ["MEDICAL_SFT", "CPT"])
def test_medical_and_cpt_rates_are_the_ones_chosen_on_validation(name):
    """tools/choose_settings.py swept each rate with the recipe's own early stopping and cap
    (reports/settings/<name>.json): medical SFT on sft_val.jsonl's chats, CPT on held-back
    dermatology paragraphs. The recipe trains the chosen rate under the same budget, the
    rate is bracketed by the grid, and 03's demo takes the same rate for fewer steps."""
    record = recorded(name)
    recipe = getattr(recipes, name)
    training = recipe.training
    assert training.learning_rate == record["choice"]["learning_rate"]
    assert record["budget"] == {"max_steps": training.max_steps.full,
                                "eval_steps": training.eval_steps.full,
                                "patience": training.patience}
    rates = sorted(t["setting"]["learning_rate"] for t in record["trials"])
    assert rates[0] < training.learning_rate < rates[-1]
    demo = recipe.demo
    assert demo.learning_rate == training.learning_rate
    assert demo.batch_size == training.batch_size and demo.max_length == training.max_length
    assert demo.max_steps.full <= training.max_steps.full


@pytest.mark.parametrize("name", ["DPO", "GRPO"])
def test_rl_settings_are_the_ones_chosen_on_validation(name):
    """tools/choose_settings.py trained each DPO / GRPO setting from the local SFT model with
    the row's own early stopping and cap, and chose the highest locality on the validation
    rewrites (reports/settings/<name>.json, `mclab.rl_sweeps`). The recipe trains the chosen
    rate (and DPO's beta) under the same budget; 05's demo takes them for fewer steps."""
    record = recorded(name)
    recipe = getattr(recipes, name)
    training = recipe.training
    assert training.learning_rate == record["choice"]["learning_rate"]
    if name == "DPO":
        assert recipe.beta == record["choice"]["beta"]
    assert record["budget"] == {"max_steps": training.max_steps.full,
                                "eval_steps": training.eval_steps.full,
                                "patience": training.patience}
    chosen = record["trials"][rl_sweeps.choose(record["trials"])]  # the record's own rule
    assert (record["choice"], record["choice_steps"]) == (chosen["setting"], chosen["best_step"])
    rates = sorted({t["setting"]["learning_rate"] for t in record["trials"]})
    assert len(rates) >= 3, "a rate is chosen from at least three"
    if not rates[0] < training.learning_rate < rates[-1]:  # the rate is bracketed, or
        # it is the lowest rate tried and no setting beats the start itself on the paired
        # test: a lower rate only keeps the model nearer a start that nothing beats
        assert training.learning_rate == rates[0], "the best rate is at the grid's top edge"
        for trial in record["trials"]:
            test = rl_sweeps.against_start(record, trial)
            assert not (test.p_value < 0.05 and test.difference.estimate > 0), (
                f"{trial['setting']} beats the start: the rate must be bracketed")
    demo = recipe.demo
    assert (demo.learning_rate, demo.batch_size) == (training.learning_rate, training.batch_size)
    assert demo.max_steps.full <= training.max_steps.full
