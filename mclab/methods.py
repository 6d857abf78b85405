"""What each method does in the report: its recipe (`mclab.recipes`) applied to the base
model, then the shared scorer (`mclab.scorecard.score_model`) and its costs.

Each `run_*` returns one row of the comparison (`mclab.report_table.COLUMNS`); the report
(`mclab.report`) runs each in its own process.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import recipes
from .config import get_settings
from .measure import folder_size_mb


@dataclass
class Serving:
    """How a method answers a company question: the model it runs (in the form the report
    scores, an adapter merged or not) and what the model reads (`score_model`'s
    `company_context` and `company_system`). `mclab.timing` times every method this way."""

    model: object
    tokenizer: object
    score_kwargs: dict = field(default_factory=dict)
    retriever: object = field(default=None, repr=False)  # a method that retrieves: its index


@dataclass
class Method:
    name: str
    family: str
    trained_on: str
    run: Callable[["Context"], dict]
    # how it serves answers; None: the base model as it is (full-weight training changes
    # the weights' values, never the work of an answer)
    serve: Callable[["Context"], Serving] | None = None

    def serving(self, ctx: "Context") -> Serving:
        return (self.serve or serve_base)(ctx)


class Context:
    """What every method needs, loaded once per child process."""

    def __init__(self, parts=None):
        from .data import load_scenario
        from .models import load_embedder
        from .scorecard import PARTS, eval_sets

        self.settings = get_settings()
        self.sets = eval_sets()
        self.embedder = load_embedder()
        self.company, self.local = load_scenario("company"), load_scenario("local")
        self.parts = tuple(parts or PARTS)  # the evals to run (a rerun may add one part)

    def base(self):
        from .models import load_model

        return load_model()


# --------------------------------------------------------------------------- scoring

def score(ctx: Context, model, tokenizer, parts=None, **kwargs) -> dict:
    """The shared evals for one model as a report row; prompts and contexts are the method's.

    Per-item results are kept (answers, option probabilities, locality per sentence and the
    rewrites), so intervals and paired tests come from the rows without rerunning a method.
    """
    from .answers import is_abstention
    from .scorecard import PARTS, locality_columns, score_model

    parts = [p for p in (parts or PARTS) if p in ctx.parts]
    card = score_model(model, tokenizer, ctx.embedder, ctx.sets, parts=parts, **kwargs)
    row = {"company_knowledge": card.company_knowledge, "ms_per_answer": card.ms_per_answer,
           "company_uncovered": card.company_uncovered,
           "medical_perplexity": card.medical_perplexity, "locality": card.locality,
           "medical_knowledge": card.medical_knowledge}
    if card.medical_nll is not None:  # per held-out text: the paired bootstrap's items
        row.update(medical_nll=card.medical_nll, medical_tokens=card.medical_tokens)
    if card.answers is not None:
        row.update(company_answer_match=card.company_answer_match,
                   company_answer_f1=card.company_answer_f1, false_abstain=card.false_abstain,
                   abstain_unanswerable=card.abstain_unanswerable,
                   answer_texts=card.answers.texts, answer_match_items=card.answers.match,
                   answer_f1_items=card.answers.f1, answer_abstained=card.answers.abstained,
                   unanswerable_texts=card.unanswerable,
                   unanswerable_abstained=[is_abstention(t) for t in card.unanswerable])
    for key, result in (("company", card.company), ("uncovered", card.uncovered),
                        ("medical", card.medical)):
        if result is not None:
            row[f"{key}_probs"] = [p.tolist() for p in result.probs]
            row[f"{key}_answers"] = result.answers
    if card.local is not None:
        row.update(locality_columns(card.local), local_outputs=card.local.outputs)
    return row


def saved_mb(save: Callable[[Path], object]) -> float:
    """Disk a method's artifact takes: saved into a scratch folder, measured, removed."""
    with tempfile.TemporaryDirectory(prefix="mclab-size-") as tmp:
        save(Path(tmp) / "artifact")
        return folder_size_mb(Path(tmp) / "artifact")


def training_costs(result, save: Callable[[Path], object] | None = None) -> dict:
    """What a training result cost: trainable parameters, seconds, disk (what `save` writes,
    by default `save_pretrained`: the adapter of a peft model, else every weight)."""
    from .models import count_parameters

    return {"trainable_params": count_parameters(result.model, trainable_only=True),
            "train_seconds": result.seconds,
            "storage_mb": saved_mb(save or (lambda p: result.model.save_pretrained(p)))}


