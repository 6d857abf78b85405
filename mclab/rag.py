"""Retrieval-augmented generation: index, retrieve, rerank, and answer with passages.

The pieces, each small and testable:
- chunks come from `mclab.chunking` (word windows, or windows of whole sentences);
- `DenseIndex`: sentence embeddings in a FAISS index (exact inner product, or HNSW / IVF),
  saved with the embedder's name and dimension so a mismatched embedder is refused;
- `BM25Retriever` (bm25s), `DenseRetriever`, `HybridRetriever` (reciprocal rank fusion) and
  `RerankRetriever` (a first stage reordered by a `mclab.rerank` reranker), all with the
  same `retrieve(queries, k)` and `retrieve_scored(queries, k)`;
- `retriever_from_recipe`: the retriever `recipes.Rag` describes, built in one place;
- `rag_knowledge` scores the answers built on the passages; `mclab.retrieval_metrics`
  measures whether the passages hold the answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import recipes
from .chunking import (Chunk, RetrievalError, chunk_documents, chunk_sentences,  # noqa: F401
                       split_sentences)
from .compat import embedding_dimension
from .evaluation import knowledge_score
from .files import write_bytes_atomic
from .models import embed, embedder_name  # noqa: F401 (notebook 02 imports embed from here)
from .retrieval_metrics import (contains_answer, doc_recall_at_k, mc_answers,  # noqa: F401
                                recall_at_k, recall_table, span_recall_at_k, span_recall_table)

RAG_SYSTEM = ("You are a helpful assistant for Kestrel & Ashdown Outfitters. "
              "Answer the question using the passages.")
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al., 2009)


class IndexMismatchError(RetrievalError):
    """A saved index was built with a different embedder than the one given to load it."""


def check_queries(queries) -> list[str]:
    if isinstance(queries, str):
        queries = [queries]
    queries = list(queries)
    if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
        raise RetrievalError("empty query: type a question (every query must be non-empty text)")
    return queries


def check_k(k: int, n_chunks: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise RetrievalError(f"k must be a positive integer, got {k!r}")
    if k > n_chunks:
        raise RetrievalError(f"k={k} is larger than the number of chunks ({n_chunks}); "
                             f"ask for at most {n_chunks} passages or use smaller chunks")


def make_faiss_index(vectors: np.ndarray, kind: str = "flat", hnsw_m: int = 16,
                     ivf_lists: int = 8):
    """A FAISS index over unit vectors: exact ("flat"), graph ("hnsw") or clustered ("ivf")."""
    import faiss

    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 32
    elif kind == "ivf":
        nlist = max(1, min(ivf_lists, len(vectors) // 4))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = max(1, nlist // 4)
    else:
        raise RetrievalError(f"unknown index kind {kind!r}; choose 'flat', 'hnsw' or 'ivf'")
    index.add(vectors)
    return index


class DenseIndex:
    """Chunks, their embeddings in a FAISS index, and the embedder that made them."""

    def __init__(self, chunks: list[Chunk], index, model_name: str, dim: int, kind: str):
        self.chunks, self.index, self.model_name, self.dim, self.kind = \
            chunks, index, model_name, dim, kind

    @classmethod
    def build(cls, chunks: list[Chunk], embedder, kind: str = "flat",
              vectors: np.ndarray | None = None, **index_kwargs) -> "DenseIndex":
        if not chunks:
            raise RetrievalError("no chunks to index")
        vectors = embed(embedder, [c.text for c in chunks]) if vectors is None else vectors
        return cls(list(chunks), make_faiss_index(vectors, kind, **index_kwargs),
                   embedder_name(embedder), embedding_dimension(embedder), kind)

    def __len__(self) -> int:
        return len(self.chunks)

    def search_vectors(self, query_vectors: np.ndarray, k: int):
        check_k(k, len(self))
        scores, ids = self.index.search(query_vectors, k)
        return scores, ids

    def save(self, folder: str | Path) -> Path:
        """Write the index and its metadata; each file lands whole or not at all."""
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"embedder": self.model_name, "dim": self.dim, "kind": self.kind,
                "n_chunks": len(self.chunks),
                "chunks": [c.__dict__ for c in self.chunks]}
        write_bytes_atomic(folder / "index.faiss", faiss.serialize_index(self.index).tobytes())
        write_bytes_atomic(folder / "meta.json", json.dumps(meta, indent=1).encode())
        return folder

    @classmethod
    def load(cls, folder: str | Path, embedder) -> "DenseIndex":
        import faiss

        folder = Path(folder)
        if not (folder / "meta.json").is_file() or not (folder / "index.faiss").is_file():
            raise RetrievalError(f"{folder} holds no saved index (need index.faiss and meta.json)")
        meta = json.loads((folder / "meta.json").read_text())
        name, dim = embedder_name(embedder), embedding_dimension(embedder)
        if meta["embedder"] != name or meta["dim"] != dim:
            raise IndexMismatchError(
                f"this index was built with {meta['embedder']!r} ({meta['dim']}-d vectors) but "
                f"you passed {name!r} ({dim}-d); query vectors would not match. Load it with "
                "the same embedder, or rebuild the index with this one.")
        data = np.frombuffer((folder / "index.faiss").read_bytes(), dtype=np.uint8)
        chunks = [Chunk(**c) for c in meta["chunks"]]
        return cls(chunks, faiss.deserialize_index(data), name, dim, meta["kind"])


# ---------------------------------------------------------------------------- retrievers

Scored = list[list[tuple[int, float]]]  # per query: (chunk id, score), best first


class Retriever:
    """What every retriever shares: `retrieve` is `retrieve_scored` without the scores."""

    chunks: list[Chunk]

    def retrieve_scored(self, queries, k: int) -> Scored:
        raise NotImplementedError

    def retrieve(self, queries, k: int) -> list[list[int]]:
        """The ids of the top-`k` chunks for each query, best first."""
        return [[i for i, _ in row] for row in self.retrieve_scored(queries, k)]


class DenseRetriever(Retriever):
    name = "dense"

    def __init__(self, index: DenseIndex, embedder):
        if embedder_name(embedder) != index.model_name or embedding_dimension(embedder) != index.dim:
            raise IndexMismatchError(
                f"the index was built with {index.model_name!r} ({index.dim}-d) but the "
                f"embedder is {embedder_name(embedder)!r}; use the same embedder")
        self.index, self.embedder, self.chunks = index, embedder, index.chunks

    def retrieve_scored(self, queries, k: int) -> Scored:
        """Cosine similarity of query and chunk embeddings."""
        queries = check_queries(queries)
        scores, ids = self.index.search_vectors(embed(self.embedder, queries), k)
        return [[(int(i), float(s)) for i, s in zip(id_row, score_row) if i >= 0]
                for id_row, score_row in zip(ids, scores)]

    def save(self, folder: str | Path) -> Path:
        return self.index.save(folder)


class BM25Retriever(Retriever):
    name = "bm25"

    def __init__(self, chunks: list[Chunk]):
        import bm25s

        self.chunks = list(chunks)
        self._bm25s = bm25s
        self.model = bm25s.BM25()
        self.model.index(self._tokens([c.text for c in self.chunks]), show_progress=False)

    def _tokens(self, texts):
        return self._bm25s.tokenize(list(texts), stopwords="en", return_ids=False,
                                    show_progress=False)

    def retrieve_scored(self, queries, k: int) -> Scored:
        """BM25 scores (bm25s, English stopwords dropped)."""
        queries = check_queries(queries)
        check_k(k, len(self.chunks))
        ids, scores = self.model.retrieve(self._tokens(queries), k=k, show_progress=False)
        return [[(int(i), float(s)) for i, s in zip(id_row, score_row)]
                for id_row, score_row in zip(ids, scores)]

    def save(self, folder: str | Path) -> Path:
        self.model.save(str(folder))
        return Path(folder)


def rrf_fuse(rankings: list[list[int]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each id scores the sum of 1 / (RRF_K + rank) over rankings."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, idx in enumerate(ranking, 1):
            score[idx] = score.get(idx, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(score.items(), key=lambda item: -item[1])[:k]


class HybridRetriever(Retriever):
    """Reciprocal rank fusion of BM25 and dense: exact names and codes plus paraphrases."""

    name = "hybrid"

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, depth: int = 20):
        self.bm25, self.dense, self.chunks, self.depth = bm25, dense, dense.chunks, depth

    def retrieve_scored(self, queries, k: int) -> Scored:
        """The fused RRF score of each chunk (ranks from both retrievers, down to `depth`)."""
        queries = check_queries(queries)
        check_k(k, len(self.chunks))
        depth = min(max(k, self.depth), len(self.chunks))
        return [rrf_fuse([a, b], k) for a, b in zip(self.bm25.retrieve(queries, depth),
                                                     self.dense.retrieve(queries, depth))]

    def save(self, folder: str | Path) -> Path:
        self.bm25.save(Path(folder) / "bm25")
        self.dense.save(Path(folder) / "dense")
        return Path(folder)


RETRIEVERS = ("bm25", "dense", "hybrid")


def make_retriever(kind: str, chunks: list[Chunk], embedder, index: DenseIndex | None = None):
    """'bm25', 'dense' or 'hybrid' over the chunks (the dense index is built if not given)."""
    if kind not in RETRIEVERS:
        raise RetrievalError(f"unknown retriever {kind!r}; choose 'bm25', 'dense' or 'hybrid'")
    if kind == "bm25":
        return BM25Retriever(chunks)
    dense = DenseRetriever(index or DenseIndex.build(chunks, embedder), embedder)
    return dense if kind == "dense" else HybridRetriever(BM25Retriever(chunks), dense)


class RerankRetriever(Retriever):
    """A first stage's top `depth` candidates, reordered by a reranker (`mclab.rerank`)."""

    def __init__(self, first_stage, reranker, depth: int = 20):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise RetrievalError(f"rerank depth must be a positive integer, got {depth!r}")
        self.first_stage, self.reranker, self.depth = first_stage, reranker, depth
        self.chunks = first_stage.chunks
        self.readable = getattr(first_stage, "readable", None)  # set when access-filtered
        self.name = f"{first_stage.name}+{reranker.name}"

    def retrieve_scored(self, queries, k: int) -> Scored:
        """The reranker's scores; ties keep the first stage's order."""
        queries = check_queries(queries)
        n = len(self.chunks) if self.readable is None else len(self.readable)
        check_k(k, n)
        candidates = self.first_stage.retrieve(queries, min(max(k, self.depth), n))
        scores = self.reranker.score(queries, [[self.chunks[i].text for i in ids]
                                               for ids in candidates])
        return [sorted(zip(ids, map(float, row)), key=lambda pair: -pair[1])[:k]
                for ids, row in zip(candidates, scores)]

    def save(self, folder: str | Path) -> Path:
        return self.first_stage.save(folder)  # the reranker is a model the course already has


