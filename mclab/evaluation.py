"""The course's three measures, the same for every method.

- knowledge score: multiple-choice accuracy from the model's log-likelihood of each
  option, with or without a context passage (the protocol of Ovadia et al., EMNLP 2024);
- perplexity on a set of texts;
- locality score: credit for rewrites that swap words of the neutral source for local
  phrases that mean the same (read through the lexicon's glosses), times the meaning kept
  (embedding similarity to the source, 0 for an unrelated sentence).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from dataclasses import dataclass, field

import numpy as np
import torch

from .compat import cache_argument, repeat_cache
from .device import model_device
from .generation import check_fits, format_chat, token_chunks

KNOWLEDGE_SYSTEM = "You are a helpful assistant. Answer the question briefly."
# The assistant turn starts with this cue and each option follows it after a space. A chat
# model opens an answer with "The ..." and gives a bare lowercase word little probability;
# after "Answer:" the option is the natural next word (12 general-knowledge checks: 0.83
# accuracy with the cue, 0.50 without).
ANSWER_PREFIX = "Answer:"


def knowledge_prompt(question: str, context: str | None = None) -> str:
    """The user turn for a knowledge question, with the context passage first if given."""
    if context:
        return f"Use this information:\n{context}\n\nQuestion: {question}"
    return f"Question: {question}"


# What one batch may hold, in tokens, so that long inputs go a few at a time (issue 15):
# - multiple choice holds each prompt's key/value cache once per option (`repeat_cache`),
#   about 46 KB a token for SmolLM2-135M in fp32 (30 layers x keys and values x 3 heads x 64
#   x 4 bytes): items x options x longest prompt within 4,096 tokens is about 190 MB, so
#   closed-book questions still go 8 at a time and 1,300-token stuffed prompts one at a time
#   (01's peak was once 4 such prompts x 4 options). Measured on 01's 85 questions with their
#   source document, alone: 8,192 tokens added 630 and 635 MB over the model in 33.7 and
#   33.9 s, 4,096 added 371 and 379 MB in 35.4 and 32.8 s, 2,048 added 161 MB in 38.5 s; the
#   same accuracy in each (docs/performance.md);
# - answer scoring holds a logit per vocabulary word (49,152 x 4 bytes) for every token:
#   rows x longest sequence within 1,024 tokens is about 200 MB (prefix and prompt tuning's
#   virtual tokens come on top: their logits are dropped, but computed).
MAX_CACHE_TOKENS = 4096
MAX_LOGIT_TOKENS = 1024


def budget_batches(lengths: list[int], batch_size: int, max_tokens: int,
                   copies: int = 1) -> list[list[int]]:
    """Split items into batches, shortest first: at most `batch_size` items, and items x
    `copies` x the batch's longest length within `max_tokens` (an item over the budget on
    its own goes alone). Returns lists of indices into `lengths`."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)  # stable: ties keep order
    # in sorted order each new item is its batch's longest: generation's consecutive chunks
    return [order[start:end] for start, end in
            token_chunks([copies * lengths[i] for i in order], batch_size, max_tokens)]


@torch.no_grad()
def option_logprobs(model, tokenizer, prompts: list[str], options: list[list[str]],
                    normalize: str = "mean", batch_size: int = 8,
                    max_tokens: int = MAX_CACHE_TOKENS) -> list[np.ndarray]:
    """Log-likelihood of each option as the continuation of its prompt.

    Each prompt (often a long context passage) runs once; its key/value cache is then
    shared by all of its options, a quarter of the work of scoring every prompt+option
    sequence whole when there are four options. `normalize="mean"` divides by the
    option's token count so long options are not penalised; `"sum"` keeps the total.
    Items are batched by prompt length (`budget_batches`): at most `batch_size` at a time,
    and fewer when their prompts are long, so the repeated cache stays within `max_tokens`
    tokens.
    """
    if normalize not in {"mean", "sum"}:
        raise ValueError(f"normalize must be 'mean' or 'sum', got {normalize!r}")
    if len(prompts) != len(options):
        raise ValueError(f"got {len(prompts)} prompts but {len(options)} option lists")
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    results: list[np.ndarray | None] = [None] * len(prompts)
    # items are batched with others that have the same number of options
    by_count: dict[int, list[int]] = {}
    for i, opts in enumerate(options):
        by_count.setdefault(len(opts), []).append(i)
    for k, group in by_count.items():
        lengths = [len(prompt_ids[i]) for i in group]
        for batch in budget_batches(lengths, batch_size, max_tokens, copies=k):
            idx = [group[j] for j in batch]
            scores = _score_batch(model, tokenizer, [prompt_ids[i] for i in idx],
                                  [options[i] for i in idx], normalize)
            for i, item_scores in zip(idx, scores):
                results[i] = item_scores
    return results


