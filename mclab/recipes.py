"""Each method's settings, written once: the notebook that teaches a method and the report
(`python -m mclab report`) both read them here, so the two cannot drift apart.

A value that differs between modes is a `Sized(quick, full)`; `.get()` (or a recipe's
`training.config()`) resolves it for the current mode. Quick mode proves that the code
runs; full mode is what the notebooks teach and the report measures.

A value that differs between devices is an `OnDevice(cpu, gpu)`, keyed by the device
`mclab.device` chose: how a step is cut into micro-batches and whether activations are
recomputed. Those change memory and speed, never the update: the batch per optimizer step,
the steps, the rate are the same on every device, so a GPU run is comparable with the CPU
report. Under `accelerate launch` the batch is split among the processes
(`mclab.training.micro_batch_args`): it stays the recipe's batch however many GPUs run.
`tests/test_recipes.py` fails if a notebook trains a reported method with other settings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .config import pick


@dataclass(frozen=True)
class Sized:
    """A setting with one value in quick mode and another in full mode."""

    quick: object
    full: object

    def get(self):
        return pick(self.quick, self.full)


@dataclass(frozen=True)
class OnDevice:
    """A setting with one value on a CPU (and MPS) and another on a CUDA GPU."""

    cpu: object  # the course's measured CPU setting (2 cores, about 2 GB)
    gpu: object  # a GPU has memory to spare: bigger passes, no recomputation

    def get(self):
        from .device import device_kind

        return resolve(self.gpu if device_kind() == "cuda" else self.cpu)


def resolve(value):
    return value.get() if isinstance(value, (Sized, OnDevice)) else value


@dataclass(frozen=True)
class Training:
    """The optimizer settings of one method (the fields of `TrainConfig`, per mode)."""

    learning_rate: float
    max_steps: int | Sized = 0  # 0: train for `epochs` passes
    epochs: float = 1.0
    batch_size: int | Sized = 8  # sequences per optimizer step, on every device
    micro_batch: int | None | OnDevice = None  # sequences per forward pass (None: the batch)
    max_length: int = 128
    optimizer: str = "adamw_torch"
    gradient_checkpointing: bool | OnDevice = False
    lean_loss: bool = False  # the model's own cross-entropy (`TrainConfig.lean_loss`)
    max_grad_norm: float = 1.0  # 0: no clipping of the gradients' global norm
    step_in_backward: bool | OnDevice = False  # `TrainConfig.step_in_backward`
    eval_steps: int | Sized = 0
    patience: int = 0  # > 0: early stopping on a validation set (`TrainConfig.patience`)

    def config(self, run_name: str, **overrides):
        """A `TrainConfig` for this mode; `overrides` are for knobs a student turns."""
        from .training import TrainConfig

        values = {f.name: resolve(getattr(self, f.name)) for f in fields(self)}
        return TrainConfig(run_name=run_name, **{**values, **overrides})

    def one_pass(self) -> "Training":
        """The same settings for one pass over the data, with no validation and no early
        stopping: a notebook's same-budget comparison (06 gives every adapter one epoch)
        where the report's row trains until its validation loss stops falling."""
        quick = self.max_steps.quick if isinstance(self.max_steps, Sized) else 0
        return replace(self, max_steps=Sized(quick, 0), epochs=1, eval_steps=0, patience=0)


# Full-weight runs pass each step's whole batch at once, with no clipping of the gradients'
# global norm (Adafactor clips each update by its own scale), on every device. On a CPU they
# also recompute activations in the backward pass and update each weight there as soon as its
# gradient is complete (`TrainConfig.step_in_backward`, mclab.backward_step), so no step holds
# a gradient for every weight. Measured alone (6 steps of FULL_SFT, 2 runs each): training
# added 1,081 and 1,045 MB over the loaded model when it passed 2 rows at a time with
# accumulated gradients and clipping, and 524 and 472 MB now, in no more time
# (docs/performance.md, 2026-12-07).
# A GPU keeps its activations and a plain optimizer step: the same update up to rounding.
RECOMPUTE_ON_CPU = OnDevice(cpu=True, gpu=False)  # activation (gradient) checkpointing
FRUGAL = dict(gradient_checkpointing=RECOMPUTE_ON_CPU, max_grad_norm=0.0,
              step_in_backward=OnDevice(cpu=True, gpu=False))