def trained(ctx: Context, result, tokenizer, **score_kw) -> dict:
    """Score a training result and record its costs."""
    return {**score(ctx, result.model, tokenizer, **score_kw), **training_costs(result)}


def untrained(row: dict, storage_mb: float = 0.0) -> dict:
    return {**row, "trainable_params": 0, "train_seconds": 0.0, "storage_mb": storage_mb}


# --------------------------------------------------------------------------- prompting

COMPANY_QUESTIONS = ("company", "uncovered", "answers")  # the evals of a company-only prompt


def serve_base(ctx) -> Serving:
    return Serving(*ctx.base())


def run_base(ctx):
    model, tok = ctx.base()
    return untrained(score(ctx, model, tok))


def serve_prompt_engineering(ctx) -> Serving:
    from .prompting import COMPANY_ROLE

    return Serving(*ctx.base(), {"company_system": COMPANY_ROLE})


def run_prompt_engineering(ctx):
    from .prompting import LOCAL_ROLE, engineered_local_prompt, frequent_local_phrases

    hints = frequent_local_phrases(list(ctx.local["rewrites_train"]), ctx.sets["lexicon"],
                                   n=recipes.PROMPT_ENGINEERING.hint_phrases)
    prompts = [engineered_local_prompt(s, hints) for s in ctx.sets["local_eval"]["neutral"]]
    serving = serve_prompt_engineering(ctx)
    return untrained(score(ctx, serving.model, serving.tokenizer,
                           (*COMPANY_QUESTIONS, "locality"), local_prompts=prompts,
                           local_system=LOCAL_ROLE, **serving.score_kwargs))


def serve_examples(ctx, other_facts: bool, shots: int | None = None) -> Serving:
    """The base model reading the `shots` (default the recipe's) training Q&A most similar to
    each question (of other facts only, for true few-shot); the example search is part of
    every answer."""
    from .prompting import ExampleSelector, few_shot_contexts

    recipe = recipes.FEW_SHOT
    shots = recipe.shots if shots is None else shots
    qa_rows = list(ctx.company["train_qa"])
    qa = ExampleSelector([r["question"] for r in qa_rows], ctx.embedder)

    def context(items):  # unanswerable questions have no fact, so nothing to exclude
        facts = [it.get("fact_id") for it in items] if other_facts else None
        return few_shot_contexts(qa, qa_rows, [it["question"] for it in items], shots,
                                 recipe.strategy, facts=facts)

    return Serving(*ctx.base(), {"company_context": context})


def run_few_shot(ctx):
    """True few-shot: the most similar training Q&A about *other* facts (same fact excluded),
    so the examples show the format and the tone, never the answer; for the local style, the
    most similar training rewrites (other sentences than the one asked)."""
    from .prompting import ExampleSelector, local_few_shot_prompts

    recipe = recipes.FEW_SHOT
    serving = serve_examples(ctx, other_facts=True)
    pool = list(ctx.local["rewrites_train"])
    rewrites = ExampleSelector([r["neutral"] for r in pool], ctx.embedder)
    prompts = local_few_shot_prompts(list(ctx.sets["local_eval"]["neutral"]), pool, rewrites,
                                     recipe.shots, recipe.strategy)
    return untrained(score(ctx, serving.model, serving.tokenizer,
                           (*COMPANY_QUESTIONS, "locality"), local_prompts=prompts,
                           **serving.score_kwargs))


def serve_few_shot(ctx) -> Serving:
    return serve_examples(ctx, other_facts=True)


def serve_qa_retrieval(k: int) -> Callable[["Context"], Serving]:
    def serve(ctx) -> Serving:
        return serve_examples(ctx, other_facts=False, shots=k)

    return serve


def run_qa_retrieval(k: int) -> Callable[["Context"], dict]:
    """The `k` training Q&A most similar to each question: every eval fact has some, so a
    shot often states the answer. Retrieval over labelled examples, not the format alone.
    Scored on the company questions only: on the local style it would read the same similar
    rewrites as the few-shot row, a duplicate, not a second method."""
    def run(ctx):
        serving = serve_qa_retrieval(k)(ctx)
        return untrained(score(ctx, serving.model, serving.tokenizer, COMPANY_QUESTIONS,
                               **serving.score_kwargs))

    return run


