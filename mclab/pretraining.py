"""Continued pre-training: causal-LM training on raw domain text, forgetting and replay.

Continued pre-training (CPT) shows the model plain text, with no question or answer, and
trains it to predict every next token. It is how a model picks up a domain's vocabulary
and style, and (less reliably) its facts. The price is forgetting: text from elsewhere
becomes less likely. Replay mixes general text back in to hold on to it; with no access to
the model's original pre-training data, the replay text here is written by the base model
itself (pseudo-rehearsal: its own samples are a stand-in for what it was trained on).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .evaluation import KnowledgeResult, knowledge_score, perplexity, perplexity_items
from .finetuning import TRAIN_WORDINGS, VALIDATION_WORDING, split_by_paraphrase
from .stats import PairedResult, format_p, paired_bootstrap
from .training import TrainConfig, TrainingInputError, train_sft

# Everyday topics for the model's own replay text. Broad on purpose: replay stands in for
# the general pre-training mix, not for the general-text eval (which is never trained on).
REPLAY_TOPICS = [
    "how bread is baked", "looking after a vegetable garden", "the rules of football",
    "the history of the printing press", "how a bicycle gear works", "saving money each month",
    "how rain forms", "learning to play the guitar", "a walk through a busy city market",
    "how trains changed travel", "keeping a pet dog healthy", "the planets of the solar system",
    "how to write a good letter", "the first airplanes", "making soup for a family dinner",
    "why people enjoy reading novels", "how a car engine runs", "the life of honey bees",
    "planning a weekend trip", "how computers store information", "the ancient Romans",
    "training for a long-distance run", "how a river shapes a valley", "painting a room",
]


def chunk_text(text: str, tokenizer, max_tokens: int) -> list[str]:
    """Split a text into pieces of at most `max_tokens` tokens, at sentence ends where possible."""
    sentences = [s.strip() for s in text.replace("\n", " ").split(". ") if s.strip()]
    pieces, current = [], ""
    for sentence in sentences:
        sentence = sentence if sentence.endswith(".") else sentence + "."
        candidate = f"{current} {sentence}".strip()
        if current and len(tokenizer(candidate)["input_ids"]) > max_tokens:
            pieces.append(current)
            current = sentence
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def medical_corpus(medical: dict, glossary_group: int = 6) -> list[str]:
    """The dermatology training text: the prose paragraphs plus the glossary as short paragraphs.

    The glossary entries of the medical SFT validation chats (`sft_val.jsonl`, whose answers
    are those definitions word for word) are left out: SFT after CPT stops on those chats,
    so CPT must not have read their answers. The eval's terms stay: whether what CPT read
    becomes usable is what the eval tests."""
    texts = list(medical["train_prose"]["text"])
    validates = {row["term"] for row in medical["sft_val"]}
    glossary = [g for g in medical["glossary"] if g["term"] not in validates]
    for start in range(0, len(glossary), glossary_group):
        group = glossary[start:start + glossary_group]
        texts.append(" ".join(f"{g['term'].capitalize()}: {g['definition']}" for g in group))
    return texts


MEDICAL_VAL_PARAGRAPHS = 4  # the last training paragraphs, held back to validate CPT


def company_corpus(company: dict, paraphrases: bool = False) -> list[str]:
    """The company documents; with `paraphrases`, also fact sheets restating their facts.

    The augmentation follows Ovadia et al. (2024), who found that several paraphrases of
    the same fact help unsupervised fine-tuning learn it. Instead of generating paraphrases
    with a large model, we reuse the hand-written answer sentences of every fact in
    `train_qa` (training data, never the eval questions): fact sheet k of a document lists
    the k-th wording of each of its facts, so each fact appears in two more phrasings
    (`finetuning.TRAIN_WORDINGS`, as for company SFT; the third is `company_validation`'s:
    CPT on the documents stops when the loss on facts stated in words it never read has
    stopped falling).
    """
    docs = list(company["documents"])
    texts = [f"{d['title']}. {d['text']}" for d in docs]
    return texts + (fact_sheets(company, TRAIN_WORDINGS) if paraphrases else [])


def fact_sheets(company: dict, wordings: tuple[int, ...]) -> list[str]:
    """One text per document and wording k in `wordings`: the k-th answer sentence of each
    of the document's facts in `train_qa` (numbered as `finetuning.split_by_paraphrase`
    numbers them for company SFT)."""
    titles = {d["id"]: d["title"] for d in company["documents"]}
    texts = []
    for k in wordings:
        by_doc: dict[str, list[str]] = defaultdict(list)
        for row in split_by_paraphrase(company["train_qa"], None, (k,))[0]:
            by_doc[row["doc_id"]].append(row["answer"])
        texts += [f"{titles[doc]}: key facts. " + " ".join(lines) for doc, lines in by_doc.items()]
    return texts


def company_validation(company: dict) -> list[str]:
    """CPT on the company documents validates on the facts in their third wording, which
    neither the documents nor the fact sheets it trains on contain word for word."""
    return fact_sheets(company, (VALIDATION_WORDING,))


def medical_split(medical: dict, n_val: int = MEDICAL_VAL_PARAGRAPHS) -> tuple[dict, list[str]]:
    """(the medical scenario without its last `n_val` training paragraphs, those paragraphs):
    CPT on dermatology validates on prose it never trained on, and never on the held-out
    eval (`heldout_prose.jsonl`)."""
    prose = medical["train_prose"]
    if not 0 < n_val < len(prose):
        raise TrainingInputError(f"hold back between 1 and {len(prose) - 1} training "
                                 f"paragraphs to validate on, not {n_val}")
    keep = prose.select(range(len(prose) - n_val))
    held = prose.select(range(len(prose) - n_val, len(prose)))
    return {**medical, "train_prose": keep}, list(held["text"])


def pieces(texts: list[str], tokenizer, max_tokens: int) -> list[str]:
    """Every text cut into training pieces of at most `max_tokens` tokens (`chunk_text`)."""
    return [p for t in texts for p in chunk_text(t, tokenizer, max_tokens)]


def replay_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` requests for general paragraphs; every topic is used once before any repeats."""
    rng = random.Random(seed)
    topics: list[str] = []
    while len(topics) < n:
        cycle = list(REPLAY_TOPICS)
        rng.shuffle(cycle)
        topics += cycle
    return [f"Write a short paragraph about {t}." for t in topics[:n]]


