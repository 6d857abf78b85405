"""Every method side by side: `python -m mclab report` (and `make report`).

Each method runs in its own child process (`python -m mclab report --one NAME`), with the
settings its notebook uses, and is scored on the same evals (`mclab.scorecard.eval_sets`).
A child's peak memory is the operating system's count for that process alone (`wait4`), so
one method's leftovers never inflate the next one's number. Finished rows are kept in
`<out>/rows/NAME.json`; a rerun skips them unless asked (`--force`), so the report resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .config import get_settings, pick
from .files import atomic_path, write_json_atomic, write_text_atomic
from .measure import folder_size_mb, maxrss_mb

REPORTS = Path(__file__).resolve().parent.parent / "reports"

# One row per method: these columns, documented in the README ("What `make report` writes").
COLUMNS = {
    "method": "name of the method",
    "family": "branch of the taxonomy (prompting, retrieval, continued pre-training, ...)",
    "trained_on": "the scenario whose data changed the model or prompt ('-' for the base)",
    "company_knowledge": "company multiple-choice accuracy (chance 0.25), higher is better",
    "medical_perplexity": "perplexity on held-out dermatology prose, lower is better; "
                          "null where the weights are the base's (same as the base row)",
    "locality": "local-English rewrite score (style x meaning), higher is better; "
                "null where the method has no rewrite variant",
    "trainable_params": "parameters the method trained (0: none)",
    "train_seconds": "wall seconds of training (0: none)",
    "peak_memory_mb": "peak resident memory of the whole method's process, MB",
    "ms_per_answer": "milliseconds per company question (retrieval and longer prompts included)",
    "storage_mb": "disk the method adds beside the base model, MB",
}


class ReportError(ValueError):
    """A method name or an output folder the report cannot use."""


@dataclass
class Method:
    name: str
    family: str
    trained_on: str
    run: Callable[["Context"], dict]


class Context:
    """What every method needs, loaded once per child process."""

    def __init__(self):
        from .data import load_scenario
        from .models import load_embedder
        from .scorecard import eval_sets

        self.settings = get_settings()
        self.sets = eval_sets()
        self.embedder = load_embedder()
        self.company, self.local = load_scenario("company"), load_scenario("local")

    def base(self):
        from .models import load_model

        return load_model()


# --------------------------------------------------------------------------- scoring

def score(ctx: Context, model, tokenizer, *, company_contexts=None, company_system="default",
          local_prompts=None, local_system=None, medical: bool = True,
          locality: bool = True) -> dict:
    """The shared evals for one model; prompts and contexts are the method's own."""
    from .evaluation import KNOWLEDGE_SYSTEM, knowledge_score, perplexity
    from .prompting import run_local
    from .scorecard import local_prompt

    items = list(ctx.sets["company_mc"])
    system = KNOWLEDGE_SYSTEM if company_system == "default" else company_system
    start = time.perf_counter()
    company = knowledge_score(model, tokenizer, items, company_contexts, system=system)
    ms = 1000 * (time.perf_counter() - start) / len(items)
    row = {"company_knowledge": company.accuracy, "ms_per_answer": ms,
           "company_probs": [p.tolist() for p in company.probs],
           "company_answers": company.answers, "medical_perplexity": None, "locality": None}
    if medical:
        row["medical_perplexity"] = perplexity(model, tokenizer,
                                               ctx.sets["medical_heldout"]["text"])
    if locality:
        local_eval = ctx.sets["local_eval"]
        prompts = local_prompts or [local_prompt(s) for s in local_eval["neutral"]]
        res = run_local(model, tokenizer, ctx.embedder, local_eval, ctx.sets["lexicon"],
                        prompts, local_system)
        row["locality"] = res.score
    return row


def saved_mb(save: Callable[[Path], object]) -> float:
    """Disk a method's artifact takes: saved into a scratch folder, measured, removed."""
    with tempfile.TemporaryDirectory(prefix="mclab-size-") as tmp:
        save(Path(tmp) / "artifact")
        return folder_size_mb(Path(tmp) / "artifact")


def training_costs(result) -> dict:
    """What a training result cost: trainable parameters, seconds, disk."""
    from .models import count_parameters

    return {"trainable_params": count_parameters(result.model, trainable_only=True),
            "train_seconds": result.seconds,
            "storage_mb": saved_mb(lambda p: result.model.save_pretrained(p))}


def trained(ctx: Context, result, tokenizer, **score_kw) -> dict:
    """Score a training result and record its costs."""
    return {**score(ctx, result.model, tokenizer, **score_kw), **training_costs(result)}


