"""The shipped datasets load, and malformed rows raise errors that say where and why."""

import json
import re

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
    assert len(company["eval_mc"]) >= 60 and len(company["eval_uncovered_mc"]) >= 40
    assert len(company["eval_unanswerable"]) >= 30 and len(company["val_unanswerable"]) >= 20
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


def test_uncovered_eval_tests_facts_no_training_qa_states():
    """eval_uncovered_mc: facts the documents state but no train_qa row (nor eval_mc) covers,
    so looking the answer up among the training Q&A cannot find it."""
    company = load_scenario("company")
    items = list(company["eval_uncovered_mc"])
    assert len(items) >= 40
    docs = {d["id"]: d["text"] for d in company["documents"]}
    train_answers = company["train_qa"]["answer"]
    train_questions = set(company["train_qa"]["question"])
    covered = set(company["train_qa"]["fact_id"]) | set(company["eval_mc"]["fact_id"])
    eval_correct = {item["options"][item["answer"]] for item in company["eval_mc"]}
    assert not {item["fact_id"] for item in items} & covered
    assert len({item["fact_id"] for item in items}) == len(items)  # one item per fact
    assert len({item["doc_id"] for item in items}) >= 20  # spread over the knowledge base
    for item in items:
        correct = item["options"][item["answer"]]
        assert len(item["options"]) == 4, item["id"]
        assert correct in docs[item["doc_id"]], item["id"]  # grounded, case-sensitive
        assert not any(correct in answer for answer in train_answers), item["id"]
        assert correct not in eval_correct, item["id"]
        assert item["question"] not in train_questions, item["id"]


def test_uncovered_eval_answer_positions_are_balanced():
    answers = load_scenario("company")["eval_uncovered_mc"]["answer"]
    for position in range(4):
        assert 0.15 <= answers.count(position) / len(answers) <= 0.35, position


def _content_words(text):
    stop = {"a", "an", "and", "are", "at", "by", "can", "do", "does", "for", "how", "i", "in",
            "is", "it", "its", "many", "much", "of", "on", "or", "the", "there", "to", "we",
            "what", "which", "who", "with"}
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in stop}


def test_unanswerable_questions_are_held_out_and_mixed():
    """eval_unanswerable (scored only) and val_unanswerable (thresholds are chosen on it):
    disjoint, no paraphrase across them, both kinds, mostly near misses."""
    company = load_scenario("company")
    evals, vals = (list(company[s]) for s in data.COMPANY_UNANSWERABLE)
    asked = {q.lower() for s in ("train_qa", *data.COMPANY_MC) for q in company[s]["question"]}
    for rows in (evals, vals):
        kinds = [row["kind"] for row in rows]
        assert set(kinds) == set(data.UNANSWERABLE_KINDS)
        assert kinds.count("near-miss") >= 0.4 * len(rows)
        assert not {row["question"].lower() for row in rows} & asked
    assert not {r["id"] for r in evals} & {r["id"] for r in vals}
    for e in evals:  # a paraphrase shares most content words; the closest pair today: 0.31
        for v in vals:
            a, b = _content_words(e["question"]), _content_words(v["question"])
            assert len(a & b) / len(a | b) < 0.5, (e["id"], v["id"])


def test_near_misses_are_what_keyword_search_finds():
    """A near miss's near_doc_id is among the top 3 BM25 hits over the documents (one chunk
    each), so keyword overlap alone would retrieve a plausible but wrong document."""
    from mclab.rag import BM25Retriever, chunk_documents

    company = load_scenario("company")
    chunks = chunk_documents(list(company["documents"]), size=400, overlap=0)
    assert len(chunks) == len(company["documents"])
    bm25 = BM25Retriever(chunks)
    for split in data.COMPANY_UNANSWERABLE:
        rows = [row for row in company[split] if row["kind"] == "near-miss"]
        hits = bm25.retrieve([row["question"] for row in rows], k=3)
        for row, top in zip(rows, hits):
            assert row["near_doc_id"] in {chunks[i].doc_id for i in top}, row["id"]


_FIRST_TRAIN_QUESTION = "When was Kestrel & Ashdown Outfitters founded?"


@pytest.mark.parametrize("split, lineno, change, message", [
    ("eval_unanswerable", 3, {"near_doc_id": "doc-099"}, "field 'near_doc_id' 'doc-099' names no"),
    ("eval_unanswerable", 4, {"near_doc_id": 7}, "field 'near_doc_id' must be str or null"),
    ("eval_unanswerable", 5, {"kind": "unsure"}, "field 'kind' is 'unsure'"),
    ("val_unanswerable", 6, {"near_doc_id": None}, "a near-miss names the document"),
    ("val_unanswerable", 2, {"id": "un-001"}, "also used in eval_unanswerable.jsonl"),
    ("val_unanswerable", 4, {"question": _FIRST_TRAIN_QUESTION.upper()},
     "repeats one in train_qa.jsonl"),
    ("val_unanswerable", 7, {"question": "how much does the wrenfold 28 weigh?"},
     "repeats one in eval_unanswerable.jsonl"),
])
def test_broken_unanswerable_row_names_file_and_line(tmp_path, monkeypatch, split, lineno,
                                                     change, message):
    path = _broken_company_copy(tmp_path, monkeypatch, split, lineno,
                                lambda row: row.update(change))
    with pytest.raises(DataError, match=re.escape(message)) as err:
        load_scenario("company")
    assert f"{path}:{lineno}" in str(err.value)


