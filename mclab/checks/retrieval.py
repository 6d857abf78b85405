"""Checks for 02_retrieval_rag."""

import numpy as np

from . import exercise, expect_number, fail, passed


@exercise("02 easy: recall@k by hand")
def check_recall(func, *, title: str) -> None:
    retrieved_docs = [["d1", "d2"], ["d3", "d3"], ["d2", "d5"], ["d4", "d1"]]
    gold = ["d2", "d1", "d2", "d1"]
    got = func(retrieved_docs, gold)
    expect_number(title, got,
                  "return the share of questions whose gold document is among the retrieved ones")
    if abs(got - 3) < 1e-9:
        fail(title, "that is a count (3 hits), not a share", "divide by the number of questions")
    if abs(got - 0.75) > 1e-9:
        fail(title, f"got {got}, expected 0.75 on a 4-question case (hits on questions 1, 3, 4)",
             "a question counts once if ANY of its k retrieved chunks comes from its document")
    return passed(title, "recall@k is a share of questions, hit at any rank.")


@exercise("02 medium: reciprocal rank fusion")
def check_rrf(func, *, title: str) -> None:
    bm25, dense = [3, 1, 7, 2], [1, 5, 3, 9]
    got = func(bm25, dense, 3)
    try:
        got = [int(i) for i in got]
    except TypeError:
        fail(title, f"expected a list of chunk ids, got {type(got).__name__}",
             "return the k ids with the largest fused score")
    want = [1, 3, 5]
    if got[:1] == [3]:
        fail(title, "chunk 3 came first, but chunk 1 is ranked higher overall (1st and 2nd "
             "vs 1st and 3rd)", "score each id by the SUM over rankings of 1 / (60 + rank), "
             "rank starting at 1")
    if got != want:
        fail(title, f"got {got}, expected {want}",
             "sum 1 / (60 + rank) over both rankings, sort by that score, keep the top k")
    return passed(title, "ids found by both retrievers rise to the top.")


@exercise("02 hard: word windows with overlap")
def check_windows(func, text: str, size: int, overlap: int, reference: list[str], *,
                  title: str) -> None:
    got = func(text, size, overlap)
    if not isinstance(got, list) or not all(isinstance(g, str) for g in got):
        fail(title, "expected a list of strings", "return ' '.join(words[start:start + size]) "
             "for each start")
    words = text.split()
    covered = set(" ".join(got).split())
    if covered != set(words):
        fail(title, "some words of the text are in no window",
             "the last window must reach the end of the text")
    if got != reference:
        starts = [len(g.split()) for g in got[:3]]
        fail(title, f"your {len(got)} windows differ from chunk_documents' {len(reference)} "
             f"(first lengths {starts if starts else 'none'})",
             f"step by size - overlap ({size - overlap} words) and stop once a window reaches "
             "the end")
    return passed(title, f"{len(got)} windows, the same as mclab.rag.chunk_documents.")


BM25_DOCS = [["refund", "within", "thirty", "days", "of", "purchase"],
             ["the", "servo", "sells", "petrol", "and", "pies"],
             ["refund", "refund", "policy", "for", "pies"],
             ["opening", "hours", "of", "the", "quay", "street", "office", "are", "eight", "to",
              "five"],
             ["pies"]]
BM25_QUERIES = [["refund", "pies"], ["office", "hours"], ["petrol", "servo", "kangaroo"]]


def _bm25s_scores(query, docs, k1, b):
    import bm25s

    model = bm25s.BM25(k1=k1, b=b)  # method "lucene", the variant mclab's BM25Retriever uses
    model.index(docs, show_progress=False)
    known = [w for w in query if w in model.vocab_dict]  # bm25s scores known words only
    return np.asarray(model.get_scores(known), dtype=float)


@exercise("02 hard: BM25 scores by hand")
def check_bm25(func, *, title: str) -> None:
    n = len(BM25_DOCS)
    for k1, b in ((1.5, 0.75), (1.2, 0.0), (2.0, 1.0)):
        for query in BM25_QUERIES:
            want = _bm25s_scores(query, BM25_DOCS, k1, b)
            got = func(list(query), [list(d) for d in BM25_DOCS], k1, b)
            try:
                got = np.asarray(got, dtype=float).reshape(-1)
            except (TypeError, ValueError):
                fail(title, f"expected one score per document, got {type(got).__name__}",
                     "return a list or array of len(docs) numbers")
            if got.shape != want.shape:
                fail(title, f"{got.size} scores for {n} documents",
                     "one score per document, in order")
            if np.allclose(got, want, rtol=1e-4, atol=1e-5):
                continue
            case = f"query {query} with k1={k1}, b={b}"
            nz = want > 0
            ratio = got[nz] / want[nz] if nz.any() else np.array([np.nan])
            if np.allclose(ratio, k1 + 1, rtol=1e-4):
                fail(title, f"on {case} your scores are (k1 + 1) = {k1 + 1} times bm25s's "
                     "(the same ranking)", "bm25s uses Lucene's variant, whose term part "
                     "tf / (tf + k1 * (1 - b + b * len / avg_len)) drops the constant (k1 + 1)")
            if (got < -1e-9).any():
                fail(title, f"on {case} some scores are negative: {np.round(got, 3)}",
                     "Lucene's idf, log(1 + (N - df + 0.5) / (df + 0.5)), is never negative")
            worst = int(np.argmax(np.abs(got - want)))
            fail(title, f"on {case} your scores {np.round(got, 4)} differ from bm25s's "
                 f"{np.round(want, 4)} (most at document {worst}: {BM25_DOCS[worst]})",
                 "score = sum over the query's words of idf(word) * tf / (tf + k1 * (1 - b + b * "
                 "len(doc) / average len)), idf = log(1 + (N - df + 0.5) / (df + 0.5)), df = "
                 "documents containing the word; a word in no document adds nothing")
    return passed(title, "the same scores as bm25s (the library behind mclab's BM25Retriever).")
