"""The shipped datasets load, and malformed rows raise errors that say where and why."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from mclab import data
from mclab.data import DataError, load_scenario, read_jsonl


@pytest.mark.parametrize("name", data.SCENARIOS)
def test_shipped_scenarios_load(name):
    splits = load_scenario(name)
    assert set(splits) == set(data.SCHEMAS[name])
    assert all(len(ds) > 0 for ds in splits.values())


def test_sizes_meet_the_data_card():
    company, medical, local = (load_scenario(n) for n in data.SCENARIOS)
    assert len(company["documents"]) >= 40 and len(company["train_qa"]) >= 150
    assert len(company["eval_mc"]) >= 60
    assert len(medical["glossary"]) >= 150 and len(medical["train_prose"]) >= 60
    assert len(medical["heldout_prose"]) >= 15 and len(medical["eval_mc"]) >= 40
    assert len(medical["general_text"]) >= 15
    assert len(local["rewrites_train"]) >= 200 and len(local["rewrites_eval"]) >= 50
    assert len(local["lexicon"]) >= 80 and len(local["preferences"]) >= 100


def test_company_eval_is_held_out_and_grounded():
    company = load_scenario("company")
    docs = {d["id"]: d["text"].lower() for d in company["documents"]}
    train_questions = set(company["train_qa"]["question"])
    for item in company["eval_mc"]:
        assert item["question"] not in train_questions
        assert item["options"][item["answer"]].lower() in docs[item["doc_id"]], item["id"]
    facts = company["train_qa"]["fact_id"]
    assert min(facts.count(f) for f in set(facts)) >= 3  # at least 3 paraphrases per fact


def test_local_rewrites_use_the_lexicon():
    from mclab.evaluation import lexicon_hits

    local = load_scenario("local")
    lexicon = list(local["lexicon"])
    for row in local["rewrites_eval"]:
        assert lexicon_hits(row["local"], lexicon), row["id"]
    train_neutral = set(local["rewrites_train"]["neutral"])
    assert not train_neutral & set(local["rewrites_eval"]["neutral"])


def _write(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


SCHEMA = data.SCHEMAS["company"]["eval_mc"]
GOOD = {"id": "mc-1", "fact_id": "f-1", "doc_id": "doc-1", "question": "Q?",
        "options": ["a", "b", "c", "d"], "answer": 1}


@pytest.mark.parametrize("bad, message", [
    ({k: v for k, v in GOOD.items() if k != "question"}, "missing field 'question'"),
    ({**GOOD, "answer": 7}, "field 'answer' is 7"),
    ({**GOOD, "answer": "1"}, "field 'answer' must be an integer"),
    ({**GOOD, "options": ["a", "a", "b", "c"]}, "distinct options"),
    ({**GOOD, "question": "  "}, "field 'question' is empty"),
])
def test_malformed_row_names_file_line_and_field(tmp_path, bad, message):
    path = _write(tmp_path, [GOOD, bad])
    with pytest.raises(DataError, match=message) as err:
        read_jsonl(path, SCHEMA)
    assert f"{path}:2" in str(err.value)


def test_broken_json_names_the_line(tmp_path):
    path = _write(tmp_path, [GOOD, '{"id": "mc-2", \n'])
    with pytest.raises(DataError, match=r":2: not valid JSON"):
        read_jsonl(path, SCHEMA)


def test_preference_with_same_replies_is_rejected(tmp_path):
    row = {"id": "p", "prompt": "hi", "chosen": "G'day", "rejected": "G'day"}
    with pytest.raises(DataError, match="'chosen' equals 'rejected'"):
        read_jsonl(_write(tmp_path, [row]), data.SCHEMAS["local"]["preferences"])


def test_dangling_document_link(tmp_path):
    folder = tmp_path / "company"
    folder.mkdir()
    doc = {"id": "doc-1", "title": "t", "category": "policy", "text": "x"}
    qa = {"id": "qa-1", "fact_id": "f-1", "doc_id": "doc-9", "question": "q", "answer": "a"}
    for name, row in (("documents", doc), ("train_qa", qa), ("eval_mc", GOOD),
                      ("eval_uncovered_mc", {**GOOD, "fact_id": "uf-1"})):
        (folder / f"{name}.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="names no document"):
        load_scenario("company", tmp_path)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(SCHEMA) + ["extra"]),
                       st.one_of(st.text(max_size=5), st.integers(-3, 6),
                                 st.lists(st.text(max_size=3), max_size=5), st.none())))
def test_validation_never_crashes_on_arbitrary_rows(tmp_path_factory, row):
    path = _write(tmp_path_factory.mktemp("h"), [row])
    try:
        rows = read_jsonl(path, SCHEMA)
    except DataError as err:
        assert str(path) in str(err)
    else:  # accepted rows really satisfy the schema
        assert 0 <= rows[0]["answer"] < len(rows[0]["options"])


def test_subset_spreads_over_the_set():
    from datasets import Dataset

    ds = Dataset.from_list([{"i": i} for i in range(10)])
    assert data.subset(ds, 5)["i"] == [0, 2, 4, 6, 8]
    assert len(data.subset(ds, None)) == 10
