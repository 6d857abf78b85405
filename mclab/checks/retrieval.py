"""Checks for 02_retrieval_rag."""

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
