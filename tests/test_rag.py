"""mclab.rag: chunking, indexes, retrievers, saving, and the errors for bad input."""

import json

import numpy as np
import pytest

from mclab.data import load_scenario
from mclab.rag import (CHUNKINGS, BM25Retriever, DenseIndex, DenseRetriever, HybridRetriever,
                       IndexMismatchError, RerankRetriever, RetrievalError, build_context,
                       chunk_documents, chunk_sentences, check_queries, rag_knowledge,
                       rag_panel_run, recall_at_k, recall_table, recipe_with,
                       retriever_from_recipe, split_sentences)
from mclab.rerank import QueryLikelihoodReranker, SentenceReranker, make_reranker
from mclab.retrieval_metrics import (answer_span, answer_terms, contains_answer,
                                     doc_recall_at_k, span_hits, span_recall_at_k)

DOCS = [
    {"id": "d1", "title": "Expenses", "text": "Expense claims above 450 euros need a regional "
     "director's sign-off. Receipts are kept for six years."},
    {"id": "d2", "title": "Tents", "text": "The Sedgewick 2 tent weighs 1.42 kg and sleeps two "
     "people. Its poles are aluminium."},
    {"id": "d3", "title": "Holidays", "text": "Staff get 27 days of paid holiday a year, plus "
     "public holidays. Unused days expire in March."},
]


@pytest.fixture(scope="module")
def chunks():
    return chunk_documents(DOCS, size=8, overlap=2)


def test_chunks_cover_every_word_and_keep_their_document(chunks):
    for doc in DOCS:
        mine = [c for c in chunks if c.doc_id == doc["id"]]
        assert len(mine) >= 2
        words = set(" ".join(c.text.split(": ", 1)[1] for c in mine).split())
        assert words == set(doc["text"].split())
        assert all(c.text.startswith(doc["title"] + ": ") for c in mine)


def test_overlap_repeats_words_between_windows():
    text = " ".join(f"w{i}" for i in range(20))
    parts = [c.text for c in chunk_documents([{"id": "a", "title": "t", "text": text}], 8, 3,
                                             with_title=False)]
    assert parts[0].split()[-3:] == parts[1].split()[:3]
    assert parts[-1].split()[-1] == "w19"


@pytest.mark.parametrize("size,overlap", [(0, 0), (-5, 0), (10, 10), (10, -1)])
def test_bad_chunk_settings_raise(size, overlap):
    with pytest.raises(RetrievalError, match="chunk size|overlap"):
        chunk_documents(DOCS, size, overlap)


def test_empty_query_raises():
    with pytest.raises(RetrievalError, match="empty query"):
        check_queries(["  "])


def test_retrievers_find_the_right_document(chunks, embedder):
    index = DenseIndex.build(chunks, embedder)
    dense = DenseRetriever(index, embedder)
    bm25 = BM25Retriever(chunks)
    hybrid = HybridRetriever(bm25, dense)
    questions = ["How much does the Sedgewick 2 weigh?", "Who signs off big expense claims?",
                 "How many days of paid holiday do staff get?"]
    gold = ["d2", "d1", "d3"]
    for retriever in (dense, bm25, hybrid):
        assert recall_at_k(retriever.retrieve(questions, 2), chunks, gold) == 1.0, retriever.name
    table = recall_table({"dense": dense}, questions, gold, ks=(1, 2))
    assert table["dense"][2] == 1.0


def test_k_larger_than_chunks_raises(chunks, embedder):
    dense = DenseRetriever(DenseIndex.build(chunks, embedder), embedder)
    with pytest.raises(RetrievalError, match="larger than the number of chunks"):
        dense.retrieve("tent weight", len(chunks) + 1)
    with pytest.raises(RetrievalError, match="larger than the number of chunks"):
        BM25Retriever(chunks).retrieve("tent weight", len(chunks) + 1)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_agrees_with_exact_on_a_small_set(chunks, embedder, kind):
    exact = DenseIndex.build(chunks, embedder)
    approx = DenseIndex.build(chunks, embedder, kind=kind)
    q = np.asarray(embedder.encode(["tent weight"], normalize_embeddings=True), dtype=np.float32)
    assert exact.search_vectors(q, 1)[1][0, 0] in approx.search_vectors(q, 3)[1][0]


