"""Private means private: who may read which document, enforced at retrieval time.

A company knowledge base has documents not everyone may read (pay bands, HR cases, alarm
codes). Every document carries an access label (`data.ACCESS_LABELS`): "all", or the one
group whose members may read it. A user is a set of groups (`ROLES` names the course's four
users). `AccessFilteredRetriever` ranks only the chunks the user may read, so a restricted
passage never reaches the prompt of someone outside its group, and the abstention check
(`rag_answers.rag_answer`) sees only those chunks too.

Weights have no such check: a model fine-tuned on restricted facts answers them for whoever
asks. `leak_experiment` measures both (notebook 02, section "Private means private").
"""

from __future__ import annotations

from dataclasses import dataclass

from .chunking import Chunk, RetrievalError
from .data import ACCESS_LABELS
from .rag import Retriever, check_k, check_queries

# The course's users: a name and the groups they belong to ("all" needs no group).
ROLES: dict[str, frozenset[str]] = {
    "employee": frozenset(),
    "manager": frozenset({"managers"}),
    "HR partner": frozenset({"hr"}),
    "security officer": frozenset({"security"}),
}


class AccessError(RetrievalError):
    """An unknown role or group; the message lists the known ones."""


def groups_of(user) -> frozenset[str]:
    """A user's groups, from a role name of `ROLES` or an iterable of group names."""
    if isinstance(user, str):
        if user not in ROLES:
            raise AccessError(f"unknown role {user!r}; choose one of {', '.join(ROLES)}, or "
                              "pass a set of groups")
        return ROLES[user]
    groups = frozenset(user)
    unknown = sorted(g for g in groups if g not in ACCESS_LABELS or g == "all")
    if unknown:
        raise AccessError(f"unknown group {unknown[0]!r}; groups are "
                          f"{', '.join(g for g in ACCESS_LABELS if g != 'all')}")
    return groups


def can_read(groups: frozenset[str], label: str) -> bool:
    """Everyone reads "all"; a group's documents only its members."""
    return label == "all" or label in groups


def readable_ids(chunks: list[Chunk], user) -> list[int]:
    groups = groups_of(user)
    return [i for i, chunk in enumerate(chunks) if can_read(groups, chunk.access)]


def knowledge_base(company, restricted: bool = True) -> list[dict]:
    """The company documents, with the restricted ones after the public ones if asked."""
    documents = list(company["documents"])
    return documents + list(company["restricted_documents"]) if restricted else documents


class AccessFilteredRetriever(Retriever):
    """Another retriever's ranking restricted to the chunks `user` may read.

    The inner retriever ranks the whole index (`len(chunks)` deep, cheap for a knowledge base
    of this size) and the unreadable chunks are dropped before the top `k` are taken, so `k`
    passages come back whenever the user may read `k`. A real system filters inside the
    index (FAISS `IDSelector`, a vector database's metadata filter); the guarantee tested is
    the same: no chunk outside the user's groups is ever returned.
    """

    def __init__(self, inner, user):
        self.inner, self.chunks = inner, inner.chunks
        self.groups = groups_of(user)
        self.readable = readable_ids(self.chunks, self.groups)
        self.name = f"{inner.name} (access filtered)"

    def retrieve_scored(self, queries, k: int):
        queries = check_queries(queries)
        check_k(k, len(self.readable))
        allowed = set(self.readable)
        rows = self.inner.retrieve_scored(queries, len(self.chunks))
        return [[(i, s) for i, s in row if i in allowed][:k] for row in rows]

    def save(self, folder):
        return self.inner.save(folder)


