"""Rerankers: re-score a first stage's candidate passages with a stronger, slower model.

Each has `score(queries, passages) -> list[np.ndarray]` (for each query, one score per
candidate passage, higher is better); `mclab.rag.RerankRetriever` sorts by it. No new
model is downloaded:

- `QueryLikelihoodReranker`: the course's language model reads a passage and scores the
  question, the mean log p(question | passage) (UPR, Sachan et al., 2022);
- `SentenceReranker`: the embedder, sentence by sentence: a passage scores its best
  sentence's cosine similarity to the question.
"""

from __future__ import annotations

import numpy as np

from .chunking import RetrievalError, split_sentences
from .evaluation import option_logprobs
from .generation import format_chat
from .models import embed

UPR_INSTRUCTION = "Passage: {passage}\nPlease write a question based on this passage."


def _check(queries, passages) -> None:
    if len(queries) != len(passages):
        raise RetrievalError(f"{len(queries)} queries but {len(passages)} candidate lists; "
                             "pass one list of passages per query")


class QueryLikelihoodReranker:
    """Mean log-probability of the question given the passage, under the language model.

    Scored by `mclab.evaluation.option_logprobs`: each passage is read once and its cache
    is shared by the questions it is a candidate for (up to `group` at a time), so reranking
    many questions costs about one forward pass per distinct candidate passage plus the
    questions' own tokens. `rows`: question continuations scored in one batch (memory).
    """

    name = "lm"

    def __init__(self, model, tokenizer, group: int = 32, rows: int = 64,
                 instruction: str = UPR_INSTRUCTION):
        self.model, self.tokenizer, self.instruction = model, tokenizer, instruction
        self.group, self.rows = group, rows

    def score(self, queries: list[str], passages: list[list[str]]) -> list[np.ndarray]:
        _check(queries, passages)
        asked: dict[str, list[tuple[int, int]]] = {}  # passage -> (query, candidate position)
        for q, candidates in enumerate(passages):
            for j, passage in enumerate(candidates):
                asked.setdefault(passage, []).append((q, j))
        prompts, options, where = [], [], []
        for passage, pairs in asked.items():
            prompt = format_chat(self.tokenizer, self.instruction.format(passage=passage))
            for start in range(0, len(pairs), self.group):
                group = pairs[start:start + self.group]
                prompts.append(prompt)
                options.append([queries[q] for q, _ in group])
                where.append(group)
        scores = [np.zeros(len(c)) for c in passages]
        if not prompts:
            return scores
        batch = max(1, self.rows // max(map(len, options)))  # prompts per batch
        for group, values in zip(where, option_logprobs(self.model, self.tokenizer, prompts,
                                                        options, batch_size=batch)):
            for (q, j), value in zip(group, values):
                scores[q][j] = value
        return scores


def passage_sentences(passage: str) -> list[str]:
    """The sentences of a chunk's text, each with the chunk's title ("Title: ...") in front."""
    title, sep, body = passage.partition(": ")
    if not sep:
        return split_sentences(passage) or [passage]
    return [f"{title}: {s}" for s in split_sentences(body)] or [passage]


class SentenceReranker:
    """A passage scores the cosine similarity of its best sentence to the question: a short
    sentence that states the answer is not diluted by the sentences around it."""

    name = "sentence"

    def __init__(self, embedder):
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}  # passage -> its sentences' embeddings

    def _sentence_vectors(self, passages) -> None:
        new = [p for p in dict.fromkeys(passages) if p not in self._vectors]
        pieces = [passage_sentences(p) for p in new]
        flat = embed(self.embedder, [s for piece in pieces for s in piece]) if new else None
        start = 0
        for passage, piece in zip(new, pieces):
            self._vectors[passage] = flat[start:start + len(piece)]
            start += len(piece)

    def score(self, queries: list[str], passages: list[list[str]]) -> list[np.ndarray]:
        _check(queries, passages)
        self._sentence_vectors([p for candidates in passages for p in candidates])
        query_vectors = embed(self.embedder, queries)
        return [np.array([float((self._vectors[p] @ qv).max()) for p in candidates])
                for qv, candidates in zip(query_vectors, passages)]


RERANKERS = ("lm", "sentence")


def make_reranker(kind: str, model=None, tokenizer=None, embedder=None):
    """'lm' (needs the model and tokenizer) or 'sentence' (needs the embedder)."""
    if kind == "lm":
        if model is None or tokenizer is None:
            raise RetrievalError("the 'lm' reranker scores passages with the language model: "
                                 "pass model= and tokenizer=")
        return QueryLikelihoodReranker(model, tokenizer)
    if kind == "sentence":
        if embedder is None:
            raise RetrievalError("the 'sentence' reranker needs the embedder: pass embedder=")
        return SentenceReranker(embedder)
    raise RetrievalError(f"unknown reranker {kind!r}; choose one of {', '.join(RERANKERS)} "
                         "(or None for no reranking)")