def test_save_and_load_round_trip_and_refuse_another_embedder(chunks, embedder, tmp_path):
    index = DenseIndex.build(chunks, embedder)
    folder = index.save(tmp_path / "index")
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left
    loaded = DenseIndex.load(folder, embedder)
    q = np.asarray(embedder.encode(["holiday"], normalize_embeddings=True), dtype=np.float32)
    assert (loaded.search_vectors(q, 2)[1] == index.search_vectors(q, 2)[1]).all()
    assert loaded.chunks == index.chunks
    meta = json.loads((folder / "meta.json").read_text())
    meta["embedder"], meta["dim"] = "some/other-embedder", 768
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexMismatchError, match="other-embedder"):
        DenseIndex.load(folder, embedder)
    with pytest.raises(RetrievalError, match="no saved index"):
        DenseIndex.load(tmp_path / "missing", embedder)


def test_context_puts_the_best_passage_last(chunks):
    context = build_context([0, 1], chunks)
    assert context.index(chunks[1].text) < context.index(chunks[0].text)


def test_rag_beats_closed_book_on_a_few_company_questions(model_and_tokenizer, embedder):
    model, tok = model_and_tokenizer
    company = load_scenario("company")
    doc_ids = ["doc-001", "doc-002"]
    docs = [d for d in company["documents"] if d["id"] in doc_ids]
    items = [it for it in company["eval_mc"] if it["doc_id"] in doc_ids][:4]
    chunks = chunk_documents(docs, 60, 20)
    dense = DenseRetriever(DenseIndex.build(chunks, embedder), embedder)
    result = rag_knowledge(model, tok, items, dense, k=2)
    assert result.recall == 1.0
    assert result.accuracy >= 0.5
    assert 0 <= result.span_recall <= result.recall
    row = rag_panel_run(model, tok, embedder, docs, items[:2], 1, "2 sentences", "bm25")
    assert set(row) >= {"recall", "span recall", "knowledge", "chunks", "passages"}
    assert row["question"] == items[0]["question"] and len(row["passages"]) == 1  # k=1
    doc_id, score, text = row["passages"][0]
    assert isinstance(score, float) and text.startswith(next(d["title"] for d in docs
                                                             if d["id"] == doc_id))
    with pytest.raises(RetrievalError, match="larger than the number of chunks"):
        rag_panel_run(model, tok, embedder, docs, items[:2], 99, "3 sentences", "dense")
    with pytest.raises(RetrievalError, match="unknown retriever"):
        rag_panel_run(model, tok, embedder, docs, items[:2], 1, "3 sentences", "tf-idf")


# ---------------------------------------------------------------------------- sentences

@pytest.mark.parametrize("text,expected", [
    ("The tent weighs 1.42 kg. It sleeps two.", ["The tent weighs 1.42 kg.", "It sleeps two."]),
    ("The bus leaves at 16:40. Reception opens at 08:00.",
     ["The bus leaves at 16:40.", "Reception opens at 08:00."]),
    ("Bring a layer, e.g. The Corrie Shell. Or a fleece.",
     ["Bring a layer, e.g. The Corrie Shell.", "Or a fleece."]),
    ("See form No. 4 for details. Then sign it.", ["See form No. 4 for details.", "Then sign it."]),
    ("Ask Dr. Holloway-Stent first. She is the officer.",
     ["Ask Dr. Holloway-Stent first.", "She is the officer."]),
    ("The code is KA-TN-2208. Prices rose 2.5 percent in 2023. Why? Costs.",
     ["The code is KA-TN-2208.", "Prices rose 2.5 percent in 2023.", "Why?", "Costs."]),
    ("Is it waterproof? Yes! 30 minutes at 1 m.",
     ["Is it waterproof?", "Yes!", "30 minutes at 1 m."]),
    ("No full stop at the end", ["No full stop at the end"]),
    ("", []),
])
def test_split_sentences_on_tricky_text(text, expected):
    assert split_sentences(text) == expected


