"""Several training seeds per trained row (issue 13): the report runs them (resumable, only
rows that train), and the table reports their mean with the seeds' range, intervals and
paired tests over the per-item means."""

import json

import numpy as np
import pytest

from mclab import report, seeds
from mclab import report_table as rt

PROBS_RIGHT, PROBS_WRONG = [0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]


def _row(name, seed, right, trained=True, **extra):
    """A row whose method answers question i right where right[i] (answer 0 each time)."""
    return {"method": name, "family": "x", "trained_on": "company", "seed": seed,
            "company_probs": [PROBS_RIGHT if r else PROBS_WRONG for r in right],
            "company_answers": [0] * len(right), "company_knowledge": float(np.mean(right)),
            "trainable_params": 1000 if trained else 0, "train_seconds": 1.0,
            "peak_memory_mb": 1.0, "storage_mb": 0.0, "ms_per_answer": 1.0, "mode": "quick",
            **extra}


def test_seeds_are_averaged_item_by_item():
    first = _row("full SFT", 0, [1, 1, 0, 0], locality_items=[0.2, 0.4],
                 medical_nll=[10.0, 20.0], medical_tokens=[5, 10], locality=0.3,
                 style_rate=0.5, meaning=0.8, false_abstain=None)
    second = _row("full SFT", 1, [1, 0, 0, 1], locality_items=[0.4, 0.0],
                  medical_nll=[12.0, 18.0], medical_tokens=[5, 10], locality=0.2,
                  style_rate=1.0, meaning=0.6, false_abstain=0.25)
    row = seeds.combine(first, [second])
    assert row["seeds"] == [0, 1]
    assert row["seed_items"]["company"] == [1.0, 0.5, 0.0, 0.5]
    assert row["company_knowledge"] == 0.5 and row["company_knowledge_seeds"] == [0.5, 0.5]
    assert row["locality_items"] == pytest.approx([0.3, 0.2])
    assert row["locality"] == pytest.approx(0.25)
    assert row["locality_seed_range"] == pytest.approx([0.2, 0.3])
    assert row["medical_perplexity"] == pytest.approx(np.exp(30 / 15))
    assert row["medical_perplexity_seeds"] == pytest.approx([np.exp(2.0), np.exp(2.0)])
    # a share kept as one number: the seeds' mean, or the first seed's where one lacks it
    assert row["style_rate"] == 0.75 and row["meaning"] == pytest.approx(0.7)
    assert row["style_rate_seeds"] == [0.5, 1.0] and row["false_abstain"] is None
    assert row["company_probs"] == first["company_probs"]  # the ensemble uses the first seed
    assert seeds.combine(first, []) is first



def test_shares_with_per_item_parts_are_averaged_item_by_item_and_get_intervals():
    """Style rate, swap rate, meaning, answer F1 and false abstentions: the seeds' per-item
    values are averaged like the scores', and the table gives each an interval over them."""
    parts = {"style_items": [1.0, 0.0, 1.0, 1.0], "meaning_items": [0.5, 0.9, 0.1, 0.3],
             "answer_abstained": [False, True, False, False]}
    first = _row("full SFT", 0, [1, 0, 1, 0], style_rate=0.75, meaning=0.45,
                 false_abstain=0.25, **parts)
    second = _row("full SFT", 1, [1, 0, 1, 0], style_rate=0.25, meaning=0.55,
                  false_abstain=0.0, style_items=[0.0, 0.0, 1.0, 0.0],
                  meaning_items=[0.7, 0.5, 0.5, 0.5], answer_abstained=[False] * 4)
    row = seeds.combine(first, [second])
    assert row["seed_items"]["style_items"] == [0.5, 0.0, 1.0, 0.5]
    assert row["style_rate"] == 0.5 and row["style_rate_seeds"] == [0.75, 0.25]
    assert row["meaning"] == pytest.approx(0.5)
    assert row["seed_items"]["answer_abstained"] == [0.0, 0.5, 0.0, 0.0]
    assert row["false_abstain"] == 0.125
    ci = rt.with_intervals(row)
    for column in ("style_rate", "meaning", "false_abstain"):
        low, high = ci[f"{column}_ci"]
        assert low <= row[column] <= high and low < high
    assert "swap_rate_ci" not in ci  # no swap rate, no interval
    one = rt.with_intervals(first)  # one seed: the interval is over its own items
    assert one["style_rate_ci"][0] <= 0.75 <= one["style_rate_ci"][1]


def test_answers_supported_gets_an_interval_from_the_rag_answers():
    """RAG's share of questions whose passages hold the answer: an interval over its written
    answers' `context_has_answer`, which the row keeps one per question."""
    held = [True, True, False, True, False, True, True, True]
    row = _row(rt.RAG_NAME, 0, [1] * 8, trained=False, answers_supported=0.75,
               rag_answers=[{"context_has_answer": h, "reason": "answered"} for h in held])
    assert rt.share_items(row, "answers_supported_items") == held
    low, high = rt.with_intervals(row)["answers_supported_ci"]
    assert low < 0.75 < high and 0.0 <= low and high <= 1.0
    without = {k: v for k, v in row.items() if k != "rag_answers"}
    assert "answers_supported_ci" not in rt.with_intervals(without)


