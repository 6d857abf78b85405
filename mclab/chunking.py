"""Chunking: documents into passages that a retriever ranks and a model reads.

- `chunk_documents`: fixed windows of words with overlap (notebook 02 starts here);
- `split_sentences` and `chunk_sentences`: windows of whole sentences, so a fact stated in
  one sentence is never cut in two.

Each chunk keeps its document id and title; the title goes in front of its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class RetrievalError(ValueError):
    """Bad input to chunking, indexing or retrieval; the message says how to fix it."""


@dataclass(frozen=True)
class Chunk:
    doc_id: str  # the source document, so a hit can be checked against the gold doc
    title: str
    text: str  # the passage as the retriever and the model see it (title first)
    access: str = "all"  # who may read it: its document's label (mclab.access)


def check_window(size, overlap, unit: str) -> None:
    """A window of `size` units (words or sentences) stepping by `size - overlap`."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise RetrievalError(f"chunk size must be a positive number of {unit}, got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
        raise RetrievalError(f"overlap must be >= 0 and smaller than the chunk size ({size} "
                             f"{unit}), got {overlap!r}")


def windows(units: list[str], size: int, overlap: int) -> list[list[str]]:
    """Consecutive windows of `size` units, each starting `size - overlap` after the last;
    the last window reaches the end."""
    return [units[start:start + size]
            for start in range(0, max(len(units) - overlap, 1), size - overlap)]


def _chunks(documents, pieces_of, size: int, overlap: int, with_title: bool) -> list[Chunk]:
    chunks = []
    for doc in documents:
        for window in windows(pieces_of(doc["text"]), size, overlap):
            body = " ".join(window)
            chunks.append(Chunk(doc["id"], doc["title"],
                                f"{doc['title']}: {body}" if with_title else body,
                                doc.get("access", "all")))
    if not chunks:
        raise RetrievalError("no documents to chunk; pass a non-empty list of documents")
    return chunks


def chunk_documents(documents, size: int = 60, overlap: int = 20,
                    with_title: bool = True) -> list[Chunk]:
    """Split each document into windows of `size` words that overlap by `overlap` words.

    The title goes in front of every chunk: a window from the middle of a policy no longer
    says which policy it is, and both BM25 and the embedder need that.
    """
    check_window(size, overlap, "words")
    return _chunks(documents, str.split, size, overlap, with_title)


# A period after one of these does not end a sentence ("e.g. Trailhead", "Dr. Holloway");
# "No." only before a number ("No. 4"), since "no." also ends sentences.
ABBREVIATIONS = {"e.g", "i.e", "cf", "vs", "approx", "incl", "Mr", "Mrs", "Ms", "Dr", "Prof",
                 "St", "Fig", "Dept", "Ext", "Tel"}
# end punctuation, closing quotes or brackets, space, then what can open a sentence
_BOUNDARY = re.compile(r"[.!?][\"'\u2019)\]]*\s+(?=[\"'\u2018(\[]?[A-Z0-9])")


def _ends_sentence(text: str, boundary: re.Match) -> bool:
    if text[boundary.start()] != ".":
        return True
    word = text[:boundary.start()].split()[-1].lstrip("(\"'")
    if word in ABBREVIATIONS or (len(word) == 1 and word.isupper()):  # "K. Threlfall"
        return False
    return not (word in {"No", "no", "Nos"} and text[boundary.end()].isdigit())


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, each with its end punctuation.

    A sentence ends at . ! or ? followed by a space and a capital letter or a digit, so
    decimals ("1.42 kg"), times ("16:40"), codes ("KA-TN-2208") and abbreviations ("e.g.",
    "No. 4") do not end one. Every character but the spaces between sentences is kept.
    """
    if not isinstance(text, str):
        raise RetrievalError(f"split_sentences needs a string, got {type(text).__name__}")
    sentences, start = [], 0
    for boundary in _BOUNDARY.finditer(text):
        if _ends_sentence(text, boundary):
            sentences.append(text[start:boundary.end()].strip())
            start = boundary.end()
    tail = text[start:].strip()
    return sentences + [tail] if tail else sentences


def chunk_sentences(documents, sentences: int = 2, overlap: int = 1,
                    with_title: bool = True) -> list[Chunk]:
    """Windows of `sentences` whole sentences that share `overlap` sentences, title first.

    A sentence is never cut, so a fact stated in one sentence is whole in some chunk; word
    windows cut sentences at their edges.
    """
    check_window(sentences, overlap, "sentences")
    return _chunks(documents, split_sentences, sentences, overlap, with_title)
