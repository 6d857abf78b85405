"""The one CPU-first training path that SFT, continued pre-training, PEFT and RL share.

trl's defaults assume a GPU: bf16 autocast and gradient checkpointing, which on a CPU
without native bf16 run about 19x slower (see CPU-NOTES). `cpu_args` turns them off
unless the device `mclab.device` chose really has bf16, and every trainer in the course
is built from it.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import torch
from transformers import TrainerCallback

from .compat import (LM_HEAD_TILE_ON_CPU, accepts_loss_kwargs, checkpointing_argument,
                     lm_head_tile, loss_at_labelled_positions, loss_scale_across_processes)
from .config import get_settings
from .curves import LiveCurves
from .device import choose_device, num_processes
from .files import atomic_path
from .measure import release_memory
from .models import is_peft
from .runs import DiskSpaceError, check_free_space, model_bytes


class TrainingInputError(ValueError):
    """A training setting or dataset is unusable; raised before any training starts."""


@dataclass
class TrainConfig:
    """The knobs of a training run; quick mode shrinks `max_steps` through `pick`."""

    learning_rate: float = 2e-4  # AdamW step size; full fine-tuning wants ~1e-5..5e-5
    max_steps: int = 30  # optimizer steps (wins over epochs when > 0)
    epochs: float = 1.0  # passes over the data when max_steps <= 0
    batch_size: int = 8  # sequences per optimizer step
    micro_batch: int | None = None  # sequences per forward pass; gradients accumulate (less memory)
    max_length: int = 256  # tokens per sequence; longer ones are cut
    warmup_steps: int = 0  # linear warm-up steps
    weight_decay: float = 0.0
    optimizer: str = "adamw_torch"  # "adafactor" saves memory for full fine-tuning
    gradient_checkpointing: bool = False  # trades ~30% speed for activation memory
    seed: int | None = None  # None: the seed from MCLAB_SEED
    logging_steps: int = 1  # loss is recorded every this many steps
    run_name: str = "run"  # the run folder is runs/<time>-<run_name>
    eval_steps: int = 0  # with an eval set: evaluate every this many steps (0: about 5 times)
    lean_loss: bool = False  # True: the model's own cross-entropy, no trl metrics (see below)
    max_grad_norm: float = 1.0  # clip the gradients' global norm to this (0: no clipping)
    step_in_backward: bool = False  # update each weight in the backward pass (less memory;
    # needs max_grad_norm=0 and the whole batch in one pass: mclab.backward_step)
    save: bool | None = None  # None: save adapters (KBs) to run_dir/model, not full weights (520 MB)
    live: bool | None = None  # live loss plot (mclab.curves); None: only inside a notebook
    patience: int = 0  # > 0: early stopping (needs an eval set): stop after this many
    # evaluations without a better validation value (a lower eval_loss; GRPO: a higher reward,
    # `fit`'s stop_on), and end on the weights of the best one

    def validate(self) -> None:
        if not self.learning_rate > 0:
            raise TrainingInputError(
                f"learning_rate must be positive, got {self.learning_rate}; try 2e-4 for "
                "LoRA or 2e-5 for full fine-tuning")
        if self.max_steps <= 0 and not self.epochs > 0:
            raise TrainingInputError("set max_steps > 0 or epochs > 0")
        if self.micro_batch is not None and (
                self.micro_batch < 1 or self.batch_size % self.micro_batch):
            raise TrainingInputError(
                f"micro_batch must divide batch_size (got {self.micro_batch} and "
                f"{self.batch_size}); e.g. batch_size=8, micro_batch=2 accumulates 4 passes")
        if self.step_in_backward and (self.max_grad_norm or (
                self.micro_batch is not None and self.micro_batch < self.batch_size)):
            raise TrainingInputError(
                "step_in_backward updates each weight as soon as its gradient is complete, "
                "so it cannot clip the global norm or accumulate micro-batches: set "
                f"max_grad_norm=0 (got {self.max_grad_norm}) and micro_batch=None (got "
                f"{self.micro_batch}), or step_in_backward=False")
        if self.patience < 0:
            raise TrainingInputError(f"patience must be 0 (off) or a positive number of "
                                     f"evaluations, got {self.patience}")
        if self.batch_size < 1 or self.max_length < 8:
            raise TrainingInputError(
                f"batch_size must be >= 1 and max_length >= 8 (got {self.batch_size}, "
                f"{self.max_length})")


def bf16_available() -> bool:
    """Whether training autocasts to bf16 here: `mclab.device` decides (GPU with bf16)."""
    return choose_device().bf16


def new_run_dir(name: str) -> Path:
    """A fresh folder for a run's outputs; an earlier run is never overwritten."""
    root = get_settings().runs_dir
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        folder = root / (f"{stamp}-{name}" if i == 0 else f"{stamp}-{name}-{i}")
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:
            continue
        except OSError as err:
            raise TrainingInputError(
                f"cannot create a run folder under {root} ({err.strerror}); set MCLAB_RUNS "
                "to a writable folder") from None
    raise TrainingInputError(f"too many runs named {name!r} this second under {root}")