def test_every_company_document_splits_into_whole_sentences():
    for doc in load_scenario("company")["documents"]:
        sentences = split_sentences(doc["text"])
        assert " ".join(sentences) == " ".join(doc["text"].split()), doc["id"]
        assert len(sentences) >= 4, doc["id"]  # 92-120 words: never one run-on "sentence"
        assert all(s[-1] in ".!?" and (s[0].isupper() or s[0].isdigit()) for s in sentences)


@pytest.mark.parametrize("size,overlap", [(1, 0), (2, 0), (2, 1), (3, 1), (3, 2), (10, 0)])
def test_sentence_chunks_cover_every_sentence_and_never_cut_one(size, overlap):
    docs = list(load_scenario("company")["documents"])[:6]
    chunks = chunk_sentences(docs, size, overlap)
    for doc in docs:
        sentences = split_sentences(doc["text"])
        bodies = [c.text.removeprefix(doc["title"] + ": ") for c in chunks if c.doc_id == doc["id"]]
        assert all(c.startswith(doc["title"] + ": ") for c in
                   [c.text for c in chunks if c.doc_id == doc["id"]])
        pieces = [split_sentences(body) for body in bodies]
        assert all(set(p) <= set(sentences) for p in pieces)  # whole sentences only
        assert all(len(p) <= size for p in pieces)
        assert [s for s in sentences if not any(s in p for p in pieces)] == []  # all covered
        if overlap and len(pieces) > 1:
            assert pieces[0][-overlap:] == pieces[1][:overlap]


@pytest.mark.parametrize("size,overlap", [(0, 0), (2, 2), (2, -1), (1.5, 0), (True, 0)])
def test_bad_sentence_windows_raise(size, overlap):
    with pytest.raises(RetrievalError, match="chunk size|overlap"):
        chunk_sentences(DOCS, size, overlap)


# ---------------------------------------------------------------------------- answer spans

@pytest.mark.parametrize("text,answer,found", [
    ("Report it within 24 hours.", "4 hours", False),
    ("Report it within 4 hours.", "4 hours", True),
    ("It weighs 11.42 kg.", "1.42 kg", False),
    ("It weighs 1.425 kg.", "1.42 kg", False),
    ("It weighs 1.42 kg.", "1.42 kg", True),
    ("Claims above 1,450 euros need sign-off.", "450 euros", False),
    ("Claims above 450 euros need sign-off.", "450  Euros.", True),
    ("It leaves at 07:15, daily.", "07:15", True),
    ("It leaves at 17:15.", "7:15", False),
    ("The SEDGEWICK tent", "sedgewick", True),
    ("Sedgewicks are tents", "sedgewick", False),
    ("Numbers begin with RMA-4403921.", "RMA", True),
    ("Priya Holloway’s team", "Holloway's", True),
])
def test_contains_answer_respects_word_and_number_boundaries(text, answer, found):
    assert contains_answer(text, answer) is found


def test_contains_answer_refuses_an_empty_answer():
    with pytest.raises(RetrievalError, match="answer is empty"):
        contains_answer("some text", " . ")


