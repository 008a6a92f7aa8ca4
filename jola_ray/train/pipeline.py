"""One fine-tuning run as a recipe: setup, the method's stages, test, cleanup.

``run(cfg, report, resume_from)`` is the whole of a trial. It knows nothing of Ray (the sweep
passes ``report(metrics, checkpoint_dir)``, called after every epoch with that epoch's edit-only
checkpoint and once at the end with ``run_status: "finished"`` and the final directory holding
``metrics.json``, ``predictions.jsonl``, ``gates.csv`` and ``edit.safetensors``), and it names no
method: ``jola_ray.methods.registry`` gives the method's stages (``methods/base.py``).

- Each stage attaches its handle, trains it (TRL, the run's schedule, the handle's penalty,
  early stopping, edit-only checkpoints) and, before the next stage, restores its best epoch,
  hands on what the next stage needs (``Stage.finish``: e.g. LoFiT's top-K heads) and is
  removed; the base model must then be bitwise the base again. Only the last stage reports per
  epoch; earlier stages' best metrics ride along under their prefix (``s1_*``).
- No stages (zero-shot): the untouched model is evaluated once and reported with ``epoch`` 0.
- The final report carries every resolved setting of the run (``resolved``) beside its metrics,
  and the data it really used: the split sizes (``examples_*``, ``short_splits`` when a split is
  smaller than asked) and what fitting examples to ``max_length`` did (``max_length_used``,
  ``train_truncated``, ...; nothing is dropped). ``config.yaml`` is headed by the same record.
- Bad data fails before the output folder is written, or (found late) leaves ``FAILED`` in it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from jola_ray.errors import DataError, TrainingError
from jola_ray.evaluation.results import write_results
from jola_ray.train.config import RunConfig
from jola_ray.train.cost import CostMeter
from jola_ray.train.state import RunState, check_checkpoint

log = logging.getLogger(__name__)

Report = Callable[[dict, str], None]
FINAL_DIR = "final"
FAILED_FILE = "FAILED"  # written into the output dir when bad data stops a started run
FINAL_FILES = ("metrics.json", "predictions.jsonl", "gates.csv", "edit.safetensors")


@dataclass
class _Run:
    """Everything one run's stages share."""

    cfg: RunConfig
    task: object
    splits: object
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    out: Path
    report: Report | None
    cost: CostMeter
    datasets: dict = field(default_factory=dict)  # kind -> (train, dev), built once per run
    fit: dict = field(default_factory=dict)  # what fitting examples to max_length did (metrics)
    resident: object = None  # a worker's Resident: model and data kept between trials