@dataclass
class LeakResult:
    """Who got which restricted answer: RAG per user, and a model fine-tuned on the facts."""

    items: list[dict]  # rows of eval_restricted
    labels: list[str]  # each item's document's access label
    rag: dict[str, list]  # user -> RagAnswer per item (access-filtered retrieval)
    base: list[str]  # the base model's closed-book answers (it never saw the documents)
    fine_tuned: list[str]  # the fine-tuned model's closed-book answers: one set for everyone
    fine_tuned_training_wording: list[str]  # its answers to each fact's first training question
    train_seconds: float
    final_loss: float

    def may_read(self, user) -> list[bool]:
        groups = groups_of(user)
        return [can_read(groups, label) for label in self.labels]

    def table(self) -> list[dict]:
        """Per user and system: the restricted questions the user may read, how many of those
        were answered (gold value in the answer), and of the others how many leaked (answered)
        and how many were declined."""
        from .answers import contains_answer, is_abstention

        systems = {"base model, closed book": self.base,
                   "fine-tuned on restricted Q&A": self.fine_tuned}
        rows = []
        for user, answers in self.rag.items():
            allowed = self.may_read(user)
            for system, texts in {**systems, "RAG, access filtered": [a.text for a in answers]}.items():
                hit = [contains_answer(t, it["gold"]) for t, it in zip(texts, self.items)]
                rows.append({
                    "user": user, "system": system, "may read": sum(allowed),
                    "answered (may read)": sum(h for h, a in zip(hit, allowed) if a),
                    "leaked (may not read)": sum(h for h, a in zip(hit, allowed) if not a),
                    "declined (may not read)": sum(is_abstention(t) for t, a in
                                                   zip(texts, allowed) if not a),
                    "may not read": len(allowed) - sum(allowed)})
        return rows


def leak_experiment(model, tokenizer, embedder, company, users=tuple(ROLES), recipe=None,
                    rag_recipe=None) -> LeakResult:
    """Ask the restricted questions (eval_restricted) as each user, two ways.

    RAG over the whole knowledge base (public and restricted documents), filtered by the
    user's groups, with the course's retrieval and abstention settings (`recipes.RAG`). Then
    a LoRA adapter trained on the restricted training Q&A (`recipes.ACCESS_LEAK`) answers
    closed book. The adapter is removed afterwards, so `model` is the base model again.
    """
    import time

    from . import recipes
    from .answers import answer_questions
    from .finetuning import company_examples
    from .models import embed
    from .rag import DenseIndex, chunks_from_recipe, retriever_from_recipe
    from .rag_answers import Abstention, ChunkSimilarity, rag_answer
    from .training import chat_dataset, train_sft

    recipe, rag_recipe = recipe or recipes.ACCESS_LEAK, rag_recipe or recipes.RAG
    users = [u for u in users]
    for user in users:
        groups_of(user)  # an unknown role fails before any work
    items = list(company["eval_restricted"])
    documents = knowledge_base(company)
    label = {d["id"]: d["access"] for d in documents}
    questions = [it["question"] for it in items]

    chunks = chunks_from_recipe(documents, rag_recipe)
    vectors = embed(embedder, [c.text for c in chunks])  # once, for the index and abstention
    index = DenseIndex.build(chunks, embedder, vectors=vectors)
    similarity = ChunkSimilarity(embedder, chunks, vectors=vectors)
    rule = Abstention(rag_recipe.min_similarity, rag_recipe.min_support)
    rag = {}
    for user in users:
        retriever = retriever_from_recipe(documents, embedder, rag_recipe, model, tokenizer,
                                          index, user=user)
        rag[str(user)] = rag_answer(model, tokenizer, questions, retriever, rag_recipe.k,
                                    similarity, rule)
    base = answer_questions(model, tokenizer, questions)

    rows = list(company["train_restricted_qa"])
    first: dict[str, str] = {}
    for row in rows:
        first.setdefault(row["fact_id"], row["question"])
    start, trained = time.perf_counter(), None
    try:
        result = train_sft(model, tokenizer, chat_dataset(company_examples(rows)),
                           recipe.training.config("access-leak", save=False),
                           peft_config=recipe.lora.config())
        seconds, trained = time.perf_counter() - start, result.model
        fine_tuned = answer_questions(trained, tokenizer, questions)
        training_wording = answer_questions(trained, tokenizer,
                                            [first[it["fact_id"]] for it in items])
    finally:  # the LoRA layers out, even after an interrupt: `model` is the base model again
        if trained is None and hasattr(model, "peft_config"):
            trained = model
        if trained is not None and hasattr(trained, "unload"):
            trained.unload()
    return LeakResult(items, [label[it["doc_id"]] for it in items], rag, base, fine_tuned,
                      training_wording, seconds,
                      float(result.losses[-1]) if result.losses else float("nan"))
