"""RAG that answers: retrieve, write the answer from the passages, cite them, or abstain.

`rag_answer` runs the whole help-desk step for a batch of questions and returns, for each,
the passages it read (with their cosine similarity to the question), the answer, the passages
the answer is attributed to, and whether it abstained and why. Two abstention rules, both
chosen on validation questions (`choose_abstention`), never on the held-out evals:
- **weak retrieval**: no chunk of the knowledge base is similar enough to the question
  (`min_similarity`), so the model is not even asked;
- **unsupported answer**: the words the answer adds to the question are not found in any
  passage it read (`min_support`): the model wrote a value the passages do not contain.

Citations are attributed after the fact: the passages that contain most of the answer's own
words. A 135M model does not reliably write "[2]" itself (try it in notebook 02); attribution
by overlap is checkable, and it is what "supported" means above.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .answers import ABSTAIN_TEXT, ANSWER_TOKENS, answer_questions, is_abstention
from .retrieval_metrics import answer_terms, contains_answer

RAG_ANSWER_SYSTEM = ("You answer questions for Kestrel & Ashdown Outfitters from the numbered "
                     "passages. Copy the answer words exactly from the passage. Answer in one "
                     "short sentence.")
@dataclass
class RagAnswer:
    question: str
    text: str  # what the user sees (ABSTAIN_TEXT when it abstained)
    draft: str  # what the model wrote ('' when retrieval was too weak to ask it)
    passages: list[tuple[int, float]]  # (chunk id, cosine similarity to the question), best first
    cited: list[int]  # chunk ids the answer is attributed to
    support: float  # share of the answer's own words found in the best passage
    similarity: float  # best cosine similarity between the question and any chunk
    abstained: bool
    reason: str  # "answered", "weak retrieval", "unsupported answer", "model declined"


def new_words(answer: str, question: str) -> list[str]:
    """What the answer adds to the question: its values (numbers, codes, names), else its
    other content words (`retrieval_metrics.answer_terms`, the same rule as retrieval's)."""
    return answer_terms(question, answer) if answer.strip() else []


def support(answer: str, question: str, passage: str) -> float:
    """Share of the answer's own words (`new_words`) that occur in the passage (1.0: all)."""
    added = new_words(answer, question)
    if not added:
        return 0.0  # an answer that adds nothing is supported by nothing
    return sum(contains_answer(passage, term) for term in added) / len(added)


def cite(answer: str, question: str, passages: list[str], min_share: float = 0.5) -> list[int]:
    """Positions of the passages holding at least `min_share` of the answer's own words, most
    supporting first."""
    shares = [support(answer, question, p) for p in passages]
    return [i for i in np.argsort(shares, kind="stable")[::-1] if shares[i] >= min_share]


class ChunkSimilarity:
    """Cosine similarity of questions to every chunk (embeddings computed once, or handed in
    as `vectors` when an index already made them)."""

    def __init__(self, embedder, chunks, vectors: np.ndarray | None = None):
        from .models import embed

        self.embedder, self.chunks = embedder, list(chunks)
        self.vectors = (embed(embedder, [c.text for c in self.chunks]) if vectors is None
                        else vectors)
        if len(self.vectors) != len(self.chunks):
            raise ValueError(f"{len(self.vectors)} vectors for {len(self.chunks)} chunks: pass "
                             "the vectors the chunks were embedded into, in the same order")

    def to_chunks(self, questions) -> np.ndarray:
        from .models import embed

        return embed(self.embedder, list(questions)) @ self.vectors.T


@dataclass(frozen=True)
class Abstention:
    min_similarity: float | None = None  # abstain below this best chunk similarity
    min_support: float | None = None  # abstain when the answer's support is below this

    def reason(self, similarity: float, draft: str, support_share: float) -> str:
        if self.min_similarity is not None and similarity < self.min_similarity:
            return "weak retrieval"
        if is_abstention(draft):
            return "model declined"
        if self.min_support is not None and support_share < self.min_support:
            return "unsupported answer"
        return "answered"


NEVER = Abstention()


def rag_answer(model, tokenizer, questions, retriever, k: int, similarity: ChunkSimilarity,
               abstention: Abstention = NEVER, system: str = RAG_ANSWER_SYSTEM,
               max_new_tokens: int = ANSWER_TOKENS) -> list[RagAnswer]:
    """Answer each question from its top-`k` passages, with citations and abstention."""
    from .rag import build_context

    questions = list(questions)
    chunks = retriever.chunks
    sims = similarity.to_chunks(questions)
    readable = getattr(retriever, "readable", None)  # an access-filtered retriever's chunks
    if readable is not None:  # chunks the user may not read count as no match at all
        hidden = np.setdiff1d(np.arange(sims.shape[1]), readable)
        sims[:, hidden] = -1.0
    ids = retriever.retrieve(questions, k)
    best = sims.max(axis=1)
    ask = [i for i, s in enumerate(best) if abstention.min_similarity is None
           or s >= abstention.min_similarity]
    drafts = dict(zip(ask, answer_questions(
        model, tokenizer, [questions[i] for i in ask],
        [build_context(ids[i], chunks) for i in ask], system, max_new_tokens))) if ask else {}
    out = []
    for i, question in enumerate(questions):
        draft = drafts.get(i, "")
        texts = [chunks[j].text for j in ids[i]]
        order = cite(draft, question, texts) if draft else []
        share = support(draft, question, texts[order[0]]) if order else \
            max((support(draft, question, t) for t in texts), default=0.0)
        reason = abstention.reason(float(best[i]), draft, share)
        answered = reason == "answered"
        out.append(RagAnswer(question, draft if answered else ABSTAIN_TEXT, draft,
                             [(j, float(sims[i, j])) for j in ids[i]],
                             [ids[i][p] for p in order] if answered else [], share,
                             float(best[i]), not answered, reason))
    return out


def choose_abstention(answerable: list[RagAnswer], unanswerable: list[RagAnswer],
                      max_false: float = 0.1) -> tuple[Abstention, list[dict]]:
    """Among the rules that abstain on at most `max_false` of the answerable validation
    questions, the one with the largest abstention on unanswerable ones minus abstention on
    answerable ones (ties: fewer false abstentions). `answerable`/`unanswerable` were
    answered without abstention (`NEVER`). Returns the rule and the whole grid, for the
    record."""
    if not answerable or not unanswerable:
        raise ValueError("choose_abstention needs answerable and unanswerable questions")
    sims = np.array([a.similarity for a in answerable])
    sim_options = [None] + sorted({float(np.quantile(sims, q)) for q in (0.02, 0.05, 0.1, 0.2)})
    grid = []
    for min_sim in sim_options:
        for min_sup in (None, 0.5, 0.75, 1.0):
            rule = Abstention(min_sim, min_sup)

            def rate(answers):
                return float(np.mean([rule.reason(a.similarity, a.draft, a.support) != "answered"
                                      for a in answers]))

            grid.append({"min_similarity": min_sim, "min_support": min_sup,
                         "false_abstain": rate(answerable), "abstain": rate(unanswerable)})
    allowed = [g for g in grid if g["false_abstain"] <= max_false] or \
        [min(grid, key=lambda g: g["false_abstain"])]
    best = max(allowed, key=lambda g: (g["abstain"] - g["false_abstain"], -g["false_abstain"]))
    return Abstention(best["min_similarity"], best["min_support"]), grid


def with_rule(answers: list[RagAnswer], rule: Abstention) -> list[RagAnswer]:
    """The same drafts under another abstention rule (no new generation): a draft kept by
    the rule is shown with its citations, one it stops becomes ABSTAIN_TEXT."""
    out = []
    for a in answers:
        if not a.draft:
            raise ValueError("with_rule needs answers made without abstention (NEVER)")
        reason = rule.reason(a.similarity, a.draft, a.support)
        kept = reason == "answered"
        out.append(replace(a, text=a.draft if kept else ABSTAIN_TEXT, abstained=not kept,
                           reason=reason, cited=a.cited if kept else []))
    return out


def validation_questions(company, n: int | None = None) -> tuple[list[str], list[str]]:
    """Answerable validation questions (one training question per fact, the first paraphrase)
    and the unanswerable validation split, the first `n` of each; never the held-out evals."""
    first: dict[str, str] = {}
    for row in company["train_qa"]:
        first.setdefault(row["fact_id"], row["question"])
    return list(first.values())[:n], list(company["val_unanswerable"]["question"])[:n]


def choose_on_validation(model, tokenizer, company, retriever, k: int,
                         similarity: ChunkSimilarity, n: int | None = None,
                         max_false: float = 0.1) -> tuple[Abstention, list[dict]]:
    """Answer the validation questions without abstaining, then pick the rule
    (`choose_abstention`): what notebook 02 shows and tools/choose_abstention.py records."""
    answerable, unanswerable = validation_questions(company, n)
    answers = rag_answer(model, tokenizer, answerable + unanswerable, retriever, k, similarity)
    return choose_abstention(answers[:len(answerable)], answers[len(answerable):], max_false)


def summarize(answers: list[RagAnswer]) -> dict:
    """How many answered, and why the others abstained."""
    reasons = [a.reason for a in answers]
    return {r: reasons.count(r) for r in ("answered", "model declined", "weak retrieval",
                                          "unsupported answer")}


def show(answer: RagAnswer, chunks, width: int = 110) -> str:
    """One answer as text: the passages with their scores, the answer and its citations."""
    lines = [f"Q: {answer.question}"]
    for j, score in answer.passages:
        mark = "*" if j in answer.cited else " "
        lines.append(f"  {mark}[{j}] {score:.2f}  {' '.join(chunks[j].text.split())[:width]}")
    lines.append(f"A: {answer.text}" + (f"  (cites {answer.cited})" if answer.cited else
                                         f"  ({answer.reason})"))
    return "\n".join(lines)
