"""The comparison report and the capstone's choosing functions, on synthetic rows.

The real methods run in notebook 08 (the base row, live) and in `make report` (all of them).
"""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mclab import report, report_table
from mclab.choosing import ChoiceError, best_within, cheapest_gain, gains_over_base
from mclab.files import write_json_atomic
from mclab.config import get_settings
from mclab.report_table import RAG_NAME


def _row(name, company, ppl=None, loc=None, seconds=0.0, mem=1000.0, ms=100.0, probs=None):
    probs = probs or [[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]]
    return {"method": name, "family": "x", "trained_on": "company", "company_knowledge": company,
            "medical_perplexity": ppl, "locality": loc, "trainable_params": int(seconds * 1000),
            "train_seconds": seconds, "peak_memory_mb": mem, "ms_per_answer": ms,
            "storage_mb": 1.0, "company_probs": probs, "company_answers": [0, 1, 3],
            "mode": get_settings().mode}


@pytest.fixture
def out(tmp_path):
    rows = [_row("base", 0.2, 40.0, 0.05),
            _row(RAG_NAME, 0.7, None, None, 0, 1900, 300,
                 [[0.9, 0, 0, 0.1], [0.2, 0.7, 0, 0.1], [0.1, 0.1, 0.1, 0.7]]),
            _row("full SFT", 0.4, 30.0, 0.02, 120, 1800, 90,
                 [[0.6, 0.2, 0.1, 0.1], [0.5, 0.4, 0, 0.1], [0.2, 0.2, 0.2, 0.4]]),
            _row("LoRA r=16", 0.3, 35.0, 0.10, 60, 1200, 95,
                 [[0.4, 0.3, 0.2, 0.1], [0.3, 0.5, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2]])]
    for r in rows:
        write_json_atomic(tmp_path / "rows" / f"{report.slug(r['method'])}.json", r)
    return tmp_path


def test_write_report_adds_the_ensemble_and_writes_every_file(out):
    result = report.write_report(out)
    names = [r["method"] for r in result["rows"]]
    assert names[-1] == report.ENSEMBLE_NAME and len(names) == 5
    ens = result["rows"][-1]
    # averaged probabilities: item 0 -> 0, item 1 -> 1, item 2 -> option 3 (0.1+0.4+0.2)/3
    assert ens["company_knowledge"] == pytest.approx(1.0)
    assert ens["company_uncovered"] is None  # the members were not scored on those facts
    assert ens["ms_per_answer"] == pytest.approx(300 + 90 + 95)
    assert ens["peak_memory_mb"] == 1900 and ens["train_seconds"] == 180
    saved = json.loads((out / "comparison.json").read_text())
    assert set(saved["rows"][0]) == set(report_table.COLUMNS)
    assert saved["company_items"] == 3
    md = (out / "comparison.md").read_text()
    assert md.count("\n| ") == 6 and "| - |" in md  # header + 5 rows; nulls shown as "-"
    assert (out / "quality_vs_cost.png").stat().st_size > 10_000
    assert not list(out.rglob("*.tmp*"))


def test_scores_carry_intervals_and_comparisons_are_paired_tests(out):
    result = report.write_report(out)
    rows = {r["method"]: r for r in result["rows"]}
    for name in ("base", "full SFT", "LoRA r=16"):  # 2 of 3 right, from their probabilities
        low, high = rows[name]["company_knowledge_ci"]
        assert 0 <= low < 2 / 3 < high <= 1
    assert rows[RAG_NAME]["company_knowledge_ci"] == [1.0, 1.0]  # 3 of 3 right
    tests = {(v["a"], v["b"]): v for v in result["verdicts"]}
    # per item, right/wrong: LoRA [1, 1, 0], full SFT [1, 0, 1]: one discordant item each way
    lora = tests[("LoRA r=16", "full SFT")]
    assert (lora["a_only"], lora["b_only"], lora["p_value"]) == (1, 1, 1.0)
    assert lora["verdict"].startswith("cannot tell LoRA r=16 from full SFT on 3 items")
    assert ("full SFT", "base") in tests and (RAG_NAME, "full SFT") in tests
    # the ensemble is compared with its best member, here RAG (3 of 3)
    assert (report.ENSEMBLE_NAME, RAG_NAME) in tests
    md = (out / "comparison.md").read_text()
    assert "Paired verdicts on the same items" in md and "company_knowledge: cannot tell" in md