# Adapter runs on a CPU pass 2 rows at a time (DPO: 1 pair, i.e. 2 sequences); a GPU
# passes the whole batch.
TWO_AT_A_TIME = OnDevice(cpu=2, gpu=None)
# LoRA and adapter-layer SFT on a CPU also recompute activations in the backward pass, and on
# every device take the loss from the model's own cross-entropy (`lean_loss`: at 2 rows a pass
# its logits weigh less than trl's fused loss's work; a GPU has room for a whole batch's;
# since issue 15's L6 only the labelled positions' logits). The same updates up to rounding
# (the losses of 6 steps agreed to 1e-5), in less memory: measured alone before L6 (6 steps,
# medians of 3 interleaved
# runs), local SFT (LoRA r=16) training added 819 MB over the loaded model before and 440 MB
# after, for 21% more time; adapter layers 655 -> 311 MB for 5% more (docs/performance.md).
# Full-weight runs keep trl's loss, in tiles of 4,096 vocabulary columns on a CPU
# (`compat.lm_head_tile`): with their whole batch in one pass, the model's own loss would hold
# its full logits (measured: 904 MB added against 841 for trl's tiled loss, without trimming).
ADAPTER_FRUGAL = dict(micro_batch=TWO_AT_A_TIME, gradient_checkpointing=RECOMPUTE_ON_CPU,
                      lean_loss=True)


@dataclass(frozen=True)
class Lora:
    r: int = 16
    alpha: float = 32
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                "up_proj", "down_proj")  # every linear layer

    def config(self):
        from .peft_methods import lora_config

        return lora_config(self.r, self.alpha, targets=self.targets)


# --------------------------------------------------------------------------- prompting (01)

@dataclass(frozen=True)
class PromptEngineering:
    notebook: str = "01_prompt_based"
    hint_phrases: int = 8  # lexicon phrases named in the rewrite prompt (most used in training)


@dataclass(frozen=True)
class FewShot:
    notebook: str = "01_prompt_based"
    shots: int = 4
    strategy: str = "similar"  # the training examples most similar to the question

    def retrieval_name(self, k: int | None = None) -> str:
        """The report's name for the base model reading the `k` (default `shots`) training
        Q&A most similar to the question, its own fact's included: retrieval over labelled
        examples, e.g. "retrieval over training Q&A (k=4)"."""
        return f"retrieval over training Q&A (k={self.shots if k is None else k})"


# --------------------------------------------------------------------------- retrieval (02)

@dataclass(frozen=True)
class Rag:
    """Chunking, retriever and k, built by `mclab.rag.retriever_from_recipe`.

    Chosen on the training questions by tools/choose_rag_settings.py (reports/rag_settings.json,
    tests/test_rag.py keeps the two in step): among every chunking x retriever x k (the slow LM
    reranker on two chunkings), the fewest context tokens within one standard error of the best
    validation accuracy.
    """

    notebook: str = "02_retrieval_rag"
    chunking: str = "sentences"  # "sentences": windows of whole sentences; "words": word windows
    sentences: int = 2  # sentences per chunk (chunking="sentences")
    sentence_overlap: int = 1  # sentences shared by neighbouring chunks
    chunk_size: int = 60  # words per chunk (chunking="words")
    overlap: int = 20  # words shared by neighbouring word windows
    retriever: str = "hybrid"  # "bm25", "dense" or "hybrid" (BM25 + dense, rank-fused)
    rerank: str | None = "sentence"  # None, "lm" (the model's question likelihood) or "sentence"
    rerank_depth: int = 20  # first-stage candidates the reranker reorders
    k: int = 1  # chunks in the prompt
    # abstention (mclab.rag_answers), chosen on validation questions by tools/choose_abstention.py
    # (reports/abstention.json): no chunk this similar to the question -> "I don't know"
    min_similarity: float | None = 0.39260305881500246
    # the answer's values found in no passage -> the same (off: on validation it declined
    # more than a tenth of the answerable questions)
    min_support: float | None = None

    @property
    def method_name(self) -> str:
        """The report's name for RAG with these settings, e.g. "RAG (hybrid, k=2)"."""
        label = next((name for name, values in RETRIEVERS.items()
                      if all(getattr(self, f) == v for f, v in values.items())),
                     f"{self.retriever} + {self.rerank} rerank")
        return f"RAG ({label}, k={self.k})"