def serve_rag(ctx) -> Serving:
    """The base model reading the passages the RAG recipe retrieves (retrieval is timed with
    the answer it serves)."""
    from .rag import RAG_SYSTEM, build_context, retriever_from_recipe

    recipe = recipes.RAG
    model, tok = ctx.base()
    retriever = retriever_from_recipe(list(ctx.company["documents"]), ctx.embedder, recipe,
                                      model, tok)

    def context(items):
        ids = retriever.retrieve([it["question"] for it in items], recipe.k)
        return [build_context(i, retriever.chunks) for i in ids]

    return Serving(model, tok, {"company_context": context, "company_system": RAG_SYSTEM},
                   retriever=retriever)


def run_rag(ctx):
    import numpy as np

    from .answers import contains_answer
    from .rag_answers import Abstention, ChunkSimilarity, rag_answer

    recipe = recipes.RAG
    serving = serve_rag(ctx)
    model, tok, retriever = serving.model, serving.tokenizer, serving.retriever
    chunks = retriever.chunks
    similarity = ChunkSimilarity(ctx.embedder, chunks)
    abstention = Abstention(recipe.min_similarity, recipe.min_support)
    written = {}  # question -> RagAnswer, for the citations and reasons in the row

    def answer(items):
        answers = rag_answer(model, tok, [it["question"] for it in items], retriever, recipe.k,
                             similarity, abstention)
        written.update((a.question, a) for a in answers)
        return [a.text for a in answers]

    row = score(ctx, model, tok, COMPANY_QUESTIONS, company_answer=answer,
                **serving.score_kwargs)
    if written:
        items = list(ctx.sets["company_mc"])
        row["rag_answers"] = [
            {"cited": a.cited, "reason": a.reason, "support": a.support,
             "similarity": a.similarity,
             "context_has_answer": any(contains_answer(chunks[j].text,
                                                       it["options"][it["answer"]])
                                       for j, _ in a.passages)}
            for it in items for a in [written[it["question"]]]]
        row["answers_supported"] = float(np.mean([a["context_has_answer"]
                                                  for a in row["rag_answers"]]))
        row["rag_unanswerable_reasons"] = [
            written[it["question"]].reason for it in ctx.sets["company_unanswerable"]]
    return untrained(row, storage_mb=saved_mb(retriever.save))


# --------------------------------------------------------------------------- continued pre-training

def _cpt(ctx, texts: list[str], name: str) -> dict:
    """CPT on company text, stopped by the loss on the facts' third wording."""
    from .pretraining import company_validation, pieces, train_cpt

    training = recipes.CPT.training
    model, tok = ctx.base()
    train, val = (pieces(t, tok, training.max_length)
                  for t in (texts, company_validation(ctx.company)))
    run = train_cpt(model, tok, train, training.config(f"report-{name}"), eval_texts=val)
    return {**trained(ctx, run, tok), **_early_stopped(run, "cpt")}


def _train_medical_cpt(ctx):
    """CPT + replay's training (dermatology prose with replay written by the base model,
    stopped by the loss on held-back paragraphs): its `TrainResult` and tokenizer. The
    medical SFT rows start from the same model."""
    from .pretraining import medical_cpt_texts, train_cpt

    recipe = recipes.CPT
    model, tok = ctx.base()
    train, val = medical_cpt_texts(model, tok, recipe, seed=ctx.settings.seed)
    del model
    model, tok = ctx.base()
    return train_cpt(model, tok, train, recipe.training.config("report-cpt-medical"),
                     eval_texts=val), tok


def run_cpt_medical(ctx):
    result, tok = _train_medical_cpt(ctx)
    return {**trained(ctx, result, tok), **_early_stopped(result, "cpt")}


def run_cpt_documents(ctx):
    from .pretraining import company_corpus

    return _cpt(ctx, company_corpus(ctx.company), "cpt-documents")


def run_cpt_paraphrases(ctx):
    from .pretraining import company_corpus

    return _cpt(ctx, company_corpus(ctx.company, paraphrases=True), "cpt-paraphrases")


# ------------------------------------------------------------------ CPT, then SFT (medical)

MEDICAL_PARTS = ("company", "medical")  # a medical model's other scenarios are not its job


