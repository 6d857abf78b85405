"""Checks for 05_fine_tuning_rl."""

import numpy as np

from ..rl import dpo_loss, group_advantages
from . import exercise, fail, passed


@exercise("05 easy: the DPO loss")
def check_dpo_loss(func, margins, *, title: str) -> None:
    cases = [(np.asarray(margins, dtype=float), 0.1), (np.array([0.0, 0.0]), 0.5),
             (np.array([10.0, -10.0, 2.0]), 0.3)]
    for m, beta in cases:
        got, want = func(m, beta), dpo_loss(m, beta)
        if not isinstance(got, (float, int, np.floating)):
            fail(title, f"returned {type(got).__name__}, not a number",
                 "return float(np.mean(...)) over the pairs")
        if abs(float(got) - want) > 1e-6:
            if abs(float(got) - dpo_loss(-m, beta)) < 1e-6:
                fail(title, "the sign is flipped", "a positive margin (chosen preferred) must "
                     "give a small loss: use -log sigmoid(+beta * margin)")
            if abs(float(got) - float(np.mean(np.log1p(np.exp(-m))))) < 1e-6 and beta != 1:
                fail(title, "beta is not used", "multiply each margin by beta first")
            fail(title, f"for margins {np.round(m[:3], 3)} and beta {beta} you return "
                 f"{float(got):.4f}, expected {want:.4f}",
                 "-log sigmoid(z) = log(1 + exp(-z)); average over the pairs")
    if abs(float(func(np.zeros(3), 0.1)) - np.log(2)) > 1e-6:
        fail(title, "zero margins should give log 2", "sigmoid(0) = 0.5")
    return passed(title, f"at the trained margins the loss is {dpo_loss(margins, 0.1):.4f} "
                  f"(log 2 = {np.log(2):.4f} before training).")


@exercise("05 medium: GRPO's group-relative advantages")
def check_advantages(func, *, title: str) -> None:
    rng = np.random.default_rng(0)
    cases = [(np.array([1.0, 0.0, 0.5, 0.5]), 4), (np.array([1.0, 2.0, 3.0, 0.0, 0.0, 1.0]), 3),
             (rng.normal(size=12), 4), (np.array([0.7, 0.7, 0.2, 0.4]), 2)]
    for rewards, n in cases:
        want = group_advantages(rewards, n)
        got = np.asarray(func(rewards, n), dtype=float).reshape(-1)
        if got.shape != want.shape:
            fail(title, f"for {len(rewards)} rewards you return {got.size} values",
                 "return one advantage per completion, in the same order")
        if not np.allclose(got, want, atol=1e-4):
            whole = (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-4)
            if np.allclose(got, whole, atol=1e-4):
                fail(title, "you normalise over all rewards, not per group",
                     "reshape to (-1, n) so each row is one prompt's group")
            if np.allclose(got, (rewards.reshape(-1, n) - rewards.reshape(-1, n).mean(1, keepdims=True)
                                 ).ravel(), atol=1e-4):
                fail(title, "you subtract the mean but do not divide by the std",
                     "divide by the group's std (ddof=1) + 1e-4")
            fail(title, f"rewards {np.round(rewards, 2)} with n={n}: expected "
                 f"{np.round(want, 2)}, got {np.round(got, 2)}",
                 "per group: (r - mean) / (std with ddof=1 + 1e-4)")
    if not np.allclose(func(np.ones(4), 4), 0.0):
        fail(title, "a group of equal rewards must give zero advantages",
             "add 1e-4 to the std so 0/0 does not happen")
    return passed(title, "equal rewards teach nothing; only differences within a group do.")


FACT_CASES = [
    (["Answer: 450 euros"], "450 euros", [1.0]),
    (["answer: 450 euros"], "450 euros", [0.5]),
    (["The limit is 450 Euros."], "450 euros", [0.5]),
    (["Answer: 540 euros"], "450 euros", [0.0]),
    (["Answer: " + "very " * 20 + "450 euros"], "450 euros", [0.5]),
    (["  Answer: Ida Quill runs it."], "ida quill", [1.0]),
    ([], "x", []),
]