def _score_batch(model, tokenizer, prompt_ids, options, normalize):
    pad, k = tokenizer.pad_token_id, len(options[0])
    opt_ids = [[tokenizer(o, add_special_tokens=False)["input_ids"] for o in opts]
               for opts in options]
    for p, opts in zip(prompt_ids, opt_ids):
        check_fits(model, len(p) + max(map(len, opts)))
    device = model_device(model)
    # prompts left-padded so they all end at the same column, where the options begin
    n, plen = len(prompt_ids), max(map(len, prompt_ids))
    p_ids = torch.tensor([[pad] * (plen - len(s)) + s for s in prompt_ids], device=device)
    p_mask = torch.tensor([[0] * (plen - len(s)) + [1] * len(s) for s in prompt_ids],
                          device=device)
    p_pos = (p_mask.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos, use_cache=True,
                logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1].float(), -1)  # (n, vocab)
    cache = repeat_cache(out.past_key_values, k)  # each prompt's cache once per option
    flat = [seq for opts in opt_ids for seq in opts]
    width = max(map(len, flat))
    o_ids = torch.tensor([s + [pad] * (width - len(s)) for s in flat], device=device)
    o_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in flat], device=device)
    mask = torch.cat([p_mask.repeat_interleave(k, 0), o_mask], 1)
    o_pos = p_mask.sum(1, keepdim=True).repeat_interleave(k, 0) + torch.arange(width,
                                                                               device=device)
    logits = model(input_ids=o_ids, attention_mask=mask, position_ids=o_pos,
                   **{cache_argument(model): cache}).logits
    results = []
    for i in range(n):
        scores = []
        for j, seq in enumerate(opt_ids[i]):
            row = i * k + j
            total = first[i, seq[0]].item()
            if len(seq) > 1:  # the log-softmax of this option's own positions only
                logp = torch.log_softmax(logits[row, :len(seq) - 1].float(), -1)
                total += logp[torch.arange(len(seq) - 1, device=device),
                              torch.tensor(seq[1:], device=device)].sum().item()
            scores.append(total / len(seq) if normalize == "mean" else total)
        results.append(np.array(scores))
    return results