def test_answer_terms_keep_the_values_a_paraphrase_does_not_change():
    tent = "How heavy is the Sedgewick 2?"
    assert answer_terms(tent, "The Sedgewick 2 weighs 1.42 kg.") == ["1.42"]
    assert answer_span(tent, "The Sedgewick 2 weighs 1.42 kg packed.") == "1.42 kg"
    assert answer_terms("Which app is used for expense claims?", "Expense claims are made in "
                        "Ledgerly, the company's expenses app.") == ["ledgerly"]
    # no number or name: the content words the question lacks
    assert answer_terms("What colour badge do visitors wear?",
                        "Visitors wear an orange badge.") == ["orange"]
    assert answer_span("When was it founded?",
                       "It was founded on 14 March 1987.") == "14 March 1987"


def test_span_recall_misses_where_doc_recall_hits():
    docs = [{"id": "d1", "title": "Leave", "text": "Staff get 27 days of leave. Leave requests go "
             "through Hearth. Carried-over leave must be taken by 31 March."}]
    chunks = chunk_sentences(docs, 1, 0)
    retrieved = [[0], [2]]  # both from the right document; only the second holds its answer
    answers = ["31 March", ["31", "march"]]
    assert doc_recall_at_k(retrieved, chunks, ["d1", "d1"]) == 1.0
    assert recall_at_k is doc_recall_at_k
    assert span_hits(retrieved, chunks, answers) == [False, True]
    assert span_recall_at_k(retrieved, chunks, answers) == 0.5
    with pytest.raises(RetrievalError, match="one per question"):
        span_recall_at_k(retrieved, chunks, answers[:1])


# ---------------------------------------------------------------------------- scores, reranking

def test_retrieve_scored_agrees_with_retrieve(chunks, embedder):
    dense = DenseRetriever(DenseIndex.build(chunks, embedder), embedder)
    bm25 = BM25Retriever(chunks)
    questions = ["How much does the Sedgewick 2 weigh?", "Who signs off big expense claims?"]
    for retriever in (dense, bm25, HybridRetriever(bm25, dense),
                      RerankRetriever(bm25, SentenceReranker(embedder), depth=4)):
        scored = retriever.retrieve_scored(questions, 3)
        assert [[i for i, _ in row] for row in scored] == retriever.retrieve(questions, 3)
        for row in scored:
            values = [s for _, s in row]
            assert values == sorted(values, reverse=True), retriever.name
    fused = HybridRetriever(bm25, dense).retrieve_scored(questions[:1], 1)[0][0][1]
    assert 2 / 61 >= fused > 1 / 61  # ranked first by one retriever, in both top lists


class PlantedReranker:
    """A perfect reranker: 1 for the planted passage, 0 for the others."""

    name = "planted"

    def __init__(self, planted: str):
        self.planted = planted

    def score(self, queries, passages):
        return [np.array([float(p == self.planted) for p in candidates]) for candidates in passages]


def test_reranker_reorders_only_the_first_stage_candidates(chunks):
    bm25 = BM25Retriever(chunks)
    first = bm25.retrieve("paid holiday days", 4)[0]
    planted = first[-1]  # the first stage's last candidate holds the answer
    reranked = RerankRetriever(bm25, PlantedReranker(chunks[planted].text), depth=4)
    got = reranked.retrieve("paid holiday days", 4)[0]
    assert sorted(got) == sorted(first)  # a permutation of the candidates
    assert got[0] == planted
    assert got[1:] == [i for i in first if i != planted]  # ties keep the first stage's order


def test_query_likelihood_ranks_the_passage_that_answers_first(model_and_tokenizer):
    model, tok = model_and_tokenizer
    passages = ["The Sedgewick 2 tent weighs 1.42 kg and sleeps two people.",
                "Staff get 27 days of paid holiday a year, plus public holidays.",
                "Expense claims above 450 euros need a regional director's sign-off."]
    reranker = QueryLikelihoodReranker(model, tok, group=2)
    questions = ["How many days of paid holiday do staff get a year?",
                 "How much does the Sedgewick 2 tent weigh?"]
    scores = reranker.score(questions, [passages, passages[::-1]])
    assert int(np.argmax(scores[0])) == 1
    assert int(np.argmax(scores[1])) == 2  # the tent passage, last in the reversed list
    # sharing a passage's cache among questions changes nothing: one at a time, same scores
    alone = QueryLikelihoodReranker(model, tok, group=1, rows=1).score(
        questions, [passages, passages[::-1]])
    assert np.allclose(np.concatenate(alone), np.concatenate(scores), atol=1e-3)


def test_reranker_and_recipe_errors(chunks, embedder):
    with pytest.raises(RetrievalError, match="pass model= and tokenizer="):
        make_reranker("lm")
    with pytest.raises(RetrievalError, match="unknown reranker"):
        make_reranker("cross-encoder", embedder=embedder)
    with pytest.raises(RetrievalError, match="depth"):
        RerankRetriever(BM25Retriever(chunks), PlantedReranker("x"), depth=0)
    with pytest.raises(RetrievalError, match="unknown chunking"):
        recipe_with(chunking="paragraphs")
    with pytest.raises(RetrievalError, match="pass model= and tokenizer="):
        retriever_from_recipe(DOCS, embedder, recipe_with(retriever="hybrid + LM rerank"))


@pytest.mark.parametrize("label", list(CHUNKINGS))
def test_retriever_from_recipe_builds_each_chunking(label, embedder):
    retriever = retriever_from_recipe(DOCS, embedder, recipe_with(chunking=label, retriever="bm25"))
    assert retriever.retrieve("tent weight", 1)[0][0] in {
        i for i, c in enumerate(retriever.chunks) if c.doc_id == "d2"}


# ---------------------------------------------------------------------------- held-out analysis

def test_distractor_ablation_builds_each_context(load_tiny, embedder):
    from mclab.rag_analysis import (answer_sentences, distractor_ablation, distractor_items,
                                    distractor_options, sentences_with)

    model, tok = load_tiny()
    items = [{"question": "Above what amount does a claim need a director?", "doc_id": "d1",
              "options": ["450 euros", "six years", "300 euros", "25 euros"], "answer": 0},
             {"question": "How much does the Sedgewick 2 weigh?", "doc_id": "d2",
              "options": ["2 kg", "1.42 kg", "1.2 kg", "3 kg"], "answer": 1}]
    assert distractor_options(items[0], DOCS[0]) == ["six years"]
    assert distractor_options(items[1], DOCS[1]) == []
    assert sentences_with(DOCS[0], ["six years"]) == "Receipts are kept for six years."
    assert distractor_items(items, DOCS) == items[:1]
    alone, both = (answer_sentences(items[:1], DOCS, with_distractor=w) for w in (False, True))
    assert alone[0].startswith(DOCS[0]["title"] + ": ") and "six years" not in alone[0]
    assert both[0].endswith("Receipts are kept for six years.")
    retriever = retriever_from_recipe(DOCS, embedder, recipe_with(chunking="1 sentence",
                                                                  retriever="bm25"))
    table = distractor_ablation(model, tok, items, DOCS, retriever, k=1, ks=(1, 2))
    hard = table.loc["distractor in gold doc"]
    assert list(hard.index) == ["(i) whole gold document", "(ii) answer sentence only",
                                "(iii) answer + distractor sentences", "(iv) retrieved, k=1"]
    assert (hard["items"] == 1).all() and (table.loc["all items"]["items"] == 2).all()
    # the answer sentence alone is shorter than the answer and distractor sentences together
    assert hard.loc["(ii) answer sentence only", "context_tokens"] < \
        hard.loc["(iii) answer + distractor sentences", "context_tokens"]


def test_method_name_reads_the_retriever_labels():
    from mclab import rag, recipes

    assert rag.RETRIEVER_CHOICES is recipes.RETRIEVERS
    for label in recipes.RETRIEVERS:
        recipe = recipe_with(retriever=label, k=3)
        assert recipe.method_name == f"RAG ({label}, k=3)"
        assert rag.retriever_label(recipe) == label
    from dataclasses import replace

    odd = replace(recipes.RAG, retriever="bm25", rerank="lm", k=1)
    assert odd.method_name == "RAG (bm25 + lm rerank, k=1)"


