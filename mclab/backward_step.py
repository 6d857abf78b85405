"""The optimizer step inside the backward pass, for full-weight training in little memory.

A plain training step holds a gradient for every weight until the optimizer has read them
all: for the 135M model that is 540 MB beside the weights, the largest single cost of
full-weight training on a 2 GB machine. Here each weight is updated as soon as its gradient
is complete (PyTorch's `register_post_accumulate_grad_hook`, as in its tutorial "How to save
memory by fusing the optimizer step into the backward pass"), and the gradient is dropped at
once, so only the weights being updated have a gradient at any moment.

Two things a plain step does become impossible, so a recipe that uses this says so in its own
settings (`TrainConfig.validate` refuses it otherwise):
- no gradient accumulation: the step's whole batch goes through one forward and backward pass
  (each weight's gradient must be final when its hook runs);
- no clipping of the gradients' global norm (`max_grad_norm=0`): that norm is known only once
  every gradient exists. Adafactor, the course's full-weight optimizer, clips each update by
  its own root mean square instead and divides each gradient by its running scale, so it
  depends little on the gradients' overall size (its first step not at all).

The update is otherwise the Trainer's own: the same optimizer object, its state and its
learning-rate schedule (tests/test_training.py checks the weights against a plain step).
"""

from __future__ import annotations

from transformers import TrainerCallback

from .compat import decoder_layers
from .measure import trim_heap

# Give the heap's free pages back after about this many bytes of weights have been updated
# (about 8 times per step for the 135M model). The backward pass frees blocks of a few MB
# (each layer's recomputed activations, each weight's gradient and the optimizer's
# temporaries) at different moments, and glibc keeps the holes resident: measured once on 6
# full-weight steps of 8 x 128 tokens, training added 841 MB over the model without trimming
# and 488 MB trimming every 45 weights (about this cadence), in no more time
# (docs/performance.md).
TRIM_EVERY_BYTES = 64 * 2**20
# ...and after the forward pass of every third decoder layer (the installed transformers
# checkpoints a layer's `forward`, so its recomputation in the backward pass does not run the
# hook; where a version does, it trims twice as often): the forward leaves the same kind of
# holes between the activations it keeps, and the step's peak comes right after it, when the
# loss starts its backward pass. Measured on 6 CPT steps of 8 x 128 tokens, alone: training
# added 744 and 770 MB over the model without it (50.8 and 47.3 s), 506 and 619 MB trimming
# after layers 0, 3, ..., 27 (50.4 and 48.4 s), and 584 MB as here, after layers 2, 5, ...,
# 29 (46.6 s, one run; docs/performance.md).
TRIM_EVERY_LAYERS = 3


def _trim_while_training(module, *_) -> None:
    """A decoder layer's forward hook: trim the heap after its forward pass in training only.
    A validation pass keeps no activations for a backward pass, so its peak is small, and an
    early-stopped run evaluates often: every validation batch would trim once per few layers."""
    if module.training:
        trim_heap()


class StepInBackward(TrainerCallback):
    """Steps `trainer`'s optimizer from each trainable weight's gradient hook.

    The optimizer steps every weight that holds a gradient, and the hook drops its weight's
    gradient right after, so each call updates exactly the weight whose gradient has just
    been completed. The Trainer's own `optimizer.step()` after the backward pass then finds
    no gradient left and does nothing; its scheduler still sets the learning rate per step.
    While it trains, the heap's free pages go back to the system every `TRIM_EVERY_BYTES` of
    updated weights and after every `TRIM_EVERY_LAYERS`-th decoder layer's forward pass.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.handles = []

    def on_train_begin(self, args, state, control, **kwargs):
        optimizer = self.trainer.optimizer
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        updated = [0]

        def step(param):
            optimizer.step()
            param.grad = None
            updated[0] += param.numel() * param.element_size()
            if updated[0] >= TRIM_EVERY_BYTES:
                updated[0] = 0
                trim_heap()

        self.handles = [param.register_post_accumulate_grad_hook(step)
                        for param in self.trainer.model.parameters() if param.requires_grad]
        every = TRIM_EVERY_LAYERS
        self.handles += [layer.register_forward_hook(_trim_while_training)
                         for layer in decoder_layers(self.trainer.model)[every - 1::every]]

    def on_log(self, args, state, control, logs=None, **kwargs):
        # the Trainer measures the gradients' norm after the backward pass, when none is
        # left: its 0 is not a norm, so the run's history does not record it (the Trainer's
        # own log and progress bar still print it)
        if logs is not None and not logs.get("grad_norm"):
            logs.pop("grad_norm", None)

    def on_train_end(self, args, state, control, **kwargs):
        self.remove()

    def remove(self) -> None:
        """Take the hooks off the weights. `fit` also calls it when training stops on an error
        (an interrupted cell, a full disk): hooks left behind would step this run's optimizer
        from the next run's backward pass and drop the gradients that run's optimizer needs."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        self.trainer = None  # no cycle left between the trainer and this callback