# ---------------------------------------------------------------------------- recipes

# What the panel offers and `rag_tuning` compares: label -> `recipes.Rag` fields.
CHUNKINGS = {
    "60 words, overlap 20": dict(chunking="words", chunk_size=60, overlap=20),
    "1 sentence": dict(chunking="sentences", sentences=1, sentence_overlap=0),
    "2 sentences": dict(chunking="sentences", sentences=2, sentence_overlap=0),
    "2 sentences, overlap 1": dict(chunking="sentences", sentences=2, sentence_overlap=1),
    "3 sentences": dict(chunking="sentences", sentences=3, sentence_overlap=0),
    "3 sentences, overlap 1": dict(chunking="sentences", sentences=3, sentence_overlap=1),
}
RETRIEVER_CHOICES = recipes.RETRIEVERS  # label -> recipe fields


def _label(choices: dict, recipe) -> str:
    return next((label for label, values in choices.items()
                 if all(getattr(recipe, f) == v for f, v in values.items())), "custom")


def chunking_label(recipe) -> str:
    return _label(CHUNKINGS, recipe)


def retriever_label(recipe) -> str:
    return _label(RETRIEVER_CHOICES, recipe)


def recipe_with(recipe=None, **choices):
    """`recipe` (default `recipes.RAG`) with some knobs changed; `chunking` and `retriever`
    may be labels of `CHUNKINGS` and `RETRIEVER_CHOICES` ("2 sentences", "hybrid")."""
    from dataclasses import replace

    recipe = recipe or recipes.RAG
    for key, table in (("chunking", CHUNKINGS), ("retriever", RETRIEVER_CHOICES)):
        label = choices.get(key)
        if label in table:
            choices = {**{k: v for k, v in choices.items() if k != key}, **table[label]}
        elif key == "chunking" and label not in (None, "words", "sentences"):
            raise RetrievalError(f"unknown chunking {label!r}; choose one of {', '.join(table)}")
    return replace(recipe, **choices)


