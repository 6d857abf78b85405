"""The exercises that write a method's mechanism (issue 17): each check passes the reference
solution, compared with the library's own result, and fails plausible wrong answers with
feedback that says what differs."""

import math
from math import comb

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mclab.checks import ExerciseFailed


def fails(check, answer, *args, match: str):
    with pytest.raises(ExerciseFailed, match=match):
        check(answer, *args)


# ---------------------------------------------------------------- 00: option log-likelihood

def option_score(model, tokenizer, prompt, option):
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    o = tokenizer(option, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([p + o])).logits[0].float(), -1)
    return float(np.mean([logp[len(p) - 1 + i, t].item() for i, t in enumerate(o)]))


def test_option_logprob_check(load_tiny, capsys):
    from mclab.checks import foundation as checks

    model, tok = load_tiny()
    items = [{"question": "Who runs the Quay Street office?",
              "options": ["Ida Quill", "Bo", "the regional manager of sales", "nobody"],
              "answer": 0}]
    checks.check_option_logprob(option_score, model, tok, items)
    assert "✓" in capsys.readouterr().out

    def summed(model, tokenizer, prompt, option):
        n = len(tokenizer(option, add_special_tokens=False)["input_ids"])
        return n * option_score(model, tokenizer, prompt, option)

    def off_by_one(model, tokenizer, prompt, option):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        o = tokenizer(option, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([p + o + o[-1:]])).logits[0], -1)
        return float(np.mean([logp[len(p) + i, t].item() for i, t in enumerate(o)]))

    fails(checks.check_option_logprob, summed, model, tok, items, match="is the sum")
    fails(checks.check_option_logprob, off_by_one, model, tok, items,
          match="position len\\(prompt\\) - 1 \\+ i")
    checks.check_option_logprob(None, model, tok, items)  # the stub: "not solved yet"


# ---------------------------------------------------------------- 01: greedy decoding

def greedy(model, input_ids, n):
    ids = input_ids
    for _ in range(n):
        with torch.no_grad():
            nxt = model(ids).logits[0, -1].argmax()
        ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return ids[0, input_ids.shape[1]:].tolist()


def test_greedy_check(load_tiny, capsys):
    from mclab.checks import prompting as checks

    model, tok = load_tiny()
    prompts = [[{"role": "user", "content": "Say g'day."}]]
    checks.check_greedy(greedy, model, tok, prompts)
    assert "✓" in capsys.readouterr().out
    fails(checks.check_greedy, lambda m, ids, n: ids[0].tolist() + greedy(m, ids, n), model, tok,
          prompts, match="prompt too")

    def first_position(model, input_ids, n):
        ids = input_ids
        for _ in range(n):
            with torch.no_grad():
                nxt = model(ids).logits[0, 0].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
        return ids[0, input_ids.shape[1]:].tolist()

    fails(checks.check_greedy, first_position, model, tok, prompts, match="LAST")


# ---------------------------------------------------------------- 02: BM25

def bm25_scores(query, docs, k1, b):
    n, avg = len(docs), np.mean([len(d) for d in docs])
    scores = np.zeros(n)
    for word in query:
        df = sum(word in d for d in docs)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            tf = d.count(word)
            scores[i] += idf * tf / (tf + k1 * (1 - b + b * len(d) / avg))
    return scores


def test_bm25_check(capsys):
    from mclab.checks import retrieval as checks

    checks.check_bm25(bm25_scores)
    assert "✓" in capsys.readouterr().out
    fails(checks.check_bm25, lambda q, d, k1, b: (k1 + 1) * bm25_scores(q, d, k1, b),
          match="\\(k1 \\+ 1\\)")

    def classic_idf(query, docs, k1, b):
        n, avg = len(docs), np.mean([len(d) for d in docs])
        out = np.zeros(n)
        for w in query:
            df = sum(w in d for d in docs)
            if df:
                for i, d in enumerate(docs):
                    tf = d.count(w)
                    out[i] += math.log((n - df + 0.5) / (df + 0.5)) * tf / (
                        tf + k1 * (1 - b + b * len(d) / avg))
        return out

    fails(checks.check_bm25, classic_idf, match="negative")
    fails(checks.check_bm25, lambda q, d, k1, b: bm25_scores(q, d, k1, 0.0), match="b=0.75")


# ---------------------------------------------------------------- 03: causal-LM loss