# The retrievers 02, the settings grid and the report name (`mclab.rag.RETRIEVER_CHOICES` is
# this table): one place, read without importing torch.
RETRIEVERS = {
    "bm25": dict(retriever="bm25", rerank=None),
    "dense": dict(retriever="dense", rerank=None),
    "hybrid": dict(retriever="hybrid", rerank=None),
    "hybrid + sentence rerank": dict(retriever="hybrid", rerank="sentence"),
    "hybrid + LM rerank": dict(retriever="hybrid", rerank="lm"),
}


# --------------------------------------------------------------------------- CPT (03)

CPT_TRAINING = Training(learning_rate=4e-4, max_steps=Sized(1, 96), batch_size=Sized(2, 8),
                        max_length=128, optimizer="adafactor", eval_steps=Sized(1, 8),
                        patience=2, **FRUGAL)


@dataclass(frozen=True)
class Cpt:
    notebook: str = "03_continued_pretraining"
    # The report's CPT rows train until the loss on held-back text has not fallen for 2
    # evaluations 8 steps apart, under a cap of 96 steps of 8 pieces (about 3.5 passes over
    # dermatology + replay, 9 over the company documents), and keep the best evaluation's
    # weights: dermatology validates on its last training paragraphs
    # (`pretraining.medical_split`), the company documents on the facts' third wording
    # (`pretraining.company_validation`). The rate was swept on the dermatology validation
    # (tools/choose_settings.py CPT, reports/settings/CPT.json).
    training: Training = CPT_TRAINING
    # 03's runs: the same rate and batch for 8 steps with no validation (a quarter of a pass
    # over dermatology: a few minutes of CPU). 03 says its numbers are not the report's.
    demo: Training = replace(CPT_TRAINING, max_steps=Sized(1, 8), eval_steps=0, patience=0)
    replay_ratio: float = 0.25  # share of the training texts that are general (replay) text
    replay_texts: Sized = Sized(2, 24)  # paragraphs the base model writes for replay
    replay_tokens: Sized = Sized(32, 96)
    # 03's forgetting curve: a learning rate 2.5x the recipe's, at which dermatology-only
    # training raised general perplexity on validation texts (company documents; medical
    # validation: held-back training paragraphs). tools/forgetting_sweep.py writes
    # reports/forgetting_sweep.json; on 2026-12-02 it tried this one rate (general 49.6 ->
    # 51.5, medical 36.9 -> 29.4; with replay general 50.0, medical 32.3; 4 texts each, no
    # interval: a small margin, the notebook's paired tests decide). Half the batch keeps the
    # extra runs cheap. (It was 5x the recipe's before the recipe's rate was re-swept.)
    forgetting: Training = Training(learning_rate=1e-3, max_steps=Sized(1, 8),
                                    batch_size=Sized(2, 4), max_length=128,
                                    optimizer="adafactor", **FRUGAL)
    # perplexity probes while training: a few short texts, so they add under a tenth of a step's
    # work per step (8 steps of 8 x 128 tokens; 5 probes of 6 x 64 tokens, forward only)
    probe_texts: Sized = Sized(2, 3)  # held-out texts of each kind per probe
    probe_tokens: int = 64  # each probe text is cut to this many tokens
    probe_every: Sized = Sized(1, 2)  # steps between two probes


# --------------------------------------------------------------------------- CPT then SFT (03)