def chunks_from_recipe(documents, recipe) -> list[Chunk]:
    """The chunks a recipe names: word windows or sentence windows."""
    if recipe.chunking == "sentences":
        return chunk_sentences(documents, recipe.sentences, recipe.sentence_overlap)
    if recipe.chunking == "words":
        return chunk_documents(documents, recipe.chunk_size, recipe.overlap)
    raise RetrievalError(f"unknown chunking {recipe.chunking!r}; choose 'words' or 'sentences'")


def retriever_from_recipe(documents, embedder, recipe=None, model=None, tokenizer=None,
                          index: DenseIndex | None = None, user=None):
    """The retriever a `recipes.Rag` describes (default: the course's, `recipes.RAG`), over
    the documents: chunking, first stage, and the reranker if any. The LM reranker needs
    `model` and `tokenizer`; `index`, a dense index of the same chunks, saves re-embedding.
    `user` (a role of `access.ROLES` or a set of groups): rank only the chunks they may read.
    The one place the report, the panel and the notebooks build a retriever from settings.
    """
    from .rerank import make_reranker

    recipe = recipe or recipe_with()
    chunks = chunks_from_recipe(documents, recipe)
    if index is not None and index.chunks != chunks:
        raise RetrievalError("the index given holds other chunks than this recipe makes; "
                             "build it from chunks_from_recipe(documents, recipe)")
    if user is None and any(c.access != "all" for c in chunks):
        raise RetrievalError("some documents are restricted (access other than 'all'); pass "
                             "user= (a role of mclab.access.ROLES or a set of groups) so that "
                             "retrieval shows each user only what they may read")
    retriever = make_retriever(recipe.retriever, chunks, embedder, index)
    if user is not None:  # filter before any reranker sees the passages
        from .access import AccessFilteredRetriever

        retriever = AccessFilteredRetriever(retriever, user)
    if recipe.rerank is None:
        return retriever
    return RerankRetriever(retriever, make_reranker(recipe.rerank, model, tokenizer, embedder),
                           recipe.rerank_depth)