def test_item_shares_skip_missing_values_and_seeds_without_items():
    """An answer F1 is NaN for a fact with no reference answer: the means and the interval
    skip it, as the row's own mean does. A seeded row whose seeds did not all keep per-item
    values gets no interval for that share (its column is a mean of the seeds')."""
    nan = float("nan")
    first = _row("full SFT", 0, [1, 0, 1, 0], company_answer_f1=0.5,
                 answer_f1_items=[1.0, nan, 0.0, 0.5])
    second = _row("full SFT", 1, [1, 0, 1, 0], company_answer_f1=0.5,
                  answer_f1_items=[0.0, nan, 1.0, 0.5])
    row = seeds.combine(first, [second])
    assert row["company_answer_f1"] == pytest.approx(0.5)
    assert row["seed_items"]["answer_f1_items"][0] == 0.5
    low, high = rt.with_intervals(row)["company_answer_f1_ci"]
    assert not np.isnan(low) and low <= 0.5 <= high
    no_items = seeds.combine(first, [{**second, "answer_f1_items": None}])
    assert no_items["company_answer_f1"] == 0.5  # the seeds' mean
    assert "company_answer_f1_ci" not in rt.with_intervals(no_items)

def test_mismatched_seeds_are_refused():
    first = _row("full SFT", 0, [1, 0])
    with pytest.raises(ValueError, match="same seed twice"):
        seeds.combine(first, [_row("full SFT", 0, [1, 1])])
    with pytest.raises(ValueError, match="different numbers of items"):
        seeds.combine(first, [_row("full SFT", 1, [1, 1, 0])])


def test_a_seeded_row_is_compared_by_paired_bootstrap_an_unseeded_pair_by_mcnemar():
    base = _row("base", 0, [0] * 20, trained=False)
    sft = seeds.combine(_row("full SFT", 0, [1] * 15 + [0] * 5),
                        [_row("full SFT", 1, [1] * 12 + [0] * 8)])
    lora = _row("LoRA r=16", 0, [1] * 10 + [0] * 10)
    found = {(v["a"], v["b"]): v for v in rt.paired_verdicts([base, sft, lora])
             if v["metric"] == "company_knowledge"}
    assert found[("full SFT", "base")]["test"].startswith("paired bootstrap")
    assert found[("full SFT", "base")]["p_value"] < 0.05
    assert found[("LoRA r=16", "base")]["test"] == "exact McNemar"
    assert found[("LoRA r=16", "full SFT")]["test"].startswith("paired bootstrap")


def test_only_trained_rows_get_extra_seeds_and_they_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("MCLAB_QUICK", "1")
    monkeypatch.setenv("MCLAB_SEED", "0")
    (tmp_path / "rows").mkdir()
    for row in (_row("base", 0, [1, 0], trained=False), _row("full SFT", 0, [1, 0])):
        (tmp_path / "rows" / f"{rt.slug(row['method'])}.json").write_text(json.dumps(row))
    calls = []

    def child(name, out, add=None, seed=None):
        calls.append((name, seed))
        if seed == 2:
            return 1, 0.0  # this seed's run failed
        path = seeds.seed_path(out, rt.slug(name), seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_row(name, seed, [1, 1])))
        return 0, 123.0

    monkeypatch.setattr(report, "_child", child)
    failed = report.run_seeds(["base", "full SFT"], tmp_path, seeds=3, progress=False)
    assert calls == [("full SFT", 1), ("full SFT", 2)]
    assert failed == ["'full SFT' seed 2 (exit code 1)"]
    stored = json.loads(seeds.seed_path(tmp_path, "full-sft", 1).read_text())
    assert stored["peak_memory_mb"] == 123.0
    calls.clear()
    report.run_seeds(["base", "full SFT"], tmp_path, seeds=3, progress=False)
    assert calls == [("full SFT", 2)]  # seed 1 is done; only the failed one runs again
    table = {r["method"]: r for r in rt.write_report(tmp_path)["rows"]}
    assert table["full SFT"]["seeds"] == [0, 1]
    assert table["full SFT"]["company_knowledge"] == 0.75
    assert table["full SFT"]["company_knowledge_seed_range"] == [0.5, 1.0]
    assert table["base"]["seeds"] is None
    text = (tmp_path / "comparison.md").read_text()
    assert "| 0, 1 |" in text and "[0.500, 1.000]" in text


def test_seeds_must_be_positive(tmp_path):
    with pytest.raises(rt.ReportError, match="--seeds"):
        report.run_report(["base"], out=tmp_path, seeds=0, progress=False)


def test_the_ensemble_is_averaged_over_the_seeds_its_members_share():
    """Seed s's ensemble averages seed s's trained members (RAG does not train): the row is
    the mean over those ensembles, so against a member's mean over seeds it is not one draw."""
    n = 4
    rag = _row(rt.RAG_NAME, None, [0] * n, trained=False)
    # seed 0: both trained members right on items 0-1, seed 1: on items 2-3
    first = {"full SFT": _row("full SFT", 0, [1, 1, 0, 0]),
             "LoRA r=16": _row("LoRA r=16", 0, [1, 1, 0, 0])}
    extra = {"full SFT": [_row("full SFT", 1, [0, 0, 1, 1])],
             "LoRA r=16": [_row("LoRA r=16", 1, [0, 0, 1, 1])]}
    rows = {rt.RAG_NAME: rag, **{k: seeds.combine(v, extra[k]) for k, v in first.items()}}
    one = rt.ensemble_row(rows)  # no extra seeds given: the first seed's members alone
    assert one["company_knowledge"] == 0.5 and "seeds" not in one
    ens = rt.ensemble_row(rows, extra)
    assert ens["seeds"] == [0, 1]
    assert ens["seed_items"]["company"] == [0.5, 0.5, 0.5, 0.5]
    assert ens["company_knowledge_seeds"] == [0.5, 0.5]
    # a member with fewer seeds limits the ensemble to the seeds all trained members have
    assert "seeds" not in rt.ensemble_row(rows, {**extra, "LoRA r=16": []})