# --------------------------------------------------------------------------- methods
# The settings are those of the notebook that teaches each method (named in each function).

def _untrained(row: dict, storage_mb: float = 0.0) -> dict:
    return {**row, "trainable_params": 0, "train_seconds": 0.0, "storage_mb": storage_mb}


def run_base(ctx):
    model, tok = ctx.base()
    return _untrained(score(ctx, model, tok))


def run_prompt_engineering(ctx):  # 01, section 1: role, instructions, format, example words
    from .prompting import (COMPANY_ROLE, LOCAL_ROLE, engineered_local_prompt,
                            frequent_local_phrases)

    model, tok = ctx.base()
    hints = frequent_local_phrases(list(ctx.local["rewrites_train"]), ctx.sets["lexicon"], n=8)
    prompts = [engineered_local_prompt(s, hints) for s in ctx.sets["local_eval"]["neutral"]]
    return _untrained(score(ctx, model, tok, company_system=COMPANY_ROLE, local_prompts=prompts,
                            local_system=LOCAL_ROLE, medical=False))


FEW_SHOTS = 4


def run_few_shot(ctx):  # 01, section 3: most similar training examples in front
    from .prompting import (ExampleSelector, local_few_shot_prompts, qa_examples_context)

    model, tok = ctx.base()
    qa_rows = list(ctx.company["train_qa"])
    items = list(ctx.sets["company_mc"])
    qa = ExampleSelector([r["question"] for r in qa_rows], ctx.embedder)
    chosen = qa.select([it["question"] for it in items], FEW_SHOTS, "similar")
    contexts = [qa_examples_context([(qa_rows[i]["question"], qa_rows[i]["answer"])
                                     for i in ids]) for ids in chosen]
    pool = list(ctx.local["rewrites_train"])
    rewrites = ExampleSelector([r["neutral"] for r in pool], ctx.embedder)
    prompts = local_few_shot_prompts(list(ctx.sets["local_eval"]["neutral"]), pool, rewrites,
                                     FEW_SHOTS, "similar")
    return _untrained(score(ctx, model, tok, company_contexts=contexts, local_prompts=prompts,
                            medical=False))


def run_rag(ctx):  # 02: chunks of 60 words, overlap 20, hybrid BM25 + dense, k = 2
    from .rag import RAG_SYSTEM, DenseIndex, build_context, chunk_documents, make_retriever

    model, tok = ctx.base()
    chunks = chunk_documents(list(ctx.company["documents"]), size=60, overlap=20)
    index = DenseIndex.build(chunks, ctx.embedder)
    retriever = make_retriever("hybrid", chunks, ctx.embedder, index)
    items = list(ctx.sets["company_mc"])
    start = time.perf_counter()
    retrieved = retriever.retrieve([it["question"] for it in items], 2)
    retrieval_ms = 1000 * (time.perf_counter() - start) / len(items)
    contexts = [build_context(ids, chunks) for ids in retrieved]
    row = score(ctx, model, tok, company_contexts=contexts, company_system=RAG_SYSTEM,
                medical=False, locality=False)
    row["ms_per_answer"] += retrieval_ms
    return _untrained(row, storage_mb=saved_mb(index.save))


CPT_STEPS, CPT_BATCH, CPT_LR, CPT_LENGTH = pick(2, 8), pick(2, 8), 2e-4, 128


# 03's and 04's full-weight runs: 2 sequences per pass, gradients accumulated to the batch,
# activations recomputed in the backward pass (same updates; measured: CPT rows 4.0 -> 2.3 GB,
# full SFT 2.9 -> 2.1 GB). Adapters pass 2 sequences at a time too, as 05 and 06 do, without
# recomputing (the LoRA row peaks at 1.9 GB without it).
FRUGAL = dict(micro_batch=2, gradient_checkpointing=True)


def _cpt(ctx, texts: list[str], name: str, **score_kw) -> dict:  # 03's settings
    from .pretraining import chunk_text, train_cpt
    from .training import TrainConfig

    model, tok = ctx.base()
    pieces = [p for t in texts for p in chunk_text(t, tok, CPT_LENGTH)]
    cfg = TrainConfig(learning_rate=CPT_LR, max_steps=CPT_STEPS, batch_size=CPT_BATCH,
                      max_length=CPT_LENGTH, optimizer="adafactor", run_name=f"report-{name}",
                      **FRUGAL)
    return trained(ctx, train_cpt(model, tok, pieces, cfg), tok, **score_kw)