# ---------------------------------------------------------------------------- answering

def build_context(chunk_ids: list[int], chunks: list[Chunk], best_last: bool = True) -> str:
    """The retrieved passages as one context, numbered; the best one nearest the question.

    A small model attends most to what it read last, so the top passage goes at the end.
    """
    ordered = list(reversed(chunk_ids)) if best_last else list(chunk_ids)
    return "\n\n".join(f"[{n}] {chunks[i].text}" for n, i in enumerate(ordered, 1))


@dataclass
class RagResult:
    accuracy: float
    recall: float
    retrieved: list[list[int]]
    contexts: list[str]
    correct: list[bool]
    seconds: float
    retrieval_ms: float  # per question
    prompt_tokens: float  # mean, including the passages
    # share of questions with a passage that holds the answer (the correct option's text);
    # `recall` only asks for a chunk of the right document
    span_recall: float = float("nan")


def rag_knowledge(model, tokenizer, items, retriever, k: int = 2,
                  system: str | None = RAG_SYSTEM, best_last: bool = True) -> RagResult:
    """Knowledge score with the top-`k` passages as context, plus retrieval recall@k
    (document recall, and answer-span recall for items with options)."""
    items = list(items)
    start = time.perf_counter()
    retrieved = retriever.retrieve([it["question"] for it in items], k)
    retrieval_ms = 1000 * (time.perf_counter() - start) / len(items)
    contexts = [build_context(ids, retriever.chunks, best_last) for ids in retrieved]
    result = knowledge_score(model, tokenizer, items, contexts, system=system)
    tokens = np.mean([len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in contexts])
    recall = (doc_recall_at_k(retrieved, retriever.chunks, [it["doc_id"] for it in items])
              if all("doc_id" in it for it in items) else float("nan"))  # nan: no gold doc
    span = span_recall_at_k(retrieved, retriever.chunks, mc_answers(items))
    return RagResult(result.accuracy, recall, retrieved, contexts, result.correct,
                     time.perf_counter() - start, retrieval_ms, float(tokens), span)