def _train_medical_sft(model, tok, name: str):
    """The medical SFT recipe on `model` (the base, or the CPT model), stopped by its
    validation loss."""
    from .finetuning import sft_data
    from .training import train_sft

    recipe = recipes.MEDICAL_SFT
    train, val = sft_data("medical", n_train=recipe.n_train.get(), n_val=recipe.n_val.get())
    return train_sft(model, tok, train, recipe.training.config(f"report-{name}"),
                     eval_dataset=val)


def validation_curve(result, key: str = "eval_loss") -> list[list[float]]:
    """[step, validation value] pairs a training result logged (`key`: the loss, or GRPO's
    "eval_reward")."""
    return [[row["step"], row[key]] for row in result.history if row.get(key) is not None]


# what a stage stops on, where it is not the validation loss: (row key, logged key)
VALIDATION_SIGNAL = {"grpo": ("validation_reward", "eval_reward")}


def _early_stopped(result, stage: str = "sft") -> dict:
    """A row (or its `stage`: "sft", "cpt", "dpo" or "grpo") trained until its validation
    signal stopped improving: its steps, the step whose weights it kept, and its validation
    curve (a stage's keys other than SFT's start with its name; GRPO's curve is the mean
    reward of its validation prompts' completions, every other one a loss)."""
    first = "" if stage == "sft" else f"{stage}_"
    signal, key = VALIDATION_SIGNAL.get(stage, ("validation_loss", "eval_loss"))
    return {f"{first}steps": result.steps, f"{first}best_step": result.best_step,
            f"{stage}_{signal}": validation_curve(result, key)}


def run_medical_sft(ctx):
    model, tok = ctx.base()
    sft = _train_medical_sft(model, tok, "medical-sft")
    return {**trained(ctx, sft, tok, parts=MEDICAL_PARTS), **_early_stopped(sft)}


def run_cpt_then_medical_sft(ctx):
    """CPT + replay, then medical SFT on its model. Training seconds add up; the stored
    artifact is one full model either way. The CPT stage's held-out perplexity is kept, to
    show it is the model the "CPT + replay" row scored (training is seeded)."""
    from .evaluation import perplexity

    cpt, tok = _train_medical_cpt(ctx)
    cpt_ppl = perplexity(cpt.model, tok, ctx.sets["medical_heldout"]["text"])
    sft = _train_medical_sft(cpt.model, tok, "cpt-then-medical-sft")
    row = trained(ctx, sft, tok, parts=MEDICAL_PARTS)
    return {**row, "train_seconds": row["train_seconds"] + cpt.seconds,
            "cpt_train_seconds": cpt.seconds, "cpt_stage_medical_perplexity": cpt_ppl,
            **_early_stopped(sft), **_early_stopped(cpt, "cpt")}


# --------------------------------------------------------------------------- fine-tuning

def _company_sft(ctx, recipe: recipes.CompanySft, name: str) -> dict:
    from .finetuning import sft_data
    from .training import train_sft

    model, tok = ctx.base()
    train, val = sft_data("company", company=ctx.company, train_on=recipe.train_on,
                          n_train=recipe.n_train.get(), n_val=recipe.n_val.get())
    peft_config = recipe.lora.config() if recipe.lora else None
    # when every wording trains (`train_on` holds the third) none validates: a fixed budget
    result = train_sft(model, tok, train, recipe.training.config(f"report-{name}"),
                       eval_dataset=val if len(val) else None, peft_config=peft_config)
    return {**trained(ctx, result, tok), **_early_stopped(result)}


def run_full_sft(ctx):
    return _company_sft(ctx, recipes.FULL_SFT, "sft-company")


def run_full_sft_paraphrases(ctx):
    return _company_sft(ctx, recipes.FULL_SFT_PARAPHRASES, "sft-company-3")


def run_lora(ctx):
    return _company_sft(ctx, recipes.LORA_SFT, "lora-company")


def run_prefix(ctx):
    from .peft_methods import enable_prefix_generation, prefix_config, prefix_from_text
    from .sweeps import data
    from .training import train_sft

    recipe = recipes.PREFIX
    model, tok = ctx.base()
    cfg = recipe.training.config("report-prefix")
    cfg.validate()  # before the model is wrapped
    train, val = data("PREFIX", recipe)  # 06's split: the validation rewrites stop training
    model = prefix_from_text(model, tok, prefix_config(recipe.virtual_tokens), recipe.init_text)
    result = train_sft(model, tok, train, cfg, eval_dataset=val)
    enable_prefix_generation(result.model)
    return {**trained(ctx, result, tok), **_early_stopped(result)}