MEDICAL_SFT_TRAINING = Training(learning_rate=1.5e-4, max_steps=Sized(2, 48), batch_size=8,
                                max_length=128, optimizer="adafactor", eval_steps=Sized(1, 4),
                                patience=2, **FRUGAL)


@dataclass(frozen=True)
class MedicalSft:
    """Term -> definition chats (medical/sft_train.jsonl) on every weight, from the base
    ("medical SFT") or from the CPT + replay model ("CPT + replay, then medical SFT").

    Each row trains until the loss on medical/sft_val.jsonl has not fallen for 2 evaluations
    4 steps apart, under a cap of 48 steps (about 3.4 passes over the 113 chats), and keeps its
    best evaluation's weights; the rate was swept from the base under that budget
    (tools/choose_settings.py MEDICAL_SFT, reports/settings/MEDICAL_SFT.json). `demo` is 03's
    smaller budget, which must fit that notebook's time: 03 says its numbers are not the
    report's.
    """

    notebook: str = "03_continued_pretraining"
    training: Training = MEDICAL_SFT_TRAINING
    demo: Training = replace(MEDICAL_SFT_TRAINING, max_steps=Sized(1, 4), patience=0)
    n_train: Sized = Sized(8, None)  # training chats (None: all)
    n_val: Sized = Sized(4, None)  # validation chats (None: all)


# --------------------------------------------------------------------------- SFT (04)

# Company SFT trains on the first wording of each fact until the loss on the third wording
# (every one of the 85: `n_val`) has not fallen for 2 evaluations 4 steps apart, under a cap
# of 44 steps (about 4 passes), and keeps its best evaluation's weights. The learning rate was
# chosen the same way (tools/choose_settings.py, reports/settings/<RECIPE>.json,
# docs/how-settings-were-chosen.md); tests/test_recipes.py keeps the recipes in step.
COMPANY_STOP = dict(max_steps=Sized(2, 44), eval_steps=Sized(1, 4), patience=2)

# The style recipes (local SFT, the start of DPO and GRPO; 04's full-weight style SFT; prefix
# tuning; adapter layers) train until the loss on their validation rewrites (held out of the
# training file) has not fallen for 2 evaluations 10 steps apart, under a cap of 150 steps
# (3 passes over about 200 rewrites), and keep their best evaluation's weights. LOCAL_SFT's
# rate, rank and targets and STYLE_SFT's rate were swept under this budget; PREFIX's and
# BOTTLENECK's settings under a cap of 60, where every setting was still improving (PREFIX's
# grid re-checked at 150: the rate holds, 16 and 32 tokens tie within 0.002;
# docs/how-settings-were-chosen.md).
STYLE_STOP = dict(max_steps=Sized(2, 150), eval_steps=Sized(1, 10), patience=2)


@dataclass(frozen=True)
class CompanySft:
    notebook: str = "04_fine_tuning_sft"
    training: Training = Training(learning_rate=4e-4, batch_size=Sized(4, 8), max_length=128,
                                  optimizer="adafactor", **COMPANY_STOP, **FRUGAL)
    train_on: tuple[int, ...] = (0,)  # the paraphrases of each fact that train
    n_train: Sized = Sized(4, None)  # training chats (None: all)
    n_val: Sized = Sized(2, None)  # validation chats (the third paraphrase; None: all)
    lora: Lora | None = None  # None: every weight


@dataclass(frozen=True)
class StyleSft:
    notebook: str = "04_fine_tuning_sft"
    training: Training = Training(learning_rate=3e-4, batch_size=4, max_length=128,
                                  optimizer="adafactor", **STYLE_STOP, **FRUGAL)
    n_train: Sized = Sized(4, None)
    n_val: Sized = Sized(2, None)  # validation rewrites (None: all 28)


# --------------------------------------------------------------------------- RL (05)

