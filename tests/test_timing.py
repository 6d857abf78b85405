"""The timing pass behind the report's ms_per_answer (issue 13): the same questions for
every method in its serving form, a warm-up, interleaved rounds, the median with its range,
and no number where other work shared the machine."""

import json
import subprocess
import sys
import time

import pytest
from datasets import Dataset

from mclab import methods, timing


def _round(ms, other=0.0, steal=0.0):
    return {"ms": ms, "other_cores": other, "steal_cores": steal}


def test_a_clean_method_gets_its_median_and_range():
    row = timing.summarize([_round(30.0), _round(10.0), _round(20.0, other=0.2)])
    assert row["ms_per_answer"] == 20.0 and (row["min_ms"], row["max_ms"]) == (10.0, 30.0)
    assert row["why_null"] is None


@pytest.mark.parametrize("kind", ["other", "steal"])
def test_a_shared_round_leaves_no_number_and_says_why(kind):
    row = timing.summarize([_round(10.0), _round(11.0, **{kind: 0.8}), _round(12.0)])
    assert row["ms_per_answer"] is None
    assert "0.80 cores" in row["why_null"] and "quiet machine" in row["why_null"]
    assert row["median_ms"] == 11.0  # kept for the record, not reported


def test_the_meter_sees_another_process_using_a_core():
    """A process that is not ours spins while we sleep: the window counts it as other work
    (other pytest workers can only add to it)."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        with timing.Meter() as meter:
            time.sleep(1.0)
    finally:
        spin.kill()
        spin.wait()
    assert meter.window.seconds >= 1.0
    assert meter.window.other_cores > timing.MAX_OTHER_CORES


def test_rounds_are_interleaved_after_one_warm_up(monkeypatch):
    order = []

    def time_once(method, ctx, sets):
        order.append(method.name)
        return _round(float(len(order)))

    monkeypatch.setattr(timing, "time_once", time_once)
    monkeypatch.setattr(methods, "Context", lambda parts: type(
        "Ctx", (), {"sets": {"company_mc": Dataset.from_list([{"q": i} for i in range(40)])}})())
    record = timing.timing_pass(["base", "LoRA r=16"], items=24, repeats=2, progress=False)
    assert order == ["base", "LoRA r=16"] * 3  # warm-up, round 1, round 2
    assert record["items"] == 24 and record["repeats"] == 2 and record["warm_up_rounds"] == 1
    assert [r["ms"] for r in record["methods"]["base"]["rounds"]] == [3.0, 5.0]  # no warm-up
    with pytest.raises(ValueError, match="no method named"):
        timing.timing_pass(["bogus"], progress=False)


def test_the_report_takes_the_pass_times_and_the_ensemble_adds_them(tmp_path, monkeypatch):
    from mclab import report_table as rt

    monkeypatch.setenv("MCLAB_QUICK", "1")
    (tmp_path / "rows").mkdir()
    members = list(rt.ENSEMBLE)
    for i, name in enumerate(members + ["base"]):
        row = {"method": name, "family": "x", "trained_on": "-", "company_knowledge": 0.5,
               "company_probs": [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]],
               "company_answers": [0, 1], "ms_per_answer": 999.0, "trainable_params": 0,
               "train_seconds": 0.0, "peak_memory_mb": 1.0, "storage_mb": 0.0,
               "mode": "quick"}
        (tmp_path / "rows" / f"{rt.slug(name)}.json").write_text(json.dumps(row))
    untimed = rt.write_report(tmp_path)
    assert {r["ms_per_answer"] for r in untimed["rows"]} == {999.0, 3 * 999.0}
    assert "not a dedicated timing pass" in (tmp_path / "comparison.md").read_text()
    pass_ = {name: timing.summarize([_round(10.0 * (i + 1))] * 3)
             for i, name in enumerate(members)}
    pass_["base"] = timing.summarize([_round(5.0, other=1.5)] * 3)
    record = {"mode": "quick", "date": "today", "machine": "m", "threads": 2, "items": 24,
              "repeats": 3, "warm_up_rounds": 1, "load_average_before": [0.1, 0, 0],
              "load_average_after": [0.2, 0, 0], "methods": pass_}
    (tmp_path / "timing.json").write_text(json.dumps(record))
    report = rt.write_report(tmp_path)
    rows = {r["method"]: r for r in report["rows"]}
    assert rows[members[1]]["ms_per_answer"] == 20.0
    assert rows["base"]["ms_per_answer"] is None  # shared machine: no number
    assert rows[rt.ENSEMBLE_NAME]["ms_per_answer"] == 60.0  # 10 + 20 + 30
    assert rows[rt.ENSEMBLE_NAME]["ms_per_answer_range"] == [60.0, 60.0]
    assert report["timing"]["items"] == 24 and "methods" not in report["timing"]
    assert "one timing pass on today" in (tmp_path / "comparison.md").read_text()


@pytest.fixture
def tiny_ctx(load_tiny, monkeypatch):
    """The report's context with the tiny model as the base: builds in seconds."""
    monkeypatch.setattr(methods.Context, "base", lambda self: load_tiny())
    return methods.Context(parts=("company",))