def _broken_company_copy(tmp_path, monkeypatch, split, lineno, change, scenario="company"):
    """A copy of the shipped data with one row of <scenario>/<split>.jsonl changed;
    MCLAB_DATA points at it."""
    import shutil

    from mclab import config

    copy = tmp_path / "data"
    shutil.copytree(config.shipped_data_dir(), copy)
    path = copy / scenario / f"{split}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    row = json.loads(lines[lineno - 1])
    change(row)
    lines[lineno - 1] = json.dumps(row, ensure_ascii=False) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    monkeypatch.setenv("MCLAB_DATA", str(copy))
    return path


def _ungrounded(row):
    row["options"][row["answer"]] = "an answer no document gives"


@pytest.mark.parametrize("split", ["eval_mc", "eval_uncovered_mc"])
def test_mc_answer_missing_from_its_document_names_file_and_line(tmp_path, monkeypatch, split):
    path = _broken_company_copy(tmp_path, monkeypatch, split, 5, _ungrounded)
    with pytest.raises(DataError, match="does not occur in document") as err:
        load_scenario("company")
    assert f"{path}:5" in str(err.value)


@pytest.mark.parametrize("other", ["train_qa", "eval_mc"])
def test_uncovered_fact_id_that_overlaps_is_rejected(tmp_path, monkeypatch, other):
    if other == "train_qa":  # the uncovered item claims a trained fact
        path = _broken_company_copy(tmp_path, monkeypatch, "eval_uncovered_mc", 7,
                                    lambda row: row.update(fact_id="f-003"))
    else:  # an eval_mc item claims the uncovered item's fact
        _broken_company_copy(tmp_path, monkeypatch, "eval_mc", 1,
                             lambda row: row.update(fact_id="uf-007"))
        path = tmp_path / "data" / "company" / "eval_uncovered_mc.jsonl"
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[6])["id"] == "umc-007"
    with pytest.raises(DataError, match=f"also used in {other}.jsonl") as err:
        load_scenario("company")
    assert f"{path}:7" in str(err.value) and "new fact id" in str(err.value)


def test_medical_sft_chats_leave_the_eval_terms_out():
    """The SFT chats are the glossary's definitions of terms eval_mc does not test, split
    into training and validation by term, exactly as tools/make_medical_sft.py writes them."""
    import importlib.util
    from pathlib import Path

    medical = load_scenario("medical")
    train, val = list(medical["sft_train"]), list(medical["sft_val"])
    tested = set(medical["eval_mc"]["term"])
    glossary = {g["term"]: g["definition"] for g in medical["glossary"]}
    train_terms, val_terms = {r["term"] for r in train}, {r["term"] for r in val}
    assert not (train_terms | val_terms) & tested
    assert not train_terms & val_terms and len(val) >= 15 and len(train) >= 90
    assert all(r["answer"] == glossary[r["term"]] for r in train + val)
    assert train_terms | val_terms | tested == set(glossary)  # every other term is used
    tool = Path(__file__).resolve().parent.parent / "tools" / "make_medical_sft.py"
    spec = importlib.util.spec_from_file_location("make_medical_sft", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == (train, val)


def _eval_term(row):
    row.update(term="bulla", answer=next(
        g["definition"] for g in read_jsonl(data.shipped_data_dir() / "medical" /
                                            "glossary.jsonl") if g["term"] == "bulla"))


@pytest.mark.parametrize("split, lineno, change, message", [
    ("sft_train", 4, _eval_term, "term 'bulla' is tested by eval_mc.jsonl"),
    ("sft_val", 2, lambda row: row.update(answer="A rash."), "differs from the glossary"),
    ("sft_val", 3, lambda row: row.update(term="a made-up term"), "is not in glossary.jsonl"),
    ("sft_val", 5, lambda row: row.update(id="sft-train-001"), "also in sft_train.jsonl"),
])
def test_broken_medical_sft_row_names_file_and_line(tmp_path, monkeypatch, split, lineno,
                                                    change, message):
    path = _broken_company_copy(tmp_path, monkeypatch, split, lineno, change, "medical")
    with pytest.raises(DataError, match=re.escape(message)) as err:
        load_scenario("medical")
    assert f"{path}:{lineno}" in str(err.value)


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
    doc = {"id": "doc-1", "title": "t", "category": "policy", "access": "all", "text": "x"}
    restricted = {"id": "rdoc-1", "title": "t", "category": "restricted", "access": "hr",
                  "text": "kept 11 years"}
    qa = {"id": "qa-1", "fact_id": "f-1", "doc_id": "doc-9", "question": "q", "answer": "a"}
    unanswerable = {"id": "un-1", "question": "q?", "near_doc_id": None, "kind": "off-topic",
                    "why_unanswerable": "w"}
    for name, row in (("documents", doc), ("train_qa", qa), ("eval_mc", GOOD),
                      ("eval_uncovered_mc", {**GOOD, "fact_id": "uf-1"}),
                      ("eval_unanswerable", unanswerable),
                      ("val_unanswerable", {**unanswerable, "id": "vun-1", "question": "r?"}),
                      ("restricted_documents", restricted),
                      ("train_restricted_qa", {**qa, "id": "rqa-1", "doc_id": "rdoc-1"}),
                      ("eval_restricted", {"id": "req-1", "fact_id": "rf-1", "doc_id": "rdoc-1",
                                           "question": "q", "gold": "11 years"})):
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
