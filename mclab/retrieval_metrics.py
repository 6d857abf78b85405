"""Did retrieval find the answer? Matching answer text in passages, and recall@k.

- `contains_answer(text, answer)`: the answer occurs in the text (case, spacing and edge
  punctuation ignored; a number never matches inside a longer number);
- `answer_terms` / `answer_span`: what counts as the answer of a training Q&A row, whose
  answer is a whole sentence, not an option;
- `span_recall_at_k`: a hit needs a retrieved chunk that contains the answer;
- `doc_recall_at_k`: a hit needs only a chunk from the right document (the weaker measure
  notebook 02 starts with, imported there as `recall_at_k`).
"""

from __future__ import annotations

import re

import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from .chunking import RetrievalError

# Lucene's English stopwords (as bm25s uses) plus question and auxiliary words
STOPWORDS = frozenset(STOPWORDS_EN) | {
    "has", "have", "had", "do", "does", "did", "its", "can", "must", "may", "which", "what",
    "who", "whom", "when", "where", "how", "so", "from", "than", "been", "were", "you", "your",
    "i", "we", "our"}
# a word with its inner punctuation: "1.42", "07:15", "1,200", "KA-TN-2208", "director's"
_TOKEN = re.compile(r"\w+(?:[.,:'/-]\w+)*")
_EDGE = "\"'.,;:!?()[]{} "


def normalize(text: str) -> str:
    """Lower case, one space between words, curly quotes straight, no punctuation at the edges."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").casefold()
    return " ".join(text.split()).strip(_EDGE)


def contains_answer(text: str, answer: str) -> bool:
    """True if `answer` occurs in `text` as whole words (`mclab.answers.contains_answer`, the
    one matcher of passages and written answers)."""
    from .answers import contains_answer as matches

    if not isinstance(text, str) or not isinstance(answer, str):
        raise RetrievalError("contains_answer needs two strings: the passage and the answer")
    if not normalize(answer):
        raise RetrievalError("the answer is empty; pass the answer text to look for")
    return matches(text, answer)


def _words(text: str) -> list[re.Match]:
    return list(_TOKEN.finditer(text.replace("\u2019", "'")))


def _bare(token: str) -> str:
    return re.sub(r"'s$", "", token.casefold())


def _term_matches(question: str, answer_sentence: str) -> list[re.Match]:
    asked = {_bare(m.group()) for m in _words(question)}
    new = [m for m in _words(answer_sentence)
           if _bare(m.group()) not in asked and _bare(m.group()) not in STOPWORDS]
    # the values: numbers, codes and names (capitalised after the first word); the verbs of
    # a paraphrase ("weighs", "retails for") are not the answer and need not be in the text
    values = [m for m in new if any(c.isdigit() for c in m.group())
              or (m.start() > 0 and m.group()[0].isupper())]
    return values or new


def answer_terms(question: str, answer_sentence: str) -> list[str]:
    """The words of an answer sentence that answer the question, lower case.

    The answer's content words that the question does not contain, and of those only the
    values (numbers, codes, capitalised names) when there are any: "The Sedgewick 2 weighs
    1.42 kg." answers "How heavy is the Sedgewick 2?" with ["1.42"]. Possessive 's dropped.
    """
    if not question.strip() or not answer_sentence.strip():
        raise RetrievalError("answer_terms needs a question and its answer sentence")
    return list(dict.fromkeys(_bare(m.group()) for m in _term_matches(question, answer_sentence)))


def answer_span(question: str, answer_sentence: str) -> str:
    """The shortest piece of the answer sentence holding all its answer terms, plus the unit
    after a final number: "1.42 kg", "14 March 1987", "07:15", "Ledgerly"."""
    matches = _term_matches(question, answer_sentence)
    if not matches:
        raise RetrievalError(f"no answer terms in {answer_sentence!r} for {question!r}")
    end = matches[-1].end()
    rest = _words(answer_sentence[end:])
    if matches[-1].group()[-1].isdigit() and rest and rest[0].group().isalpha() \
            and rest[0].group().islower() and rest[0].group() not in STOPWORDS \
            and not answer_sentence[end:end + rest[0].start()].strip():
        end += rest[0].end()
    return answer_sentence[matches[0].start():end].strip(_EDGE)


# ---------------------------------------------------------------------------- recall@k

def _check_lengths(retrieved, golds, what: str) -> None:
    if len(retrieved) != len(golds):
        raise RetrievalError(f"{len(retrieved)} result lists for {len(golds)} {what}; "
                             "pass one per question")


def doc_recall_at_k(retrieved: list[list[int]], chunks, gold_doc_ids) -> float:
    """Share of questions with at least one retrieved chunk from the question's source doc.

    Weaker than it sounds: the chunk may be the part of the document without the answer.
    """
    gold_doc_ids = list(gold_doc_ids)
    _check_lengths(retrieved, gold_doc_ids, "gold documents")
    hits = [any(chunks[i].doc_id == gold for i in ids)
            for ids, gold in zip(retrieved, gold_doc_ids)]
    return float(np.mean(hits))


recall_at_k = doc_recall_at_k  # the name notebook 02 imports


def span_hits(retrieved: list[list[int]], chunks, answers) -> list[bool]:
    """Per question: does one retrieved chunk contain the answer?

    An answer is a string (an option's text), or a list of terms that must all be in the
    same chunk (`answer_terms` of a training row).
    """
    answers = list(answers)
    _check_lengths(retrieved, answers, "answers")
    return [any(all(contains_answer(chunks[i].text, term) for term in
                    ([answer] if isinstance(answer, str) else answer)) for i in ids)
            for ids, answer in zip(retrieved, answers)]


def span_recall_at_k(retrieved: list[list[int]], chunks, answers) -> float:
    """Share of questions with a retrieved chunk that contains the answer (`span_hits`)."""
    return float(np.mean(span_hits(retrieved, chunks, answers)))


def _recall_table(retrievers: dict, questions, golds, measure, ks) -> dict:
    questions, golds = list(questions), list(golds)
    table = {}
    for name, retriever in retrievers.items():
        ranked = retriever.retrieve(questions, max(ks))
        table[name] = {k: measure([r[:k] for r in ranked], retriever.chunks, golds) for k in ks}
    return table


def recall_table(retrievers: dict, questions, gold_doc_ids, ks=(1, 2, 4, 8)) -> dict:
    """Document recall@k for each retriever and k: {name: {k: recall}}."""
    return _recall_table(retrievers, questions, gold_doc_ids, doc_recall_at_k, ks)


def span_recall_table(retrievers: dict, questions, answers, ks=(1, 2, 4, 8)) -> dict:
    """Answer-span recall@k for each retriever and k: {name: {k: recall}}."""
    return _recall_table(retrievers, questions, answers, span_recall_at_k, ks)


def mc_answers(items) -> list[str]:
    """The correct option's text of each multiple-choice item: its answer span."""
    return [it["options"][it["answer"]] for it in items]