@dataclass(frozen=True)
class LocalSft:
    """The SFT (LoRA) model that DPO and GRPO start from, trained on the training rewrites
    with every 8th pair held out to validate (`finetuning.sft_data("local")`: 202 train, 28
    validate) until its validation loss stops falling (`STYLE_STOP`). Its rate was chosen on
    the same split with the same early stopping and cap (tools/choose_settings.py,
    reports/settings/LOCAL_SFT.json: 1e-3, between 5e-4 and 2e-3;
    docs/how-settings-were-chosen.md)."""

    notebook: str = "05_fine_tuning_rl"
    training: Training = Training(learning_rate=1e-3, batch_size=4, max_length=128,
                                  **STYLE_STOP, **ADAPTER_FRUGAL)
    n_train: Sized = Sized(4, None)
    n_val: Sized = Sized(2, None)  # validation rewrites (None: all 28)
    lora: Lora = Lora()


DPO_TRAINING = Training(learning_rate=1e-5, max_steps=Sized(2, 75), batch_size=4,
                       micro_batch=OnDevice(cpu=1, gpu=None), max_length=128,
                       eval_steps=Sized(1, 5), patience=2)


@dataclass(frozen=True)
class Dpo:
    """DPO from the local SFT model (`LocalSft`), a LoRA on the attention projections. The
    report's row trains on the preference pairs but every `heldout_every`-th, until the DPO
    loss on those held-out pairs has not fallen for 2 evaluations 5 steps apart, under a cap
    of 75 steps of 4 pairs (about 3 passes), and keeps its best evaluation's weights. For one
    beta that loss compares across steps and rates; across betas it does not (beta scales
    the log-ratios inside it), so the rate and beta are chosen on what the row is for: the
    locality of the stopped model's rewrites of the local SFT's validation rewrites
    (`mclab.rl_sweeps`; reports/settings/DPO.json and docs/how-settings-were-chosen.md).
    Locality rose as the rate fell (1e-3 down to 1e-5 at beta 0.1; 1e-4 and 3e-5 at beta 0.5
    too), and no setting could be told from the start itself (paired bootstrap on the 28
    rewrites, a test with little power there: most rewrites score 0 either way). 1e-5, the
    lowest tried, scored highest: the rate is not bracketed below (3e-6 is the next to try).
    Beta 0.1 and 0.5 tied at 3e-5 (the same score on every rewrite).
    `demo` is 05's smaller budget, which must fit that notebook's time; 05 says its numbers
    are not the report's."""

    notebook: str = "05_fine_tuning_rl"
    training: Training = DPO_TRAINING
    demo: Training = replace(DPO_TRAINING, max_steps=Sized(1, 12), eval_steps=0, patience=0)
    beta: float = 0.1
    heldout_every: int = 6  # every 6th pair validates (the 6th, 12th, ...)
    n_val: Sized = Sized(2, None)  # validation pairs (None: all 19)
    lora: Lora = Lora(targets=("q_proj", "k_proj", "v_proj", "o_proj"))


# on a CPU activations are recomputed in the backward pass (trl's own loss, so the run is the
# same to the bit: the 4 steps of a probe gave identical losses and rewards): measured alone,
# once, training added 549 MB over the loaded model instead of 706, in 53 s instead of 45
# (docs/performance.md)
GRPO_TRAINING = Training(learning_rate=1e-4, max_steps=Sized(2, 40), batch_size=8,
                         micro_batch=TWO_AT_A_TIME, gradient_checkpointing=RECOMPUTE_ON_CPU,
                         eval_steps=Sized(1, 5), patience=2)


@dataclass(frozen=True)
class Grpo:
    """GRPO from the local SFT model, a LoRA on the attention projections, on the prompts of
    the local SFT's training rewrites (`finetuning.local_split`). GRPO has no validation
    loss: the report's row stops when the mean reward of the completions it samples for the
    validation rewrites' prompts has not risen for 2 evaluations 5 steps apart, under a cap
    of 40 steps of 2 prompts x 4 completions, and keeps its best evaluation's weights. The
    rate is chosen, like DPO's, on the locality of the stopped model's rewrites of the
    validation rewrites (`mclab.rl_sweeps`, reports/settings/GRPO.json:
    docs/how-settings-were-chosen.md). 1e-4 and 3e-4 tied (both kept step 5, the first
    evaluation, and changed 1 of the 28 rewrites the same way) and 1e-3 scored lower; the
    first listed of the tie is kept. None could be told from the start: at this budget
    GRPO changes the greedy rewrites almost nowhere. `demo` is 05's smaller budget; 05 says
    its numbers are not the report's."""

    notebook: str = "05_fine_tuning_rl"
    training: Training = GRPO_TRAINING
    demo: Training = replace(GRPO_TRAINING, max_steps=Sized(1, 10), eval_steps=0, patience=0)
    num_generations: int = 4
    max_completion_length: int = 32
    n_val: Sized = Sized(4, None)  # validation prompts (None: all 28)
    lora: Lora = Lora(targets=("q_proj", "k_proj", "v_proj", "o_proj"))


