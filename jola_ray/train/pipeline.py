"""One fine-tuning run: load the frozen model, apply the edit, train with TRL, test the best edit.

``run(cfg, report, resume_from)`` is the whole of a trial. It knows nothing of Ray: the sweep
passes ``report(metrics, checkpoint_dir)``, called after every epoch (with that epoch's edit-only
checkpoint) and once at the end (``run_status: "finished"``, the final directory with
``metrics.json``, ``predictions.jsonl``, ``gates.csv`` and ``edit.safetensors``).

Methods:

- ``jola``: one training stage; the best epoch's edit (by ``select_metric``) is tested.
- ``lofit``: stage 1 (scaling vectors on every head, L1 penalty) picks the top-K heads by the L2
  norm of their scaling vector; the stage-1 edit is removed (the model is exactly the base
  again) and stage 2 trains biases on those heads. Only stage 2 reports per epoch (its epochs
  are the ``epoch`` Ray sees); every report carries the stage-1 summary as ``s1_*`` keys.
- ``zero_shot``: no edit; dev and test evaluated, one report with ``epoch`` 0.
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
from jola_ray.train.config import RunConfig
from jola_ray.train.cost import CostMeter
from jola_ray.train.state import RunState

log = logging.getLogger(__name__)

Report = Callable[[dict, str], None]
FINAL_DIR = "final"
FAILED_FILE = "FAILED"  # written into the output dir when bad data stops a started run
FINAL_FILES = ("metrics.json", "predictions.jsonl", "gates.csv", "edit.safetensors")
_PARTS = {"both": "both", "additive": "add", "multiplicative": "mul"}


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


def run(
    cfg: RunConfig,
    report: Report | None = None,
    resume_from: str | None = None,
    *,
    task=None,
    splits=None,
) -> dict:
    """Train and test one configuration; return the final metrics.

    Args:
        cfg: the validated run config.
        report: ``report(metrics, checkpoint_dir)``, called after each epoch and at the end.
        resume_from: a checkpoint directory a previous report received; the run continues
            from it to the same result as an uninterrupted run.
        task, splits: use these instead of the registry's task and ``load_splits`` (tests,
            custom data already in memory).

    Raises:
        TrainingError: non-finite loss (naming the step), out of memory (naming the batch size
            and model), or a checkpoint that does not fit this run.
    """
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    out = Path(cfg.output_dir)
    resumed = None
    if resume_from is not None:
        if not RunState.exists(resume_from):
            raise TrainingError(
                f"resume_from: {resume_from} is not a checkpoint of a run (no run_state.json)"
            )
        resumed = RunState.load(resume_from)
        if resumed.finished:
            return json.loads((Path(resume_from) / "metrics.json").read_text())

    from transformers import set_seed

    if task is None:
        from jola_ray.data import get_task

        task = get_task(cfg.task)
    if splits is None:
        from jola_ray.data import load_splits

        splits = load_splits(
            task,
            data_dir=cfg.data_dir,
            seed=cfg.seed,
            train_size=cfg.train_size,
            dev_size=cfg.dev_size,
            test_size=cfg.test_size,
            # zero-shot reads dev (when there is one) and test: a test-only folder will do
            need={"test"} if cfg.method == "zero_shot" else {"train", "dev", "test"},
        )
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # per-split map() bars of TRL's dataset preparation
    set_seed(cfg.seed)
    from jola_ray.train.loading import load_model_and_tokenizer

    model, tok, device = load_model_and_tokenizer(cfg)
    ctx = _Run(cfg, task, splits, model, tok, device, out, report, CostMeter(device))
    if splits.train or splits.dev:
        _datasets(ctx, task.training)  # bad data fails here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    _write_config(ctx, out / "config.yaml")
    try:
        if cfg.method == "zero_shot":
            return _zero_shot(ctx)
        if cfg.method == "jola":
            return _jola(ctx, resumed, resume_from)
        return _lofit(ctx, resumed, resume_from)
    except torch.OutOfMemoryError as err:
        raise TrainingError(
            f"CUDA out of memory: model {cfg.model} ({cfg.dtype}, quantization {cfg.quantization}), "
            f"batch_size {cfg.batch_size}, eval_batch_size {cfg.eval_batch_size}, max_length "
            f"{ctx.fit.get('max_length_used', cfg.max_length)}. Lower batch_size (raise grad_accum_steps to keep the effective "
            "batch), eval_batch_size or max_length, use dtype bf16 or quantization nf4, or give "
            f"the trial more GPU memory (gpu_memory_fraction is {cfg.gpu_memory_fraction})."
        ) from err
    except DataError as err:  # bad data found late (e.g. while scoring): say so in the folder
        (out / FAILED_FILE).write_text(f"run failed on bad data: {err}\n")
        raise


# --- methods ------------------------------------------------------------------------------


def _zero_shot(ctx: _Run) -> dict:
    if ctx.splits.dev:
        dev = _evaluate(ctx, ctx.splits.dev, "dev").metrics_prefixed
        dev_loss = _zero_shot_dev_loss(ctx)
    else:  # a test-only source: no dev split to score
        log.warning("task %s: no dev examples (test-only data): dev_score is NaN", ctx.task.name)
        dev, dev_loss = {"dev_score": math.nan}, {}
    test = _evaluate(ctx, ctx.splits.test, "test")
    metrics = {
        "epoch": 0,
        "step": 0,
        **dev_loss,
        **dev,
        "open_gate_fraction": 0.0,
        **test.metrics_prefixed,
        "best_epoch": 0,
        "best_dev_score": dev["dev_score"],
        "num_selected_heads": 0,
        "selected_heads": [],
        "trainable_params": 0,
        **ctx.cost.summary(steps=0, tokens=0, wall_s=0.0),
        **_data_record(ctx),
        "run_status": "finished",
    }
    final = ctx.out / FINAL_DIR
    final.mkdir(parents=True, exist_ok=True)
    _write_final(ctx, final, metrics, test.predictions, edit=None)
    RunState(stage="zero_shot", finished=True).save(final)
    if ctx.report is not None:
        ctx.report(dict(metrics), str(final))
    return metrics


def _zero_shot_dev_loss(ctx: _Run) -> dict:
    """The untouched model's dev loss on the answer tokens, as the trained methods measure it
    (TRL's SFT evaluation); nothing for preference tasks, where policy and reference coincide."""
    if ctx.task.training != "sft":
        return {}
    from trl import SFTTrainer

    train_ds, dev_ds = _datasets(ctx, "sft")
    args = _trainer_args(ctx, ctx.out / "zero_shot", ctx.cfg.lr, "sft")
    trainer = SFTTrainer(
        model=ctx.model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        processing_class=ctx.tokenizer,
    )
    return {"dev_loss": float(trainer.evaluate()["eval_loss"])}


def _jola(ctx: _Run, resumed: RunState | None, resume_from: str | None) -> dict:
    from jola_ray.editing import JoLAConfig, apply_edit

    cfg = ctx.cfg
    edit = apply_edit(
        ctx.model,
        JoLAConfig(
            gate_lambda=cfg.gate_lambda,
            penalty=cfg.penalty_form,
            parts=_PARTS[cfg.edit_components],
            layers=tuple(cfg.edit_layers) if cfg.edit_layers else None,
            per_example_gates=cfg.per_example_gates,
            temperature=cfg.gate_temperature,
            seed=cfg.seed,
        ),
    )
    n_params = _check_trainable(ctx.model, edit)

    def penalty(total_steps: int):
        if cfg.penalty_form == "paper":
            return lambda step: edit.penalty()
        from jola_ray.train.schedules import reference_penalty

        return reference_penalty(
            edit.penalty,
            cfg.gate_schedule,
            total_steps,
            cyclic_start=cfg.gate_cyclic_start,
            skip_at_zero=cfg.gate_skip_at_zero,
        )

    state = _train_stage(
        ctx,
        edit,
        "main",
        ctx.out / "checkpoints",
        lr=cfg.lr,
        make_penalty=penalty,
        report=ctx.report,
        resumed=resumed,
        resume_from=resume_from,
    )
    return _finish(ctx, edit, state, n_params)


def _lofit(ctx: _Run, resumed: RunState | None, resume_from: str | None) -> dict:
    from jola_ray.editing import LoFiTConfig, apply_edit, select_top_heads

    cfg = ctx.cfg
    if resumed is not None and resumed.stage == "stage2":
        s1 = resumed.stage1
        heads = [tuple(h) for h in s1["heads"]]
    else:
        edit1 = apply_edit(
            ctx.model,
            LoFiTConfig(
                stage="scale", top_k=cfg.lofit_top_k, l1_lambda=cfg.lofit_l1_lambda, seed=cfg.seed
            ),
        )
        _check_trainable(ctx.model, edit1)
        before = _base_fingerprint(ctx.model)
        lr1 = cfg.lofit_stage1_lr or cfg.lr
        s1_resume = resume_from if resumed is not None and resumed.stage == "stage1" else None
        state1 = _train_stage(
            ctx,
            edit1,
            "stage1",
            ctx.out / "stage1",
            lr=lr1,
            make_penalty=lambda total: lambda step: edit1.penalty(),
            resumed=resumed if s1_resume else None,
            resume_from=s1_resume,
        )
        if state1.best_state is not None:
            from jola_ray.train.trainer import load_trainable_state

            load_trainable_state(ctx.model, state1.best_state)
        heads = select_top_heads(edit1)
        edit1.remove()
        if _base_fingerprint(ctx.model) != before or hasattr(ctx.model, "head_edit"):
            raise TrainingError("LoFiT: removing the stage-1 edit did not restore the base model")
        last = state1.history[-1] if state1.history else {}
        best = state1.history[state1.best_epoch - 1] if state1.best_epoch else last
        s1 = {f"s1_{k}": v for k, v in best.items() if k not in ("run_status",)}
        s1.update(
            s1_best_epoch=state1.best_epoch,
            s1_epochs=len(state1.history),
            s1_steps=last.get("step", 0),
            s1_tokens=state1.tokens,
            s1_wall_s=state1.wall_s,
            heads=[list(h) for h in heads],
        )
    edit2 = apply_edit(ctx.model, LoFiTConfig(stage="bias", heads=tuple(heads), seed=cfg.seed))
    n_params = _check_trainable(ctx.model, edit2)
    s1_keys = {k: v for k, v in s1.items() if k != "heads"}

    def decorate(m: dict) -> dict:
        return {**m, **s1_keys}

    s2_resumed = resumed if resumed is not None and resumed.stage == "stage2" else None
    state2 = _train_stage(
        ctx,
        edit2,
        "stage2",
        ctx.out / "stage2",
        lr=cfg.lr,
        report=ctx.report,
        decorate=decorate,
        resumed=s2_resumed,
        resume_from=resume_from if s2_resumed else None,
        stage1=s1,
    )
    return _finish(ctx, edit2, state2, n_params)


# --- one training stage --------------------------------------------------------------------


def _train_stage(
    ctx: _Run,
    edit,
    stage: str,
    stage_dir: Path,
    *,
    lr: float,
    make_penalty=None,
    report: Report | None = None,
    decorate=None,
    resumed: RunState | None = None,
    resume_from: str | None = None,
    stage1: dict | None = None,
) -> RunState:
    """Train ``edit`` for up to ``epochs`` epochs with early stopping; return the stage's state."""
    from jola_ray.train.epochs import EpochEnd
    from jola_ray.train.schedules import LRSchedule
    from jola_ray.train.trainer import make_trainer_class, steps_per_epoch

    cfg = ctx.cfg
    state = resumed if resumed is not None else RunState(stage=stage, stage1=stage1 or {})
    kind = ctx.task.training
    train_ds, dev_ds = _datasets(ctx, kind)
    callback = EpochEnd(
        state,
        dev_eval=lambda: _evaluate(ctx, ctx.splits.dev, "dev").metrics_prefixed,
        edit=edit,
        schedule=None,  # set below, once the trainer has its dataset
        select_metric=cfg.select_metric,
        patience=cfg.patience,
        report=report,
        decorate=decorate or (lambda m: m),
    )
    args = _trainer_args(ctx, stage_dir, lr, kind)
    trainer_cls = make_trainer_class(kind)
    quantized = bool(getattr(ctx.model, "is_quantized", False))
    reference_off = edit.disabled() if kind == "dpo" else contextlib.nullcontext()
    with _allow_quantized_training(ctx.model, quantized), reference_off:
        trainer = trainer_cls(
            model=ctx.model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=dev_ds,
            processing_class=ctx.tokenizer,
            callbacks=[callback],
        )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the report callable is the run's output
    if quantized:  # TRL casts trainable parameters to bf16 on quantized models; keep them fp32
        for p in edit.parameters():
            p.data = p.data.float()
    if len(trainer.train_dataset) == 0:
        raise DataError(f"task {ctx.task.name}: no training examples (the train split is empty)")
    spe = steps_per_epoch(len(trainer.train_dataset), cfg.batch_size, cfg.grad_accum_steps)
    total = spe * cfg.epochs
    schedule = LRSchedule(
        cfg.lr_schedule,
        steps_per_epoch=spe,
        total_steps=total,
        warmup_steps=cfg.warmup_steps,
        warmup_epochs=cfg.warmup_epochs,
        decay_lambda=cfg.lr_decay_lambda,
        decay_rate=cfg.lr_decay_rate,
        cycle_epochs=cfg.lr_cycle_epochs,
        cycle_min_ratio=cfg.lr_cycle_min_ratio,
        adaptive_factor=cfg.lr_adaptive_factor,
        adaptive_patience=cfg.lr_adaptive_patience,
    )
    trainer.lr_schedule = callback.schedule = schedule
    trainer.penalty_fn = make_penalty(total) if make_penalty is not None else None
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
    if kind not in ctx.datasets:
        from jola_ray.train import trl_data

        train, dev = ctx.splits.train, ctx.splits.dev
        tok, limit = ctx.tokenizer, ctx.cfg.max_length
        if kind == "dpo":
            pair = trl_data.dpo_dataset(train, "train"), trl_data.dpo_dataset(dev, "dev")
            lengths = {
                s: trl_data.dpo_lengths(xs, tok) for s, xs in (("train", train), ("dev", dev))
            }
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
        ctx.fit = {
            "max_length_used": used,
            "longest_example_tokens": longest,
            "train_truncated": cut["train"],
            "dev_truncated": cut["dev"],
            "train_dropped": 0,
        }
        if cut["train"] or cut["dev"]:
            how = (
                "the end of the answer cut (TRL DPO)"
                if kind == "dpo"
                else "prompt cut from the left"
            )
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
        ctx.datasets[kind] = pair
    return ctx.datasets[kind]


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


def _evaluate(ctx: _Run, examples, split: str) -> _Eval:
    from jola_ray.evaluation import evaluate

    cfg = ctx.cfg
    res = evaluate(
        ctx.model,
        ctx.tokenizer,
        ctx.task,
        examples,
        mode=cfg.decoding,
        batch_size=cfg.eval_batch_size,
        num_beams=cfg.num_beams,
        max_new_tokens=cfg.max_new_tokens,
    )
    metrics = {f"{split}_{k}": float(v) for k, v in res.metrics.items()}
    metrics[f"{split}_score"] = float(res.metrics[ctx.task.primary_metric])
    return _Eval(metrics, res.predictions)


def _finish(ctx: _Run, edit, state: RunState, n_params: int) -> dict:
    """Test the best epoch's edit and publish the final metrics. LoFiT's stage-1 summary
    (``state.stage1``: its ``s1_*`` keys and selected heads) joins stage 2's metrics."""
    from jola_ray.train.trainer import load_trainable_state

    if state.best_state is not None:
        load_trainable_state(ctx.model, state.best_state)
    test = _evaluate(ctx, ctx.splits.test, "test")
    table = edit.inspect()
    selected = table[table["selected"]][["layer", "head"]].values.tolist()
    last = dict(state.history[-1])
    best = state.history[state.best_epoch - 1] if state.best_epoch else last
    # LoFiT's cost includes stage 1 (its summary travels in the stage-2 checkpoints)
    s1 = state.stage1
    steps = int(last["step"]) + int(s1.get("s1_steps", 0))
    metrics = {
        **last,
        **test.metrics_prefixed,
        "best_epoch": state.best_epoch,
        "best_dev_score": best["dev_score"],
        "num_selected_heads": len(selected),
        "selected_heads": [[int(a), int(b)] for a, b in selected],
        "trainable_params": n_params,
        **ctx.cost.summary(
            steps=steps,
            tokens=state.tokens + int(s1.get("s1_tokens", 0)),
            wall_s=state.wall_s + float(s1.get("s1_wall_s", 0.0)),
        ),
        **{k: v for k, v in s1.items() if k != "heads"},
        **_data_record(ctx),
        "run_status": "finished",
    }
    final = ctx.out / FINAL_DIR
    final.mkdir(parents=True, exist_ok=True)
    _write_final(ctx, final, metrics, test.predictions, edit=edit, table=table)
    done = RunState(
        stage=state.stage,
        history=state.history,
        best_epoch=state.best_epoch,
        finished=True,
        stage1=s1,
        # the totals metrics.json reports (LoFiT's stage 1 included)
        wall_s=float(metrics["cost_wall_s"]),
        tokens=int(metrics["cost_tokens"]),
    )
    done.save(final)
    if ctx.report is not None:
        ctx.report(dict(metrics), str(final))
    return metrics


def write_results(directory: Path, metrics: dict, predictions: list) -> None:
    """``metrics.json`` and ``predictions.jsonl`` (one line per example) in ``directory``."""
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=1))
    with open(directory / "predictions.jsonl", "w") as fh:
        for p in predictions:
            fh.write(json.dumps(p) + "\n")


