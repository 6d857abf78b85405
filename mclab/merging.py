"""Merging LoRA adapters trained for different skills into one adapter, with peft.

`merge` checks its input, then calls peft's `add_weighted_adapter`; the result is one more
adapter on the same model, so one forward pass per answer. The combinations taught in 07:

- "cat": stack the adapters' low-rank factors; the update is exactly sum_i w_i * dW_i
  (rank: the sum of the ranks). The reference the others approximate.
- "linear": the weighted sum of the factors, A = sum sqrt(w_i s_i) A_i and likewise B, so
  the update B A also holds cross terms B_i A_j (i != j) that neither adapter learned.
- "ties" (Yadav et al., 2023): keep each factor's largest `density` share of entries, elect
  a sign per entry (the sign of the weighted total) and average the entries that agree.
- "dare_linear", "dare_ties" (Yu et al., 2024): drop a random 1 - `density` share of
  entries and rescale the rest by 1 / `density`, then sum (or elect signs as in TIES).

The factor-wise combinations ("linear", "ties", "dare_*") mix A with A and B with B module
by module, so the adapters must have the same rank and the same target modules.
`interference` measures how much two adapters' updates overlap: where they collide, a
merge has to give up part of one or the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

COMBINATIONS = ("cat", "linear", "ties", "dare_linear", "dare_ties")
FACTORWISE = ("linear", "ties", "dare_linear", "dare_ties")  # same rank and targets needed
PRUNING = ("ties", "dare_linear", "dare_ties")  # these need a density
SIGN_METHODS = ("total", "frequency")


class MergeError(ValueError):
    """Adapters or settings that cannot be merged; raised before anything is built."""


@dataclass(frozen=True)
class MergeSpec:
    """One way to merge: peft's combination type and its settings."""

    combination: str  # one of COMBINATIONS
    weights: tuple[float, ...]  # one per adapter, in the order the adapters are given
    density: float | None = None  # share of entries kept (ties, dare_*); None otherwise
    majority_sign_method: str = "total"  # ties, dare_ties: sign elected by sum or by count

    @property
    def label(self) -> str:
        """A short name for tables, e.g. "ties (1, 1; density 0.5)"."""
        weights = ", ".join(f"{w:g}" for w in self.weights)
        density = "" if self.density is None else f"; density {self.density:g}"
        return f"{self.combination} ({weights}{density})"


def _config(peft_model, name: str):
    if name not in peft_model.peft_config:
        raise MergeError(f"no adapter named {name!r}; loaded: {list(peft_model.peft_config)}")
    config = peft_model.peft_config[name]
    if getattr(config, "peft_type", None) is None or config.peft_type.value != "LORA":
        raise MergeError(f"adapter {name!r} is {config.peft_type}, not LoRA: only LoRA adapters "
                         "merge with add_weighted_adapter")
    return config


def check_merge(peft_model, names, spec: MergeSpec) -> None:
    """Raise `MergeError` with the reason if `spec` cannot merge the adapters `names`."""
    names = list(names)
    if spec.combination not in COMBINATIONS:
        raise MergeError(f"unknown combination type {spec.combination!r}; choose one of "
                         f"{list(COMBINATIONS)}")
    if len(names) < 2:
        raise MergeError(f"merging needs at least 2 adapters, got {len(names)}")
    configs = [_config(peft_model, n) for n in names]
    weights = list(spec.weights)
    if (len(weights) != len(names) or not all(math.isfinite(float(w)) for w in weights)
            or not any(weights)):
        raise MergeError(f"weights must be {len(names)} finite numbers, not all zero; "
                         f"got {list(spec.weights)}")
    if spec.combination in PRUNING:
        if spec.density is None or not 0 < spec.density <= 1:
            raise MergeError(f"{spec.combination} keeps a share `density` of each adapter's "
                             f"entries: give a number in (0, 1], got {spec.density}")
    elif spec.density is not None:
        raise MergeError(f"{spec.combination} prunes nothing, so it takes no density "
                         f"(got {spec.density}); use ties or dare_* to prune")
    if spec.majority_sign_method not in SIGN_METHODS:
        raise MergeError(f"majority_sign_method must be one of {list(SIGN_METHODS)}, "
                         f"got {spec.majority_sign_method!r}")
    if spec.combination in FACTORWISE:
        ranks = {n: c.r for n, c in zip(names, configs)}
        if len(set(ranks.values())) > 1 or any(c.rank_pattern for c in configs):
            raise MergeError(f"{spec.combination} mixes the adapters' factors entry by entry, "
                             f"so they need the same rank; got ranks {ranks}. Use 'cat' for "
                             "adapters of different ranks")
        targets = {n: c.target_modules if isinstance(c.target_modules, str)
                   else sorted(c.target_modules) for n, c in zip(names, configs)}
        if len({str(t) for t in targets.values()}) > 1:
            raise MergeError(f"{spec.combination} mixes the adapters module by module, so "
                             f"they need the same target modules; got {targets}")


