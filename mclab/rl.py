"""Fine-tuning from feedback signals: DPO on preference pairs, GRPO on a written reward.

Both go through the shared training core `mclab.training.fit`, with a
LoRA adapter by default: with peft the reference model of DPO is the same network with
the adapter switched off, so no second copy of the model is kept in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .evaluation import answer_logprobs, lexicon_hits
from .generation import new_token_budget, to_messages
from .measure import release_memory  # noqa: F401  (notebooks import it from here)
from .training import TrainConfig, TrainingInputError, TrainResult, fit


# ---------------------------------------------------------------- preference data (DPO)

def preference_example(prompt: str, chosen: str, rejected: str, system: str | None = None) -> dict:
    """One preference pair in trl's conversational form."""
    return {"prompt": to_messages(prompt, system),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def _text(turns) -> str:
    if isinstance(turns, str):
        return turns
    return " ".join(str(t.get("content", "")) for t in turns or [])


def check_preference_rows(dataset) -> None:
    """Every pair needs a prompt and two different, non-empty replies."""
    if dataset is None or len(dataset) == 0:
        raise TrainingInputError("the preference dataset is empty; give it at least one pair")
    missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise TrainingInputError(
            f"preference rows need 'prompt', 'chosen' and 'rejected'; missing {sorted(missing)}. "
            "Build them with mclab.rl.preference_example().")
    for i, row in enumerate(dataset):
        chosen, rejected = _text(row["chosen"]).strip(), _text(row["rejected"]).strip()
        if not _text(row["prompt"]).strip():
            raise TrainingInputError(f"pair {i} has an empty prompt")
        if not chosen or not rejected:
            raise TrainingInputError(f"pair {i} has an empty 'chosen' or 'rejected' reply")
        if chosen == rejected:
            raise TrainingInputError(
                f"pair {i}: 'chosen' equals 'rejected' ({chosen[:60]!r}); a preference pair "
                "needs two different replies, or it teaches nothing")


def preference_dataset(rows, system: str | None = None):
    """A `datasets.Dataset` of checked pairs from rows with prompt, chosen, rejected."""
    from datasets import Dataset

    rows = list(rows)
    dataset = Dataset.from_list([preference_example(r["prompt"], r["chosen"], r["rejected"], system)
                                 for r in rows]) if rows else Dataset.from_list([])
    check_preference_rows(dataset)
    return dataset


def preference_split(rows, heldout_every: int = 6, system: str | None = None):
    """(training pairs, held-out pairs): every `heldout_every`-th pair is held out."""
    pairs = preference_dataset(rows, system)
    held = set(range(heldout_every - 1, len(pairs), heldout_every))
    return (pairs.select([i for i in range(len(pairs)) if i not in held]),
            pairs.select(sorted(held)))


def _check_beta(beta: float) -> None:
    if not beta > 0:
        raise TrainingInputError(
            f"beta must be positive, got {beta}; it weighs how far the policy may move from the "
            "reference (0.1 is the usual start)")


# What a notebook sees drawn while DPO / GRPO train: keys trl 1.16 logs (dpo_trainer.py and
# grpo_trainer.py, `_metrics`). GRPO logs "kl" only with beta > 0 (the reference model).
DPO_CURVES = ("loss", "rewards/margins", "rewards/accuracies")
GRPO_CURVES = ("reward", "reward_std", "kl")


def train_dpo(model, tokenizer, dataset, cfg: TrainConfig | None = None, beta: float = 0.1,
              peft_config=None, eval_dataset=None) -> TrainResult:
    """Direct preference optimization with trl's DPOTrainer, through the shared core (`fit`).

    With a `peft_config` (LoRA) the reference model is the same network with the adapter
    disabled, i.e. the model as it was passed in; the adapter is saved in the run folder.
    `cfg.micro_batch` pairs go through the model at a time (gradients accumulate up to
    `cfg.batch_size`): activation memory grows with it, the result does not change.
    """
    from trl import DPOConfig, DPOTrainer

    cfg = cfg or TrainConfig(learning_rate=5e-5, run_name="dpo")
    cfg.validate()
    _check_beta(beta)
    check_preference_rows(dataset)
    if eval_dataset is not None:
        check_preference_rows(eval_dataset)
    return fit(DPOTrainer, DPOConfig, model, tokenizer, dataset, cfg, eval_dataset=eval_dataset,
               peft_config=peft_config, args={"beta": beta, "max_length": cfg.max_length},
               curves=DPO_CURVES)


def dpo_loss(margins, beta: float) -> float:
    """The DPO loss, -log sigmoid(beta * margin), averaged over log-ratio margins.

    A margin is (log pi/pi_ref of the chosen reply) - (log pi/pi_ref of the rejected one).
    """
    _check_beta(beta)
    z = beta * np.asarray(margins, dtype=float)
    return float(np.mean(np.logaddexp(0.0, -z)))


# ---------------------------------------------------------------- rewards (GRPO)

def completion_text(completion) -> str:
    """The text of a trl completion: a string, or a list of chat messages."""
    return _text(completion).strip()


def _words(text: str) -> int:
    return len(re.findall(r"[\w']+", text))


@dataclass
class RewardWeights:
    """How much each part of the reward counts (the GRPO reward is their weighted sum)."""

    style: float = 1.0  # uses at least one phrase of the local lexicon
    meaning: float = 1.0  # keeps the meaning of the neutral sentence (embedding similarity)
    brevity: float = 0.5  # stays about as short as the sentence it rewrites

    def as_list(self) -> list[float]:
        for name, value in self.__dict__.items():
            if value < 0:
                raise TrainingInputError(f"reward weight {name} must be >= 0, got {value}")
        if not any(self.__dict__.values()):
            raise TrainingInputError("at least one reward weight must be positive")
        return [self.style, self.meaning, self.brevity]


def style_reward(completions, lexicon) -> list[float]:
    """1 when a completion uses a lexicon phrase, else 0.

    Looser than the locality score, which credits only a phrase that replaces words of the
    source (appending ", mate" earns this reward but no locality). Kept as it is: the
    report's GRPO row was trained with this reward, and notebook 05 shows the difference.
    """
    return [1.0 if lexicon_hits(completion_text(c), lexicon) else 0.0 for c in completions]


def brevity_reward(completions, sources) -> list[float]:
    """1 up to 1.5x the source's word count, falling linearly to 0 at 3x."""
    rewards = []
    for c, source in zip(completions, sources):
        n, limit = _words(completion_text(c)), 1.5 * max(1, _words(source))
        rewards.append(float(np.clip(1.0 - (n - limit) / limit, 0.0, 1.0)) if n else 0.0)
    return rewards


def meaning_reward(completions, references, embedder) -> list[float]:
    """Cosine similarity between each completion and a reference text (0..1)."""
    texts = [completion_text(c) or "." for c in completions]
    a = embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    b = embedder.encode(list(references), normalize_embeddings=True, convert_to_numpy=True)
    return [float(s) for s in np.clip((a * b).sum(axis=1), 0.0, 1.0)]


def make_reward_funcs(lexicon, embedder, source_field: str = "neutral",
                      reference_field: str = "local") -> list:
    """The three reward functions in trl's signature (prompts, completions, **columns).

    Each prompt row carries its neutral sentence (`source_field`, for the length budget)
    and the training set's reference rewrite (`reference_field`, for the meaning).
    This reward is not the locality score, and it stays as it was when the report's GRPO
    row was trained: changing it would make that row a run of code that no longer exists.
    """
    lexicon = list(lexicon)

    def style(prompts, completions, **kwargs):
        return style_reward(completions, lexicon)

    def meaning(prompts, completions, **kwargs):
        return meaning_reward(completions, kwargs[reference_field], embedder)

    def brevity(prompts, completions, **kwargs):
        return brevity_reward(completions, kwargs[source_field])

    return [style, meaning, brevity]


def total_reward(completions, sources, references, lexicon, embedder,
                 weights: RewardWeights) -> np.ndarray:
    """The weighted reward of each completion, as GRPO sums it."""
    w = weights.as_list()
    parts = [style_reward(completions, lexicon), meaning_reward(completions, references, embedder),
             brevity_reward(completions, sources)]
    return sum(wi * np.asarray(p) for wi, p in zip(w, parts))


def group_advantages(rewards, n_generations: int) -> np.ndarray:
    """GRPO's advantage: each reward minus its group's mean, over the group's std."""
    rewards = np.asarray(rewards, dtype=float)
    if n_generations < 2 or len(rewards) % n_generations:
        raise ValueError(f"need groups of >= 2 generations that divide {len(rewards)} rewards, "
                         f"got {n_generations}")
    groups = rewards.reshape(-1, n_generations)
    std = groups.std(axis=1, ddof=1, keepdims=True)
    return ((groups - groups.mean(axis=1, keepdims=True)) / (std + 1e-4)).reshape(-1)


def rewrite_prompts(rows, prompt_fn, system: str | None = None):
    """GRPO prompts (chat messages) from rewrite rows, keeping `neutral` and `local` for the rewards."""
    from datasets import Dataset

    rows = [{"prompt": to_messages(prompt_fn(r["neutral"]), system),
             "neutral": r["neutral"], "local": r["local"]} for r in rows]
    if not rows:
        raise TrainingInputError("the GRPO prompt set is empty; give it at least one prompt")
    return Dataset.from_list(rows)


def train_grpo(model, tokenizer, prompts, reward_funcs, cfg: TrainConfig | None = None,
               num_generations: int = 4, max_completion_length: int = 32,
               reward_weights: list[float] | None = None, beta: float = 0.0,
               temperature: float = 1.0, peft_config=None, eval_prompts=None) -> TrainResult:
    """Group relative policy optimization with trl's GRPOTrainer, on the CPU-safe settings.

    `cfg.batch_size` counts completions per step, so it must be a multiple of
    `num_generations` (batch 8 with 4 generations: 2 prompts a step). `cfg.micro_batch`
    completions are trained on at a time (gradient accumulation), which bounds memory.
    GRPO has no validation loss to stop on: with `eval_prompts` (prompts it never trains on)
    and `cfg.patience`, it stops when the mean reward of the completions it samples for them
    (trl's `eval_reward`) has not risen for `patience` evaluations, and keeps the weights of
    the best one.
    """
    from trl import GRPOConfig, GRPOTrainer

    cfg = cfg or TrainConfig(learning_rate=1e-4, batch_size=8, run_name="grpo")
    cfg.validate()
    if prompts is None or len(prompts) == 0:
        raise TrainingInputError("the GRPO prompt set is empty; give it at least one prompt")
    if num_generations < 2:
        raise TrainingInputError(
            f"num_generations must be >= 2 (got {num_generations}): GRPO compares each "
            "completion with the others drawn for the same prompt")
    if cfg.batch_size % num_generations:
        raise TrainingInputError(
            f"batch_size {cfg.batch_size} must be a multiple of num_generations "
            f"{num_generations}; try batch_size={2 * num_generations}")
    if reward_weights is not None and len(reward_weights) != len(reward_funcs):
        raise TrainingInputError(f"{len(reward_weights)} reward weights for "
                                 f"{len(reward_funcs)} reward functions")
    if beta < 0:
        raise TrainingInputError(f"beta (the KL weight) must be >= 0, got {beta}")
    if eval_prompts is not None and len(eval_prompts) == 0:
        raise TrainingInputError("the GRPO validation prompt set is empty; give it prompts "
                                 "the run does not train on, or none")
    return fit(GRPOTrainer, GRPOConfig, model, tokenizer, prompts, cfg, peft_config=peft_config,
               eval_dataset=eval_prompts, stop_on=("eval_reward", True),
               args=dict(num_generations=num_generations,
                         max_completion_length=new_token_budget(max_completion_length),
                         reward_weights=reward_weights, beta=beta, temperature=temperature,
                         log_completions=False),
               curves=GRPO_CURVES, reward_funcs=reward_funcs)


# ---------------------------------------------------------------- looking inside DPO

def preference_margins(peft_model, tokenizer, dataset) -> np.ndarray:
    """Per pair: log pi/pi_ref(chosen) - log pi/pi_ref(rejected), pi_ref = adapter disabled.

    beta times this margin is the difference of DPO's implicit rewards: a positive margin
    means the trained policy ranks the pair the way the human label does.
    """
    check_preference_rows(dataset)
    rows = list(dataset)
    prompts = [r["prompt"] for r in rows for _ in ("chosen", "rejected")]
    replies = [_text(r[k]) for r in rows for k in ("chosen", "rejected")]
    policy = answer_logprobs(peft_model, tokenizer, prompts, replies)[0].reshape(-1, 2)
    with peft_model.disable_adapter():
        ref = answer_logprobs(peft_model, tokenizer, prompts, replies)[0].reshape(-1, 2)
    ratio = policy - ref
    return ratio[:, 0] - ratio[:, 1]


# ---------------------------------------------------------------- the knobs, without training

def feedback_knobs(margins, samples: dict, lexicon, embedder, beta: float,
                   n_generations: int, weights: RewardWeights):
    """What DPO and GRPO would see at these settings, computed from saved outputs.

    Args:
        margins: held-out log-ratio margins of the trained DPO model (`preference_margins`).
        samples: {source sentence: (reference rewrite, [sampled rewrites])} from the policy.
    Returns (DPO summary dict, GRPO table as a DataFrame).
    """
    import pandas as pd

    _check_beta(beta)
    margins = np.asarray(margins, dtype=float)
    dpo = {"beta": beta, "DPO loss": dpo_loss(margins, beta),
           "loss at the reference (log 2)": float(np.log(2)),
           "mean implicit reward margin": float(np.mean(beta * margins)),
           "held-out reward accuracy": float(np.mean(margins > 0))}
    rows = []
    for source, (reference, outputs) in samples.items():
        if n_generations > len(outputs):
            raise ValueError(f"only {len(outputs)} samples per prompt were drawn; choose "
                             f"at most that many generations")
        group = outputs[:n_generations]
        n = len(group)
        reward = total_reward(group, [source] * n, [reference] * n, lexicon, embedder, weights)
        adv = group_advantages(reward, n_generations)
        rows += [{"prompt": source[:40], "completion": c, "reward": round(float(r), 3),
                  "advantage": round(float(a), 2)} for c, r, a in zip(group, reward, adv)]
    return dpo, pd.DataFrame(rows)


def feedback_panel(margins, samples: dict, lexicon, embedder):
    """Sliders for beta, generations per prompt and the reward weights (no retraining)."""
    import ipywidgets as w
    from IPython.display import display

    from .widgets import panel

    controls = {
        "beta": w.FloatLogSlider(value=0.1, base=10, min=-2, max=0, step=0.1, description="beta"),
        "n_gen": w.IntSlider(value=4, min=2, max=min(len(v[1]) for v in samples.values()),
                             description="generations"),
        **{name: w.FloatSlider(value=getattr(RewardWeights(), name), min=-0.5, max=2.0, step=0.1,
                               description=f"w_{name}")
           for name in ("style", "meaning", "brevity")},
    }

    def compute(beta, n_gen, **weights):
        return feedback_knobs(margins, samples, lexicon, embedder, beta, n_gen,
                              RewardWeights(**weights))

    def render(result, _values):
        dpo, table = result
        print("DPO on held-out pairs: " + " · ".join(f"{k} {v:.3f}" for k, v in dpo.items()))
        display(table)

    return panel(controls, compute, render,
                 layout=[["beta", "n_gen"], ["style", "meaning", "brevity"]])


def locality_of(model, tokenizer, embedder, sets: dict):
    """Locality of a model's rewrites of the held-out sentences: (LocalityResult, outputs)."""
    from .evaluation import locality_score
    from .scorecard import rewrite_local

    local_eval = sets["local_eval"]
    outputs = rewrite_local(model, tokenizer, local_eval["neutral"])
    return locality_score(outputs, local_eval["neutral"], sets["lexicon"], embedder), outputs


def sample_rewrites(model, tokenizer, rows, n: int = 6, temperature: float = 1.0,
                    max_new_tokens: int = 32, seed: int = 0) -> dict:
    """{neutral: (reference, n sampled rewrites)}, seeded: what a GRPO group looks like."""
    from .generation import generate
    from .scorecard import local_prompt

    return {r["neutral"]: (r["local"], generate(model, tokenizer, [local_prompt(r["neutral"])] * n,
                                                temperature=temperature, seed=seed,
                                                max_new_tokens=max_new_tokens))
            for r in rows}