def run_cpt_medical(ctx):  # 03, section 3: dermatology prose with 25% replay
    from .data import load_scenario
    from .pretraining import generate_replay, medical_corpus, mix_replay

    model, tok = ctx.base()
    replay = generate_replay(model, tok, n=pick(4, 24), max_new_tokens=pick(32, 96))
    del model
    texts = mix_replay(medical_corpus(load_scenario("medical")), replay, 0.25,
                       seed=ctx.settings.seed)
    return _cpt(ctx, texts, "cpt-medical")


def run_cpt_documents(ctx):  # 03, section 4: company documents only
    from .pretraining import company_corpus

    return _cpt(ctx, company_corpus(ctx.company), "cpt-documents")


def run_cpt_paraphrases(ctx):  # 03, section 4: documents + paraphrased facts
    from .pretraining import company_corpus

    return _cpt(ctx, company_corpus(ctx.company, paraphrases=True), "cpt-paraphrases")


def _company_sft(ctx, name: str, peft_config=None, lr: float = 5e-5) -> dict:  # 04's settings
    from .finetuning import sft_data
    from .training import TrainConfig, train_sft

    model, tok = ctx.base()
    train, val = sft_data("company", train_on=(0,), n_train=pick(16, None), n_val=pick(8, 16))
    cfg = TrainConfig(learning_rate=lr, max_steps=0, epochs=2, batch_size=pick(4, 8),
                      max_length=128, optimizer="adafactor", run_name=f"report-{name}",
                      micro_batch=2, gradient_checkpointing=peft_config is None)
    return trained(ctx, train_sft(model, tok, train, cfg, eval_dataset=val,
                                  peft_config=peft_config), tok)


def run_full_sft(ctx):  # 04, section 3: every weight, Adafactor
    return _company_sft(ctx, "sft-company")


def run_lora(ctx):  # 06's adapter (r = 16, alpha 32, every linear layer) on 04's company data
    from .peft_methods import LORA_TARGETS, lora_config

    adapter = lora_config(16, 32, targets=LORA_TARGETS["all linear"])
    return _company_sft(ctx, "lora-company", adapter, lr=1e-3)


def _local_chats(ctx):
    from datasets import Dataset

    from .scorecard import local_prompt
    from .training import chat_example

    return Dataset.from_list([chat_example(local_prompt(r["neutral"]), r["local"])
                              for r in ctx.local["rewrites_train"]])


def run_prefix(ctx):  # 06, section 5: 8 virtual tokens, one epoch of the local rewrites
    from peft import get_peft_model

    from .peft_methods import enable_prefix_generation, init_prefix_from_text, prefix_config
    from .training import TrainConfig, train_sft

    model, tok = ctx.base()
    cfg = TrainConfig(learning_rate=3e-2, max_steps=pick(2, 0), epochs=1, batch_size=4,
                      micro_batch=2, max_length=128, run_name="report-prefix")
    cfg.validate()
    model = get_peft_model(model, prefix_config(8))
    init_prefix_from_text(model, tok, PREFIX_INIT)  # start from text, as 06 does
    result = train_sft(model, tok, _local_chats(ctx), cfg)
    enable_prefix_generation(result.model)
    return trained(ctx, result, tok)


PREFIX_INIT = "Rewrite in casual Australian English, mate: arvo, servo, brekkie, no worries."
RL_LORA = dict(r=16, alpha=32, targets=("q_proj", "k_proj", "v_proj", "o_proj"))


def _local_sft(ctx):  # 05, section 1: the SFT (LoRA) model that DPO and GRPO start from
    from .peft_methods import LORA_TARGETS, lora_config
    from .training import TrainConfig, train_sft

    model, tok = ctx.base()
    chats = _local_chats(ctx)
    cfg = TrainConfig(learning_rate=2e-3, max_steps=0, epochs=1, batch_size=4, micro_batch=2,
                      max_length=128, run_name="report-rl-sft")
    sft = train_sft(model, tok, chats.select(range(pick(8, len(chats)))), cfg,
                    peft_config=lora_config(16, 32, targets=LORA_TARGETS["all linear"]))
    return training_costs(sft), sft.model.merge_and_unload(), tok


def _after_sft(row: dict, sft_costs: dict) -> dict:
    """An RL row's cost includes the SFT adapter it starts from (trained and stored too)."""
    return {**row, **{cost: row[cost] + value for cost, value in sft_costs.items()}}


def run_dpo(ctx):  # 05, section 2: beta 0.1 on the preference pairs, after SFT
    from . import rl
    from .peft_methods import lora_config
    from .training import TrainConfig

    sft_costs, sft_model, tok = _local_sft(ctx)
    pairs = rl.preference_dataset(ctx.local["preferences"])
    train = pairs.select([i for i in range(len(pairs)) if i % 6 != 5])
    cfg = TrainConfig(learning_rate=2e-4, max_steps=pick(2, 12), batch_size=4, run_name="report-dpo")
    dpo = rl.train_dpo(sft_model, tok, train, cfg, beta=0.1,
                       peft_config=lora_config(**RL_LORA), micro_batch=1)
    return _after_sft(trained(ctx, dpo, tok), sft_costs)