def test_every_method_serves_a_company_question(tiny_ctx):
    """Each serving form (prompt, examples, retrieval, each adapter kind) answers through the
    shared scorer with its own context and system prompt."""
    from mclab.scorecard import score_model

    sets = {**tiny_ctx.sets, "company_mc": list(tiny_ctx.sets["company_mc"])[:2]}
    forms = {}
    for method in methods.METHODS:
        serving = method.serving(tiny_ctx)
        card = score_model(serving.model, serving.tokenizer, tiny_ctx.embedder, sets,
                           parts=("company",), **serving.score_kwargs)
        assert card.ms_per_answer > 0 and len(card.company.probs) == 2, method.name
        forms[method.name] = (type(serving.model).__name__, sorted(serving.score_kwargs))
    assert forms["full SFT"] == forms["base"]  # the same computation
    assert forms["LoRA r=16"][0] == "PeftModelForCausalLM"
    assert "company_context" in forms[methods.recipes.RAG.method_name][1]
    assert "company_context" in forms["few-shot (4 other facts)"][1]
    assert forms["prompt engineering"][1] == ["company_system"]


def test_retrieval_over_training_qa_reads_k_examples_of_the_own_fact(tiny_ctx):
    """Retrieval over the training Q&A runs at few-shot's k and at RAG's (the same-k
    comparison): k pairs in front of each question, the question's own fact allowed; true
    few-shot never shows its own fact. Both retrieval rows are company rows only (on the
    local style they would read the few-shot row's prompts: a duplicate, not a method)."""
    from mclab import recipes
    from mclab.report_table import QA_RETRIEVAL, QA_RETRIEVAL_SAME_K

    by_name = {m.name: m for m in methods.METHODS}
    items = list(tiny_ctx.sets["company_mc"])[:3]
    facts = {r["question"]: r["fact_id"] for r in tiny_ctx.company["train_qa"]}
    for name, k in ((QA_RETRIEVAL, recipes.FEW_SHOT.shots), (QA_RETRIEVAL_SAME_K, recipes.RAG.k)):
        assert by_name[name].trained_on == "company" and by_name[name].family == "retrieval"
        contexts = by_name[name].serving(tiny_ctx).score_kwargs["company_context"](items)
        assert [c.count("\nQ: ") for c in contexts] == [k] * len(items)
        # the best match comes last: for these questions, a training Q&A of the own fact
        best = [c.rsplit("\nQ: ", 1)[1].split("\nA: ")[0] for c in contexts]
        assert [facts[q] for q in best] == [it["fact_id"] for it in items], name
    shots = by_name["few-shot (4 other facts)"].serving(tiny_ctx).score_kwargs["company_context"]
    assert not any(f"Q: {q}\n" in c for it, c in zip(items, shots(items))
                   for q, f in facts.items() if f == it["fact_id"])


@pytest.mark.parametrize("name", ["LoRA r=16", methods.PREFIX_NAME,
                                  "adapter layers (bottleneck)"])
def test_an_adapters_serving_form_has_the_reported_rows_shapes(name, model_and_tokenizer,
                                                               monkeypatch):
    """The form the pass times trains as many parameters as the committed row did: the same
    adapter, only its values differ (which change no work)."""
    from pathlib import Path

    from mclab.models import count_parameters, load_model
    from mclab.report_table import slug

    path = Path(__file__).resolve().parent.parent / "reports" / "rows" / f"{slug(name)}.json"
    row = json.loads(path.read_text())  # the committed full-mode row
    monkeypatch.setattr(methods.Context, "base", lambda self: load_model())
    ctx = methods.Context.__new__(methods.Context)  # no eval sets needed to build the form
    ctx.embedder = None
    serving = methods.METHODS[[m.name for m in methods.METHODS].index(name)].serving(ctx)
    model = serving.model
    if name == methods.PREFIX_NAME:
        trainable = sum(p.numel() for p in model.prompt_encoder.parameters())
    else:
        trainable = count_parameters(model, trainable_only=True)
    assert trainable == row["trainable_params"]