def run(
    cfg: RunConfig,
    report: Report | None = None,
    resume_from: str | None = None,
    *,
    task=None,
    splits=None,
    resident=None,
) -> dict:
    """Train and test one configuration; return the final metrics.

    Args:
        cfg: the validated run config.
        report: ``report(metrics, checkpoint_dir)``, called after each epoch and at the end.
        resume_from: a checkpoint directory a previous report received; the run continues
            from it to the same result as an uninterrupted run.
        task, splits: use these instead of the registry's task and ``load_splits`` (tests,
            custom data already in memory).
        resident: a ``resident.Resident`` (a sweep worker's): the base model, splits and
            tokenized datasets come from it when it holds them, and the run leaves the model
            exactly as the base again (its method removed) with the trial's memory released.

    Raises:
        TrainingError: non-finite loss (naming the step), out of memory (naming the batch size
            and model), or a checkpoint that does not fit this run.
    """
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    out = Path(cfg.output_dir)
    resumed = None
    if resume_from is not None:
        resumed = check_checkpoint(resume_from)  # CheckpointError names a missing or bad file
        if resumed.finished:
            return json.loads((Path(resume_from) / "metrics.json").read_text())

    from transformers import set_seed

    from jola_ray.methods import registry

    stages = registry.get(cfg.method).stages(cfg.method_config)
    if task is None:
        from jola_ray.data import get_task

        task = get_task(cfg.task)
    if splits is None:
        # a method without stages reads dev (when there is one) and test: a test-only folder
        # will do (and nothing is kept: a worker keeps the splits of trained runs)
        splits = run_splits(cfg, task, resident if stages else None, trained=bool(stages))
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # per-split map() bars of TRL's dataset preparation
    set_seed(cfg.seed)
    from jola_ray.train.loading import load_model_and_tokenizer

    if resident is None:
        model, tok, device = load_model_and_tokenizer(cfg)
    else:
        model, tok, device = resident.base_model(cfg, load_model_and_tokenizer)
    ctx = _Run(cfg, task, splits, model, tok, device, out, report, CostMeter(device))
    ctx.resident = resident
    if splits.train or splits.dev:
        _datasets(ctx, task.training)  # bad data fails here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    _write_config(ctx, out / "config.yaml")
    try:
        if not stages:
            return _untrained(ctx)
        return _recipe(ctx, stages, resumed, resume_from)
    except torch.OutOfMemoryError as err:
        oom = TrainingError(
            f"CUDA out of memory: model {cfg.model} ({cfg.dtype}, quantization {cfg.quantization}), "
            f"batch_size {cfg.batch_size}, eval_batch_size {cfg.eval_batch_size}, max_length "
            f"{ctx.fit.get('max_length_used', cfg.max_length)}. Lower batch_size (raise grad_accum_steps to keep the effective "
            "batch), eval_batch_size or max_length, use dtype bf16 or quantization nf4, or give "
            f"the trial more GPU memory (gpu_memory_fraction is {cfg.gpu_memory_fraction})."
        )
        oom.permanent = False  # another trial sharing the GPU may have held the memory
        raise oom from err
    except DataError as err:  # bad data found late (e.g. while scoring): say so in the folder
        (out / FAILED_FILE).write_text(f"run failed on bad data: {err}\n")
        raise
    finally:
        del ctx, model
        if resident is not None:
            resident.end_trial()


# --- the recipe ----------------------------------------------------------------------------


def _untrained(ctx: _Run, handle=None) -> dict:
    """A method without stages (the untouched model), or one whose last stage is a ``build``
    (``handle``: an edit computed from the training data, not trained): dev and test metrics,
    one report with ``epoch`` 0. A test-only source (no dev split) gives a NaN dev score."""
    if ctx.splits.dev:
        dev = _evaluate(ctx, ctx.splits.dev, "dev").metrics_prefixed  # dev_loss as trained runs
    else:  # a test-only source: no dev split to score
        log.warning("task %s: no dev examples (test-only data): dev_score is NaN", ctx.task.name)
        dev = {"dev_score": math.nan}
    test = _evaluate(ctx, ctx.splits.test, "test")
    metrics = {
        "epoch": 0,
        "step": 0,
        **dev,
        "open_gate_fraction": 0.0,
        **(handle.epoch_metrics() if handle is not None else {}),
        **test.metrics_prefixed,
        "best_epoch": 0,
        "best_dev_score": dev["dev_score"],
        "num_selected_heads": 0,
        "selected_heads": [],
        **(handle.summary() if handle is not None else {}),
        "trainable_params": sum(p.numel() for p in handle.parameters()) if handle else 0,
        "base_params": _base_params(ctx.model, handle),
        **ctx.cost.summary(steps=0, tokens=0, wall_s=0.0),
        **_data_record(ctx),
        "resolved": _resolved(ctx.cfg),
        "run_status": "finished",
    }
    final = ctx.out / FINAL_DIR
    final.mkdir(parents=True, exist_ok=True)
    _write_final(ctx, final, metrics, test.predictions, edit=handle)
    RunState(stage="none", finished=True).save(final)
    if ctx.report is not None:
        ctx.report(dict(metrics), str(final))
    if handle is not None:
        handle.remove()  # the base model again, for a worker's next trial
    return metrics