def run_grpo(ctx):  # 05, section 3: the style + meaning + brevity reward, after SFT
    from . import rl
    from .peft_methods import lora_config
    from .scorecard import local_prompt
    from .training import TrainConfig

    sft_costs, sft_model, tok = _local_sft(ctx)
    funcs = rl.make_reward_funcs(ctx.sets["lexicon"], ctx.embedder)
    prompts = rl.rewrite_prompts(ctx.local["rewrites_train"], local_prompt)
    cfg = TrainConfig(learning_rate=2e-4, max_steps=pick(2, 10), batch_size=8,
                      run_name="report-grpo")
    grpo = rl.train_grpo(sft_model, tok, prompts, funcs, cfg, num_generations=4,
                         max_completion_length=32, reward_weights=rl.RewardWeights().as_list(),
                         peft_config=lora_config(**RL_LORA), micro_batch=2)
    return _after_sft(trained(ctx, grpo, tok), sft_costs)


METHODS = [
    Method("base", "none", "-", run_base),
    Method("prompt engineering", "prompting", "company, local", run_prompt_engineering),
    Method("few-shot (4 similar)", "prompting", "company, local", run_few_shot),
    Method("RAG (hybrid, k=2)", "retrieval", "company", run_rag),
    Method("CPT + replay", "continued pre-training", "medical", run_cpt_medical),
    Method("CPT documents", "continued pre-training", "company", run_cpt_documents),
    Method("CPT documents + paraphrases", "continued pre-training", "company",
           run_cpt_paraphrases),
    Method("full SFT", "supervised fine-tuning", "company", run_full_sft),
    Method("LoRA r=16", "parameter-efficient", "company", run_lora),
    Method("prefix tuning (8 tokens)", "parameter-efficient", "local", run_prefix),
    Method("SFT + DPO", "reinforcement fine-tuning", "local", run_dpo),
    Method("SFT + GRPO", "reinforcement fine-tuning", "local", run_grpo),
]
ENSEMBLE = ("RAG (hybrid, k=2)", "full SFT", "LoRA r=16")  # averaged option probabilities
ENSEMBLE_NAME = "ensemble (RAG + SFT + LoRA)"
NAMES = [m.name for m in METHODS] + [ENSEMBLE_NAME]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def method(name: str) -> Method:
    for m in METHODS:
        if m.name == name or slug(m.name) == name:
            return m
    raise ReportError(f"unknown method {name!r}; choose from: {', '.join(NAMES)}")


# --------------------------------------------------------------------------- running

def default_out() -> Path:
    """reports/ for full mode; quick runs go under the runs folder, never over the report."""
    settings = get_settings()
    return settings.runs_dir / "report-quick" if settings.quick else REPORTS


def run_one(name: str, out: Path) -> dict:
    """Run one method in this process and write its row (called in the child)."""
    from .config import setup

    m = method(name)
    setup()
    start = time.perf_counter()
    row = m.run(Context())
    row = {"method": m.name, "family": m.family, "trained_on": m.trained_on, **row,
           "seconds": time.perf_counter() - start, "mode": get_settings().mode}
    write_json_atomic(Path(out) / "rows" / f"{slug(m.name)}.json", row)
    return row