def merge(peft_model, names, spec: MergeSpec, merged_name: str = "merged", seed: int = 0):
    """Add the adapter `merged_name` = `spec` applied to the adapters `names`, and use it.

    An adapter already called `merged_name` is replaced (peft would silently keep the old
    one). DARE drops entries at random: `seed` makes that draw repeatable, without touching
    the global random state.
    """
    names = list(names)
    check_merge(peft_model, names, spec)
    if merged_name in names:
        raise MergeError(f"the merged adapter cannot reuse the name of an input ({merged_name!r})")
    if merged_name in peft_model.peft_config:
        if peft_model.active_adapter == merged_name:
            peft_model.set_adapter(names[0])
        peft_model.delete_adapter(merged_name)
    extra = {}
    if spec.combination in PRUNING:
        extra = {"density": spec.density, "majority_sign_method": spec.majority_sign_method}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model.add_weighted_adapter(names, [float(w) for w in spec.weights], merged_name,
                                        combination_type=spec.combination, **extra)
    peft_model.set_adapter(merged_name)
    return peft_model


def lora_layers(peft_model, name: str) -> dict:
    """{module path: LoRA layer} for every module that adapter `name` changes."""
    return {path: module for path, module in peft_model.named_modules()
            if hasattr(module, "get_delta_weight") and name in getattr(module, "lora_A", {})}


@torch.no_grad()
def interference(peft_model, a: str, b: str, top: float = 0.2) -> dict:
    """How two adapters' weight updates collide, over every module both change.

    cosine: of the flattened updates dW_a and dW_b (0: unrelated directions);
    overlap: share of entries in the top `top` by magnitude of BOTH updates;
    sign_conflict: among those, the share where the two disagree in sign (where a plain sum
    cancels and TIES has to drop one side).
    """
    if not 0 < top <= 1:
        raise MergeError(f"top must be a share in (0, 1], got {top}")
    layers_a, layers_b = lora_layers(peft_model, a), lora_layers(peft_model, b)
    shared = [p for p in layers_a if p in layers_b]
    if not shared:
        raise MergeError(f"adapters {a!r} and {b!r} change no module in common")
    dot = norm_a = norm_b = 0.0
    both = conflict = total = 0
    for path in shared:
        da = layers_a[path].get_delta_weight(a).flatten().float()
        db = layers_b[path].get_delta_weight(b).flatten().float()
        dot += float(da @ db)
        norm_a += float(da @ da)
        norm_b += float(db @ db)
        k = max(1, int(top * da.numel()))
        big_a = torch.zeros_like(da, dtype=torch.bool)
        big_a[da.abs().topk(k).indices] = True
        big_b = torch.zeros_like(db, dtype=torch.bool)
        big_b[db.abs().topk(k).indices] = True
        mask = big_a & big_b
        both += int(mask.sum())
        conflict += int((mask & (da.sign() != db.sign())).sum())
        total += da.numel()
    return {"modules": len(shared),
            "cosine": dot / math.sqrt(norm_a * norm_b) if norm_a and norm_b else 0.0,
            "overlap": both / total, "sign_conflict": conflict / both if both else 0.0}