def _recipe(ctx: _Run, stages, resumed: RunState | None, resume_from: str | None) -> dict:
    """Train the method's stages in order; test and publish the last one."""
    from jola_ray.methods.base import StageContext
    from jola_ray.train.resident import base_fingerprint

    cfg = ctx.cfg
    names = [st.name for st in stages]
    if resumed is not None and resumed.stage not in names:
        raise TrainingError(
            f"resume_from: {resume_from} is a checkpoint of stage {resumed.stage!r}; method "
            f"{cfg.method} has stages {', '.join(names)}"
        )
    start = names.index(resumed.stage) if resumed is not None else 0
    carry = dict(resumed.carry) if resumed is not None else {}
    single = len(stages) == 1
    for i, stage in enumerate(stages):
        if i < start:
            continue  # an earlier stage whose outcome came with the checkpoint (``carry``)
        last = i == len(stages) - 1
        handle = stage.attach(
            StageContext(
                ctx.model, cfg.method_config, cfg.seed, carry, ctx.splits.train, ctx.tokenizer
            )
        )
        if stage.kind == "build":
            if not last:
                raise TrainingError(
                    f"{cfg.method}: a build stage ({stage.name}) must be the method's last stage"
                )
            return _untrained(ctx, handle)
        n_params = _check_trainable(ctx.model, handle)
        before = None if last else base_fingerprint(ctx.model, handle)
        lr = (stage.lr(cfg.method_config) if stage.lr else None) or cfg.lr
        here = resumed if resumed is not None and i == start else None
        earlier = {k: v for k, v in carry.get("metrics", {}).items()}
        state = _train_stage(
            ctx,
            handle,
            stage.name,
            ctx.out / ("checkpoints" if single else stage.name),
            lr=lr,
            report=ctx.report if last else None,
            decorate=(lambda m, e=earlier: {**m, **e}) if earlier else None,
            resumed=here,
            resume_from=resume_from if here is not None else None,
            carry=carry,
        )
        if last:
            return _finish(ctx, handle, state, n_params)
        if state.best_state is not None:
            from jola_ray.train.trainer import load_trainable_state

            load_trainable_state(ctx.model, state.best_state)
        handed_on = stage.finish(handle) if stage.finish else {}
        handle.remove()
        if base_fingerprint(ctx.model) != before:
            raise TrainingError(
                f"{cfg.method}: removing the {stage.name} edit did not restore the base model"
            )
        cost = dict(carry.get("cost", {"steps": 0, "tokens": 0, "wall_s": 0.0}))
        cost["steps"] += int(state.history[-1]["step"]) if state.history else 0
        cost["tokens"] += state.tokens
        cost["wall_s"] += state.wall_s
        summary = _stage_summary(stage, state)
        carry = {**carry, **handed_on, "metrics": {**earlier, **summary}, "cost": cost}
    raise AssertionError("unreachable: the last stage returns")


def _stage_summary(stage, state: RunState) -> dict:
    """An earlier stage's best-epoch metrics and cost under its prefix (``s1_dev_score``...)."""
    p = stage.prefix or f"{stage.name}_"
    last = state.history[-1] if state.history else {}
    best = state.history[state.best_epoch - 1] if state.best_epoch else last
    out = {f"{p}{k}": v for k, v in best.items() if k != "run_status"}
    out.update(
        {
            f"{p}best_epoch": state.best_epoch,
            f"{p}epochs": len(state.history),
            f"{p}steps": last.get("step", 0),
            f"{p}tokens": state.tokens,
            f"{p}wall_s": state.wall_s,
        }
    )
    return out


# --- one training stage --------------------------------------------------------------------