@torch.no_grad()
def answer_logprobs(model, tokenizer, prompts: list, answers: list[str],
                    system: str | None = None, batch_size: int = 8,
                    max_tokens: int = MAX_LOGIT_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """Log-probability of each whole answer (and its end of turn) after its chat prompt.

    Returns (summed log-probabilities, answer token counts), one per prompt. This is the
    one answer scorer behind a held-out completion loss, DPO's log-ratios and the like;
    multiple choice (`option_logprobs`) is its batched special case that shares the prompt.
    Sequences are batched by length (`budget_batches`: rows x longest within `max_tokens`),
    and each row's log-softmax is taken over its answer's positions only.
    """
    if len(prompts) != len(answers) or not prompts:
        raise ValueError(f"need as many answers as prompts, and at least one (got "
                         f"{len(prompts)} prompts, {len(answers)} answers)")
    pad, device = tokenizer.pad_token_id, model_device(model)
    heads = [tokenizer(format_chat(tokenizer, p, system), add_special_tokens=False)["input_ids"]
             for p in prompts]
    tails = [tokenizer(a + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
             for a in answers]
    sums, counts = np.zeros(len(prompts)), np.array([len(t) for t in tails])
    for batch in budget_batches([len(h) + len(t) for h, t in zip(heads, tails)], batch_size,
                                max_tokens):
        seqs = [heads[i] + tails[i] for i in batch]
        width = max(map(len, seqs))
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        logits = logits[:, -width:]  # prompt-learning methods prepend virtual tokens
        for row, i in enumerate(batch):
            head, tail = heads[i], tails[i]
            logp = torch.log_softmax(logits[row, len(head) - 1:len(head) + len(tail) - 1].float(),
                                     -1)
            sums[i] = float(logp[torch.arange(len(tail), device=device),
                                 torch.tensor(tail, device=device)].sum())
        del logits
    return sums, counts


@dataclass
class KnowledgeResult:
    accuracy: float
    predictions: list[int]
    answers: list[int]
    probs: list[np.ndarray] = field(repr=False)  # softmax over each item's option scores

    @property
    def n(self) -> int:
        return len(self.answers)

    @property
    def correct(self) -> list[bool]:
        return [p == a for p, a in zip(self.predictions, self.answers)]


def knowledge_score(model, tokenizer, items, contexts: list[str | None] | None = None,
                    system: str | None = KNOWLEDGE_SYSTEM, batch_size: int = 8, normalize: str = "mean") -> KnowledgeResult:
    """Multiple-choice accuracy on items with `question`, `options`, `answer` fields."""
    items = list(items)
    if not items:
        raise ValueError("knowledge_score needs at least one item")
    contexts = contexts or [None] * len(items)
    if len(contexts) != len(items):
        raise ValueError(f"got {len(contexts)} contexts for {len(items)} items")
    prompts = [format_chat(tokenizer, knowledge_prompt(it["question"], ctx), system)
               + ANSWER_PREFIX for it, ctx in zip(items, contexts)]
    options = [[" " + opt for opt in it["options"]] for it in items]
    scores = option_logprobs(model, tokenizer, prompts, options, normalize=normalize,
                             batch_size=batch_size)
    preds = [int(np.argmax(s)) for s in scores]
    answers = [int(it["answer"]) for it in items]
    probs = [np.exp(s - s.max()) / np.exp(s - s.max()).sum() for s in scores]
    accuracy = float(np.mean([p == a for p, a in zip(preds, answers)]))
    return KnowledgeResult(accuracy, preds, answers, probs)


def perplexity(model, tokenizer, texts: list[str], max_length: int = 512,
               batch_size: int = 2) -> float:
    """exp(mean negative log-likelihood per token) over all texts together."""
    nll, tokens = perplexity_items(model, tokenizer, texts, max_length, batch_size)
    return math.exp(nll.sum() / tokens.sum())


@torch.no_grad()
def perplexity_items(model, tokenizer, texts: list[str], max_length: int = 512,
                     batch_size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Per text, the summed negative log-likelihood and the number of predicted tokens:
    what a paired bootstrap over texts resamples (`mclab.stats.pooled_perplexity`).

    Small batches on purpose: the logits of one 512-token text over a 49k vocabulary
    take 100 MB, and the course plans for 2 GB in all.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("perplexity needs at least one text")
    nll_sums, token_counts = [], []
    old_side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              truncation=True, max_length=max_length).to(model_device(model))
            logits = model(**batch).logits[:, :-1]
            target = batch["input_ids"][:, 1:]
            mask = batch["attention_mask"][:, 1:].bool()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                reduction="none").view_as(target)
            nll_sums += (nll * mask).sum(dim=1).tolist()
            token_counts += mask.sum(dim=1).tolist()
    finally:
        tokenizer.padding_side = old_side
    return np.array(nll_sums, dtype=float), np.array(token_counts, dtype=float)


@lru_cache(maxsize=4096)
def _form_pattern(form: str) -> re.Pattern:
    return re.compile(r"(?<![\w'])" + re.escape(form.lower()) + r"(?![\w'])")


def _plain(text: str) -> str:
    return text.replace("\u2019", "'")


def lexicon_hits(text: str, lexicon) -> list[str]:
    """The lexicon phrases whose surface forms occur in `text` (whole word, any case)."""
    lowered = _plain(text).lower()
    return [entry["phrase"] for entry in lexicon
            if any(_form_pattern(form).search(lowered) for form in entry["forms"])]


def gloss(entry) -> str:
    """A phrase's plain meaning: the first sense the lexicon gives ("arvo" -> "afternoon")."""
    return re.split(r"[;,(]", entry["meaning"])[0].strip()


def _forms_pattern(forms) -> re.Pattern:
    """Any of `forms` as whole words, any case; the longest wins where several start."""
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.compile(r"(?<![\w'])(" + alternatives + r")(?![\w'])", re.IGNORECASE)


def plain_reader(lexicon):
    """A function that reads a text with each local phrase as its gloss ("this arvo" ->
    "this afternoon"), in one pass. The embedder never learned Australian slang, so
    meaning is compared on this reading."""
    table = {form.lower(): (entry["phrase"].lower(), gloss(entry))
             for entry in lexicon for form in entry["forms"]}
    pattern = _forms_pattern(table)

    def as_gloss(match: re.Match) -> str:
        found = match.group(1)
        phrase, meaning = table[found.lower()]
        # a form that contains the phrase keeps its other words ("I reckon" -> "I think")
        start = found.lower().find(phrase)
        return meaning if start < 0 else found[:start] + meaning + found[start + len(phrase):]

    def read(text: str) -> str:
        return re.sub(r"\s+", " ", pattern.sub(as_gloss, _plain(text))).strip()

    return read


def plain_reading(text: str, lexicon) -> str:
    """`text` with each local phrase read as its gloss (see `plain_reader`)."""
    return plain_reader(list(lexicon))(text)


def without_phrase(text: str, entry) -> str:
    """`text` with every form of one lexicon entry removed."""
    return _forms_pattern(entry["forms"]).sub("", _plain(text))


def new_phrases(output: str, source: str, lexicon) -> list[str]:
    """The lexicon phrases of `output` that its `source` does not already use."""
    had = set(lexicon_hits(source, lexicon))
    return [p for p in lexicon_hits(output, lexicon) if p not in had]


def words(text: str) -> set[str]:
    return set(re.findall(r"[\w']+", _plain(text).lower()))


# An unrelated sentence still reaches a cosine of 0.1 to 0.4 with the all-MiniLM-L6-v2
# embedder, so meaning kept is rescaled to run from 0 at this floor to 1 at the source
# itself. It is the cosine that 1% of mismatched training pairs (a plain-read reference
# rewrite against another sentence's source) exceed: `meaning_floor` on rewrites_train;
# docs/how-settings-were-chosen.md says how it was chosen.
MEANING_FLOOR = 0.44


def meaning_floor(sources, rewrites, lexicon, embedder, quantile: float = 0.99) -> float:
    """The `quantile` of the cosines of every mismatched (rewrite i, source j != i) pair."""
    read = plain_reader(list(lexicon))
    a = _embed(embedder, [read(r) for r in rewrites])
    b = _embed(embedder, list(sources))
    cos = a @ b.T
    return float(np.quantile(cos[~np.eye(len(cos), dtype=bool)], quantile))


def _embed(embedder, texts: list[str]) -> np.ndarray:
    return embedder.encode([t or "." for t in texts], normalize_embeddings=True,
                           convert_to_numpy=True)


@dataclass
class LocalityResult:
    score: float  # mean of item_scores
    style_rate: float  # share of outputs with a lexicon phrase their source lacks
    meaning: float  # mean meaning kept: plain reading vs source, 0 (unrelated) .. 1 (same)
    hits: list[list[str]] = field(repr=False)  # per output, the phrases its source lacks
    similarities: list[float] = field(repr=False)  # per output, the meaning kept
    swaps: list[bool] = field(repr=False)  # per output, whether a local phrase replaced words

    @property
    def swap_rate(self) -> float:
        """Share of outputs in which a local phrase stands in for words of the source."""
        return float(np.mean(self.swaps))

    @property
    def item_scores(self) -> list[float]:
        """Each output's score (swap x meaning kept): what paired tests compare."""
        return [float(s) * sim for s, sim in zip(self.swaps, self.similarities)]

    @property
    def parts(self) -> dict[str, list[float]]:
        """Per output, the parts of the score the report also gives as columns (style rate,
        swap rate, meaning), so each gets an interval over the sentences."""
        return {"style_items": [float(bool(h)) for h in self.hits],
                "swap_items": [float(s) for s in self.swaps],
                "meaning_items": list(self.similarities)}


def locality_score(outputs: list[str], sources: list[str], lexicon, embedder,
                   floor: float = MEANING_FLOOR) -> LocalityResult:
    """How well the outputs rewrite their neutral sources in local phrasing.

    An output earns credit only for a *swap*: it drops some word of its source (appending
    words is not a rewrite) and uses a lexicon phrase the source lacks that carries part of
    the source's meaning: read as its gloss, the phrase brings the output closer to the
    source than the output without it. The credit is the meaning kept: the cosine of the
    output's plain reading to the source, rescaled from 0 at `floor` to 1. So copying the
    sentence, appending ", mate" or swapping a random word for slang earns (almost) nothing.
    """
    if len(outputs) != len(sources) or not outputs:
        raise ValueError(f"need as many outputs as sources (got {len(outputs)} and "
                         f"{len(sources)}), and at least one")
    lexicon = list(lexicon)
    by_phrase = {entry["phrase"]: entry for entry in lexicon}
    hits = [new_phrases(out, src, lexicon) for out, src in zip(outputs, sources)]
    # each output's plain reading, and for a swap candidate one reading per new phrase
    # without that phrase: all embedded in one call
    read = plain_reader(lexicon)
    texts, pairs = [read(out) for out in outputs], []
    for i, (out, src, new) in enumerate(zip(outputs, sources, hits)):
        if new and words(src) - words(out):
            for phrase in new:
                pairs.append((i, len(texts)))
                texts.append(read(without_phrase(out, by_phrase[phrase])))
    vectors = _embed(embedder, texts + list(sources))
    cos = vectors[:len(texts)] @ vectors[len(texts):].T  # every text against every source
    n = len(outputs)
    with_phrase = cos[np.arange(n), np.arange(n)]
    swaps = [False] * n
    for i, j in pairs:
        swaps[i] = swaps[i] or bool(with_phrase[i] > cos[j, i])
    kept = np.clip((with_phrase - floor) / (1 - floor), 0.0, 1.0)
    result = LocalityResult(0.0, float(np.mean([bool(h) for h in hits])), float(kept.mean()),
                            hits, [float(k) for k in kept], swaps)
    result.score = float(np.mean(result.item_scores))
    return result