def micro_batch_args(batch_size: int, micro_batch: int | None, processes: int = 1) -> dict:
    """Trainer arguments that give each optimizer step `batch_size` rows in all.

    The rows are split among `processes` (the GPUs of `accelerate launch`), then each
    process's share into passes of `micro_batch` rows with accumulated gradients:
    batch_size = per_device_train_batch_size x processes x gradient_accumulation_steps.
    So a recipe's batch, and with it its updates, stays the same on one CPU or eight GPUs.
    """
    if processes < 1 or batch_size % processes:
        raise TrainingInputError(
            f"batch_size {batch_size} cannot be split evenly among {processes} processes; "
            f"launch a number of processes that divides it (e.g. {_divisor(batch_size)})")
    share = batch_size // processes
    if micro_batch is None or micro_batch >= share:
        return {"per_device_train_batch_size": share, "gradient_accumulation_steps": 1}
    if micro_batch < 1 or share % micro_batch:
        raise TrainingInputError(f"micro_batch {micro_batch} must divide each process's share "
                                 f"of the batch ({batch_size} / {processes} = {share})")
    return {"per_device_train_batch_size": micro_batch,
            "gradient_accumulation_steps": share // micro_batch}


def _divisor(n: int) -> str:
    return " or ".join(str(d) for d in (1, 2, 4, 8) if n % d == 0)


def effective_batch(args) -> int:
    """Rows per optimizer step of built Trainer arguments, over every process."""
    return (args.per_device_train_batch_size * args.gradient_accumulation_steps
            * max(1, args.world_size))


def cpu_args(config_cls, cfg: TrainConfig, output_dir: Path, **extra):
    """A trl/transformers config for this machine: the device and precision `mclab.device`
    chose (fp32 on CPU, bf16 autocast on a GPU that has it), no checkpointing by default.

    The Trainer puts the model on its own device: the CPU when MCLAB_DEVICE resolves to
    the CPU, else the first visible accelerator (CUDA_VISIBLE_DEVICES picks which GPU), or
    under `accelerate launch` each process's own GPU. The step's `cfg.batch_size` rows are
    split among the launched processes (`micro_batch_args`), so the recipe's batch holds.
    """
    settings = get_settings()
    choice = choose_device()
    on_gpu = choice.device.type == "cuda"
    kwargs = dict(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        num_train_epochs=cfg.epochs,
        **micro_batch_args(cfg.batch_size, cfg.micro_batch, num_processes()),
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optimizer,
        lr_scheduler_type="linear",
        **{checkpointing_argument(config_cls): cfg.gradient_checkpointing},
        bf16=choice.bf16,
        fp16=False,
        use_cpu=choice.device.type == "cpu",
        seed=settings.seed if cfg.seed is None else cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        dataloader_pin_memory=on_gpu,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=False,
    )
    kwargs.update(extra)
    return config_cls(**kwargs)


class LossHistory(TrainerCallback):
    """Records every logged value (loss, reward, ...) with its step, for plotting."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.rows.append({"step": state.global_step, **logs})


@dataclass
class TrainResult:
    model: object = field(repr=False)
    history: list[dict] = field(repr=False)
    seconds: float
    steps: int
    tokens: int  # non-padding tokens seen
    run_dir: Path
    curves: LiveCurves | None = field(default=None, repr=False)  # what was drawn while training
    best_step: int | None = None  # early stopping: the step whose weights the model holds

    @property
    def losses(self) -> list[float]:
        return [row["loss"] for row in self.history if "loss" in row]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def live_curves(trainer, cfg: TrainConfig, keys=("loss", "eval_loss")) -> LiveCurves:
    """The trainer's `LiveCurves` (one the caller passed, with its probes), else a new one.

    `cfg.live` decides whether it draws: None draws only inside a notebook, so the report
    and the tests record the curves without a display.
    """
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, LiveCurves):
            if cfg.live is not None:
                callback.live = cfg.live
            return callback
    curves = LiveCurves(keys=keys, live=cfg.live)
    trainer.add_callback(curves)
    return curves


def run_trainer(trainer, cfg: TrainConfig, run_dir: Path,
                curves=("loss", "eval_loss")) -> TrainResult:
    """Train with a loss recorder, live curves (`curves`: the logged keys drawn) and a
    clock; the shared tail of every method."""
    history = LossHistory()
    trainer.add_callback(history)
    live = live_curves(trainer, cfg, curves)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    state = trainer.state
    (run_dir / "train_config.json").write_text(_json(asdict(cfg)))
    best_step = None
    if cfg.patience:  # the best weights are loaded; their checkpoints are no longer needed
        best_step = state.best_global_step
        for checkpoint in run_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
    return TrainResult(trainer.model, history.rows, seconds, state.global_step,
                       int(state.num_input_tokens_seen or 0), run_dir, live, best_step)


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=1, default=str)


def check_sft_rows(dataset) -> None:
    """Every row needs a prompt and an assistant answer (or plain text for LM training)."""
    if dataset is None or len(dataset) == 0:
        raise TrainingInputError("the training dataset is empty; give it at least one row")
    columns = set(dataset.column_names)
    if "text" in columns:
        return
    if not {"prompt", "completion"} <= columns:
        raise TrainingInputError(
            f"training rows need 'prompt' and 'completion' (chat messages) or 'text'; got "
            f"columns {sorted(columns)}. Build them with mclab.training.chat_example().")
    for i, row in enumerate(dataset):
        completion = row["completion"]
        if not completion or completion[-1].get("role") != "assistant" \
                or not str(completion[-1].get("content", "")).strip():
            raise TrainingInputError(
                f"row {i} has no assistant turn with content in 'completion'; each example "
                "must end with the answer the model should learn")


def chat_example(user: str, assistant: str, system: str | None = None) -> dict:
    """One supervised example in trl's conversational prompt/completion form."""
    from .generation import to_messages

    return {"prompt": to_messages(user, system),
            "completion": [{"role": "assistant", "content": assistant}]}


def chat_dataset(examples: list[dict]):
    """A `datasets.Dataset` of `chat_example` rows, checked (`check_sft_rows`)."""
    from datasets import Dataset

    dataset = Dataset.from_list(list(examples))
    check_sft_rows(dataset)
    return dataset


def _lean_sft_trainer_class():
    """SFTTrainer with the loss a plain PyTorch loop computes, and nothing else per step.

    trl 1.16 computes the loss through a fused, tiled LM head that also yields the entropy
    and top-1 accuracy of every token for its logs; on a CPU the tiles run as torch ops
    (extra passes over batch x length x vocabulary, the head's matmul redone in backward).
    This variant computes the model's own cross-entropy, as a plain loop does (same loss:
    tests/test_finetuning.py), with the output head applied only at the positions that
    have a label (`compat.loss_at_labelled_positions`, since issue 15's lever L6; before,
    the model's forward computed the logits of every position). It is opt-in
    (`TrainConfig.lean_loss`) because it holds the logits of the labelled positions (3 x
    those tokens x vocabulary x 4 bytes) that the fused head avoids, and memory is the
    tighter budget here; at 2 rows a pass it weighs less than the fused head's work, so the
    LoRA and adapter-layer recipes use it (`recipes.ADAPTER_FRUGAL`). Speed on a quiet
    2-core machine, measured before L6 (tools/bench_training.py, batch 8 x 128, every token
    labelled, reports/bench_training.json): full fine-tuning 1.19x a plain PyTorch loop with
    this loss, 0.87x with trl's; LoRA 1.00x and 0.87x.
    """
    from trl import SFTTrainer

    class LeanSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            forward = {k: v for k, v in inputs.items() if k != "labels"}
            forward["use_cache"] = False
            # With micro-batches the Trainer skips its 1/accumulation scaling when the model
            # takes the count: the loss is then summed over the step's tokens and divided by
            # their count, as transformers' own compute_loss has the model do (and scaled by
            # the number of processes, whose tokens the count also covers).
            count = num_items_in_batch if accepts_loss_kwargs(self) else None
            # the model's own shifted cross-entropy, its head applied only where a label is
            loss, outputs = loss_at_labelled_positions(model, forward, labels, count)
            if count is not None:
                loss = loss * loss_scale_across_processes(self)
            return (loss, outputs) if return_outputs else loss

    return LeanSFTTrainer


def _planned_steps(cfg: TrainConfig, n_rows: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(math.ceil(n_rows / cfg.batch_size) * cfg.epochs))


def eval_args(cfg: TrainConfig, n_rows: int) -> dict:
    """Evaluate every `cfg.eval_steps` steps, or about five times over the run."""
    every = cfg.eval_steps or max(1, _planned_steps(cfg, n_rows) // 5)
    return {"eval_strategy": "steps", "eval_steps": every,
            "per_device_eval_batch_size": cfg.batch_size}


def early_stopping_args(every: int, metric: str = "eval_loss",
                        higher_is_better: bool = False) -> dict:
    """transformers' own early stopping: keep a checkpoint (weights only, or only the
    adapter) at each evaluation, stop after `cfg.patience` evaluations without a better
    `metric` (a lower eval_loss by default; `EarlyStoppingCallback`), and load the best
    checkpoint at the end."""
    return {"save_strategy": "steps", "save_steps": every, "save_only_model": True,
            "save_total_limit": 1, "load_best_model_at_end": True,
            "metric_for_best_model": metric, "greater_is_better": higher_is_better}


def fit(trainer_cls, config_cls, model, tokenizer, train_dataset, cfg: TrainConfig, *,
        eval_dataset=None, peft_config=None, callbacks=None, args: dict | None = None,
        curves=("loss", "eval_loss"), stop_on: tuple[str, bool] = ("eval_loss", False),
        **trainer_kwargs) -> TrainResult:
    """The one training core that SFT, CPT, prefix tuning, DPO and GRPO go through.

    It owns what every method shares: the run folder, the CPU-safe arguments (`cpu_args`)
    with micro-batches from `cfg`, the eval cadence, the loss recorder and clock, the live
    curves (`curves`: which logged values a notebook sees drawn while it trains; a
    `LiveCurves` among `callbacks` is used instead), eval mode afterwards, and saving
    (`cfg.save`), and early stopping (`cfg.patience`, on `eval_dataset`'s loss, or on the
    evaluation's `stop_on` = (metric, higher is better): GRPO's validation reward). A trainer
    passes only what is its own: its trl
    classes, its config fields (`args`) and trainer arguments (`trainer_kwargs`). The
    caller checks its rows first, so bad input fails before any of this starts.
    """
    cfg.validate()
    release_memory()  # models and trainers dropped since the last run: their memory back first
    if cfg.patience and eval_dataset is None:
        raise TrainingInputError(f"patience={cfg.patience} stops on a validation set: pass "
                                 "eval_dataset (held-out training rows, never the eval)")
    if cfg.step_in_backward and num_processes() > 1:
        import warnings

        warnings.warn(f"step_in_backward is off under {num_processes()} processes: a weight "
                      "updated in the backward pass would not wait for the processes to "
                      "average its gradient. The update is the same; only the memory it "
                      "saves is lost.", stacklevel=2)
        cfg = replace(cfg, step_in_backward=False)
    if peft_config is None and not is_peft(model):
        warn_if_no_room_to_save(model)
    run_dir = new_run_dir(cfg.run_name)
    extra = dict(args or {})
    callbacks = list(callbacks or [])
    if eval_dataset is not None:
        extra.update(eval_args(cfg, len(train_dataset)))
    if cfg.patience:
        from transformers import EarlyStoppingCallback

        extra.update(early_stopping_args(extra["eval_steps"], *stop_on))
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.patience))
    trainer = trainer_cls(model=model, args=cpu_args(config_cls, cfg, run_dir, **extra),
                          train_dataset=train_dataset, eval_dataset=eval_dataset,
                          processing_class=tokenizer, peft_config=peft_config,
                          callbacks=callbacks, **trainer_kwargs)
    step_hooks = None
    if cfg.step_in_backward:
        from .backward_step import StepInBackward

        step_hooks = StepInBackward(trainer)
        trainer.add_callback(step_hooks)
    trainer.model.train()
    on_cpu = choose_device().device.type == "cpu"
    try:
        with lm_head_tile(LM_HEAD_TILE_ON_CPU if on_cpu else None):  # trl's loss, smaller tiles
            result = run_trainer(trainer, cfg, run_dir, curves)
    finally:  # an interrupted run leaves no hook on the model
        if step_hooks is not None:
            step_hooks.remove()
    if cfg.gradient_checkpointing:  # the model goes back as it came, recomputation off: a
        result.model.gradient_checkpointing_disable()  # later run (05's DPO) sets its own
    del trainer  # nothing else holds its optimizer state: the trim below returns it
    release_memory()
    result.model.eval()
    if cfg.save or (cfg.save is None and is_peft(result.model)):
        save_model(result.model, None, run_dir)  # atomic, after a disk check
    return result