def _train_stage(
    ctx: _Run,
    handle,
    stage: str,
    stage_dir: Path,
    *,
    lr: float,
    report: Report | None = None,
    decorate=None,
    resumed: RunState | None = None,
    resume_from: str | None = None,
    carry: dict | None = None,
) -> RunState:
    """Train ``handle`` for up to ``epochs`` epochs with early stopping; return the stage's
    state (``carry``: what earlier stages handed on, kept in every checkpoint)."""
    from jola_ray.train.epochs import EpochEnd
    from jola_ray.train.schedules import LRSchedule
    from jola_ray.train.trainer import make_trainer_class, steps_per_epoch

    cfg = ctx.cfg
    state = resumed if resumed is not None else RunState(stage=stage, carry=carry or {})
    kind = ctx.task.training
    train_ds, dev_ds = _datasets(ctx, kind)
    callback = EpochEnd(
        state,
        dev_eval=lambda: _evaluate(ctx, ctx.splits.dev, "dev").metrics_prefixed,
        handle=handle,
        schedule=None,  # the trainer's, planned from the rows it was given
        select_metric=cfg.select_metric,
        patience=cfg.patience,
        report=report,
        decorate=decorate or (lambda m: m),
    )
    args = _trainer_args(ctx, stage_dir, lr, kind)
    trainer_cls = make_trainer_class(kind)
    quantized = bool(getattr(ctx.model, "is_quantized", False))
    reference_off = handle.disabled() if kind == "dpo" else contextlib.nullcontext()

    def plan(num_rows: int):
        """The stage's schedule and penalty, from the rows the trainer kept (known only inside
        its constructor; the SFT rows are fitted to max_length already, so none is dropped)."""
        spe = steps_per_epoch(num_rows, cfg.batch_size, cfg.grad_accum_steps)
        return LRSchedule.for_run(cfg, spe), _penalty_fn(handle, spe * cfg.epochs)

    with _allow_quantized_training(ctx.model, quantized), reference_off:
        trainer = trainer_cls(
            model=ctx.model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=dev_ds,
            processing_class=ctx.tokenizer,
            callbacks=[callback],
            plan=plan,
        )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the report callable is the run's output
    # SFT: the callback's dev pass yields the dev loss too; the Trainer's own loop is skipped
    trainer.eval_in_callback = kind == "sft"
    if quantized:  # TRL casts trainable parameters to bf16 on quantized models; keep them fp32
        for p in handle.parameters():
            p.data = p.data.float()
    if len(trainer.train_dataset) == 0:
        raise DataError(f"task {ctx.task.name}: no training examples (the train split is empty)")
    callback.schedule = trainer.lr_schedule
    callback.trainer = trainer
    if state.stopped or len(state.history) >= cfg.epochs:
        return state  # a resumed run whose training had already ended
    trainer.train(resume_from_checkpoint=resume_from)
    state.tokens = int(trainer.state.num_input_tokens_seen or 0)
    return state