def test_a_row_from_the_other_mode_is_not_reused(out, monkeypatch):
    assert report.load_row(out, "base") is not None
    other = "full" if get_settings().quick else "quick"
    path = out / "rows" / "base.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "mode": other}))
    assert report.load_row(out, "base") is None


def test_unknown_method_and_unwritable_folder_fail_before_any_work(tmp_path):
    with pytest.raises(report.ReportError, match="unknown method 'lora'.*LoRA r=16"):
        report.run_report(["lora"], tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(report.ReportError, match="cannot write the report"):
        report.run_report(["base"], blocker / "sub")
    assert report.method("lora-r-16").name == "LoRA r=16"


def test_cli_names_a_bad_method(capsys):
    from mclab.__main__ import main

    assert main(["report", "--only", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_load_report_without_a_file_says_how_to_make_one(tmp_path):
    with pytest.raises(report.ReportError, match="make report"):
        report.load_report(tmp_path / "none.json")


@pytest.fixture
def table(out):
    return report.frame(report.write_report(out))


def test_gains_follow_each_metrics_direction(table):
    ppl = gains_over_base(table, "medical_perplexity")
    assert ppl["full SFT"] == pytest.approx(10.0) and RAG_NAME not in ppl
    assert gains_over_base(table, "locality")["full SFT"] == pytest.approx(-0.03)
    with pytest.raises(ChoiceError, match="unknown metric"):
        gains_over_base(table, "accuracy")


def test_best_within_budgets(table):
    assert best_within(table, "company_knowledge") == report.ENSEMBLE_NAME
    assert best_within(table, "company_knowledge", {"peak_memory_mb": 1850}) == "full SFT"
    assert best_within(table, "company_knowledge", {"train_seconds": 0}) == RAG_NAME
    assert best_within(table, "medical_perplexity", {"train_seconds": 60}) == "LoRA r=16"
    assert best_within(table, "locality", {"peak_memory_mb": 10}) is None
    with pytest.raises(ChoiceError, match="must be a number"):
        best_within(table, "locality", {"train_seconds": -1})
    with pytest.raises(ChoiceError, match="unknown cost"):
        best_within(table, "locality", {"dollars": 3})



def test_the_highest_row_made_for_a_metric_is_tested_against_the_next():
    """08's "highest among the methods made for X" rests on a paired test of the two best
    rows made for X: the report runs it even where no rule of thumb names that pair, and a
    row trained for another scenario never takes part."""
    from mclab.choosing import against_runner_up

    n = 30
    right = lambda k: [[0.7, 0.1, 0.1, 0.1]] * k + [[0.1, 0.7, 0.1, 0.1]] * (n - k)  # noqa: E731
    rows = [{**_row(name, k / n, probs=right(k)), "company_answers": [0] * n,
             "trained_on": on}
            for name, k, on in (("base", 5, "-"), ("prompt engineering", 20, "-"),
                                ("CPT + replay", 29, "medical"), ("full SFT", 21, "company"))]
    assert report_table.leader_pair({r["method"]: r["company_knowledge"] for r in rows},
                                    {r["method"]: r["trained_on"] for r in rows},
                                    "company_knowledge") == ("full SFT", "prompt engineering")
    verdicts = report_table.paired_verdicts(rows)
    lead = [v for v in verdicts if (v["a"], v["b"]) == ("full SFT", "prompt engineering")]
    assert len(lead) == 1 and lead[0]["p_value"] == 1.0  # 1 discordant item: cannot tell
    assert not any("CPT + replay" in (v["a"], v["b"]) and v["b"] != "base" for v in verdicts)
    table = pd.DataFrame(rows).set_index("method")
    made = table[[report_table.made_for(on, "company_knowledge") for on in table["trained_on"]]]
    sentence = against_runner_up(made, verdicts, "company_knowledge")
    assert sentence.startswith("against the next, prompt engineering") and "cannot tell" in sentence
    assert against_runner_up(made.loc[["base"]], verdicts, "company_knowledge") == \
        "no other method to compare it with"

def test_cheapest_gain(table):
    assert cheapest_gain(table, "company_knowledge") == RAG_NAME
    assert cheapest_gain(table, "locality") == "LoRA r=16"
    # a win no larger than the eval's noise does not count
    assert cheapest_gain(table, "locality", min_gain=0.06) is None
    assert cheapest_gain(table, "company_knowledge", "peak_memory_mb") == "LoRA r=16"
    assert cheapest_gain(table, "company_knowledge", "peak_memory_mb", min_gain=0.15) == "full SFT"


def test_checks_accept_the_right_answers_and_explain_wrong_ones(table):
    from mclab.checks import ExerciseFailed
    from mclab.checks import choosing as checks

    def test(a, p, difference):
        return {"a": a, "b": "base", "metric": "company_knowledge", "p_value": p,
                "difference": difference, "verdict": f"{a} vs base"}

    verdicts = [test(RAG_NAME, 0.001, 0.5), test("full SFT", 0.01, 0.2),
                test("LoRA r=16", 0.2, 0.1)]
    checks.check_cheapest_company(RAG_NAME, table, verdicts)
    with pytest.raises(ExerciseFailed, match="another winner costs less"):
        checks.check_cheapest_company("full SFT", table, verdicts)
    with pytest.raises(ExerciseFailed, match="cannot tell them apart"):
        checks.check_cheapest_company("LoRA r=16", table, verdicts)
    with pytest.raises(ExerciseFailed, match="not a method"):
        checks.check_cheapest_company("magic", table, verdicts)
    gains = gains_over_base(table, "locality")
    minutes = table.loc[gains.index, "train_seconds"] / 60
    good = (gains[minutes > 0] / minutes[minutes > 0]).sort_values(ascending=False)
    checks.check_gain_per_minute(good, table)
    with pytest.raises(ExerciseFailed, match="per second"):
        checks.check_gain_per_minute(good / 60, table)
    checks.check_chooser(lambda t, m, b: best_within(t, m, b), table)

    def always_max(t, metric, budgets):  # forgets that lower perplexity is better
        rows = t[t[metric].notna()]
        for cost, limit in budgets.items():
            rows = rows[rows[cost] <= limit]
        return None if rows.empty else rows[metric].idxmax()

    with pytest.raises(ExerciseFailed, match="perplexity is better when lower"):
        checks.check_chooser(always_max, table)


def test_choice_panel_redraws_on_a_new_metric(table):
    from mclab.choosing import choice_panel

    panel = choice_panel(table)
    metric = panel.children[0].children[0]
    metric.value = "locality"  # runs the callback; no error means the redraw worked
    assert metric.value == "locality"


def test_a_crashing_method_does_not_stop_the_others(tmp_path, monkeypatch):
    def fake_child(name, out):
        if name == "LoRA r=16":
            return 1, 0.0  # crashed: no row written
        write_json_atomic(out / "rows" / f"{report.slug(name)}.json", _row(name, 0.3, 40.0, 0.1))
        return 0, 1234.0

    monkeypatch.setattr(report, "_child", fake_child)
    with pytest.raises(report.ReportError, match=r"failed: 'LoRA r=16' \(exit code 1\).*--only"):
        report.run_report(["base", "LoRA r=16", "full SFT"], tmp_path, progress=False)
    written = report.load_report(tmp_path / "comparison.json")
    assert [r["method"] for r in written["rows"]] == ["base", "full SFT"]
    assert written["rows"][0]["peak_memory_mb"] == 1234.0  # the parent's measurement wins
    assert not list(tmp_path.rglob("*.tmp"))


def test_locality_and_uncovered_rows_get_intervals_and_paired_tests(out):
    """Rows that kept per-item results: the uncovered facts and the locality per sentence."""
    for name, items in (("base", [0.0, 0.2, 0.0, 0.1]), ("full SFT", [0.6, 0.7, 0.5, 0.9])):
        path = out / "rows" / f"{report.slug(name)}.json"
        row = json.loads(path.read_text())
        row.update(locality_items=items, uncovered_probs=row["company_probs"],
                   uncovered_answers=row["company_answers"])
        write_json_atomic(path, row)
    result = report.write_report(out)
    rows = {r["method"]: r for r in result["rows"]}
    low, high = rows["full SFT"]["locality_ci"]
    assert 0.5 <= low <= 0.675 <= high <= 0.9
    tests = {(v["metric"], v["a"], v["b"]): v for v in result["verdicts"]}
    loc = tests[("locality", "full SFT", "base")]
    assert loc["test"] == "paired bootstrap" and loc["difference"] == pytest.approx(0.6)
    assert loc["difference_ci"][0] > 0  # every sentence improved
    assert ("company_uncovered", "full SFT", "base") in tests
    assert rows["full SFT"]["company_uncovered_ci"] is not None



def test_the_ensemble_is_scored_on_the_uncovered_facts_when_its_members_are(out):
    """The ensemble averages its members' option probabilities on the facts no training Q&A
    covers too, so it gets a company_uncovered score, interval and verdict like a method."""
    for path in (out / "rows").glob("*.json"):
        row = json.loads(path.read_text())
        row.update(uncovered_probs=row["company_probs"], uncovered_answers=row["company_answers"])
        write_json_atomic(path, row)
    result = report.write_report(out)
    ens = next(r for r in result["rows"] if r["method"] == report.ENSEMBLE_NAME)
    assert ens["company_uncovered"] == ens["company_knowledge"] == pytest.approx(1.0)
    assert ens["company_uncovered_ci"] is not None
    assert any(v["metric"] == "company_uncovered" and v["a"] == report.ENSEMBLE_NAME
               for v in result["verdicts"])

# the figure's panels, by their y label: the row key each one plots
PANEL = {"company knowledge (accuracy)": "company_knowledge", "locality score": "locality"}


def test_plot_labels_do_not_overlap_each_other_or_the_legend():
    """Crowded made-up points, and the committed report's rows and reference lines (whose
    figure once had overlapping labels: they were separated before the layout moved the
    points). A label's box is its text's, without its leader line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PathCollection
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    from mclab.plotting import plot_quality_vs_cost

    rows = [{"method": f"method number {i}", "company_knowledge": 0.2 + 0.002 * i,
             "company_knowledge_ci": [0.1, 0.3], "locality": 0.01, "train_seconds": 100.0,
             "peak_memory_mb": 1500.0} for i in range(8)]
    rows.append({**rows[0], "method": "base", "train_seconds": 0.0})
    committed = json.loads((Path(__file__).resolve().parent.parent / "reports" /
                            "comparison.json").read_text())
    for points, refs in ((rows, None), (committed["rows"], committed["references"])):
        fig = plot_quality_vs_cost(points, references=refs)
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
            assert len(boxes) == sum(p.get(PANEL[ax.get_ylabel()]) is not None for p in points)
            assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
            legend = ax.get_legend().get_window_extent(renderer)
            assert not any(b.overlaps(legend) for b in boxes)
            # nor does a label cover another method's point (its own it may touch)
            dots = [c for c in ax.collections if isinstance(c, PathCollection)]
            assert len(dots) == len(boxes)
            for j, dot in enumerate(dots):
                cx, cy = ax.transData.transform(dot.get_offsets()[0])
                r = dot.get_sizes()[0] ** 0.5 / 2 * fig.dpi / 72
                covered = [i for i, b in enumerate(boxes) if i != j and
                           b.overlaps(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))]
                assert not covered, (ax.texts[covered[0]].get_text(), "covers a point")
        matplotlib.pyplot.close(fig)


def test_answer_rows_get_intervals_and_paired_tests(out):
    for name, match, abstained in (("base", [0, 0, 1], [0, 0]), ("full SFT", [1, 1, 1], [1, 0])):
        path = out / "rows" / f"{report.slug(name)}.json"
        row = json.loads(path.read_text())
        row.update(answer_match_items=[bool(m) for m in match], company_answer_match=np.mean(match),
                   unanswerable_abstained=[bool(a) for a in abstained],
                   abstain_unanswerable=np.mean(abstained))
        write_json_atomic(path, row)
    result = report.write_report(out)
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["full SFT"]["company_answer_match_ci"] == [1.0, 1.0]
    assert rows[RAG_NAME]["company_answer_match_ci"] is None  # not scored
    tests = {(v["metric"], v["a"], v["b"]): v for v in result["verdicts"]}
    match = tests[("company_answer_match", "full SFT", "base")]
    assert match["test"] == "exact McNemar" and (match["a_only"], match["b_only"]) == (2, 0)
    assert ("abstain_unanswerable", "full SFT", "base") in tests


def test_adding_a_part_merges_its_fields_and_keeps_the_rest(tmp_path, monkeypatch):
    """`report --add answers` reruns a method for one more part: the row keeps its other
    numbers, gains the part's fields, and records whether the company answers reproduced."""
    from mclab import methods

    old = _row("base", 0.2, 40.0, 0.05)
    write_json_atomic(tmp_path / "rows" / "base.json", old)

    def rerun(ctx):
        assert set(ctx.parts) == {"company", "answers"}
        return {**old, "company_knowledge": 0.9, "company_answer_match": 0.5,
                "answer_match_items": [True, False], "unanswerable_abstained": [True]}

    monkeypatch.setattr(methods.Context, "__init__",
                        lambda self, parts=None: setattr(self, "parts", parts))
    monkeypatch.setattr(report, "method", lambda name: methods.Method("base", "none", "-", rerun))
    row = report.run_one("base", tmp_path, add="answers")
    assert row["company_knowledge"] == 0.2  # the first run's number stays
    assert row["company_answer_match"] == 0.5 and row["unanswerable_abstained"] == [True]
    assert row["added_parts"]["answers"]["company_reproduced"] is True
    with pytest.raises(report.ReportError, match="no .* row for 'base' to add"):
        report.run_one("base", tmp_path / "empty", add="answers")


# ------------------------------------------------------------------ locality rescoring

def _fake_score(weight):
    """A stand-in locality score: what matters is which score the rows end up with."""
    from types import SimpleNamespace

    def score(outputs, rows):
        items = [weight * ("mate" in o) for o in outputs]
        return SimpleNamespace(score=float(np.mean(items)), style_rate=0.5, swap_rate=0.25,
                               meaning=0.75, item_scores=items)

    return score


@pytest.fixture
def rewrites_out(out):
    """The synthetic rows, two of them with the rewrites a locality eval keeps."""
    from mclab.scorecard import eval_sets, locality_columns

    sets = eval_sets()
    n = len(sets["local_eval"])
    for name, outputs in (("base", ["Hello."] * n), ("full SFT", ["G'day mate."] * n)):
        path = out / "rows" / f"{report.slug(name)}.json"
        row = json.loads(path.read_text())
        row.update(locality_columns(_fake_score(1.0)(outputs, sets["local_eval"])),
                   local_outputs=outputs)
        write_json_atomic(path, row)
    report.write_report(out)
    return out


def test_rescoring_with_the_same_score_reproduces_the_rows(rewrites_out):
    before = {p.name: p.read_text() for p in (rewrites_out / "rows").glob("*.json")}
    assert report_table.rescore_locality(rewrites_out, _fake_score(1.0)) == ["base", "full SFT"]
    after = {p.name: p.read_text() for p in (rewrites_out / "rows").glob("*.json")}
    assert {k: json.loads(v) for k, v in before.items()} == \
        {k: json.loads(after[k]) for k in before}  # a different score would change them
    assert set(after) - set(before) == {f"{report.slug(n)}.json" for n in report.REFERENCES}



def test_rescoring_covers_the_extra_seeds_rows(rewrites_out):
    """An extra seed's row keeps its rewrites too: rescoring updates it, and lists the
    method once."""
    path = rewrites_out / "rows" / "full-sft.json"
    row = json.loads(path.read_text())
    seed_row = {**row, "seed": 1, "locality": 0.0}
    seed_file = rewrites_out / "rows" / "seeds" / "full-sft.seed-1.json"
    write_json_atomic(seed_file, seed_row)
    assert report_table.rescore_locality(rewrites_out, _fake_score(0.5)) == ["base", "full SFT"]
    assert json.loads(seed_file.read_text())["locality"] == 0.5


def test_rescoring_changes_only_the_locality_columns_and_adds_the_references(rewrites_out):
    old = json.loads((rewrites_out / "comparison.json").read_text())
    new = report.rewrite_with_new_locality(rewrites_out, _fake_score(0.5))
    assert new["generated"] == old["generated"] and new["locality_rescored"]
    changed = {"locality", "locality_ci", "style_rate", "swap_rate", "meaning"}
    for a, b in zip(old["rows"], new["rows"]):
        assert {k: v for k, v in a.items() if k not in changed} == \
            {k: v for k, v in b.items() if k not in changed}
    rows = {r["method"]: r for r in new["rows"]}
    assert rows["full SFT"]["locality"] == 0.5 and rows["full SFT"]["swap_rate"] == 0.25
    assert rows[RAG_NAME]["locality"] is None  # kept no rewrites: untouched
    refs = {r["method"]: r for r in new["references"]}
    assert list(refs) == list(report.REFERENCES)
    assert refs['copy + ", mate"']["locality"] == 0.5 and refs["copy the sentence"]["locality"] == 0
    assert all(r["family"] == "reference" and r["train_seconds"] is None for r in refs.values())
    # not methods: no verdict, no ensemble and no choice of a best method can pick them up
    assert not {n for v in new["verdicts"] for n in (v["a"], v["b"])} & set(refs)
    assert not set(refs) & set(report.frame(new).index)
    md = (rewrites_out / "comparison.md").read_text()
    assert "Reference rows for the locality score" in md and "| copy the sentence |" in md
    assert "Locality columns rescored" in md


def test_rescore_cli_reruns_nothing(capsys):
    from mclab.__main__ import main

    assert main(["report", "--rescore-locality", "--only", "base"]) == 2
    assert "reruns nothing" in capsys.readouterr().err


COMMITTED = Path(__file__).resolve().parent.parent / "reports" / "comparison.json"


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed report")
def test_committed_rows_carry_the_course_locality_score(embedder):
    """The committed report was rescored with today's locality_score: recomputing a few
    rows from their kept rewrites gives the stored numbers."""
    from mclab.data import load_scenario
    from mclab.evaluation import locality_score

    local = load_scenario("local")
    sources = list(local["rewrites_eval"]["neutral"])
    for name in ("local SFT (LoRA)", "base", 'copy + ", mate"'):
        row = json.loads((COMMITTED.parent / "rows" / f"{report.slug(name)}.json").read_text())
        result = locality_score(row["local_outputs"], sources, local["lexicon"], embedder)
        assert row["locality_items"] == pytest.approx(result.item_scores, abs=1e-6)
        assert (row["locality"], row["swap_rate"]) == pytest.approx((result.score,
                                                                     result.swap_rate))


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed report")
def test_committed_report_copy_rows_lose_to_local_sft_and_the_ceiling_is_on_top():
    from mclab.stats import paired_bootstrap

    saved = json.loads(COMMITTED.read_text())
    rows = {r["method"]: r for r in saved["rows"]}
    refs = {r["method"]: r for r in saved["references"]}
    items = {name: json.loads((COMMITTED.parent / "rows" / f"{report.slug(name)}.json")
                              .read_text())["locality_items"]
             for name in ("local SFT (LoRA)", "copy the sentence", 'copy + ", mate"')}
    for copy in ("copy the sentence", 'copy + ", mate"'):
        assert refs[copy]["locality"] < rows["local SFT (LoRA)"]["locality"]
        test = paired_bootstrap(items["local SFT (LoRA)"], items[copy])
        assert test.difference.low > 0 and test.p_value < 0.05
    best = max(r["locality"] for r in saved["rows"] if r["locality"] is not None)
    assert refs["reference rewrites (ceiling)"]["locality"] > best


def test_reference_rows_are_lines_not_points_and_a_far_ceiling_stays_off_the_axis():
    import matplotlib

    matplotlib.use("Agg")
    from mclab.plotting import plot_quality_vs_cost

    rows = [{"method": "base", "company_knowledge": 0.2, "locality": 0.01, "train_seconds": 0.0,
             "peak_memory_mb": 1500.0},
            {"method": "SFT", "company_knowledge": 0.3, "locality": 0.1, "train_seconds": 100.0,
             "peak_memory_mb": 1500.0}]
    refs = [{"method": "copy the sentence", "locality": 0.0},
            {"method": "reference rewrites (ceiling)", "locality": 0.7}]
    fig = plot_quality_vs_cost(rows, references=refs)
    ax = fig.axes[1]
    assert len(ax.texts) == 2  # one label per method, none for the references
    assert ax.get_ylim()[1] < 0.7  # the ceiling does not squash the methods' points
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("reference: copy the sentence") for t in legend)
    assert any("ceiling" in t and t.endswith("above this axis") for t in legend)


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed report")
def test_committed_written_answers_come_from_the_models_the_other_columns_measured():
    """Rows whose written answers were added later (`report --add answers`) retrained their
    method; its multiple-choice answers must have come out as the first run's. Every row with
    written answers (added later or scored in its own run, as the rows rerun whole are) has
    stored per-item results that give the stored rates."""
    answered = 0  # rows with written answers, scored in their own run or added later
    for path in (COMMITTED.parent / "rows").glob("*.json"):
        row = json.loads(path.read_text())
        if "answers" in row.get("added_parts", {}):
            assert row["added_parts"]["answers"]["company_reproduced"], row["method"]
        if row.get("answer_match_items"):
            answered += 1
            assert row["company_answer_match"] == pytest.approx(np.mean(row["answer_match_items"]))
            assert row["abstain_unanswerable"] == pytest.approx(
                np.mean(row["unanswerable_abstained"]))
    assert answered >= 15  # every method that answers in writing (reports/rows/)


def test_medical_rows_get_intervals_and_the_cpt_before_sft_verdicts(tmp_path):
    """CPT before SFT: each pipeline against its halves, McNemar on the medical terms and a
    paired bootstrap over texts on perplexity (lower wins), every row with its intervals."""
    from mclab.report_table import CPT_THEN_SFT, MEDICAL_CPT, MEDICAL_SFT

    rng = np.random.default_rng(0)
    tokens = rng.integers(80, 160, size=16).tolist()
    answers = [0, 1, 2, 3] * 5

    def medical(name, right, nats):  # `right` of 20 items answered, `nats` per token
        probs = [[0.7 if j == (a if i < right else (a + 1) % 4) else 0.1 for j in range(4)]
                 for i, a in enumerate(answers)]
        return {**_row(name, 0.3), "trained_on": "medical", "medical_probs": probs,
                "medical_answers": answers, "medical_knowledge": right / 20,
                "medical_nll": [t * nats for t in tokens], "medical_tokens": tokens,
                "medical_perplexity": float(np.exp(nats))}

    rows = [medical("base", 5, 2.6), medical(MEDICAL_CPT, 6, 2.2),
            medical(MEDICAL_SFT, 16, 2.5), medical(CPT_THEN_SFT, 17, 2.1)]
    for r in rows:
        write_json_atomic(tmp_path / "rows" / f"{report.slug(r['method'])}.json", r)
    result = report.write_report(tmp_path)
    table = {r["method"]: r for r in result["rows"]}
    low, high = table[CPT_THEN_SFT]["medical_perplexity_ci"]
    assert low <= np.exp(2.1) <= high and table[CPT_THEN_SFT]["medical_knowledge_ci"][1] <= 1
    tests = {(v["a"], v["b"], v["metric"]): v for v in result["verdicts"]}
    ppl = tests[(CPT_THEN_SFT, MEDICAL_SFT, "medical_perplexity")]
    assert ppl["difference"] < 0 and ppl["p_value"] < 0.05
    assert ppl["verdict"].startswith(f"{CPT_THEN_SFT} beats {MEDICAL_SFT}")
    mc = tests[(CPT_THEN_SFT, MEDICAL_SFT, "medical_knowledge")]  # 17 vs 16 of 20
    assert (mc["a_only"], mc["b_only"]) == (1, 0) and mc["verdict"].startswith("cannot tell")
    assert (MEDICAL_SFT, MEDICAL_CPT, "medical_knowledge") in tests
    assert (CPT_THEN_SFT, "base", "medical_perplexity") in tests
    assert "medical_perplexity: " in (tmp_path / "comparison.md").read_text()



def test_cpt_before_sft_advice_follows_the_paired_tests():
    from mclab.choosing import cpt_before_sft_advice

    def v(metric, p, difference, n):
        return {"a": "P", "b": "S", "metric": metric, "p_value": p, "difference": difference,
                "n": n}

    assert "no paired test" in cpt_before_sft_advice([], "P", "S")
    unclear = cpt_before_sft_advice([v("medical_knowledge", 0.4, 0.05, 46),
                                     v("medical_perplexity", 0.3, -1.0, 16)], "P", "S")
    assert "not** shown" in unclear and "cannot tell on 46 items" in unclear \
        and "cannot tell on 16 items" in unclear
    # perplexity: lower is better, so a negative difference is a gain
    helped = cpt_before_sft_advice([v("medical_knowledge", 0.4, 0.05, 46),
                                    v("medical_perplexity", 0.001, -2.0, 16)], "P", "S")
    assert helped.startswith("CPT before SFT **helped** here on held-out perplexity")
    hurt = cpt_before_sft_advice([v("medical_knowledge", 0.01, -0.2, 46)], "P", "S")
    assert "**hurt** on medical terms" in hurt and "helped" not in hurt
