"""Retrieval-augmented generation: chunk, embed, index, retrieve, and answer with passages.

The pieces, each small and testable:
- `chunk_documents`: fixed-size word windows with overlap, each tagged with its document;
- `DenseIndex`: sentence embeddings in a FAISS index (exact inner product, or HNSW / IVF),
  saved with the embedder's name and dimension so a mismatched embedder is refused;
- `BM25Retriever` (bm25s), `DenseRetriever` and `HybridRetriever` (reciprocal rank fusion),
  all with the same `retrieve(queries, k)`;
- `recall_at_k` and `rag_knowledge` measure retrieval and the answers built on it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compat import embedding_dimension
from .evaluation import knowledge_score
from .files import write_bytes_atomic

RAG_SYSTEM = ("You are a helpful assistant for Kestrel & Ashdown Outfitters. "
              "Answer the question using the passages.")
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al., 2009)


class RetrievalError(ValueError):
    """Bad input to chunking, indexing or retrieval; the message says how to fix it."""


class IndexMismatchError(RetrievalError):
    """A saved index was built with a different embedder than the one given to load it."""


@dataclass(frozen=True)
class Chunk:
    doc_id: str  # the source document, so a hit can be checked against the gold doc
    title: str
    text: str  # the passage as the retriever and the model see it (title first)


def chunk_documents(documents, size: int = 60, overlap: int = 20,
                    with_title: bool = True) -> list[Chunk]:
    """Split each document into windows of `size` words that overlap by `overlap` words.

    The title goes in front of every chunk: a window from the middle of a policy no longer
    says which policy it is, and both BM25 and the embedder need that.
    """
    if not isinstance(size, int) or size <= 0:
        raise RetrievalError(f"chunk size must be a positive number of words, got {size!r}")
    if not 0 <= overlap < size:
        raise RetrievalError(f"overlap must be >= 0 and smaller than the chunk size ({size}), "
                             f"got {overlap}")
    chunks = []
    for doc in documents:
        words = doc["text"].split()
        step = size - overlap
        starts = range(0, max(len(words) - overlap, 1), step)
        for start in starts:
            body = " ".join(words[start:start + size])
            text = f"{doc['title']}: {body}" if with_title else body
            chunks.append(Chunk(doc["id"], doc["title"], text))
    if not chunks:
        raise RetrievalError("no documents to chunk; pass a non-empty list of documents")
    return chunks


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


def embedder_name(embedder) -> str:
    source = getattr(embedder, "mclab_source", None)
    if source is not None:
        return source.name
    return str(getattr(embedder, "model_card_data", None) and
               embedder.model_card_data.base_model or type(embedder).__name__)


def embed(embedder, texts, batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, so inner product = cosine similarity."""
    vectors = embedder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)


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

class DenseRetriever:
    name = "dense"

    def __init__(self, index: DenseIndex, embedder):
        if embedder_name(embedder) != index.model_name or embedding_dimension(embedder) != index.dim:
            raise IndexMismatchError(
                f"the index was built with {index.model_name!r} ({index.dim}-d) but the "
                f"embedder is {embedder_name(embedder)!r}; use the same embedder")
        self.index, self.embedder, self.chunks = index, embedder, index.chunks

    def retrieve(self, queries, k: int) -> list[list[int]]:
        queries = check_queries(queries)
        _, ids = self.index.search_vectors(embed(self.embedder, queries), k)
        return [[int(i) for i in row if i >= 0] for row in ids]


class BM25Retriever:
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

    def retrieve(self, queries, k: int) -> list[list[int]]:
        queries = check_queries(queries)
        check_k(k, len(self.chunks))
        ids, _ = self.model.retrieve(self._tokens(queries), k=k, show_progress=False)
        return [[int(i) for i in row] for row in ids]


class HybridRetriever:
    """Reciprocal rank fusion of BM25 and dense: exact names and codes plus paraphrases."""

    name = "hybrid"

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, depth: int = 20):
        self.bm25, self.dense, self.chunks, self.depth = bm25, dense, dense.chunks, depth

    def retrieve(self, queries, k: int) -> list[list[int]]:
        queries = check_queries(queries)
        check_k(k, len(self.chunks))
        depth = min(max(k, self.depth), len(self.chunks))
        fused = []
        for a, b in zip(self.bm25.retrieve(queries, depth), self.dense.retrieve(queries, depth)):
            score: dict[int, float] = {}
            for ranking in (a, b):
                for rank, idx in enumerate(ranking):
                    score[idx] = score.get(idx, 0.0) + 1.0 / (RRF_K + rank + 1)
            fused.append(sorted(score, key=lambda i: -score[i])[:k])
        return fused