def causal_lm_loss(logits, labels):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def test_causal_lm_loss_check(capsys):
    from mclab.checks import pretraining as checks

    checks.check_causal_lm_loss(causal_lm_loss)
    assert "✓" in capsys.readouterr().out
    fails(checks.check_causal_lm_loss,
          lambda lg, lb: F.cross_entropy(lg.reshape(-1, lg.shape[-1]), lb.reshape(-1)),
          match="not shifted")
    fails(checks.check_causal_lm_loss,
          lambda lg, lb: F.cross_entropy(lg[:, 1:].reshape(-1, lg.shape[-1]),
                                         lb[:, :-1].reshape(-1)),
          match="wrong way")
    fails(checks.check_causal_lm_loss,
          lambda lg, lb: torch.stack([F.cross_entropy(lg[r, :-1], lb[r, 1:])
                                      for r in range(2)]).mean(),
          match="each sequence first")
    fails(checks.check_causal_lm_loss, lambda lg, lb: F.cross_entropy(
        lg[:, :-1].reshape(-1, lg.shape[-1]), lb[:, 1:].reshape(-1), reduction="none"),
        match="expected one number")


# ---------------------------------------------------------------- 04: the SFT loss mask

def sft_batch(tokenizer, examples):
    rows = []
    for ex in examples:
        prompt = tokenizer(tokenizer.apply_chat_template(ex["prompt"], tokenize=False,
                                                         add_generation_prompt=True),
                           add_special_tokens=False)["input_ids"]
        full = tokenizer(tokenizer.apply_chat_template(ex["prompt"] + ex["completion"],
                                                       tokenize=False),
                         add_special_tokens=False)["input_ids"]
        rows.append((full, [-100] * len(prompt) + full[len(prompt):]))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    return {"input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows]),
            "labels": torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])}


def _changed(func):
    def wrapped(tokenizer, examples):
        batch = sft_batch(tokenizer, examples)
        func(batch)
        return batch
    return wrapped


def test_sft_mask_check(load_tiny, capsys):
    from mclab.checks import finetuning as checks

    tok = load_tiny()[1]
    checks.check_sft_mask(sft_batch, tok)
    assert "✓" in capsys.readouterr().out

    def pad_labels(batch):
        for r in range(len(batch["labels"])):
            end = int((batch["labels"][r] != -100).nonzero().max()) + 1
            batch["labels"][r, end:] = batch["input_ids"][r, end:]  # padding labelled

    def inverted(batch):
        real = torch.zeros_like(batch["labels"], dtype=torch.bool)
        for r in range(len(real)):
            real[r, :int((batch["labels"][r] != -100).nonzero().max()) + 1] = True
        batch["labels"] = torch.where((batch["labels"] == -100) & real, batch["input_ids"],
                                      torch.full_like(batch["labels"], -100))

    def off_by_one(batch):
        for r in range(len(batch["labels"])):
            first = int((batch["labels"][r] != -100).nonzero().min())
            batch["labels"][r, first] = -100

    def no_mask(batch):
        batch["labels"] = batch["input_ids"].clone()

    fails(checks.check_sft_mask, _changed(inverted), tok, match="inverted")
    fails(checks.check_sft_mask, _changed(off_by_one), tok, match="off by one")
    fails(checks.check_sft_mask, _changed(no_mask), tok, match="no position is -100")
    fails(checks.check_sft_mask, _changed(pad_labels), tok, match="padding positions")
    fails(checks.check_sft_mask, lambda t, e: {"input_ids": [[1]]}, tok, match="'labels'")


# ---------------------------------------------------------------- 05: DPO from four log-probs

def dpo_from_logps(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def test_dpo_from_logps_check(capsys):
    from mclab.checks import rl as checks

    checks.check_dpo_from_logps(dpo_from_logps)
    assert "✓" in capsys.readouterr().out
    for wrong, message in [
            (lambda pc, pr, rc, rr, beta: -F.logsigmoid((pc - rc) - (pr - rr)).mean(), "beta"),
            (lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * (pc - pr)).mean(), "reference"),
            (lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * ((pr - rr) - (pc - rc))).mean(),
             "sign is flipped"),
            (lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum(),
             "sum"),
            (lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * ((pc - rc) - (pr - rr))),
             "one number")]:
        fails(checks.check_dpo_from_logps, wrong, match=message)


# ---------------------------------------------------------------- 06: prefix keys and values