# ---------------------------------------------------------------------------- widget

def rag_panel_run(model, tokenizer, embedder, documents, items, k: int, chunking: str,
                  retriever: str) -> dict:
    """The panel's work: the course recipe with the panel's k, chunking and retriever
    (labels of `CHUNKINGS`, `RETRIEVER_CHOICES`), rebuilt and scored on `items`."""
    if retriever not in RETRIEVER_CHOICES:
        raise RetrievalError(f"unknown retriever {retriever!r}; choose one of "
                             f"{', '.join(RETRIEVER_CHOICES)}")
    recipe = recipe_with(k=k, chunking=chunking, retriever=retriever)
    built = retriever_from_recipe(documents, embedder, recipe, model, tokenizer)
    check_k(k, len(built.chunks))
    result = rag_knowledge(model, tokenizer, items, built, k=k)
    first = built.retrieve_scored([items[0]["question"]], k)[0]
    return {"chunks": len(built.chunks), "recall": result.recall,
            "span recall": result.span_recall, "knowledge": result.accuracy,
            "prompt tokens": result.prompt_tokens, "seconds": result.seconds,
            # what the retriever handed the model for the first question, with its scores
            "question": items[0]["question"], "answer": mc_answers(items[:1])[0],
            "passages": [(built.chunks[i].doc_id, score, built.chunks[i].text)
                         for i, score in first]}


def rag_panel(model, tokenizer, embedder, documents, items, closed_book: float | None = None):
    """k, chunking and retriever (the course recipe's to start); re-scores, redraws the bars."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from .widgets import panel

    recipe = recipe_with()
    controls = {
        "k": w.IntSlider(value=recipe.k, min=1, max=8, description="k"),
        "chunking": w.Dropdown(options=list(CHUNKINGS), value=chunking_label(recipe),
                               description="chunks"),
        "retriever": w.Dropdown(options=list(RETRIEVER_CHOICES), value=retriever_label(recipe),
                                description="retriever"),
    }

    def render(row, values):
        bars = {"chunk of the doc": row["recall"], "answer in passages": row["span recall"],
                "RAG knowledge": row["knowledge"]}
        if closed_book is not None:
            bars = {"closed book": closed_book, **bars}
        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.bar(list(bars), list(bars.values()), color=[f"C{i}" for i in range(len(bars))])
        ax.set_ylim(0, 1)
        ax.set_title(f"{values['retriever']}, k={values['k']}, {values['chunking']} "
                     f"({row['chunks']} chunks, {len(items)} questions)", fontsize=9)
        plt.show()
        print(f"mean prompt tokens {row['prompt tokens']:.0f} · {row['seconds']:.1f} s")
        print(f"\nfirst question: {row['question']}  (answer: {row['answer']})")
        for rank, (doc_id, score, text) in enumerate(row["passages"], 1):
            mark = "✓" if contains_answer(text, row["answer"]) else " "
            print(f" {mark} {rank}. [{doc_id}] score {score:.3f}  {' '.join(text.split())[:150]}")

    return panel(controls, lambda k, chunking, retriever: rag_panel_run(
                     model, tokenizer, embedder, documents, items, k, chunking, retriever),
                 render, button="Run", run_on_change=False,
                 layout=[["k", "chunking", "retriever", "button"]])