def kept_share(base: float, single: float, merged: float) -> float:
    """Share of a single adapter's gain over the base that the merge keeps (1: all of it).

    For losses (lower is better) and scores alike: (base - merged) / (base - single). No
    gain to keep (single == base) gives nan: the skill was not learned, so there is nothing
    to measure.
    """
    gain = base - single
    return float("nan") if gain == 0 else (base - merged) / gain


# ---------------------------------------------------------------- choosing on validation

def validation_sets(n: int, company: dict | None = None, local: dict | None = None) -> list:
    """(prompts, answers, system) for the two skills, from what their training held out.

    Company: the third wording of the training questions (`sft_data("company",
    train_on=(0,))`'s validation split); style: the held-out training rewrites
    (`sft_data("local")`'s). `n` evenly spaced rows of each; never the eval sets.
    """
    from .finetuning import sft_data

    sets = []
    for name, kwargs in (("company", {"company": company, "train_on": (0,)}),
                         ("local", {"local": local})):
        _, val = sft_data(name, n_val=n, **kwargs)
        sets.append((list(val["prompt"]), [c[0]["content"] for c in val["completion"]], None))
    return sets


def skill_losses(model, tokenizer, val_sets) -> list[float]:
    """The held-out completion loss of each skill's validation set, with the active adapter.

    `val_sets`: one (prompts, answers, system) per skill.
    """
    from .peft_methods import completion_loss

    return [completion_loss(model, tokenizer, list(p), list(a), s) for p, a, s in val_sets]


def sweep(peft_model, tokenizer, names, specs, val_sets, seed: int = 0) -> list[dict]:
    """Every merge in `specs` of the adapters `names`, scored on validation losses only.

    `val_sets[i]` validates the skill of adapter `names[i]`. Each row has the loss of each
    skill and the share of the single adapter's loss drop that the merge keeps (`kept_share`);
    "worst kept" is the smaller of those: a merge is as good as the skill it loses most of.
    Every spec is checked before any model runs. The candidate adapter is removed after.
    """
    names, specs = list(names), list(specs)
    if len(val_sets) != len(names):
        raise MergeError(f"give one validation set per adapter: {len(names)} adapters, "
                         f"{len(val_sets)} sets")
    for spec in specs:
        check_merge(peft_model, names, spec)
    with peft_model.disable_adapter():
        base = skill_losses(peft_model, tokenizer, val_sets)
    single = []
    for i, name in enumerate(names):
        peft_model.set_adapter(name)
        single.append(skill_losses(peft_model, tokenizer, [val_sets[i]])[0])
    rows = []
    for spec in specs:
        merge(peft_model, names, spec, "candidate", seed)
        losses = skill_losses(peft_model, tokenizer, val_sets)
        kept = [kept_share(b, s, m) for b, s, m in zip(base, single, losses)]
        row = {"setting": spec.label, "combination": spec.combination, "spec": spec}
        row.update({f"loss {n}": x for n, x in zip(names, losses)})
        row.update({f"kept {n}": k for n, k in zip(names, kept)})
        row["worst kept"] = min((k for k in kept if not math.isnan(k)), default=float("nan"))
        rows.append(row)
    peft_model.set_adapter(names[0])
    if "candidate" in peft_model.peft_config:
        peft_model.delete_adapter("candidate")
    reference = {"setting": "base", **{f"loss {n}": b for n, b in zip(names, base)}}
    reference.update({f"single {n}": s for n, s in zip(names, single)})
    return [reference] + rows


def best_settings(rows: list[dict]) -> dict[str, MergeSpec]:
    """Per combination type, the spec with the highest "worst kept" (ties: the first listed)."""
    best: dict[str, tuple] = {}
    for row in rows:
        if "spec" not in row:
            continue
        score = row["worst kept"]
        score = -math.inf if math.isnan(score) else score
        kind = row["combination"]
        if kind not in best or score > best[kind][0]:
            best[kind] = (score, row["spec"])
    return {kind: spec for kind, (_, spec) in best.items()}