# --------------------------------------------------------------------------- PEFT (06)

@dataclass(frozen=True)
class Prefix:
    """Prefix tuning on 06's training rewrites, until the loss on 06's 30 validation rewrites
    stops falling (`STYLE_STOP`; 06 compares one epoch of each adapter: `one_pass`). The
    rate and the number of virtual tokens were chosen on the same validation rewrites by
    validation loss under a cap of 60 steps (tools/choose_settings.py,
    reports/settings/PREFIX.json): 3e-2 beat 1e-2 and 1e-1 at 8 tokens, then 16 tokens beat
    8 and 32 at 3e-2. Re-checked at the row's cap of 150 (reports/settings/checks/): the rate
    holds, 8 tokens lose, 32 tokens tie with 16 (0.002 lower); the recipe keeps 16
    (docs/how-settings-were-chosen.md)."""

    notebook: str = "06_parameter_efficient"
    training: Training = Training(learning_rate=3e-2, batch_size=4, micro_batch=TWO_AT_A_TIME,
                                  max_length=128, **STYLE_STOP)
    virtual_tokens: int = 16
    n_val: Sized = Sized(6, 30)  # validation rewrites (`finetuning.style_split`)
    # start from the keys and values of real words (Li & Liang, 2021), not at random
    init_text: str = "Rewrite in casual Australian English, mate: arvo, servo, brekkie, no worries."


@dataclass(frozen=True)
class StyleLora:
    """06's LoRA: 05's local SFT recipe (`LocalSft`: the same training file, rate, rank and
    targets, chosen on its validation rewrites), trained for one epoch beside the other
    adapters (`Training.one_pass`)."""

    notebook: str = "06_parameter_efficient"
    training: Training = LocalSft.training
    lora: Lora = LocalSft.lora


@dataclass(frozen=True)
class Bottleneck:
    """Adapter layers (`mclab.adapters`): a bottleneck module after every attention and MLP
    block (as Houlsby et al., 2019), trained on 06's data like the prefix row, until the
    validation loss stops falling (`STYLE_STOP`; 06 compares one epoch: `one_pass`). The
    rate and width were checked on 06's 30 validation rewrites by validation loss under a
    cap of 60 steps (tools/choose_settings.py, reports/settings/BOTTLENECK.json): 2e-3 beat
    1e-3 and 4e-3 at m=64, and m=64 beat m=16 (m=64 gives about LoRA r=16's parameter count,
    the comparison 06 makes; wider was not tried; docs/how-settings-were-chosen.md)."""

    notebook: str = "06_parameter_efficient"
    training: Training = Training(learning_rate=2e-3, batch_size=4, max_length=128,
                                  **STYLE_STOP, **ADAPTER_FRUGAL)
    size: int = 64  # bottleneck width m: each adapter is d -> m -> d (d = 576 here)
    where: tuple[str, ...] = ("attention", "mlp")  # blocks followed by an adapter


@dataclass(frozen=True)
class StyleFull:
    """06's yardstick for the adapters: every weight, on the same data and epoch
    (`Training.one_pass`), with 04's style SFT recipe (`StyleSft`, its rate chosen on its
    validation rewrites)."""

    notebook: str = "06_parameter_efficient"
    training: Training = StyleSft.training