def _trainer_args(ctx: _Run, stage_dir: Path, lr: float, kind: str):
    cfg = ctx.cfg
    common = dict(
        output_dir=str(stage_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        num_train_epochs=cfg.epochs,
        learning_rate=lr,
        weight_decay=cfg.weight_decay,
        adam_epsilon=cfg.adam_epsilon,
        max_grad_norm=cfg.max_grad_norm,
        optim="adamw_torch",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=False,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=False,  # weights keep their loaded dtype; edit parameters are fp32
        fp16=False,
        activation_checkpointing=False,
        use_cpu=ctx.device.type == "cpu",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        # SFT rows are fitted already (_datasets): TRL must not cut or drop any
        max_length=ctx.fit.get("max_length_used") if kind == "dpo" else None,
    )
    if kind == "dpo":
        from trl import DPOConfig

        return DPOConfig(
            **common, beta=cfg.dpo_beta, loss_type=["sigmoid"], precompute_ref_log_probs=True
        )
    from trl import SFTConfig

    return SFTConfig(**common, packing=False, completion_only_loss=True)


def _datasets(ctx: _Run, kind: str):
    """(train, dev) TRL datasets of ``kind``; LoFiT's two stages share one build.

    Nothing is dropped: ``max_length`` None is the longest sampled train/dev example (the
    model's tokenizer), and with a ``max_length`` a longer SFT example has its prompt cut from
    the left (``trl_data``); ``ctx.fit`` records the limit and the counts for the metrics.
    """
    if kind not in ctx.datasets and ctx.resident is not None:
        ctx.datasets[kind], ctx.fit = ctx.resident.datasets(
            ctx.cfg, kind, lambda: _build_datasets(ctx, kind)
        )
    if kind not in ctx.datasets:
        ctx.datasets[kind], ctx.fit = _build_datasets(ctx, kind)
    return ctx.datasets[kind]


def _build_datasets(ctx: _Run, kind: str):
    """((train, dev), fit) of ``kind``, built from the splits (see ``_datasets``)."""
    from jola_ray.train import trl_data

    train, dev = ctx.splits.train, ctx.splits.dev
    tok, limit = ctx.tokenizer, ctx.cfg.max_length
    if kind == "dpo":
        pair = trl_data.dpo_dataset(train, "train"), trl_data.dpo_dataset(dev, "dev")
        lengths = {s: trl_data.dpo_lengths(xs, tok) for s, xs in (("train", train), ("dev", dev))}
        longest = max([*lengths["train"], *lengths["dev"], 1])
        used = limit or longest
        cut = {s: sum(n > used for n in ls) for s, ls in lengths.items()}
    else:
        eos = ctx.cfg.append_eos
        longest = max([*trl_data.sft_lengths([*train, *dev], tok, eos), 1])
        used = limit or longest
        (train_ds, train_fit), (dev_ds, dev_fit) = (
            trl_data.sft_rows(xs, tok, eos, used, split)
            for split, xs in (("train", train), ("dev", dev))
        )
        pair = train_ds, dev_ds
        cut = {"train": len(train_fit.truncated), "dev": len(dev_fit.truncated)}
    fit = {
        "max_length_used": used,
        "longest_example_tokens": longest,
        "train_truncated": cut["train"],
        "dev_truncated": cut["dev"],
        "train_dropped": 0,
    }
    if cut["train"] or cut["dev"]:
        how = "the end of the answer cut (TRL DPO)" if kind == "dpo" else "prompt cut from the left"
        log.warning(
            "task %s: max_length %d < longest example (%d tokens): %d train and %d dev "
            "examples truncated (%s); recorded as train_truncated/dev_truncated",
            ctx.task.name,
            used,
            longest,
            cut["train"],
            cut["dev"],
            how,
        )
    return pair, fit


def _data_record(ctx: _Run) -> dict:
    """The sizes used and what fitting to max_length did, for metrics.json and the results."""
    sizes = ctx.splits.sizes()
    short = ctx.splits.short_note() if hasattr(ctx.splits, "short_note") else ""
    return {
        "examples_train": sizes["train"],
        "examples_dev": sizes["dev"],
        "examples_test": sizes["test"],
        "short_splits": short,
        **ctx.fit,
    }


def _write_config(ctx: _Run, path: Path) -> None:
    """The resolved config, headed by comments with the sizes the run really used."""
    record = _data_record(ctx)
    lines = [
        f"# examples used: train {record['examples_train']}, dev {record['examples_dev']}, "
        f"test {record['examples_test']}"
    ]
    if record["short_splits"]:
        lines.append(f"# WARNING fewer examples than asked: {record['short_splits']}")
    if ctx.fit:
        lines.append(
            f"# max_length used {ctx.fit['max_length_used']} (longest example "
            f"{ctx.fit['longest_example_tokens']} tokens); truncated: train "
            f"{ctx.fit['train_truncated']}, dev {ctx.fit['dev_truncated']}; dropped: none"
        )
    path.write_text("\n".join(lines) + "\n" + ctx.cfg.to_yaml())


@contextlib.contextmanager
def _allow_quantized_training(model, quantized: bool):
    """Let the Trainer accept trainable non-PEFT parameters on a bitsandbytes model.

    ``Trainer.__init__`` refuses a quantized model whose trainables are not PEFT adapters; the
    flag it reads is a plain attribute, lowered only while the trainer is built.
    """
    if not quantized:
        yield
        return
    model.is_quantized = False
    try:
        yield
    finally:
        model.is_quantized = True


# --- evaluation and the end of the run ----------------------------------------------------


@dataclass
class _Eval:
    metrics_prefixed: dict
    predictions: list


def run_splits(cfg: RunConfig, task, resident=None, trained: bool = True):
    """The run's splits (``load_splits`` of its task, data folder, seed and sizes), kept by
    the worker's ``resident`` when there is one. ``trained=False``: only the test split (and
    dev, where there is one) must exist."""
    from jola_ray.data import load_splits

    def build():
        return load_splits(
            task,
            data_dir=cfg.data_dir,
            seed=cfg.seed,
            train_size=cfg.train_size,
            dev_size=cfg.dev_size,
            test_size=cfg.test_size,
            need={"train", "dev", "test"} if trained else {"test"},
        )

    return build() if resident is None else resident.splits(cfg, build)


def needs_dev_loss(cfg: RunConfig) -> bool:
    """Whether anything reads the dev loss: the selection metric, the adaptive schedule, or
    the curves (``record_dev_loss``). Without a reader it is computed only where it is free."""
    return cfg.select_metric == "dev_loss" or cfg.lr_schedule == "adaptive" or cfg.record_dev_loss


def eval_settings(cfg: RunConfig) -> dict:
    """How a run decodes its dev and test splits (``evaluate``'s keyword arguments)."""
    return dict(
        mode=cfg.decoding,
        batch_size=cfg.eval_batch_size,
        num_beams=cfg.num_beams,
        max_new_tokens=cfg.max_new_tokens,
    )


def _evaluate(ctx: _Run, examples, split: str) -> _Eval:
    """The split's metrics (``<split>_<metric>``, ``<split>_score``); the dev split's single
    pass also yields ``dev_loss`` (SFT tasks) when it is free or needed."""
    from jola_ray.evaluation import evaluate
    from jola_ray.evaluation.dev_pass import evaluate_with_loss

    cfg = ctx.cfg
    kwargs = eval_settings(cfg)
    loss = None
    if split == "dev" and ctx.task.training == "sft":
        res, loss = evaluate_with_loss(
            ctx.model,
            ctx.tokenizer,
            ctx.task,
            examples,
            **kwargs,
            need_loss=needs_dev_loss(cfg),
            append_eos=cfg.append_eos,
            max_length=cfg.max_length,
        )
    else:
        res = evaluate(ctx.model, ctx.tokenizer, ctx.task, examples, **kwargs)
    return split_metrics(ctx.task, split, res, loss)


def split_metrics(task, split: str, res, loss: float | None) -> _Eval:
    """``<split>_loss`` (when computed), ``<split>_<metric>`` and ``<split>_score`` of one
    evaluation result, with its predictions."""
    metrics = {} if loss is None else {f"{split}_loss": float(loss)}
    metrics.update({f"{split}_{k}": float(v) for k, v in res.metrics.items()})
    metrics[f"{split}_score"] = float(res.metrics[task.primary_metric])
    return _Eval(metrics, res.predictions)


def _resolved(cfg: RunConfig) -> dict:
    """Every resolved setting (defaults and profile values included) the results carry; the
    output directory is where they are, not how they were made."""
    flat = {k: v for k, v in cfg.to_flat_dict().items() if k != "output_dir"}
    # lists (layers, target modules) as JSON text: one scalar per result column, as Ray's loggers
    # and the trials table want
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in flat.items()}