def generate_replay(model, tokenizer, n: int = 24, max_new_tokens: int = 96,
                    seed: int = 0) -> list[str]:
    """General paragraphs written by the (base) model itself, sampled with a fixed seed."""
    from .generation import generate

    outputs = generate(model, tokenizer, replay_prompts(n, seed), max_new_tokens=max_new_tokens,
                       temperature=0.7, seed=seed, batch_size=n)
    return [o for o in outputs if len(o.split()) >= 10]


def mix_replay(domain: list[str], replay: list[str], ratio: float, seed: int = 0) -> list[str]:
    """Domain texts plus replay texts so that `ratio` of the mix is replay, shuffled.

    The number of domain texts stays the same; replay texts are added (drawn with
    replacement when the pool is smaller than needed).
    """
    if not 0 <= ratio < 1:
        raise TrainingInputError(
            f"replay ratio must be in [0, 1), got {ratio}; 0.25 means a quarter of the "
            "training texts are general text")
    if not domain:
        raise TrainingInputError("the domain corpus is empty; give it at least one text")
    n_replay = round(len(domain) * ratio / (1 - ratio))
    if n_replay and not replay:
        raise TrainingInputError("a replay ratio above 0 needs replay texts; none were given")
    rng = random.Random(seed)
    extra = [replay[i % len(replay)] for i in range(n_replay)]
    if n_replay > len(replay):
        extra = [rng.choice(replay) for _ in range(n_replay)]
    mixed = list(domain) + extra
    rng.shuffle(mixed)
    return mixed


def medical_cpt_texts(model, tokenizer, recipe, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training pieces, validation pieces) of CPT + replay on dermatology (`recipe`:
    `recipes.CPT`): the pieces of the training paragraphs but the last few and of the
    glossary, mixed with replay paragraphs the base `model` writes so that `replay_ratio`
    of the pieces are replay (as in 03); validation is the held-back paragraphs' pieces."""
    from .data import load_scenario

    replay = generate_replay(model, tokenizer, n=recipe.replay_texts.get(),
                             max_new_tokens=recipe.replay_tokens.get())
    medical, held = medical_split(load_scenario("medical"))
    length = recipe.training.max_length
    domain = pieces(medical_corpus(medical), tokenizer, length)
    mixed = mix_replay(domain, pieces(replay, tokenizer, length), recipe.replay_ratio, seed=seed)
    return mixed, pieces(held, tokenizer, length)


def text_dataset(texts: list[str]):
    from datasets import Dataset

    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise TrainingInputError("no training text: the corpus is empty")
    return Dataset.from_list([{"text": t} for t in texts])


def train_cpt(model, tokenizer, texts: list[str], cfg: TrainConfig, peft_config=None,
              callbacks=None, eval_texts: list[str] | None = None):
    """Continued pre-training: the shared training path on a plain-text dataset; with
    `eval_texts`, the loss on them is logged (and early stopping, `cfg.patience`, uses it)."""
    cfg.validate()
    evals = text_dataset(eval_texts) if eval_texts else None
    return train_sft(model, tokenizer, text_dataset(texts), cfg, peft_config=peft_config,
                     callbacks=callbacks, eval_dataset=evals)