def train_sft(model, tokenizer, dataset, cfg: TrainConfig | None = None, peft_config=None,
              eval_dataset=None, callbacks=None) -> TrainResult:
    """Supervised training with trl's SFTTrainer, loss on the completion only.

    `dataset` has `prompt`/`completion` message lists (see `chat_example`), or a `text`
    column for plain causal-LM training (continued pre-training). With `eval_dataset`, the
    eval loss is logged about five times (or every `cfg.eval_steps`) as `eval_loss`.
    `callbacks` are extra transformers `TrainerCallback`s.
    """
    from trl import SFTConfig, SFTTrainer

    cfg = cfg or TrainConfig()
    cfg.validate()
    check_sft_rows(dataset)
    if eval_dataset is not None:
        check_sft_rows(eval_dataset)
    args = {"max_length": cfg.max_length, "packing": False}
    if eval_dataset is not None:
        args["prediction_loss_only"] = True
    return fit(_lean_sft_trainer_class() if cfg.lean_loss else SFTTrainer, SFTConfig, model,
               tokenizer, dataset, cfg, eval_dataset=eval_dataset, peft_config=peft_config,
               callbacks=callbacks, args=args)


def warn_if_no_room_to_save(model) -> None:
    """Before a long run: warn if the runs folder's disk could not hold this model's save."""
    import warnings

    try:
        check_free_space(get_settings().runs_dir, model_bytes(model), "saving this model")
    except DiskSpaceError as err:
        warnings.warn(f"{err} Training goes on; only saving would fail.", stacklevel=3)