def _penalty_fn(handle, total_steps: int):
    """global step -> the handle's weighted penalty, or None when the method has none."""
    if handle.penalty(0, total_steps) is None:
        return None
    return lambda step: handle.penalty(step, total_steps)


def _finish(ctx: _Run, handle, state: RunState, n_params: int) -> dict:
    """Test the best epoch's edit and publish the final metrics. Earlier stages' summaries
    (``state.carry``: their prefixed metrics and cost) join the last stage's metrics."""
    from jola_ray.train.trainer import load_trainable_state

    if state.best_state is not None:
        load_trainable_state(ctx.model, state.best_state)
    test = _evaluate(ctx, ctx.splits.test, "test")
    table = handle.inspect()
    last = dict(state.history[-1])
    best = state.history[state.best_epoch - 1] if state.best_epoch else last
    earlier_cost = state.carry.get("cost", {})
    metrics = {
        **last,
        **test.metrics_prefixed,
        "best_epoch": state.best_epoch,
        "best_dev_score": best["dev_score"],
        "num_selected_heads": 0,
        "selected_heads": [],
        **handle.summary(),
        "trainable_params": n_params,
        "base_params": _base_params(ctx.model, handle),
        **ctx.cost.summary(
            steps=int(last["step"]) + int(earlier_cost.get("steps", 0)),
            tokens=state.tokens + int(earlier_cost.get("tokens", 0)),
            wall_s=state.wall_s + float(earlier_cost.get("wall_s", 0.0)),
        ),
        **state.carry.get("metrics", {}),
        **_data_record(ctx),
        "resolved": _resolved(ctx.cfg),
        "run_status": "finished",
    }
    if metrics.get("warning"):  # the method's (JoLA: every gate closed)
        log.warning("%s: %s", ctx.cfg.output_dir, metrics["warning"])
    final = ctx.out / FINAL_DIR
    final.mkdir(parents=True, exist_ok=True)
    _write_final(ctx, final, metrics, test.predictions, edit=handle, table=table)
    done = RunState(
        stage=state.stage,
        history=state.history,
        best_epoch=state.best_epoch,
        finished=True,
        carry=state.carry,
        # the totals metrics.json reports (earlier stages included)
        wall_s=float(metrics["cost_wall_s"]),
        tokens=int(metrics["cost_tokens"]),
    )
    done.save(final)
    if ctx.report is not None:
        ctx.report(dict(metrics), str(final))
    handle.remove()  # the model is exactly the base again (a worker keeps it for the next trial)
    return metrics