@dataclass
class DomainScores:
    """The numbers continued pre-training is judged by."""

    medical_perplexity: float  # held-out dermatology prose (lower: the domain is learned)
    general_perplexity: float  # general text (higher: forgetting)
    medical_knowledge: float | None = None  # term multiple-choice accuracy
    company_knowledge: float | None = None  # company multiple-choice accuracy, closed book

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def domain_scores(model, tokenizer, sets: dict, knowledge: tuple = ("medical",)) -> DomainScores:
    """Perplexities on the held-out sets, plus the knowledge scores named in `knowledge`."""
    scores = DomainScores(perplexity(model, tokenizer, sets["medical_heldout"]["text"]),
                          perplexity(model, tokenizer, sets["general_text"]["text"]))
    if "medical" in knowledge:
        scores.medical_knowledge = knowledge_score(model, tokenizer, sets["medical_mc"]).accuracy
    if "company" in knowledge:
        scores.company_knowledge = knowledge_score(model, tokenizer, sets["company_mc"]).accuracy
    return scores


@dataclass
class MedicalItems:
    """One model's medical evals item by item, for intervals and paired tests."""

    knowledge: KnowledgeResult  # the term multiple choice, per question
    nll: np.ndarray = field(repr=False)  # per held-out text: summed negative log-likelihood
    tokens: np.ndarray = field(repr=False)  # per held-out text: tokens predicted

    @property
    def perplexity(self) -> float:
        return float(np.exp(self.nll.sum() / self.tokens.sum()))


def medical_items(model, tokenizer, sets: dict) -> MedicalItems:
    """The medical multiple choice and held-out perplexity, kept per question and per text."""
    nll, tokens = perplexity_items(model, tokenizer, sets["medical_heldout"]["text"])
    return MedicalItems(knowledge_score(model, tokenizer, sets["medical_mc"]), nll, tokens)


def compare_medical(a: MedicalItems, b: MedicalItems, names: tuple[str, str]) -> dict:
    """A against B on the same items: exact McNemar on the terms, paired bootstrap over
    texts on perplexity (lower wins); each as the test result and its sentence."""
    from .stats import mcnemar_exact, paired_perplexity, verdict

    terms = mcnemar_exact(a.knowledge.correct, b.knowledge.correct)
    ppl = paired_perplexity((a.nll, a.tokens), (b.nll, b.tokens))
    return {"terms": terms, "terms_verdict": verdict(terms, names=names),
            "perplexity": ppl,
            "perplexity_verdict": verdict(ppl, names=names, higher_is_better=False)}


def relative_change(before: float, after: float) -> float:
    """(after - before) / before: -0.25 is a 25% drop."""
    return (after - before) / before


def text_perplexities(model, tokenizer, texts: list[str], max_length: int = 512) -> np.ndarray:
    """The perplexity of each text on its own: the items of a paired test over texts."""
    return np.array([perplexity(model, tokenizer, [t], max_length=max_length) for t in texts])


def perplexity_change(after, before, seed: int = 0) -> PairedResult:
    """Mean log-perplexity over texts, after minus before, with a paired bootstrap.

    exp(difference) - 1 is the typical relative change of a text's perplexity (a geometric
    mean of the ratios); the interval's ends convert the same way (`describe_change`).
    """
    return paired_bootstrap(np.log(np.asarray(after)), np.log(np.asarray(before)), seed=seed)


def describe_change(result: PairedResult) -> str:
    """'+12% (95% CI +4% to +20%, p = 0.01, 16 texts)': a perplexity change, as read."""
    d = result.difference
    return (f"{math.expm1(d.estimate):+.0%} ({d.level:.0%} CI {math.expm1(d.low):+.0%} to "
            f"{math.expm1(d.high):+.0%}, {format_p(result.p_value)}, {result.n} texts)")


def change_direction(result: PairedResult, alpha: float = 0.05) -> str:
    """"rose", "fell" or "cannot tell" (the interval's side of zero, at `alpha`)."""
    if result.p_value >= alpha or result.difference.estimate == 0:
        return "cannot tell"
    return "rose" if result.difference.estimate > 0 else "fell"


def cpt_panel(run, default: dict | None = None, learning_rate: float = 1e-4, steps: int = 6,
              replay_ratio: float = 0.25):
    """Learning rate, steps and replay ratio knobs; "Train" calls `run(**knobs)`."""
    import ipywidgets as w

    from .widgets import training_panel

    controls = {
        "learning_rate": w.FloatLogSlider(value=learning_rate, base=10, min=-6, max=-3,
                                          step=0.25, description="learning rate",
                                          readout_format=".1e"),
        "steps": w.IntSlider(value=steps, min=1, max=40, description="steps"),
        "replay_ratio": w.FloatSlider(value=replay_ratio, min=0, max=0.75, step=0.05,
                                      description="replay ratio"),
    }
    return training_panel(run, controls, default)