def save_model(model, tokenizer, run_dir: Path, name: str = "model") -> Path:
    """Write a trained model (or only its PEFT adapter) to `run_dir/name`, atomically.

    The disk's free space is checked first (DiskSpaceError, nothing written). Everything is
    written to a temporary folder beside the target, then moved into place with one
    `os.replace`: a crash mid-save never leaves a half-written model behind.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TrainingInputError(f"run folder {run_dir} does not exist; use result.run_dir")
    target = run_dir / name
    kind = "the adapter" if is_peft(model) else "the model"
    check_free_space(run_dir, model_bytes(model), f"saving {kind} to {target}")
    with atomic_path(target, folder=True) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        meta = {"kind": "peft-adapter" if is_peft(model) else "full-model",
                "saved": datetime.now().isoformat(timespec="seconds")}
        (tmp / "mclab-saved.json").write_text(_json(meta))
    return target


def load_saved(path: Path, base_model=None):
    """Load what `save_model` wrote: (model, tokenizer), in eval mode on the MCLAB_DEVICE device.

    An adapter is attached to `base_model` if given, else to a freshly loaded foundation model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "mclab-saved.json").is_file():
        raise TrainingInputError(f"{path} holds no model saved by mclab.training.save_model")
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        from .models import load_model

        if base_model is None:
            base_model, tokenizer = load_model()
        else:
            tokenizer = AutoTokenizer.from_pretrained(path)
        model = PeftModel.from_pretrained(base_model, path)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.to(choose_device().device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer
