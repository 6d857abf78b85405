"""Access labels: a restricted passage never reaches a user outside its group."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mclab import access
from mclab.access import AccessError, AccessFilteredRetriever, can_read, groups_of
from mclab.chunking import RetrievalError
from mclab.data import ACCESS_LABELS, DataError, load_scenario
from mclab.rag import chunks_from_recipe, make_retriever, recipe_with, retriever_from_recipe

GROUPS = [g for g in ACCESS_LABELS if g != "all"]


@pytest.fixture(scope="module")
def company():
    return load_scenario("company")


@pytest.fixture(scope="module")
def kb(company):
    return access.knowledge_base(company)


@pytest.fixture(scope="module")
def hybrid(kb, embedder):
    chunks = chunks_from_recipe(kb, recipe_with(chunking="2 sentences"))
    return make_retriever("hybrid", chunks, embedder)


def test_every_document_has_a_known_label_and_restricted_ones_a_group(company):
    assert {d["access"] for d in company["documents"]} == {"all"}
    labels = [d["access"] for d in company["restricted_documents"]]
    assert set(labels) == set(GROUPS) and "all" not in labels
    assert {r["doc_id"] for r in company["eval_restricted"]} == \
        {d["id"] for d in company["restricted_documents"]}


def test_restricted_answers_are_in_no_public_document(company):
    """Otherwise a user without the group could get the value legitimately, and a "leak"
    could not be told from a public answer."""
    from mclab.answers import contains_answer

    for item in company["eval_restricted"]:
        assert not any(contains_answer(d["text"], item["gold"]) for d in company["documents"])


def test_roles_and_groups():
    assert groups_of("employee") == frozenset()
    assert groups_of(["hr"]) == frozenset({"hr"})
    assert can_read(frozenset(), "all") and not can_read(frozenset(), "hr")
    assert can_read(frozenset({"hr"}), "hr") and not can_read(frozenset({"hr"}), "managers")
    with pytest.raises(AccessError, match="unknown role 'boss'; choose one of employee"):
        groups_of("boss")
    with pytest.raises(AccessError, match="unknown group 'admins'"):
        groups_of({"admins"})
    with pytest.raises(AccessError, match="unknown group 'all'"):
        groups_of({"all"})  # everyone reads "all"; it is not a group to join


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.sets(st.sampled_from(GROUPS)), k=st.integers(1, 6), data=st.data())
def test_a_restricted_passage_is_never_retrieved_without_its_group(hybrid, company, groups, k,
                                                                   data):
    asked = [r["question"] for r in company["eval_restricted"]] + \
        [r["question"] for r in company["train_qa"]][:20]
    query = data.draw(st.sampled_from(asked) | st.text(min_size=1, max_size=60).filter(str.strip))
    filtered = AccessFilteredRetriever(hybrid, groups)
    got = filtered.retrieve_scored([query], k)[0]
    assert len(got) == k  # the user may read far more than k chunks
    assert all(can_read(groups, hybrid.chunks[i].access) for i, _ in got)
    # the order is the unfiltered order with the unreadable chunks taken out
    full = [i for i, _ in hybrid.retrieve_scored([query], len(hybrid.chunks))[0]]
    assert [i for i, _ in got] == [i for i in full if can_read(groups, hybrid.chunks[i].access)][:k]


def test_the_group_gets_its_documents(hybrid, company):
    """Filtering is not refusing: asked by a member, each restricted question finds its doc."""
    items = list(company["eval_restricted"])
    docs = {d["id"]: d["access"] for d in company["restricted_documents"]}
    for item in items:
        user = {docs[item["doc_id"]]}
        top = AccessFilteredRetriever(hybrid, user).retrieve([item["question"]], 4)[0]
        outsider = AccessFilteredRetriever(hybrid, set()).retrieve([item["question"]], 4)[0]
        assert item["doc_id"] in {hybrid.chunks[i].doc_id for i in top}, item["question"]
        assert all(hybrid.chunks[i].access == "all" for i in outsider)


def test_recipe_filters_before_the_reranker(kb, embedder):
    recipe = recipe_with(chunking="2 sentences", retriever="hybrid + sentence rerank")
    retriever = retriever_from_recipe(kb, embedder, recipe, user="employee")
    assert retriever.readable == [i for i, c in enumerate(retriever.chunks) if c.access == "all"]
    for ids in retriever.retrieve(["What is the alarm master code?",
                                   "What is the top of the Band 2 pay range?"], 5):
        assert all(retriever.chunks[i].access == "all" for i in ids)


def test_k_larger_than_what_the_user_may_read_is_a_clear_error(hybrid):
    readable = len(AccessFilteredRetriever(hybrid, set()).readable)
    with pytest.raises(RetrievalError, match=f"larger than the number of chunks \\({readable}\\)"):
        AccessFilteredRetriever(hybrid, set()).retrieve(["pay bands"], readable + 1)
    with pytest.raises(RetrievalError, match="empty query"):
        AccessFilteredRetriever(hybrid, set()).retrieve(["  "], 2)


def test_abstention_sees_only_readable_chunks(hybrid, embedder, model_and_tokenizer):
    """The weak-retrieval check must not be passed thanks to a chunk the user cannot read
    (nor reveal through its score that such a chunk exists)."""
    from mclab.rag_answers import Abstention, ChunkSimilarity, rag_answer

    model, tokenizer = model_and_tokenizer
    similarity = ChunkSimilarity(embedder, hybrid.chunks)
    question = "What is the server room keypad code?"
    sims = similarity.to_chunks([question])[0]
    public = [i for i, c in enumerate(hybrid.chunks) if c.access == "all"]
    assert sims.max() > sims[public].max()  # the best chunk overall is restricted
    rule = Abstention(min_similarity=float(sims.max()) - 1e-6)  # only that chunk passes
    answer = rag_answer(model, tokenizer, [question], AccessFilteredRetriever(hybrid, set()), 2,
                        similarity, rule, max_new_tokens=4)[0]
    assert answer.similarity == pytest.approx(float(sims[public].max()), abs=1e-6)
    assert answer.abstained and answer.reason == "weak retrieval"


def _break(tmp_path, monkeypatch, split, lineno, change):
    from test_data import _broken_company_copy

    return _broken_company_copy(tmp_path, monkeypatch, split, lineno, change)


@pytest.mark.parametrize("split, lineno, change, message", [
    ("documents", 3, {"access": "staff"}, "access 'staff' is not one of all, managers"),
    ("restricted_documents", 2, {"access": "all"}, "a restricted document needs a group"),
    ("restricted_documents", 1, {"id": "doc-004"}, "is also a document id in documents.jsonl"),
    ("eval_restricted", 4, {"gold": "9,999 euros"}, "does not occur in 'rdoc-02'"),
    ("train_restricted_qa", 5, {"doc_id": "doc-001"}, "names no document in restricted_documents"),
])
def test_bad_access_data_names_file_and_line(tmp_path, monkeypatch, split, lineno, change,
                                             message):
    path = _break(tmp_path, monkeypatch, split, lineno, lambda row: row.update(change))
    with pytest.raises(DataError, match=message) as err:
        load_scenario("company")
    assert f"{path}:{lineno}" in str(err.value)


def test_an_unfiltered_retriever_over_restricted_documents_is_refused(kb, embedder):
    with pytest.raises(RetrievalError, match="some documents are restricted .* pass user="):
        retriever_from_recipe(kb, embedder, recipe_with(chunking="2 sentences", retriever="bm25"))


def test_a_reranker_over_the_filter_counts_only_readable_chunks(company, embedder):
    """Fewer readable chunks than the rerank depth (20): still k passages, and a k above what
    the user may read names the readable count."""
    docs = list(company["documents"])[:2] + list(company["restricted_documents"])
    recipe = recipe_with(chunking="2 sentences", retriever="hybrid + sentence rerank")
    retriever = retriever_from_recipe(docs, embedder, recipe, user="employee")
    readable = len(retriever.readable)
    assert readable < recipe.rerank_depth < len(retriever.chunks)
    ids = retriever.retrieve(["What is the alarm master code?"], 3)[0]
    assert len(ids) == 3 and all(retriever.chunks[i].access == "all" for i in ids)
    with pytest.raises(RetrievalError, match=f"larger than the number of chunks \\({readable}\\)"):
        retriever.retrieve(["pay bands"], readable + 1)


def test_leak_experiment_counts_per_user_and_gives_the_model_back(load_tiny, embedder, company):
    """The whole experiment on the tiny random model: one row per user and system, each user
    may read their group's questions, RAG leaks nothing, and the adapter is gone afterwards."""
    import torch

    model, tokenizer = load_tiny()
    ids = tokenizer("The alarm code is", return_tensors="pt")
    with torch.no_grad():
        before = model(**ids).logits
    result = access.leak_experiment(model, tokenizer, embedder, company)
    table = result.table()
    assert len(table) == 3 * len(access.ROLES)
    by_user = {r["user"]: r["may read"] for r in table}
    assert by_user["employee"] == 0
    assert all(by_user[u] == result.labels.count(next(iter(g)))
               for u, g in access.ROLES.items() if g)
    assert all(r["leaked (may not read)"] == 0 for r in table if r["system"].startswith("RAG"))
    assert all(r["may read"] + r["may not read"] == len(result.items) for r in table)
    assert not any("lora" in name for name, _ in model.named_modules())
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, before)
    with pytest.raises(AccessError, match="unknown role"):
        access.leak_experiment(model, tokenizer, embedder, company, users=["boss"])
