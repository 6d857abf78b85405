"""Checks for 03_continued_pretraining."""

import math

from . import exercise, expect_number, fail, passed


@exercise("03 easy: relative change in perplexity")
def check_relative_change(answer, before: float, after: float, *, title: str) -> None:
    true = (after - before) / before
    expect_number(title, answer, "compute (after - before) / before with the two perplexities")
    if abs(answer - true) > 1e-6:
        if abs(answer + true) < 1e-6:
            fail(title, "the sign is flipped", "a drop in perplexity is a negative change: "
                 "(after - before) / before")
        if abs(answer - 100 * true) < 1e-4:
            fail(title, "that is a percentage", "give the fraction, e.g. -0.25 for a 25% drop")
        fail(title, f"{answer:.4f} is not the relative change ({true:.4f})",
             "divide the difference (after - before) by the value before")
    return passed(title, f"{true:+.1%}.")


@exercise("03 medium: how many replay texts for a ratio")
def check_replay_count(func, *, title: str) -> None:
    from mclab.pretraining import mix_replay

    for n_domain, ratio in [(80, 0.25), (60, 0.5), (10, 0.0), (30, 0.1)]:
        true = len(mix_replay(["d"] * n_domain, ["r"], ratio)) - n_domain
        got = func(n_domain, ratio)
        if got != true:
            hint = ("the replay share is n_replay / (n_domain + n_replay) = ratio; solve for "
                    "n_replay and round to the nearest integer")
            fail(title, f"for {n_domain} domain texts and ratio {ratio} you said {got}, "
                 f"the mix needs {true}", hint)
    return passed(title, "the same counts as mclab.pretraining.mix_replay.")


@exercise("03 hard: perplexity from the model's loss")
def check_perplexity(func, model, tokenizer, texts, *, title: str) -> None:
    from mclab.evaluation import perplexity

    for text in texts:
        got, true = func(model, tokenizer, text), perplexity(model, tokenizer, [text])
        if not isinstance(got, (int, float)) or math.isnan(got):
            fail(title, f"expected a number, got {got!r}", "return math.exp(loss.item())")
        if abs(got - true) / true > 1e-3:
            hint = ("pass labels=input_ids to the model: it shifts them itself and returns the "
                    "mean negative log-likelihood per predicted token as .loss; the perplexity "
                    "is exp of that")
            if abs(math.log(max(got, 1e-9)) - math.log(true)) < 1e-3:
                hint = "close; check you exponentiate the loss only once"
            fail(title, f"your perplexity {got:.3f} differs from mclab's {true:.3f} on "
                 f"{text[:40]!r}...", hint)
    return passed(title, "the same numbers as mclab.evaluation.perplexity.")


@exercise("03 medium: the causal language-modelling loss by hand")
def check_causal_lm_loss(func, *, title: str) -> None:
    import torch
    import torch.nn.functional as F
    from transformers.loss.loss_utils import ForCausalLMLoss

    gen = torch.Generator().manual_seed(0)
    vocab = 11
    logits = torch.randn(2, 7, vocab, generator=gen)
    labels = torch.randint(0, vocab, (2, 7), generator=gen)
    labels[0, :3] = -100  # a prompt the loss skips
    labels[1, 4:] = -100  # padding (rows count 4 and 3 tokens)
    want = float(ForCausalLMLoss(logits.clone(), labels.clone(), vocab_size=vocab))
    got = func(logits.clone(), labels.clone())
    try:
        got = float(torch.as_tensor(got, dtype=torch.float32))
    except (TypeError, ValueError, RuntimeError):
        fail(title, f"expected one number, got {type(got).__name__} of shape "
             f"{tuple(getattr(got, 'shape', ()))}", "average the per-token losses into one number")
    if abs(got - want) < 1e-5:
        return passed(title, f"{want:.4f}, the loss transformers computes when you pass labels; "
                      f"perplexity is exp of it ({math.exp(want):.2f} here; guessing uniformly "
                      f"over these {vocab} tokens would give {vocab}).")
    flat = logits.reshape(-1, vocab)
    unshifted = float(F.cross_entropy(flat, labels.reshape(-1)))
    backwards = float(F.cross_entropy(logits[:, 1:].reshape(-1, vocab), labels[:, :-1].reshape(-1)))
    per_row = float(torch.stack([F.cross_entropy(logits[r, :-1], labels[r, 1:])
                                 for r in range(2)]).mean())
    for value, what, hint in [
            (unshifted, "the labels are not shifted: each position is asked to predict itself",
             "position t predicts token t + 1: compare logits[:, :-1] with labels[:, 1:]"),
            (backwards, "the shift goes the wrong way (each position predicts the token before)",
             "logits[:, :-1] against labels[:, 1:]"),
            (per_row, "you average each sequence first, then the sequences",
             "average over all predicted tokens of the batch together")]:
        if abs(got - value) < 1e-5:
            fail(title, f"{what} (you {got:.4f}, transformers {want:.4f})", hint)
    fail(title, f"your loss {got:.4f} differs from transformers' {want:.4f}",
         "cross-entropy of logits[:, :-1] against labels[:, 1:], skipping labels of -100 "
         "(F.cross_entropy's ignore_index), averaged over the tokens that count")