def _write_final(
    ctx: _Run, final: Path, metrics: dict, predictions: list, edit, table=None
) -> None:
    """metrics.json, predictions.jsonl, gates.csv, edit.safetensors in ``final``, copied to the
    output directory's top level beside config.yaml."""
    write_results(final, metrics, predictions)
    if edit is not None:
        from jola_ray.editing import save_edit

        (table if table is not None else edit.inspect()).to_csv(final / "gates.csv", index=False)
        save_edit(edit, final / "edit.safetensors")
    _write_config(ctx, final / "config.yaml")
    for name in FINAL_FILES:
        if (final / name).is_file():
            shutil.copyfile(final / name, ctx.out / name)


def _check_trainable(model: torch.nn.Module, edit) -> int:
    """Only the edit's parameters may train; returns their count."""
    edit_ids = {id(p) for p in edit.parameters()}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    stray = [n for n, p in trainable if id(p) not in edit_ids]
    if stray or not trainable:
        raise TrainingError(
            f"only edit parameters may train; also trainable: {stray[:5]}"
            if stray
            else "the edit has no trainable parameters"
        )
    return sum(p.numel() for _, p in trainable)


def _base_fingerprint(model: torch.nn.Module) -> tuple:
    """Names, shapes and a checksum of the base model's parameters (LoFiT restore check)."""
    items = [
        (n, tuple(p.shape), float(p.detach().float().sum()))
        for n, p in model.named_parameters()
        if not n.startswith("head_edit.")
    ]
    return tuple(items)
