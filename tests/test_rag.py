"""mclab.rag: chunking, indexes, retrievers, saving, and the errors for bad input."""

import json

import numpy as np
import pytest

from mclab.data import load_scenario
from mclab.rag import (BM25Retriever, DenseIndex, DenseRetriever, HybridRetriever,
                       IndexMismatchError, RetrievalError, build_context, chunk_documents,
                       check_queries, rag_knowledge, rag_panel_run, recall_at_k, recall_table)

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
    row = rag_panel_run(model, tok, embedder, docs, items[:2], 1, 40, "bm25")
    assert set(row) >= {"recall", "knowledge", "chunks"}
    with pytest.raises(RetrievalError, match="larger than the number of chunks"):
        rag_panel_run(model, tok, embedder, docs, items[:2], 99, 200, "dense")