def make_retriever(kind: str, chunks: list[Chunk], embedder, index: DenseIndex | None = None):
    """'bm25', 'dense' or 'hybrid' over the chunks (the dense index is built if not given)."""
    if kind not in {"bm25", "dense", "hybrid"}:
        raise RetrievalError(f"unknown retriever {kind!r}; choose 'bm25', 'dense' or 'hybrid'")
    if kind == "bm25":
        return BM25Retriever(chunks)
    dense = DenseRetriever(index or DenseIndex.build(chunks, embedder), embedder)
    return dense if kind == "dense" else HybridRetriever(BM25Retriever(chunks), dense)


# ---------------------------------------------------------------------------- measures

def recall_at_k(retrieved: list[list[int]], chunks: list[Chunk], gold_doc_ids) -> float:
    """Share of questions with at least one retrieved chunk from the question's source doc."""
    gold_doc_ids = list(gold_doc_ids)
    if len(retrieved) != len(gold_doc_ids):
        raise RetrievalError(f"{len(retrieved)} result lists for {len(gold_doc_ids)} questions")
    hits = [any(chunks[i].doc_id == gold for i in ids)
            for ids, gold in zip(retrieved, gold_doc_ids)]
    return float(np.mean(hits))


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


def rag_knowledge(model, tokenizer, items, retriever, k: int = 2,
                  system: str | None = RAG_SYSTEM, best_last: bool = True) -> RagResult:
    """Knowledge score with the top-`k` passages as context, plus retrieval recall@k."""
    items = list(items)
    start = time.perf_counter()
    retrieved = retriever.retrieve([it["question"] for it in items], k)
    retrieval_ms = 1000 * (time.perf_counter() - start) / len(items)
    contexts = [build_context(ids, retriever.chunks, best_last) for ids in retrieved]
    result = knowledge_score(model, tokenizer, items, contexts, system=system)
    tokens = np.mean([len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in contexts])
    recall = (recall_at_k(retrieved, retriever.chunks, [it["doc_id"] for it in items])
              if all("doc_id" in it for it in items) else float("nan"))  # nan: no gold doc
    return RagResult(result.accuracy, recall, retrieved, contexts, result.correct, time.perf_counter() - start,
                     retrieval_ms, float(tokens))


def recall_table(retrievers: dict, questions, gold_doc_ids, ks=(1, 2, 4, 8)) -> dict:
    """recall@k for each retriever and k: {name: {k: recall}}."""
    questions, gold = list(questions), list(gold_doc_ids)
    table = {}
    for name, retriever in retrievers.items():
        ranked = retriever.retrieve(questions, max(ks))
        table[name] = {k: recall_at_k([r[:k] for r in ranked], retriever.chunks, gold)
                       for k in ks}
    return table


# ---------------------------------------------------------------------------- widget

def rag_panel_run(model, tokenizer, embedder, documents, items, k: int, chunk_size: int,
                  retriever_kind: str) -> dict:
    """The panel's work: rebuild chunks and retriever, then recall@k and RAG knowledge score."""
    chunks = chunk_documents(documents, size=chunk_size, overlap=min(20, chunk_size // 3))
    check_k(k, len(chunks))
    retriever = make_retriever(retriever_kind, chunks, embedder)
    result = rag_knowledge(model, tokenizer, items, retriever, k=k)
    return {"chunks": len(chunks), "recall": result.recall, "knowledge": result.accuracy,
            "prompt tokens": result.prompt_tokens, "seconds": result.seconds}


def rag_panel(model, tokenizer, embedder, documents, items, closed_book: float | None = None):
    """Sliders for k and chunk size, a retriever choice; re-scores and redraws the bars."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from .widgets import panel

    controls = {
        "k": w.IntSlider(value=2, min=1, max=8, description="k"),
        "size": w.Dropdown(options=[20, 40, 60, 100, 200], value=60, description="chunk words"),
        "kind": w.Dropdown(options=["bm25", "dense", "hybrid"], value="hybrid",
                           description="retriever"),
    }

    def render(row, values):
        bars = {"recall@k": row["recall"], "RAG knowledge": row["knowledge"]}
        if closed_book is not None:
            bars = {"closed book": closed_book, **bars}
        fig, ax = plt.subplots(figsize=(5, 2.8))
        ax.bar(list(bars), list(bars.values()), color=[f"C{i}" for i in range(len(bars))])
        ax.set_ylim(0, 1)
        ax.set_title(f"{values['kind']}, k={values['k']}, {values['size']}-word chunks "
                     f"({row['chunks']} chunks, {len(items)} questions)", fontsize=9)
        plt.show()
        print(f"mean prompt tokens {row['prompt tokens']:.0f} · {row['seconds']:.1f} s")

    return panel(controls, lambda k, size, kind: rag_panel_run(
                     model, tokenizer, embedder, documents, items, k, size, kind),
                 render, button="Run", run_on_change=False,
                 layout=[["k", "size", "kind", "button"]])