def prefix_kv(weight, n_layers, n_kv_heads, head_dim):
    t = weight.view(weight.shape[0], n_layers * 2, n_kv_heads, head_dim).permute(1, 2, 0, 3)
    return [(t[2 * i], t[2 * i + 1]) for i in range(n_layers)]


def test_prefix_kv_check(capsys):
    from mclab.checks import peft as checks

    checks.check_prefix_kv(prefix_kv)
    assert "✓" in capsys.readouterr().out
    fails(checks.check_prefix_kv, lambda *a: [(v, k) for k, v in prefix_kv(*a)], match="swapped")

    def blocks(weight, n_layers, n_kv_heads, head_dim):
        t = weight.view(weight.shape[0], 2, n_layers, n_kv_heads, head_dim).permute(1, 2, 3, 0, 4)
        return [(t[0, i], t[1, i]) for i in range(n_layers)]

    def no_permute(weight, n_layers, n_kv_heads, head_dim):
        t = weight.view(n_layers * 2, n_kv_heads, weight.shape[0], head_dim)
        return [(t[2 * i], t[2 * i + 1]) for i in range(n_layers)]

    fails(checks.check_prefix_kv, blocks, match="interleaves")
    fails(checks.check_prefix_kv, no_permute, match="differ from peft's")
    fails(checks.check_prefix_kv, lambda w, n, h, d: [(w, w)] * n, match="shape")


# ---------------------------------------------------------------- 07: majority vote

def majority(members):
    results = list(members.values())
    out = []
    for i in range(results[0].n):
        votes = np.bincount([r.predictions[i] for r in results], minlength=len(results[0].probs[i]))
        mean = np.mean([r.probs[i] for r in results], axis=0)
        tied = np.flatnonzero(votes == votes.max())
        out.append(int(tied[np.argmax(mean[tied])]))
    return out


def test_majority_vote_check(capsys):
    from mclab.checks import ensembling as checks

    checks.check_majority_vote(majority)
    assert "✓" in capsys.readouterr().out

    def first_on_ties(members):
        results = list(members.values())
        return [int(np.argmax(np.bincount([r.predictions[i] for r in results], minlength=3)))
                for i in range(results[0].n)]

    fails(checks.check_majority_vote, first_on_ties, match="highest mean probability")
    fails(checks.check_majority_vote, lambda m: [0, 0], match="answers for")


# ---------------------------------------------------------------- 08: McNemar

def mcnemar_p(correct_a, correct_b):
    b = sum(x and not y for x, y in zip(correct_a, correct_b))
    c = sum(y and not x for x, y in zip(correct_a, correct_b))
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n)


def test_mcnemar_check(capsys):
    from mclab.checks import choosing as checks

    checks.check_mcnemar(mcnemar_p)
    assert "✓" in capsys.readouterr().out
    fails(checks.check_mcnemar, lambda a, b: mcnemar_p(a, b) / 2 if sum(a) != sum(b) else 1.0,
          match="one-sided")

    def all_items(a, b):
        n, k = len(a), sum(x and not y for x, y in zip(a, b))
        return min(1.0, 2 * sum(comb(n, j) for j in range(min(k, n - k) + 1)) / 2 ** n)

    fails(checks.check_mcnemar, all_items, match="discordant")


def test_mcnemar_check_agrees_with_mclab_stats():
    from mclab.checks.choosing import _mcnemar_cases
    from mclab.stats import mcnemar_exact

    for a, b, _ in _mcnemar_cases():
        assert mcnemar_exact(a, b).p_value == pytest.approx(mcnemar_p(a, b), abs=1e-12)


def test_group_advantages_follow_trls_grpo_formula():
    """05's advantage exercise is checked against mclab.rl.group_advantages; this ties that to
    trl 1.16's GRPOTrainer (scale_rewards="group"): (r - group mean) / (trl's nanstd + 1e-4),
    with trl's own nanstd (Bessel-corrected)."""
    from trl.trainer.utils import nanstd

    from mclab.rl import group_advantages

    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0, 0.3, -1.0, 4.0, 0.0])
    groups = rewards.view(-1, 4)
    trl_style = ((groups - torch.nanmean(groups, dim=1, keepdim=True))
                 / (nanstd(groups, dim=1, keepdim=True) + 1e-4)).reshape(-1)
    assert np.allclose(group_advantages(rewards.numpy(), 4), trl_style.numpy(), atol=1e-5)