@exercise("05 hard: a reward for a correct fact in the right format")
def check_fact_reward(func, *, title: str) -> None:
    for completions, answer, want in FACT_CASES:
        got = list(func(completions, answer))
        if len(got) != len(want):
            fail(title, f"{len(completions)} completions gave {len(got)} rewards",
                 "return one reward per completion (an empty list for none)")
        if not np.allclose(np.asarray(got, dtype=float), want):
            fail(title, f"for {completions!r} with answer {answer!r} you give {got}, "
                 f"expected {want}", "compare the answer case-insensitively, require the "
                 "exact prefix 'Answer:' (after stripping spaces) and at most 20 words")
    return passed(title, "a reward with a format part and a fact part, each hard to game alone.")


def _dpo_variants(pc, pr, rc, rr, beta):
    """Plausible wrong answers, each with what it gets wrong and a hint."""
    import torch.nn.functional as F

    margin = (pc - rc) - (pr - rr)
    return [
        (-F.logsigmoid(margin).mean(), "beta is not used",
         "multiply the margin by beta before the log-sigmoid"),
        (-F.logsigmoid(-beta * margin).mean(), "the sign is flipped",
         "the chosen reply's log-ratio comes first: (pi_c - ref_c) - (pi_r - ref_r)"),
        (-F.logsigmoid(beta * (pc - pr)).mean(), "the reference model is missing",
         "DPO compares log-RATIOS: subtract the reference's log-probability from the policy's"),
        (-F.logsigmoid(beta * margin).sum(), "that is the sum over the pairs",
         "average over the pairs (.mean())"),
        (F.logsigmoid(beta * margin).mean(), "the loss has the wrong sign",
         "the loss is MINUS log sigmoid(beta * margin): it falls as the margin grows"),
        (-F.logsigmoid(beta * ((pc - pr) - (rc - rr)).abs()).mean(),
         "the absolute value of the margin hides which reply is preferred",
         "keep the margin's sign"),
    ]


@exercise("05 medium: DPO's loss from the four log-probabilities")
def check_dpo_from_logps(func, *, title: str) -> None:
    import torch

    from ..compat import trl_dpo_loss

    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randn(4, 6, generator=gen) * 3 - 20, 0.1),
             (torch.randn(4, 3, generator=gen) * 5 - 40, 0.5)]
    same = torch.randn(6, generator=gen) - 10
    cases.append((torch.stack([same[:3], same[3:], same[:3], same[3:]]), 0.3))
    logged = None
    for (pc, pr, rc, rr), beta in cases:
        want, metrics = trl_dpo_loss(pc, pr, rc, rr, beta)
        logged = logged or (want, metrics["rewards/margins"])
        got = func(pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta)
        try:
            got_value = float(torch.as_tensor(got, dtype=torch.float32))
        except (TypeError, ValueError, RuntimeError):
            shape = tuple(getattr(got, "shape", ()))
            fail(title, f"expected one number (a 0-d tensor or a float), got "
                 f"{type(got).__name__} of shape {shape}",
                 "DPO averages the per-pair losses: return losses.mean()")
        if abs(got_value - want) > 1e-5:
            for value, what, hint in _dpo_variants(pc, pr, rc, rr, beta):
                if abs(got_value - float(value)) < 1e-5:
                    fail(title, f"{what} (beta {beta}: you return {got_value:.4f}, trl "
                         f"{want:.4f})", hint)
            fail(title, f"for {pc.numel()} pairs and beta {beta} you return {got_value:.4f}; "
                 f"trl's DPOTrainer computes {want:.4f}",
                 "-logsigmoid(beta * ((policy_chosen - ref_chosen) - (policy_rejected - "
                 "ref_rejected))).mean()")
    return passed(title, "the same loss as trl's DPOTrainer (loss_type 'sigmoid'). trl logs "
                  "beta times the two log-ratios as rewards/chosen and rewards/rejected and "
                  f"their difference as rewards/margins (first case: loss {logged[0]:.4f}, "
                  f"rewards/margins {logged[1]:+.3f}); where the policy equals the reference "
                  "the loss is log 2.")