def run_bottleneck(ctx):
    """Adapter layers (`mclab.adapters`) on the prefix row's data; storage is the adapters'
    weights only (a serial adapter cannot be merged, so the base is stored once beside it)."""
    from .adapters import add_adapters, save_adapters
    from .sweeps import data
    from .training import train_sft

    recipe = recipes.BOTTLENECK
    model, tok = ctx.base()
    cfg = recipe.training.config("report-bottleneck")
    cfg.validate()  # before the adapters go in
    train, val = data("BOTTLENECK", recipe)  # 06's split, as the prefix row
    add_adapters(model, recipe.size, recipe.where)
    result = train_sft(model, tok, train, cfg, eval_dataset=val)
    return {**score(ctx, result.model, tok), **_early_stopped(result),
            **training_costs(result, save=lambda p: save_adapters(result.model, p))}


def train_local_sft(model, tok, run_name: str = "report-rl-sft"):
    """The SFT (LoRA) run that DPO and GRPO start from, as the report and the RL sweeps
    (`mclab.rl_sweeps`) train it: until the loss on every 8th training rewrite stops
    falling. The `TrainResult`."""
    from .sweeps import data
    from .training import train_sft

    recipe = recipes.LOCAL_SFT
    train, val = data("LOCAL_SFT", recipe)  # every 8th training rewrite validates
    return train_sft(model, tok, train, recipe.training.config(run_name), eval_dataset=val,
                     peft_config=recipe.lora.config())


def train_dpo_recipe(model, tok, preferences, run_name: str = "report-dpo",
                     beta: float | None = None, **overrides):
    """`recipes.DPO` from `model` (the local SFT model), as the report row and the DPO
    sweep train it: on the preference pairs but every `heldout_every`-th, until the DPO loss
    on those stops falling. `overrides`: a sweep's training settings and budget."""
    from . import rl
    from .data import subset

    recipe = recipes.DPO
    train, val = rl.preference_split(preferences, recipe.heldout_every)
    val = subset(val, recipe.n_val.get())  # all of them but in quick mode
    return rl.train_dpo(model, tok, train, recipe.training.config(run_name, **overrides),
                        beta=recipe.beta if beta is None else beta,
                        peft_config=recipe.lora.config(), eval_dataset=val)


def train_grpo_recipe(model, tok, rewrites_train, lexicon, embedder,
                      run_name: str = "report-grpo", **overrides):
    """`recipes.GRPO` from `model` (the local SFT model), as the report row and the GRPO
    sweep train it: on the prompts of the local SFT's training rewrites, until the reward of
    the completions sampled for its validation rewrites' prompts stops rising."""
    from . import rl
    from .data import subset
    from .finetuning import local_split
    from .scorecard import local_prompt

    recipe = recipes.GRPO
    train, val = (rl.rewrite_prompts(rows, local_prompt) for rows in local_split(rewrites_train))
    val = subset(val, recipe.n_val.get())  # all of them but in quick mode
    return rl.train_grpo(model, tok, train, rl.make_reward_funcs(lexicon, embedder),
                         recipe.training.config(run_name, **overrides),
                         num_generations=recipe.num_generations,
                         max_completion_length=recipe.max_completion_length,
                         reward_weights=rl.RewardWeights().as_list(),
                         peft_config=recipe.lora.config(), eval_prompts=val)


def _local_sft(ctx):
    """The SFT (LoRA) model that DPO and GRPO start from: its costs (and where its early
    stopping stopped), merged model, tokenizer."""
    model, tok = ctx.base()
    sft = train_local_sft(model, tok)
    return training_costs(sft), _early_stopped(sft), sft.model.merge_and_unload(), tok


def run_local_sft(ctx):
    """The start of DPO and GRPO, scored alone: what the RL rows are compared with."""
    sft_costs, stopped, sft_model, tok = _local_sft(ctx)
    return {**score(ctx, sft_model, tok), **sft_costs, **stopped}


def _after_sft(row: dict, sft_costs: dict, stopped: dict) -> dict:
    """An RL row's cost includes the SFT adapter it starts from (trained and stored too),
    and the row says where that SFT stopped."""
    return {**row, **{cost: row[cost] + value for cost, value in sft_costs.items()},
            **{f"start_{k}": v for k, v in stopped.items()}}


def run_dpo(ctx):
    sft_costs, stopped, sft_model, tok = _local_sft(ctx)
    dpo = train_dpo_recipe(sft_model, tok, ctx.local["preferences"])
    return {**_after_sft(trained(ctx, dpo, tok), sft_costs, stopped),
            **_early_stopped(dpo, stage="dpo")}


def run_grpo(ctx):
    sft_costs, stopped, sft_model, tok = _local_sft(ctx)
    grpo = train_grpo_recipe(sft_model, tok, ctx.local["rewrites_train"], ctx.sets["lexicon"],
                             ctx.embedder)
    return {**_after_sft(trained(ctx, grpo, tok), sft_costs, stopped),
            **_early_stopped(grpo, stage="grpo")}


# ------------------------------------------------------------ how trained methods serve
# An adapter's work per answer depends on its shapes (rank and targets, virtual tokens,
# bottleneck width), not on its trained values: `mclab.timing` times these forms, each
# built from the method's recipe and left unmerged as the report scores it.

def serve_lora(lora: recipes.Lora) -> Callable[["Context"], Serving]:
    def serve(ctx) -> Serving:
        from peft import get_peft_model

        model, tok = ctx.base()
        return Serving(get_peft_model(model, lora.config()).eval(), tok)

    return serve


def serve_prefix(ctx) -> Serving:
    from .peft_methods import enable_prefix_generation, prefix_config, prefix_from_text

    recipe = recipes.PREFIX
    model, tok = ctx.base()
    model = prefix_from_text(model, tok, prefix_config(recipe.virtual_tokens), recipe.init_text)
    enable_prefix_generation(model)
    return Serving(model.eval(), tok)


def serve_bottleneck(ctx) -> Serving:
    from .adapters import add_adapters

    model, tok = ctx.base()
    return Serving(add_adapters(model, recipes.BOTTLENECK.size, recipes.BOTTLENECK.where).eval(),
                   tok)


PREFIX_NAME = f"prefix tuning ({recipes.PREFIX.virtual_tokens} tokens)"  # its length: a choice

METHODS = [
    Method("base", "none", "-", run_base),
    # what the model reads
    Method("prompt engineering", "prompting", "company, local", run_prompt_engineering,
           serve_prompt_engineering),
    Method("few-shot (4 other facts)", "prompting", "company, local", run_few_shot,
           serve_few_shot),
    # retrieval over labelled Q&A: at few-shot's k, and at RAG's k (the same-k comparison)
    *(Method(recipes.FEW_SHOT.retrieval_name(k), "retrieval", "company", run_qa_retrieval(k),
             serve_qa_retrieval(k))
      for k in dict.fromkeys((recipes.FEW_SHOT.shots, recipes.RAG.k))),
    Method(recipes.RAG.method_name, "retrieval", "company", run_rag, serve_rag),
    # raw text, then labelled examples, then small trainable modules
    Method("CPT + replay", "continued pre-training", "medical", run_cpt_medical),
    Method("CPT documents", "continued pre-training", "company", run_cpt_documents),
    Method("CPT documents + paraphrases", "continued pre-training", "company",
           run_cpt_paraphrases),
    # CPT before SFT on the medical scenario: SFT alone, and SFT on the CPT + replay model
    Method("medical SFT", "supervised fine-tuning", "medical", run_medical_sft),
    Method("CPT + replay, then medical SFT", "continued pre-training", "medical",
           run_cpt_then_medical_sft),
    Method("full SFT", "supervised fine-tuning", "company", run_full_sft),
    Method("full SFT, 3 paraphrases", "supervised fine-tuning", "company",
           run_full_sft_paraphrases),
    Method("LoRA r=16", "parameter-efficient", "company", run_lora,
           serve_lora(recipes.LORA_SFT.lora)),
    Method(PREFIX_NAME, "parameter-efficient", "local", run_prefix,
           serve_prefix),
    Method("adapter layers (bottleneck)", "parameter-efficient", "local", run_bottleneck,
           serve_bottleneck),
    # feedback signals, after the SFT model they start from
    Method("local SFT (LoRA)", "supervised fine-tuning", "local", run_local_sft),
    # DPO and GRPO serve their LoRA unmerged, on the SFT model merged into the base's shapes
    Method("SFT + DPO", "reinforcement fine-tuning", "local", run_dpo,
           serve_lora(recipes.DPO.lora)),
    Method("SFT + GRPO", "reinforcement fine-tuning", "local", run_grpo,
           serve_lora(recipes.GRPO.lora)),
]
