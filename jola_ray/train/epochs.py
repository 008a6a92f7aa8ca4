"""The end of every epoch: dev metrics, adaptive learning rate, early stopping, checkpoint, report.

The Trainer (``eval_strategy``/``save_strategy`` "epoch") logs the epoch's training losses,
evaluates, then saves a checkpoint. This callback hooks in between: ``on_log`` keeps the
training losses, ``on_evaluate`` runs the epoch's single dev pass (``dev_eval``: the dev score
and, for SFT, the dev loss where it is free or needed; the SFT trainer skips its own loop over
the dev split, a DPO trainer's dev loss comes from that loop's ``eval_loss``), updates early
stopping and keeps the best epoch's edit in memory, and ``on_save`` (after the Trainer's checkpoint is on disk) adds ``run_state.json`` and
``best_edit.safetensors`` to that checkpoint and calls ``report(metrics, checkpoint_dir)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from jola_ray.train.state import RunState
from jola_ray.train.trainer import trainable_state


class EpochEnd(TrainerCallback):
    """Per-epoch evaluation, early stopping and reporting for one training stage.

    Args:
        state: the run state (restored from a checkpoint on resume), updated in place.
        dev_eval: () -> dict of dev metrics (``dev_<metric>``, ``dev_score``, and ``dev_loss``
            when the pass computed it).
        handle: the attached method (its ``epoch_metrics()``, e.g. ``open_gate_fraction``).
        schedule: the ``LRSchedule`` (its adaptive heuristic sees the dev loss).
        select_metric: ``"dev_score"`` (higher is better) or ``"dev_loss"`` (lower is better).
        patience: epochs without improvement before stopping (0: never stop early).
        report: called as ``report(metrics, checkpoint_dir)`` after each checkpoint, or None.
        decorate: metrics -> metrics, applied before reporting (adds earlier stages' keys).
        wall_start: ``time.time()`` when this process started training.
    """

    def __init__(
        self,
        state: RunState,
        dev_eval: Callable[[], dict],
        handle,
        schedule,
        select_metric: str,
        patience: int,
        report: Callable[[dict, str], None] | None,
        decorate: Callable[[dict], dict] = lambda m: m,
        wall_start: float | None = None,
    ) -> None:
        self.state = state
        self.dev_eval = dev_eval
        self.handle = handle
        self.schedule = schedule
        self.select_metric = select_metric
        self.patience = patience
        self.report = report
        self.decorate = decorate
        self.wall_start = wall_start or time.time()
        self.wall_before = state.wall_s
        self.trainer = None  # set by the caller after the trainer exists
        self._train_logs: dict = {}
        self._pending: dict | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "task_loss" in logs:
            self._train_logs = dict(logs)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        dev = self.dev_eval()
        dev_loss = dev.pop("dev_loss", None)
        if dev_loss is None and "eval_loss" in metrics:  # DPO: the trainer's own dev loss
            dev_loss = float(metrics["eval_loss"])
        logs = self._train_logs
        m = epoch_row(
            state,
            train_loss=logs.get("task_loss", float("nan")),
            train_penalty=logs.get("penalty", 0.0),
            dev=dev,
            dev_loss=dev_loss,
            edit_metrics=self.handle.epoch_metrics(),
            train_lr=logs.get("learning_rate", float("nan")),
        )
        close_epoch(
            self.state, m, dev_loss, self.schedule, self.trainer, self.select_metric, self.patience
        )
        if self.state.stopped:
            control.should_training_stop = True
        self._pending = m
        return control

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.state.wall_s = self.wall_before + (time.time() - self.wall_start)
        self.state.tokens = int(state.num_input_tokens_seen or 0)
        self.state.save(checkpoint)
        if self.report is not None and self._pending is not None:
            self.report(self.decorate(dict(self._pending)), str(checkpoint))
        self._pending = None
        return control


def epoch_row(
    state, *, train_loss, train_penalty, dev: dict, dev_loss, edit_metrics: dict, train_lr
) -> dict:
    """One epoch's result row (``state``: the Trainer's state at the epoch's end), in the
    layout every run reports, a single trial's and a pack member's alike."""
    return {
        "epoch": int(round(state.epoch or 0)),
        "step": state.global_step,
        "train_loss": float(train_loss),
        "train_penalty": float(train_penalty),
        **({} if dev_loss is None else {"dev_loss": float(dev_loss)}),
        **dev,
        **edit_metrics,
        "train_lr": float(train_lr),
        "run_status": "running",
    }


def close_epoch(
    run_state: RunState, row: dict, dev_loss, schedule, trainer, select_metric, patience
) -> None:
    """What follows an epoch's row for one run (the edit attached alone): the adaptive
    schedule sees the dev loss (a cut applies from the next step), then ``run_state`` keeps the
    best epoch and counts patience."""
    if schedule is not None and dev_loss is not None and schedule.on_dev_loss(dev_loss):
        _apply_schedule_now(trainer)
    run_state.end_epoch(row, select_metric, patience, lambda: trainable_state(trainer.model))


def _apply_schedule_now(trainer) -> None:
    """After the adaptive schedule cut the rate, set it for the next step at once.

    ``LambdaLR`` computed the next step's rate before the cut; recompute it.
    """
    sched = trainer.lr_scheduler
    for group, base, fn in zip(
        trainer.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True
    ):
        group["lr"] = base * fn(sched.last_epoch)
    sched._last_lr = [g["lr"] for g in trainer.optimizer.param_groups]