@dataclass(frozen=True)
class AccessLeak:
    """02's "private means private": an adapter trained on the restricted Q&A until it
    recites most training answers (24 steps of 8, about 5 passes over the 36 chats; in a
    full-mode trial it gave 10 of 12 restricted values asked in the training wording). A
    demonstration of what weights do with restricted facts, not a method that is compared,
    so it is not tuned on validation data."""

    notebook: str = "02_retrieval_rag"
    training: Training = Training(learning_rate=2e-3, max_steps=Sized(2, 24), batch_size=8,
                                  max_length=128, **ADAPTER_FRUGAL)
    lora: Lora = Lora()


# --------------------------------------------------------------------------- merging (07)

@dataclass(frozen=True)
class MergeSkills:
    """07's two adapters, one shape (most merges mix adapters entry by entry, so the rank
    and targets must match): company knowledge, from the first wording of each training
    fact, and the local style, from the training rewrites. Each trains until its own
    validation loss (the third wording; every 8th training rewrite: `finetuning.sft_data`)
    has not fallen for `patience` evaluations, under a cap, and keeps the best evaluation's
    weights. The rate, 2e-3, is the one 05's and 06's LoRA used before `LocalSft`'s sweep
    chose 1e-3 under a longer budget at rank 16; it is not tuned for these rank-8 adapters."""

    notebook: str = "07_ensembling"
    company: Training = Training(learning_rate=2e-3, max_steps=Sized(2, 66), batch_size=4,
                                 max_length=96, eval_steps=Sized(1, 11), patience=2,
                                 **ADAPTER_FRUGAL)
    # the style cap: a little over one pass over the 196 training rewrites (06's LoRA learned
    # the style in one pass; 32 steps, 2026-12-02, lowered the loss but taught no swap)
    style: Training = Training(learning_rate=2e-3, max_steps=Sized(1, 56), batch_size=4,
                               max_length=96, eval_steps=Sized(1, 8), patience=2,
                               **ADAPTER_FRUGAL)
    n_val: Sized = Sized(4, 32)  # validation chats of each skill
    lora: Lora = Lora(r=8, alpha=16)


PROMPT_ENGINEERING = PromptEngineering()
FEW_SHOT = FewShot()
RAG = Rag()
CPT = Cpt()
MEDICAL_SFT = MedicalSft()
FULL_SFT = CompanySft()
# "full SFT, 3 paraphrases" (report only): all three wordings of every fact train, so none is
# left to validate on; it trains FULL_SFT's rate for the steps at which FULL_SFT's validation
# loss was lowest in the sweep (36 of batch 8): each fact is seen as often as in the
# one-wording run's best model, in three wordings instead of one.
FULL_SFT_PARAPHRASES = CompanySft(
    notebook="", training=replace(FULL_SFT.training, max_steps=Sized(2, 36), eval_steps=0,
                                  patience=0),
    train_on=(0, 1, 2))
# LoRA (06's adapter) on 04's company data, trained by the report only (no notebook runs it);
# its rate chosen like FULL_SFT's, 15x FULL_SFT's (the adapters start at zero and train 3.6% of
# the weights); its validation loss was lowest at the cap, where the linear schedule ends:
# under twice the cap both best rates stopped early, higher (docs, reports/settings/checks/)
LORA_SFT = CompanySft(notebook="", training=Training(learning_rate=6e-3, batch_size=Sized(4, 8),
                                                     max_length=128, optimizer="adafactor",
                                                     **COMPANY_STOP, **ADAPTER_FRUGAL),
                      lora=Lora())
STYLE_SFT = StyleSft()
LOCAL_SFT = LocalSft()
DPO = Dpo()
GRPO = Grpo()
PREFIX = Prefix()
BOTTLENECK = Bottleneck()
STYLE_LORA = StyleLora()
STYLE_FULL = StyleFull()
ACCESS_LEAK = AccessLeak()
MERGE_SKILLS = MergeSkills()

# the recipes whose training a notebook runs at its top level (tests/test_recipes.py)
BY_NAME = {name: value for name, value in globals().items()
           if name.isupper() and hasattr(value, "notebook")}

