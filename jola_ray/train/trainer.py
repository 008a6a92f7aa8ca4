"""TRL trainers that train only the edit: penalty added to the loss, edit-only checkpoints.

``EditTrainerMixin`` goes in front of ``SFTTrainer`` or ``DPOTrainer``. It

- adds the method's penalty (JoLA's expected-L0 gate penalty, LoFiT stage 1's L1) to the
  training loss, scaled for gradient accumulation the way each TRL trainer expects, and logs
  the task loss and the penalty separately (``train_task_loss``, ``train_penalty``); evaluation
  losses stay the task loss alone;
- stops the run with ``TrainingError`` naming the step when the loss is not finite;
- saves only the edit's tensors (``edit_params.safetensors``) in each checkpoint and loads only
  them on resume; the Trainer adds ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth`` and
  ``trainer_state.json`` (all small: only edit parameters are in the optimizer);
- builds the learning-rate schedule of ``schedules.LRSchedule`` as a per-step ``LambdaLR``;
- on SFT, computes the task loss with logits at the answer positions only
  (``jola_ray.evaluation.answer_loss.answer_nll``) instead of TRL's fused LM head, which on a
  device without Triton scores every position and adds entropy and top-1 statistics: the same
  value and gradient, at the cost of the answer tokens' logits alone;
- with ``eval_in_callback`` set (SFT), skips the Trainer's own evaluation loop and only fires
  the ``on_evaluate`` callbacks: the run's single dev pass there yields the dev loss and the
  dev score together, so the dev split is not run twice per epoch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from jola_ray.errors import TrainingError

EDIT_STATE_FILE = "edit_params.safetensors"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors of ``model`` (the edit's), detached CPU copies, by parameter name."""
    return {
        name: p.detach().cpu().clone().contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` into the model's trainable parameters; every name must match."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise TrainingError(
            f"edit checkpoint does not match this run's edit: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]} (was it written by another method or model?)"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name].to(device=p.device, dtype=p.dtype))


def with_penalty(
    task_loss: torch.Tensor, penalty_fn: Callable | None, step: int, ga: int, where: str
) -> tuple[torch.Tensor, float]:
    """``(loss, penalty value)``: the task loss plus the step's penalty divided over the ``ga``
    micro-batches of an optimizer step; a non-finite loss is a ``TrainingError`` naming the
    step and ``where`` (the epoch, or a pack member). Shared by the single and packed steps."""
    loss = task_loss
    penalty_value = 0.0
    if penalty_fn is not None:
        penalty = penalty_fn(step)
        penalty_value = float(penalty.detach())
        loss = task_loss + penalty.to(task_loss.device, task_loss.dtype) / ga
    if not torch.isfinite(loss.detach()).all():
        raise TrainingError(
            f"non-finite training loss at step {step + 1} ({where}): "
            f"task loss {float(task_loss.detach()):.4g}, penalty {penalty_value:.4g}; "
            "try a lower lr, dtype fp32, or a smaller gate_lambda"
        )
    return loss, penalty_value


class EditTrainerMixin:
    """Mixin for a TRL trainer over a model whose only trainable parameters are the edit's.

    Built with ``plan``: ``plan(num_train_rows) -> (lr_schedule, penalty_fn)``, called once the
    trainer has prepared (and length-filtered) its training rows; ``lr_schedule`` is a
    ``schedules.LRSchedule``, ``penalty_fn`` maps the global step to the weighted penalty tensor
    (None: no penalty).
    """

    penalty_fn: Callable[[int], torch.Tensor] | None = None
    lr_schedule = None
    answer_only = False  # SFT: the task loss from the answer positions' logits only
    eval_in_callback = False  # the epoch callback's dev pass replaces the evaluation loop

    def _answer_only_loss(self, model, inputs, num_items_in_batch):
        """SFT's loss, ``sum(-log p(label)) / num_items_in_batch`` (the micro-batch's label
        count when None), from the answer positions' logits alone."""
        from jola_ray.evaluation.answer_loss import answer_nll

        extra = {k: inputs[k] for k in ("position_ids",) if k in inputs}
        nll, count = answer_nll(
            model,
            inputs["input_ids"],
            inputs["labels"],
            attention_mask=inputs.get("attention_mask"),
            **extra,
        )
        denom = count.clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        loss = nll / torch.as_tensor(denom, device=nll.device)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients
        return loss

    def __init__(self, *args, plan: Callable | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if plan is not None:
            self.lr_schedule, self.penalty_fn = plan(len(self.train_dataset))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.answer_only and model.training and not return_outputs and _has_head(model):
            out = self._answer_only_loss(model, inputs, num_items_in_batch)
        else:
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        task_loss = out[0] if return_outputs else out
        if not model.training:
            return out  # dev loss: the task loss alone, without the penalty
        step = self.state.global_step
        # GA scaling: SFT returns a loss already divided over the optimizer step's label tokens
        # (not divided again by the Trainer), so a per-step term is divided by the number of
        # micro-batches here; DPO's loss is divided by the Trainer (loss_is_scaled_for_ga=False).
        ga = 1
        if self.loss_is_scaled_for_ga is not False and num_items_in_batch is not None:
            ga = self.current_gradient_accumulation_steps
        loss, penalty_value = with_penalty(
            task_loss, self.penalty_fn, step, ga, f"epoch {self.state.epoch or 0:.2f}"
        )
        self._metrics["train"]["task_loss"].append(float(task_loss.detach()) * ga)
        self._metrics["train"]["penalty"].append(penalty_value)
        return (loss, out[1]) if return_outputs else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        if not self.eval_in_callback:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        # The run's dev pass (in the epoch callback) computes what evaluation reads; the
        # Trainer's own loop over the dev split would be a second pass. That loop's DataLoader
        # iterator drew one int64 from the global generator (torch's ``_get_shared_seed``);
        # draw it too, so the training noise after each epoch (gates, shuffling) stays the
        # stream it was and results do not change with the loop gone.
        torch.empty((), dtype=torch.int64).random_()
        metrics = {"epoch": self.state.epoch}
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, self.lr_schedule)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Write only the edit's tensors (kilobytes), never the frozen base model."""
        from safetensors.torch import save_file

        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        save_file(trainable_state(self.model), os.path.join(output_dir, EDIT_STATE_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from safetensors.torch import load_file

        path = os.path.join(resume_from_checkpoint, EDIT_STATE_FILE)
        if not os.path.isfile(path):
            raise TrainingError(
                f"{resume_from_checkpoint}: no {EDIT_STATE_FILE}; not a checkpoint of this run"
            )
        load_trainable_state(model or self.model, load_file(path))


def _has_head(model) -> bool:
    from jola_ray.evaluation.answer_loss import supports_answer_nll

    return supports_answer_nll(model)


def steps_per_epoch(num_examples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps per epoch, as the Trainer counts them."""
    batches = math.ceil(num_examples / batch_size)
    return max(1, math.ceil(batches / grad_accum))


def make_trainer_class(kind: str):
    """``EditTrainerMixin`` over ``SFTTrainer`` (kind "sft") or ``DPOTrainer`` (kind "dpo")."""
    if kind == "sft":
        from trl import SFTTrainer

        return type("EditSFTTrainer", (EditTrainerMixin, SFTTrainer), {"answer_only": True})
    from trl import DPOTrainer

    return type("EditDPOTrainer", (EditTrainerMixin, DPOTrainer), {})