def test_chunk_similarity_takes_the_index_vectors(chunks, embedder):
    from mclab.rag_answers import ChunkSimilarity

    made = ChunkSimilarity(embedder, chunks)
    handed = ChunkSimilarity(embedder, chunks, vectors=made.vectors)
    assert (handed.to_chunks(["tent weight"]) == made.to_chunks(["tent weight"])).all()
    with pytest.raises(ValueError, match="vectors for"):
        ChunkSimilarity(embedder, chunks, vectors=made.vectors[:1])


# ---------------------------------------------------------------------------- choosing settings

def test_validation_items_put_the_fact_span_among_same_kind_distractors():
    from mclab.rag_tuning import fact_spans, span_kind, validation_items

    train_qa = list(load_scenario("company")["train_qa"])
    spans = fact_spans(train_qa)
    assert spans["f-001"] == "14 March 1987" and spans["f-015"] == "450 euros"
    assert span_kind("07:15") == ("time", "time") and span_kind("1.42 kg") == ("number", "kg")
    items = validation_items(train_qa, per_fact=1)
    assert len(items) == len(spans)
    for item in items:
        assert item["options"][item["answer"]] == spans[item["fact_id"]]
        assert len({o.lower() for o in item["options"]}) == 4
    euros = next(it for it in items if it["fact_id"] == "f-015")
    assert all(span_kind(o) == ("number", "euros") for o in euros["options"])
    assert validation_items(train_qa, per_fact=1) == items  # seeded: the same every run


def test_choose_takes_the_shortest_context_within_one_standard_error():
    from mclab.rag_tuning import choose

    rows = [{"name": "long", "mc_accuracy": 0.90, "mc_se": 0.03, "context_tokens": 300},
            {"name": "short", "mc_accuracy": 0.88, "mc_se": 0.035, "context_tokens": 100},
            {"name": "shortest", "mc_accuracy": 0.80, "mc_se": 0.04, "context_tokens": 50}]
    assert choose(rows)["name"] == "short"
    rows[1]["mc_accuracy"] = 0.86  # now more than one standard error (0.03) below the best
    assert choose(rows)["name"] == "long"
    with pytest.raises(RetrievalError, match="no reader results"):
        choose([])


def test_checkpoint_resumes_only_for_the_same_inputs(tmp_path):
    from mclab.rag_tuning import Checkpoint, inputs_key

    path = tmp_path / "partial.json"
    key = inputs_key(["q1", "q2"], 1)
    Checkpoint(path, key).put("rank|1 sentence|bm25", {"ranked": [[0, 1]], "ms": 1.0})
    assert Checkpoint(path, key).get("rank|1 sentence|bm25") == {"ranked": [[0, 1]], "ms": 1.0}
    assert Checkpoint(path, inputs_key(["q1", "q3"], 1)).get("rank|1 sentence|bm25") is None
    assert Checkpoint().put("x", 1) == 1 and not (tmp_path / "x").exists()


def test_the_recipe_is_the_setting_chosen_on_validation():
    """recipes.RAG holds what tools/choose_rag_settings.py chose (reports/rag_settings.json),
    and the choice follows the recorded rule from the recorded reader grid."""
    from mclab import recipes
    from mclab.rag import chunking_label, retriever_label
    from mclab.rag_tuning import choose, settings_report

    record = settings_report()
    chosen = record["chosen"]
    assert (chunking_label(recipes.RAG), retriever_label(recipes.RAG), recipes.RAG.k) == \
        (chosen["chunking"], chosen["retriever"], chosen["k"])
    assert choose(record["reader_grid"]) == chosen
    assert record["validation"]["span_questions"] == 255  # every training question, full mode