def _write_final(
    ctx: _Run, final: Path, metrics: dict, predictions: list, edit, table=None
) -> None:
    """metrics.json, predictions.jsonl, gates.csv, edit.safetensors in ``final``, copied to the
    output directory's top level beside config.yaml."""
    write_results(final, metrics, predictions)
    if edit is not None:
        table = table if table is not None else edit.inspect()
        if table is not None:
            table.to_csv(final / "gates.csv", index=False)
        edit.save(final / "edit.safetensors")
    _write_config(ctx, final / "config.yaml")
    for name in FINAL_FILES:
        if (final / name).is_file():
            shutil.copyfile(final / name, ctx.out / name)


def _check_trainable(model: torch.nn.Module, handle) -> int:
    """Only the handle's parameters may train; returns their count."""
    edit_ids = {id(p) for p in handle.parameters()}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    stray = [n for n, p in trainable if id(p) not in edit_ids]
    if stray or not trainable:
        raise TrainingError(
            f"only edit parameters may train; also trainable: {stray[:5]}"
            if stray
            else "the edit has no trainable parameters"
        )
    return sum(p.numel() for _, p in trainable)


def _base_params(model: torch.nn.Module, handle) -> int:
    """The base model's parameter count (without the handle's), for the report's percent."""
    own = {id(p) for p in handle.parameters()} if handle is not None else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in own)
