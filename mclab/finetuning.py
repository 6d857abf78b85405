"""Supervised fine-tuning (SFT): chat data, a memory plan for full fine-tuning, and its cost.

SFT trains on (prompt, answer) chats with the loss on the assistant's tokens only, through
the shared path `mclab.training.train_sft`. Full-parameter fine-tuning has to fit a 2 GB
session: `memory_plan` estimates where the memory goes and `PeakMemory` measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .evaluation import KNOWLEDGE_SYSTEM, knowledge_prompt
from .measure import PeakMemory, rss_mb  # noqa: F401  (notebooks import them from here)
from .scorecard import local_prompt
from .training import TrainingInputError, chat_example

SFT_DATASETS = ("company", "local", "medical")


# The paraphrases of each company fact that train and the one that validates, for SFT and
# for CPT's fact sheets (`pretraining.company_corpus`, `pretraining.company_validation`)
TRAIN_WORDINGS = (0, 1)
VALIDATION_WORDING = 2


def split_by_paraphrase(train_qa, held_out: int | None = VALIDATION_WORDING,
                        train_on: tuple[int, ...] = TRAIN_WORDINGS
                        ) -> tuple[list[dict], list[dict]]:
    """Company QA rows split by wording: the `held_out`-th paraphrase of each fact validates.

    Training keeps the paraphrases numbered in `train_on`. The validation rows ask about
    facts the model trains on, in words it never saw, so their loss shows whether it learns
    the fact or memorises the question string. `held_out=None`: no wording validates (every
    wording may train; the budget must then come from a run that had a validation split).
    """
    if held_out is not None and held_out in train_on:
        raise TrainingInputError(f"paraphrase {held_out} cannot both train and validate")
    seen: dict[str, int] = {}
    train, val = [], []
    for row in train_qa:
        k = seen.get(row["fact_id"], 0)
        seen[row["fact_id"]] = k + 1
        if k == held_out:
            val.append(dict(row))
        elif k in train_on:
            train.append(dict(row))
    return train, val


def company_examples(rows) -> list[dict]:
    """QA rows as chats, in the same system prompt and question format the eval asks in."""
    return [chat_example(knowledge_prompt(r["question"]), r["answer"], system=KNOWLEDGE_SYSTEM)
            for r in rows]


def medical_examples(rows) -> list[dict]:
    """Term -> definition chats, in the system prompt and question format the eval asks in."""
    return [chat_example(knowledge_prompt(r["question"]), r["answer"], system=KNOWLEDGE_SYSTEM)
            for r in rows]


def style_examples(rows) -> list[dict]:
    """Rewrite pairs as chats: the fixed rewrite instruction, answered in Australian English."""
    return [chat_example(local_prompt(r["neutral"]), r["local"]) for r in rows]


def style_split(local: dict, n_val: int) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows) of the local rewrites: `n_val` evenly spaced rows
    validate (06 chooses its settings on them); the held-out eval set is never touched."""
    rows = list(local["rewrites_train"])
    val = rows[::max(1, len(rows) // 30)][:n_val]
    val_ids = {r["id"] for r in val}
    return [r for r in rows if r["id"] not in val_ids], val


LOCAL_VAL_EVERY = 8  # every 8th training rewrite validates


def local_split(rows) -> tuple[list, list]:
    """(train, validation) rows of the training rewrites: every `LOCAL_VAL_EVERY`-th pair
    validates, held out from training (the eval set stays untouched). Local SFT trains and
    stops on it; GRPO trains on the same training rows' prompts and stops on the validation
    ones; DPO's and GRPO's settings are chosen on the validation rewrites
    (`mclab.rl_sweeps`)."""
    rows = list(rows)
    last = LOCAL_VAL_EVERY - 1
    return ([r for i, r in enumerate(rows) if i % LOCAL_VAL_EVERY != last],
            [r for i, r in enumerate(rows) if i % LOCAL_VAL_EVERY == last])


def sft_data(name: str, company: dict | None = None, local: dict | None = None,
             n_train: int | None = None, n_val: int | None = None, train_on=TRAIN_WORDINGS):
    """(train, validation) `datasets.Dataset`s of chats for "company" or "local".

    company: QA chats (paraphrases `train_on` train, the third validates unless it trains too:
    then the validation set is empty); local: rewrite
    chats (every 8th training pair validates); medical: term -> definition chats
    (sft_train.jsonl trains, sft_val.jsonl validates). `n_train`/`n_val` keep evenly spaced rows.
    """
    from datasets import Dataset

    from .data import load_scenario, subset

    if name == "company":
        company = company or load_scenario("company")
        # all three wordings train: none validates
        held_out = None if VALIDATION_WORDING in train_on else VALIDATION_WORDING
        train_rows, val_rows = split_by_paraphrase(company["train_qa"], held_out, train_on)
        train, val = company_examples(train_rows), company_examples(val_rows)
    elif name == "local":
        local = local or load_scenario("local")
        train, val = map(style_examples, local_split(local["rewrites_train"]))
    elif name == "medical":  # term -> definition; the eval's terms are in neither file
        medical = load_scenario("medical")
        train, val = (medical_examples(medical[split]) for split in ("sft_train", "sft_val"))
    else:
        raise TrainingInputError(f"unknown SFT dataset {name!r}; choose one of {SFT_DATASETS}")
    return subset(Dataset.from_list(train), n_train), subset(Dataset.from_list(val), n_val)


# ---------------------------------------------------------------------------- memory


# bytes of optimizer state per trainable parameter (fp32), for the plan
OPTIMIZER_STATE_BYTES = {"adamw_torch": 8, "adafactor": 0, "sgd": 0}


def activation_bytes_per_token(config, seq_len: int) -> int:
    """What one token's forward pass keeps for backward, summed over the layers (fp32).

    A rough count of the tensors a Llama block saves: norms, q/k/v, attention output, the
    MLP's gate/up/activation (each `intermediate_size` wide) and the attention weights
    (one row of `seq_len` per head).
    """
    h, inter = config.hidden_size, config.intermediate_size
    kv = h * config.num_key_value_heads // config.num_attention_heads
    per_layer = 8 * h + 3 * kv + 4 * inter + config.num_attention_heads * seq_len
    return 4 * per_layer * config.num_hidden_layers


@dataclass
class MemoryPlan:
    weights_mb: float
    gradients_mb: float
    optimizer_mb: float
    activations_mb: float
    logits_mb: float

    @property
    def total_mb(self) -> float:
        return sum(self.__dict__.values())

    def as_dict(self) -> dict:
        return {**{k: round(v) for k, v in self.__dict__.items()}, "total_mb": round(self.total_mb)}


def memory_plan(model, optimizer: str, batch_size: int, seq_len: int) -> MemoryPlan:
    """Estimate the training memory of full fine-tuning (not counting Python and libraries).

    Adafactor keeps factored second moments (a row and a column vector per matrix) and, as
    transformers configures it by default, no momentum: its state is a few MB.
    """
    if optimizer not in OPTIMIZER_STATE_BYTES:
        raise ValueError(f"no plan for optimizer {optimizer!r}; "
                         f"one of {list(OPTIMIZER_STATE_BYTES)}")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tokens = batch_size * seq_len
    mb = 2**20
    return MemoryPlan(
        weights_mb=4 * total / mb,
        gradients_mb=4 * trainable / mb,
        optimizer_mb=OPTIMIZER_STATE_BYTES[optimizer] * trainable / mb,
        activations_mb=tokens * activation_bytes_per_token(model.config, seq_len) / mb,
        # logits, their log-softmax and their gradient: three (tokens x vocabulary) tensors
        logits_mb=3 * 4 * tokens * model.config.vocab_size / mb,
    )


# ---------------------------------------------------------------------------- widget


def sft_panel(run, default: dict | None = None, learning_rate: float = 3e-5,
              epochs: float = 1.0, dataset: str = "company"):
    """Learning rate, epochs and dataset knobs; "Train" calls `run(**knobs)`."""
    import ipywidgets as w

    from .widgets import training_panel

    controls = {
        "learning_rate": w.FloatLogSlider(value=learning_rate, base=10, min=-6, max=-3,
                                          step=0.25, description="learning rate",
                                          readout_format=".1e"),
        "epochs": w.FloatSlider(value=epochs, min=0.25, max=3, step=0.25, description="epochs"),
        "dataset": w.Dropdown(options=list(SFT_DATASETS), value=dataset, description="dataset"),
    }
    return training_panel(run, controls, default)