def _child(name: str, out: Path) -> tuple[int, float]:
    """Run a method in a child process; its exit code and peak resident memory (MB)."""
    proc = subprocess.Popen([sys.executable, "-m", "mclab", "report", "--one", name,
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # Relay the child's output through this process, so in a notebook it shows in the cell
    # (a child writing to the kernel's own stdout would print to the server's terminal).
    while chunk := proc.stdout.read1(4096):
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, maxrss_mb(usage)


def load_row(out: Path, name: str) -> dict | None:
    path = Path(out) / "rows" / f"{slug(name)}.json"
    if not path.exists():
        return None
    row = json.loads(path.read_text())
    return row if row.get("mode") == get_settings().mode else None


def check_out(out: Path) -> Path:
    out = Path(out)
    try:
        (out / "rows").mkdir(parents=True, exist_ok=True)
        probe = out / "rows" / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ReportError(f"cannot write the report to {out} ({err.strerror}); pass --out "
                          "with a writable folder") from None
    return out


def run_report(names=None, out=None, force: bool = False, progress: bool = True) -> dict:
    """Run the methods not yet done (all of `names`, with `force`) and write the report."""
    names = [method(n).name for n in (names or [m.name for m in METHODS])]
    out = check_out(out or default_out())
    from tqdm.auto import tqdm

    failed = []
    bar = tqdm(names, desc="methods", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        row = None if force else load_row(out, name)
        if row is not None:
            continue
        if force:
            (out / "rows" / f"{slug(name)}.json").unlink(missing_ok=True)
        code, peak_mb = _child(name, out)
        row = load_row(out, name)
        if code != 0 or row is None:
            failed.append(f"{name!r} (exit code {code})")
            continue  # the others still run; the report is written with what finished
        row["peak_memory_mb"] = peak_mb
        write_json_atomic(out / "rows" / f"{slug(name)}.json", row)
    result = write_report(out)
    if failed:
        raise ReportError(f"failed: {', '.join(failed)}; their output is above. Rerun one "
                          "alone with `python -m mclab report --only NAME`")
    return result


def ensemble_row(rows: dict) -> dict | None:
    """Average the option probabilities of the ENSEMBLE members, if all have run."""
    from .ensembling import average_probs
    from .evaluation import KnowledgeResult

    if not all(n in rows for n in ENSEMBLE):
        return None
    members = {n: KnowledgeResult(rows[n]["company_knowledge"], [], rows[n]["company_answers"],
                                  [np.array(p) for p in rows[n]["company_probs"]])
               for n in ENSEMBLE}
    for n, r in members.items():
        r.predictions = [int(np.argmax(p)) for p in r.probs]
    combined = average_probs(members)
    parts = [rows[n] for n in ENSEMBLE]
    return {"method": ENSEMBLE_NAME, "family": "ensembling", "trained_on": "company",
            "company_knowledge": combined.accuracy, "medical_perplexity": None,
            "locality": None,
            "trainable_params": sum(r["trainable_params"] for r in parts),
            "train_seconds": sum(r["train_seconds"] for r in parts),
            # members answer one after another, so the largest member's memory is the peak
            "peak_memory_mb": max(r["peak_memory_mb"] for r in parts),
            "ms_per_answer": sum(r["ms_per_answer"] for r in parts),
            "storage_mb": sum(r["storage_mb"] for r in parts),
            "mode": parts[0]["mode"]}


def write_report(out: Path) -> dict:
    """comparison.json, comparison.md and quality_vs_cost.png from the finished rows."""
    out = Path(out)
    done = {m.name: r for m in METHODS if (r := load_row(out, m.name))}
    rows = list(done.values())
    if (ens := ensemble_row(done)) is not None:
        rows.append(ens)
    table = [{col: r.get(col) for col in COLUMNS} for r in rows]
    settings = get_settings()
    report = {"mode": settings.mode, "generated": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "cpus": os.cpu_count(), "threads": settings.threads,
        "company_items": max((len(r.get("company_probs", [])) for r in rows), default=0),
        "columns": COLUMNS, "rows": table}
    write_json_atomic(out / "comparison.json", report)
    write_text_atomic(out / "comparison.md", markdown_table(report))
    if table:
        from .plotting import plot_quality_vs_cost

        fig = plot_quality_vs_cost(table)
        with atomic_path(out / "quality_vs_cost.png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        import matplotlib.pyplot as plt

        plt.close(fig)
    return report


def _fmt(value, col: str) -> str:
    if value is None:
        return "-"
    if col in ("trainable_params",):
        return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}" if col in ("company_knowledge", "locality") else f"{value:,.1f}"
    return str(value)


def markdown_table(report: dict) -> str:
    cols = list(report["columns"])
    lines = [f"# Every method on the same evals ({report['mode']} mode, {report['cpus']} CPUs, "
             f"{report['generated']})", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c), c) for c in cols) + " |" for r in report["rows"]]
    lines += ["", "Columns:", ""] + [f"- `{c}`: {d}" for c, d in report["columns"].items()]
    return "\n".join(lines) + "\n"


def load_report(path=None) -> dict:
    """A written comparison.json (by default the committed full-mode one in reports/)."""
    path = Path(path or REPORTS / "comparison.json")
    if not path.exists():
        raise ReportError(f"no report at {path}; run `make report` (about an hour of CPU) or "
                          "`python -m mclab report --only base`")
    return json.loads(path.read_text())


def frame(report: dict):
    """The report's rows as a pandas DataFrame indexed by method."""
    import pandas as pd

    return pd.DataFrame(report["rows"]).set_index("method")


def clean(out: Path) -> None:
    shutil.rmtree(Path(out) / "rows", ignore_errors=True)
